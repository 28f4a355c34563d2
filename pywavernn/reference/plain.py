"""The NumPy reference WaveRNN: docs/format.md §1-5, with the linear prediction and prior of §11, written to be read.

What it is: the definition-by-code of what a pywavernn model computes, used as the `reference` backend of
`pywavernn.Vocoder` (through pywavernn/engines/reference.py) and as the yardstick every optimised backend (C
kernels, CUDA, the PyTorch twin in training/) is tested against, step by step and sample by sample. The
conditioning network and its upsampling are pywavernn/conditioning.py, shared with every engine.
What it is not: fast. No SIMD, no threads, nothing compiled; it imports only NumPy and pywavernn's plain-Python
modules (common, conditioning, modelfile, audio, features). All arithmetic is float32, as in the spec.

    from pywavernn import modelfile
    from pywavernn.reference import plain
    model = modelfile.load_model("model.safetensors")
    samples = plain.generate_ref(model, mel, uniforms)              # int16, F * hop samples
    bits = plain.nll_ref(model, mel, audio_int16)                   # bits per 16-bit sample
    # from the conditioning g = pywavernn.conditioning.conditioning_ref(model, mel), in pieces:
    state = plain.GenerationState.fresh(model)
    a = plain.generate_cond_ref(model, g, uniforms[:n], state)      # samples 0 .. n - 1
    b = plain.generate_cond_ref(model, g, uniforms[n:], state)      # the rest: a + b == samples

Linear prediction (ModelConfig.linear_order P >= 1, §11): est(t), a learned linear combination of the P previous
samples' 16-bit values, is a 4th GRU input column; with ModelConfig.prior "laplace" each byte's logits also add a
Laplace prior centred on it (the arithmetic: pywavernn/reference/prior.py, shared with the subscale model).

Tests: `python -m pytest tests/test_reference.py tests/test_linear_prediction.py -q` (against golden data from
PyTorch, tests/data/make_golden.py; the linear prediction against the twin and the C engine).

Letters: H hidden units (half = H/2 coarse + H/2 fine), C conditioning channels, K output-head hidden units,
BH x BW block shape, F frames, hop samples per frame, T = F * hop samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from pywavernn import features
from pywavernn.audio import coarse_fine_join, coarse_fine_split, scale_byte
from pywavernn.common import F32, N_CLASSES, PREV_COARSE, PREV_FINE, check_audio, check_uniforms
from pywavernn.conditioning import cond_at, conditioning_ref, conditioning_width, upsample_conditioning
from pywavernn.lpc import frame_of_sample
from pywavernn.modelfile import Model
from pywavernn.reference.ops import exp_ref, matvec_ref, sigmoid_ref, tanh_ref
from pywavernn.reference.prior import add_prior_ref

TEACHER_FORCING_CHUNK = 2048  # samples per vectorised chunk: bounds memory at ~chunk * 3H floats
BYTE_INPUT = scale_byte(np.arange(N_CLASSES))  # byte v -> float32(v) / 127.5 - 1, looked up per step


# The matrix-vector products and the nonlinearities (matvec_ref, sigmoid_ref, tanh_ref, exp_ref) are
# pywavernn/reference/ops.py: the one float32 order of docs/format.md §3a, which the C engines follow in exact mode.


# --- one step (§3) ------------------------------------------------------------------------------------------------

def input_projection_ref(w_in: np.ndarray, x: np.ndarray, cond: np.ndarray) -> np.ndarray:
    """gi = W_in @ x + cond, summed in a fixed order: ((x0 w0 + x1 w1) + x2 w2) + cond, or with linear prediction
    (W_in (3H, 4), x3 = est(t), §11) (((x0 w0 + x1 w1) + x2 w2) + x3 w3) + cond.

    Written element-wise (no BLAS) so the value does not depend on the library. x is (3,) or (n, 3) (4 with
    linear prediction), cond (3H,) or (n, 3H). The generation loop computes the same sum in two parts (see
    generate_step_ref).
    """
    x = x[..., None, :]
    gi = (x[..., 0] * w_in[:, 0] + x[..., 1] * w_in[:, 1]) + x[..., 2] * w_in[:, 2]
    if w_in.shape[1] == 4:
        gi = gi + x[..., 3] * w_in[:, 3]
    return gi + cond


def gru_update_ref(h: np.ndarray, gi: np.ndarray, rh: np.ndarray) -> np.ndarray:
    """The gate equations on matching slices: h (n,), gi and rh (3, n) with rows [u, r, e]; returns h' (n,)."""
    u = sigmoid_ref(gi[0] + rh[0])
    r = sigmoid_ref(gi[1] + rh[1])
    e = tanh_ref(gi[2] + r * rh[2])
    return u * h + (F32(1) - u) * e


