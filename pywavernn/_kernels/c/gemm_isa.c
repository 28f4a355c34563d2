/* gemm_isa.c: Y = W X (+ bias) for B right-hand sides (1 <= B <= 16), W dense or block-CSR (16x1, 4x4, 1x1).
 *
 * Layout (see pwr_kernels.h): right-hand side b is the N floats at x[b] (rows of one array, or gathered from
 * anywhere: the subscale loop reads its context rings and the GRU state in place); Y is (B, M) row-major.
 * AVX2: right-hand sides are taken in tiles; within a tile every loaded (and fp16-converted) weight vector is
 * multiplied into one register accumulator per right-hand side (two for 16x1 and 4x4 blocks), and the tile size is
 * a compile-time constant of an always-inline body so the accumulators stay in registers. 16x1 and 4x4 tiles hold
 * up to 6 right-hand sides (12 accumulators + 2 weight vectors + 1 broadcast = 15 of the 16 YMM registers): 12
 * independent FMA chains instead of 8, and each weight vector serves 6 columns instead of 4 (16-column products of
 * the subscale loop's shapes: 3-7 % faster than tiles of 4 on the 2-vCPU EPYC). Dense and 1x1 tiles hold 4. Each
 * right-hand side has its own accumulators and the same operation order in every tile size, so a column's result
 * never depends on the tiling.
 * AVX-512 (the avx512 copy, pwr_isa.h): a 16x1 block is one 16-lane register, so each right-hand side needs one
 * accumulator and a tile holds 8 (8 accumulators + the weights + 8 broadcasts; wider tiles run out of general
 * registers for the 8+ column pointers): 8 columns per weight load instead of 6, half the instructions per block.
 * Zen 4 runs a 512-bit FMA at the rate of two 256-bit ones, so this saves instructions, not arithmetic: on the
 * 2-vCPU EPYC, 16 right-hand sides, `bench_kernels --h256` less the wrapper, R (768x256, 25 %) 94 against
 * 84 GFLOP/s, O1 and O2-as-16x1 +3-4 %; the subscale loop 1-5 % faster (research/experiments.md, RQ5). Lane r does
 * what lane r of the two 8-lane accumulators does (bias, then one FMA per block in block order), so the avx512
 * results are the avx2 results bit for bit.
 * The portable copy runs the gemv body per right-hand side, so column b equals gemv(X[b]) bit for bit.
 * Compiled once per ISA (see pwr_isa.h). Preconditions: see pwr_kernels.h.
 */
#include "pwr_isa.h"

#if !(defined(PWR_ISA_AVX2) && PWR_ISA_AVX2)

#define PWR_GEMM_PORTABLE(shape, gemv_base)                                                                   \
    void PWR_FN(PWR_CAT(shape, _f32))(const pwr_matrix *w, const float *const *x, int32_t nrhs,               \
                                      const float *b, float *y, int32_t r0, int32_t r1) {                    \
        for (int32_t j = 0; j < nrhs; j++)                                                                    \
            PWR_FN(PWR_CAT(gemv_base, _f32))(w, x[j], b, y + (size_t)j * w->m, r0, r1);                       \
    }                                                                                                         \
    void PWR_FN(PWR_CAT(shape, _f16))(const pwr_matrix *w, const float *const *x, int32_t nrhs,               \
                                      const float *b, float *y, int32_t r0, int32_t r1) {                    \
        for (int32_t j = 0; j < nrhs; j++)                                                                    \
            PWR_FN(PWR_CAT(gemv_base, _f16))(w, x[j], b, y + (size_t)j * w->m, r0, r1);                       \
    }
PWR_GEMM_PORTABLE(bsr_sgemm_16x1, bsr_sgemv_16x1)
PWR_GEMM_PORTABLE(bsr_sgemm_4x4, bsr_sgemv_4x4)
PWR_GEMM_PORTABLE(bsr_sgemm_1x1, bsr_sgemv_1x1)
PWR_GEMM_PORTABLE(sgemm_dense, sgemv_dense)

#else /* ---------------------------------------------------------------- AVX2 + FMA + F16C */

/* Largest tile (the switch below instantiates every size up to it for every tile body; each body's arrays are
 * sized for it, and only the first T entries, T a constant, are ever touched). */
#define PWR_TILE_MAX 8

PWR_INLINE __m128 reduce_4x4(__m256 acc01, __m256 acc23) {
    const __m256 h = _mm256_hadd_ps(acc01, acc23);
    const __m256 h2 = _mm256_hadd_ps(h, h);
    return _mm_unpacklo_ps(_mm256_castps256_ps128(h2), _mm256_extractf128_ps(h2, 1));
}

