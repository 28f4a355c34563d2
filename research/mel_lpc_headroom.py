"""How much better than one fixed linear predictor a per-frame one does: from the mel (LPCNet's way), or ideal.

    python -m research.mel_lpc_headroom --data DIR [--list ids.txt] [--limit N] [--order 16] [--preemphasis 0.85]

What it is: a measurement of the data, not of a model, for the campaign's next lever (issue 24, §2: "LPC computed
from the mel envelope (as LPCNet, FeatherWave)"). In the network's domain (the pre-emphasised signal e of
docs/format.md §10, in int16 steps) it compares the residual of three predictors of e(t) from e(t-1) .. e(t-P):
  fixed     one P-tap least-squares filter for all files (what ModelConfig.linear_order learns: §11);
  mel-LPC   per frame, the order-P LPC of the power spectrum that the frame's log-mel implies: the pseudo-inverse of
            the mel filterbank applied to exp(log-mel), squared, times the pre-emphasis filter's response, its
            autocorrelation (inverse FFT), a 60 Hz Gaussian lag window and a -40 dB noise floor, Levinson-Durbin;
            sample t uses frame round(t / hop), so it is a function of the conditioning alone, as an engine would
            compute it once per frame;
  oracle    per frame, the order-P LPC of the true e around the frame (a Hann window of win_length samples), the
            best a per-frame predictor could do, which no vocoder can compute (it has no true audio).
For each: the residual's RMS and mean |residual| in int16 steps (the mean |.| is the maximum-likelihood Laplace
scale b of §11's prior, so a smaller one is a sharper prior), and the residual energy relative to e's in dB.
What it is not: a bound on a model's NLL, nor part of the package. Letters: P the order, F frames.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.linalg

from pywavernn.audio import float_to_int16, load_audio
from pywavernn.config import FeatureConfig
from pywavernn.features import log_mel, mel_filterbank
from training.evaluate import find_audio


def levinson(r: np.ndarray, order: int) -> np.ndarray:
    """Predictor taps a (order,) with e(t) ~ sum_k a[k] e(t - 1 - k), from autocorrelation r[0..order]."""
    return scipy.linalg.solve_toeplitz(r[:order], r[1:order + 1])


def frame_taps_from_mel(mel: np.ndarray, cfg: FeatureConfig, order: int, preemphasis: float) -> np.ndarray:
    """(F, order) LPC taps per frame from the log-mel (F, n_mels) alone (see the module docstring)."""
    fb = mel_filterbank(cfg)                               # (n_mels, n_fft // 2 + 1)
    mag = np.maximum(np.exp(mel.astype(np.float64)) @ np.linalg.pinv(fb).T, 0.0)  # (F, n_fft // 2 + 1)
    w = np.linspace(0, np.pi, mag.shape[1])
    power = mag ** 2 * np.abs(1 - preemphasis * np.exp(-1j * w)) ** 2
    power += 1e-4 * power.mean(axis=1, keepdims=True)      # -40 dB floor: a well-conditioned system
    r = np.fft.irfft(power, axis=1)[:, :order + 1]
    lag = np.arange(order + 1) / cfg.sample_rate
    r *= np.exp(-0.5 * (2 * np.pi * 60.0 * lag) ** 2)      # 60 Hz lag window: smooths over single harmonics
    return np.stack([levinson(ri, order) if ri[0] > 0 else np.zeros(order) for ri in r])


def frame_taps_oracle(e: np.ndarray, n_frames: int, cfg: FeatureConfig, order: int) -> np.ndarray:
    """(F, order) LPC taps of the true signal around each frame centre (autocorrelation method, Hann window)."""
    half = cfg.win_length // 2
    padded = np.pad(e, half)
    win = np.hanning(cfg.win_length)
    taps = np.zeros((n_frames, order))
    for j in range(n_frames):
        seg = padded[j * cfg.hop_length: j * cfg.hop_length + cfg.win_length]
        seg = seg * win[:seg.shape[0]]
        r = np.correlate(seg, seg, "full")[seg.shape[0] - 1: seg.shape[0] + order]
        if r[0] > 0:
            r = r.copy()
            r[0] *= 1.0001
            taps[j] = levinson(r, order)
    return taps


def past_matrix(e: np.ndarray, order: int) -> np.ndarray:
    """(T, order): row t holds e(t-1) .. e(t-order), zeros before the start."""
    padded = np.concatenate([np.zeros(order), e])
    return np.stack([padded[order - k - 1: order - k - 1 + e.shape[0]] for k in range(order)], axis=1)


def residual_with_frame_taps(e: np.ndarray, taps: np.ndarray, hop: int) -> np.ndarray:
    past = past_matrix(e, taps.shape[1])
    frame = np.minimum(np.rint(np.arange(e.shape[0]) / hop).astype(int), taps.shape[0] - 1)
    return e - np.einsum("tk,tk->t", past, taps[frame])


def summary(res: list[np.ndarray], sig: list[np.ndarray]) -> dict:
    r, s = np.concatenate(res), np.concatenate(sig)
    return {"rms": float(np.sqrt(np.mean(r ** 2))), "mean_abs": float(np.mean(np.abs(r))),
            "db": float(10 * np.log10(np.sum(r ** 2) / np.sum(s ** 2)))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m research.mel_lpc_headroom", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--list")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--order", type=int, default=16)
    p.add_argument("--preemphasis", type=float, default=0.85)
    a = p.parse_args(argv)
    cfg = FeatureConfig()
    files = find_audio(Path(a.data), Path(a.list) if a.list else None, a.limit)
    signals, mel_res, oracle_res, pasts = [], [], [], []
    for path in files:
        x = load_audio(path, cfg.sample_rate)
        mel = log_mel(x, cfg)
        e = float_to_int16(x).astype(np.float64)
        e[1:] -= a.preemphasis * e[:-1]
        signals.append(e)
        mel_res.append(residual_with_frame_taps(e, frame_taps_from_mel(mel, cfg, a.order, a.preemphasis),
                                                cfg.hop_length))
        oracle_res.append(residual_with_frame_taps(e, frame_taps_oracle(e, mel.shape[0], cfg, a.order),
                                                   cfg.hop_length))
        pasts.append(past_matrix(e, a.order))
    xs, ys = np.concatenate(pasts), np.concatenate(signals)
    fixed = np.linalg.lstsq(xs, ys, rcond=None)[0]
    fixed_res = [e - pm @ fixed for e, pm in zip(signals, pasts)]
    out = {"files": len(files), "order": a.order, "preemphasis": a.preemphasis,
           "signal": summary(signals, signals),
           "previous sample": summary([e - np.concatenate([[0.0], e[:-1]]) for e in signals], signals),
           "fixed": summary(fixed_res, signals), "mel-LPC": summary(mel_res, signals),
           "oracle": summary(oracle_res, signals)}
    print(f"{out['files']} files of {a.data}, order {a.order}, pre-emphasis {a.preemphasis} (int16 steps)")
    print(f"{'predictor':<16} {'RMS':>8} {'mean |r|':>9} {'dB':>7}")
    for name in ("signal", "previous sample", "fixed", "mel-LPC", "oracle"):
        s = out[name]
        print(f"{name:<16} {s['rms']:8.1f} {s['mean_abs']:9.1f} {s['db']:7.2f}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
