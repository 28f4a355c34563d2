"""The training loop: one run from a config and audio folders to a trained, pruned, checkpointed model.

What it is: `train` (start or resume a run in a folder), `Trainer` (one rank's state: model, loss module, Adam,
pruner, window streams, step and metrics; one optimizer step with gradient clipping and the learning-rate
schedule, held-out NLL, the checkpoint dict and its restore), the loop `_run` (steps, then on schedule evaluation,
a CSV log row, a tqdm bar and an atomic checkpoint) and `CsvLog`. Sparse WaveRNN pruning runs on schedule inside
each step; held-out NLL is in bits per 16-bit sample every eval_every steps. --max-minutes stops the run cleanly
after M minutes of wall-clock time with a checkpoint of the last step, so a long run goes on in stretches. A
step whose gradient is not finite is skipped (warned, counted in metrics["skipped_steps"]; 20 in a row stop the run).
What it is not: the command line (training/cli.py), the model and what its kind decides (training/nets.py and
the models), the losses (training/losses.py), the data pipeline (training/data.py), the pruning maths
(training/pruning.py), the checkpoint file (training/checkpoint.py) or the ranks (training/distributed.py).

    from training.trainer import train
    train(TrainConfig.from_json_file("training/configs/tiny.json"), "DATA", "runs/x", max_minutes=60)
    train(None, "DATA", "runs/x", resume=True)

Runs on CPU and CUDA (device "auto"); under torchrun DistributedDataParallel wraps the loss module (gloo on CPU,
nccl on CUDA): every rank trains on its own shard of the files with its own window stream, only rank 0 writes the
log and checkpoints, and every checkpoint records each rank's parameter digest (they must agree) and RNG state.

Resuming is exact: the batch of step t is a pure function of (seed, rank, t) (training/data.py), the learning
rate a pure function of t, and the checkpoint holds the model, Adam's moments, the pruning masks, the step and
every rank's python/numpy/torch RNG state, so a run killed after a checkpoint and resumed ends with parameters
bit-identical to an uninterrupted run (same device, thread count and world size).

Subscale WaveRNN (docs/format.md §9). A config whose model has subscale_factor B > 1 trains
training.subscale_model.SubscaleWaveRNN instead, with everything else the same (windows, pruning of gru.R and
O1..O4 -- the parameters have the plain model's names --, held-out NLL, checkpoints, export to a subscale file).
Each window of T = W * hop samples (a multiple of B, checked by TrainConfig) is folded into B sub-tensors of T / B
positions and teacher-forced as SubscaleWaveRNN.forward does: every sub-tensor starts at h = 0 with the silent
previous sample, and the context network sees zeros outside the window (`prev` is unused); the conditioning is
the window's own, cropped from its context frames, as for the plain model.

Fused Subscale WaveRNN 2x (docs/format.md §12). A config with model.subscale_fused trains
training.fused_model.FusedWaveRNN: the same loop, pruning of gru.R's gates and of the eight heads (fused.O1,
fused.O2, each head ranked on its own), export to a fused file. A window (an even number of samples, checked by
TrainConfig) runs §12's schedule as an utterance from h = 0 whose inputs before the window carry the 7 true
samples before it (Batch.prev); training/fused_model.py says why. gru_impl "torch" runs the twin's own loop,
"scan" / "scan-bf16" training.fast_gru's ("auto": see training.losses.resolve_gru_impl).

Tests: tests/test_training.py (kill-and-resume bit-identical, --max-minutes, 2-process torchrun, resume with a
changed config, --init-from), tests/test_training_subscale.py, tests/test_training_fused.py.

Letters: N batch, W window frames, T = W * hop samples per window, C conditioning channels, H hidden units,
B subscale factor, P = T / B positions.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import pywavernn
from pywavernn.modelfile import load_model
from training.checkpoint import (CHECKPOINT, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_checkpoint, params_digest,
                                 prepare_run_dir, reconcile_config, rng_state, save_checkpoint, set_rng_state)
from training.config import TrainConfig
from training.data import Batch, WindowSampler, build_datasets, default_cache_dir, fixed_windows
from training.distributed import Dist
from training.heap import release_free_memory
from training.losses import WindowedNLL, batch_inputs, loss_module, resolve_gru_impl
from training.nets import build_net, history_samples, make_pruner
from training.pruning import RECURRENT_NAMES

LOG_COLUMNS = ["step", "elapsed_s", "lr", "train_bits", "grad_norm", "valid_bits", "sparsity_R"]
MAX_SKIPPED_IN_ROW = 20  # steps with a non-finite gradient skipped in a row before the run stops with an error


@torch.no_grad()
def evaluate(module: WindowedNLL, batches: list[Batch], device: torch.device, rank: int = 0,
             world_size: int = 1) -> float:
    """Mean NLL (bits per 16-bit sample) over the validation batches; ranks split the batches and sum."""
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for i in range(rank, len(batches), world_size):
        total[0] += module(*batch_inputs(batches[i], device)).double() * batches[i].audio.size
        total[1] += batches[i].audio.size
    if world_size > 1:
        torch.distributed.all_reduce(total)
    return float(total[0] / total[1])


# ------------------------------------------------------------------------------------------------------- log

class CsvLog:
    """log.csv of a run; on resume, rows after the checkpoint's step (written before a crash) are dropped."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        rows = []
        if resume_step is not None and path.exists():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
        tmp = path.parent / f".{path.name}.tmp"
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, LOG_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        self.fh = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.fh, LOG_COLUMNS, extrasaction="ignore")

    def write(self, row: dict) -> None:
        self.writer.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v)
                              for k, v in row.items()})
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


