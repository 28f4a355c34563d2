"""The NumPy reference WaveRNN: docs/format.md §1-5, written to be read.

What it is: the definition-by-code of what a pywavernn model computes, used as the `reference` backend of
`pywavernn.Vocoder` and as the yardstick every optimised backend (C kernels, CUDA, the PyTorch twin in
training/) is tested against, step by step and sample by sample.
What it is not: fast. No SIMD, no threads, nothing compiled; it imports only NumPy and pywavernn's plain-Python
modules (config, format, audio, features). All arithmetic is float32, as in the spec.

    from pywavernn import format, reference
    model = format.load_model("model.safetensors")
    samples = reference.generate_ref(model, mel, uniforms)          # int16, F * hop samples
    bits = reference.nll_ref(model, mel, audio_int16)                # bits per 16-bit sample

Tests: `python -m pytest tests/test_reference.py -q` (against golden data from PyTorch, tests/data/make_golden.py).

Letters: H hidden units (half = H/2 coarse + H/2 fine), C conditioning channels, K output-head hidden units,
BH x BW block shape, F frames, hop samples per frame, T = F * hop samples.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from pywavernn import features
from pywavernn.audio import coarse_fine_join, coarse_fine_split, scale_byte
from pywavernn.format import BlockSparseMatrix, Model

F32 = np.float32
N_CLASSES = 256
PREV_COARSE, PREV_FINE = 128, 0  # the sample before the first is s = 0 (§1)
TEACHER_FORCING_CHUNK = 2048  # samples per vectorised chunk: bounds memory at ~chunk * 3H floats
BYTE_INPUT = scale_byte(np.arange(N_CLASSES))  # byte v -> float32(v) / 127.5 - 1, looked up per step


# --- matrices -----------------------------------------------------------------------------------------------------

def bsr_matvec_ref(m: BlockSparseMatrix, x: np.ndarray) -> np.ndarray:
    """y = m @ x for a block-CSR matrix (docs/format.md §7); x is (N,) or (N, k) for k right-hand sides.

    One block row at a time: gather the slices of x under the row's blocks and contract them with the blocks.
    Block rows without blocks give zeros.
    """
    n_rows, n_cols = m.shape
    bh, bw = m.block
    if x.shape[0] != n_cols:
        raise ValueError(f"bsr_matvec_ref: matrix is {n_rows} x {n_cols}, vector has {x.shape[0]} rows")
    y = np.zeros((n_rows,) + x.shape[1:], dtype=F32)
    within_block = np.arange(bw)
    for i in range(n_rows // bh):
        lo, hi = int(m.row_ptr[i]), int(m.row_ptr[i + 1])
        if lo == hi:
            continue
        cols = m.col_idx[lo:hi, None] * bw + within_block  # (nb, BW) element columns of the row's blocks
        y[i * bh:(i + 1) * bh] = np.einsum("bhw,bw...->h...", m.values[lo:hi], x[cols])
    return y


def matvec_ref(w: np.ndarray | BlockSparseMatrix, x: np.ndarray) -> np.ndarray:
    """w @ x for a dense float32 matrix or a BlockSparseMatrix; x is (N,) or (N, k)."""
    if isinstance(w, BlockSparseMatrix):
        return bsr_matvec_ref(w, x)
    return w @ x


def sigmoid_ref(x: np.ndarray) -> np.ndarray:
    return F32(1) / (F32(1) + np.exp(-x))


# --- conditioning (§2) ----------------------------------------------------------------------------------------------

def _frame_independent_matmul(w: np.ndarray, z: np.ndarray) -> np.ndarray:
    """w (M, C) @ z (C, F), summed over c = 0, 1, ... in that order, one float32 multiply-add per element.

    Why not BLAS: a BLAS product's rounding depends on the shape it is given (blocking, kernel choice), so the
    conditioning of frame j computed from a few frames (streaming) could differ in the last bit from the same
    frame computed over the whole utterance, and a sampled byte could flip. Elementwise float32 arithmetic
    gives frame j the same value whatever else is in the window.
    """
    out = np.zeros((w.shape[0], z.shape[1]), F32)
    for c in range(w.shape[1]):
        out += w[:, c:c + 1] * z[c:c + 1, :]
    return out


def _conv1d_same_replicate(z: np.ndarray, weight: np.ndarray, bias: np.ndarray, matmul=None) -> np.ndarray:
    """torch.nn.Conv1d(padding=(k-1)//2, padding_mode='replicate') on z (C_in, F) -> (C_out, F)."""
    matmul = matmul or _frame_independent_matmul
    k = weight.shape[2]
    pad = (k - 1) // 2
    n_frames = z.shape[1]
    padded = np.pad(z, ((0, 0), (pad, pad)), mode="edge")  # 'edge' repeats the edge frame
    out = np.repeat(bias[:, None], n_frames, axis=1)
    for tap in range(k):  # cross-correlation: output frame f sees padded frames f .. f + k - 1
        out += matmul(np.ascontiguousarray(weight[:, :, tap]), padded[:, tap:tap + n_frames])
    return out


def conditioning_ref(model: Model, mel: np.ndarray, matmul=None) -> np.ndarray:
    """The frame-rate conditioning network: log-mel (F, n_mels) -> g (F, 3H) float32 (§2).

    Each frame's value does not depend on how many frames are passed (see _frame_independent_matmul), which
    is what lets streaming reproduce the offline samples exactly. matmul: a function with the very arithmetic
    of _frame_independent_matmul (the default), e.g. the compiled pywavernn.kernels.frame_matmul that
    pywavernn.vocoder.conditioning passes.
    """
    matmul = matmul or _frame_independent_matmul
    mel = features.check_mel(mel, model.model_config.n_mels)
    z = np.ascontiguousarray(mel.T, dtype=F32)
    for i in range(len(model.model_config.cond_kernels)):
        w = model.dense(f"cond.conv{i}.weight")
        b = model.dense(f"cond.conv{i}.bias")
        z = np.maximum(_conv1d_same_replicate(z, w, b, matmul), F32(0))
    g = matmul(model.dense("cond.proj.weight"), z) + model.dense("cond.proj.bias")[:, None]
    return np.ascontiguousarray(g.T, dtype=F32)


def cond_at(g: np.ndarray, t: int, hop: int) -> np.ndarray:
    """The conditioning of sample t (3H,): linear interpolation between frames j = t // hop and j + 1 (§2).

    Frame j's vector applies exactly at sample j * hop; past the last frame g[F] := g[F - 1].
    """
    j = t // hop
    a = F32(t % hop) / F32(hop)
    g0 = g[j]
    g1 = g[min(j + 1, g.shape[0] - 1)]
    return g0 + a * (g1 - g0)


def upsample_conditioning(g: np.ndarray, start: int, stop: int, hop: int) -> np.ndarray:
    """cond_at for samples start..stop-1 at once, (stop - start, 3H); same float32 operations, same values."""
    t = np.arange(start, stop)
    j = t // hop
    a = (t % hop).astype(F32) / F32(hop)
    g0 = g[j]
    g1 = g[np.minimum(j + 1, g.shape[0] - 1)]
    return g0 + a[:, None] * (g1 - g0)


# --- one step (§3) ------------------------------------------------------------------------------------------------

def input_projection_ref(w_in: np.ndarray, x: np.ndarray, cond: np.ndarray) -> np.ndarray:
    """gi = W_in @ x + cond, summed in a fixed order: ((x0 w0 + x1 w1) + x2 w2) + cond.

    Written element-wise (no BLAS) so the value does not depend on the library. x is (3,) or (n, 3), cond (3H,)
    or (n, 3H). The generation loop computes the same sum in two parts (see _generate_step).
    """
    x = x[..., None, :]
    return ((x[..., 0] * w_in[:, 0] + x[..., 1] * w_in[:, 1]) + x[..., 2] * w_in[:, 2]) + cond


def gru_update_ref(h: np.ndarray, gi: np.ndarray, rh: np.ndarray) -> np.ndarray:
    """The gate equations on matching slices: h (n,), gi and rh (3, n) with rows [u, r, e]; returns h' (n,)."""
    u = sigmoid_ref(gi[0] + rh[0])
    r = sigmoid_ref(gi[1] + rh[1])
    e = np.tanh(gi[2] + r * rh[2])
    return u * h + (F32(1) - u) * e


def gru_step_ref(model: Model, h: np.ndarray, x_t: np.ndarray, cond_t: np.ndarray) -> np.ndarray:
    """One GRU step with x_t = [c_{t-1}, f_{t-1}, c_t] (scaled) fully known, as under teacher forcing: h -> h'."""
    hidden = model.model_config.hidden_size
    rh = matvec_ref(model.weights["gru.R"], h) + model.weights["gru.b_R"]
    gi = input_projection_ref(model.weights["gru.W_in"], x_t, cond_t)
    return gru_update_ref(h, gi.reshape(3, hidden), rh.reshape(3, hidden))


def output_head_ref(y: np.ndarray, w1, b1: np.ndarray, w2, b2: np.ndarray) -> np.ndarray:
    """logits = w2 @ relu(w1 @ y + b1) + b2; y is (H/2,) -> (256,), or (H/2, n) -> (256, n)."""
    extra = (slice(None),) + (None,) * (y.ndim - 1)  # broadcast the biases over columns
    hidden = np.maximum(matvec_ref(w1, y) + b1[extra], F32(0))
    return matvec_ref(w2, hidden) + b2[extra]


def sample_from_logits_ref(logits: np.ndarray, u: float) -> int:
    """§4: p = exp(l - max l); cdf = float32 running sum in index order; first k with cdf[k] > u * cdf[255]."""
    p = np.exp(logits - logits.max())
    cdf = np.cumsum(p, dtype=F32)  # np.cumsum accumulates sequentially, in float32
    above = np.flatnonzero(cdf > F32(u) * cdf[-1])
    return int(above[0]) if above.size else N_CLASSES - 1


# --- validation ---------------------------------------------------------------------------------------------------

def _check_model(model: Model) -> None:
    """Every load_model check (names, shapes, finiteness, the W_in mask) on an in-memory model."""
    if not isinstance(model, Model):
        raise TypeError(f"model: expected a pywavernn.format.Model, found {type(model).__name__}")
    if model.model_config.subscale_factor != 1:
        raise ValueError(
            f"model: the reference implements the plain WaveRNN (subscale_factor 1), "
            f"found subscale_factor {model.model_config.subscale_factor}"
        )
    model.validate()


def _check_uniforms(uniforms: np.ndarray, n_samples: int) -> np.ndarray:
    if not isinstance(uniforms, np.ndarray) or uniforms.dtype != F32:
        found = uniforms.dtype if isinstance(uniforms, np.ndarray) else type(uniforms).__name__
        raise TypeError(f"uniforms: expected a float32 numpy array, found {found}")
    if uniforms.shape != (n_samples, 2):
        raise ValueError(
            f"uniforms: expected shape ({n_samples}, 2) (F * hop samples, coarse and fine), found {uniforms.shape}"
        )
    if not (np.all(uniforms >= 0) and np.all(uniforms < 1)):  # also rejects NaN
        raise ValueError("uniforms: expected values in [0, 1)")
    return uniforms


def _check_audio(audio: np.ndarray, n_frames: int, hop: int) -> np.ndarray:
    if not isinstance(audio, np.ndarray) or audio.dtype != np.int16:
        found = audio.dtype if isinstance(audio, np.ndarray) else type(audio).__name__
        raise TypeError(f"audio_int16: expected an int16 numpy array, found {found}")
    if audio.shape != (n_frames * hop,):
        raise ValueError(
            f"audio_int16: expected shape ({n_frames * hop},): audio length must be F * hop = {n_frames} * {hop} "
            f"for a mel of {n_frames} frames, found {audio.shape}"
        )
    return audio


# --- generation (§3, §4) ------------------------------------------------------------------------------------------

def _gates(v: np.ndarray, half: int) -> np.ndarray:
    """View a (3H,) gate vector as (3, 2, H/2): [gate u/r/e, coarse/fine half, unit]."""
    return v.reshape(3, 2, half)


def _generate_step(model: Model, h: np.ndarray, c_prev: int, f_prev: int, cond: np.ndarray,
                   u_coarse: float, u_fine: float, adjust: Callable | None = None):
    """One sample in the spec's order: rh once; coarse gates; O1, O2; sample c_t; fine gates with c_t; O3, O4; f_t.

    Returns (h', c_t, f_t, logits_c, logits_f). The input projection is summed as in input_projection_ref:
    the coarse rows get ((x0 w0 + x1 w1) + cond) because their c_t weight is zero (the mask), the fine rows
    ((x0 w0 + x1 w1) + x2 w2) + cond once c_t is known, so teacher forcing reproduces these values exactly.
    adjust(byte, y, logits, c_t) -> logits, when given, changes each byte's logits before its draw (byte 0 coarse,
    1 fine; y the half state the head read; c_t None for the coarse byte): the subscale prior's hook.
    """
    w = model.weights
    half = model.model_config.half
    w_in = w["gru.W_in"]
    rh = _gates(matvec_ref(w["gru.R"], h) + w["gru.b_R"], half)
    x01 = _gates(BYTE_INPUT[c_prev] * w_in[:, 0] + BYTE_INPUT[f_prev] * w_in[:, 1], half)
    cond = _gates(cond, half)

    h_coarse = gru_update_ref(h[:half], x01[:, 0] + cond[:, 0], rh[:, 0])
    logits_c = output_head_ref(h_coarse, w["out.O1"], w["out.b1"], w["out.O2"], w["out.b2"])
    if adjust is not None:
        logits_c = adjust(0, h_coarse, logits_c, None)
    c_t = sample_from_logits_ref(logits_c, u_coarse)

    w_ct = _gates(w_in[:, 2], half)[:, 1]  # c_t's column, fine rows only
    gi_fine = (x01[:, 1] + BYTE_INPUT[c_t] * w_ct) + cond[:, 1]
    h_fine = gru_update_ref(h[half:], gi_fine, rh[:, 1])
    logits_f = output_head_ref(h_fine, w["out.O3"], w["out.b3"], w["out.O4"], w["out.b4"])
    if adjust is not None:
        logits_f = adjust(1, h_fine, logits_f, c_t)
    f_t = sample_from_logits_ref(logits_f, u_fine)
    return np.concatenate([h_coarse, h_fine]), c_t, f_t, logits_c, logits_f


def generate_ref(model: Model, mel: np.ndarray, uniforms: np.ndarray, trace: bool = False, *,
                 progress: Callable[[int], None] | None = None):
    """Free-running generation: log-mel (F, n_mels) and uniforms (F * hop, 2) float32 -> int16 samples (F * hop,).

    The state starts at h = 0 with the previous sample s = 0 (c = 128, f = 0). `progress(n_done)` is called once per
    frame with the number of samples generated so far. With trace=True returns (samples, trace) where trace holds
    per-step float32 arrays "h" (T, H) (the state after step t), "logits_c" and "logits_f" (T, 256), and the
    sampled bytes "coarse" and "fine" (T,) -- for step-level comparisons with other backends.
    """
    _check_model(model)
    hop = model.feature_config.hop_length
    g = conditioning_ref(model, mel)  # validates the mel
    n_samples = g.shape[0] * hop
    uniforms = _check_uniforms(uniforms, n_samples)

    hidden = model.model_config.hidden_size
    h = np.zeros(hidden, dtype=F32)
    c_prev, f_prev = PREV_COARSE, PREV_FINE
    coarse = np.empty(n_samples, dtype=np.int64)
    fine = np.empty(n_samples, dtype=np.int64)
    if trace:
        steps = {"h": np.empty((n_samples, hidden), F32), "logits_c": np.empty((n_samples, N_CLASSES), F32),
                 "logits_f": np.empty((n_samples, N_CLASSES), F32)}
    for t in range(n_samples):
        h, c_prev, f_prev, logits_c, logits_f = _generate_step(
            model, h, c_prev, f_prev, cond_at(g, t, hop), uniforms[t, 0], uniforms[t, 1])
        coarse[t], fine[t] = c_prev, f_prev
        if trace:
            steps["h"][t], steps["logits_c"][t], steps["logits_f"][t] = h, logits_c, logits_f
        if progress is not None and (t + 1) % hop == 0:
            progress(t + 1)
    samples = coarse_fine_join(coarse, fine)
    if not trace:
        return samples
    steps["coarse"], steps["fine"] = coarse.astype(np.uint8), fine.astype(np.uint8)
    return samples, steps


# --- teacher forcing and likelihood (§5) --------------------------------------------------------------------------

def _teacher_forced_chunks(model: Model, mel: np.ndarray, audio_int16: np.ndarray,
                           chunk: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (start, logits_c (n, 256), logits_f (n, 256)) for consecutive chunks of n <= chunk samples.

    Everything but the recurrence is vectorised over the chunk: the upsampled conditioning, the input projection
    and the output heads. Only rh = R h + b_R and the gate update run one sample at a time.
    """
    _check_model(model)
    hop = model.feature_config.hop_length
    g = conditioning_ref(model, mel)
    audio_int16 = _check_audio(audio_int16, g.shape[0], hop)
    w = model.weights
    hidden, half = model.model_config.hidden_size, model.model_config.half

    coarse, fine = coarse_fine_split(audio_int16)
    coarse_prev = np.concatenate([[PREV_COARSE], coarse[:-1]])
    fine_prev = np.concatenate([[PREV_FINE], fine[:-1]])
    x = np.stack([BYTE_INPUT[coarse_prev], BYTE_INPUT[fine_prev], BYTE_INPUT[coarse]], axis=1)  # (T, 3)

    h = np.zeros(hidden, dtype=F32)
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        gi = input_projection_ref(w["gru.W_in"], x[start:stop], upsample_conditioning(g, start, stop, hop))
        states = np.empty((stop - start, hidden), dtype=F32)
        for i in range(stop - start):
            rh = matvec_ref(w["gru.R"], h) + w["gru.b_R"]
            h = gru_update_ref(h, gi[i].reshape(3, hidden), rh.reshape(3, hidden))
            states[i] = h
        logits_c = output_head_ref(states[:, :half].T, w["out.O1"], w["out.b1"], w["out.O2"], w["out.b2"])
        logits_f = output_head_ref(states[:, half:].T, w["out.O3"], w["out.b3"], w["out.O4"], w["out.b4"])
        yield start, np.ascontiguousarray(logits_c.T), np.ascontiguousarray(logits_f.T)


def teacher_forced_logits_ref(model: Model, mel: np.ndarray, audio_int16: np.ndarray, *,
                              chunk: int = TEACHER_FORCING_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced logits (x_t uses the true c_t): audio int16 (F * hop,) -> (logits_c, logits_f), each (T, 256).

    The result is 2 KiB per sample; for long audio use nll_ref, which keeps only one chunk at a time.
    """
    parts = list(_teacher_forced_chunks(model, mel, audio_int16, chunk))
    return (np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))


def _log_softmax_at(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
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
    audio_int16 = _check_audio(audio_int16, mel.shape[0], model.feature_config.hop_length)
    coarse, fine = coarse_fine_split(audio_int16)
    total_nats = 0.0
    for start, logits_c, logits_f in _teacher_forced_chunks(model, mel, audio_int16, chunk):
        stop = start + logits_c.shape[0]
        total_nats -= _log_softmax_at(logits_c, coarse[start:stop]).sum()
        total_nats -= _log_softmax_at(logits_f, fine[start:stop]).sum()
    return float(total_nats / audio_int16.shape[0] / np.log(2.0))
