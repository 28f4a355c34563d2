/* gru_isa.c: the fused GRU gate update, the gate-input terms (plain, subscale and fused subscale), fast exp/sigmoid/tanh, softmax
 * sampling and the Laplace prior's logit terms (subscale and plain models).
 *
 * Compiled once per ISA (see pwr_isa.h). Fast mode uses one exp approximation everywhere (Cephes expf: range
 * reduction x = n ln2 + r, degree-5 polynomial on |r| <= ln2/2, 2^n from exponent bits); inputs above 88 are
 * clamped to 88, inputs below -87 give 0. From it:
 *   sigmoid(x) = 1 / (1 + exp(-x));   tanh(x) = sign(x) (1 - t) / (1 + t), t = exp(-2|x|) in (0, 1].
 * Measured against float64 over 2e6 evenly spaced points (generic and AVX2 alike; tests/test_kernels.py asserts
 * the bounds in brackets):
 *   exp on [-87, 88]: max relative error 8.3e-8 (1.4 ulp)  [1.5e-7]
 *   sigmoid on [-30, 30]: max abs error 8.9e-8              [1.5e-7]
 *   tanh on [-30, 30]: max abs error 8.9e-8                 [1.5e-7]
 * (About as accurate as libm; "fast" because it is 8-wide, branch-free and inlined into the gate update.)
 * Exact mode calls libm expf / tanhf element by element (every ISA), matching the NumPy reference to ~1 ulp.
 * gru_input_cols is the fused model's gate input (docs/format.md §12): any number of input columns, summed left to
 * right in float32 exactly as the spec orders them.
 * sample_softmax_rows draws from several rows at once (the subscale loop's B streams) with the very float32
 * operations of sample_softmax per row, so each row's class is the one sample_softmax returns.
 * Preconditions: see pwr_kernels.h.
 */
#include <math.h>

#include "pwr_isa.h"

#define EXP_HI 88.0f
#define EXP_LO -87.0f
#define LOG2EF 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

static inline float fast_exp_1(float x) {
    if (x < EXP_LO) return 0.0f; /* underflow flushes to 0, as expf does (softmax relies on exp(-inf) = 0) */
    x = x > EXP_HI ? EXP_HI : x;
    const float fx = floorf(x * LOG2EF + 0.5f);
    x = x - fx * EXP_C1;
    x = x - fx * EXP_C2;
    const float z = x * x;
    float y = EXP_P0;
    y = y * x + EXP_P1;
    y = y * x + EXP_P2;
    y = y * x + EXP_P3;
    y = y * x + EXP_P4;
    y = y * x + EXP_P5;
    y = y * z + x + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)fx + 127) << 23;
    float p2;
    memcpy(&p2, &bits, sizeof p2);
    return y * p2;
}
static inline float fast_sigmoid_1(float x) { return 1.0f / (1.0f + fast_exp_1(-x)); }
static inline float fast_tanh_1(float x) {
    const float t = fast_exp_1(-2.0f * fabsf(x));
    const float r = (1.0f - t) / (1.0f + t);
    return x < 0.0f ? -r : r;
}
static inline float exact_sigmoid_1(float x) { return 1.0f / (1.0f + expf(-x)); }

#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
/* The fast functions on N vectors at once, each step applied to all N before the next (N a compile-time constant,
 * at most 4; N = 1 is the one-vector form below). One exp is a chain of ~20 dependent operations; written one
 * vector after another, the chains fill the FP scheduler with operations that wait on each other. Interleaved,
 * N operations are ready each cycle. Every lane sees the same operations whatever N, so the results are
 * bit-identical. */
