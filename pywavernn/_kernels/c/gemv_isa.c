/* gemv_isa.c: y = W x (+ bias) over a block-row range, W dense or block-CSR (16x1, 4x4, 1x1), fp32/fp16 storage;
 * and the ordered products of exact mode (*_ordered, gemv and gemm).
 *
 * Compiled once per ISA (see pwr_isa.h). The portable bodies are the definition of correct (terms added in
 * block order, then column order within a block, starting from the bias; no FMA contraction: -std=c11 turns it
 * off); the AVX2 bodies use FMA and keep 2-4 independent accumulators, so their rounding differs within the
 * bound tested in tests/test_kernels.py. Every output row is computed by one code path whatever the row range,
 * so results never depend on how a caller splits rows. Preconditions: see pwr_kernels.h.
 * The avx512 copy keeps these 8-lane bodies: the one-column products are bound by cache bandwidth, not by
 * instructions (a 16-lane 16x1 gemv measured within 3 % of this one on Zen 4), and on CPUs that lower the clock
 * for 512-bit work (Intel's Skylake-SP) 16-lane registers would slow the plain loop down for nothing.
 * The ordered products (pwr_kernels.h: gemv_ordered, gemm_ordered) are exact mode's: the portable bodies' order in
 * every copy (docs/format.md §3a), so every ISA gives the bits of pywavernn.reference.ops.matvec_ref. The AVX2 copy
 * vectorises across rows, never within one: a 16x1 block row's 16 rows are two vectors, a dense matrix is taken
 * 8 rows x 8 columns at a time and transposed in registers so that lane r holds row r; each lane does one rounded
 * multiply and one rounded add per column, in column order. 4x4 and 1x1 use the portable body.
 */
#include "pwr_isa.h"

/* ---------------------------------------------------------------- portable bodies (generic, NEON) */

PWR_INLINE void dense_gemv_portable(const pwr_matrix *w, const float *x, const float *bias, float *y, int32_t r0,
                                    int32_t r1, int st) {
    const size_t n = (size_t)w->n;
    for (int32_t i = r0; i < r1; i++) {
        float acc = bias ? bias[i] : 0.0f;
        for (size_t j = 0; j < n; j++) acc += pwr_load_w(w->values, (size_t)i * n + j, st) * x[j];
        y[i] = acc;
    }
}

PWR_INLINE void bsr_gemv_portable(const pwr_matrix *w, const float *x, const float *bias, float *y, int32_t r0,
                                  int32_t r1, int BH, int BW, int st) {
    const int32_t *rp = w->row_ptr, *ci = w->col_idx;
    for (int32_t i = r0; i < r1; i++) {
        float acc[16];
        for (int r = 0; r < BH; r++) acc[r] = bias ? bias[(size_t)i * BH + r] : 0.0f;
        for (int32_t k = rp[i]; k < rp[i + 1]; k++) {
            const float *xc = x + (size_t)ci[k] * BW;
            const size_t base = (size_t)k * BH * BW;
            for (int r = 0; r < BH; r++)
                for (int c = 0; c < BW; c++) acc[r] += pwr_load_w(w->values, base + (size_t)r * BW + c, st) * xc[c];
        }
        for (int r = 0; r < BH; r++) y[(size_t)i * BH + r] = acc[r];
    }
}

#if !(defined(PWR_ISA_AVX2) && PWR_ISA_AVX2)

#define PWR_GEMV_PORTABLE(shape, BH, BW)                                                                      \
    void PWR_FN(bsr_sgemv_##shape##_f32)(const pwr_matrix *w, const float *x, const float *b, float *y,      \
                                         int32_t r0, int32_t r1) {                                           \
        bsr_gemv_portable(w, x, b, y, r0, r1, BH, BW, PWR_F32);                                              \
    }                                                                                                         \
    void PWR_FN(bsr_sgemv_##shape##_f16)(const pwr_matrix *w, const float *x, const float *b, float *y,      \
                                         int32_t r0, int32_t r1) {                                           \
        bsr_gemv_portable(w, x, b, y, r0, r1, BH, BW, PWR_F16);                                              \
    }
