"""`python -m training.curve`: the training campaign's learning curve (issue 24), one row per evaluated checkpoint.

    python -m training.curve add RUNDIR EVALDIR [--csv docs/figures/learning_curve.csv] [--label TEXT]
    python -m training.curve add MODEL.safetensors EVALDIR --samples N --core-hours H [--label TEXT]
    python -m training.curve add EVALDIR/model.safetensors EVALDIR --from-run RUNDIR [--label TEXT]
    python -m training.curve add RUNDIR EVALDIR --lineage-samples N --lineage-core-hours H   # a run begun with
                                                                               # --init-from: its source's share
    python -m training.curve plot [--csv ...] [-o docs/figures/learning_curve.png]
    python -m training.curve table [--csv ...]          # the Markdown table docs/quality.md carries

`add` reads a run folder (its checkpoint: step, config, metrics; its log.csv: elapsed time) and the two
training.evaluate reports that training/configs/campaign/evaluate.sh wrote under EVALDIR (piper-joe/ and
asterisk-en/, the fixed subset), and appends one row: run, step, samples seen, core-hours, held-out NLL, and per
subset PESQ-WB, STOI, MCD, F0 RMSE, V/UV error and DistillMOS of the resynthesis, with Griffin-Lim's beside them.
A row for the same run and step replaces the old one in place, others are appended in the order
they are added; the CSV is written atomically. `plot` draws PESQ, STOI,
MOS and the NLL on the piper-joe half of the subset against samples seen, one line per run, with Griffin-Lim as
the floor to beat. (The NLL of a pre-emphasis model is of the pre-emphasised samples: compare it only within a
run; free-running measures compare across runs.)
What it is not: an evaluator (training.evaluate measures; this only collects).

Core-hours are the run's wall-clock training time (log.csv's elapsed_s, which --resume carries on) times its
processes times threads per process, as the checkpoint records them: on this project's 2-vCPU machines two runs
side by side each hold one vCPU.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from pywavernn.atomic import atomic_write

DEFAULT_CSV = Path(__file__).resolve().parent.parent / "docs" / "figures" / "learning_curve.csv"
SUBSETS = ("piper-joe", "asterisk-en")
METRICS = ("pesq", "stoi", "mcd", "f0_cents", "vuv", "mos")
COLUMNS = (["label", "run", "step", "samples", "core_hours", "valid_bits"]
           + [f"{s}_{w}_{m}" for s in SUBSETS for w in ("nll",) for m in ("bits",)]
           + [f"{s}_{w}_{m}" for s in SUBSETS for w in ("wavernn", "gl") for m in METRICS])


def _report(eval_dir: Path, subset: str) -> dict:
    path = eval_dir / subset / "report.json"
    if not path.is_file():
        raise ValueError(f"{path}: not found (run training/configs/campaign/evaluate.sh first)")
    return json.loads(path.read_text())


def _samples_from_config(step: int, world: int, cfg: dict) -> int:
    """Samples seen by a checkpoint written before the trainer counted them (metrics["samples_seen"]): right only
    if the batch size never changed during the run (a fork that changed it needs --samples)."""
    return step * world * cfg["batch_size"] * cfg["window_frames"] * cfg["features"].get("hop_length", 300)


def _model_row(model_path: Path, label: str | None, samples: int | None, core_hours: float | None,
               from_run: Path | None = None) -> dict:
    """The start of a row for a model file: its provenance gives the step and validation NLL. Samples and
    core-hours are given, or read from the run it was exported from (from_run: its config and its log.csv row at
    that step), for a checkpoint evaluated while the run went on."""
    from pywavernn import load_model

    train = load_model(model_path).provenance.get("training", {})
    step = int(train.get("step", 0))
    run = model_path.stem
    if from_run is not None:
        import torch

        ckpt = torch.load(from_run / "checkpoint.pt", map_location="cpu", weights_only=True)
        cfg, world = ckpt["config"], int(ckpt.get("world_size", 1))
        threads = int(ckpt.get("runtime", {}).get("threads", 1))
        with open(from_run / "log.csv", newline="") as fh:
            at = [r for r in csv.DictReader(fh) if r["step"].isdigit() and int(r["step"]) <= step]
        if not at:
            raise ValueError(f"{from_run}/log.csv: no row at or before step {step}")
        if samples is None:
            samples = train.get("samples_seen") or _samples_from_config(step, world, cfg)
        core_hours = round(float(at[-1]["elapsed_s"]) * world * threads / 3600.0, 3)
        run = from_run.name
    if samples is None:
        samples = train.get("samples_seen")
    if samples is None or core_hours is None:
        raise ValueError(f"{model_path}: a model file's row needs --samples and --core-hours, or --from-run")
    return {"label": label or run, "run": run, "step": step, "samples": int(samples),
            "core_hours": float(core_hours), "valid_bits": train.get("valid_bits")}


def row_of(run_dir: Path, eval_dir: Path, label: str | None = None, samples: int | None = None,
           core_hours: float | None = None, from_run: Path | None = None,
           lineage: tuple[int, float] | None = None) -> dict:
    """The learning-curve row of a run's checkpoint (or a model file) and its evaluation folder. lineage: the
    samples and core-hours that the weights a run started from (--init-from) had seen, added to the run's own, so
    the row counts the whole lineage as a fork's rows do."""
    if run_dir.suffix == ".safetensors":
        row = _model_row(run_dir, label, samples, core_hours, from_run)
        _fill_reports(row, eval_dir, row["step"] if from_run is not None else None)
        return _with_lineage(row, lineage)
    import torch

    if not (run_dir / "checkpoint.pt").is_file():
        raise ValueError(f"{run_dir}: no checkpoint.pt (expected a training run folder or a .safetensors file)")
    ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg, step = ckpt["config"], int(ckpt["step"])
    world = int(ckpt.get("world_size", 1))
    threads = int(ckpt.get("runtime", {}).get("threads", 1))
    samples = ckpt["metrics"].get("samples_seen") or _samples_from_config(step, world, cfg)
    elapsed = float(ckpt["metrics"].get("elapsed_s") or 0.0)
    row = {"label": label or run_dir.name, "run": run_dir.name, "step": step, "samples": samples,
           "core_hours": round(elapsed * world * threads / 3600.0, 3),
           "valid_bits": ckpt["metrics"].get("valid_bits")}
    _fill_reports(row, eval_dir, step)
    return _with_lineage(row, lineage)


