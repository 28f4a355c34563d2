"""Audio I/O and the 16-bit sample representation the network works on (docs/format.md section 1).

What it is: reading any audio file soundfile understands into float32 mono at the model's rate (band-limited
resampling with scipy's polyphase filter), writing 16-bit PCM WAV/FLAC atomically, and the exact conversions
between int16 samples, floats in [-1, 1] and the coarse/fine byte pair the network predicts.
What it is not: no feature extraction (that is `pywavernn.features`), no playback, no streaming reads; the
whole file is held in memory.

Conventions (T samples): int16 s <-> float s / 32768, so every int16 survives int16 -> float -> int16 exactly;
u = s + 32768, coarse c = u >> 8, fine f = u & 255; the network sees each byte as float32(v) / 127.5 - 1.

Run its tests: `python -m pytest tests/test_audio.py -q`.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter, resample_poly

from pywavernn.atomic import atomic_write
from pywavernn.config import SUPPORTED_SAMPLE_RATE

# Below 8 kHz speech loses most of its consonant energy: upsampling such audio to 24 kHz gives the vocoder's
# features an empty band over most of their range, far from anything it was trained on.
MIN_SAMPLE_RATE = 8000

# Containers that hold 16-bit PCM and that the temp-file write must name explicitly (the temp name has no
# meaningful extension for soundfile to guess from).
_SAVE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}

_INT16_SCALE = 32768.0


# ---------------------------------------------------------------------------------------------------- checks

def _check_rate(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer sample rate in Hz, found {value!r}")
    if value < lo:
        raise ValueError(f"{name}: expected a sample rate >= {lo} Hz, found {value} Hz")
    return int(value)


def _check_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, found {type(path).__name__}")
    return Path(path)


def _check_int_array(name: str, x, lo: int, hi: int) -> np.ndarray:
    """x as an integer ndarray with every value in [lo, hi]; TypeError for non-integers."""
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, found dtype {x.dtype}")
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"{name}: expected values in [{lo}, {hi}], found [{x.min()}, {x.max()}]")
    return x


def _check_float_array(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        hint = " (use int16_to_float for int16 samples)" if x.dtype.kind in "iu" else ""
        raise TypeError(f"{name}: expected a floating-point array, found dtype {x.dtype}{hint}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: expected finite samples, found {int(np.count_nonzero(~np.isfinite(x)))} NaN/inf")
    return x


# ------------------------------------------------------------------------------------- sample representation

def float_to_int16(x) -> np.ndarray:
    """Float samples (full scale [-1, 1]) to int16: round(x * 32768), clipped to [-32768, 32767].

    Out-of-range values clip rather than wrap. Rounding is to nearest, ties to even (np.rint).
    """
    x = _check_float_array("x", x)
    return np.clip(np.rint(x.astype(np.float64) * _INT16_SCALE), -32768, 32767).astype(np.int16)


def int16_to_float(s) -> np.ndarray:
    """int16 samples to float32 s / 32768 in [-1, 1): exact, and the inverse of float_to_int16."""
    s = np.asarray(s)
    if s.dtype != np.int16:
        raise TypeError(f"s: expected an int16 array, found dtype {s.dtype}")
    return (s.astype(np.float32) / np.float32(_INT16_SCALE)).astype(np.float32)


def coarse_fine_split(s) -> tuple[np.ndarray, np.ndarray]:
    """16-bit samples to (coarse, fine) uint8 arrays: u = s + 32768, c = u >> 8, f = u & 255.

    s: any integer array with values in [-32768, 32767] (normally int16); any shape.
    """
    s = _check_int_array("s", s, -32768, 32767)
    u = s.astype(np.int32) + 32768
    return (u >> 8).astype(np.uint8), (u & 255).astype(np.uint8)


def coarse_fine_join(c, f) -> np.ndarray:
    """(coarse, fine) bytes back to int16 samples: (c << 8 | f) - 32768. Inverse of coarse_fine_split."""
    c = _check_int_array("c", c, 0, 255)
    f = _check_int_array("f", f, 0, 255)
    if c.shape != f.shape:
        raise ValueError(f"c, f: expected the same shape, found {c.shape} and {f.shape}")
    u = (c.astype(np.int32) << 8) | f.astype(np.int32)
    return (u - 32768).astype(np.int16)


def scale_byte(v) -> np.ndarray:
    """A coarse or fine byte (0..255) as the network's input: float32(v) / 127.5 - 1, in [-1, 1].

    The arithmetic is float32 throughout, as in the PyTorch, C and CUDA paths, so all agree bit for bit.
    """
    v = _check_int_array("v", v, 0, 255)
    return v.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


# ----------------------------------------------------------------------------------------- pre-emphasis

def _check_coef(coef) -> float:
    if isinstance(coef, bool) or not isinstance(coef, numbers.Real) or not 0.0 <= float(coef) < 1.0:
        raise ValueError(f"coef: expected a pre-emphasis coefficient in [0, 1), found {coef!r}")
    return float(coef)


def preemphasis(s, coef: float) -> np.ndarray:
    """The int16 samples a pre-emphasis model predicts: e[n] = s[n] - coef * s[n - 1] (s[-1] = 0), rounded to
    nearest and clipped to int16 (docs/format.md §10). s: 1-D int16."""
    s = np.asarray(s)
    if s.dtype != np.int16 or s.ndim != 1:
        raise TypeError(f"s: expected a 1-D int16 array, found dtype {s.dtype} with shape {s.shape}")
    coef = _check_coef(coef)
    x = s.astype(np.float64)
    x[1:] -= coef * x[:-1]
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def deemphasis(e, coef: float, state: float = 0.0) -> tuple[np.ndarray, float]:
    """Undo preemphasis on generated samples: y[n] = e[n] + coef * y[n - 1] in float64 (y[-1] = state), returned
    rounded and clipped to int16, with the new state y[-1] (unrounded) to continue on the next chunk: chunks
    chained through the state give exactly the samples of one call on the whole (docs/format.md §10)."""
    e = np.asarray(e)
    if e.dtype != np.int16 or e.ndim != 1:
        raise TypeError(f"e: expected a 1-D int16 array, found dtype {e.dtype} with shape {e.shape}")
    coef = _check_coef(coef)
    if not math.isfinite(state):
        raise ValueError(f"state: expected a finite number, found {state!r}")
    if e.size == 0:
        return e.copy(), float(state)
    y = lfilter([1.0], [1.0, -coef], e.astype(np.float64), zi=[coef * float(state)])[0]
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16), float(y[-1])


# ----------------------------------------------------------------------------------------------- resampling

def resample(x, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling of 1-D float audio from sr_in to sr_out Hz; returns float32.

    scipy.signal.resample_poly with up/down = sr_out/sr_in reduced by their gcd, and its default Kaiser
    (beta 5) anti-aliasing filter cut at the lower of the two Nyquist rates. Output length is
    ceil(len(x) * sr_out / sr_in). The signal is taken as zero outside its ends.
    """
    sr_in = _check_rate("sr_in", sr_in, 1)
    sr_out = _check_rate("sr_out", sr_out, 1)
    x = _check_float_array("x", x)
    if x.ndim != 1:
        raise ValueError(f"x: expected a 1-D array of samples, found shape {x.shape}")
    if sr_in == sr_out:
        return x.astype(np.float32, copy=True)
    g = math.gcd(sr_in, sr_out)
    # float64 through the filter: the polyphase sum runs over ~20 * max(up, down) taps.
    y = resample_poly(x.astype(np.float64, copy=False), sr_out // g, sr_in // g)
    return y.astype(np.float32)


# ------------------------------------------------------------------------------------------------ file I/O

def _read(path: Path) -> tuple[np.ndarray, int]:
    """(samples as float32 (T, channels), sample rate); every soundfile failure becomes a ValueError."""
    if not path.exists():
        raise ValueError(f"{path}: audio file not found")
    if not path.is_file():
        raise ValueError(f"{path}: expected an audio file, found a directory or special file")
    try:
        with sf.SoundFile(str(path)) as fh:
            return fh.read(dtype="float32", always_2d=True), fh.samplerate
    except (RuntimeError, sf.SoundFileError) as exc:  # LibsndfileError: unknown format, truncated data, ...
        raise ValueError(f"{path}: cannot read as audio ({exc})") from exc


def load_audio(path, sample_rate: int = SUPPORTED_SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono in [-1, 1] at sample_rate Hz.

    Any format soundfile reads (WAV, FLAC, OGG, ...). Channels are averaged to mono. Any file rate
    >= 8000 Hz is accepted and resampled (see `resample`); lower rates are refused. Integer PCM is scaled
    by 1 / 32768 (16-bit: exact). Resampling may overshoot full scale by a little; that is clipped.

    Raises ValueError, naming the path, for: a missing file, a file soundfile cannot read, a file with no
    samples, non-finite samples, samples beyond full scale (float files only: they would otherwise be
    silently clipped), and a sample rate below 8000 Hz.
    """
    path = _check_path(path)
    sample_rate = _check_rate("sample_rate", sample_rate, MIN_SAMPLE_RATE)
    data, sr_in = _read(path)
    if sr_in < MIN_SAMPLE_RATE:
        raise ValueError(
            f"{path}: expected a sample rate >= {MIN_SAMPLE_RATE} Hz (resampled to {sample_rate} Hz), found {sr_in} Hz"
        )
    if data.shape[0] == 0:
        raise ValueError(f"{path}: expected audio samples, found an empty file (0 samples)")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: expected finite samples, found {int(np.count_nonzero(~np.isfinite(data)))} NaN/inf")
    peak = float(np.abs(data).max())
    if peak > 1.0:
        raise ValueError(f"{path}: expected samples within full scale [-1, 1], found peak {peak:.4g}; normalise it")
    mono = data.mean(axis=1, dtype=np.float64) if data.shape[1] > 1 else data[:, 0]
    out = resample(mono, sr_in, sample_rate)
    return np.clip(out, -1.0, 1.0, out=out)


def _pcm16(audio) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio: expected a 1-D (mono) array of samples, found shape {audio.shape}")
    if audio.shape[0] == 0:
        raise ValueError("audio: expected at least one sample, found 0")
    if audio.dtype == np.int16:
        return audio
    if audio.dtype.kind != "f":
        raise TypeError(f"audio: expected int16 or floating-point samples, found dtype {audio.dtype}")
    return float_to_int16(audio)


def save_audio(path, audio, sample_rate: int = SUPPORTED_SAMPLE_RATE) -> None:
    """Write mono audio as 16-bit PCM, WAV or FLAC by the path's extension, atomically.

    audio: 1-D int16, or 1-D float in [-1, 1] (converted by float_to_int16: rounded, clipped).
    The file is written under a temporary name in the same directory, flushed to disk and renamed over
    path (os.replace), so readers see the old file or the whole new one, never a partial one; on any failure
    the temporary file is removed and path is untouched.
    """
    path = _check_path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: expected a file name ending in one of {sorted(_SAVE_FORMATS)}, found {path.suffix!r}")
    sample_rate = _check_rate("sample_rate", sample_rate, 1)
    pcm = _pcm16(audio)
    directory = path.parent
    if not directory.is_dir():
        raise ValueError(f"{path}: directory {directory} does not exist")
    with atomic_write(path) as fh:
        sf.write(fh, pcm, sample_rate, format=fmt, subtype="PCM_16")
