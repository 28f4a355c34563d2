"""pywavernn benchmarks (run as `python -m benchmarks.NAME`). Figures are single-core unless a row says
otherwise, so BLAS libraries behind NumPy/SciPy/PyTorch baselines are held to one thread here, before any of
them is imported; pywavernn's own thread counts are explicit arguments."""

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