/* Block row i of a 16x1 matrix times T right-hand sides (T a constant 1..6). */
PWR_INLINE void tile_16x1(const pwr_matrix *w, const float *const *x, const float *bias, float *y, int32_t i, int T,
                          int st) {
    const size_t m = (size_t)w->m;
    __m256 acc[PWR_TILE_MAX][2];
    for (int b = 0; b < T; b++) {
        acc[b][0] = bias ? _mm256_loadu_ps(bias + 16 * (size_t)i) : _mm256_setzero_ps();
        acc[b][1] = bias ? _mm256_loadu_ps(bias + 16 * (size_t)i + 8) : _mm256_setzero_ps();
    }
    for (int32_t k = w->row_ptr[i]; k < w->row_ptr[i + 1]; k++) {
        const __m256 w0 = ld8(w->values, 16 * (size_t)k, st), w1 = ld8(w->values, 16 * (size_t)k + 8, st);
        const int32_t c = w->col_idx[k];
        for (int b = 0; b < T; b++) {
            const __m256 xb = _mm256_broadcast_ss(x[b] + c);
            acc[b][0] = _mm256_fmadd_ps(w0, xb, acc[b][0]);
            acc[b][1] = _mm256_fmadd_ps(w1, xb, acc[b][1]);
        }
    }
    for (int b = 0; b < T; b++) {
        _mm256_storeu_ps(y + b * m + 16 * (size_t)i, acc[b][0]);
        _mm256_storeu_ps(y + b * m + 16 * (size_t)i + 8, acc[b][1]);
    }
}

#if defined(PWR_ISA_AVX512) && PWR_ISA_AVX512
/* tile_16x1 with one 16-lane accumulator per right-hand side (T a constant 1..8). */
PWR_INLINE void tile_16x1_zmm(const pwr_matrix *w, const float *const *x, const float *bias, float *y, int32_t i,
                              int T, int st) {
    const size_t m = (size_t)w->m;
    __m512 acc[PWR_TILE_MAX];
    for (int b = 0; b < T; b++) acc[b] = bias ? _mm512_loadu_ps(bias + 16 * (size_t)i) : _mm512_setzero_ps();
    for (int32_t k = w->row_ptr[i]; k < w->row_ptr[i + 1]; k++) {
        const __m512 wv = ld16(w->values, 16 * (size_t)k, st);
        const int32_t c = w->col_idx[k];
        for (int b = 0; b < T; b++) acc[b] = _mm512_fmadd_ps(wv, _mm512_set1_ps(x[b][c]), acc[b]);
    }
    for (int b = 0; b < T; b++) _mm512_storeu_ps(y + b * m + 16 * (size_t)i, acc[b]);
}
#endif

PWR_INLINE void tile_4x4(const pwr_matrix *w, const float *const *x, const float *bias, float *y, int32_t i, int T,
                         int st) {
    const size_t m = (size_t)w->m;
    __m256 a01[PWR_TILE_MAX], a23[PWR_TILE_MAX];
    for (int b = 0; b < T; b++) a01[b] = a23[b] = _mm256_setzero_ps();
    for (int32_t k = w->row_ptr[i]; k < w->row_ptr[i + 1]; k++) {
        const __m256 w01 = ld8(w->values, 16 * (size_t)k, st), w23 = ld8(w->values, 16 * (size_t)k + 8, st);
        const size_t c = 4 * (size_t)w->col_idx[k];
        for (int b = 0; b < T; b++) {
            const __m256 xb = _mm256_broadcast_ps((const __m128 *)(x[b] + c));
            a01[b] = _mm256_fmadd_ps(w01, xb, a01[b]);
            a23[b] = _mm256_fmadd_ps(w23, xb, a23[b]);
        }
    }
    for (int b = 0; b < T; b++) {
        __m128 s = reduce_4x4(a01[b], a23[b]);
        if (bias) s = _mm_add_ps(s, _mm_loadu_ps(bias + 4 * (size_t)i));
        _mm_storeu_ps(y + b * m + 4 * (size_t)i, s);
    }
}

