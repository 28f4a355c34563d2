# Declarations of c/cpu_features.h (run-time CPU feature detection).
cdef extern from "cpu_features.h" nogil:
    const char *pwr_isa_name(int isa)
    int pwr_isa_built(int isa)
    int pwr_isa_supported(int isa)
    int pwr_best_isa()
    int pwr_openmp_enabled()
    int pwr_openmp_max_threads()
