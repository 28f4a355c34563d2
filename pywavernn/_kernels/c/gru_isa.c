/* gru_isa.c: the fused GRU gate update and the gate-input terms (plain, subscale and fused subscale models).
 *
 * Compiled once per ISA (see pwr_isa.h). The gate update's nonlinearities are fastmath.h's: in fast mode its
 * approximations (8-wide in the AVX2 copy), in exact mode the functions of docs/format.md §3a (pwr_sigmoid_exact,
 * pwr_tanh_exact), the bits of pywavernn/reference/ops.py in every copy.
 * gru_input_cols is the fused model's gate input (docs/format.md §12): any number of input columns, summed left to
 * right in float32 exactly as the spec orders them.
 * Preconditions: see pwr_kernels.h.
 */
#include "pwr_isa.h"

#include "fastmath.h"

void PWR_FN(gru_gates)(const float *rh, const float *gi, float *h, int32_t H, int32_t j0, int32_t j1, int exact) {
    const float *rh_u = rh, *rh_r = rh + H, *rh_e = rh + 2 * (size_t)H;
    const float *gi_u = gi, *gi_r = gi + H, *gi_e = gi + 2 * (size_t)H;
    int32_t j = j0;
    if (exact) {
        for (; j < j1; j++) {
            const float u = pwr_sigmoid_exact(gi_u[j] + rh_u[j]);
            const float r = pwr_sigmoid_exact(gi_r[j] + rh_r[j]);
            const float e = pwr_tanh_exact(gi_e[j] + r * rh_e[j]);
            h[j] = u * h[j] + (1.0f - u) * e;
        }
        return;
    }
#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
    /* Two passes over chunks of GATE_CHUNK units: first u and r (independent of each other), then e (which waits for
     * r) and h. In one pass every 8 units form one chain exp -> divide -> exp -> divide ~90 cycles long, longer than
     * the out-of-order window covers; split, each pass is a stream of independent work (measured 8.5 -> 5.9 cycles
     * a unit on the 2-vCPU EPYC). Every element sees exactly the one-pass operations, so h is bit-identical. */
    enum { GATE_CHUNK = 128 };
    const __m256 one = _mm256_set1_ps(1.0f);
    float ub[GATE_CHUNK], rb[GATE_CHUNK];
    while (j + 8 <= j1) {
        const int32_t end = j + GATE_CHUNK <= j1 ? j + GATE_CHUNK : j + (j1 - j) / 8 * 8;
        int32_t k = j;
        for (; k + 16 <= end; k += 16) { /* u and r of 16 units: four interleaved chains */
            __m256 v[4] = {_mm256_add_ps(_mm256_loadu_ps(gi_u + k), _mm256_loadu_ps(rh_u + k)),
                           _mm256_add_ps(_mm256_loadu_ps(gi_u + k + 8), _mm256_loadu_ps(rh_u + k + 8)),
                           _mm256_add_ps(_mm256_loadu_ps(gi_r + k), _mm256_loadu_ps(rh_r + k)),
                           _mm256_add_ps(_mm256_loadu_ps(gi_r + k + 8), _mm256_loadu_ps(rh_r + k + 8))};
            fast_sigmoid_8n(v, 4);
            _mm256_storeu_ps(ub + (k - j), v[0]);
            _mm256_storeu_ps(ub + (k - j) + 8, v[1]);
            _mm256_storeu_ps(rb + (k - j), v[2]);
            _mm256_storeu_ps(rb + (k - j) + 8, v[3]);
        }
        for (; k < end; k += 8) {
            _mm256_storeu_ps(ub + (k - j), fast_sigmoid_8(_mm256_add_ps(_mm256_loadu_ps(gi_u + k),
                                                                        _mm256_loadu_ps(rh_u + k))));
            _mm256_storeu_ps(rb + (k - j), fast_sigmoid_8(_mm256_add_ps(_mm256_loadu_ps(gi_r + k),
                                                                        _mm256_loadu_ps(rh_r + k))));
        }
        for (k = j; k + 32 <= end; k += 32) { /* e and h of 32 units: four interleaved chains */
            __m256 v[4];
            for (int q = 0; q < 4; q++)
                v[q] = _mm256_add_ps(_mm256_loadu_ps(gi_e + k + 8 * q),
                                     _mm256_mul_ps(_mm256_loadu_ps(rb + (k - j) + 8 * q),
                                                   _mm256_loadu_ps(rh_e + k + 8 * q)));
            fast_tanh_8n(v, 4);
            for (int q = 0; q < 4; q++) {
                const __m256 u = _mm256_loadu_ps(ub + (k - j) + 8 * q);
                _mm256_storeu_ps(h + k + 8 * q, _mm256_add_ps(_mm256_mul_ps(u, _mm256_loadu_ps(h + k + 8 * q)),
                                                              _mm256_mul_ps(_mm256_sub_ps(one, u), v[q])));
            }
        }
        for (; k < end; k += 8) {
            const __m256 u = _mm256_loadu_ps(ub + (k - j)), r = _mm256_loadu_ps(rb + (k - j));
            const __m256 e = fast_tanh_8(_mm256_add_ps(_mm256_loadu_ps(gi_e + k),
                                                       _mm256_mul_ps(r, _mm256_loadu_ps(rh_e + k))));
            const __m256 hv = _mm256_add_ps(_mm256_mul_ps(u, _mm256_loadu_ps(h + k)),
                                            _mm256_mul_ps(_mm256_sub_ps(one, u), e));
            _mm256_storeu_ps(h + k, hv);
        }
        j = end;
    }
#endif
    for (; j < j1; j++) {
        const float u = fast_sigmoid_1(gi_u[j] + rh_u[j]);
        const float r = fast_sigmoid_1(gi_r[j] + rh_r[j]);
        const float e = fast_tanh_1(gi_e[j] + r * rh_e[j]);
        h[j] = u * h[j] + (1.0f - u) * e;
    }
}