PWR_GEMV_PORTABLE(16x1, 16, 1)
PWR_GEMV_PORTABLE(4x4, 4, 4)
PWR_GEMV_PORTABLE(1x1, 1, 1)

void PWR_FN(sgemv_dense_f32)(const pwr_matrix *w, const float *x, const float *b, float *y, int32_t r0, int32_t r1) {
    dense_gemv_portable(w, x, b, y, r0, r1, PWR_F32);
}
void PWR_FN(sgemv_dense_f16)(const pwr_matrix *w, const float *x, const float *b, float *y, int32_t r0, int32_t r1) {
    dense_gemv_portable(w, x, b, y, r0, r1, PWR_F16);
}

#else /* ---------------------------------------------------------------- AVX2 + FMA + F16C */

/* One dense row: 8-wide FMA accumulation, horizontal sum, scalar tail, then the bias. The 4-row path below
 * performs exactly this sequence per row, so row grouping never changes a result. */
PWR_INLINE float dense_row_avx2(const void *v, size_t row_off, size_t n, const float *x, int st) {
    __m256 acc = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) acc = _mm256_fmadd_ps(ld8(v, row_off + j, st), _mm256_loadu_ps(x + j), acc);
    float s = hsum8(acc);
    for (; j < n; j++) s += pwr_load_w(v, row_off + j, st) * x[j];
    return s;
}

PWR_INLINE void dense_gemv_avx2(const pwr_matrix *w, const float *x, const float *bias, float *y, int32_t r0,
                                int32_t r1, int st) {
    const size_t n = (size_t)w->n;
    const void *v = w->values;
    int32_t i = r0;
    for (; i + 4 <= r1; i += 4) { /* 4 rows share each load of x */
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const size_t o = (size_t)i * n;
        size_t j = 0;
        for (; j + 8 <= n; j += 8) {
            const __m256 xv = _mm256_loadu_ps(x + j);
            a0 = _mm256_fmadd_ps(ld8(v, o + j, st), xv, a0);
            a1 = _mm256_fmadd_ps(ld8(v, o + n + j, st), xv, a1);
            a2 = _mm256_fmadd_ps(ld8(v, o + 2 * n + j, st), xv, a2);
            a3 = _mm256_fmadd_ps(ld8(v, o + 3 * n + j, st), xv, a3);
        }
        float s[4] = {hsum8(a0), hsum8(a1), hsum8(a2), hsum8(a3)};
        for (int r = 0; r < 4; r++) {
            for (size_t jj = j; jj < n; jj++) s[r] += pwr_load_w(v, o + (size_t)r * n + jj, st) * x[jj];
            y[i + r] = bias ? bias[i + r] + s[r] : s[r];
        }
    }
    for (; i < r1; i++) {
        const float s = dense_row_avx2(v, (size_t)i * n, n, x, st);
        y[i] = bias ? bias[i] + s : s;
    }
}

PWR_INLINE void bsr_gemv_16x1_avx2(const pwr_matrix *w, const float *x, const float *bias, float *y, int32_t r0,
                                   int32_t r1, int st) {
    const int32_t *rp = w->row_ptr, *ci = w->col_idx;
    const void *v = w->values;
    for (int32_t i = r0; i < r1; i++) {
        __m256 a0 = bias ? _mm256_loadu_ps(bias + 16 * (size_t)i) : _mm256_setzero_ps();
        __m256 a1 = bias ? _mm256_loadu_ps(bias + 16 * (size_t)i + 8) : _mm256_setzero_ps();
        __m256 b0 = _mm256_setzero_ps(), b1 = b0; /* second chain hides FMA latency */
        int32_t k = rp[i];
        const int32_t kend = rp[i + 1];
        for (; k + 2 <= kend; k += 2) {
            const __m256 x0 = _mm256_broadcast_ss(x + ci[k]), x1 = _mm256_broadcast_ss(x + ci[k + 1]);
            a0 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k, st), x0, a0);
            a1 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k + 8, st), x0, a1);
            b0 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k + 16, st), x1, b0);
            b1 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k + 24, st), x1, b1);
        }
        if (k < kend) {
            const __m256 x0 = _mm256_broadcast_ss(x + ci[k]);
            a0 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k, st), x0, a0);
            a1 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k + 8, st), x0, a1);
        }
        _mm256_storeu_ps(y + 16 * (size_t)i, _mm256_add_ps(a0, b0));
        _mm256_storeu_ps(y + 16 * (size_t)i + 8, _mm256_add_ps(a1, b1));
    }
}

