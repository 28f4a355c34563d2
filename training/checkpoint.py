"""Training checkpoints: the file a run writes, what makes resuming exact, and what a resumed run may change.

What it is: `save_checkpoint` (atomic: a crash leaves the old checkpoint or the new one, never a partial one),
`load_checkpoint` (weights_only, so no code in a checkpoint can run; refuses foreign and newer files),
`rng_state` / `set_rng_state` (python, numpy, torch and CUDA generators, so a resumed run draws what the
uninterrupted run would have drawn), `params_digest` (SHA-256 of a model's tensors: equal digests, equal models;
every rank records its own so a checkpoint proves the ranks agreed), `reconcile_config` with RESUMABLE_CHANGES (the
config of a resumed run) and `prepare_run_dir` (the run folder: refuse to overwrite a run or resume nothing, clear
temporaries a kill left).
What it is not: what goes into a checkpoint (training.trainer.Trainer.checkpoint_state gathers it and
Trainer.restore applies it) or the export of one to a model file (training.export.export_checkpoint).

A checkpoint is a dict saved with torch.save: {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step",
"config" (TrainConfig.to_dict), "model", "optimizer", "scheduler", "pruner", "world_size", "ranks" (per rank: rng,
sampler, params_sha256), "data", "metrics", "runtime", "versions"}.

    from training.checkpoint import load_checkpoint
    ckpt = load_checkpoint("runs/x/checkpoint.pt"); ckpt["step"], ckpt["config"]

Tests: tests/test_training.py (atomic write, refusals, kill-and-resume bit-identical, resume with changed config),
tests/test_training_subscale.py and tests/test_training_fused.py (interrupted runs resume bit-identical).
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pywavernn.atomic import atomic_write
from training.config import TrainConfig

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "pywavernn-train-checkpoint"
CHECKPOINT_VERSION = 1
# Config fields a resumed run may change; anything else would make the resumed run a different experiment.
# What a resumed run may change: fields of how it trains, never of the model it trains. A long run in stretches
# may change its learning-rate schedule, its batch (a fork comparing batch sizes from one checkpoint; the in-run
# valid set is then drawn at the new batch size, so compare forks on a fixed list with training.evaluate), its
# input noise, and its pruning schedule (pruning is set for the last part of a run once that part is known).
RESUMABLE_CHANGES = {"steps", "eval_every", "checkpoint_every", "log_every", "device", "comment", "gru_impl",
                     "optimiser", "batch_size", "input_noise", "pruning"}


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


def prepare_run_dir(out_dir: Path, resume: bool, rank: int) -> Path:
    """The checkpoint path of the run in out_dir, after checking that it matches `resume` (ValueError: resuming
    a folder without a checkpoint, or starting over one that has one) and, on rank 0, creating the folder and
    removing the temporaries a kill during save_checkpoint left."""
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
