/* cpu_features.c: run-time CPU feature detection (see cpu_features.h). Plain C, no Python.h. */
#include "cpu_features.h"
#include <string.h>
#if PWR_HAVE_OPENMP
#include <omp.h>
#endif

const char *pwr_isa_name(int isa) {
    switch (isa) {
    case PWR_ISA_ID_GENERIC: return "generic";
    case PWR_ISA_ID_AVX2: return "avx2";
    case PWR_ISA_ID_AVX512: return "avx512";
    case PWR_ISA_ID_NEON: return "neon";
    default: return "unknown";
    }
}

int pwr_isa_built(int isa) {
    switch (isa) {
    case PWR_ISA_ID_GENERIC: return 1;
#ifdef PWR_BUILT_AVX2
    case PWR_ISA_ID_AVX2: return 1;
#endif
#ifdef PWR_BUILT_AVX512
    case PWR_ISA_ID_AVX512: return 1;
#endif
#ifdef PWR_BUILT_NEON
    case PWR_ISA_ID_NEON: return 1;
#endif
    default: return 0;
    }
}

int pwr_isa_supported(int isa) {
    switch (isa) {
    case PWR_ISA_ID_GENERIC: return 1;
#if defined(__x86_64__) || defined(_M_X64)
    case PWR_ISA_ID_AVX2:
        /* __builtin_cpu_supports checks CPUID and that the OS saves the YMM state (XGETBV). */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case PWR_ISA_ID_AVX512:
        /* The AVX2 copy plus 512-bit FMAs and loads (AVX-512 Foundation; the OS must save the ZMM state, which
         * __builtin_cpu_supports also checks). */
        return pwr_isa_supported(PWR_ISA_ID_AVX2) && __builtin_cpu_supports("avx512f");
#endif
#if defined(__aarch64__)
    case PWR_ISA_ID_NEON: return 1; /* Advanced SIMD and FP16 conversion are mandatory on AArch64. */
#endif
    default: return 0;
    }
}

int pwr_best_isa(void) {
    static const int order[] = {PWR_ISA_ID_AVX512, PWR_ISA_ID_AVX2, PWR_ISA_ID_NEON};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (pwr_isa_built(order[i]) && pwr_isa_supported(order[i])) return order[i];
    return PWR_ISA_ID_GENERIC;
}

int pwr_openmp_enabled(void) { return PWR_HAVE_OPENMP ? 1 : 0; }

int pwr_openmp_max_threads(void) {
#if PWR_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
