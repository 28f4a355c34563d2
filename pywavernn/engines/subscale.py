"""The CPU Subscale WaveRNN engine: a subscale model's weights prepared for the C kernels, and the lockstep
generation loop of docs/format.md §9 run in C (pywavernn/_kernels/c/subscale_sampler.c).

What it is: `SubscaleEngine(model)` holds immutable prepared weights (the WaveRNN step's five large matrices in fp32
or fp16 storage, block-CSR as pywavernn.engines.cpu prepares them, dense ones stored as all-kept 16x1 blocks
for the faster B-column kernel; the context network fp32, likewise, its projection subscale.proj.weight block-CSR as
stored when the model has it block-sparse, docs/format.md §9) and generates a whole utterance per call without the
GIL. After the warm-up all B sub-tensors advance together: each step multiplies R, O1..O4 and the context projection
by the B active streams' vectors at once (the B-right-hand-side gemm kernels), so each weight is read from memory
once per B samples. It meets the engine interface of pywavernn/engines/base.py.
Threads (threads=N): the B streams are split into N contiguous ranges, one per thread of a persistent OpenMP team
that meets once per schedule step; each stream's arithmetic is unchanged, so the samples are the same for every N
(at most B threads are used; one without OpenMP; a team sharing its cores with other work finishes the call on one
thread).
What it is not: the conditioning network (frame rate: pywavernn.conditioning gives g), nor teacher forcing: the C
loop has none, so `nll` runs the NumPy reference (pywavernn.reference.subscale) on the g it is given.

    from pywavernn.conditioning import conditioning
    from pywavernn.engines.subscale import SubscaleEngine
    engine = SubscaleEngine(model, weights="fp16", threads=2)
    g = conditioning(model, mel)                                         # (F, 3H) float32
    u = np.random.default_rng(seed).random((len(g) * hop, 2), dtype=np.float32)
    audio = engine.generate(g, u)                                        # int16, F * hop samples
    steps = engine.trace(g, u)                                           # per-sample h, logits, schedule step

Streaming (`new_state`, `advance`; pywavernn/engines/stream.py builds Vocoder.stream on them). The C loop keeps its
state in a run between calls (`new_run`, `run_steps`) and runs the schedule steps n whose samples have their
conditioning: stream 0 leads, drawing sample t = n B at step n, which interpolates frames floor(n B / hop) and + 1,
so step n runs once g of that next frame is final, i.e. once n B < (g_end - 1) hop; the last steps (and the
utterance-end clamp) wait for the end. A sample is final once its own stream has produced it, and the samples come
out in true-time order, so output lags the leading stream by the schedule's skew: stream s runs s (F + 1) steps
behind stream 0, so sample t is out about (B - 1)(F + 1) B samples after stream 0 passed it (B = 16, F = 2: 720
samples, 2.4 frames of hop 300). Memory is bounded likewise: the run (per stream: state and context chains, and the
last 2 (B + 1)(F + 1) positions of the folded sequence), the generated-but-not-final samples and their uniforms.

exact=True uses the float32 operations of docs/format.md §3a and the order of pywavernn.reference.subscale, so the samples are
those of `generate_subscale_ref` (up to matrix-product rounding, which in practice never moves a draw across a
class edge; tests/test_subscale_engine.py checks it); exact=False uses the fast approximations.

Tests: `python -m pytest tests/test_subscale_engine.py tests/test_engines.py -q`.
Letters: H hidden units, K output-head hidden units, B subscale factor, F future horizon, C_x context channels,
D context layers, T samples (frames * hop).
"""

from __future__ import annotations

import numpy as np

from pywavernn import _native, fold
from pywavernn.common import N_CLASSES, STEP_MATRICES, STEP_VECTORS, check_f32, describe
from pywavernn.engines.base import Draw, Engine, Progress, report
from pywavernn.engines.cpu import prepare_matrix
from pywavernn.kernels import MAX_RHS, STORAGES, KernelMatrix, frozen_copy, isa_id
from pywavernn.modelfile import Model, pack_block_sparse
from pywavernn.reference.subscale import nll_subscale_cond_ref


def _f32(a) -> np.ndarray:
    """A private read-only float32 copy: the C loop keeps pointers into it."""
    return frozen_copy(np.asarray(a, dtype=np.float32))


