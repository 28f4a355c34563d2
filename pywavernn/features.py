"""The log-mel spectrogram that conditions the vocoder, exactly as `FeatureConfig` defines it.

What it is: the one implementation of the features, used by training and by inference alike, in NumPy and
SciPy only; plus `check_mel`, the validator every vocoder entry point runs on a mel it is handed.
What it is not: no librosa at run time (librosa is the test oracle: the STFT, filterbank and log-mel here
match librosa.stft / librosa.filters.mel / librosa.feature.melspectrogram with the same settings), no
resampling (audio must already be at cfg.sample_rate; see `pywavernn.audio.load_audio`), no GPU path.

Letters: T samples, F frames (1 + T // hop with center=True), n_fft FFT size, B = n_fft // 2 + 1 frequency bins.
Frame j is centred on sample j * hop: the signal is padded by n_fft // 2 on both sides (reflect by default).

Numerics: the STFT and the mel projection run in float64 and only the result is rounded to float32. The FFT
is a small part of vocoding cost (one 2048-point rfft per 300 output samples), and float64 makes the features
independent of FFT summation order and BLAS to ~1e-12, so features computed for training on one machine and
for inference on another agree to float32 rounding.

Memory stays bounded for long audio: frames are processed in chunks of `_FRAMES_PER_CHUNK`, and each chunk's
padded samples are gathered from the input directly, so the whole signal is never padded or copied to float64.

Run its tests: `python -m pytest tests/test_features.py -q`.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import get_window

from pywavernn.config import FeatureConfig

# 512 frames of n_fft = 2048 float64 samples plus their rfft: about 16 MiB of working memory per chunk.
_FRAMES_PER_CHUNK = 512


# --------------------------------------------------------------------------------------------- mel scale

def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney (Auditory Toolbox): linear below 1 kHz (200/3 Hz per mel), logarithmic above.
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    safe = np.maximum(f, min_log_hz)  # keeps log() quiet on the linear branch, which np.where discards
    return np.where(f >= min_log_hz, min_log_mel + np.log(safe / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), m * f_sp)


def _check_cfg(cfg) -> FeatureConfig:
    if not isinstance(cfg, FeatureConfig):
        raise TypeError(f"cfg: expected a pywavernn.FeatureConfig, found {type(cfg).__name__}")
    return cfg


def mel_filterbank(cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Triangular mel filters, shape (n_mels, n_fft // 2 + 1), float32.

    Same construction as librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=(mel_scale == "htk"),
    norm="slaney" or None): n_mels + 2 points equally spaced on the mel scale between fmin and fmax,
    triangles on the rfft bin frequencies, and with mel_norm "slaney" each triangle scaled by
    2 / (its width in Hz) so that every filter has the same area. Built in float64, rounded once.
    """
    cfg = _check_cfg(cfg)
    htk = cfg.mel_scale == "htk"
    fft_freqs = np.fft.rfftfreq(cfg.n_fft, d=1.0 / cfg.sample_rate)
    mel_pts = np.linspace(_hz_to_mel(cfg.fmin, htk), _hz_to_mel(cfg.fmax, htk), cfg.n_mels + 2)
    hz_pts = _mel_to_hz(mel_pts, htk)
    widths = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]  # (n_mels + 2, B)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if cfg.mel_norm == "slaney":
        weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    empty = np.flatnonzero(weights.max(axis=1) == 0.0)
    if empty.size:
        # Not an error (librosa also only warns): the channel is a constant log_floor, useless but harmless.
        warnings.warn(
            f"mel_filterbank: {empty.size} mel channel(s) cover no FFT bin (first: {empty[0]}); "
            f"use fewer n_mels or a larger n_fft",
            stacklevel=2,
        )
    return weights.astype(np.float32)


# ------------------------------------------------------------------------------------------------- STFT

