# cython: language_level=3
"""pywavernn._kernels._engine: thin typed glue over the C kernels in c/ (introspection for now).

Not the public API: pywavernn/_native.py wraps this module and validates every input first.
"""
from pywavernn._kernels.cpu_features cimport (pwr_isa_name, pwr_isa_built, pwr_isa_supported, pwr_best_isa,
                                              pwr_openmp_enabled, pwr_openmp_max_threads)

ISA_IDS = {"generic": 0, "avx2": 1, "neon": 2}


def isa_name(int isa):
    return pwr_isa_name(isa).decode("ascii")


def isa_built(int isa):
    return bool(pwr_isa_built(isa))


def isa_supported(int isa):
    return bool(pwr_isa_supported(isa))


def best_isa():
    return pwr_best_isa()


def openmp_enabled():
    return bool(pwr_openmp_enabled())


def openmp_max_threads():
    return pwr_openmp_max_threads()
