"""How well a linear filter predicts each sample from what a plain or a subscale WaveRNN may see.

    python -m research.linear_headroom --data DIR [--list ids.txt] [--limit N] [--factor 16] [--horizon 2]

What it is: a measurement of the data, not of a model. For every sub-tensor s of a subscale model (B, F) it fits,
by least squares over the files, the best linear estimate of sample t = i * B + s from exactly the samples the
linear estimates of a subscale model (ModelConfig.subscale_linear) weigh (positions i - 1 .. i + F: sub-tensors
z <= s at i - 1, z < s from i on; pywavernn.fold.linear_estimate_mask), and reports the residual's energy
relative to the signal's (dB) and its RMS in int16 steps (a coarse byte is 256 steps). For comparison it fits
the plain WaveRNN's situation, the best linear predictor from the previous `--past` samples. A large gap between
the two says the subscale model's inputs carry information that a plain model's do not (for audio band-limited
below the Nyquist frequency, interpolation from both sides is far better than prediction), which a network may
or may not learn to use.
What it is not: a bound on a model's NLL (the residuals are pooled over loud and quiet passages, and a network is
not linear), nor a property of speech in general: it measures the files given.
A research script (research/experiments.md, RQ3: the linear estimates' headroom), run from the checkout's root;
nothing in the package imports it.

Letters: B subscale factor, F future horizon, s sub-tensor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pywavernn import fold
from pywavernn.audio import float_to_int16, load_audio
from training.evaluate import find_audio


def fit(signals: list[np.ndarray], offsets: list[int], phase: int | None, factor: int) -> tuple[float, float]:
    """(residual energy over signal energy in dB, residual RMS) of the least-squares estimate of x[t] from
    x[t + o], o in offsets, over every t (or every t = phase mod factor) with all its taps inside its signal."""
    lo, hi = max(0, -min(offsets)), max(0, max(offsets))
    rows, target = [], []
    for x in signals:
        t = np.arange(lo, x.shape[0] - hi)
        if phase is not None:
            t = t[t % factor == phase]
        rows.append(np.stack([x[t + o] for o in offsets], axis=1))
        target.append(x[t])
    a, y = np.concatenate(rows), np.concatenate(target)
    w, *_ = np.linalg.lstsq(a, y, rcond=None)
    r = y - a @ w
    return float(10 * np.log10(np.mean(r ** 2) / np.mean(y ** 2))), float(np.sqrt(np.mean(r ** 2)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.linear_headroom", description=__doc__.split("\n\n")[1])
    p.add_argument("--data", required=True, help="folder of audio files")
    p.add_argument("--list", dest="id_list", help="file of ids (names without extension), one per line")
    p.add_argument("--limit", type=int, default=20, help="use the first N files (default 20)")
    p.add_argument("--factor", type=int, default=16, help="subscale factor B (default 16)")
    p.add_argument("--horizon", type=int, default=2, help="future horizon F (default 2)")
    p.add_argument("--past", type=int, default=32, help="taps of the plain model's linear predictor (default 32)")
    args = p.parse_args(argv)
    try:
        paths = find_audio(Path(args.data), Path(args.id_list) if args.id_list else None, args.limit)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signals = [float_to_int16(load_audio(path, 24000)).astype(np.float64) for path in paths]
    print(f"{len(paths)} files, {sum(x.shape[0] for x in signals) / 24000:.1f} s at 24 kHz")
    print("| estimate of x[t] from | taps | residual / signal dB | residual RMS, int16 steps |")
    print("|---|---|---|---|")
    db, rms = fit(signals, list(range(-args.past, 0)), None, args.factor)
    print(f"| plain: the previous {args.past} samples | {args.past} | {db:.1f} | {rms:.0f} |")
    for s in range(args.factor):
        offsets = fold.linear_estimate_taps(s, args.factor, args.horizon).tolist()
        db, rms = fit(signals, offsets, s, args.factor)
        near = min((o for o in offsets if o > 0), default=None)
        where = f"nearest later sample t + {near}" if near else "no later sample"
        print(f"| subscale s = {s}: positions i - 1 .. i + {args.horizon} ({where}) | {len(offsets)} | {db:.1f} | "
              f"{rms:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