def gru_step_ref(model: Model, h: np.ndarray, x_t: np.ndarray, cond_t: np.ndarray) -> np.ndarray:
    """One GRU step with x_t = [c_{t-1}, f_{t-1}, c_t] (scaled) fully known, as under teacher forcing: h -> h'."""
    hidden = model.model_config.hidden_size
    rh = matvec_ref(model.weights["gru.R"], h, model.weights["gru.b_R"])
    gi = input_projection_ref(model.weights["gru.W_in"], x_t, cond_t)
    return gru_update_ref(h, gi.reshape(3, hidden), rh.reshape(3, hidden))


def output_head_ref(y: np.ndarray, w1, b1: np.ndarray, w2, b2: np.ndarray) -> np.ndarray:
    """logits = w2 @ relu(w1 @ y + b1) + b2; y is (H/2,) -> (256,), or (H/2, n) -> (256, n)."""
    hidden = np.maximum(matvec_ref(w1, y, b1), F32(0))
    return matvec_ref(w2, hidden, b2)


def head_prior_ref(model: Model, byte: int, y: np.ndarray, logits: np.ndarray, c_t: int | None, est: np.float32,
                   weight: np.ndarray, bias: np.float32) -> np.ndarray:
    """A byte's logits plus the Laplace prior's term (pywavernn/reference/prior.py) centred on est, its log-scale
    weight . hidden + bias from the byte's head hidden layer hidden = relu(O1 y + b1) (byte 0, coarse) or
    relu(O3 y + b3) (byte 1, fine, bins given the coarse byte c_t); y (H/2,) the half state the head read."""
    w = model.weights
    o, b = ("out.O1", "out.b1") if byte == 0 else ("out.O3", "out.b3")
    hidden = np.maximum(matvec_ref(w[o], y, w[b]), F32(0))  # the head's hidden layer, as output_head_ref has it
    return add_prior_ref(logits, byte, hidden, c_t, est, weight, bias)


# --- linear prediction (§11) -------------------------------------------------------------------------------------

def sample_value_ref(samples) -> np.ndarray:
    """v = s / 32768 in float32 (exact): the 16-bit values the linear prediction weighs."""
    return np.asarray(samples).astype(F32) / F32(32768)


def linear_prediction_ref(weight: np.ndarray, past: np.ndarray) -> np.ndarray:
    """est = sum over p = 1..P of weight[p-1] * past[p-1], summed in that order in float32 (§11); past (P, ...)
    holds v(t - 1), v(t - 2), ..., v(t - P) (zeros before the utterance) for one sample t or a row of them."""
    est = np.zeros(past.shape[1:], dtype=F32)
    for p in range(weight.shape[0]):
        est = est + weight[p] * past[p]
    return est


def past_values_ref(v: np.ndarray, order: int) -> np.ndarray:
    """(P, T) view of the 16-bit values v (T,) of an utterance: row p - 1 holds v(t - p) for t = 0 .. T - 1, with
    v = 0 before the utterance (the previous sample of §1 is s = 0); P = order >= 1."""
    padded = np.concatenate([np.zeros(order, F32), v])
    return np.lib.stride_tricks.sliding_window_view(padded, v.shape[0])[order - 1::-1]  # row P - p: v(t - p)