/* acc01 = [row0 partials | row1 partials], acc23 = [row2 | row3] -> the four row sums. */
PWR_INLINE __m128 reduce_4x4(__m256 acc01, __m256 acc23) {
    const __m256 h = _mm256_hadd_ps(acc01, acc23); /* lane0: r0 r0 r2 r2, lane1: r1 r1 r3 r3 */
    const __m256 h2 = _mm256_hadd_ps(h, h);        /* lane0: r0 r2 r0 r2, lane1: r1 r3 r1 r3 */
    return _mm_unpacklo_ps(_mm256_castps256_ps128(h2), _mm256_extractf128_ps(h2, 1));
}

PWR_INLINE void bsr_gemv_4x4_avx2(const pwr_matrix *w, const float *x, const float *bias, float *y, int32_t r0,
                                  int32_t r1, int st) {
    const int32_t *rp = w->row_ptr, *ci = w->col_idx;
    const void *v = w->values;
    for (int32_t i = r0; i < r1; i++) {
        __m256 a01 = _mm256_setzero_ps(), a23 = a01, b01 = a01, b23 = a01;
        int32_t k = rp[i];
        const int32_t kend = rp[i + 1];
        for (; k + 2 <= kend; k += 2) {
            const __m256 x0 = _mm256_broadcast_ps((const __m128 *)(x + 4 * (size_t)ci[k]));
            const __m256 x1 = _mm256_broadcast_ps((const __m128 *)(x + 4 * (size_t)ci[k + 1]));
            a01 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k, st), x0, a01);
            a23 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k + 8, st), x0, a23);
            b01 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k + 16, st), x1, b01);
            b23 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k + 24, st), x1, b23);
        }
        if (k < kend) {
            const __m256 x0 = _mm256_broadcast_ps((const __m128 *)(x + 4 * (size_t)ci[k]));
            a01 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k, st), x0, a01);
            a23 = _mm256_fmadd_ps(ld8(v, 16 * (size_t)k + 8, st), x0, a23);
        }
        __m128 s = reduce_4x4(_mm256_add_ps(a01, b01), _mm256_add_ps(a23, b23));
        if (bias) s = _mm_add_ps(s, _mm_loadu_ps(bias + 4 * (size_t)i));
        _mm_storeu_ps(y + 4 * (size_t)i, s);
    }
}

PWR_INLINE void bsr_gemv_1x1_avx2(const pwr_matrix *w, const float *x, const float *bias, float *y, int32_t r0,
                                  int32_t r1, int st) {
    const int32_t *rp = w->row_ptr, *ci = w->col_idx;
    const void *v = w->values;
    for (int32_t i = r0; i < r1; i++) {
        __m256 acc = _mm256_setzero_ps();
        int32_t k = rp[i];
        const int32_t kend = rp[i + 1];
        for (; k + 8 <= kend; k += 8) {
            const __m256i idx = _mm256_loadu_si256((const __m256i *)(ci + k));
            acc = _mm256_fmadd_ps(ld8(v, (size_t)k, st), _mm256_i32gather_ps(x, idx, 4), acc);
        }
        float s = hsum8(acc);
        for (; k < kend; k++) s += pwr_load_w(v, (size_t)k, st) * x[ci[k]];
        y[i] = bias ? bias[i] + s : s;
    }
}

