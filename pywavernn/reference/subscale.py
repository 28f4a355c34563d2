"""The NumPy reference Subscale WaveRNN: docs/format.md §9, written to be read.

What it is: the definition-by-code of a subscale model (subscale_factor B > 1): teacher-forced logits and NLL,
and free-running generation from supplied uniforms (T, 2) indexed by each sample's true time t, so the samples do
not depend on the order they are computed in. With subscale_prior "laplace" each byte's logits add the prior's terms
(`prior_logits_ref`; the arithmetic is pywavernn/reference/prior.py's, shared with the plain model). It reuses
pywavernn.reference.plain for everything the plain model shares (the GRU step, the output heads, the sampling
rule), pywavernn.conditioning for the conditioning, and pywavernn.fold for the index arithmetic.
What it is not: fast. One sample at a time, and the context network is recomputed from scratch over its receptive
field for every sample (a real engine keeps per-stream activation queues; docs/format.md §9 gives the cost).

Exactness aids. Generation walks the step schedule of pywavernn.fold and writes a step's samples only after all
B sub-tensors have computed theirs (the lockstep of a batched engine); samples not yet generated hold NaN, and the
context input selects (never multiplies) what it may see, so a schedule or mask error shows up as NaN logits.

    from pywavernn.reference import subscale as rs
    samples = rs.generate_subscale_ref(model, mel, uniforms)     # int16 (F * hop,)
    bits = rs.nll_subscale_ref(model, mel, audio_int16)          # bits per 16-bit sample
    samples = rs.generate_subscale_cond_ref(model, g, uniforms)  # the same, from g = conditioning_ref(model, mel)

Tests: `python -m pytest tests/test_subscale.py tests/test_subscale_parity.py -q`.
Letters: B subscale factor, F future horizon (frames are "mel frames" where they appear), T samples,
N = ceil(T / B) positions, H hidden units, C_x context channels, D context layers, R = 2**D receptive positions.
"""

from __future__ import annotations

import functools

import numpy as np

from pywavernn import fold
from pywavernn.audio import coarse_fine_join, coarse_fine_split
from pywavernn.common import F32, N_CLASSES, PREV_COARSE, PREV_FINE, check_audio, check_uniforms
from pywavernn.conditioning import cond_at, conditioning_ref
from pywavernn.fold import linear_estimate_mask
from pywavernn.modelfile import Model
from pywavernn.reference.plain import (
    BYTE_INPUT,
    generate_step_ref,
    gru_step_ref,
    head_prior_ref,
    log_softmax_at,
    matvec_ref,
    output_head_ref,
)


def _check_subscale_model(model: Model) -> tuple[int, int]:
    if not isinstance(model, Model):
        raise TypeError(f"model: expected a pywavernn.modelfile.Model, found {type(model).__name__}")
    factor, horizon = fold.check_model_config(model.model_config)
    model.validate()
    return factor, horizon


# --- the context network (§9) ---------------------------------------------------------------------------------------