def prior_adjust_ref(model: Model, est: np.float32) -> Callable | None:
    """generate_step_ref's `adjust` for a plain model with prior "laplace" (§11), centred on est; else None."""
    if model.model_config.prior == "none":
        return None
    w = model.weights
    return lambda byte, y, logits, c_t: head_prior_ref(model, byte, y, logits, c_t, est, w["prior.weight"][byte],
                                                       w["prior.bias"][byte])


def sample_from_logits_ref(logits: np.ndarray, u: float) -> int:
    """§4: p = exp(l - max l) (exp_ref); cdf = float32 running sum in index order; first k with cdf[k] > u * cdf[255]."""
    p = exp_ref(logits - logits.max())
    cdf = np.cumsum(p, dtype=F32)  # np.cumsum accumulates sequentially, in float32
    above = np.flatnonzero(cdf > F32(u) * cdf[-1])
    return int(above[0]) if above.size else N_CLASSES - 1


# --- validation ---------------------------------------------------------------------------------------------------

def _check_model(model: Model) -> None:
    """Every load_model check (names, shapes, finiteness, the W_in mask) on an in-memory model."""
    if not isinstance(model, Model):
        raise TypeError(f"model: expected a pywavernn.modelfile.Model, found {type(model).__name__}")
    if model.model_config.subscale_factor != 1:
        raise ValueError(
            f"model: the reference implements the plain WaveRNN (subscale_factor 1), "
            f"found subscale_factor {model.model_config.subscale_factor}"
        )
    model.validate()


# --- generation (§3, §4) ------------------------------------------------------------------------------------------

def _gates(v: np.ndarray, half: int) -> np.ndarray:
    """View a (3H,) gate vector as (3, 2, H/2): [gate u/r/e, coarse/fine half, unit]."""
    return v.reshape(3, 2, half)


def generate_step_ref(model: Model, h: np.ndarray, c_prev: int, f_prev: int, cond: np.ndarray,
                      u_coarse: float, u_fine: float, adjust: Callable | None = None, est: np.float32 | None = None):
    """One sample in the spec's order: rh once; coarse gates; O1, O2; sample c_t; fine gates with c_t; O3, O4; f_t.

    Returns (h', c_t, f_t, logits_c, logits_f). The input projection is summed as in input_projection_ref:
    the coarse rows get ((x0 w0 + x1 w1) + cond) because their c_t weight is zero (the mask), the fine rows
    ((x0 w0 + x1 w1) + x2 w2) + cond once c_t is known, so teacher forcing reproduces these values exactly; with
    linear prediction (est given, §11) est w3 is added before cond in both. adjust(byte, y, logits, c_t) ->
    logits, when given, changes each byte's logits before its draw (byte 0 coarse, 1 fine; y the half state the
    head read; c_t None for the coarse byte): the prior's hook (prior_adjust_ref; the subscale model's own).
    """
    w = model.weights
    half = model.model_config.half
    w_in = w["gru.W_in"]
    rh = _gates(matvec_ref(w["gru.R"], h, w["gru.b_R"]), half)
    x01 = _gates(BYTE_INPUT[c_prev] * w_in[:, 0] + BYTE_INPUT[f_prev] * w_in[:, 1], half)
    x_est = None if est is None else _gates(F32(est) * w_in[:, 3], half)
    cond = _gates(cond, half)

    gi_coarse = x01[:, 0] if x_est is None else x01[:, 0] + x_est[:, 0]
    h_coarse = gru_update_ref(h[:half], gi_coarse + cond[:, 0], rh[:, 0])
    logits_c = output_head_ref(h_coarse, w["out.O1"], w["out.b1"], w["out.O2"], w["out.b2"])
    if adjust is not None:
        logits_c = adjust(0, h_coarse, logits_c, None)
    c_t = sample_from_logits_ref(logits_c, u_coarse)

    w_ct = _gates(w_in[:, 2], half)[:, 1]  # c_t's column, fine rows only
    gi_fine = x01[:, 1] + BYTE_INPUT[c_t] * w_ct
    if x_est is not None:
        gi_fine = gi_fine + x_est[:, 1]
    gi_fine = gi_fine + cond[:, 1]
    h_fine = gru_update_ref(h[half:], gi_fine, rh[:, 1])
    logits_f = output_head_ref(h_fine, w["out.O3"], w["out.b3"], w["out.O4"], w["out.b4"])
    if adjust is not None:
        logits_f = adjust(1, h_fine, logits_f, c_t)
    f_t = sample_from_logits_ref(logits_f, u_fine)
    return np.concatenate([h_coarse, h_fine]), c_t, f_t, logits_c, logits_f


