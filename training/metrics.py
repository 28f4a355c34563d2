"""Objective quality metrics for vocoder resynthesis, and the Griffin-Lim floor, used by `training.evaluate`.

What it is: reference (original) vs degraded (resynthesised) comparisons of two time-aligned 24 kHz float
signals, each a thin, documented wrapper with its settings fixed here, so every report computes them the same way:
- `pesq_wb`: PESQ wide band (ITU-T P.862.2, MOS-LQO, about 1.0 .. 4.64), the `pesq` package at 16 kHz;
- `stoi`: short-time objective intelligibility (0 .. 1), `pystoi` (classic STOI, not extended);
- `mel_cepstral_distortion`: MCD in dB from a mel-cepstrum defined below (no SPTK needed);
- `griffin_lim_from_mel`: audio from a log-mel alone (pseudo-inverse of the filterbank + Griffin-Lim), the floor
  any neural vocoder must beat on the same mel;
- `f0_track` / `f0_errors`: pitch (probabilistic YIN, librosa.pyin) of both signals, the F0 RMSE in cents over
  frames voiced in both, and the voiced/unvoiced decision error: the measures that move first when a vocoder
  starts to reproduce pitch harmonics;
- `MosPredictor`: DistillMOS, a no-reference MOS predictor whose weights ship in its wheel (runs offline).
What it is not: no alignment (resynthesis is sample-aligned: frame j of the mel drives samples j*hop..), no DTW,
no file I/O; librosa only for the pitch tracker (the eval extra).

Letters: T samples, F frames, B = n_fft // 2 + 1 STFT bins, K mel bands, D cepstral order.

Run its tests: `python -m pytest tests/test_evaluate.py -q`.
"""

from __future__ import annotations

import contextlib
import io
import sys
import types
from importlib.metadata import version

import numpy as np
from scipy.fft import dct
from scipy.signal import get_window

from pywavernn import features
from pywavernn.audio import resample
from pywavernn.config import FeatureConfig

SAMPLE_RATE = 24000
PESQ_RATE = 16000  # PESQ-WB is defined at 16 kHz
MOS_RATE = 16000  # DistillMOS takes 16 kHz input

# MCD analysis: 25 ms Hann windows every 5 ms, K = 40 mel bands over 0 .. 12 kHz (power spectrum), mel-cepstrum of
# order D = 24 (c0 .. c24, 25 coefficients; c0, the frame energy, excluded from the distance).
MCD_CONFIG = FeatureConfig(n_fft=1024, win_length=600, hop_length=120, n_mels=40, fmin=0.0, fmax=12000.0,
                           power=2.0, log_floor=1e-10)
MCD_ORDER = 24
# Only frames where the reference has speech count: within this many dB of its loudest frame. Silence in the
# reference would otherwise be scored on how the vocoder's noise floor compares with the recording's.
MCD_SPEECH_RANGE_DB = 40.0

GRIFFIN_LIM_ITERS = 48
GRIFFIN_LIM_MOMENTUM = 0.99  # "fast Griffin-Lim" (Perraudin et al., 2013), as librosa.griffinlim's default


# ------------------------------------------------------------------------------------------------- checks

def _pair(ref, deg) -> tuple[np.ndarray, np.ndarray]:
    ref, deg = np.asarray(ref), np.asarray(deg)
    for name, x in (("ref", ref), ("deg", deg)):
        if x.dtype.kind != "f" or x.ndim != 1:
            raise TypeError(f"{name}: expected 1-D float audio, found {x.dtype} of shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: expected finite samples")
    if ref.shape != deg.shape:
        raise ValueError(f"ref, deg: expected time-aligned signals of equal length, found {ref.shape} and {deg.shape}")
    return ref.astype(np.float64), deg.astype(np.float64)


# --------------------------------------------------------------------------------------------------- PESQ

def pesq_wb(ref, deg, sample_rate: int = SAMPLE_RATE) -> float:
    """PESQ wide band (MOS-LQO): both signals resampled to 16 kHz (pywavernn.audio.resample), then `pesq.pesq(16000,
    ref, deg, "wb")`. Raises pesq.PesqError subclasses (e.g. NoUtterancesError for silence) as the package does."""
    from pesq import pesq

    ref, deg = _pair(ref, deg)
    r = resample(ref.astype(np.float32), sample_rate, PESQ_RATE)
    d = resample(deg.astype(np.float32), sample_rate, PESQ_RATE)
    return float(pesq(PESQ_RATE, r, d, "wb"))


# --------------------------------------------------------------------------------------------------- STOI

