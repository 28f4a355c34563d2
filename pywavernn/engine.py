"""The CPU inference engine: a model's weights prepared for the C kernels, and the sampling loop run in C.

What it is: `CpuEngine(model)` holds immutable prepared weights (fp32 or fp16 storage, dense or block-CSR per
matrix) and runs docs/format.md §1-4 entirely in C without the GIL (pywavernn/_kernels/c/sampler.c): Python is
called once per `generate`, never per sample. Per-stream state lives in a `StreamState`, so one engine serves many
streams, and generating a stream in chunks gives exactly the samples of one offline call.
What it is not: the conditioning network (frame rate, NumPy: `pywavernn.reference.conditioning_ref`), nor the
mel front end; it takes the frame-rate conditioning g (F, 3H) directly.

    from pywavernn.engine import CpuEngine
    from pywavernn.reference import conditioning_ref
    engine = CpuEngine(model, weights="fp16", threads=1)
    g = conditioning_ref(model, mel)                                   # (F, 3H) float32
    u = np.random.default_rng(seed).random((len(g) * hop, 2), dtype=np.float32)
    audio = engine.generate(g, u)                                      # int16, F * hop samples
    # streaming: state = engine.new_state(); engine.generate(g, u[:n], state); engine.generate(g, u[n:], state)

Letters: H hidden units, K output-head hidden units, F frames, hop samples per frame, T samples.
"""

from __future__ import annotations

import numpy as np

from pywavernn import _native
from pywavernn.format import BlockSparseMatrix, Model, pack_block_sparse, unpack_block_sparse
from pywavernn.kernels import BLOCK_SHAPES, STORAGES, KernelMatrix, _check_f32, _describe, _isa_id

MATRICES = ("gru.R", "out.O1", "out.O2", "out.O3", "out.O4")
VECTORS = ("gru.W_in", "gru.b_R", "out.b1", "out.b2", "out.b3", "out.b4")
PREV_COARSE, PREV_FINE = 128, 0  # the sample before the first is s = 0 (docs/format.md §1)


def _kernel_block(block: tuple[int, int]) -> tuple[int, int]:
    """The kernel block shape used for a model block shape without a kernel of its own: the largest kernel
    shape that tiles it (so repacking is lossless), falling back to 1x1 (CSR)."""
    if block in BLOCK_SHAPES:
        return block
    bh, bw = block
    for kh, kw in BLOCK_SHAPES:
        if bh % kh == 0 and bw % kw == 0:
            return kh, kw
    return 1, 1  # pragma: no cover - (1, 1) tiles everything


def _prepare(w: np.ndarray | BlockSparseMatrix, storage: str) -> KernelMatrix:
    if isinstance(w, BlockSparseMatrix):
        block = _kernel_block(tuple(w.block))
        if block != tuple(w.block):
            w = pack_block_sparse(unpack_block_sparse(w), *block)
    return KernelMatrix(w, storage)


class StreamState:
    """One stream's state: hidden state h (H,), the previous sample's bytes and the next sample index t."""

    def __init__(self, hidden_size: int):
        self.h = np.zeros(hidden_size, np.float32)
        self._st = np.array([PREV_COARSE, PREV_FINE, 0], np.int64)  # [prev_c, prev_f, t], updated by C

    @property
    def t(self) -> int:
        return int(self._st[2])

    @property
    def prev_sample(self) -> tuple[int, int]:
        return int(self._st[0]), int(self._st[1])

    def copy(self) -> "StreamState":
        other = StreamState(self.h.shape[0])
        other.h[:] = self.h
        other._st[:] = self._st
        return other


