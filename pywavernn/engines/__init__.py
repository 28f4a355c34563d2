"""pywavernn.engines: every backend behind one interface, and the stream built on it.

What it is: the engines (base.py: the `Engine` protocol; reference.py: the NumPy reference; cpu.py: the C engine;
subscale.py: the Subscale C engine; fused.py: the Fused Subscale 2x C engine; cuda.py: the CUDA engine) and stream.py (streaming vocoding over any engine
that streams). `make_engine` picks the engine for a model and a backend name; it is the only place that knows
which class serves which (backend, model kind), so `pywavernn.Vocoder` and the stream never branch on either.
What it is not: input validation of the public API (pywavernn/vocoder.py does it) or the maths (reference/).

    from pywavernn.engines import make_engine
    engine = make_engine(model, "cpu", threads=2)     # an Engine: new_state, generate, nll, advance

Tests: `python -m pytest tests/test_engines.py -q`.
"""

from __future__ import annotations

from pywavernn.engines.base import Engine
from pywavernn.modelfile import Model

BACKENDS = ("cpu", "reference", "cuda")


def make_engine(model: Model, backend: str = "cpu", *, weights: str = "fp32", threads: int = 1, exact: bool = False,
                isa: str | None = None) -> Engine:
    """The engine of `backend` for this model (ModelConfig.kind: plain, subscale or fused). weights, threads, exact
    and isa configure the cpu backend (see pywavernn.Vocoder). ValueError for an unknown backend, or 'cuda' where it
    cannot run (saying why). The compiled and CUDA modules are imported only when asked for."""
    kind = model.model_config.kind if isinstance(model, Model) else "plain"  # the engines refuse a non-Model
    subscale = kind == "subscale"
    if backend == "reference":
        from pywavernn.engines.reference import FusedReferenceEngine, ReferenceEngine, SubscaleReferenceEngine

        return {"plain": ReferenceEngine, "subscale": SubscaleReferenceEngine,
                "fused": FusedReferenceEngine}[kind](model)
    if backend == "cpu" and kind == "fused":
        from pywavernn.engines.fused import FusedEngine

        return FusedEngine(model, weights=weights, threads=threads, exact=exact, isa=isa)
    if backend == "cpu" and subscale:
        from pywavernn.engines.subscale import SubscaleEngine

        return SubscaleEngine(model, weights=weights, exact=exact, threads=threads, isa=isa)
    if backend == "cpu":
        from pywavernn.engines.cpu import CpuEngine

        return CpuEngine(model, weights=weights, threads=threads, exact=exact, isa=isa)
    if backend == "cuda":
        from pywavernn.engines import cuda

        ok, why = cuda.available(model)
        if not ok:
            raise ValueError(f"backend 'cuda' is not available: {why}")
        return cuda.CudaEngine(model)
    raise ValueError(f"backend: expected one of {BACKENDS}, found {backend!r}")
