"""The NumPy reference Subscale WaveRNN: docs/format.md §9, written to be read.

What it is: the definition-by-code of a subscale model (subscale_factor B > 1): teacher-forced logits and NLL,
and free-running generation from supplied uniforms (T, 2) indexed by each sample's true time t, so the samples do
not depend on the order they are computed in. It reuses pywavernn.reference for everything the plain model shares
(conditioning, the GRU step, the output heads, the sampling rule) and pywavernn.subscale for the index arithmetic.
What it is not: fast. One sample at a time, and the context network is recomputed from scratch over its receptive
field for every sample (a real engine keeps per-stream activation queues; docs/format.md §9 gives the cost).

Exactness aids. Generation walks the step schedule of pywavernn.subscale and writes a step's samples only after all
B sub-tensors have computed theirs (the lockstep of a batched engine); samples not yet generated hold NaN, and the
context input selects (never multiplies) what it may see, so a schedule or mask error shows up as NaN logits.

    from pywavernn import reference_subscale as rs
    samples = rs.generate_subscale_ref(model, mel, uniforms)     # int16 (F * hop,)
    bits = rs.nll_subscale_ref(model, mel, audio_int16)          # bits per 16-bit sample

Tests: `python -m pytest tests/test_subscale.py tests/test_subscale_parity.py -q`.
Letters: B subscale factor, F future horizon (frames are "mel frames" where they appear), T samples,
N = ceil(T / B) positions, H hidden units, C_x context channels, D context layers, R = 2**D receptive positions.
"""

from __future__ import annotations

import numpy as np

from pywavernn import subscale
from pywavernn.audio import coarse_fine_join, coarse_fine_split
from pywavernn.format import Model
from pywavernn.subscale import linear_estimate_mask
from pywavernn.reference import (
    BYTE_INPUT,
    F32,
    N_CLASSES,
    PREV_COARSE,
    PREV_FINE,
    _check_audio,
    _check_uniforms,
    _generate_step,
    _log_softmax_at,
    cond_at,
    conditioning_ref,
    gru_step_ref,
    matvec_ref,
    output_head_ref,
)


def _check_subscale_model(model: Model) -> tuple[int, int]:
    if not isinstance(model, Model):
        raise TypeError(f"model: expected a pywavernn.format.Model, found {type(model).__name__}")
    factor, horizon = subscale.check_model_config(model.model_config)
    model.validate()
    return factor, horizon


# --- the context network (§9) ---------------------------------------------------------------------------------------

def context_input_ref(values: np.ndarray, real: np.ndarray, s: int, k0: int, k1: int,
                      order: str = "sub_tensor") -> np.ndarray:
    """The context network's input for sub-tensor s at positions k0..k1 (inclusive, k0 >= 0): (k1 - k0 + 1, 2B).

    values (N, B, 2) float32 scaled bytes [c, f] of the folded sequence; real (N, B) bool, t < T. Row k holds
    [c(k, 0), f(k, 0), c(k, 1), f(k, 1), ...] where z < s, k < N and the sample is real; 0 everywhere else;
    then its entries in the model's `subscale_context_order` (subscale.context_input_order; "lag": [c(k, s - 1),
    f(k, s - 1), c(k, s - 2), ...]).
    """
    n, factor = real.shape
    k = np.arange(k0, k1 + 1)
    inside = k < n
    rows = np.zeros((k.size, factor, 2), dtype=F32)
    rows[inside] = values[k[inside]]
    seen = np.zeros((k.size, factor), dtype=bool)
    seen[inside] = real[k[inside]]
    seen &= (np.arange(factor) < s)[None, :]
    rows = np.where(seen[:, :, None], rows, F32(0)).reshape(k.size, 2 * factor)
    return rows[:, subscale.context_input_order(s, factor, order)]


def context_features_ref(model: Model, x: np.ndarray, s: int) -> np.ndarray:
    """The embedding and the D dilated layers over a window of positions: x (P, 2B) -> (P, C_x).

    Each layer zero-pads on the left (causal), so position p sees only positions <= p. Exact at the window's last
    position when the window starts at position 0 or spans the receptive field (docs/format.md §9).
    """
    w, residual = model.weights, model.model_config.subscale_residual
    a = np.maximum(x @ w["subscale.embed.weight"].T + w["subscale.embed.bias"][s], F32(0))
    for layer in range(model.model_config.subscale_layers):
        d = 2 ** layer
        weight = w[f"subscale.conv{layer}.weight"]
        earlier = np.concatenate([np.zeros((d, a.shape[1]), F32), a[:-d]])[: a.shape[0]]  # a[p - d], 0 before start
        out = np.maximum((earlier @ weight[:, :, 0].T + a @ weight[:, :, 1].T) + w[f"subscale.conv{layer}.bias"][s],
                         F32(0))
        a = a + out if residual else out  # subscale_residual: the layer's input plus its output
    return a