class CpuEngine:
    """A model prepared for the C kernels. Immutable after construction; `generate` may be called from several
    Python threads at once with different StreamState objects (the GIL is released in the loop).

    weights  "fp32" or "fp16" storage for the five large matrices (R, O1..O4); arithmetic is fp32 either way.
    threads  threads of the loop's persistent team (1 = no OpenMP region); samples never depend on it.
    exact    True: libm exp/tanh (sample-for-sample equal to pywavernn.reference); False: fast approximations.
    isa      None: pywavernn.selected_isa(); or a name from pywavernn.kernels.available_isas().
    """

    def __init__(self, model: Model, weights: str = "fp32", threads: int = 1, exact: bool = False,
                 isa: str | None = None):
        if not isinstance(model, Model):
            raise TypeError(f"model: expected a pywavernn.format.Model, found {type(model).__name__}")
        if weights not in STORAGES:
            raise ValueError(f"weights: expected one of {sorted(STORAGES)}, found {weights!r}")
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 256:
            raise ValueError(f"threads: expected an integer in [1, 256], found {threads!r}")
        cfg = model.model_config
        if cfg.subscale_factor != 1:
            raise ValueError(f"model: CpuEngine runs the plain WaveRNN (subscale_factor 1), "
                             f"found subscale_factor {cfg.subscale_factor}")
        model.validate()  # shapes, finiteness, block-CSR indices, the W_in mask
        self.model_config, self.hop = cfg, model.feature_config.hop_length
        self.hidden, self.out_hidden = cfg.hidden_size, cfg.out_hidden
        self.storage, self.exact = weights, bool(exact)
        self.threads = int(threads) if _native.openmp_enabled() else 1
        self._isa = _isa_id(isa)
        self.isa = _native.engine().isa_name(self._isa)
        self._kmats = tuple(_prepare(model.weights[name], weights) for name in MATRICES)
        self._mats = tuple(km._c for km in self._kmats)  # the C-level matrices the loop takes
        self._vecs = tuple(np.ascontiguousarray(model.dense(name), dtype=np.float32) for name in VECTORS)

    def new_state(self) -> StreamState:
        """A fresh stream: h = 0, previous sample s = 0, t = 0."""
        return StreamState(self.hidden)

    def generate(self, g: np.ndarray, uniforms: np.ndarray, state: StreamState | None = None) -> np.ndarray:
        """Samples state.t .. state.t + T - 1 (T = len(uniforms)) as int16, advancing `state` (a fresh one if None).

        g: the whole utterance's frame-rate conditioning, float32 (F, 3H), finite. uniforms: float32 (T, 2) in
        [0, 1), (coarse, fine) per sample. Requires state.t + T <= F * hop.
        """
        state = self.new_state() if state is None else state
        if not isinstance(state, StreamState) or state.h.shape != (self.hidden,):
            raise TypeError(f"state: expected a StreamState from this engine's new_state(), found {_describe(state)}")
        _check_f32("state.h", state.h, (self.hidden,), writable=True)
        if not (0 <= state._st[0] <= 255 and 0 <= state._st[1] <= 255 and state._st[2] >= 0):
            raise ValueError(f"state: expected bytes in [0, 255] and t >= 0, found {state._st.tolist()}")
        if not isinstance(g, np.ndarray) or g.ndim != 2:
            raise TypeError(f"g: expected a float32 array (F, {3 * self.hidden}), found {_describe(g)}")
        g = _check_f32("g", g, (g.shape[0], 3 * self.hidden))
        if g.shape[0] < 1 or not np.isfinite(g).all():
            raise ValueError("g: expected at least one frame and finite values")
        if not isinstance(uniforms, np.ndarray) or uniforms.ndim != 2:
            raise TypeError(f"uniforms: expected a float32 array (T, 2), found {_describe(uniforms)}")
        uniforms = _check_f32("uniforms", uniforms, (uniforms.shape[0], 2))
        if not (np.all(uniforms >= 0) and np.all(uniforms < 1)):  # also rejects NaN
            raise ValueError("uniforms: expected values in [0, 1)")
        n = uniforms.shape[0]
        if state.t + n > g.shape[0] * self.hop:
            raise ValueError(f"uniforms: {n} samples from t = {state.t} run past the conditioning's "
                             f"F * hop = {g.shape[0]} * {self.hop} = {g.shape[0] * self.hop} samples")
        out = np.empty(n, np.int16)
        _native.engine().generate(self._isa, self.exact, self.threads, self._mats, self._vecs, self.hidden,
                                  self.out_hidden, self.hop, g, g.shape[0], uniforms, state.h, state._st, out)
        return out