def context_input_ref(values: np.ndarray, real: np.ndarray, s: int, k0: int, k1: int,
                      order: str = "sub_tensor") -> np.ndarray:
    """The context network's input for sub-tensor s at positions k0..k1 (inclusive, k0 >= 0): (k1 - k0 + 1, 2B).

    values (N, B, 2) float32 scaled bytes [c, f] of the folded sequence; real (N, B) bool, t < T. Row k holds
    [c(k, 0), f(k, 0), c(k, 1), f(k, 1), ...] where z < s, k < N and the sample is real; 0 everywhere else;
    then its entries in the model's `subscale_context_order` (fold.context_input_order; "lag": [c(k, s - 1),
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
    return rows[:, fold.context_input_order(s, factor, order)]


def context_features_ref(model: Model, x: np.ndarray, s: int) -> np.ndarray:
    """The embedding and the D dilated layers over a window of positions: x (P, 2B) -> (P, C_x).

    Each layer zero-pads on the left (causal), so position p sees only positions <= p. Exact at the window's last
    position when the window starts at position 0 or spans the receptive field (docs/format.md §9).
    """
    w = model.weights
    def product(weight: np.ndarray, inputs: np.ndarray) -> np.ndarray:  # inputs (P, n) -> weight @ inputs[p], (P, m)
        return matvec_ref(weight, inputs.T).T

    a = np.maximum(product(w["subscale.embed.weight"], x) + w["subscale.embed.bias"][s], F32(0))
    for layer in range(model.model_config.subscale_layers):
        d = 2 ** layer
        weight = w[f"subscale.conv{layer}.weight"]
        earlier = np.concatenate([np.zeros((d, a.shape[1]), F32), a[:-d]])[: a.shape[0]]  # a[p - d], 0 before start
        a = np.maximum((product(weight[:, :, 0], earlier) + product(weight[:, :, 1], a))
                       + w[f"subscale.conv{layer}.bias"][s], F32(0))
    return a


def linear_estimates_ref(model: Model, v16: np.ndarray, real: np.ndarray, i: int, s: int) -> np.ndarray:
    """The E linear estimates of sample (i, s) (ModelConfig.subscale_linear, docs/format.md §9): (E,).

    v16 (N, B) float32: the folded samples' 16-bit values / 32768 (NaN where not generated yet). Estimate e is
    sum over the entries [d, z] that fold.linear_estimate_mask lets through (sample (i - 1 + d, z)) and that
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
    k0 = max(0, top - fold.context_receptive_field(model.model_config) + 1)
    order = model.model_config.subscale_context_order
    a = context_features_ref(model, context_input_ref(values, real, s, k0, top, order), s)
    # subscale.proj.weight may be block-sparse (docs/format.md §9): matvec_ref sums each row's kept blocks.
    ctx = matvec_ref(model.weights["subscale.proj.weight"], a[-1]) + model.weights["subscale.proj.bias"][s]
    if model.model_config.subscale_linear:
        ctx = ctx + model.weights["subscale.linear.proj"] @ linear_estimates_ref(model, v16, real, i, s)
    return ctx


# --- the Laplace prior (ModelConfig.subscale_prior "laplace", docs/format.md §9; arithmetic: reference/prior.py) -----

def prior_logits_ref(model: Model, byte: int, y: np.ndarray, logits: np.ndarray, c_t: int | None,
                     est0: np.float32, s: int) -> np.ndarray:
    """A byte's logits plus the prior's term (docs/format.md §9) for a sample of sub-tensor s; a model without a
    prior: unchanged. byte 0: coarse, bins [256 c, 256 c + 256); byte 1: fine given the coarse byte c_t, bins
    [256 c_t + f, 256 c_t + f + 1). y (H/2,) is the half state the byte's head reads; est0 the first estimate."""
    if model.model_config.subscale_prior == "none":
        return logits
    w = model.weights
    return head_prior_ref(model, byte, y, logits, c_t, est0, w["subscale.prior.weight"][byte],
                          w["subscale.prior.bias"][byte, s])


def _previous_bytes(coarse: np.ndarray, fine: np.ndarray, i: int, s: int, factor: int,
                    previous: str) -> tuple[int, int]:
    """(c, f) of the sample x_t of (i, s) carries (fold.previous_sample), from the true-time bytes; the
    constants before the sub-tensor's first sample."""
    k, z = fold.previous_sample(i, s, factor, previous)
    if k < 0:
        return PREV_COARSE, PREV_FINE
    t = int(fold.sample_time(k, z, factor))
    return coarse[t], fine[t]


def _real_mask(n_samples: int, factor: int) -> np.ndarray:
    n = fold.n_positions(n_samples, factor)
    return fold.sample_time(np.arange(n)[:, None], np.arange(factor)[None, :], factor) < n_samples


# --- teacher forcing and likelihood ---------------------------------------------------------------------------------