@dataclass
class GenerationState:
    """Where a generation stands: the GRU state h (H,), the previous sample's bytes (c_prev, f_prev), the index t
    of the next sample, counted from the utterance's start, and with linear prediction the P previous samples'
    16-bit values `past` (P,) (v(t - 1) first, §11). Fresh: h = 0, previous samples s = 0, t = 0."""

    h: np.ndarray
    c_prev: int = PREV_COARSE
    f_prev: int = PREV_FINE
    t: int = 0
    past: np.ndarray = field(default_factory=lambda: np.zeros(0, F32))

    @classmethod
    def fresh(cls, model: Model) -> "GenerationState":
        return cls(np.zeros(model.model_config.hidden_size, dtype=F32),
                   past=np.zeros(model.model_config.linear_order, dtype=F32))


def generate_ref(model: Model, mel: np.ndarray, uniforms: np.ndarray, trace: bool = False, *,
                 progress: Callable[[int], None] | None = None):
    """Free-running generation: log-mel (F, n_mels) and uniforms (F * hop, 2) float32 -> int16 samples (F * hop,).

    The state starts at h = 0 with the previous sample s = 0 (c = 128, f = 0). `progress(n_done)` is called once per
    frame with the number of samples generated so far. With trace=True returns (samples, trace) where trace holds
    per-step float32 arrays "h" (T, H) (the state after step t), "logits_c" and "logits_f" (T, 256), and the
    sampled bytes "coarse" and "fine" (T,) -- for step-level comparisons with other backends.
    """
    _check_model(model)
    g = conditioning_ref(model, mel)  # validates the mel
    uniforms = check_uniforms(uniforms, g.shape[0] * model.feature_config.hop_length)
    return generate_cond_ref(model, g, uniforms, trace=trace, progress=progress)


