"""The training command line: `python -m training train|export ...`.

What it is: the argument parser and `main`, which turns arguments into training.trainer.train or
training.export.export_checkpoint calls, prints one line of result, and turns a ValueError into
"training: error: ..." on stderr with exit status 2:

    python -m training train --config CFG.json --data DIR [DIR ...] --out RUNDIR [--resume] [--cache-dir DIR]
                             [--threads N] [--max-minutes M] [--init-from PATH] [--no-progress]
    torchrun --nproc_per_node 2 -m training train --config CFG.json --data DIR --out RUNDIR --threads 1
    python -m training export RUNDIR/checkpoint.pt -o model.safetensors [--dense] [--note KEY=TEXT]

Several --data folders train together (each split by its own lists). --max-minutes stops the run cleanly after
M minutes of wall-clock time with a checkpoint of the last step, so a long run goes on in stretches (--resume).
On a CPU the fastest set-up is one rank per core with one thread each (torchrun) and the config's gru_impl
"auto" (training/losses.py: the hand-written-backward GRU, with bf16 products where the CPU has bf16 units);
`python -m benchmarks.bench_training` measures it against torch.nn.GRU. The process keeps freed memory
(training.heap.keep_freed_memory) so that the large per-step tensors are not page-faulted in again every step.
What it is not: the loop (training/trainer.py) or the export (training/export.py).

Tests: tests/test_training.py, tests/test_training_subscale.py, tests/test_training_fused.py (runs, refusals and
error messages through main and through `python -m training` in subprocesses).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from training.config import TrainConfig
from training.data import default_cache_dir
from training.export import export_checkpoint
from training.heap import keep_freed_memory
from training.trainer import train


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description="Train and export pywavernn models.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or --resume) a run")
    t.add_argument("--config", help="TrainConfig JSON (training/configs/); optional with --resume")
    t.add_argument("--data", required=True, nargs="+", metavar="DIR",
                   help="folder(s) of audio files or LJSpeech-style folders, trained on together")
    t.add_argument("--out", required=True, help="run folder: checkpoint.pt, log.csv, config.json")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--cache-dir", help=f"feature cache (default {default_cache_dir()})")
    t.add_argument("--threads", type=int, help="torch CPU threads per process")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--init-from", metavar="PATH",
                   help="start the new run from the weights of a checkpoint.pt or a .safetensors model file (same "
                        "model config; fresh optimiser, step 0): e.g. a long run whose run folder was lost")
    t.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop cleanly after M minutes of wall-clock time, with a checkpoint (--resume continues)")
    e = sub.add_parser("export", help="write a checkpoint's model to a .safetensors model file")
    e.add_argument("checkpoint")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--dense", action="store_true", help="store every matrix dense")
    e.add_argument("--note", action="append", default=[], metavar="KEY=TEXT",
                   help="a provenance note stored in the file (repeatable), e.g. --note 'licence=research use only'")
    return p


def _notes(pairs: list[str]) -> dict[str, str]:
    notes = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(f"--note: expected KEY=TEXT with both parts non-empty, found {pair!r}")
        notes[key.strip()] = text.strip()
    return notes


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "export":
            model = export_checkpoint(args.checkpoint, args.output, dense=args.dense, notes=_notes(args.note))
            sparsity = ", ".join(f"{k} {v:.1%}" for k, v in model.sparsity().items())
            print(f"wrote {args.output} (sparsity: {sparsity})")
            return 0
        keep_freed_memory()
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads: expected a positive integer, found {args.threads}")
            torch.set_num_threads(args.threads)
        cfg = TrainConfig.from_json_file(args.config) if args.config else None
        result = train(cfg, args.data, args.out, resume=args.resume, cache_dir=args.cache_dir,
                       progress=not args.no_progress and sys.stderr.isatty(), max_minutes=args.max_minutes,
                       init_from=args.init_from)
        if int(os.environ.get("RANK", "0")) == 0:
            bits = result["valid_bits"]
            stop = " (stopped at --max-minutes; --resume continues)" if result["stopped"] == "time" else ""
            print(f"step {result['step']}: valid {bits if bits is None else f'{bits:.4f}'} bits/sample; "
                  f"checkpoint {result['checkpoint']}{stop}")
        return 0
    except ValueError as exc:
        print(f"training: error: {exc}", file=sys.stderr)
        return 2