void PWR_FN(gru_input)(const float *w_in, int32_t n_in, const float *x, const float *g0, const float *g1, float a,
                       float *gi, int32_t H, int32_t j0, int32_t j1) {
    const float x0 = x[0], x1 = x[1], x2 = x[2];
    if (n_in == 4) { /* the linear prediction's column (docs/format.md §11), added after the others, before cond */
        const float x3 = x[3];
        for (int g = 0; g < 3; g++) {
            for (int32_t j = j0; j < j1; j++) {
                const size_t row = (size_t)g * H + j;
                const float cond = g0[row] + a * (g1[row] - g0[row]);
                const float *wr = w_in + 4 * row;
                const float v = (wr[0] * x0 + wr[1] * x1) + wr[2] * x2;
                const float est = wr[3] * x3; /* a statement of its own: never contracted into the add below */
                gi[row] = (v + est) + cond;
            }
        }
        return;
    }
    for (int g = 0; g < 3; g++) {
        for (int32_t j = j0; j < j1; j++) {
            const size_t row = (size_t)g * H + j;
            const float cond = g0[row] + a * (g1[row] - g0[row]);
            const float *wr = w_in + 3 * row;
            gi[row] = ((wr[0] * x0 + wr[1] * x1) + wr[2] * x2) + cond;
        }
    }
}

/* The subscale loop's gate input (pwr_kernels.h: pwr_gru_input_t_fn), conditioning and context included. The AVX2
 * copy does the very operations of the scalar body, lane by lane, with separate multiplies and adds (no FMA), so
 * its results are bit-identical to the generic copy's. */
void PWR_FN(gru_input_t)(const float *w_in_t, const float *x3, int with_x2, const float *g0, const float *g1, float a,
                         const float *pq, const float *bias, float *gi, int32_t H, int32_t j0, int32_t j1) {
    const float x0 = x3[0], x1 = x3[1], x2 = x3[2];
    const float *w0 = w_in_t, *w1 = w_in_t + 3 * (size_t)H, *w2 = w_in_t + 6 * (size_t)H;
    for (int32_t gate = 0; gate < 3; gate++) {
        int32_t r = gate * H + j0;
        const int32_t end = gate * H + j1;
#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
        const __m256 v0 = _mm256_set1_ps(x0), v1 = _mm256_set1_ps(x1), v2 = _mm256_set1_ps(x2);
        const __m256 av = _mm256_set1_ps(a);
        for (; r + 8 <= end; r += 8) {
            const __m256 c0 = _mm256_loadu_ps(g0 + r);
            const __m256 cond = _mm256_add_ps(c0, _mm256_mul_ps(av, _mm256_sub_ps(_mm256_loadu_ps(g1 + r), c0)));
            const __m256 q = _mm256_add_ps(cond, _mm256_add_ps(_mm256_loadu_ps(pq + r), _mm256_loadu_ps(bias + r)));
            __m256 v = _mm256_add_ps(_mm256_mul_ps(v0, _mm256_loadu_ps(w0 + r)),
                                     _mm256_mul_ps(v1, _mm256_loadu_ps(w1 + r)));
            if (with_x2) v = _mm256_add_ps(v, _mm256_mul_ps(v2, _mm256_loadu_ps(w2 + r)));
            _mm256_storeu_ps(gi + r, _mm256_add_ps(v, q));
        }
#endif
        for (; r < end; r++) {
            const float q = (g0[r] + a * (g1[r] - g0[r])) + (pq[r] + bias[r]);
            float v = x0 * w0[r] + x1 * w1[r];
            if (with_x2) v = v + x2 * w2[r];
            gi[r] = v + q;
        }
    }
}

