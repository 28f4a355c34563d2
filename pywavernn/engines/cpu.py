"""The CPU inference engine: a plain model's weights prepared for the C kernels, and the sampling loop run in C.

What it is: `CpuEngine(model)` holds immutable prepared weights (fp32 or fp16 storage, dense or block-CSR per
matrix) and runs docs/format.md §1-4 (with the linear prediction and prior of §11) entirely in C without the GIL
(pywavernn/_kernels/c/sampler.c): Python is called once per `generate`, never per sample. Per-stream state lives in a `StreamState`, so one engine serves many
streams, and generating a stream in chunks gives exactly the samples of one offline call. It meets the engine
interface of pywavernn/engines/base.py (generate, nll, new_state, advance for streaming) and adds what only it
has: utterances in parallel (`generate_batch`) and per-step traces (`trace`).
What it is not: the conditioning network (frame rate: `pywavernn.conditioning`), nor the mel front end; it takes
the frame-rate conditioning g (F, 3H) directly.

    from pywavernn.conditioning import conditioning
    from pywavernn.engines.cpu import CpuEngine
    engine = CpuEngine(model, weights="fp16", threads=1)
    g = conditioning(model, mel)                                       # (F, 3H) float32
    u = np.random.default_rng(seed).random((len(g) * hop, 2), dtype=np.float32)
    audio = engine.generate(g, u)                                      # int16, F * hop samples
    # streaming: state = engine.new_state(); engine.generate(g, u[:n], state); engine.generate(g, u[n:], state)
    outs = engine.generate_batch([g1, g2, g3], [u1, u2, u3], threads=2)  # utterances in parallel, one thread each
    bits = engine.nll(g, audio_int16)                                  # teacher-forced bits per sample
    steps = engine.trace(g, audio_int16_or_uniforms, n_steps=100)      # per-step h, logits_c, logits_f

Tests: `python -m pytest tests/test_engine.py tests/test_engines.py -q`.
Letters: H hidden units, K output-head hidden units, F frames, hop samples per frame, T samples.
"""

from __future__ import annotations

import numpy as np

from pywavernn import _native
from pywavernn.common import N_CLASSES, PREV_COARSE, PREV_FINE, STEP_MATRICES, STEP_VECTORS, check_f32, describe
from pywavernn.conditioning import conditioning_width
from pywavernn.engines.base import Progress, SequentialEngine
from pywavernn.kernels import BLOCK_SHAPES, STORAGES, KernelMatrix, frozen_copy, isa_id
from pywavernn.modelfile import BlockSparseMatrix, Model, pack_block_sparse, unpack_block_sparse

PROGRESS_CHUNK = 24000  # samples per C call when a progress callback is given (one second at 24 kHz)


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


def prepare_matrix(w: np.ndarray | BlockSparseMatrix, storage: str) -> KernelMatrix:
    """A model matrix as the kernels take it: block-CSR repacked to a kernel block shape if its own has no kernel."""
    if isinstance(w, BlockSparseMatrix):
        block = _kernel_block(tuple(w.block))
        if block != tuple(w.block):
            w = pack_block_sparse(unpack_block_sparse(w), *block)
    return KernelMatrix(w, storage)


class StreamState:
    """One stream's state: hidden state h (H,), the previous sample's bytes, the next sample index t and, for a
    model with linear prediction (docs/format.md §11), the 16-bit values of the P previous samples (v(t - 1) first;
    one unused entry when P = 0, so the C loop always gets a valid pointer)."""

    def __init__(self, hidden_size: int, linear_order: int = 0):
        self.h = np.zeros(hidden_size, np.float32)
        self.past = np.zeros(max(linear_order, 1), np.float32)  # updated by C
        self._st = np.array([PREV_COARSE, PREV_FINE, 0], np.int64)  # [prev_c, prev_f, t], updated by C

    @property
    def t(self) -> int:
        return int(self._st[2])

    @property
    def prev_sample(self) -> tuple[int, int]:
        return int(self._st[0]), int(self._st[1])

    def copy(self) -> StreamState:
        other = StreamState(self.h.shape[0])
        other.h[:] = self.h
        other.past = self.past.copy()
        other._st[:] = self._st
        return other


