"""Benchmark harness shared by the scripts in benchmarks/: machine description, interleaved timing, reports.

What it is: the measuring discipline. Every candidate is timed in rounds that alternate between all candidates
(A B C A B C ...), so a machine whose speed drifts over minutes (this one drifts by up to 25 %) slows all of
them alike; each figure is the median over rounds; ratios are taken against a baseline timed in the same rounds.
What it is not: a test. Nothing here asserts a speed.

    from benchmarks.harness import Candidate, interleaved_medians, machine_description, write_report
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"
OUT_ENV = "PYWAVERNN_BENCH_OUT"  # a folder that replaces RESULTS_DIR (CI's smoke runs: never the committed results)


def results_dir(out_dir: Path | None = None) -> Path:
    """Where a report goes: out_dir if given (a script's --out-dir), else $PYWAVERNN_BENCH_OUT if set, else
    benchmarks/results (the committed figures)."""
    if out_dir is not None:
        return Path(out_dir)
    return Path(os.environ[OUT_ENV]) if os.environ.get(OUT_ENV) else RESULTS_DIR


def add_out_dir_option(ap) -> None:
    """The --out-dir option every benchmark script takes (argparse parser `ap`)."""
    ap.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                    help=f"report folder (default: ${OUT_ENV} if set, else benchmarks/results)")


@dataclass
class Candidate:
    """One thing to time: `run()` does one unit of work (validated before timing by the caller)."""

    name: str
    run: Callable[[], Any]
    work: float = 1.0  # units per run() (samples, FLOPs, ...) so rates can be reported
    info: dict = field(default_factory=dict)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> dict[str, Any]:
    """What every reported figure was measured on."""
    import numpy

    desc: dict[str, Any] = {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        import pywavernn

        desc["pywavernn_isa"] = pywavernn.selected_isa()
        desc["pywavernn_openmp"] = pywavernn.openmp_enabled()
    except Exception as exc:  # the report still says what it could
        desc["pywavernn_error"] = str(exc)
    try:
        with open("/proc/loadavg") as fh:
            desc["loadavg_at_start"] = fh.read().split()[:3]
    except OSError:
        pass
    return desc


def _time_once(fn: Callable[[], Any], min_seconds: float) -> float:
    """Seconds per call, calling fn repeatedly for at least min_seconds (one warm call first)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return elapsed / n


def interleaved_medians(candidates: list[Candidate], rounds: int = 7, min_seconds: float = 0.2) -> dict[str, dict]:
    """Time every candidate once per round, alternating; return per-candidate median seconds per run and rate."""
    times: dict[str, list[float]] = {c.name: [] for c in candidates}
    for r in range(rounds):
        order = candidates if r % 2 == 0 else list(reversed(candidates))
        for c in order:
            times[c.name].append(_time_once(c.run, min_seconds))
    out = {}
    for c in candidates:
        med = statistics.median(times[c.name])
        out[c.name] = {
            "median_s": med,
            "min_s": min(times[c.name]),
            "max_s": max(times[c.name]),
            "rounds": rounds,
            "times_s": times[c.name],  # per round, in round order (for paired_ratio)
            "work": c.work,
            "rate": c.work / med,
            **c.info,
        }
    return out


def paired_ratio(results: dict[str, dict], baseline: str, candidate: str) -> dict[str, float]:
    """Rate (work per second) of `candidate` over `baseline`'s (> 1: candidate faster), round by round: both were
    timed within the same round of interleaved_medians, so drift over minutes cancels. Returns the median of the
    per-round ratios with their minimum and maximum (the spread that drift within a round and noise leave)."""
    b, c = results[baseline], results[candidate]
    if len(b["times_s"]) != len(c["times_s"]):
        raise ValueError(f"{baseline} has {len(b['times_s'])} rounds, {candidate} {len(c['times_s'])}: not from one "
                         "timing run")
    ratios = [(c["work"] / tc) / (b["work"] / tb) for tb, tc in zip(b["times_s"], c["times_s"])]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """A Markdown table; columns are (key, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for key, _, spec in columns:
            v = row.get(key, "")
            cells.append(format(v, spec) if isinstance(v, (int, float)) and spec else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(name: str, machine: dict, results: Any, table: str, out_dir: Path | None = None,
                 extra: dict | None = None) -> Path:
    """Write <name>.json and <name>.md (atomically) to results_dir(out_dir) and return the JSON path; `extra` adds
    top-level fields to the JSON."""
    out_dir = results_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine, "results": results, **(extra or {})}
    json_path = out_dir / f"{name}.json"
    md_path = out_dir / f"{name}.md"
    for path, text in ((json_path, json.dumps(payload, indent=2, sort_keys=True)),
                       (md_path, f"# {name}\n\nMachine: {json.dumps(machine)}\n\n{table}\n")):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return json_path
