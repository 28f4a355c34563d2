"""Linear prediction taps from the log-mel, one set per frame (docs/format.md §13, `model_config.mel_lpc`).

What it is: `mel_lpc_taps(mel, feature_config, order, preemphasis)`, the order-P LPC of the power spectrum that
each frame's log-mel implies, in the network's domain (the pre-emphasised samples of §10 when preemphasis > 0):

    |X|      = max(0, exp(mel) @ pinv(mel_filterbank).T)          the magnitude the mel implies (F, n_fft/2 + 1)
    S        = |X|^2 * (1 + a^2 - 2 a cos w)                      its power, times the pre-emphasis response
               (|X| itself when feature_config.power == 2: the mel is of power already)
    S       += NOISE_FLOOR * mean(S)                               per frame: a -30 dB floor (see below)
    r[k]     = irfft(S)[k] * exp(-(2 pi LAG_WINDOW_HZ k / sr)^2 / 2),  k = 0 .. P
    a        = Levinson-Durbin(r, P)
    taps[p-1] = a[p-1] * BANDWIDTH_EXPANSION^p,  p = 1 .. P          est(t) ~ sum_p taps[p-1] v(t - p)

all in float64, the taps rounded to float32 at the end. A frame whose autocorrelation is not finite and positive
(an all-zero spectrum) gets zero taps; Levinson-Durbin stops at the order where the prediction error would no
longer be positive or a reflection coefficient would reach 1, and leaves the higher taps zero, so every set of
taps is that of a stable all-pole filter. The function is the one definition every backend calls (the
conditioning of pywavernn.conditioning for the engines and the reference, the PyTorch twin in training/), so they
all see the same float32 taps for the same mel on the same machine; NumPy's float64 exp and FFT may round
differently on another CPU, which could move a float32 tap by an ulp on a rare frame (a model file does not store
the taps).
What it is not: the per-sample prediction (§13: the engines add the learned correction linear.weight and take the
dot product with the past samples in their sampling loops), nor an analysis of audio (no true audio is used).
Why: one fixed predictor cannot follow the formants; on the project's data a per-frame LPC from the mel leaves
2.6-7.3 dB less residual energy than one fixed 16-tap predictor, within 0.1 dB of the ideal per-frame LPC of the
true signal (`python -m research.mel_lpc_headroom`), so the prior is that much sharper and the network models
the excitation instead of the envelope, as in LPCNet. The floor is -30 dB, not the -40 dB that would condition
the system well enough: where the mel says a band is empty (a codec's band limit, as asterisk-en's G.722 speech
above 7 kHz), the predictor's gain there grows as the floor drops (|P(w)| up to 13 on asterisk-en frames at -40
dB), so a free-running model's sampling noise in that band comes back from est amplified and the prior, centred
on est, carries it on into bursts (docs/quality.md, the campaign's seventh stretch, has the measurements).

Tests: `python -m pytest tests/test_mel_lpc.py -q`.
Letters: F frames, P the order (`linear_order`), a the pre-emphasis coefficient, w the bin frequency in radians.
"""

from __future__ import annotations

import functools

import numpy as np

from pywavernn.common import F32
from pywavernn.config import FeatureConfig
from pywavernn.features import check_mel, mel_filterbank

NOISE_FLOOR = 1e-3  # the spectrum floor, relative to each frame's mean power (-30 dB): bounds the predictor's gain
LAG_WINDOW_HZ = 60.0  # Gaussian lag window: smooths the spectrum over about one harmonic of a low voice
BANDWIDTH_EXPANSION = 0.96  # tap p times 0.96^p: every pole's radius times 0.96, each resonance ~310 Hz wider


@functools.lru_cache(maxsize=8)
def _inverse_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """pinv(mel_filterbank).T, (n_mels, n_fft/2 + 1) float64, read-only."""
    inv = np.ascontiguousarray(np.linalg.pinv(mel_filterbank(cfg).astype(np.float64)).T)
    inv.setflags(write=False)
    return inv


