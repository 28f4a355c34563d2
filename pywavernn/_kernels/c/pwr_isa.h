/* pwr_isa.h: internal helpers shared by the *_isa.c kernel sources (not a public header).
 *
 * Each *_isa.c is compiled once per ISA by setup.py with PWR_ISA_<NAME>=1 (GENERIC, AVX2, AVX512, NEON).
 * PWR_FN(name) gives each copy its own symbols (name_generic, name_avx2, name_avx512, name_neon). Intrinsics
 * appear only under PWR_ISA_AVX2; the AVX512 copy is compiled with PWR_ISA_AVX2=1 as well (it is the AVX2 copy,
 * built with -mavx512f) and replaces only the B-column 16x1 block products with 16-lane versions under
 * PWR_ISA_AVX512, whose results are the AVX2 copy's bit for bit. The NEON copy is currently the portable C body
 * compiled for AArch64 (auto-vectorised).
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

#if defined(PWR_ISA_AVX512) && PWR_ISA_AVX512
#if !(defined(PWR_ISA_AVX2) && PWR_ISA_AVX2)
#error "the AVX512 copy is the AVX2 copy with 16-lane 16x1 kernels: compile it with PWR_ISA_AVX2=1 too"
#endif
#define PWR_SUFFIX _avx512
#define PWR_SUFFIX_NAME "avx512"
#define PWR_TABLE_NAME pwr_kernels_avx512
#include <immintrin.h>
#elif defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
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

#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
/* 8 weights from i of a values array of the given storage, as floats (fp16: F16C conversion, exact). */
PWR_INLINE __m256 ld8(const void *v, size_t i, int st) {
    if (st == PWR_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)v + i)));
    return _mm256_loadu_ps((const float *)v + i);
}
/* The sum of v's 8 lanes, in the order every AVX2 kernel uses (halves, then pairs, then the last two). */
PWR_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif
#if defined(PWR_ISA_AVX512) && PWR_ISA_AVX512
/* 16 weights from i, as floats (the avx512 copy's 16x1 kernels: one block per register). */
PWR_INLINE __m512 ld16(const void *v, size_t i, int st) {
    if (st == PWR_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)v + i)));
    return _mm512_loadu_ps((const float *)v + i);
}
#endif

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
/* The ordered products of exact mode (pwr_kernels.h: gemv_ordered, gemm_ordered), in gemv_isa.c. */
void PWR_FN(sgemv_dense_ordered_f32)(const pwr_matrix *, const float *, const float *, float *, int32_t, int32_t);
void PWR_FN(sgemv_dense_ordered_f16)(const pwr_matrix *, const float *, const float *, float *, int32_t, int32_t);
void PWR_FN(sgemm_dense_ordered_f32)(const pwr_matrix *, const float *const *, int32_t, const float *, float *,
                                     int32_t, int32_t);
void PWR_FN(sgemm_dense_ordered_f16)(const pwr_matrix *, const float *const *, int32_t, const float *, float *,
                                     int32_t, int32_t);
PWR_DECL_MV(16x1_ordered)
PWR_DECL_MV(4x4_ordered)
PWR_DECL_MV(1x1_ordered)
void PWR_FN(gru_gates)(const float *, const float *, float *, int32_t, int32_t, int32_t, int);
void PWR_FN(gru_input)(const float *, int32_t, const float *, const float *, const float *, float, float *, int32_t,
                       int32_t, int32_t);
void PWR_FN(gru_input_t)(const float *, const float *, int, const float *, const float *, float, const float *,
                         const float *, float *, int32_t, int32_t, int32_t);
void PWR_FN(gru_input_cols)(const float *, int32_t, const float *, const float *, const float *, float, float *,
                            int32_t, int32_t, int32_t);
void PWR_FN(fast_sigmoid)(const float *, float *, int32_t);
void PWR_FN(fast_tanh)(const float *, float *, int32_t);
void PWR_FN(fast_exp)(const float *, float *, int32_t);
int PWR_FN(sample_softmax)(const float *, float, float *, int);
void PWR_FN(sample_softmax_rows)(const float *, int32_t, const float *, int32_t, int32_t *, float *, int);
void PWR_FN(frame_matmul)(const float *, const float *, int64_t, float *, int32_t, int32_t, int32_t);
void PWR_FN(laplace_prior)(float *, float, float, float, const float *, float, const float *, int32_t);

#endif