/* The fused model's gate input (pwr_kernels.h: pwr_gru_input_cols_fn). Every copy does the scalar body's operations
 * per row (a multiply, then an add: no FMA), so every ISA gives the same bits. The AVX2 copy runs 16 rows at a time
 * in two independent chains (each a serial chain of n_in adds) and, for the column counts the fused loop uses
 * (8 .. 11), a body with n_in a constant: the columns unrolled, x broadcast once into registers. */
PWR_INLINE void input_cols_rows_scalar(const float *w_t, size_t ld, int32_t n_in, const float *x, const float *g0,
                                       const float *g1, float a, float *gi, int32_t r, int32_t end) {
    for (; r < end; r++) {
        float v = x[0] * w_t[r];
        for (int32_t c = 1; c < n_in; c++) {
            const float term = x[c] * w_t[(size_t)c * ld + r]; /* rounded on its own: never contracted */
            v = v + term;
        }
        gi[r] = v + (g0[r] + a * (g1[r] - g0[r]));
    }
}

#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
PWR_INLINE __m256 input_cols_8(const float *w_t, size_t ld, const int n_in, const __m256 *xv, const float *g0,
                               const float *g1, __m256 av, int32_t r) {
    __m256 v = _mm256_mul_ps(xv[0], _mm256_loadu_ps(w_t + r));
    for (int c = 1; c < n_in; c++) v = _mm256_add_ps(v, _mm256_mul_ps(xv[c], _mm256_loadu_ps(w_t + (size_t)c * ld + r)));
    const __m256 c0 = _mm256_loadu_ps(g0 + r);
    return _mm256_add_ps(v, _mm256_add_ps(c0, _mm256_mul_ps(av, _mm256_sub_ps(_mm256_loadu_ps(g1 + r), c0))));
}

PWR_INLINE void input_cols_avx2(const float *w_t, const int n_in, const float *x, const float *g0, const float *g1,
                                float a, float *gi, int32_t H, int32_t j0, int32_t j1) {
    const size_t ld = 3 * (size_t)H;
    const __m256 av = _mm256_set1_ps(a);
    __m256 xv[16];
    for (int c = 0; c < n_in && c < 16; c++) xv[c] = _mm256_set1_ps(x[c]);
    for (int32_t gate = 0; gate < 3; gate++) {
        int32_t r = gate * H + j0;
        const int32_t end = gate * H + j1;
        for (; r + 16 <= end; r += 16) {
            const __m256 v0 = input_cols_8(w_t, ld, n_in, xv, g0, g1, av, r);
            const __m256 v1 = input_cols_8(w_t, ld, n_in, xv, g0, g1, av, r + 8);
            _mm256_storeu_ps(gi + r, v0);
            _mm256_storeu_ps(gi + r + 8, v1);
        }
        for (; r + 8 <= end; r += 8) _mm256_storeu_ps(gi + r, input_cols_8(w_t, ld, n_in, xv, g0, g1, av, r));
        input_cols_rows_scalar(w_t, ld, n_in, x, g0, g1, a, gi, r, end);
    }
}
#endif

void PWR_FN(gru_input_cols)(const float *w_t, int32_t n_in, const float *x, const float *g0, const float *g1,
                            float a, float *gi, int32_t H, int32_t j0, int32_t j1) {
#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
    switch (n_in) { /* a constant n_in lets the compiler unroll the columns and keep x in registers */
    case 8: input_cols_avx2(w_t, 8, x, g0, g1, a, gi, H, j0, j1); return;
    case 9: input_cols_avx2(w_t, 9, x, g0, g1, a, gi, H, j0, j1); return;
    case 10: input_cols_avx2(w_t, 10, x, g0, g1, a, gi, H, j0, j1); return;
    case 11: input_cols_avx2(w_t, 11, x, g0, g1, a, gi, H, j0, j1); return;
    default:
        if (n_in <= 16) {
            input_cols_avx2(w_t, n_in, x, g0, g1, a, gi, H, j0, j1);
            return;
        }
    }
#endif
    const size_t ld = 3 * (size_t)H;
    for (int32_t gate = 0; gate < 3; gate++)
        input_cols_rows_scalar(w_t, ld, n_in, x, g0, g1, a, gi, gate * H + j0, gate * H + j1);
}