def stoi(ref, deg, sample_rate: int = SAMPLE_RATE) -> float:
    """Classic STOI (Taal et al., 2011) via `pystoi.stoi(ref, deg, sample_rate, extended=False)`; pystoi resamples to
    10 kHz and drops silent frames itself."""
    from pystoi import stoi as _stoi

    ref, deg = _pair(ref, deg)
    return float(_stoi(ref, deg, sample_rate, extended=False))


# ---------------------------------------------------------------------------------------------------- MCD

def mel_cepstrum(audio, order: int = MCD_ORDER, cfg: FeatureConfig = MCD_CONFIG) -> np.ndarray:
    """(F, order + 1) mel-cepstra c0..c_order of 24 kHz float audio.

    c = DCT-II(orthonormal) over the K mel bands of log amplitude (0.5 * ln mel power), divided by sqrt(2K): with
    that scale c_m approximates (1/pi) * integral of ln|X(w)| cos(m w) dw on the mel-warped axis, the cepstrum of
    ln|X| = c0 + 2 sum c_m cos(m w) that SPTK's mel-cepstrum (and the usual MCD formula) assume.
    """
    power_mel = np.exp(features.log_mel(np.asarray(audio, dtype=np.float32), cfg).astype(np.float64))
    log_amp = 0.5 * np.log(power_mel)  # log_mel already floored at cfg.log_floor
    k = cfg.n_mels
    return dct(log_amp, type=2, axis=1, norm="ortho")[:, : order + 1] / np.sqrt(2.0 * k)


def mel_cepstral_distortion(ref, deg, order: int = MCD_ORDER) -> float:
    """MCD in dB: mean over speech frames of (10 / ln 10) * sqrt(2 * sum_{d=1..order} (c_d - c'_d)^2).

    Frames are time-aligned (no DTW); speech frames are those whose reference energy (mel power summed) is within
    MCD_SPEECH_RANGE_DB of the reference's loudest frame. 0 for identical signals.
    """
    ref, deg = _pair(ref, deg)
    c_ref, c_deg = mel_cepstrum(ref, order), mel_cepstrum(deg, order)
    energy = np.exp(features.log_mel(ref.astype(np.float32), MCD_CONFIG).astype(np.float64)).sum(axis=1)
    energy_db = 10.0 * np.log10(np.maximum(energy, 1e-30))
    speech = energy_db >= energy_db.max() - MCD_SPEECH_RANGE_DB
    diff = c_ref[speech, 1:] - c_deg[speech, 1:]
    per_frame = (10.0 / np.log(10.0)) * np.sqrt(2.0 * np.sum(diff * diff, axis=1))
    return float(per_frame.mean())


# ---------------------------------------------------------------------------------------------- Griffin-Lim

def _analysis_window(cfg: FeatureConfig) -> np.ndarray:
    """The window pywavernn.features uses: periodic Hann of win_length, centred in n_fft zeros."""
    win = np.zeros(cfg.n_fft)
    left = (cfg.n_fft - cfg.win_length) // 2
    win[left:left + cfg.win_length] = get_window("hann", cfg.win_length, fftbins=True)
    return win


def _stft(x: np.ndarray, cfg: FeatureConfig, win: np.ndarray) -> np.ndarray:
    """(F, B) complex STFT, frames centred on j * hop, reflect padding: the framing of pywavernn.features."""
    pad = cfg.n_fft // 2
    xp = np.pad(x, pad, mode="reflect")
    n_frames = 1 + (xp.shape[0] - cfg.n_fft) // cfg.hop_length
    idx = np.arange(cfg.n_fft)[None, :] + cfg.hop_length * np.arange(n_frames)[:, None]
    return np.fft.rfft(xp[idx] * win, axis=1)


def _istft(spec: np.ndarray, cfg: FeatureConfig, win: np.ndarray, length: int) -> np.ndarray:
    """Least-squares inverse of _stft (weighted overlap-add divided by the summed squared window), `length` samples."""
    pad, hop = cfg.n_fft // 2, cfg.hop_length
    frames = np.fft.irfft(spec, n=cfg.n_fft, axis=1) * win
    total = cfg.n_fft + hop * (spec.shape[0] - 1)
    out, norm = np.zeros(total), np.zeros(total)
    for j in range(spec.shape[0]):
        out[j * hop: j * hop + cfg.n_fft] += frames[j]
        norm[j * hop: j * hop + cfg.n_fft] += win * win
    out = out / np.maximum(norm, 1e-8)
    y = out[pad: pad + length]
    return np.pad(y, (0, length - y.shape[0]))