def generate_cond_ref(model: Model, g: np.ndarray, uniforms: np.ndarray, state: GenerationState | None = None, *,
                      g_first: int = 0, trace: bool = False, progress: Callable[[int], None] | None = None):
    """generate_ref from the conditioning, in pieces if wanted: the next T = len(uniforms) samples of `state` (a
    fresh utterance if None), which it advances; successive calls give the samples of one call.

    g (rows, 3H) float32 is the conditioning (pywavernn.conditioning) of frames g_first .. g_first + rows - 1, and
    must hold the frames of the samples generated: g_first * hop <= state.t and state.t + T <= (g_first + rows) *
    hop. Past its last row g repeats that row (§2), which is the utterance's edge rule when g reaches the end.
    model: a validated plain model (load_model validates; generate_ref checks an in-memory one). progress and trace
    as in generate_ref, counted from this call's first sample.
    """
    hop, hidden = model.feature_config.hop_length, model.model_config.hidden_size
    width = conditioning_width(model.model_config)
    if not (isinstance(g, np.ndarray) and g.dtype == F32 and g.ndim == 2 and g.shape[1] == width):
        raise TypeError(f"g: expected a float32 array (frames, {width}), found "
                        f"{g.dtype if isinstance(g, np.ndarray) else type(g).__name__} of shape {np.shape(g)}")
    if not isinstance(uniforms, np.ndarray) or uniforms.ndim != 2:
        raise TypeError(f"uniforms: expected a float32 array (T, 2), found {type(uniforms).__name__}")
    uniforms = check_uniforms(uniforms, uniforms.shape[0])
    state = GenerationState.fresh(model) if state is None else state
    t0, n_samples, lo = state.t, uniforms.shape[0], g_first * hop
    if not lo <= t0 <= t0 + n_samples <= lo + g.shape[0] * hop:
        raise ValueError(f"uniforms: samples {t0} .. {t0 + n_samples - 1} must lie in the frames of g, samples "
                         f"{lo} .. {lo + g.shape[0] * hop - 1}")

    h, c_prev, f_prev, past = state.h, state.c_prev, state.f_prev, state.past
    w_lin = model.weights.get("linear.weight")
    g, taps = g[:, :3 * hidden], (g[:, 3 * hidden:] if model.model_config.mel_lpc else None)
    coarse = np.empty(n_samples, dtype=np.int64)
    fine = np.empty(n_samples, dtype=np.int64)
    if trace:
        steps = {"h": np.empty((n_samples, hidden), F32), "logits_c": np.empty((n_samples, N_CLASSES), F32),
                 "logits_f": np.empty((n_samples, N_CLASSES), F32)}
    for i in range(n_samples):
        t = t0 + i
        if taps is not None:  # §13: the taps of the frame nearest sample t (past g's last row, that row)
            w_lin = taps[frame_of_sample(t, hop, g_first + taps.shape[0]) - g_first]
        est = None if w_lin is None else linear_prediction_ref(w_lin, past)
        h, c_prev, f_prev, logits_c, logits_f = generate_step_ref(
            model, h, c_prev, f_prev, cond_at(g, t - lo, hop), uniforms[i, 0], uniforms[i, 1],
            adjust=prior_adjust_ref(model, est), est=est)
        coarse[i], fine[i] = c_prev, f_prev
        if w_lin is not None:  # v(t) becomes v(t' - 1) of the next sample t'
            past = np.concatenate([[sample_value_ref(coarse_fine_join(c_prev, f_prev))], past[:-1]]).astype(F32)
        if trace:
            steps["h"][i], steps["logits_c"][i], steps["logits_f"][i] = h, logits_c, logits_f
        if progress is not None and (t + 1) % hop == 0:
            progress(i + 1)
    state.h, state.c_prev, state.f_prev, state.t, state.past = h, int(c_prev), int(f_prev), t0 + n_samples, past
    samples = coarse_fine_join(coarse, fine)
    if not trace:
        return samples
    steps["coarse"], steps["fine"] = coarse.astype(np.uint8), fine.astype(np.uint8)
    return samples, steps


# --- teacher forcing and likelihood (§5) --------------------------------------------------------------------------

