"""Training-speed benchmark: samples/s of a full training step (forward, backward, clipping, Adam) for today's
trainer and the fast one, on the same config, timed in alternating rounds.

What it is: the figure behind issue 24's first lever. Each candidate is a set of worker processes (one per rank)
started once, each holding its model, optimiser and a fixed batch of that config's shape (random log-mels and
int16 audio; the speed does not depend on the values); a round asks every candidate in turn (A B C ..., reversed
on odd rounds) for one step, and the time is the wall time until all its ranks are done. Candidates:

    today         torch.nn.GRU loss (gru_impl "torch"), one process, torch's default threads (the machine's
                  cores), glibc's default allocator: `python -m training train` as it ran before this benchmark
    today 1t      the same on one thread
    scan 1t       the hand-written-backward GRU (training/fast_gru.py) in float32, one thread, allocator tuned
    scan-bf16 1t  the same with bf16 products (only where the CPU has bf16 units)
    fast          the fast trainer as the campaign runs it: `torchrun --nproc_per_node R` ranks of one thread,
                  gru_impl "auto", allocator tuned (training.heap.keep_freed_memory), DistributedDataParallel
                  over gloo; each rank takes batch_size / R windows, so the global batch (and the optimisation)
                  is the config's

Samples per step = batch_size * window_frames * hop for every candidate. The ratios are per round against
"today" (benchmarks.harness.paired_ratio). Before timing, every candidate's first loss on the shared batch is
checked against today's (same weights, same batch: the losses agree to bf16 rounding), so a candidate that
trains a different model cannot be timed.

    python -m benchmarks.bench_training [--quick] [--configs CFG ...] [--rounds N] [--ranks R]

--quick: the last config alone (the campaign's, unless --configs says otherwise) and 2 rounds (default 5): the
smoke run CI takes, which checks that every candidate trains the same model and runs, in about a third of the
full run's time. The last line printed is `x baseline: N`, the fast trainer's median per-round ratio over today's
on the last config (the campaign's). Writes results/bench_training[_quick].json and .md.
What it is not: a test (nothing asserts a speed), nor a measure of learning per sample (the campaign's
learning curve, docs/quality.md, is).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import Candidate, format_table, interleaved_medians, machine_description, paired_ratio
from benchmarks.harness import write_report

REPO = Path(__file__).resolve().parent.parent
CONFIGS = [REPO / "training" / "configs" / "bundled_cpu.json",
           REPO / "training" / "configs" / "campaign" / "c0_plain384.json"]


# ------------------------------------------------------------------------------------------ the worker side

def _worker(spec: dict) -> None:
    """One rank of a candidate: build the model and a fixed batch, then answer "step" with "done" and "loss"
    with the loss of the shared batch (before any step), until stdin closes."""
    if spec["allocator"]:
        from training.heap import keep_freed_memory
        keep_freed_memory()
    import numpy as np
    import torch

    from training.config import TrainConfig
    from training.losses import loss_module
    from training.nets import build_net

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    cfg = TrainConfig.from_json_file(spec["config"])
    rank, world = spec["rank"], spec["world"]
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{spec['port']}", rank=rank,
                                             world_size=world)
    torch.manual_seed(cfg.seed)
    net = build_net(cfg)
    module = loss_module(net, spec["gru_impl"])
    model = torch.nn.parallel.DistributedDataParallel(module) if world > 1 else module
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    hop, frames, pad = cfg.features.hop_length, cfg.window_frames, cfg.model.cond_lookahead
    n_ctx = frames + 1 + 2 * pad

    def batch(n: int, seed: int) -> tuple:
        rng = np.random.default_rng(seed)
        mel = torch.from_numpy((rng.standard_normal((n, n_ctx, cfg.model.n_mels)) - 5).astype(np.float32))
        audio = torch.from_numpy((rng.standard_normal((n, frames * hop)) * 3000).astype(np.int16))
        prev = torch.from_numpy(rng.integers(-3000, 3000, n).astype(np.int16))
        return mel, [pad] * n, [n_ctx] * n, audio, prev

    shared = batch(min(cfg.batch_size, 4), 0)  # the same on every candidate: the losses are compared
    mine = batch(cfg.batch_size // world, 1 + rank)
    out = sys.stdout
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "loss":
            with torch.no_grad():
                out.write(f"loss {float(module(*shared)):.6f}\n")
        elif cmd == "step":
            opt.zero_grad(set_to_none=True)
            model(*mine).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            out.write("done\n")
        out.flush()
    if world > 1:
        torch.distributed.destroy_process_group()


# ------------------------------------------------------------------------------------------ the driver side

class Group:
    """The worker processes of one candidate."""

    def __init__(self, config: Path, gru_impl: str, threads: int | None, ranks: int, allocator: bool):
        port = _free_port()
        self.procs = []
        for rank in range(ranks):
            spec = {"config": str(config), "gru_impl": gru_impl, "threads": threads, "rank": rank,
                    "world": ranks, "port": port, "allocator": allocator}
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
            if threads:
                env["OMP_NUM_THREADS"] = str(threads)
            else:
                env.pop("OMP_NUM_THREADS", None)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "benchmarks.bench_training", "--worker", json.dumps(spec)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env))

    def ask(self, cmd: str) -> list[str]:
        for p in self.procs:
            p.stdin.write(cmd + "\n")
            p.stdin.flush()
        answers = []
        for p in self.procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"a benchmark worker died (exit code {p.wait()}); run it alone to see why")
            answers.append(line.strip())
        return answers

    def close(self) -> None:
        for p in self.procs:
            p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _candidates(ranks: int) -> list[tuple[str, dict]]:
    from training.fast_gru import has_bf16_units

    cands = [("today", dict(gru_impl="torch", threads=None, ranks=1, allocator=False)),
             ("today 1t", dict(gru_impl="torch", threads=1, ranks=1, allocator=False)),
             ("scan 1t", dict(gru_impl="scan", threads=1, ranks=1, allocator=True))]
    if has_bf16_units():
        cands.append(("scan-bf16 1t", dict(gru_impl="scan-bf16", threads=1, ranks=1, allocator=True)))
    cands.append((f"fast {ranks}x1t", dict(gru_impl="auto", threads=1, ranks=ranks, allocator=True)))
    return cands


def bench_config(config: Path, rounds: int, ranks: int) -> tuple[list[dict], dict]:
    from training.config import TrainConfig
    from training.fast_gru import extension

    extension()  # build the C++ loops once here, not in each worker at the same time
    cfg = TrainConfig.from_json_file(config)
    if cfg.batch_size % ranks:
        raise ValueError(f"{config}: batch_size {cfg.batch_size} does not split over {ranks} ranks")
    samples = cfg.batch_size * cfg.window_frames * cfg.features.hop_length
    groups, cands = {}, []
    try:
        for name, opts in _candidates(ranks):
            groups[name] = Group(config, **opts)
        losses = {name: float(g.ask("loss")[0].split()[1]) for name, g in groups.items()}
        for name, loss in losses.items():
            if abs(loss - losses["today"]) > 0.02 * abs(losses["today"]):
                raise RuntimeError(f"{config.name}: {name}'s loss {loss:.4f} differs from today's "
                                   f"{losses['today']:.4f}: not the same model")
        for name, g in groups.items():
            cands.append(Candidate(name, (lambda g=g: g.ask("step")), work=samples))
        results = interleaved_medians(cands, rounds=rounds, min_seconds=0.0)
    finally:
        for g in groups.values():
            g.close()
    rows = []
    for name, opts in _candidates(ranks):
        r = results[name]
        ratio = paired_ratio(results, "today", name)
        rows.append({"config": config.name, "candidate": name, "gru_impl": opts["gru_impl"],
                     "threads": opts["threads"] or os.cpu_count(), "ranks": opts["ranks"],
                     "samples_per_step": samples, "step_s": r["median_s"], "samples_per_s": r["rate"],
                     "x_today": ratio["median"], "x_min": ratio["min"], "x_max": ratio["max"],
                     "first_loss": losses[name]})
    return rows, results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="the last config alone, 2 rounds (CI's smoke run)")
    ap.add_argument("--configs", type=Path, nargs="*", default=CONFIGS, metavar="CFG",
                    help="training configs (default: the bundled model's and the campaign's)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--ranks", type=int, default=min(2, os.cpu_count() or 1),
                    help="ranks of the fast trainer (default: 2, or 1 on a one-core machine)")
    ap.add_argument("--name", default=None, help="report name (default bench_training[_quick])")
    args = ap.parse_args(argv)
    if args.worker is not None:
        _worker(json.loads(args.worker))
        return
    if not args.configs:
        ap.error("--configs: expected at least one training config, found none")
    if args.ranks < 1:
        ap.error(f"--ranks: expected a positive integer, found {args.ranks}")
    rounds = args.rounds or (2 if args.quick else 5)
    if args.quick:
        args.configs = args.configs[-1:]
    machine = machine_description()
    try:
        import torch
        machine["torch"] = torch.__version__
        machine["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        from training.fast_gru import has_bf16_units
        machine["bf16_units"] = has_bf16_units()
    except ImportError:
        ap.error("needs the training extra: pip install -e '.[train]'")
    t0 = time.monotonic()
    rows, raw = [], {}
    for config in args.configs:
        r, res = bench_config(config, rounds, args.ranks)
        rows += r
        raw[config.name] = res
    table = format_table(rows, [("config", "config", ""), ("candidate", "trainer", ""), ("ranks", "ranks", "d"),
                                ("threads", "threads/rank", "d"), ("step_s", "s/step", ".3f"),
                                ("samples_per_s", "samples/s", ",.0f"), ("x_today", "x today", ".2f"),
                                ("x_min", "min", ".2f"), ("x_max", "max", ".2f")])
    name = args.name or ("bench_training_quick" if args.quick else "bench_training")
    write_report(name, machine, rows, table, extra={"rounds": rounds, "raw": raw,
                                                    "wall_s": time.monotonic() - t0})
    print(f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch {machine['torch']} "
          f"({machine['torch_cpu_capability']}, bf16 units: {machine['bf16_units']})")
    print(table)
    last = [r for r in rows if r["config"] == args.configs[-1].name and r["candidate"].startswith("fast")][0]
    print(f"x baseline: {last['x_today']:.2f}")


if __name__ == "__main__":
    main()
