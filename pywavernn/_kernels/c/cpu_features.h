/* cpu_features.h: run-time CPU feature detection and the ISA names pywavernn can dispatch to.
 *
 * Plain C, no Python.h. The build compiles each *_isa.c once per ISA (setup.py); this module says which of
 * those copies the running CPU can execute. PWR_BUILT_<ISA> macros say which copies were compiled in.
 */
#ifndef PWR_CPU_FEATURES_H
#define PWR_CPU_FEATURES_H

typedef enum { PWR_ISA_ID_GENERIC = 0, PWR_ISA_ID_AVX2 = 1, PWR_ISA_ID_NEON = 2, PWR_ISA_ID_AVX512 = 3 } pwr_isa_id;

/* Name of an ISA id ("generic", "avx2", "avx512", "neon"); "unknown" for anything else. */
const char *pwr_isa_name(int isa);
/* 1 if the copy for `isa` was compiled into this build. */
int pwr_isa_built(int isa);
/* 1 if the running CPU (and OS) supports `isa`. */
int pwr_isa_supported(int isa);
/* The best ISA that is both built and supported. */
int pwr_best_isa(void);
/* 1 if the extension was built with OpenMP. */
int pwr_openmp_enabled(void);
/* Threads OpenMP would use by default (1 without OpenMP). */
int pwr_openmp_max_threads(void);

#endif