def _for_columns(w, storage: str = "fp32") -> KernelMatrix:
    """A matrix prepared for the B-column products. A BlockSparseMatrix (R, O1..O4, the context projection when
    the model stores them sparse) keeps its blocks (repacked only to a kernel block shape, as
    pywavernn.engines.cpu prepares it). A dense matrix whose rows split into 16s is stored as 16x1
    blocks, all kept: the 16x1 gemm keeps 8 accumulators per 4 columns in registers and needs no horizontal sums,
    where the dense gemm keeps 4 and reduces every row (measured ~2x (R) to ~4x (the context projection, 32
    columns) faster for 16 right-hand sides on AVX2). The products are the same up to float32 summation order."""
    if isinstance(w, np.ndarray) and w.shape[0] % 16 == 0:
        return KernelMatrix(pack_block_sparse(_f32(w), 16, 1), storage)
    return prepare_matrix(w, storage)


class SubscaleState:
    """One streamed utterance of a SubscaleEngine: the C loop's run, t (samples returned), the samples generated
    but not yet final (pending, from t on) and the uniforms drawn for samples from t on (uniforms)."""

    def __init__(self, run):
        self.run = run
        self.t = 0
        self.pending = np.empty(0, np.int16)
        self.uniforms = np.empty((0, 2), np.float32)


