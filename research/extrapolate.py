"""Where the training campaign's learning curve points: samples and core-hours to Griffin-Lim, if the trend held.

    python -m research.extrapolate [--csv docs/figures/learning_curve.csv] [--from-samples 5e8] [--rate N]

What it is: issue 24's "extrapolation", computed from the learning curve (training.curve's CSV) and nothing
else. For each subset (piper-joe, asterisk-en) and free-running measure (PESQ-WB, STOI, DistillMOS up; MCD
down) it takes the best value reached so far along samples seen, over every run (the campaign's frontier: a
fork or a restart that did worse does not pull the trend down), keeps the frontier's points from --from-samples
on, and fits value = a + b log2(samples) by least squares: b is the gain per doubling of the samples seen. Where
b points towards the target, the fit's crossing of Griffin-Lim's value (the floor to beat, the mean of the
rows' Griffin-Lim columns) and of the issue's PESQ goals (3.5 piper-joe, 3.0 asterisk-en) is reported in
samples and in core-hours at --rate samples per core-hour ("reached" where the frontier is already past it) (default: the newest row's, its lineage's samples
over its core-hours, the campaign's own pace on its machines).
What it is not: a forecast. A log-linear fit through a few noisy points of one campaign says how far the trend
is from the target, not that the trend will hold: learning curves of vocoders bend (the campaign's own jumps
came from recipe changes, not from samples), and the crossings are often far outside the data.
Letters: n samples seen, b gain per doubling, R samples per core-hour.
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

DEFAULT_CSV = Path(__file__).resolve().parent.parent / "docs" / "figures" / "learning_curve.csv"
SUBSETS = ("piper-joe", "asterisk-en")
MEASURES = {"pesq": +1, "stoi": +1, "mos": +1, "mcd": -1}  # +1: higher is better
GOALS = {("piper-joe", "pesq"): 3.5, ("asterisk-en", "pesq"): 3.0}


def _float(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no rows")
    for need in ("samples", "core_hours"):
        if need not in rows[0]:
            raise ValueError(f"{path}: expected a column {need!r} (a training.curve CSV), found {list(rows[0])}")
    return rows


def frontier(points: list[tuple[float, float]], sign: int) -> list[tuple[float, float]]:
    """The best value so far along n: (n, v) pairs sorted by n, kept where v beats every value at a smaller or
    equal n (sign +1: higher is better, -1: lower)."""
    out: list[tuple[float, float]] = []
    for n, v in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if not out or sign * v > sign * out[-1][1]:
            out.append((n, v))
    return out


def fit_log2(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) of v = a + b log2(n), least squares; needs two distinct n."""
    n = np.array([p[0] for p in points], dtype=np.float64)
    v = np.array([p[1] for p in points], dtype=np.float64)
    if len(points) < 2 or np.ptp(np.log2(n)) == 0:
        raise ValueError(f"a fit needs two points at different sample counts, found {len(points)}")
    b, a = np.polyfit(np.log2(n), v, 1)
    return float(a), float(b)


def crossing(a: float, b: float, target: float, sign: int) -> float | None:
    """n where a + b log2(n) reaches target, or None where the trend does not head that way (b of the wrong sign
    or 0)."""
    if sign * b <= 0:
        return None
    return float(2.0 ** ((target - a) / b))


def extrapolate(rows: list[dict], from_samples: float, rate: float | None = None) -> list[dict]:
    """One dict per subset and measure: the frontier's fit, Griffin-Lim's value, and the crossings in samples (0.0:
    the frontier's best is already past the target; None: the fit heads away from it or is flat)."""
    if rate is None:
        last = rows[-1]
        n, h = _float(last["samples"]), _float(last["core_hours"])
        if not n or not h:
            raise ValueError("the newest row has no samples or core-hours; pass --rate")
        rate = n / h
    if not rate > 0:
        raise ValueError(f"rate: expected samples per core-hour > 0, found {rate}")
    out = []
    for subset in SUBSETS:
        for m, sign in MEASURES.items():
            col, gl_col = f"{subset}_wavernn_{m}", f"{subset}_gl_{m}"
            pts = [(_float(r["samples"]), _float(r.get(col))) for r in rows]
            pts = [(n, v) for n, v in pts if n and n > 0 and v is not None]
            front = [p for p in frontier(pts, sign) if p[0] >= from_samples]
            gl = [_float(r.get(gl_col)) for r in rows]
            gl = [g for g in gl if g is not None]
            res = {"subset": subset, "measure": m, "points": len(front),
                   "best": front[-1][1] if front else None, "at_samples": front[-1][0] if front else None,
                   "griffin_lim": float(np.mean(gl)) if gl else None, "per_doubling": None,
                   "to_griffin_lim": None, "goal": GOALS.get((subset, m)), "to_goal": None, "rate": rate}
            if len(front) >= 2:
                a, b = fit_log2(front)
                res["per_doubling"] = b
                for key, target in (("to_griffin_lim", res["griffin_lim"]), ("to_goal", res["goal"])):
                    if target is not None and sign * res["best"] >= sign * target:
                        res[key] = 0.0  # already there
                    elif target is not None:
                        res[key] = crossing(a, b, target, sign)
            out.append(res)
    return out


def _fmt_n(n: float | None, rate: float) -> str:
    if n is None:
        return "never on this trend"
    if n == 0.0:
        return "reached"
    return f"{n:.2g} samples ({n / rate:.2g} core-h)"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m research.extrapolate", description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    p.add_argument("--from-samples", type=float, default=5e8,
                   help="fit the frontier from this many samples on (default 5e8: the campaign's recipe, c3 on)")
    p.add_argument("--rate", type=float, default=None, help="samples per core-hour (default: the newest row's)")
    args = p.parse_args(argv)
    try:
        res = extrapolate(read_rows(args.csv), args.from_samples, args.rate)
    except (OSError, ValueError) as e:
        p.error(str(e))
    print(f"{args.csv}: frontier from {args.from_samples:.2g} samples, {res[0]['rate']:.3g} samples per core-hour")
    print("| subset | measure | best (samples) | fit points | per doubling | Griffin-Lim | reached at | goal "
          "| reached at |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res:
        best = "–" if r["best"] is None else f"{r['best']:.3f} ({r['at_samples']:.3g})"
        slope = "–" if r["per_doubling"] is None else f"{r['per_doubling']:+.3f}"
        gl = "–" if r["griffin_lim"] is None else f"{r['griffin_lim']:.3f}"
        to_gl = "–" if r["per_doubling"] is None else _fmt_n(r["to_griffin_lim"], r["rate"])
        goal = "–" if r["goal"] is None else f"{r['goal']:g}"
        to_goal = "–" if r["goal"] is None or r["per_doubling"] is None else _fmt_n(r["to_goal"], r["rate"])
        print(f"| {r['subset']} | {r['measure']} | {best} | {r['points']} | {slope} | {gl} | {to_gl} | {goal} "
              f"| {to_goal} |")


if __name__ == "__main__":
    main()
