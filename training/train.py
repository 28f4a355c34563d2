"""The training loop, its checkpoints and the export of a checkpoint to a model file.

What it is: `train` (Adam, gradient clipping, the learning-rate schedule, Sparse WaveRNN pruning on schedule,
held-out NLL in bits per 16-bit sample every eval_every steps, a CSV log and a tqdm bar, atomic checkpoints that
resume to the identical state), `export_checkpoint`, and the command line behind `python -m training`:

    python -m training train --config CFG.json --data DIR [DIR ...] --out RUNDIR [--resume] [--cache-dir DIR]
                             [--threads N] [--max-minutes M]
    torchrun --nproc_per_node 2 -m training train --config CFG.json --data DIR --out RUNDIR --threads 1
    python -m training export RUNDIR/checkpoint.pt -o model.safetensors [--dense]

Several --data folders train together (each split by its own lists). --max-minutes stops the run cleanly after
M minutes of wall-clock time with a checkpoint of the last step, so a long run goes on in stretches (--resume).
On a CPU the fastest set-up is one rank per core with one thread each (torchrun) and the config's gru_impl
"auto" (training/losses.py: the hand-written-backward GRU, with bf16 products where the CPU has bf16 units);
`python -m benchmarks.bench_training` measures it against torch.nn.GRU. The process keeps freed memory
(keep_freed_memory) so that the large per-step tensors are not page-faulted in again every step.

What it is not: the model (training/model.py), the losses (training/losses.py), the data pipeline
(training/data.py) or the pruning maths (training/pruning.py). Runs on CPU and CUDA (device "auto"); torchrun gives DistributedDataParallel (gloo on CPU,
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
"scan" / "scan-bf16" / "auto" training.fast_gru's.

Letters: N batch, W window frames, T = W * hop samples per window, C conditioning channels, H hidden units,
B subscale factor, P = T / B positions.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import pywavernn
from pywavernn._atomic import atomic_write
from pywavernn.modelfile import load_model
from training.config import TrainConfig
from training.data import Batch, WindowSampler, build_datasets, default_cache_dir, fixed_windows
from training.fused_model import HISTORY as FUSED_HISTORY
from training.fused_model import FusedWaveRNN
from training.losses import (FusedWindowedNLL, SubscaleWindowedNLL, WindowedNLL, loss_module,  # noqa: F401
                             resolve_gru_impl)
from training.model import OUTPUT_PARAMETERS, RECURRENT_PARAMETER, WaveRNN
from training.pruning import FUSED_OUTPUT_NAMES, OUTPUT_NAMES, RECURRENT_NAMES, Pruner, wavernn_targets
from training.subscale_model import SubscaleWaveRNN

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "pywavernn-train-checkpoint"
CHECKPOINT_VERSION = 1
LOG_COLUMNS = ["step", "elapsed_s", "lr", "train_bits", "grad_norm", "valid_bits", "sparsity_R"]
# Config fields a resumed run may change; anything else would make the resumed run a different experiment.
# What a resumed run may change: fields of how it trains, never of the model it trains. A long run in stretches
# may change its learning-rate schedule, its batch (a fork comparing batch sizes from one checkpoint; the in-run
# valid set is then drawn at the new batch size, so compare forks on a fixed list with training.evaluate), its
# input noise, and its pruning schedule (pruning is set for the last part of a run once that part is known).
RESUMABLE_CHANGES = {"steps", "eval_every", "checkpoint_every", "log_every", "device", "comment", "gru_impl",
                     "optimiser", "batch_size", "input_noise", "pruning"}
# Where training/model.py (and training/subscale_model.py, under the same names) keeps the matrices that are
# pruned (weight_hh_l0 in torch gate order r, z, n): the twin's names, defined there once.
RECURRENT_PARAM, OUTPUT_PARAMS = RECURRENT_PARAMETER, OUTPUT_PARAMETERS


def is_subscale(cfg: TrainConfig) -> bool:
    """A Subscale WaveRNN with its context network (§9), not the fused model (§12)."""
    return cfg.model.kind == "subscale"


NETS = {"plain": WaveRNN, "subscale": SubscaleWaveRNN, "fused": FusedWaveRNN}  # by ModelConfig.kind


def build_net(cfg: TrainConfig) -> WaveRNN | SubscaleWaveRNN | FusedWaveRNN:
    """The model of cfg by model.kind: WaveRNN, SubscaleWaveRNN or FusedWaveRNN."""
    return NETS[cfg.model.kind](cfg.model, cfg.features)


def history_samples(cfg: TrainConfig) -> int:
    """Samples before each window its batch carries (Batch.prev): the linear prediction's order (§11), the
    fused model's FUSED_HISTORY (§12, training/fused_model.py), else 1 (the previous sample)."""
    return FUSED_HISTORY if cfg.model.kind == "fused" else max(1, cfg.model.linear_order)