def teacher_forced_logits_subscale_ref(model: Model, mel: np.ndarray,
                                       audio_int16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced logits of a subscale model: audio int16 (F * hop,) -> (logits_c, logits_f), each (T, 256),
    indexed by true time t. Each sub-tensor runs its own GRU state from h = 0 over its positions."""
    _check_subscale_model(model)
    return teacher_forced_logits_subscale_cond_ref(model, conditioning_ref(model, mel), audio_int16)


def teacher_forced_logits_subscale_cond_ref(model: Model, g: np.ndarray,
                                            audio_int16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """teacher_forced_logits_subscale_ref from the conditioning g (F, 3H) (pywavernn.conditioning); model: a
    validated subscale model."""
    factor = model.model_config.subscale_factor
    hop = model.feature_config.hop_length
    audio_int16 = check_audio(audio_int16, g.shape[0], hop)
    n_samples = fold.check_length(audio_int16.shape[0], factor)
    coarse, fine = coarse_fine_split(audio_int16)
    values = fold.fold(np.stack([BYTE_INPUT[coarse], BYTE_INPUT[fine]], axis=1), factor)
    v16 = fold.fold(audio_int16.astype(F32) / F32(32768), factor)
    real = _real_mask(n_samples, factor)

    previous = model.model_config.subscale_previous
    states = np.empty((n_samples, model.model_config.hidden_size), dtype=F32)
    est0 = np.zeros(n_samples, dtype=F32)  # the first linear estimate of each sample (the prior's centre)
    for s in range(factor):
        h = np.zeros(model.model_config.hidden_size, dtype=F32)
        for i, t in enumerate(range(s, n_samples, factor)):
            q = cond_at(g, t, hop) + context_ref(model, values, v16, real, i, s)
            c_prev, f_prev = _previous_bytes(coarse, fine, i, s, factor, previous)
            x = np.array([BYTE_INPUT[c_prev], BYTE_INPUT[f_prev], BYTE_INPUT[coarse[t]]], dtype=F32)
            h = states[t] = gru_step_ref(model, h, x, q)
            if model.model_config.subscale_prior != "none":
                est0[t] = linear_estimates_ref(model, v16, real, i, s)[0]
    half, w = model.model_config.half, model.weights
    logits_c = output_head_ref(states[:, :half].T, w["out.O1"], w["out.b1"], w["out.O2"], w["out.b2"]).T
    logits_f = output_head_ref(states[:, half:].T, w["out.O3"], w["out.b3"], w["out.O4"], w["out.b4"]).T
    if model.model_config.subscale_prior != "none":
        for t in range(n_samples):
            logits_c[t] = prior_logits_ref(model, 0, states[t, :half], logits_c[t], None, est0[t], t % factor)
            logits_f[t] = prior_logits_ref(model, 1, states[t, half:], logits_f[t], coarse[t], est0[t], t % factor)
    return np.ascontiguousarray(logits_c), np.ascontiguousarray(logits_f)


def nll_subscale_ref(model: Model, mel: np.ndarray, audio_int16: np.ndarray) -> float:
    """Teacher-forced negative log-likelihood in bits per 16-bit sample (mean over all T samples)."""
    _check_subscale_model(model)
    return nll_subscale_cond_ref(model, conditioning_ref(model, mel), audio_int16)


def nll_subscale_cond_ref(model: Model, g: np.ndarray, audio_int16: np.ndarray) -> float:
    """nll_subscale_ref from the conditioning g (F, 3H); model: a validated subscale model."""
    logits_c, logits_f = teacher_forced_logits_subscale_cond_ref(model, g, audio_int16)
    coarse, fine = coarse_fine_split(audio_int16)
    nats = -(log_softmax_at(logits_c, coarse).sum() + log_softmax_at(logits_f, fine).sum())
    return float(nats / audio_int16.shape[0] / np.log(2.0))


# --- generation -------------------------------------------------------------------------------------------------------

def generate_subscale_ref(model: Model, mel: np.ndarray, uniforms: np.ndarray, trace: bool = False):
    """Free-running generation: log-mel (F, n_mels), uniforms (F * hop, 2) float32 -> int16 samples (F * hop,).

    Sample t = i * B + s uses uniforms[t]; each sub-tensor's state starts at h = 0, and its GRU input carries the
    sample fold.previous_sample names (c = 128, f = 0 where there is none). With trace=True returns
    (samples, trace): float32 "h" (T, H) (the state after sample t), "logits_c", "logits_f" (T, 256), and int64
    "step" (T,) (the step that generated sample t).
    """
    _check_subscale_model(model)
    return generate_subscale_cond_ref(model, conditioning_ref(model, mel), uniforms, trace)


def generate_subscale_cond_ref(model: Model, g: np.ndarray, uniforms: np.ndarray, trace: bool = False):
    """generate_subscale_ref from the utterance's conditioning g (F, 3H) (pywavernn.conditioning); model: a
    validated subscale model."""
    factor, horizon = model.model_config.subscale_factor, model.model_config.subscale_horizon
    hop, hidden = model.feature_config.hop_length, model.model_config.hidden_size
    n_samples = fold.check_length(g.shape[0] * hop, factor)
    uniforms = check_uniforms(uniforms, n_samples)
    n = fold.n_positions(n_samples, factor)
    real = _real_mask(n_samples, factor)
    values = np.full((n, factor, 2), np.nan, dtype=F32)  # NaN: not generated yet (a leak would poison the logits)
    v16 = np.full((n, factor), np.nan, dtype=F32)  # the same samples' 16-bit values / 32768, for the estimates
    coarse, fine = np.zeros((n, factor), np.int64), np.zeros((n, factor), np.int64)
    h = np.zeros((factor, hidden), dtype=F32)
    previous = model.model_config.subscale_previous
    steps = {"h": np.empty((n_samples, hidden), F32), "logits_c": np.empty((n_samples, N_CLASSES), F32),
             "logits_f": np.empty((n_samples, N_CLASSES), F32), "step": np.empty(n_samples, np.int64)}

    for step, positions in enumerate(fold.schedule(n_samples, factor, horizon)):
        done = []
        for s, i in enumerate(positions):
            if i < 0:
                continue
            t = int(fold.sample_time(i, s, factor))
            k, z = fold.previous_sample(i, s, factor, previous)
            if k >= 0 and np.isnan(values[k, z, 0]):  # a schedule error: never for a valid previous_sample
                raise RuntimeError(f"sample ({i}, {s}) reads ({k}, {z}) before it was generated")
            c_prev, f_prev = (coarse[k, z], fine[k, z]) if k >= 0 else (PREV_COARSE, PREV_FINE)
            q = cond_at(g, t, hop) + context_ref(model, values, v16, real, i, s)
            adjust = None
            if model.model_config.subscale_prior != "none":  # the prior, centred on the first linear estimate
                est0 = linear_estimates_ref(model, v16, real, i, s)[0]
                adjust = functools.partial(prior_logits_ref, model, est0=est0, s=s)
            h[s], c_t, f_t, logits_c, logits_f = generate_step_ref(model, h[s], c_prev, f_prev, q, *uniforms[t],
                                                                adjust=adjust)
            steps["h"][t], steps["logits_c"][t], steps["logits_f"][t], steps["step"][t] = h[s], logits_c, logits_f, step
            done.append((i, s, c_t, f_t))
        for i, s, c_t, f_t in done:  # lockstep: a step's samples become visible only after the step
            coarse[i, s], fine[i, s] = c_t, f_t
            values[i, s] = BYTE_INPUT[c_t], BYTE_INPUT[f_t]
            v16[i, s] = F32(int(coarse_fine_join(c_t, f_t))) / F32(32768)
    samples = coarse_fine_join(fold.unfold(coarse, n_samples), fold.unfold(fine, n_samples))
    return (samples, steps) if trace else samples