PWR_INLINE void fast_exp_8n(__m256 *v, const int N) {
    __m256 keep[4], fx[4], z[4], y[4];
    for (int i = 0; i < N; i++) {
        keep[i] = _mm256_cmp_ps(v[i], _mm256_set1_ps(EXP_LO), _CMP_GE_OQ);
        v[i] = _mm256_min_ps(_mm256_max_ps(v[i], _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
    }
    for (int i = 0; i < N; i++)
        fx[i] = _mm256_floor_ps(_mm256_fmadd_ps(v[i], _mm256_set1_ps(LOG2EF), _mm256_set1_ps(0.5f)));
    for (int i = 0; i < N; i++) v[i] = _mm256_fnmadd_ps(fx[i], _mm256_set1_ps(EXP_C1), v[i]);
    for (int i = 0; i < N; i++) v[i] = _mm256_fnmadd_ps(fx[i], _mm256_set1_ps(EXP_C2), v[i]);
    for (int i = 0; i < N; i++) {
        z[i] = _mm256_mul_ps(v[i], v[i]);
        y[i] = _mm256_fmadd_ps(_mm256_set1_ps(EXP_P0), v[i], _mm256_set1_ps(EXP_P1));
    }
    for (int i = 0; i < N; i++) y[i] = _mm256_fmadd_ps(y[i], v[i], _mm256_set1_ps(EXP_P2));
    for (int i = 0; i < N; i++) y[i] = _mm256_fmadd_ps(y[i], v[i], _mm256_set1_ps(EXP_P3));
    for (int i = 0; i < N; i++) y[i] = _mm256_fmadd_ps(y[i], v[i], _mm256_set1_ps(EXP_P4));
    for (int i = 0; i < N; i++) y[i] = _mm256_fmadd_ps(y[i], v[i], _mm256_set1_ps(EXP_P5));
    for (int i = 0; i < N; i++) y[i] = _mm256_add_ps(_mm256_fmadd_ps(y[i], z[i], v[i]), _mm256_set1_ps(1.0f));
    for (int i = 0; i < N; i++) {
        const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx[i]), _mm256_set1_epi32(127)), 23);
        v[i] = _mm256_and_ps(_mm256_mul_ps(y[i], _mm256_castsi256_ps(e)), keep[i]);
    }
}
PWR_INLINE void fast_sigmoid_8n(__m256 *v, const int N) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int i = 0; i < N; i++) v[i] = _mm256_sub_ps(_mm256_setzero_ps(), v[i]);
    fast_exp_8n(v, N);
    for (int i = 0; i < N; i++) v[i] = _mm256_div_ps(one, _mm256_add_ps(one, v[i]));
}
PWR_INLINE void fast_tanh_8n(__m256 *v, const int N) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 x[4], t[4];
    for (int i = 0; i < N; i++) {
        x[i] = v[i];
        t[i] = _mm256_mul_ps(_mm256_andnot_ps(sign, v[i]), _mm256_set1_ps(-2.0f));
    }
    fast_exp_8n(t, N);
    for (int i = 0; i < N; i++)
        v[i] = _mm256_or_ps(_mm256_div_ps(_mm256_sub_ps(one, t[i]), _mm256_add_ps(one, t[i])),
                            _mm256_and_ps(x[i], sign));
}
static inline __m256 fast_exp_8(__m256 x) {
    fast_exp_8n(&x, 1);
    return x;
}
static inline __m256 fast_sigmoid_8(__m256 x) {
    fast_sigmoid_8n(&x, 1);
    return x;
}
static inline __m256 fast_tanh_8(__m256 x) {
    fast_tanh_8n(&x, 1);
    return x;
}
#define PWR_MAP8(name, vec, scalar)                                                                           \
    void PWR_FN(name)(const float *x, float *y, int32_t n) {                                                  \
        int32_t i = 0;                                                                                        \
        for (; i + 32 <= n; i += 32) { /* four vectors interleaved (the _8n forms), same bits */              \
            __m256 v[4];                                                                                      \
            for (int q = 0; q < 4; q++) v[q] = _mm256_loadu_ps(x + i + 8 * q);                                \
            vec##n(v, 4);                                                                                     \
            for (int q = 0; q < 4; q++) _mm256_storeu_ps(y + i + 8 * q, v[q]);                                \
        }                                                                                                     \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, vec(_mm256_loadu_ps(x + i)));                      \
        for (; i < n; i++) y[i] = scalar(x[i]);                                                               \
    }