def batch_inputs(batch: Batch, device: torch.device) -> tuple:
    """A data.Batch as WindowedNLL's arguments on `device`."""
    return (torch.from_numpy(batch.mel).to(device), batch.crop.tolist(), batch.length.tolist(),
            torch.from_numpy(batch.audio).to(device), torch.from_numpy(batch.prev).to(device))


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


# ------------------------------------------------------------------------------------------------- pruning

def make_pruner(net: WaveRNN | SubscaleWaveRNN | FusedWaveRNN, cfg: TrainConfig) -> Pruner:
    params = dict(net.named_parameters())
    p = cfg.pruning
    if isinstance(net, FusedWaveRNN):  # gru.R's gates and the heads, head by head (training/fused_model.py)
        targets = net.prune_targets(p.sparsities_for("fused"), cfg.model.block_shape)
        return Pruner(params, targets, p.t0, p.S, p.prune_every, cfg.model.block_shape)
    targets = wavernn_targets(params, cfg.model.hidden_size, cfg.pruning.sparsities, RECURRENT_PARAM, OUTPUT_PARAMS)
    if p.subscale_proj > 0:
        targets.append(net.proj_prune_target(p.subscale_proj))
    if p.subscale_convs > 0:
        targets += net.conv_prune_targets(p.subscale_convs)
    return Pruner(params, targets, p.t0, p.S, p.prune_every, cfg.model.block_shape)


# --------------------------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through pywavernn's atomic_write (temporary file in the same folder, fsync, os.replace): a crash
    leaves the old checkpoint or the new one, never a partial one."""
    path = Path(path)
    with atomic_write(path) as fh:
        torch.save(state, fh)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load_checkpoint(path) -> dict:
    """A checkpoint written by `train` (loaded with weights_only=True: no code in it can run); ValueError else."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, foreign pickle, ...
        raise ValueError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a pywavernn training checkpoint (no format {CHECKPOINT_FORMAT!r})")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {state['version']} is newer than this code "
                         f"({CHECKPOINT_VERSION}); upgrade pywavernn")
    return state


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": {"name": name, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "cached": cached},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def params_digest(net: nn.Module) -> str:
    """SHA-256 of every parameter and buffer's bytes, in state_dict order: equal digests, equal models."""
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def reconcile_config(given: TrainConfig | None, saved: TrainConfig) -> TrainConfig:
    """The config of a resumed run: the saved one, with the fields RESUMABLE_CHANGES may change taken from
    `given`; ValueError if `given` changes anything else."""
    if given is None:
        return saved
    a, b = saved.to_dict(), given.to_dict()
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    refused = [k for k in changed if k not in RESUMABLE_CHANGES]
    if refused:
        raise ValueError(f"--config differs from the checkpoint's config in {refused}; a resumed run may only "
                         f"change {sorted(RESUMABLE_CHANGES)} (omit --config to resume as saved)")
    return given


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


# ------------------------------------------------------------------------------------------ the process

