"""The conditioning network (docs/format.md §2): log-mel frames -> frame-rate gate inputs g (F, 3H), and their
upsampling to sample rate. One definition for every engine.

What it is:
- `conditioning_ref(model, mel)`: the NumPy definition (1-D convolutions with replicate padding and ReLU, then a
  projection to the 3H gate inputs), written to be read;
- `conditioning(model, mel)`: what `Vocoder` and the stream call, once per utterance (or per streamed window):
  the same arithmetic, its products run by the compiled kernel when it is built (pywavernn.kernels.frame_matmul,
  the very bits of the NumPy loop, ~10x faster), and a clear error when the network overflows;
- `cond_at(g, t, hop)` / `upsample_conditioning(g, start, stop, hop)`: the conditioning of sample t, linear
  between frames j = t // hop and j + 1, as every engine computes it inside its sampling loop.
What it is not: the sampling loop; the engines (pywavernn/engines/) take g and upsample it themselves.

Each frame's g does not depend on how many frames are passed (`frame_independent_matmul`), which is what lets the
stream, computing g over windows, reproduce the offline samples exactly.

Tests: `python -m pytest tests/test_reference.py tests/test_vocoder.py -q` (golden data from PyTorch; the compiled
products bit for bit; streaming == offline).
Letters: H hidden units, C conditioning channels, F frames, hop samples per frame, T samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pywavernn import features, lpc
from pywavernn.common import F32

if TYPE_CHECKING:
    from pywavernn.modelfile import Model


def frame_independent_matmul(w: np.ndarray, z: np.ndarray) -> np.ndarray:
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


def conv1d_same_replicate(z: np.ndarray, weight: np.ndarray, bias: np.ndarray, matmul=None) -> np.ndarray:
    """torch.nn.Conv1d(padding=(k-1)//2, padding_mode='replicate') on z (C_in, F) -> (C_out, F)."""
    matmul = matmul or frame_independent_matmul
    k = weight.shape[2]
    pad = (k - 1) // 2
    n_frames = z.shape[1]
    padded = np.pad(z, ((0, 0), (pad, pad)), mode="edge")  # 'edge' repeats the edge frame
    out = np.repeat(bias[:, None], n_frames, axis=1)
    for tap in range(k):  # cross-correlation: output frame f sees padded frames f .. f + k - 1
        out += matmul(np.ascontiguousarray(weight[:, :, tap]), padded[:, tap:tap + n_frames])
    return out


def conditioning_width(model_config) -> int:
    """Columns of g: 3H, plus the P taps of each frame's linear prediction with mel_lpc (docs/format.md §13)."""
    return 3 * model_config.hidden_size + (model_config.linear_order if model_config.mel_lpc else 0)


def frame_taps(model: Model, mel: np.ndarray) -> np.ndarray:
    """§13: each frame's taps of the linear prediction, float32(A_j + linear.weight) (F, P), A_j the LPC of frame
    j's log-mel (pywavernn.lpc.mel_lpc_taps), the sum a float32 add per tap."""
    mc = model.model_config
    a = lpc.mel_lpc_taps(mel, model.feature_config, mc.linear_order, mc.preemphasis)
    return a + model.dense("linear.weight")[None, :]


def conditioning_ref(model: Model, mel: np.ndarray, matmul=None) -> np.ndarray:
    """The frame-rate conditioning network: log-mel (F, n_mels) -> g (F, 3H) float32 (§2); with mel_lpc (§13) g is
    (F, 3H + P), each frame's taps of the linear prediction (frame_taps) in its last P columns.

    matmul: a function with the very arithmetic of frame_independent_matmul (the default), e.g. the compiled
    pywavernn.kernels.frame_matmul that `conditioning` passes.
    """
    matmul = matmul or frame_independent_matmul
    mel = features.check_mel(mel, model.model_config.n_mels)
    z = np.ascontiguousarray(mel.T, dtype=F32)
    for i in range(len(model.model_config.cond_kernels)):
        w = model.dense(f"cond.conv{i}.weight")
        b = model.dense(f"cond.conv{i}.bias")
        z = np.maximum(conv1d_same_replicate(z, w, b, matmul), F32(0))
    g = matmul(model.dense("cond.proj.weight"), z) + model.dense("cond.proj.bias")[:, None]
    if model.model_config.mel_lpc:
        return np.ascontiguousarray(np.concatenate([g.T, frame_taps(model, mel)], axis=1), dtype=F32)
    return np.ascontiguousarray(g.T, dtype=F32)


def conditioning(model: Model, mel: np.ndarray) -> np.ndarray:
    """The frame-rate conditioning g (F, 3H) of a mel, as every backend receives it: the bits of conditioning_ref,
    finite or a clear error (finite but huge mel values can overflow the network). The products run in the
    compiled kernel when it is built; without it, in NumPy (imported here, not at the top, so that the readable
    reference, which imports this module, never loads compiled code)."""
    from pywavernn import _native

    matmul = None
    if _native.available():
        from pywavernn import kernels

        matmul = kernels.frame_matmul
    with np.errstate(over="ignore", invalid="ignore"):
        g = conditioning_ref(model, mel, matmul)
    if not np.isfinite(g).all():  # the mel's fault, or a damaged file's: say both sizes, so the odd one shows
        w_max = max(float(np.abs(model.dense(n)).max()) for n in model.weights if n.startswith("cond."))
        raise ValueError(f"mel: values up to |{float(np.abs(mel).max()):.3g}| overflow the conditioning network, "
                         f"whose largest weight is |{w_max:.3g}|; expected a log-mel spectrogram (typically within "
                         "[-12, 5]) and a model with trained weights")
    return g


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
