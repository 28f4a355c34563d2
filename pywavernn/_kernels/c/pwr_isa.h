/* pwr_isa.h: internal helpers shared by the *_isa.c kernel sources (not a public header).
 *
 * Each *_isa.c is compiled once per ISA by setup.py with PWR_ISA_<NAME>=1 (GENERIC, AVX2, NEON). PWR_FN(name)
 * gives each copy its own symbols (name_generic, name_avx2, name_neon). Intrinsics appear only under
 * PWR_ISA_AVX2; the NEON copy is currently the portable C body compiled for AArch64 (auto-vectorised).
 * Storage (fp32 / fp16) is a compile-time constant argument of always-inline bodies, so each exported kernel is
 * specialised for one storage type without duplicating its source.
 */
#ifndef PWR_ISA_INTERNAL_H
#define PWR_ISA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pwr_kernels.h"

#define PWR_CAT_(a, b) a##b
#define PWR_CAT(a, b) PWR_CAT_(a, b)

#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
#define PWR_SUFFIX _avx2
#define PWR_SUFFIX_NAME "avx2"
#define PWR_TABLE_NAME pwr_kernels_avx2
#include <immintrin.h>
#elif defined(PWR_ISA_NEON) && PWR_ISA_NEON
#define PWR_SUFFIX _neon
#define PWR_SUFFIX_NAME "neon"
#define PWR_TABLE_NAME pwr_kernels_neon
#else
#define PWR_SUFFIX _generic
#define PWR_SUFFIX_NAME "generic"
#define PWR_TABLE_NAME pwr_kernels_generic
#endif
#define PWR_FN(name) PWR_CAT(name, PWR_SUFFIX)

#define PWR_INLINE static inline __attribute__((always_inline))

/* IEEE 754 binary16 bits -> float, portable and branch-light: the half's exponent and mantissa, shifted into a
 * float's bit positions, read as a float are the half's magnitude times 2^-112 exactly (normals and subnormals
 * alike), so one multiply by 2^112 restores it; infinities and NaNs are patched, the sign is ORed back. */
static inline float pwr_half_to_float(uint16_t hbits) {
    const uint32_t em = hbits & 0x7fffu;
    uint32_t bits = em << 13;
    float f;
    memcpy(&f, &bits, sizeof f);
    f *= 0x1p112f;
    memcpy(&bits, &f, sizeof bits);
    if (em >= 0x7c00u) bits = 0x7f800000u | ((em & 0x3ffu) << 13); /* inf, NaN */
    bits |= (uint32_t)(hbits & 0x8000u) << 16;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Weight i of a values array of the given storage, as float. */
PWR_INLINE float pwr_load_w(const void *v, size_t i, int storage) {
    return storage == PWR_F16 ? pwr_half_to_float(((const uint16_t *)v)[i]) : ((const float *)v)[i];
}

/* Functions of one ISA copy, referenced by its table (table_isa.c). */
#define PWR_DECL_MV(shape)                                                                                    \
    void PWR_FN(bsr_sgemv_##shape##_f32)(const pwr_matrix *, const float *, const float *, float *, int32_t,  \
                                         int32_t);                                                            \
    void PWR_FN(bsr_sgemv_##shape##_f16)(const pwr_matrix *, const float *, const float *, float *, int32_t,  \
                                         int32_t);                                                            \
    void PWR_FN(bsr_sgemm_##shape##_f32)(const pwr_matrix *, const float *const *, int32_t, const float *,    \
                                         float *, int32_t, int32_t);                                          \
    void PWR_FN(bsr_sgemm_##shape##_f16)(const pwr_matrix *, const float *const *, int32_t, const float *,    \
                                         float *, int32_t, int32_t);
void PWR_FN(sgemv_dense_f32)(const pwr_matrix *, const float *, const float *, float *, int32_t, int32_t);
void PWR_FN(sgemv_dense_f16)(const pwr_matrix *, const float *, const float *, float *, int32_t, int32_t);
void PWR_FN(sgemm_dense_f32)(const pwr_matrix *, const float *const *, int32_t, const float *, float *, int32_t,
                             int32_t);
void PWR_FN(sgemm_dense_f16)(const pwr_matrix *, const float *const *, int32_t, const float *, float *, int32_t,
                             int32_t);
PWR_DECL_MV(16x1)
PWR_DECL_MV(4x4)
PWR_DECL_MV(1x1)
void PWR_FN(gru_gates)(const float *, const float *, float *, int32_t, int32_t, int32_t, int);
void PWR_FN(gru_input)(const float *, const float *, const float *, const float *, float, float *, int32_t, int32_t,
                       int32_t);
void PWR_FN(gru_input_t)(const float *, const float *, int, const float *, const float *, float, const float *,
                         const float *, float *, int32_t, int32_t, int32_t);
void PWR_FN(fast_sigmoid)(const float *, float *, int32_t);
void PWR_FN(fast_tanh)(const float *, float *, int32_t);
void PWR_FN(fast_exp)(const float *, float *, int32_t);
int PWR_FN(sample_softmax)(const float *, float, float *, int);
void PWR_FN(sample_softmax_rows)(const float *, int32_t, const float *, int32_t, int32_t *, float *, int);
void PWR_FN(frame_matmul)(const float *, const float *, int64_t, float *, int32_t, int32_t, int32_t);

#endif
