"""Paired comparison of two models' reports on the same files: mean difference, its standard error, and a count.

    python -m research.compare eval/PLAIN/report.json eval/SUBSCALE/report.json [--json out.json]

What it is: for every metric both reports give per file (NLL in bits per sample; coarse and fine bits from
training.score; PESQ, STOI, MCD and MOS of the resynthesis from training.evaluate), the mean of B - A over the
files both reports hold, the standard error of that mean (sample standard deviation of the differences over
sqrt(n)), and on how many files B is the lower. Two models scored on the same files differ far less from file to
file than the files differ from each other, so the paired standard error is the honest yardstick for "within 0.05
bits/sample": the difference of the two means is the same number, but only pairing says how sure it is.
What it is not: a test of significance or an evaluation (training.evaluate, training.score make the reports).
A research script (research/experiments.md compares the RQ3 models with it), run from the checkout's root;
nothing in the package imports it.

The reports must cover the same files (matched by name): a file in one and not the other is an error, since a
mean over different files is not a paired comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from pywavernn.atomic import atomic_write

# (name in the output, path inside a per-file record); lower is better for every one but pesq, stoi and mos.
METRICS = (
    ("nll_bits", ("nll_bits",)),
    ("coarse", ("coarse",)),
    ("fine", ("fine",)),
    ("pesq", ("pywavernn", "pesq")),
    ("stoi", ("pywavernn", "stoi")),
    ("mcd", ("pywavernn", "mcd")),
    ("mos", ("pywavernn", "mos")),
)


def _per_file(report: dict, where: str) -> dict[str, dict]:
    files = report.get("files")
    if not isinstance(files, list) or not files:
        raise ValueError(f"{where}: expected a report with a non-empty 'files' list (training.evaluate or "
                         f"training.score), found {type(files).__name__ if files is not None else 'no files key'}")
    out = {}
    for rec in files:
        name = rec.get("file") if isinstance(rec, dict) else None
        if not isinstance(name, str):
            raise ValueError(f"{where}: expected each file record to have a 'file' name, found {rec!r:.80}")
        if name in out:
            raise ValueError(f"{where}: file {name!r} appears twice")
        out[name] = rec
    return out


def _value(rec: dict, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(rec, dict) or key not in rec:
            return None
        rec = rec[key]
    if isinstance(rec, bool) or not isinstance(rec, (int, float)) or not math.isfinite(rec):
        return None
    return float(rec)


def compare(a: dict, b: dict, where_a: str = "A", where_b: str = "B") -> dict:
    """{metric: {n, mean_a, mean_b, diff, se, b_lower}} over the files both reports score (module docstring)."""
    fa, fb = _per_file(a, where_a), _per_file(b, where_b)
    only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
    if only_a or only_b:
        def some(names):
            return f"{names[:5]}{' ...' if len(names) > 5 else ''} ({len(names)})"
        raise ValueError(f"the reports must score the same files: only in {where_a}: {some(only_a)}; "
                         f"only in {where_b}: {some(only_b)}")
    names = sorted(fa)
    out = {}
    for metric, path in METRICS:
        pairs = [(_value(fa[n], path), _value(fb[n], path)) for n in names]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if not pairs:
            continue
        x, y = np.array(pairs).T
        d, n = y - x, len(pairs)
        se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        out[metric] = {"n": n, "mean_a": float(x.mean()), "mean_b": float(y.mean()), "diff": float(d.mean()),
                       "se": se, "b_lower": int((d < 0).sum())}
    if not out:
        raise ValueError(f"{where_a} and {where_b} share no per-file metric "
                         f"(expected some of {[m for m, _ in METRICS]})")
    return out


def table(result: dict, name_a: str, name_b: str) -> str:
    lines = [f"| metric | files | {name_a} | {name_b} | {name_b} - {name_a} (s.e.) | files where {name_b} is lower |",
             "|---|---|---|---|---|---|"]
    for metric, r in result.items():
        lines.append(f"| {metric} | {r['n']} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['diff']:+.4f} "
                     f"({r['se']:.4f}) | {r['b_lower']} |")
    return "\n".join(lines)


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: expected a JSON report, found invalid JSON ({exc})") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.compare", description=__doc__.split("\n\n")[1])
    p.add_argument("a", help="report.json of the baseline (training.evaluate or training.score)")
    p.add_argument("b", help="report.json of the model compared with it, on the same files")
    p.add_argument("--json", help="write the comparison as JSON here")
    args = p.parse_args(argv)
    try:
        result = compare(_load(args.a), _load(args.b), args.a, args.b)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(Path(args.json)) as f:  # never a half-written file
            f.write(json.dumps({"tool": "research.compare", "a": args.a, "b": args.b, "metrics": result},
                               indent=1).encode())
    print(table(result, "A", "B"))
    print(f"A = {args.a}\nB = {args.b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