def linear_estimates_ref(model: Model, v16: np.ndarray, real: np.ndarray, i: int, s: int) -> np.ndarray:
    """The E linear estimates of sample (i, s) (ModelConfig.subscale_linear, docs/format.md §9): (E,).

    v16 (N, B) float32: the folded samples' 16-bit values / 32768 (NaN where not generated yet). Estimate e is
    sum over the entries [d, z] that subscale.linear_estimate_mask lets through (sample (i - 1 + d, z)) and that
    are real (0 <= position < N, t < T) of subscale.linear.weight[s, d, z, e] * v16[i - 1 + d, z]; entries outside
    are selected away, never multiplied, so a mask or schedule error gives NaN."""
    n, factor = real.shape
    w = model.weights["subscale.linear.weight"][s]  # (F + 2, B, E)
    seen = linear_estimate_mask(factor, model.model_config.subscale_horizon)[s]  # (F + 2, B)
    est = np.zeros(w.shape[2], dtype=F32)
    for d, z in zip(*np.nonzero(seen)):
        k = i - 1 + d
        if 0 <= k < n and real[k, z]:
            est = est + w[d, z] * v16[k, z]
    return est


def context_ref(model: Model, values: np.ndarray, v16: np.ndarray, real: np.ndarray, i: int, s: int) -> np.ndarray:
    """ctx(i, s) (3H,): the context network at position i + F over the window of its receptive field, plus the
    linear estimates' columns subscale.linear.proj est(i, s) when the model has them (v16: linear_estimates_ref)."""
    horizon = model.model_config.subscale_horizon
    top = i + horizon
    k0 = max(0, top - subscale.context_receptive_field(model.model_config) + 1)
    order = model.model_config.subscale_context_order
    a = context_features_ref(model, context_input_ref(values, real, s, k0, top, order), s)
    # subscale.proj.weight may be block-sparse (docs/format.md §9): matvec_ref sums each row's kept blocks.
    ctx = matvec_ref(model.weights["subscale.proj.weight"], a[-1]) + model.weights["subscale.proj.bias"][s]
    if model.model_config.subscale_linear:
        ctx = ctx + model.weights["subscale.linear.proj"] @ linear_estimates_ref(model, v16, real, i, s)
    return ctx


def _previous_bytes(coarse: np.ndarray, fine: np.ndarray, i: int, s: int, factor: int,
                    previous: str) -> tuple[int, int]:
    """(c, f) of the sample x_t of (i, s) carries (subscale.previous_sample), from the true-time bytes; the
    constants before the sub-tensor's first sample."""
    k, z = subscale.previous_sample(i, s, factor, previous)
    if k < 0:
        return PREV_COARSE, PREV_FINE
    t = int(subscale.sample_time(k, z, factor))
    return coarse[t], fine[t]


def _real_mask(n_samples: int, factor: int) -> np.ndarray:
    n = subscale.n_positions(n_samples, factor)
    return subscale.sample_time(np.arange(n)[:, None], np.arange(factor)[None, :], factor) < n_samples


# --- teacher forcing and likelihood ---------------------------------------------------------------------------------