def _check_audio(audio) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.dtype.kind != "f":
        hint = " (int16 samples: convert with pywavernn.audio.int16_to_float)" if audio.dtype.kind in "iu" else ""
        raise TypeError(f"audio: expected floating-point samples, found dtype {audio.dtype}{hint}")
    if audio.ndim != 1:
        raise ValueError(f"audio: expected a 1-D array of mono samples, found shape {audio.shape}")
    if audio.shape[0] == 0:
        raise ValueError("audio: expected at least one sample, found 0")
    bad = np.count_nonzero(~np.isfinite(audio))
    if bad:
        raise ValueError(f"audio: expected finite samples, found {bad} NaN/inf")
    return audio


def _window(cfg: FeatureConfig) -> np.ndarray:
    """Periodic Hann of win_length, zero-padded to n_fft with the window centred (librosa's pad_center)."""
    win = np.zeros(cfg.n_fft, dtype=np.float64)
    left = (cfg.n_fft - cfg.win_length) // 2
    win[left:left + cfg.win_length] = get_window("hann", cfg.win_length, fftbins=True)
    return win


def _prepare(audio, cfg: FeatureConfig) -> tuple[np.ndarray, int]:
    """(signal to frame, number of frames F) after validation.

    With center=True, audio shorter than n_fft // 2 + 1 samples is first extended with zeros to that length,
    because reflect padding needs n_fft // 2 samples to reflect. Only the 1 + T // hop frames of the original
    length T are returned, so short audio behaves as if silence followed it. With center=False the audio must
    hold at least one full frame (n_fft samples).
    """
    audio = _check_audio(audio)
    n = audio.shape[0]
    n_frames = cfg.n_frames(n)
    if not cfg.center and n < cfg.n_fft:
        raise ValueError(f"audio: with center=False expected at least n_fft = {cfg.n_fft} samples, found {n}")
    if cfg.center and n < cfg.n_fft // 2 + 1:
        audio = np.concatenate([audio, np.zeros(cfg.n_fft // 2 + 1 - n, dtype=audio.dtype)])
    return audio, n_frames


def _padded_segment(x: np.ndarray, start: int, stop: int, cfg: FeatureConfig) -> np.ndarray:
    """Samples [start, stop) of the padded signal (padding n_fft // 2 each side when centred), as float64.

    Built by index arithmetic so the whole padded signal never exists. Positions past the padded end read
    as zero; they occur only for an odd n_fft, whose last frame (F = 1 + T // hop) reaches one sample
    beyond the librosa-padded signal.
    """
    n = x.shape[0]
    pad = cfg.n_fft // 2 if cfg.center else 0
    pos = np.arange(start, stop)
    idx = pos - pad
    if cfg.pad_mode == "reflect":
        idx = np.abs(idx)  # reflect about sample 0 (not repeating it), as np.pad(mode="reflect")
        idx = np.where(idx > n - 1, 2 * (n - 1) - idx, idx)
    valid = (idx >= 0) & (idx < n) & (pos < n + 2 * pad)
    seg = np.zeros(stop - start, dtype=np.float64)
    seg[valid] = x[idx[valid]]
    return seg


def _magnitude_chunks(x: np.ndarray, n_frames: int, cfg: FeatureConfig):
    """Yield (first frame, |STFT| ** power of frames first..first + chunk) as float64 (chunk, B) arrays."""
    win = _window(cfg)
    hop = cfg.hop_length
    for j0 in range(0, n_frames, _FRAMES_PER_CHUNK):
        j1 = min(j0 + _FRAMES_PER_CHUNK, n_frames)
        seg = _padded_segment(x, j0 * hop, (j1 - 1) * hop + cfg.n_fft, cfg)
        frames = sliding_window_view(seg, cfg.n_fft)[::hop]  # (j1 - j0, n_fft), a view
        spec = np.fft.rfft(frames * win, axis=1)
        if cfg.power == 2.0:
            mag = spec.real ** 2 + spec.imag ** 2
        else:
            mag = np.abs(spec)
        yield j0, mag


def stft_magnitude(audio, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """|STFT| ** cfg.power of 1-D float audio, shape (F, n_fft // 2 + 1), float32, F = cfg.n_frames(T).

    Matches np.abs(librosa.stft(audio, n_fft, hop_length, win_length, window="hann", center, pad_mode)) ** power,
    transposed to frames first. Short audio: see `log_mel`. This returns the full spectrogram (4 * B bytes
    per frame); for features use `log_mel`, which never holds it.
    """
    cfg = _check_cfg(cfg)
    x, n_frames = _prepare(audio, cfg)
    out = np.empty((n_frames, cfg.n_fft // 2 + 1), dtype=np.float32)
    for j0, mag in _magnitude_chunks(x, n_frames, cfg):
        out[j0:j0 + mag.shape[0]] = mag
    return out


def log_mel(audio, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The vocoder's input features: log(max(mel_filterbank @ |STFT| ** power, log_floor)), natural log.

    audio: 1-D float samples at cfg.sample_rate (full scale [-1, 1]), any length >= 1.
    Returns float32, C-contiguous, shape (F, n_mels) with F = cfg.n_frames(T) = 1 + T // hop (center=True).
    Audio shorter than n_fft // 2 + 1 samples (43 ms by default) is treated as followed by silence, so
    short inputs work. Raises TypeError for non-float input (int16 must be converted first) and ValueError
    for non-1-D, empty or non-finite audio.
    """
    cfg = _check_cfg(cfg)
    x, n_frames = _prepare(audio, cfg)
    fb_t = mel_filterbank(cfg).astype(np.float64).T  # (B, n_mels)
    out = np.empty((n_frames, cfg.n_mels), dtype=np.float32)
    for j0, mag in _magnitude_chunks(x, n_frames, cfg):
        mel = mag @ fb_t
        out[j0:j0 + mel.shape[0]] = np.log(np.maximum(mel, cfg.log_floor))
    return out


# ----------------------------------------------------------------------------------------------- validator

MAX_LOG_MEL = 1e4  # far beyond any real log-mel (e^10000), far below what overflows the conditioning network


def check_mel(mel, n_mels: int) -> np.ndarray:
    """Validate a log-mel handed to the vocoder; return it as float32, C-contiguous, shape (F, n_mels).

    Expects a 2-D real array (F frames, n_mels bins), F >= 1, every value finite (after conversion to
    float32, so float64 values beyond float32's range count as inf). A (n_mels, F) array is reported as
    looking transposed. TypeError for non-real dtypes, ValueError for shape and values.
    """
    if isinstance(n_mels, bool) or not isinstance(n_mels, (int, np.integer)) or n_mels < 1:
        raise ValueError(f"n_mels: expected a positive integer, found {n_mels!r}")
    arr = np.asarray(mel)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"mel: expected a real-valued (float) array, found dtype {arr.dtype}")
    expected = f"(frames, {n_mels})"
    if arr.ndim != 2:
        raise ValueError(f"mel: expected a 2-D array of shape {expected}, found {arr.ndim}-D shape {arr.shape}")
    frames, bins = arr.shape
    if bins != n_mels:
        if frames == n_mels:
            raise ValueError(
                f"mel: expected shape {expected}, found {arr.shape}; it looks transposed "
                f"(mel bins first), pass mel.T"
            )
        raise ValueError(f"mel: expected shape {expected} ({n_mels} mel bins), found {arr.shape}")
    if frames < 1:
        raise ValueError(f"mel: expected at least 1 frame, found shape {arr.shape}")
    with np.errstate(over="ignore"):  # overflow to inf is reported below, with its position
        out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        j, k = np.argwhere(~finite)[0]
        n_nan = int(np.count_nonzero(np.isnan(out)))
        n_inf = int(np.count_nonzero(np.isinf(out)))
        raise ValueError(
            f"mel: expected all values finite, found {n_nan} NaN and {n_inf} inf "
            f"(first at frame {j}, bin {k}: {out[j, k]})"
        )
    peak = float(np.abs(out).max())
    if peak > MAX_LOG_MEL:  # natural-log magnitudes live in about [-12, 12]; this is not a log-mel
        raise ValueError(f"mel: expected natural-log mel magnitudes (|value| <= {MAX_LOG_MEL:g}), found |value| up "
                         f"to {peak:.3g}; was a linear (not log) spectrogram passed?")
    return out