#define PWR_GEMV_AVX2(shape)                                                                                  \
    void PWR_FN(bsr_sgemv_##shape##_f32)(const pwr_matrix *w, const float *x, const float *b, float *y,      \
                                         int32_t r0, int32_t r1) {                                           \
        bsr_gemv_##shape##_avx2(w, x, b, y, r0, r1, PWR_F32);                                                \
    }                                                                                                         \
    void PWR_FN(bsr_sgemv_##shape##_f16)(const pwr_matrix *w, const float *x, const float *b, float *y,      \
                                         int32_t r0, int32_t r1) {                                           \
        bsr_gemv_##shape##_avx2(w, x, b, y, r0, r1, PWR_F16);                                                \
    }
PWR_GEMV_AVX2(16x1)
PWR_GEMV_AVX2(4x4)
PWR_GEMV_AVX2(1x1)

void PWR_FN(sgemv_dense_f32)(const pwr_matrix *w, const float *x, const float *b, float *y, int32_t r0, int32_t r1) {
    dense_gemv_avx2(w, x, b, y, r0, r1, PWR_F32);
}
void PWR_FN(sgemv_dense_f16)(const pwr_matrix *w, const float *x, const float *b, float *y, int32_t r0, int32_t r1) {
    dense_gemv_avx2(w, x, b, y, r0, r1, PWR_F16);
}

#endif


/* ---------------------------------------------------------------- ordered products (exact mode, every copy) */

#if !(defined(PWR_ISA_AVX2) && PWR_ISA_AVX2)
#define PWR_ORDERED_16X1(w, x, b, y, r0, r1, st) bsr_gemv_portable(w, x, b, y, r0, r1, 16, 1, st)
#define PWR_ORDERED_DENSE(w, x, b, y, r0, r1, st) dense_gemv_portable(w, x, b, y, r0, r1, st)
#else
/* Block rows of a 16x1 matrix: rows in lanes, blocks (columns) in order; a multiply, then an add, per block. */
PWR_INLINE void bsr_gemv_16x1_ordered(const pwr_matrix *w, const float *x, const float *bias, float *y, int32_t r0,
                                      int32_t r1, int st) {
    const int32_t *rp = w->row_ptr, *ci = w->col_idx;
    const void *v = w->values;
    for (int32_t i = r0; i < r1; i++) {
        __m256 a0 = bias ? _mm256_loadu_ps(bias + 16 * (size_t)i) : _mm256_setzero_ps();
        __m256 a1 = bias ? _mm256_loadu_ps(bias + 16 * (size_t)i + 8) : _mm256_setzero_ps();
        for (int32_t k = rp[i]; k < rp[i + 1]; k++) {
            const __m256 xk = _mm256_broadcast_ss(x + ci[k]);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(ld8(v, 16 * (size_t)k, st), xk));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(ld8(v, 16 * (size_t)k + 8, st), xk));
        }
        _mm256_storeu_ps(y + 16 * (size_t)i, a0);
        _mm256_storeu_ps(y + 16 * (size_t)i + 8, a1);
    }
}

/* r[0..7] = 8 rows of 8 floats -> r[c] = column c of them (lane q = row q). */
PWR_INLINE void transpose8(__m256 *r) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Dense rows 8 at a time (lane q = row i + q): 8 columns loaded per row, transposed, then per column a multiply
 * and an add in every lane; the last n % 8 columns per row in scalar code, after the others, in order. Rows left
 * over (fewer than 8) run the portable body, which is the same sequence per row. */