@functools.lru_cache(maxsize=8)
def _lag_window(sample_rate: int, order: int) -> np.ndarray:
    k = np.arange(order + 1, dtype=np.float64)
    return np.exp(-0.5 * (2.0 * np.pi * LAG_WINDOW_HZ * k / sample_rate) ** 2)


def levinson_durbin(r: np.ndarray, order: int) -> np.ndarray:
    """Taps (..., order) float64 of the predictor sum_k a[k] x(t - 1 - k) from autocorrelations r (..., >= order + 1),
    each row on its own: the Levinson-Durbin recursion, a row stopped (its higher taps 0) where its error would not
    stay positive or |k| would reach 1, a row with r[0] <= 0 or a non-finite r left at zero taps. Elementwise
    float64 arithmetic in a fixed order (acc = r[i+1] - a[0] r[i] - a[1] r[i-1] - ..., from the left), so a row's
    taps do not depend on the other rows."""
    r = np.asarray(r, dtype=np.float64)
    rows = r.reshape(-1, r.shape[-1])
    a = np.zeros((rows.shape[0], order))
    err = rows[:, 0].copy()
    active = np.isfinite(rows[:, :order + 1]).all(axis=1) & (err > 0.0)
    for i in range(order):
        acc = rows[:, i + 1].copy()
        for j in range(i):
            acc -= a[:, j] * rows[:, i - j]
        k = np.where(active, acc / np.where(active, err, 1.0), 0.0)
        new_err = err * (1.0 - k * k)
        active &= (np.abs(k) < 1.0) & (new_err > 0.0)
        if not active.any():
            break
        update = a[:, :i] - k[:, None] * a[:, i - 1::-1] if i else a[:, :0]
        a[active, :i] = update[active]
        a[active, i] = k[active]
        err = np.where(active, new_err, err)
    return a.reshape(r.shape[:-1] + (order,))


def mel_lpc_taps(mel: np.ndarray, feature_config: FeatureConfig, order: int, preemphasis: float) -> np.ndarray:
    """(F, order) float32 LPC taps per frame of a log-mel (F, n_mels), as the module docstring defines them. Every
    step is elementwise across frames or a per-row transform (the magnitude is summed over the mel bins in their
    order, not by BLAS, whose rounding can depend on the number of rows), so a frame's taps are the same whatever
    other frames are passed: a stream's taps are the offline ones."""
    cfg = feature_config
    mel = check_mel(mel, cfg.n_mels)
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order: expected an int >= 1, found {order!r}")
    if not 0.0 <= preemphasis < 1.0:
        raise ValueError(f"preemphasis: expected a number in [0, 1), found {preemphasis!r}")
    n_fft = cfg.n_fft
    if order >= n_fft // 2:
        raise ValueError(f"order: expected fewer than n_fft / 2 = {n_fft // 2} taps, found {order}")
    inv, lag = _inverse_filterbank(cfg), _lag_window(cfg.sample_rate, order)
    w = np.arange(inv.shape[1], dtype=np.float64) * (2.0 * np.pi / n_fft)
    emphasis = 1.0 + preemphasis * preemphasis - 2.0 * preemphasis * np.cos(w)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(mel.astype(np.float64))
        mag = np.zeros((mel.shape[0], inv.shape[1]))
        for m in range(inv.shape[0]):
            mag += e[:, m:m + 1] * inv[m]
        mag = np.maximum(mag, 0.0)
        power = (mag if cfg.power == 2 else mag * mag) * emphasis
        power += NOISE_FLOOR * power.mean(axis=1, keepdims=True)
        r = np.fft.irfft(power, n=n_fft, axis=1)[:, :order + 1] * lag
    expansion = BANDWIDTH_EXPANSION ** np.arange(1, order + 1, dtype=np.float64)
    return (levinson_durbin(r, order) * expansion).astype(F32)


def frame_of_sample(t, hop: int, n_frames: int):
    """The frame whose taps predict sample t: the nearest frame centre, round(t / hop) with halves up,
    (t + hop // 2) // hop, at most the last frame (int or integer array)."""
    return np.minimum((t + hop // 2) // hop, n_frames - 1)