def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process instead of returning it to the kernel.

    A training step allocates and frees the same few hundred MB of large tensors every step; by default glibc
    serves each from a fresh mmap and unmaps it on free, so every step pays page faults and the kernel's zeroing
    of those pages (measured: a third of the fast GRU loop's time). With mmap off (M_MMAP_MAX = 0) and the trim
    threshold at its maximum the freed blocks are reused. Returns False where this is not glibc (no change).
    The price is fragmentation: blocks of other sizes (validation batches, checkpoints) leave free holes that
    the heap keeps, and a campaign run grew to 7 GB and was killed by the kernel's OOM killer beside other work;
    release_free_memory(), called at every checkpoint, hands those holes back.
    """
    libc = _libc()
    if libc is None:
        return False
    try:
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2 ** 31 - 1))
    except AttributeError:  # musl and others have no mallopt
        return False


def release_free_memory() -> bool:
    """glibc's malloc_trim(0): return every whole free page of the heap to the kernel (not only its top), so
    the free holes that keep_freed_memory's heap accumulates do not add up; the next steps fault in what they
    reuse, a few milliseconds every checkpoint. Returns whether anything was released (False off glibc)."""
    libc = _libc()
    try:
        return bool(libc.malloc_trim(0)) if libc is not None else False
    except AttributeError:
        return False


def _libc():
    import ctypes
    import ctypes.util

    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


# ------------------------------------------------------------------------------------------ distributed setup

class Dist:
    """rank / world size / device of this process; torch.distributed is initialised when WORLD_SIZE > 1."""

    def __init__(self, device: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ValueError(f"device {device!r}: CUDA is not available (use 'cpu' or 'auto')")
            index = local_rank if device == "cuda" else int(device[5:])
            self.device = torch.device("cuda", index)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1:
            import torch.distributed as dist
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    def gather(self, obj) -> list:
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def mean(self, value: float) -> float:
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t) / self.world_size

    def close(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            # every rank reaches teardown before any destroys its gloo pairs: a rank that tore down while its peer
            # was still in a collective aborted with "terminate called without an active exception" (seen once
            # in CI, 2-process test)
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


# ------------------------------------------------------------------------------------------------- training

def _prepare_run_dir(out_dir: Path, resume: bool, rank: int) -> Path:
    ckpt_path = out_dir / CHECKPOINT
    if resume and not ckpt_path.is_file():
        raise ValueError(f"{out_dir}: --resume given but there is no {CHECKPOINT} to resume from")
    if not resume and ckpt_path.exists():
        raise ValueError(f"{out_dir}: already holds a run ({CHECKPOINT}); pass --resume or choose a new --out")
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(f".{CHECKPOINT}.*.tmp"):  # left by a kill during a write
            stale.unlink(missing_ok=True)
    return ckpt_path


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
        self.gru_impl = resolve_gru_impl(cfg.gru_impl)  # what this machine runs ("auto" resolved)
        self.module = loss_module(self.net, self.gru_impl, cfg.input_noise)
        self.pruner = make_pruner(self.net, cfg)
        o = cfg.optimiser
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=o.lr, betas=o.betas, eps=o.eps,
                                          weight_decay=o.weight_decay)
        self.sampler = WindowSampler(self.data.train, cfg.batch_size, cfg.seed, dist.rank)
        self.valid_batches = fixed_windows(self.data.valid, cfg.valid_batches, cfg.batch_size, cfg.seed)
        self.step = 0
        self.metrics = {"valid_bits": None, "best_valid_bits": None, "elapsed_s": 0.0}

    def restore(self, ckpt: dict) -> None:
        rank, world = self.dist.rank, self.dist.world_size
        self.net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.pruner.load_state_dict(ckpt["pruner"])
        self.step, self.metrics = int(ckpt["step"]), dict(ckpt["metrics"])
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
        equal this run's (ValueError naming the fields that differ)."""
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
        if differ:
            raise ValueError(f"--init-from: {path} holds a model whose config differs from this run's in {differ}")
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
        self.optimizer.step()
        self.step += 1
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
        ckpt_path = _prepare_run_dir(out_dir, ckpt is not None, dist.rank)
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


# --------------------------------------------------------------------------------------------------- export

def export_checkpoint(ckpt_path, out_path, dense: bool = False, notes: dict | None = None):
    """Write a checkpoint's model to a pywavernn model file; returns the pywavernn.modelfile.Model written.

    The pruned matrices (gru.R when any gate is pruned, and each pruned O1..O4, or a fused model's fused.O1 and
    fused.O2) are stored block-sparse with the
    training block shape unless dense=True; the rest dense. `notes` ({key: text}, e.g. the licence terms the
    training data impose) are stored in the file's provenance under "notes", where `pywavernn info` shows them.
    """
    from training.export import export_model

    ckpt = load_checkpoint(ckpt_path)
    cfg = TrainConfig.from_dict(ckpt["config"])
    net = build_net(cfg)
    net.load_state_dict(ckpt["model"])
    z = cfg.pruning.sparsities_for(cfg.model.kind)
    outputs = FUSED_OUTPUT_NAMES if cfg.model.kind == "fused" else OUTPUT_NAMES
    sparse_names = (["gru.R"] if any(z[n] > 0 for n in RECURRENT_NAMES) else []) + \
        [n for n in outputs if z[n] > 0] + (["subscale.proj.weight"] if cfg.pruning.subscale_proj > 0 else [])
    step, end = int(ckpt["step"]), cfg.pruning.t0 + cfg.pruning.S
    if sparse_names and step < end:
        warnings.warn(f"{ckpt_path}: step {step} is before the end of the pruning ramp ({end}); the model is "
                      f"less sparse than its target", stacklevel=2)
    provenance = {"training": {
        "step": step, "data": ckpt["data"], "valid_bits": ckpt["metrics"].get("valid_bits"),
        "pruning": {"targets": {**z, **({"subscale.proj.weight": cfg.pruning.subscale_proj,
                                         "subscale.conv*.weight": cfg.pruning.subscale_convs}
                                        if is_subscale(cfg) else {})},
                    "block": list(cfg.model.block_shape), "t0": cfg.pruning.t0, "S": cfg.pruning.S},
        "config_sha256": hashlib.sha256(json.dumps(ckpt["config"], sort_keys=True).encode()).hexdigest(),
    }}
    if notes:
        provenance["notes"] = dict(notes)
    use_sparse = bool(sparse_names) and not dense
    return export_model(net, cfg.features, out_path, provenance=provenance,
                        sparse=cfg.model.block_shape if use_sparse else None,
                        sparse_names=sparse_names if use_sparse else ())


# ------------------------------------------------------------------------------------------ command line

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