def mel_to_magnitude(mel, cfg: FeatureConfig) -> np.ndarray:
    """(F, B) linear STFT magnitude from a log-mel (F, K): pinv(mel_filterbank) @ exp(mel), negatives set to 0."""
    mel_lin = np.exp(np.asarray(mel, dtype=np.float64))  # magnitude (power 1) or power (power 2) per band
    fb_pinv = np.linalg.pinv(features.mel_filterbank(cfg).astype(np.float64))  # (B, K)
    spec = np.maximum(mel_lin @ fb_pinv.T, 0.0)
    return np.sqrt(spec) if cfg.power == 2.0 else spec


def griffin_lim_from_mel(mel, cfg: FeatureConfig, length: int, n_iter: int = GRIFFIN_LIM_ITERS,
                         momentum: float = GRIFFIN_LIM_MOMENTUM, seed: int = 0) -> np.ndarray:
    """Float32 audio of `length` samples at cfg.sample_rate from a log-mel (F, n_mels) made with `cfg`.

    The magnitude comes from `mel_to_magnitude`; the phase from n_iter iterations of fast Griffin-Lim with the
    given momentum, starting from uniform random phase drawn from numpy.random.default_rng(seed). STFT and ISTFT use
    the FeatureConfig's n_fft, win_length, hop and window (periodic Hann), centred frames, reflect padding.
    """
    mel = features.check_mel(mel, cfg.n_mels)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length: expected a positive integer, found {length!r}")
    mag = mel_to_magnitude(mel, cfg)
    win = _analysis_window(cfg)
    rng = np.random.default_rng(seed)
    angles = np.exp(2j * np.pi * rng.random(mag.shape))
    prev = np.zeros_like(angles)
    for _ in range(n_iter):
        rebuilt = _stft(_istft(mag * angles, cfg, win, length), cfg, win)[: mag.shape[0]]
        if rebuilt.shape[0] < mag.shape[0]:
            rebuilt = np.pad(rebuilt, ((0, mag.shape[0] - rebuilt.shape[0]), (0, 0)))
        angles = rebuilt - (momentum / (1.0 + momentum)) * prev
        prev = rebuilt
        angles = angles / np.maximum(np.abs(angles), 1e-16)
    y = _istft(mag * angles, cfg, win, length)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- MOS

class MosUnavailable(RuntimeError):
    """The MOS predictor cannot run here; the message says why."""


class MosPredictor:
    """DistillMOS (Stahl & Gamper, 2025; `distillmos` on PyPI, weights inside the wheel): a no-reference MOS
    predictor (1 .. 5) for 16 kHz speech. Audio is resampled 24 -> 16 kHz; the model peak-normalises it and averages
    over 7.68 s crops. Raises MosUnavailable, with the reason, if the package cannot be imported or loaded."""

    name = "DistillMOS"

    def __init__(self):
        try:
            import torch

            # distillmos/sqa.py imports torchaudio at top level but uses it only in its own CLI (file loading and
            # resampling); the model needs only torch. torchaudio does not load beside torch 2.13 here, so an
            # empty placeholder module stands in for it during this import only, then is taken out again so that
            # nothing else in the process sees it.
            stub = types.ModuleType("torchaudio")
            saved = sys.modules.get("torchaudio")
            sys.modules["torchaudio"] = saved if saved is not None else stub
            try:
                import distillmos
            finally:
                if sys.modules.get("torchaudio") is stub:
                    del sys.modules["torchaudio"]

            with contextlib.redirect_stdout(io.StringIO()):  # it prints the weights path on load
                self._model = distillmos.ConvTransformerSQAModel()
            self._model.eval()
            self._torch = torch
            self.version = version("distillmos")
        except Exception as exc:  # ImportError, a missing weights file, a torch incompatibility
            raise MosUnavailable(f"DistillMOS could not be loaded: {type(exc).__name__}: {exc}") from exc

    def __call__(self, audio, sample_rate: int = SAMPLE_RATE) -> float:
        x = resample(np.asarray(audio, dtype=np.float32), sample_rate, MOS_RATE)
        if not np.any(x):
            raise ValueError("audio: all zeros, MOS undefined")
        with self._torch.no_grad():
            return float(self._model(self._torch.from_numpy(x)[None, :]).item())


# Pitch: pYIN at 16 kHz (speech's F0 lies far below 8 kHz; 16 kHz halves the cost), 64 ms frames every 10 ms,
# F0 searched over 50 .. 500 Hz (low male to high female and child voices).
F0_RATE = 16000
F0_FMIN, F0_FMAX = 50.0, 500.0
F0_FRAME, F0_HOP = 1024, 160


