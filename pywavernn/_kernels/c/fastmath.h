/* fastmath.h: exp, sigmoid and tanh in float32, as inline functions for the *_isa.c kernels and the samplers (not a
 * public header). Two families:
 *
 * Exact mode (pwr_exp_exact, pwr_sigmoid_exact, pwr_tanh_exact): the functions of docs/format.md §3a, written as the
 * same float32 operations, in the same order, as pywavernn/reference/ops.py (exp_ref, sigmoid_ref, tanh_ref), so
 * the C engines in exact mode and the NumPy reference compute the same bits on every input. Scalar C with separate
 * multiplies and adds: every file is compiled with -std=c11, which turns floating-point contraction (FMA) off, and
 * floorf is exact. Measured against float64 (tests/test_reference.py asserts the bounds in brackets):
 *   exp on [-87, 88]: max relative error 8.0e-8                           [1.5e-7]
 *   sigmoid, tanh on [-30, 30]: max abs error 8.9e-8, relative 1.5e-7    [2e-7]
 *   exp(x) = 0 below -87, exp(88) above 88 (finite).
 * Fast mode (fast_exp_1 .. and the AVX2 fast_*_8n): one exp approximation everywhere, the same algorithm as the
 * exact exp (Cephes expf: range reduction x = n ln2 + r, degree-5 polynomial on |r| <= ln2/2, 2^n from exponent
 * bits) but, in the AVX2 copies, with fused multiply-adds; from it sigmoid(x) = 1 / (1 + exp(-x)) and
 * tanh(x) = sign(x) (1 - t) / (1 + t), t = exp(-2|x|) in (0, 1] (no small-|x| polynomial: absolute error only).
 * Measured against float64 over 2e6 evenly spaced points (generic and AVX2 alike; tests/test_kernels.py asserts
 * the bounds in brackets):
 *   exp on [-87, 88]: max relative error 8.3e-8 (1.4 ulp)  [1.5e-7]
 *   sigmoid on [-30, 30]: max abs error 8.9e-8              [1.5e-7]
 *   tanh on [-30, 30]: max abs error 8.9e-8                 [1.5e-7]
 * ("Fast" because the AVX2 forms are 8-wide, branch-free and inlined into the gate update.)
 * Include after pwr_isa.h (the AVX2 forms need <immintrin.h> and PWR_INLINE).
 */
#ifndef PWR_FASTMATH_H
#define PWR_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

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

/* ---------------------------------------------------------------- exact mode: docs/format.md §3a */

/* The spec's exp is the scalar algorithm above, each operation rounded on its own (no FMA: -std=c11). */
static inline float pwr_exp_exact(float x) { return fast_exp_1(x); }
static inline float pwr_sigmoid_exact(float x) { return 1.0f / (1.0f + pwr_exp_exact(-x)); }

#define TANH_SMALL 0.625f
#define TANH_P0 -5.70498872745e-3f
#define TANH_P1 2.06390887954e-2f
#define TANH_P2 -5.37397155531e-2f
#define TANH_P3 1.33314422036e-1f
#define TANH_P4 -3.33332819422e-1f

/* |x| < 0.625: Cephes tanhf's odd polynomial x + x^3 P(x^2); above: (1 - t) / (1 + t), t = exp(-2|x|) <= 0.29. */
static inline float pwr_tanh_exact(float x) {
    const float a = fabsf(x);
    if (a < TANH_SMALL) {
        const float z = x * x;
        float p = TANH_P0;
        p = p * z + TANH_P1;
        p = p * z + TANH_P2;
        p = p * z + TANH_P3;
        p = p * z + TANH_P4;
        return (p * z) * x + x;
    }
    const float t = pwr_exp_exact(-2.0f * a);
    const float r = (1.0f - t) / (1.0f + t);
    return x < 0.0f ? -r : r;
}

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
#endif /* AVX2 */

#endif
