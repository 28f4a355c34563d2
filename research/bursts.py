"""Full-band bursts in free-running output, and how the spectrum floor of the taps from the mel moves them.

What it is: `python -m research.bursts MODEL --data DIR --list ids.txt [--floor 1e-4 1e-3 ...] [--seed S]`
vocodes each listed file from its log-mel and reports, per floor, the share of 5 ms windows (120 samples) whose
first difference is over 4 times as loud (RMS) as the original's, a burst (a click or a stretch of near-Nyquist
oscillation that spans every band), and the mean STOI. The floor is `pywavernn.lpc.NOISE_FLOOR` (docs/format.md
§13), set for the run only, so a model trained at one floor can be vocoded at another without retraining: the
issue 24 probe that found where c11's bursts on asterisk-en came from (the predictor's gain in bands the mel says
are empty) and moved the format's floor from -40 to -30 dB. For a model without `mel_lpc` the floor changes
nothing and every row is the same.
What it is not: a quality measure (training.evaluate is); the threshold (4x, 5 ms) separates the bursts seen in
the spectrograms from ordinary sampling noise, which sits well below the original's first difference in voiced
speech and at most a few times above it in pauses (a small floor, BURST_EPS, keeps digital silence from counting).
Letters: W the window in samples.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pywavernn import lpc
from pywavernn.audio import int16_to_float, load_audio
from pywavernn.vocoder import Vocoder
from training.evaluate import find_audio

WINDOW = 120  # 5 ms at 24 kHz
RATIO = 4.0  # a window whose first difference is this many times the original's is a burst
BURST_EPS = 3e-5  # added to both RMS values (about -90 dBFS): digital silence is not a burst


def burst_windows(y: np.ndarray, ref: np.ndarray, window: int = WINDOW, ratio: float = RATIO) -> tuple[int, int]:
    """(bursts, windows): of the whole W-sample windows of the first differences of y and ref (float, the same
    length), how many have an RMS over `ratio` times ref's (each plus BURST_EPS)."""
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    if y.shape != ref.shape or y.ndim != 1:
        raise ValueError(f"y and ref: expected two 1-D arrays of one length, found {y.shape} and {ref.shape}")
    n = (y.size - 1) // window
    if n == 0:
        return 0, 0

    def rms(x):
        return np.sqrt(np.mean(np.diff(x)[: n * window].reshape(n, window) ** 2, axis=1))

    return int(((rms(y) + BURST_EPS) > ratio * (rms(ref) + BURST_EPS)).sum()), n


def measure(model: str, files: list[Path], floors: list[float], seed: int = 0) -> list[dict]:
    """One row per floor: {"floor", "bursts", "windows", "share", "stoi"} over the files. The taps are computed
    from the mel at each vocode call, so one Vocoder serves every floor."""
    from training.metrics import stoi

    voc = Vocoder(model)
    saved, rows = lpc.NOISE_FLOOR, []
    try:
        for floor in floors:
            lpc.NOISE_FLOOR = floor
            bursts = windows = 0
            scores = []
            for path in files:
                ref = load_audio(path, voc.sample_rate)
                y = int16_to_float(voc.vocode(voc.mel(ref), seed)[: ref.size])
                b, w = burst_windows(y, ref)
                bursts, windows = bursts + b, windows + w
                scores.append(stoi(ref, y, voc.sample_rate))
            rows.append({"floor": floor, "bursts": bursts, "windows": windows,
                         "share": bursts / max(windows, 1), "stoi": float(np.mean(scores))})
    finally:
        lpc.NOISE_FLOOR = saved
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m research.bursts", description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--data", required=True, type=Path, help="a folder of audio files")
    p.add_argument("--list", required=True, type=Path, help="file ids (names without extension), one a line")
    p.add_argument("--floor", type=float, nargs="+", default=[lpc.NOISE_FLOOR])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    files = find_audio(a.data, a.list)
    print("| floor | burst windows | share | STOI |\n|---|---|---|---|")
    for r in measure(a.model, files, a.floor, a.seed):
        print(f"| {r['floor']:g} | {r['bursts']} / {r['windows']} | {100 * r['share']:.1f} % | {r['stoi']:.3f} |")


if __name__ == "__main__":
    main()