def f0_track(audio, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """(F0 in Hz per 10 ms frame, NaN where unvoiced; voiced flags) of a float signal, by librosa.pyin."""
    import librosa

    x = resample(np.asarray(audio, dtype=np.float32), sample_rate, F0_RATE)
    if x.shape[0] < F0_FRAME:
        raise ValueError(f"audio: expected at least {F0_FRAME} samples at {F0_RATE} Hz for a pitch track, "
                         f"found {x.shape[0]}")
    f0, voiced, _ = librosa.pyin(x, fmin=F0_FMIN, fmax=F0_FMAX, sr=F0_RATE, frame_length=F0_FRAME,
                                 hop_length=F0_HOP)
    return np.asarray(f0, np.float64), np.asarray(voiced, bool)


def f0_errors(ref_track, deg_track) -> dict:
    """{"f0_cents": RMSE of 1200 log2(F0_deg / F0_ref) over frames voiced in both (None if there are none),
    "vuv": share of frames whose voiced/unvoiced decision differs, "voiced_both": how many frames were compared}."""
    (f_ref, v_ref), (f_deg, v_deg) = ref_track, deg_track
    n = min(v_ref.shape[0], v_deg.shape[0])
    f_ref, v_ref, f_deg, v_deg = f_ref[:n], v_ref[:n], f_deg[:n], v_deg[:n]
    both = v_ref & v_deg & np.isfinite(f_ref) & np.isfinite(f_deg)
    cents = 1200.0 * np.log2(f_deg[both] / f_ref[both])
    return {"f0_cents": float(np.sqrt(np.mean(cents ** 2))) if both.any() else None,
            "vuv": float(np.mean(v_ref != v_deg)) if n else None, "voiced_both": int(both.sum())}


def settings() -> dict:
    """The metric settings as recorded in every report."""
    return {
        "pesq": {"package": "pesq", "mode": "wb", "rate_hz": PESQ_RATE,
                 "resampling": "pywavernn.audio.resample (scipy resample_poly) 24 kHz -> 16 kHz, both signals"},
        "stoi": {"package": "pystoi", "extended": False, "input_rate_hz": SAMPLE_RATE,
                 "note": "pystoi resamples to 10 kHz internally and removes silent frames"},
        "mcd": {"definition": "(10/ln10) * sqrt(2 * sum_{d=1..D} (c_d - c'_d)^2), mean over speech frames",
                "order_D": MCD_ORDER, "c0": "excluded",
                "cepstrum": "DCT-II(ortho) of 0.5*ln(mel power) over K bands, / sqrt(2K)",
                "frame": f"{MCD_CONFIG.win_length} samples ({1000 * MCD_CONFIG.win_length / SAMPLE_RATE:g} ms) Hann, "
                         f"hop {MCD_CONFIG.hop_length} ({1000 * MCD_CONFIG.hop_length / SAMPLE_RATE:g} ms), "
                         f"n_fft {MCD_CONFIG.n_fft}",
                "mel_bands_K": MCD_CONFIG.n_mels, "fmin_hz": MCD_CONFIG.fmin, "fmax_hz": MCD_CONFIG.fmax,
                "mel_scale": MCD_CONFIG.mel_scale, "alignment": "sample-aligned, no DTW",
                "speech_frames": f"reference frame energy within {MCD_SPEECH_RANGE_DB:g} dB of its loudest frame"},
        "griffin_lim": {"iterations": GRIFFIN_LIM_ITERS, "momentum": GRIFFIN_LIM_MOMENTUM,
                        "mel_inverse": "pinv(mel_filterbank) @ exp(log-mel), clipped at 0",
                        "stft": "the model's FeatureConfig (n_fft, win_length, hop, periodic Hann, centred, reflect)",
                        "init": "uniform random phase, numpy.random.default_rng(seed)"},
        "mos": {"predictor": "distillmos (ConvTransformerSQAModel, variant 7 weights)", "rate_hz": MOS_RATE},
        "f0": {"tracker": "librosa.pyin", "rate_hz": F0_RATE, "fmin_hz": F0_FMIN, "fmax_hz": F0_FMAX,
               "frame": F0_FRAME, "hop": F0_HOP, "f0_cents": "RMSE of 1200 log2(f_deg / f_ref), frames voiced in both",
               "vuv": "share of frames whose voicing decision differs from the original's"},
    }