class CpuEngine(SequentialEngine):
    """A model prepared for the C kernels. Immutable after construction; `generate` may be called from several
    Python threads at once with different StreamState objects (the GIL is released in the loop).

    weights  "fp32" or "fp16" storage for the five large matrices (R, O1..O4); arithmetic is fp32 either way.
    threads  threads of the loop's persistent team (1 = no OpenMP region); samples never depend on it.
    exact    True: the float32 operations of docs/format.md §3a (the bits, so the samples, of pywavernn.reference.plain,
             on any model; tests/test_exactness.py); False: fast approximations and FMA kernels.
    isa      None: pywavernn.selected_isa(); or a name from pywavernn.kernels.available_isas().
    """

    backend = "cpu"

    def __init__(self, model: Model, weights: str = "fp32", threads: int = 1, exact: bool = False,
                 isa: str | None = None):
        if not isinstance(model, Model):
            raise TypeError(f"model: expected a pywavernn.modelfile.Model, found {type(model).__name__}")
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
        self._isa = isa_id(isa)
        self.isa = _native.engine().isa_name(self._isa)
        self.matrices = tuple(prepare_matrix(model.weights[name], weights) for name in STEP_MATRICES)
        r, o1, o2, o3, o4 = (km.native for km in self.matrices)
        # Private copies: the C loop keeps pointers into them (and W_in carries the input mask). The linear
        # prediction's taps and the prior (docs/format.md §11) stay fp32 whatever `weights` says: P + 2K + 2 floats.
        w_in, b_r, b1, b2, b3, b4 = (frozen_copy(np.asarray(model.dense(name), dtype=np.float32))
                                     for name in STEP_VECTORS)
        self.linear_order = cfg.linear_order
        lin_w, prior_w, prior_b = (frozen_copy(np.asarray(model.weights[name], dtype=np.float32))
                                   if name in model.weights else np.zeros(1, np.float32)
                                   for name in ("linear.weight", "prior.weight", "prior.bias"))
        # The model, as the C loop takes it, built once: every field named (pywavernn/_kernels/_engine.pyx).
        self._net = _native.engine().WaveRNNNet(hidden=self.hidden, out_hidden=self.out_hidden, hop=self.hop,
                                                R=r, O1=o1, O2=o2, O3=o3, O4=o4, w_in=w_in, b_R=b_r, b1=b1, b2=b2,
                                                b3=b3, b4=b4, linear_order=cfg.linear_order, linear_weight=lin_w,
                                                prior=cfg.prior != "none", prior_weight=prior_w, prior_bias=prior_b,
                                                mel_lpc=cfg.mel_lpc)
        self.g_width = conditioning_width(cfg)  # 3H, or 3H + P with taps by frame (docs/format.md §13)

    def new_state(self) -> StreamState:
        """A fresh stream: h = 0, previous samples s = 0, t = 0."""
        return StreamState(self.hidden, self.linear_order)

    # --- validation (once, here; the C loop trusts its inputs) ---------------------------------------------------

    def _check_threads(self, threads) -> int:
        if threads is None:
            return self.threads
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 256:
            raise ValueError(f"threads: expected an integer in [1, 256], found {threads!r}")
        return int(threads) if _native.openmp_enabled() else 1

    def _check_state(self, state, name: str = "state") -> StreamState:
        state = self.new_state() if state is None else state
        if not isinstance(state, StreamState) or state.h.shape != (self.hidden,):
            raise TypeError(f"{name}: expected a StreamState from this engine's new_state(), found {describe(state)}")
        check_f32(f"{name}.h", state.h, (self.hidden,), writable=True)
        check_f32(f"{name}.past", state.past, (max(self.linear_order, 1),), writable=True)
        if not (0 <= state._st[0] <= 255 and 0 <= state._st[1] <= 255 and state._st[2] >= 0):
            raise ValueError(f"{name}: expected bytes in [0, 255] and t >= 0, found {state._st.tolist()}")
        if not np.isfinite(state.past).all():
            raise ValueError(f"{name}.past: expected finite values")
        return state

    def _check_g(self, g, name: str = "g") -> np.ndarray:
        if not isinstance(g, np.ndarray) or g.ndim != 2:
            raise TypeError(f"{name}: expected a float32 array (F, {self.g_width}), found {describe(g)}")
        g = check_f32(name, g, (g.shape[0], self.g_width))
        if g.shape[0] < 1 or not np.isfinite(g).all():
            raise ValueError(f"{name}: expected at least one frame and finite values")
        if g.shape[0] >= 2**31:
            raise ValueError(f"{name}: expected fewer than 2**31 frames, found {g.shape[0]}")
        return g

    def _check_uniforms(self, uniforms, name: str = "uniforms") -> np.ndarray:
        if not isinstance(uniforms, np.ndarray) or uniforms.ndim != 2:
            raise TypeError(f"{name}: expected a float32 array (T, 2), found {describe(uniforms)}")
        uniforms = check_f32(name, uniforms, (uniforms.shape[0], 2))
        if not (np.all(uniforms >= 0) and np.all(uniforms < 1)):  # also rejects NaN
            raise ValueError(f"{name}: expected values in [0, 1)")
        return uniforms

    def _check_audio(self, audio) -> np.ndarray:
        if not isinstance(audio, np.ndarray) or audio.dtype != np.int16 or audio.ndim != 1:
            raise TypeError(f"audio_int16: expected a 1-D int16 numpy array, found {describe(audio)}")
        return np.ascontiguousarray(audio)

    def _check_length(self, name: str, n: int, t: int, g: np.ndarray) -> None:
        if t + n > g.shape[0] * self.hop:
            raise ValueError(f"{name}: {n} samples from t = {t} run past the conditioning's "
                             f"F * hop = {g.shape[0]} * {self.hop} = {g.shape[0] * self.hop} samples")

    def _loop_args(self, threads: int) -> tuple:
        return (self._net, self._isa, self.exact, threads)

    # --- generation ------------------------------------------------------------------------------------------

    def generate(self, g: np.ndarray, uniforms: np.ndarray, state: StreamState | None = None, *,
                 cond_first: int = 0, progress: Progress | None = None) -> np.ndarray:
        """Samples state.t .. state.t + T - 1 (T = len(uniforms)) as int16, advancing `state` (a fresh one if None).

        g: the frame-rate conditioning, float32 (F, 3H), finite: of the whole utterance, or of its frames from
        cond_first on (streaming; then cond_first * hop <= state.t). uniforms: float32 (T, 2) in [0, 1), (coarse,
        fine) per sample. The samples must lie in g's frames: state.t + T <= (cond_first + F) * hop. With a
        progress callback the loop runs in calls of PROGRESS_CHUNK samples (the same samples: the state carries
        on), progress(n_done) after each.
        """
        state = self._check_state(state)
        g = self._check_g(g)
        uniforms = self._check_uniforms(uniforms)
        if isinstance(cond_first, bool) or not isinstance(cond_first, (int, np.integer)) or cond_first < 0:
            raise ValueError(f"cond_first: expected a non-negative integer, found {cond_first!r}")
        offset = int(cond_first) * self.hop
        if state.t < offset:
            raise ValueError(f"cond_first: g starts at frame {cond_first} (sample {offset}), after the next sample "
                             f"t = {state.t}")
        n = uniforms.shape[0]
        self._check_length("uniforms", n, state.t - offset, g)
        out = np.empty(n, np.int16)
        st = state._st.copy()  # the C loop indexes g from its first row: t relative to it, put back after
        st[2] -= offset
        chunk = n if progress is None else PROGRESS_CHUNK
        for start in range(0, n, max(chunk, 1)):
            stop = min(start + chunk, n)
            _native.engine().generate(*self._loop_args(self.threads), g, g.shape[0], uniforms[start:stop], state.h,
                                      state.past, st, out[start:stop])
            if progress is not None:
                progress(stop)
        st[2] += offset
        state._st[:] = st
        return out

    def generate_batch(self, gs: list, uniforms: list, threads: int | None = None,
                       states: list | None = None) -> list:
        """Independent utterances in parallel: item i is exactly `generate(gs[i], uniforms[i], states[i])`.

        gs, uniforms: equal-length lists (as in generate). threads: utterances generated at once (default: this
        engine's `threads`), each by one thread (OpenMP `schedule(dynamic, 1)`), so a batch of several utterances
        keeps every core busy without per-step barriers. states: None (fresh streams) or a list of distinct
        StreamState objects, advanced in place. Returns a list of int16 arrays. Every item is validated before any
        runs.
        """
        threads = self._check_threads(threads)
        if not isinstance(gs, (list, tuple)) or not isinstance(uniforms, (list, tuple)):
            raise TypeError(f"gs, uniforms: expected lists, found {type(gs).__name__}, {type(uniforms).__name__}")
        if len(gs) != len(uniforms):
            raise ValueError(f"gs, uniforms: expected lists of equal length, found {len(gs)} and {len(uniforms)}")
        if states is None:
            states = [None] * len(gs)
        elif not isinstance(states, (list, tuple)) or len(states) != len(gs):
            raise ValueError(f"states: expected None or a list of {len(gs)} StreamState objects")
        if len({id(s) for s in states if s is not None}) != sum(s is not None for s in states):
            raise ValueError("states: expected distinct StreamState objects (one stream per item)")
        items, outs = [], []
        for i, (g, u, st) in enumerate(zip(gs, uniforms, states)):
            st = self._check_state(st, f"states[{i}]")
            g = self._check_g(g, f"gs[{i}]")
            u = self._check_uniforms(u, f"uniforms[{i}]")
            self._check_length(f"uniforms[{i}]", u.shape[0], st.t, g)
            out = np.empty(u.shape[0], np.int16)
            items.append((g, u, st.h, st.past, st._st, out))
            outs.append(out)
        if len({id(it[2]) for it in items} | {id(it[3]) for it in items}) != 2 * len(items):  # sharing (hand-built)
            raise ValueError("states: expected each item to have its own hidden state and past arrays")
        if items:
            _native.engine().generate_batch(*self._loop_args(threads), items)
        return outs

    # --- teacher forcing: likelihood and step traces -----------------------------------------------------------

    def nll(self, g: np.ndarray, audio_int16: np.ndarray, per_sample: bool = False):
        """Teacher-forced NLL (docs/format.md §5) of audio (int16, T <= F * hop samples from t = 0, h = 0).

        Returns the mean bits per 16-bit sample (float), or with per_sample=True the float64 array (T,) of
        -log2 P(c_t) - log2 P(f_t | c_t). The log-softmax is taken in float64 from the float32 logits.
        """
        g = self._check_g(g)
        audio = self._check_audio(audio_int16)
        self._check_length("audio_int16", audio.shape[0], 0, g)
        if audio.shape[0] == 0:
            raise ValueError("audio_int16: expected at least one sample")
        state, bits = self.new_state(), np.empty(audio.shape[0], np.float64)
        _native.engine().teacher_forced(*self._loop_args(self.threads), g, g.shape[0], audio, state.h, state.past,
                                        state._st, bits)
        return bits if per_sample else float(bits.mean())

    def trace(self, g: np.ndarray, inputs: np.ndarray, n_steps: int, start: int = 0) -> dict:
        """Per-step values of steps start .. start + n_steps - 1 from a fresh stream, for step-level comparisons.

        inputs: int16 audio (T,) (teacher forcing: the true bytes drive the loop) or float32 uniforms (T, 2)
        (free-running generation), T >= start + n_steps. Returns a dict of "h" (n_steps, H) (the state after each
        step), "logits_c", "logits_f" (n_steps, 256), float32, and "samples" (n_steps,) int16 (sampled, or the
        given audio).
        """
        g = self._check_g(g)
        for name, v in (("n_steps", n_steps), ("start", start)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name}: expected a non-negative integer, found {v!r}")
        stop = int(start) + int(n_steps)
        forced = isinstance(inputs, np.ndarray) and inputs.dtype == np.int16
        inputs = self._check_audio(inputs) if forced else self._check_uniforms(inputs, "inputs")
        if inputs.shape[0] < stop:
            raise ValueError(f"inputs: expected at least start + n_steps = {stop} steps, found {inputs.shape[0]}")
        inputs = np.ascontiguousarray(inputs[:stop])
        self._check_length("inputs", stop, 0, g)
        out = {"h": np.empty((n_steps, self.hidden), np.float32),
               "logits_c": np.empty((n_steps, N_CLASSES), np.float32),
               "logits_f": np.empty((n_steps, N_CLASSES), np.float32)}
        trace = (int(start), stop, out["h"], out["logits_c"], out["logits_f"])
        state, eng = self.new_state(), _native.engine()
        if forced:
            eng.teacher_forced(*self._loop_args(self.threads), g, g.shape[0], inputs, state.h, state.past, state._st,
                               None, trace)
            out["samples"] = inputs[start:stop].copy()
        else:
            samples = np.empty(stop, np.int16)
            eng.generate(*self._loop_args(self.threads), g, g.shape[0], inputs, state.h, state.past, state._st, samples,
                         trace)
            out["samples"] = samples[start:]
        return out
