"""Loader of the compiled extension and the run-time ISA choice.

Not the public API (pywavernn/__init__.py re-exports what users need). The ISA is chosen once per process:
the best one the build compiled and the CPU supports (avx512 > avx2 > neon > generic), unless
PYWAVERNN_ISA=generic|avx2|avx512|neon forces one.
"""

from __future__ import annotations

import os
import sys
import warnings

try:
    from pywavernn._kernels import _engine
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    _engine = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

_selected: int | None = None


def engine():
    """The compiled module, or a clear ImportError saying how to build it."""
    if _engine is None:
        raise ImportError(
            "pywavernn's compiled extension is not built (pywavernn._kernels._engine): "
            f"{_IMPORT_ERROR}. Install with `pip install .` or build in place with "
            "`python setup.py build_ext --inplace`; backend='reference' works without it."
        )
    return _engine


def available() -> bool:
    return _engine is not None


def selected_isa_id() -> int:
    """The ISA id the kernels dispatch to (resolved once, honouring PYWAVERNN_ISA)."""
    global _selected
    if _selected is not None:
        return _selected
    eng = engine()
    forced = os.environ.get("PYWAVERNN_ISA", "").strip().lower()
    if forced:
        if forced not in eng.ISA_IDS:
            raise ValueError(f"PYWAVERNN_ISA: expected one of {sorted(eng.ISA_IDS)}, found {forced!r}")
        isa = eng.ISA_IDS[forced]
        if not eng.isa_built(isa):
            raise ValueError(f"PYWAVERNN_ISA={forced}: this build of pywavernn has no {forced} kernels")
        if not eng.isa_supported(isa):
            raise ValueError(f"PYWAVERNN_ISA={forced}: this CPU does not support {forced}")
    else:
        isa = eng.best_isa()
        if isa == eng.ISA_IDS["generic"]:
            warnings.warn(
                "pywavernn: only the generic C kernels are available on this CPU/build (no AVX2+FMA or NEON); "
                "vocoding will be several times slower than it could be.",
                RuntimeWarning,
                stacklevel=2,
            )
    _selected = isa
    return isa


def selected_isa() -> str:
    return engine().isa_name(selected_isa_id())


def openmp_enabled() -> bool:
    return engine().openmp_enabled()


def _reset_for_tests() -> None:
    global _selected
    _selected = None


if __name__ == "__main__":  # python -m pywavernn._native: print what was built and chosen
    print(f"isa={selected_isa()} openmp={openmp_enabled()}", file=sys.stdout)