class SubscaleEngine(Engine):
    """A subscale model (subscale_factor B in 2..16) prepared for the C kernels. Immutable after construction;
    `generate` may be called from several Python threads at once (all per-stream state is per call).

    weights  "fp32" or "fp16" storage for R, O1..O4 (arithmetic is fp32 either way); the context network is fp32.
    exact    True: docs/format.md §3a's operations (the samples of pywavernn.reference.subscale); False: fast approximations.
    isa      None: pywavernn.selected_isa(); or a name from pywavernn.kernels.available_isas().
    threads  an int >= 1: threads of the loop's team, each owning a contiguous range of the B streams (min(threads,
             B) are used; 1 without OpenMP). The samples never depend on it.
    """

    backend = "cpu"
    streams = True

    def __init__(self, model: Model, weights: str = "fp32", exact: bool = False, isa: str | None = None,
                 threads: int = 1):
        if not isinstance(model, Model):
            raise TypeError(f"model: expected a pywavernn.modelfile.Model, found {type(model).__name__}")
        if weights not in STORAGES:
            raise ValueError(f"weights: expected one of {sorted(STORAGES)}, found {weights!r}")
        if not isinstance(exact, (bool, np.bool_)):
            raise TypeError(f"exact: expected a bool, found {type(exact).__name__}")
        if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"threads: expected an integer >= 1, found {threads!r}")
        cfg = model.model_config
        factor, horizon = fold.check_model_config(cfg)
        if factor > MAX_RHS:
            raise ValueError(f"subscale_factor: expected at most {MAX_RHS} (the gemm kernels' right-hand sides), "
                             f"found {factor}")
        model.validate()  # shapes, finiteness, block-CSR indices, the W_in mask, the subscale tensors
        self.model = model  # for nll (the NumPy reference: the C loop has no teacher forcing)
        self.model_config, self.hop = cfg, model.feature_config.hop_length
        self.hidden, self.out_hidden = cfg.hidden_size, cfg.out_hidden
        self.factor, self.horizon = factor, horizon
        self.channels, self.layers = cfg.subscale_channels, cfg.subscale_layers
        self.storage, self.exact = weights, bool(exact)
        # The team's size: a thread owns at least one stream, and without OpenMP there is one.
        self.threads = min(int(threads), factor) if _native.openmp_enabled() else 1
        self._isa = isa_id(isa)
        self.isa = _native.engine().isa_name(self._isa)
        self.matrices = tuple(_for_columns(model.weights[name], weights) for name in STEP_MATRICES)
        w = model.weights
        # subscale.proj.weight may be a BlockSparseMatrix (modelfile.sparse_capable): its gemm skips pruned blocks.
        n_lin = cfg.subscale_linear
        # With linear estimates the projection takes their E columns too: one gemm over each stream's [a_D, est].
        proj = (np.hstack([model.dense("subscale.proj.weight"), w["subscale.linear.proj"]]) if n_lin
                else w["subscale.proj.weight"])
        conv = [w[f"subscale.conv{layer}.weight"] for layer in range(self.layers)]
        ctx = [_for_columns(w["subscale.embed.weight"]), _for_columns(proj)]
        for weight in conv:  # kernel-2 dilated layers: the tap on the earlier position, then the current one
            ctx += [_for_columns(weight[:, :, 0]), _for_columns(weight[:, :, 1])]
        self.context_matrices = tuple(ctx)
        conv_bias = (np.stack([w[f"subscale.conv{layer}.bias"] for layer in range(self.layers)])
                     if self.layers else np.zeros((1, factor, self.channels)))
        prior = cfg.subscale_prior != "none"
        unused = np.zeros(1, np.float32)  # for the tensors a model without linear estimates or a prior lacks
        r, o1, o2, o3, o4 = self.matrices
        w_in, b_r, b1, b2, b3, b4 = (_f32(model.dense(name)) for name in STEP_VECTORS)
        # The model, as the C loop takes it, built once: every field named (pywavernn/_kernels/subscale_glue.pxi).
        self._net = _native.engine().SubscaleNet(
            hidden=self.hidden, out_hidden=self.out_hidden, hop=self.hop, factor=factor, horizon=horizon,
            channels=self.channels, layers=self.layers,
            previous_time=cfg.subscale_previous == "time",  # fold.previous_sample
            context_lag=cfg.subscale_context_order == "lag",  # fold.context_input_order
            linear=n_lin, prior=prior,
            R=r.native, O1=o1.native, O2=o2.native, O3=o3.native, O4=o4.native,
            w_in_t=_f32(w_in.T),  # (3, 3H): the loop reads each input's weights over contiguous rows
            b_R=b_r, b1=b1, b2=b2, b3=b3, b4=b4,
            embed=ctx[0].native, proj=ctx[1].native,
            conv_prev=[km.native for km in ctx[2::2]], conv_cur=[km.native for km in ctx[3::2]],
            embed_bias=_f32(w["subscale.embed.bias"]), conv_bias=_f32(conv_bias),
            proj_bias=_f32(w["subscale.proj.bias"]),
            linear_weight=_f32(w["subscale.linear.weight"]) if n_lin else unused,
            prior_weight=_f32(w["subscale.prior.weight"]) if prior else unused,
            prior_bias=_f32(w["subscale.prior.bias"]) if prior else unused)

    # --- validation (once, here; the C loop trusts its inputs) ---------------------------------------------------

    def _check_g(self, g) -> np.ndarray:
        if not isinstance(g, np.ndarray) or g.ndim != 2:
            raise TypeError(f"g: expected a float32 array (F, {3 * self.hidden}), found {describe(g)}")
        g = check_f32("g", g, (g.shape[0], 3 * self.hidden))
        if g.shape[0] < 1 or not np.isfinite(g).all():
            raise ValueError("g: expected at least one frame and finite values")
        if g.shape[0] * self.hop < self.factor:
            raise ValueError(f"g: expected at least one fold of B = {self.factor} samples, found {g.shape[0]} "
                             f"frames x hop {self.hop} = {g.shape[0] * self.hop} samples")
        if g.shape[0] * self.hop >= 2**31:
            raise ValueError(f"g: expected fewer than 2**31 samples, found {g.shape[0]} frames x hop {self.hop}")
        return g

    def _check_uniforms(self, uniforms, n_samples: int) -> np.ndarray:
        if not isinstance(uniforms, np.ndarray) or uniforms.ndim != 2:
            raise TypeError(f"uniforms: expected a float32 array ({n_samples}, 2), found {describe(uniforms)}")
        if uniforms.shape != (n_samples, 2):
            raise ValueError(f"uniforms: expected shape ({n_samples}, 2) (F * hop samples, coarse and fine), "
                             f"found {uniforms.shape}")
        uniforms = check_f32("uniforms", uniforms, (n_samples, 2))
        if not (np.all(uniforms >= 0) and np.all(uniforms < 1)):  # also rejects NaN
            raise ValueError("uniforms: expected values in [0, 1)")
        return uniforms

    def _run(self, g, uniforms, trace) -> np.ndarray:
        g = self._check_g(g)
        n_samples = g.shape[0] * self.hop
        uniforms = self._check_uniforms(uniforms, n_samples)
        out = np.empty(n_samples, np.int16)
        buffers = None
        if trace is not None:
            trace.update(h=np.empty((n_samples, self.hidden), np.float32),
                         logits_c=np.empty((n_samples, N_CLASSES), np.float32),
                         logits_f=np.empty((n_samples, N_CLASSES), np.float32), step=np.empty(n_samples, np.int64))
            buffers = (trace["h"], trace["logits_c"], trace["logits_f"], trace["step"])
        _native.engine().generate_subscale(self._net, self._isa, self.exact, self.threads, g, g.shape[0], uniforms,
                                           out, buffers)
        return out

    # --- generation ------------------------------------------------------------------------------------------

    def new_state(self) -> SubscaleState:
        """A fresh utterance (its run holds the C loop's state between `advance` calls; one user at a time)."""
        return SubscaleState(self.new_run())

    def generate(self, g: np.ndarray, uniforms: np.ndarray, state: SubscaleState | None = None, *,
                 progress: Progress | None = None) -> np.ndarray:
        """The utterance's T = F * hop samples as int16 (T,), sample t drawn with uniforms[t], in one call
        (progress(T) after it).

        g: the frame-rate conditioning, float32 (F, 3H), C-contiguous, finite, T >= B. uniforms: float32 (T, 2)
        in [0, 1), (coarse, fine) per sample, indexed by true time t (so the samples do not depend on the
        schedule). state: None or a fresh one from new_state() (marked done: t = T); to generate in pieces, stream.
        """
        if state is not None and not (isinstance(state, SubscaleState) and state.t == 0
                                      and state.run.next_step == 0):
            raise ValueError(f"state: generate() takes None or a fresh SubscaleState from new_state() (a whole "
                             f"utterance; advance() continues one), found {describe(state)}")
        samples = self._run(g, uniforms, None)
        if state is not None:
            state.t = samples.shape[0]
            state.run = None  # the utterance is done: advance() refuses it
        report(progress, samples.shape[0])
        return samples

    def nll(self, g: np.ndarray, audio_int16: np.ndarray) -> float:
        """Teacher-forced bits per 16-bit sample (docs/format.md §5), computed by the NumPy reference
        (pywavernn.reference.subscale.nll_subscale_cond_ref) from this g: the C loop has no teacher forcing."""
        return nll_subscale_cond_ref(self.model, self._check_g(g), audio_int16)

    # --- streaming (pywavernn/engines/stream.py) -----------------------------------------------------------------

    def advance(self, state: SubscaleState, cond: np.ndarray, cond_first: int, n_frames: int | None,
                draw: Draw) -> np.ndarray:
        """Engine.advance: run the schedule steps whose samples have final conditioning (all of them once n_frames
        is known) and return the samples that became final, in true-time order (see the module docstring)."""
        if not isinstance(state, SubscaleState) or state.run is None:
            raise ValueError(f"state: expected a SubscaleState from new_state() not used by generate(), found "
                             f"{describe(state)}")
        hop, factor = self.hop, self.factor
        g_end = cond_first + cond.shape[0]
        if n_frames is not None:
            total = n_frames * hop
            if total < factor:
                raise ValueError(f"n_frames: expected at least B = {factor} samples, found {n_frames} frames x hop "
                                 f"{hop} = {total}")
            n_end, last = self.n_steps(total), total - 1
        else:
            total = None
            n_end = max(0, -(-(g_end - 1) * hop // factor))  # steps n with n B < (g_end - 1) hop
            last = (n_end - 1) * factor
        if n_end <= state.run.next_step:
            return np.empty(0, np.int16)
        have = state.t + state.uniforms.shape[0]
        if last + 1 > have:
            state.uniforms = np.concatenate([state.uniforms, draw(last + 1 - have)])
        out = np.empty(last + 1 - state.t, np.int16)
        out[:state.pending.shape[0]] = state.pending  # generated before; the C loop writes only the new samples
        self.run_steps(state.run, cond, cond_first, total, state.uniforms, state.t, out, n_end)
        done = min(self.first_pending(n_end), last + 1) - state.t
        ready, state.pending = out[:done], out[done:]
        state.uniforms = state.uniforms[done:]
        state.t += done
        return ready

    def n_steps(self, n_samples: int) -> int:
        """Schedule steps of an utterance of n_samples: ceil(n_samples / B) + (B - 1)(F + 1)."""
        return -(-n_samples // self.factor) + (self.factor - 1) * (self.horizon + 1)

    def first_pending(self, n: int) -> int:
        """The first true time t not generated by schedule steps [0, n) (samples t' < t are all final): stream s has
        generated positions below max(0, n - s(F + 1)), so t = min over s of that position times B, plus s."""
        return min(max(0, n - s * (self.horizon + 1)) * self.factor + s for s in range(self.factor))

    def new_run(self):
        """A fresh resumable generation (the C loop's state between `run_steps` calls; one user at a time)."""
        return _native.engine().SubscaleRun(self._net, self.threads)

    def run_steps(self, run, g: np.ndarray, g_first: int, n_samples: int | None, uniforms: np.ndarray,
                  t_first: int, out: np.ndarray, n_end: int) -> None:
        """Run schedule steps [run.next_step, n_end) of one utterance, writing each sample t they generate to
        out[t - t_first] (the samples of `generate`, whatever the split into calls).

        g: conditioning of frames [g_first, g_first + len(g)); uniforms, out: rows from sample t_first (float32
        (., 2), int16 (.)). n_samples: the utterance's T once known (then g must reach its last frame, F = T / hop),
        or None while unknown; then every step n < n_end must have n B < (g_first + len(g) - 1) hop, so no sample
        of these steps needs a frame that is not final. Every window must cover the samples the steps generate:
        from first_pending(run.next_step) to the last (ValueError otherwise; C trusts these checks).
        """
        n0 = run.next_step
        if n_end <= n0:
            return
        g_end = g_first + g.shape[0]
        if not (isinstance(g, np.ndarray) and g.dtype == np.float32 and g.flags.c_contiguous and g.ndim == 2
                and g.shape[1] == 3 * self.hidden and g.shape[0] >= 1):
            raise TypeError(f"g: expected a C-contiguous float32 array (>= 1, {3 * self.hidden}), found {describe(g)}")
        if n_samples is None:
            last = (n_end - 1) * self.factor  # stream 0 leads: its sample at the last step
            if last >= (g_end - 1) * self.hop:
                raise ValueError(f"n_end: steps up to {n_end - 1} reach sample {last}, which needs frame "
                                 f"{last // self.hop + 1}; g holds frames up to {g_end - 1} and the end is unknown")
            total = -1
        else:
            if g_end * self.hop != n_samples or n_end > self.n_steps(n_samples) or n_samples < self.factor:
                raise ValueError(f"n_samples: expected frames up to the end ({g_end} x hop {self.hop}), at least B = "
                                 f"{self.factor} samples and n_end <= {self.n_steps(n_samples)}; found n_samples "
                                 f"{n_samples}, n_end {n_end}")
            last, total = min(n_samples - 1, (n_end - 1) * self.factor), n_samples
        first = self.first_pending(n0)
        if not (0 <= g_first <= first // self.hop and t_first <= first):
            raise ValueError(f"g_first, t_first: expected at most frame {first // self.hop} and sample {first} (the "
                             f"first sample still to generate), found {g_first} and {t_first}")
        if not (isinstance(uniforms, np.ndarray) and uniforms.dtype == np.float32 and uniforms.flags.c_contiguous
                and uniforms.ndim == 2 and uniforms.shape[1] == 2 and uniforms.shape[0] > last - t_first):
            raise ValueError(f"uniforms: expected C-contiguous float32 ({last - t_first + 1}+, 2), found "
                             f"{describe(uniforms)}")
        if not (isinstance(out, np.ndarray) and out.dtype == np.int16 and out.flags.c_contiguous and out.ndim == 1
                and out.flags.writeable and out.shape[0] > last - t_first):
            raise ValueError(f"out: expected a writable C-contiguous int16 array ({last - t_first + 1}+,), found "
                             f"{describe(out)}")
        run.advance(self._isa, self.exact, g, g_first, g_end, total, uniforms, out, t_first, n_end)

    def trace(self, g: np.ndarray, uniforms: np.ndarray) -> dict:
        """generate, also recording per sample (by true time t): "h" (T, H) the stream's state after sample t,
        "logits_c", "logits_f" (T, 256) float32, "step" (T,) int64 the schedule step, and "samples" (T,) int16."""
        out: dict = {}
        out["samples"] = self._run(g, uniforms, out)
        return out