def _teacher_forced_chunks(model: Model, g: np.ndarray, audio_int16: np.ndarray,
                           chunk: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start, logits_c (n, 256), logits_f (n, 256)) for consecutive chunks of n <= chunk samples.

    Everything but the recurrence is vectorised over the chunk: the upsampled conditioning, the input projection
    and the output heads. Only rh = R h + b_R and the gate update run one sample at a time (and the prior's terms,
    with a prior, §11).
    """
    hop = model.feature_config.hop_length
    audio_int16 = check_audio(audio_int16, g.shape[0], hop)
    w = model.weights
    hidden, half = model.model_config.hidden_size, model.model_config.half

    coarse, fine = coarse_fine_split(audio_int16)
    coarse_prev = np.concatenate([[PREV_COARSE], coarse[:-1]])
    fine_prev = np.concatenate([[PREV_FINE], fine[:-1]])
    columns = [BYTE_INPUT[coarse_prev], BYTE_INPUT[fine_prev], BYTE_INPUT[coarse]]
    order = model.model_config.linear_order
    if order:  # est(t) from the true past (§11), with taps by frame (§13)
        taps = w["linear.weight"]
        if model.model_config.mel_lpc:
            frames = frame_of_sample(np.arange(audio_int16.shape[0]), hop, g.shape[0])
            taps = np.ascontiguousarray(g[frames, 3 * hidden:].T)  # (P, T)
        est = linear_prediction_ref(taps, past_values_ref(sample_value_ref(audio_int16), order))
        columns.append(est)
    g = g[:, :3 * hidden]
    x = np.stack(columns, axis=1)  # (T, 3), or (T, 4) with est

    h = np.zeros(hidden, dtype=F32)
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        gi = input_projection_ref(w["gru.W_in"], x[start:stop], upsample_conditioning(g, start, stop, hop))
        states = np.empty((stop - start, hidden), dtype=F32)
        for i in range(stop - start):
            rh = matvec_ref(w["gru.R"], h, w["gru.b_R"])
            h = gru_update_ref(h, gi[i].reshape(3, hidden), rh.reshape(3, hidden))
            states[i] = h
        logits_c = output_head_ref(states[:, :half].T, w["out.O1"], w["out.b1"], w["out.O2"], w["out.b2"])
        logits_f = output_head_ref(states[:, half:].T, w["out.O3"], w["out.b3"], w["out.O4"], w["out.b4"])
        logits_c, logits_f = np.ascontiguousarray(logits_c.T), np.ascontiguousarray(logits_f.T)
        if model.model_config.prior != "none":
            for i in range(stop - start):
                adjust = prior_adjust_ref(model, x[start + i, 3])
                logits_c[i] = adjust(0, states[i, :half], logits_c[i], None)
                logits_f[i] = adjust(1, states[i, half:], logits_f[i], coarse[start + i])
        yield start, logits_c, logits_f


def teacher_forced_logits_ref(model: Model, mel: np.ndarray, audio_int16: np.ndarray, *,
                              chunk: int = TEACHER_FORCING_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced logits (x_t uses the true c_t): audio int16 (F * hop,) -> (logits_c, logits_f), each (T, 256).

    The result is 2 KiB per sample; for long audio use nll_ref, which keeps only one chunk at a time.
    """
    _check_model(model)
    parts = list(_teacher_forced_chunks(model, conditioning_ref(model, mel), audio_int16, chunk))
    return (np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))


def log_softmax_at(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log softmax(logits)[label] per row, in float64 (a metric, not part of the bit-exact path)."""
    l64 = logits.astype(np.float64)
    top = l64.max(axis=1)
    log_norm = top + np.log(np.exp(l64 - top[:, None]).sum(axis=1))
    return l64[np.arange(l64.shape[0]), labels] - log_norm


def nll_ref(model: Model, mel: np.ndarray, audio_int16: np.ndarray, *, chunk: int = TEACHER_FORCING_CHUNK) -> float:
    """Teacher-forced negative log-likelihood in bits per 16-bit sample (§5).

    The mean over t of -log2 P(c_t) - log2 P(f_t | c_t); holds one chunk of logits at a time.
    """
    mel = features.check_mel(mel, model.model_config.n_mels)
    check_audio(audio_int16, mel.shape[0], model.feature_config.hop_length)
    _check_model(model)
    return nll_cond_ref(model, conditioning_ref(model, mel), audio_int16, chunk=chunk)


def nll_cond_ref(model: Model, g: np.ndarray, audio_int16: np.ndarray, *,
                 chunk: int = TEACHER_FORCING_CHUNK) -> float:
    """nll_ref from the utterance's conditioning g (F, 3H) (pywavernn.conditioning); model: a validated plain model."""
    audio_int16 = check_audio(audio_int16, g.shape[0], model.feature_config.hop_length)
    coarse, fine = coarse_fine_split(audio_int16)
    total_nats = 0.0
    for start, logits_c, logits_f in _teacher_forced_chunks(model, g, audio_int16, chunk):
        stop = start + logits_c.shape[0]
        total_nats -= log_softmax_at(logits_c, coarse[start:stop]).sum()
        total_nats -= log_softmax_at(logits_f, fine[start:stop]).sum()
    return float(total_nats / audio_int16.shape[0] / np.log(2.0))