# ------------------------------------------------------------------------------------------------- training

class Trainer:
    """One rank's training state: model, optimizer, pruner, data streams, step and metrics."""

    def __init__(self, cfg: TrainConfig, data_dir, cache_dir, dist: Dist):
        self.cfg, self.dist = cfg, dist
        self.data = build_datasets(data_dir, cfg.features, cfg.window_frames, cfg.model.cond_lookahead,
                                   cache_dir if cache_dir is not None else default_cache_dir(),
                                   cfg.data.valid_fraction, cfg.data.min_peak, dist.rank, dist.world_size,
                                   dist.gather, preemphasis=cfg.model.preemphasis,
                                   history=history_samples(cfg))  # Batch.prev: est(t)'s or the fused inputs'
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.net = build_net(cfg).to(dist.device)
        self.gru_impl = resolve_gru_impl(cfg.gru_impl, dist.device)  # what this machine runs ("auto" resolved)
        self.module = loss_module(self.net, self.gru_impl, cfg.input_noise)
        self.pruner = make_pruner(self.net, cfg)
        o = cfg.optimiser
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=o.lr, betas=o.betas, eps=o.eps,
                                          weight_decay=o.weight_decay)
        self.sampler = WindowSampler(self.data.train, cfg.batch_size, cfg.seed, dist.rank)
        self.valid_batches = fixed_windows(self.data.valid, cfg.valid_batches, cfg.batch_size, cfg.seed)
        self.step, self.skipped_in_row = 0, 0
        self.metrics = {"valid_bits": None, "best_valid_bits": None, "elapsed_s": 0.0, "samples_seen": 0}

    def samples_per_step(self) -> int:
        """Training samples one optimizer step consumes, over all processes (batch x window x world)."""
        cfg = self.cfg
        return self.dist.world_size * cfg.batch_size * cfg.window_frames * cfg.features.hop_length

    def restore(self, ckpt: dict) -> None:
        rank, world = self.dist.rank, self.dist.world_size
        self.net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.pruner.load_state_dict(ckpt["pruner"])
        self.step, self.metrics = int(ckpt["step"]), dict(ckpt["metrics"])
        if "samples_seen" not in self.metrics:  # a checkpoint from before the count: assume one batch size throughout
            self.metrics["samples_seen"] = self.step * ckpt["world_size"] * self.samples_per_step() // self.dist.world_size
        if ckpt["world_size"] != world:
            if rank == 0:
                warnings.warn(f"resuming a {ckpt['world_size']}-process run with {world} processes: the window "
                              f"streams differ from the original run's", stacklevel=2)
            return
        set_rng_state(ckpt["ranks"][rank]["rng"])
        then = ckpt["ranks"][rank]["sampler"].get("n_windows")
        if then != self.data.train.n_windows:
            warnings.warn(f"rank {rank}: the training data changed since the checkpoint ({then} windows then, "
                          f"{self.data.train.n_windows} now); the resumed batches differ from the original run's",
                          stacklevel=2)

    def init_from(self, path) -> None:
        """Start this fresh run from the weights of a checkpoint.pt (its model, and its pruning masks) or a model
        file (.safetensors: the exported weights), with this run's fresh optimiser, step 0 and schedule: what a
        long run restarts from when its run folder is lost, or a new run builds on. The source's model config must
        equal this run's (ValueError naming the fields that differ), except that a source without mel_lpc may start
        a run with it (docs/format.md §13: its learned taps are dropped, the mel's taps take over)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--init-from: {path} is not a file (a checkpoint.pt or a .safetensors model file)")
        if path.suffix == ".safetensors":
            model = load_model(path)
            source, state, masks = model.model_config, type(self.net).from_model(model).state_dict(), None
        else:
            ckpt = load_checkpoint(path)
            source, state = TrainConfig.from_dict(ckpt["config"]).model, ckpt["model"]
            masks = ckpt["pruner"]
        a, b = source.to_dict(), self.cfg.model.to_dict()
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        # One change is allowed: a model with learned taps (§11) may start a run whose taps come from the mel (§13);
        # its learned taps are dropped, since under mel_lpc linear.weight is a correction that starts at zero.
        to_mel_lpc = differ == ["mel_lpc"] and not source.mel_lpc and self.cfg.model.mel_lpc
        if differ and not to_mel_lpc:
            raise ValueError(f"--init-from: {path} holds a model whose config differs from this run's in {differ}")
        if to_mel_lpc:
            state = {**state, "linear_weight": torch.zeros_like(state["linear_weight"])}
        self.net.load_state_dict(state)
        if masks is not None:
            self.pruner.load_state_dict(masks)
        self.metrics["init_from"] = str(path)

    def train_step(self, model: nn.Module) -> tuple[float, float, float]:
        """One optimizer step on this step's batch through `model` (the DDP wrapper or the module itself);
        returns (loss in bits, gradient norm before clipping, learning rate)."""
        o = self.cfg.optimiser
        lr = o.lr_at(self.step, self.cfg.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss = model(*batch_inputs(self.sampler.batch(self.step), self.dist.device))
        if not torch.isfinite(loss):
            raise RuntimeError(f"step {self.step}: the loss is {float(loss.detach())}; lower optimiser.lr or check "
                               f"the data (resume from the last checkpoint)")
        loss.backward()
        self.pruner.mask_gradients()
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), o.grad_clip if o.grad_clip > 0 else math.inf)
        if torch.isfinite(norm):
            self.optimizer.step()
            self.skipped_in_row = 0
        else:
            # An overflow in the backward pass (the campaign saw one 25 steps after a pruning update, and the run
            # diverged): stepping on it would write inf/NaN into Adam's moments and from there into every weight.
            # Skip the update, as a loss scaler does; the step still counts, so the data streams stay as they were.
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_in_row += 1
            self.metrics["skipped_steps"] = int(self.metrics.get("skipped_steps") or 0) + 1
            if self.skipped_in_row >= MAX_SKIPPED_IN_ROW:
                raise RuntimeError(f"step {self.step}: the gradient was not finite in {self.skipped_in_row} steps in "
                                   f"a row; lower optimiser.lr or check the data (resume from the last checkpoint)")
            if self.dist.rank == 0:
                warnings.warn(f"step {self.step}: gradient norm {float(norm)}; this step's update was skipped",
                              stacklevel=2)
        self.step += 1
        self.metrics["samples_seen"] = int(self.metrics.get("samples_seen") or 0) + self.samples_per_step()
        if self.pruner.update(self.step) and self.dist.world_size > 1:
            self.pruner.broadcast_masks()
        return float(loss.detach()), float(norm), lr

    def evaluate(self) -> float:
        bits = evaluate(self.module, self.valid_batches, self.dist.device, self.dist.rank, self.dist.world_size)
        best = self.metrics.get("best_valid_bits")
        self.metrics["valid_bits"] = bits
        self.metrics["best_valid_bits"] = bits if best is None else min(best, bits)
        return bits

    def gate_sparsity(self) -> float:
        mask = self.pruner.mask_sparsity()
        gates = [mask[n] for n in RECURRENT_NAMES if n in mask]
        return float(np.mean(gates)) if gates else 0.0

    def checkpoint_state(self) -> dict | None:
        """The checkpoint dict (on rank 0; None elsewhere). Every rank must call it: it gathers their states."""
        cfg, dist, step = self.cfg, self.dist, self.step
        ranks = dist.gather({"rank": dist.rank, "rng": rng_state(), "sampler": self.sampler.state_dict(step),
                             "params_sha256": params_digest(self.net)})
        if dist.rank != 0:
            return None
        if len({r["params_sha256"] for r in ranks}) != 1:
            raise RuntimeError(f"step {step}: the ranks' parameters differ; DistributedDataParallel lost sync")
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": step, "config": cfg.to_dict(),
            "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": cfg.optimiser.schedule, "step": step, "lr": cfg.optimiser.lr_at(step, cfg.steps)},
            "pruner": self.pruner.state_dict(), "world_size": dist.world_size, "ranks": ranks,
            "data": self.data.summary, "metrics": dict(self.metrics),
            "runtime": {"gru_impl": self.gru_impl, "threads": torch.get_num_threads()},
            "versions": {"pywavernn": str(pywavernn.__version__), "torch": str(torch.__version__)},
        }


def train(cfg: TrainConfig | None, data_dir, out_dir, resume: bool = False, cache_dir=None,
          progress: bool = True, max_minutes: float | None = None, init_from=None) -> dict:
    """Train (or resume) a run in out_dir; returns {"step", "valid_bits", "checkpoint", "stopped"}.

    data_dir is one folder or a sequence of folders trained on together. cfg may be None only when resuming (the
    checkpoint's config is used). max_minutes: stop cleanly once this much wall-clock time has passed since the
    call, with a checkpoint of the last finished step ("stopped": "time"), so a later --resume continues the run
    exactly. init_from: a checkpoint.pt or model file whose weights a new run starts from (Trainer.init_from).
    Raises ValueError for bad inputs.
    """
    if init_from is not None and resume:
        raise ValueError("--init-from starts a new run from given weights; --resume continues a run: give one")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes: expected a positive number of minutes, found {max_minutes}")
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    out_dir = Path(out_dir)
    ckpt = None
    if resume:
        if not (out_dir / CHECKPOINT).is_file():
            raise ValueError(f"{out_dir}: --resume given but there is no {CHECKPOINT} to resume from")
        ckpt = load_checkpoint(out_dir / CHECKPOINT)
        cfg = reconcile_config(cfg, TrainConfig.from_dict(ckpt["config"]))
    elif cfg is None:
        raise ValueError("a config is needed to start a run (--config)")
    dist = Dist(cfg.device)
    try:
        ckpt_path = prepare_run_dir(out_dir, ckpt is not None, dist.rank)
        trainer = Trainer(cfg, data_dir, cache_dir, dist)
        if ckpt is not None:
            trainer.restore(ckpt)
        elif init_from is not None:
            trainer.init_from(init_from)
        stopped = _run(trainer, out_dir, ckpt_path, resumed=ckpt is not None, progress=progress, deadline=deadline)
        return {"step": trainer.step, "valid_bits": trainer.metrics["valid_bits"], "checkpoint": str(ckpt_path),
                "stopped": stopped}
    finally:
        dist.close()


def _past(deadline: float | None, dist: Dist) -> bool:
    """Whether the wall-clock deadline has passed, decided by rank 0 for every rank (a collective when
    distributed, so all ranks leave the loop after the same step)."""
    if deadline is None:
        return False
    return dist.mean(float(time.monotonic() >= deadline) if dist.rank == 0 else 0.0) > 0


def _run(trainer: Trainer, out_dir: Path, ckpt_path: Path, resumed: bool, progress: bool,
         deadline: float | None = None) -> str:
    """The loop: steps, then on schedule evaluation, a log row and a checkpoint. Returns "done" when cfg.steps
    are reached, "time" when the deadline stopped it first (after a checkpoint of the last step)."""
    from tqdm import tqdm

    cfg, dist = trainer.cfg, trainer.dist
    model = trainer.module
    if dist.world_size > 1:
        device_ids = [dist.device.index] if dist.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(trainer.module, device_ids=device_ids)
    log = None
    if dist.rank == 0:
        (out_dir / "config.json").write_text(cfg.to_json() + "\n")
        log = CsvLog(out_dir / "log.csv", trainer.step if resumed else None)
    bar = tqdm(total=cfg.steps, initial=trainer.step, unit="step", file=sys.stderr, dynamic_ncols=True,
               disable=not (progress and dist.rank == 0))
    start, elapsed0 = time.monotonic(), float(trainer.metrics.get("elapsed_s") or 0.0)
    losses, norms = [], []
    try:
        while trainer.step < cfg.steps:
            loss, norm, lr = trainer.train_step(model)
            losses.append(loss)
            norms.append(norm)
            bar.update(1)
            step, final = trainer.step, trainer.step == cfg.steps
            do_eval = step % cfg.eval_every == 0 or final
            valid = trainer.evaluate() if do_eval else None
            if step % cfg.log_every == 0 or do_eval:
                train_bits = dist.mean(float(np.mean(losses)))
                row = {"step": step, "elapsed_s": elapsed0 + time.monotonic() - start, "lr": lr,
                       "train_bits": train_bits, "grad_norm": float(np.mean(norms)), "valid_bits": valid,
                       "sparsity_R": trainer.gate_sparsity()}
                losses, norms = [], []
                if log is not None:
                    log.write(row)
                bar.set_postfix(bits=f"{train_bits:.3f}", valid=f"{trainer.metrics['valid_bits'] or math.nan:.3f}")
            out_of_time = not final and _past(deadline, dist)
            if step % cfg.checkpoint_every == 0 or final or out_of_time:
                trainer.metrics["elapsed_s"] = elapsed0 + time.monotonic() - start
                state = trainer.checkpoint_state()
                if state is not None:
                    save_checkpoint(ckpt_path, state)
                state = None
                release_free_memory()
            if out_of_time:
                return "time"
        return "done"
    finally:
        bar.close()
        if log is not None:
            log.close()