#else
#define PWR_MAP8(name, vec, scalar)                                                                           \
    void PWR_FN(name)(const float *x, float *y, int32_t n) {                                                  \
        for (int32_t i = 0; i < n; i++) y[i] = scalar(x[i]);                                                  \
    }
#endif

PWR_MAP8(fast_exp, fast_exp_8, fast_exp_1)
PWR_MAP8(fast_sigmoid, fast_sigmoid_8, fast_sigmoid_1)
PWR_MAP8(fast_tanh, fast_tanh_8, fast_tanh_1)

void PWR_FN(gru_gates)(const float *rh, const float *gi, float *h, int32_t H, int32_t j0, int32_t j1, int exact) {
    const float *rh_u = rh, *rh_r = rh + H, *rh_e = rh + 2 * (size_t)H;
    const float *gi_u = gi, *gi_r = gi + H, *gi_e = gi + 2 * (size_t)H;
    int32_t j = j0;
    if (exact) {
        for (; j < j1; j++) {
            const float u = exact_sigmoid_1(gi_u[j] + rh_u[j]);
            const float r = exact_sigmoid_1(gi_r[j] + rh_r[j]);
            const float e = tanhf(gi_e[j] + r * rh_e[j]);
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

int PWR_FN(sample_softmax)(const float *logits, float u, float *cdf, int exact) {
    float mx = logits[0];
    for (int k = 1; k < 256; k++) mx = logits[k] > mx ? logits[k] : mx;
    for (int k = 0; k < 256; k++) cdf[k] = logits[k] - mx;
    if (exact) {
        for (int k = 0; k < 256; k++) cdf[k] = expf(cdf[k]);
    } else {
        PWR_FN(fast_exp)(cdf, cdf, 256);
    }
    for (int k = 1; k < 256; k++) cdf[k] += cdf[k - 1]; /* sequential, as docs/format.md §4 requires */
    const float threshold = u * cdf[255];
    for (int k = 0; k < 256; k++)
        if (cdf[k] > threshold) return k;
    return 255;
}

/* Rows r < n of logits (n, 256): k[r] = sample_softmax(logits + 256 r, u[r * u_stride]). The generic copy is that
 * loop. The AVX2 copy takes 8 rows at a time with one row per lane: it transposes them to (256, 8) and runs the
 * per-row steps of sample_softmax down the columns, so every lane does the same float32 operations in the same
 * order as the one-row kernel (max over the row, l - max, exp, the running sum in index order, the threshold
 * u * cdf[255], the first index above it). The running sum is a serial chain of 255 adds per row; 8 chains in one
 * register take the latency of one, and in fast mode the exps are computed in the same loop, where they fill the
 * adds' latency. The first index above the threshold is found by bisection of the (non-decreasing) running sums,
 * which returns the index the linear scan would. A last group of fewer than 8 rows repeats its first row in the
 * spare lanes.
 * scratch has 8 * 256 floats. */
void PWR_FN(sample_softmax_rows)(const float *logits, int32_t n, const float *u, int32_t u_stride, int32_t *k,
                                 float *scratch, int exact) {
    int32_t r = 0;
#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
    for (; r < n; r += 8) {
        const int32_t nr = n - r < 8 ? n - r : 8;
        const float *row[8];
        float uu[8];
        for (int q = 0; q < 8; q++) {
            const int32_t rq = r + (q < nr ? q : 0);
            row[q] = logits + (size_t)rq * 256;
            uu[q] = u[(size_t)rq * (size_t)u_stride];
        }
        __m256 *col = (__m256 *)scratch; /* col[c] lane q = row q's entry c; scratch needs no alignment */
        __m256 mx = _mm256_setzero_ps();
        for (int c = 0; c < 256; c += 8) { /* 8x8 transpose of rows' entries c..c+7 */
            const __m256 a0 = _mm256_loadu_ps(row[0] + c), a1 = _mm256_loadu_ps(row[1] + c);
            const __m256 a2 = _mm256_loadu_ps(row[2] + c), a3 = _mm256_loadu_ps(row[3] + c);
            const __m256 a4 = _mm256_loadu_ps(row[4] + c), a5 = _mm256_loadu_ps(row[5] + c);
            const __m256 a6 = _mm256_loadu_ps(row[6] + c), a7 = _mm256_loadu_ps(row[7] + c);
            const __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
            const __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
            const __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
            const __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
            const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            __m256 v[8];
            v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
            v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
            v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
            v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
            v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
            v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
            v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
            v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
            if (c == 0) mx = v[0];
            for (int q = 0; q < 8; q++) {
                mx = _mm256_max_ps(v[q], mx); /* sample_softmax's l > mx ? l : mx, NaN entries skipped alike */
                _mm256_storeu_ps((float *)(col + c + q), v[q]);
            }
        }
        __m256 acc;
        if (exact) {
            float d[8];
            for (int c = 0; c < 256; c++) {
                _mm256_storeu_ps(d, _mm256_sub_ps(_mm256_loadu_ps((float *)(col + c)), mx));
                for (int q = 0; q < 8; q++) d[q] = expf(d[q]);
                _mm256_storeu_ps((float *)(col + c), _mm256_loadu_ps(d));
            }
            acc = _mm256_loadu_ps((float *)col);
            for (int c = 1; c < 256; c++) { /* cdf[c] = cdf[c - 1] + p[c], per lane */
                acc = _mm256_add_ps(acc, _mm256_loadu_ps((float *)(col + c)));
                _mm256_storeu_ps((float *)(col + c), acc);
            }
        } else { /* the same p[c] and running sum in one pass: the exps (independent) overlap the serial adds */
            acc = fast_exp_8(_mm256_sub_ps(_mm256_loadu_ps((float *)col), mx));
            _mm256_storeu_ps((float *)col, acc);
            int c = 1;
            for (; c + 4 <= 256; c += 4) { /* four columns' exps interleaved (fast_exp_8n), then their adds */
                __m256 p[4];
                for (int q = 0; q < 4; q++) p[q] = _mm256_sub_ps(_mm256_loadu_ps((float *)(col + c + q)), mx);
                fast_exp_8n(p, 4);
                for (int q = 0; q < 4; q++) {
                    acc = _mm256_add_ps(acc, p[q]);
                    _mm256_storeu_ps((float *)(col + c + q), acc);
                }
            }
            for (; c < 256; c++) {
                acc = _mm256_add_ps(acc, fast_exp_8(_mm256_sub_ps(_mm256_loadu_ps((float *)(col + c)), mx)));
                _mm256_storeu_ps((float *)(col + c), acc);
            }
        }
        const __m256 thr = _mm256_mul_ps(_mm256_loadu_ps(uu), acc);
        /* Per lane, the first c with cdf[c] > threshold (255 if none), found by bisection: each lane's cdf is a
         * running sum of p >= 0, so it never decreases, and "cdf[c] > threshold" is false up to some index and true
         * from it on. base counts the entries not above the threshold (8 halvings of 256, branch-free); that count
         * is the index of the first one above it, the one the linear scan of sample_softmax returns. */
        float th[8];
        int32_t out[8];
        _mm256_storeu_ps(th, thr);
        const float *cdf = (const float *)col;
        for (int q = 0; q < 8; q++) {
            int32_t base = 0;
            for (int32_t step = 128; step >= 1; step >>= 1)
                base += (cdf[(size_t)(base + step - 1) * 8 + (size_t)q] > th[q]) ? 0 : step;
            out[q] = base < 256 ? base : 255;
        }
        for (int q = 0; q < nr; q++) k[r + q] = out[q];
    }
#endif
    for (; r < n; r++) k[r] = PWR_FN(sample_softmax)(logits + (size_t)r * 256, u[(size_t)r * (size_t)u_stride],
                                                      scratch, exact);
}

/* The Laplace prior of a subscale model (§9) or a plain one (§11) (pwr_kernels.h, pwr_prior_fn). A bin wholly on
 * one side of mu, at distance d to its nearer edge, gets side - d / b; beyond d = (side - FLOOR) b that is below the
 * floor, so only the bins within that reach (widened by two bins, far more than float32 rounding needs, and to whole
 * groups of 16 so the loop runs in full vectors) evaluate it and the rest add FLOOR, which is what the formula would
 * give them. The bin or two whose d <= 0 hold mu get the exact formula, from their logits as they were. Bin starts
 * are integers below 2^24: exact. */
#define PRIOR_FLOOR (-16.0f)
#define PRIOR_LOG_B_MIN (-3.0f)
#define PRIOR_LOG_B_MAX 12.0f

static inline int32_t prior_bin(float k) { return k < 0.0f ? 0 : k > 256.0f ? 256 : (int32_t)k; }

void PWR_FN(laplace_prior)(float *restrict logits, float lo0, float width, float mu, const float *restrict w,
                           float bias, const float *restrict hid, int32_t K) {
    float acc[8] = {0}; /* eight running sums side by side (vector lanes), then added in order */
    const int32_t k8 = K - K % 8;
    for (int32_t k = 0; k < k8; k += 8)
        for (int32_t j = 0; j < 8; j++) acc[j] += w[k + j] * hid[k + j];
    for (int32_t k = k8; k < K; k++) acc[k % 8] += w[k] * hid[k];
    float z = 0.0f;
    for (int32_t j = 0; j < 8; j++) z += acc[j];
    z += bias;
    z = z < PRIOR_LOG_B_MIN ? PRIOR_LOG_B_MIN : z > PRIOR_LOG_B_MAX ? PRIOR_LOG_B_MAX : z;
    const float inv_b = expf(-z);
    const float side = logf(-expm1f(-(width * inv_b))) - 0.693147182f; /* float32(log 2) */
    int32_t held[3], n_held = 0; /* the bins holding mu: (mu - lo0) / width rounded down, or a neighbour */
    float kept[3];
    const float kf = (mu - lo0) / width;
    if (kf > -2.0f && kf < 257.0f) {
        const int32_t k0 = (int32_t)kf;
        for (int32_t k = k0 - 1; k <= k0 + 1; k++) {
            if (k < 0 || k >= 256) continue;
            const float lo = lo0 + (float)k * width, hi = lo + width, a = lo - mu, c = mu - hi;
            if ((a > c ? a : c) > 0.0f) continue;
            held[n_held] = k;
            kept[n_held++] = logits[k];
        }
    }
    float reach = (side - PRIOR_FLOOR) / inv_b; /* d beyond this: below the floor */
    reach = reach > 0.0f ? reach : 0.0f;
    const int32_t k_lo = prior_bin((mu - reach - lo0) / width - 2.0f) & ~15;
    const int32_t k_hi = (prior_bin((mu + reach - lo0) / width + 3.0f) + 15) & ~15;
    for (int32_t k = 0; k < k_lo; k++) logits[k] += PRIOR_FLOOR;
    for (int32_t k = k_lo; k < k_hi; k++) {
        const float lo = lo0 + (float)k * width, hi = lo + width;
        const float a = lo - mu, c = mu - hi;
        const float d = a > c ? a : c;
        const float p = d * inv_b;
        const float t = side - p;
        logits[k] += t > PRIOR_FLOOR ? t : PRIOR_FLOOR;
    }
    for (int32_t k = k_hi; k < 256; k++) logits[k] += PRIOR_FLOOR;
    for (int32_t j = 0; j < n_held; j++) {
        const int32_t k = held[j];
        const float lo = lo0 + (float)k * width, hi = lo + width;
        const float t = logf(-0.5f * (expm1f((lo - mu) * inv_b) + expm1f(-((hi - mu) * inv_b))));
        logits[k] = kept[j] + (t > PRIOR_FLOOR ? t : PRIOR_FLOOR);
    }
}