def teacher_forced_logits_subscale_ref(model: Model, mel: np.ndarray,
                                       audio_int16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced logits of a subscale model: audio int16 (F * hop,) -> (logits_c, logits_f), each (T, 256),
    indexed by true time t. Each sub-tensor runs its own GRU state from h = 0 over its positions."""
    factor, _ = _check_subscale_model(model)
    hop = model.feature_config.hop_length
    g = conditioning_ref(model, mel)
    audio_int16 = _check_audio(audio_int16, g.shape[0], hop)
    n_samples = subscale.check_length(audio_int16.shape[0], factor)
    coarse, fine = coarse_fine_split(audio_int16)
    values = subscale.fold(np.stack([BYTE_INPUT[coarse], BYTE_INPUT[fine]], axis=1), factor)
    v16 = subscale.fold(audio_int16.astype(F32) / F32(32768), factor)
    real = _real_mask(n_samples, factor)

    previous = model.model_config.subscale_previous
    states = np.empty((n_samples, model.model_config.hidden_size), dtype=F32)
    for s in range(factor):
        h = np.zeros(model.model_config.hidden_size, dtype=F32)
        for i, t in enumerate(range(s, n_samples, factor)):
            q = cond_at(g, t, hop) + context_ref(model, values, v16, real, i, s)
            c_prev, f_prev = _previous_bytes(coarse, fine, i, s, factor, previous)
            x = np.array([BYTE_INPUT[c_prev], BYTE_INPUT[f_prev], BYTE_INPUT[coarse[t]]], dtype=F32)
            h = states[t] = gru_step_ref(model, h, x, q)
    half, w = model.model_config.half, model.weights
    logits_c = output_head_ref(states[:, :half].T, w["out.O1"], w["out.b1"], w["out.O2"], w["out.b2"])
    logits_f = output_head_ref(states[:, half:].T, w["out.O3"], w["out.b3"], w["out.O4"], w["out.b4"])
    return np.ascontiguousarray(logits_c.T), np.ascontiguousarray(logits_f.T)


def nll_subscale_ref(model: Model, mel: np.ndarray, audio_int16: np.ndarray) -> float:
    """Teacher-forced negative log-likelihood in bits per 16-bit sample (mean over all T samples)."""
    logits_c, logits_f = teacher_forced_logits_subscale_ref(model, mel, audio_int16)
    coarse, fine = coarse_fine_split(audio_int16)
    nats = -(_log_softmax_at(logits_c, coarse).sum() + _log_softmax_at(logits_f, fine).sum())
    return float(nats / audio_int16.shape[0] / np.log(2.0))


# --- generation -------------------------------------------------------------------------------------------------------

def generate_subscale_ref(model: Model, mel: np.ndarray, uniforms: np.ndarray, trace: bool = False):
    """Free-running generation: log-mel (F, n_mels), uniforms (F * hop, 2) float32 -> int16 samples (F * hop,).

    Sample t = i * B + s uses uniforms[t]; each sub-tensor's state starts at h = 0, and its GRU input carries the
    sample subscale.previous_sample names (c = 128, f = 0 where there is none). With trace=True returns
    (samples, trace): float32 "h" (T, H) (the state after sample t), "logits_c", "logits_f" (T, 256), and int64
    "step" (T,) (the step that generated sample t).
    """
    factor, horizon = _check_subscale_model(model)
    hop, hidden = model.feature_config.hop_length, model.model_config.hidden_size
    g = conditioning_ref(model, mel)
    n_samples = subscale.check_length(g.shape[0] * hop, factor)
    uniforms = _check_uniforms(uniforms, n_samples)
    n = subscale.n_positions(n_samples, factor)
    real = _real_mask(n_samples, factor)
    values = np.full((n, factor, 2), np.nan, dtype=F32)  # NaN: not generated yet (a leak would poison the logits)
    v16 = np.full((n, factor), np.nan, dtype=F32)  # the same samples' 16-bit values / 32768, for the estimates
    coarse, fine = np.zeros((n, factor), np.int64), np.zeros((n, factor), np.int64)
    h = np.zeros((factor, hidden), dtype=F32)
    previous = model.model_config.subscale_previous
    steps = {"h": np.empty((n_samples, hidden), F32), "logits_c": np.empty((n_samples, N_CLASSES), F32),
             "logits_f": np.empty((n_samples, N_CLASSES), F32), "step": np.empty(n_samples, np.int64)}

    for step, positions in enumerate(subscale.schedule(n_samples, factor, horizon)):
        done = []
        for s, i in enumerate(positions):
            if i < 0:
                continue
            t = int(subscale.sample_time(i, s, factor))
            k, z = subscale.previous_sample(i, s, factor, previous)
            if k >= 0 and np.isnan(values[k, z, 0]):  # a schedule error: never for a valid previous_sample
                raise RuntimeError(f"sample ({i}, {s}) reads ({k}, {z}) before it was generated")
            c_prev, f_prev = (coarse[k, z], fine[k, z]) if k >= 0 else (PREV_COARSE, PREV_FINE)
            q = cond_at(g, t, hop) + context_ref(model, values, v16, real, i, s)
            h[s], c_t, f_t, logits_c, logits_f = _generate_step(model, h[s], c_prev, f_prev, q, *uniforms[t])
            steps["h"][t], steps["logits_c"][t], steps["logits_f"][t], steps["step"][t] = h[s], logits_c, logits_f, step
            done.append((i, s, c_t, f_t))
        for i, s, c_t, f_t in done:  # lockstep: a step's samples become visible only after the step
            coarse[i, s], fine[i, s] = c_t, f_t
            values[i, s] = BYTE_INPUT[c_t], BYTE_INPUT[f_t]
            v16[i, s] = F32(int(coarse_fine_join(c_t, f_t))) / F32(32768)
    samples = coarse_fine_join(subscale.unfold(coarse, n_samples), subscale.unfold(fine, n_samples))
    return (samples, steps) if trace else samples