def _with_lineage(row: dict, lineage: tuple[int, float] | None) -> dict:
    if lineage is not None:
        n, hours = lineage
        if n < 0 or not hours >= 0:
            raise ValueError(f"lineage: expected samples >= 0 and core-hours >= 0, found {n} and {hours}")
        row["samples"] = int(row["samples"]) + int(n)
        row["core_hours"] = round(float(row["core_hours"]) + float(hours), 3)
    return row


def _fill_reports(row: dict, eval_dir: Path, step: int | None) -> None:
    for subset in SUBSETS:
        rep = _report(eval_dir, subset)
        if step is not None and rep["model"]["provenance"].get("training", {}).get("step") not in (None, step):
            raise ValueError(f"{eval_dir}/{subset}: the report is of step "
                             f"{rep['model']['provenance']['training']['step']}, the checkpoint is at step {step}")
        mean = rep["mean"]
        row[f"{subset}_nll_bits"] = mean["nll_bits"]["mean"]
        for who, key in (("wavernn", "pywavernn"), ("gl", "griffin_lim")):
            for m in METRICS:
                row[f"{subset}_{who}_{m}"] = mean[key].get(m, {}).get("mean")


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]))
                         for k in COLUMNS})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue().encode())


def add(run_dir: Path, eval_dir: Path, csv_path: Path, label: str | None = None, samples: int | None = None,
        core_hours: float | None = None, from_run: Path | None = None,
        lineage: tuple[int, float] | None = None) -> dict:
    row = row_of(run_dir, eval_dir, label, samples, core_hours, from_run, lineage)
    rows = read_rows(csv_path)
    same = [i for i, r in enumerate(rows) if r["run"] == row["run"] and int(r["step"]) == row["step"]]
    if same:  # the same run and step again: replaced where it stood
        rows[same[0]] = row
    else:
        rows.append(row)
    write_rows(csv_path, rows)
    return row


def _num(v) -> float | None:
    return None if v in (None, "") else float(v)


def _pair(r: dict, key: str, digits: int) -> str:
    """The cell "piper-joe / asterisk-en" of column {subset}_{key}, "–" where it is empty."""
    cells = []
    for s in SUBSETS:
        v = _num(r.get(f"{s}_{key}"))
        cells.append("–" if v is None else f"{v:.{digits}f}")
    return " / ".join(cells)


_TABLE_METRICS = (("pesq", 2), ("stoi", 3), ("mcd", 2), ("f0_cents", 0), ("vuv", 2), ("mos", 2))