PWR_INLINE void dense_gemv_ordered(const pwr_matrix *w, const float *x, const float *bias, float *y, int32_t r0,
                                   int32_t r1, int st) {
    const size_t n = (size_t)w->n;
    const void *v = w->values;
    int32_t i = r0;
    for (; i + 8 <= r1; i += 8) {
        __m256 acc = bias ? _mm256_loadu_ps(bias + i) : _mm256_setzero_ps();
        size_t j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 col[8];
            for (int q = 0; q < 8; q++) col[q] = ld8(v, (size_t)(i + q) * n + j, st);
            transpose8(col);
            for (int c = 0; c < 8; c++) acc = _mm256_add_ps(acc, _mm256_mul_ps(col[c], _mm256_broadcast_ss(x + j + c)));
        }
        float s[8];
        _mm256_storeu_ps(s, acc);
        for (int q = 0; q < 8; q++) {
            for (size_t jj = j; jj < n; jj++) {
                const float term = pwr_load_w(v, (size_t)(i + q) * n + jj, st) * x[jj];
                s[q] = s[q] + term;
            }
            y[i + q] = s[q];
        }
    }
    dense_gemv_portable(w, x, bias, y, i, r1, st);
}
#define PWR_ORDERED_16X1(w, x, b, y, r0, r1, st) bsr_gemv_16x1_ordered(w, x, b, y, r0, r1, st)
#define PWR_ORDERED_DENSE(w, x, b, y, r0, r1, st) dense_gemv_ordered(w, x, b, y, r0, r1, st)
#endif

/* gemv_ordered per shape and storage; gemm_ordered runs it on each right-hand side (column b == gemv(x[b])). */
#define PWR_ORDERED(name, body)                                                                               \
    void PWR_FN(PWR_CAT(name, _f32))(const pwr_matrix *w, const float *x, const float *b, float *y, int32_t r0, \
                                     int32_t r1) {                                                            \
        body(w, x, b, y, r0, r1, PWR_F32);                                                                    \
    }                                                                                                         \
    void PWR_FN(PWR_CAT(name, _f16))(const pwr_matrix *w, const float *x, const float *b, float *y, int32_t r0, \
                                     int32_t r1) {                                                            \
        body(w, x, b, y, r0, r1, PWR_F16);                                                                    \
    }
#define PWR_ORDERED_4X4(w, x, b, y, r0, r1, st) bsr_gemv_portable(w, x, b, y, r0, r1, 4, 4, st)
#define PWR_ORDERED_1X1(w, x, b, y, r0, r1, st) bsr_gemv_portable(w, x, b, y, r0, r1, 1, 1, st)
PWR_ORDERED(sgemv_dense_ordered, PWR_ORDERED_DENSE)
PWR_ORDERED(bsr_sgemv_16x1_ordered, PWR_ORDERED_16X1)
PWR_ORDERED(bsr_sgemv_4x4_ordered, PWR_ORDERED_4X4)
PWR_ORDERED(bsr_sgemv_1x1_ordered, PWR_ORDERED_1X1)

#define PWR_ORDERED_GEMM(name, gemv)                                                                          \
    void PWR_FN(PWR_CAT(name, _f32))(const pwr_matrix *w, const float *const *x, int32_t nrhs, const float *b, \
                                     float *y, int32_t r0, int32_t r1) {                                      \
        for (int32_t j = 0; j < nrhs; j++) PWR_FN(PWR_CAT(gemv, _f32))(w, x[j], b, y + (size_t)j * w->m, r0, r1); \
    }                                                                                                         \
    void PWR_FN(PWR_CAT(name, _f16))(const pwr_matrix *w, const float *const *x, int32_t nrhs, const float *b, \
                                     float *y, int32_t r0, int32_t r1) {                                      \
        for (int32_t j = 0; j < nrhs; j++) PWR_FN(PWR_CAT(gemv, _f16))(w, x[j], b, y + (size_t)j * w->m, r0, r1); \
    }
PWR_ORDERED_GEMM(sgemm_dense_ordered, sgemv_dense_ordered)
PWR_ORDERED_GEMM(bsr_sgemm_16x1_ordered, bsr_sgemv_16x1_ordered)
PWR_ORDERED_GEMM(bsr_sgemm_4x4_ordered, bsr_sgemv_4x4_ordered)
PWR_ORDERED_GEMM(bsr_sgemm_1x1_ordered, bsr_sgemv_1x1_ordered)
