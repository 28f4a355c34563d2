/* fastmath_isa.c: the fast nonlinearities as elementwise kernels over arrays (pwr_kernels.h: pwr_map_fn), for the
 * tests and benchmarks that check their accuracy; the loops use the inline forms of fastmath.h directly.
 * Compiled once per ISA (see pwr_isa.h). The AVX2 copy takes 32 then 8 elements at a time (the _8n forms, same bits
 * whatever the grouping), the rest with the scalar form. Preconditions: see pwr_kernels.h.
 */
#include "pwr_isa.h"

#include "fastmath.h"

#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
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