def table(rows: list[dict]) -> str:
    head = ("| run | step | samples | core-h | NLL joe / ast | PESQ joe / ast | STOI joe / ast | MCD joe / ast | "
            "F0 cents joe / ast | V/UV joe / ast | MOS joe / ast |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        cells = [_pair(r, "nll_bits", 3)] + [_pair(r, f"wavernn_{m}", d) for m, d in _TABLE_METRICS]
        lines.append(f"| {r['label']} | {r['step']} | {int(r['samples']) / 1e6:.0f}M | {float(r['core_hours']):.2f} | "
                     + " | ".join(cells) + " |")
    if rows:  # Griffin-Lim depends only on the files, so any row's figures are the floor's
        lines.append("| Griffin-Lim (floor) | | | | | "
                     + " | ".join(_pair(rows[-1], f"gl_{m}", d) for m, d in _TABLE_METRICS) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    """Four panels against samples seen, one colour per run (the legend below them), piper-joe solid with
    circles and asterisk-en dashed with squares, Griffin-Lim dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    panels = [("pesq", "PESQ-WB"), ("stoi", "STOI"), ("mos", "DistillMOS"), ("nll", "NLL, piper-joe subset (bits)")]
    runs = list(dict.fromkeys(r["run"] for r in rows))  # in the order first added
    cmap = plt.get_cmap("tab20")  # ten hues, dark then light: runs 1-10 dark, 11-20 light, then they repeat
    colours = {run: cmap(2 * (i % 10) + (i // 10) % 2) for i, run in enumerate(runs)}
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6 + 0.25 * ((len(runs) + 2) // 3)))
    for ax, (m, title) in zip(axes, panels):
        for run in runs:
            rs = sorted((r for r in rows if r["run"] == run), key=lambda r: int(r["samples"]))
            x = [int(r["samples"]) / 1e6 for r in rs]
            subsets = (("piper-joe", "o-"),) if m == "nll" else zip(SUBSETS, ("o-", "s--"))
            for s, style in subsets:
                key = "piper-joe_nll_bits" if m == "nll" else f"{s}_wavernn_{m}"
                ax.plot(x, [_num(r[key]) for r in rs], style, color=colours[run], ms=4)
        if m != "nll" and rows:
            for s, style in zip(SUBSETS, (":", "-.")):
                v = _num(rows[-1][f"{s}_gl_{m}"])
                if v is not None:
                    ax.axhline(v, color="0.5", ls=style, lw=1)
        ax.set_title(title)
        ax.set_xlabel("training samples seen (millions)")
        ax.grid(alpha=0.3)
    keys = [Line2D([], [], color="0.3", ls=ls, marker=mk, ms=4, label=f"{s}") for s, ls, mk in
            (("piper-joe", "-", "o"), ("asterisk-en", "--", "s"))]
    keys += [Line2D([], [], color="0.5", ls=ls, lw=1, label=f"Griffin-Lim {s}") for s, ls in
             (("piper-joe", ":"), ("asterisk-en", "-."))]
    axes[0].legend(handles=keys, fontsize=7)
    runs_key = [Line2D([], [], color=colours[run], lw=2,
                       label=[r for r in rows if r["run"] == run][-1]["label"]) for run in runs]
    fig.legend(handles=runs_key, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07 * ((len(runs) + 2) // 3), 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.curve", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="append the row of a run's checkpoint and its evaluation")
    a.add_argument("run", type=Path)
    a.add_argument("eval", type=Path)
    a.add_argument("--label")
    a.add_argument("--samples", type=int, help="for a model file: training samples it saw")
    a.add_argument("--core-hours", type=float, help="for a model file: core-hours it was trained for")
    a.add_argument("--from-run", type=Path, help="for a model file exported from a run that went on: the run folder "
                                                 "(samples and core-hours from its config and log.csv)")
    a.add_argument("--lineage-samples", type=int, help="for a run started with --init-from: the samples its source "
                                                       "had seen, added to the run's own")
    a.add_argument("--lineage-core-hours", type=float, help="likewise, the source's core-hours")
    for q in (a, sub.add_parser("plot", help="draw the curve"), sub.add_parser("table", help="print the table")):
        q.add_argument("--csv", type=Path, default=DEFAULT_CSV)
        if q.prog.endswith("plot"):
            q.add_argument("-o", "--output", type=Path, default=DEFAULT_CSV.with_suffix(".png"))
    args = p.parse_args(argv)
    try:
        if args.command == "add":
            if (args.lineage_samples is None) != (args.lineage_core_hours is None):
                raise ValueError("--lineage-samples and --lineage-core-hours go together")
            lineage = None if args.lineage_samples is None else (args.lineage_samples, args.lineage_core_hours)
            row = add(args.run, args.eval, args.csv, args.label, args.samples, args.core_hours, args.from_run,
                      lineage)
            print(f"added {row['run']} step {row['step']} to {args.csv}")
        elif args.command == "plot":
            plot(read_rows(args.csv), args.output)
            print(f"wrote {args.output}")
        else:
            print(table(read_rows(args.csv)))
        return 0
    except ValueError as exc:
        print(f"training.curve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