PWR_INLINE void tile_1x1(const pwr_matrix *w, const float *const *x, const float *bias, float *y, int32_t i, int T,
                         int st) {
    const size_t m = (size_t)w->m;
    __m256 acc[PWR_TILE_MAX];
    for (int b = 0; b < T; b++) acc[b] = _mm256_setzero_ps();
    int32_t k = w->row_ptr[i];
    const int32_t kend = w->row_ptr[i + 1];
    for (; k + 8 <= kend; k += 8) {
        const __m256i idx = _mm256_loadu_si256((const __m256i *)(w->col_idx + k));
        const __m256 wv = ld8(w->values, (size_t)k, st);
        for (int b = 0; b < T; b++) acc[b] = _mm256_fmadd_ps(wv, _mm256_i32gather_ps(x[b], idx, 4), acc[b]);
    }
    float s[PWR_TILE_MAX];
    for (int b = 0; b < T; b++) s[b] = hsum8(acc[b]);
    for (; k < kend; k++) {
        const float wk = pwr_load_w(w->values, (size_t)k, st);
        for (int b = 0; b < T; b++) s[b] += wk * x[b][w->col_idx[k]];
    }
    for (int b = 0; b < T; b++) y[b * m + i] = bias ? bias[i] + s[b] : s[b];
}

PWR_INLINE void tile_dense(const pwr_matrix *w, const float *const *x, const float *bias, float *y, int32_t i, int T,
                           int st) {
    const size_t n = (size_t)w->n, m = (size_t)w->m, o = (size_t)i * n;
    __m256 acc[PWR_TILE_MAX];
    for (int b = 0; b < T; b++) acc[b] = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 wv = ld8(w->values, o + j, st);
        for (int b = 0; b < T; b++) acc[b] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[b] + j), acc[b]);
    }
    float s[PWR_TILE_MAX];
    for (int b = 0; b < T; b++) s[b] = hsum8(acc[b]);
    for (; j < n; j++) {
        const float wj = pwr_load_w(w->values, o + j, st);
        for (int b = 0; b < T; b++) s[b] += wj * x[b][j];
    }
    for (int b = 0; b < T; b++) y[b * m + i] = bias ? bias[i] + s[b] : s[b];
}

/* For each block row, the right-hand sides in tiles of `wide` (8, 6 or 4), then one tile of the rest; the switch
 * gives each tile size its own fully unrolled copy (sizes above `wide` are never reached). */
#define PWR_GEMM_AVX2(name, tile, st, wide)                                                                   \
    void PWR_FN(name)(const pwr_matrix *w, const float *const *x, int32_t nrhs, const float *bias, float *y, \
                      int32_t r0, int32_t r1) {                                                              \
        for (int32_t i = r0; i < r1; i++) {                                                                   \
            for (int32_t b0 = 0; b0 < nrhs;) {                                                                \
                const int32_t t = nrhs - b0 >= (wide) ? (wide) : nrhs - b0;                                   \
                const float *const *xb = x + b0;                                                              \
                float *yb = y + (size_t)b0 * w->m;                                                            \
                switch (t) {                                                                                  \
                case 8: tile(w, xb, bias, yb, i, 8, st); break;                                               \
                case 7: tile(w, xb, bias, yb, i, 7, st); break;                                               \
                case 6: tile(w, xb, bias, yb, i, 6, st); break;                                               \
                case 5: tile(w, xb, bias, yb, i, 5, st); break;                                               \
                case 4: tile(w, xb, bias, yb, i, 4, st); break;                                               \
                case 3: tile(w, xb, bias, yb, i, 3, st); break;                                               \
                case 2: tile(w, xb, bias, yb, i, 2, st); break;                                               \
                default: tile(w, xb, bias, yb, i, 1, st); break;                                              \
                }                                                                                             \
                b0 += t;                                                                                      \
            }                                                                                                 \
        }                                                                                                     \
    }
#if defined(PWR_ISA_AVX512) && PWR_ISA_AVX512
PWR_GEMM_AVX2(bsr_sgemm_16x1_f32, tile_16x1_zmm, PWR_F32, 8)
PWR_GEMM_AVX2(bsr_sgemm_16x1_f16, tile_16x1_zmm, PWR_F16, 8)
#else
PWR_GEMM_AVX2(bsr_sgemm_16x1_f32, tile_16x1, PWR_F32, 6)
PWR_GEMM_AVX2(bsr_sgemm_16x1_f16, tile_16x1, PWR_F16, 6)
#endif
PWR_GEMM_AVX2(bsr_sgemm_4x4_f32, tile_4x4, PWR_F32, 6)
PWR_GEMM_AVX2(bsr_sgemm_4x4_f16, tile_4x4, PWR_F16, 6)
PWR_GEMM_AVX2(bsr_sgemm_1x1_f32, tile_1x1, PWR_F32, 4)
PWR_GEMM_AVX2(bsr_sgemm_1x1_f16, tile_1x1, PWR_F16, 4)
PWR_GEMM_AVX2(sgemm_dense_f32, tile_dense, PWR_F32, 4)
PWR_GEMM_AVX2(sgemm_dense_f16, tile_dense, PWR_F16, 4)

#endif
