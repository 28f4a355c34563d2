"""The process's place in a run: rank, world size and device, and the few collectives the trainer needs.

What it is: `Dist`, built once per run from the environment torchrun sets (WORLD_SIZE, RANK, LOCAL_RANK) and the
config's device ("auto": CUDA where available, else CPU; "cuda" picks the GPU of the local rank, "cuda:N" that
one); with WORLD_SIZE > 1 it initialises torch.distributed (gloo on CPU, nccl on CUDA) and tears it down in
`close`. `gather` (every rank's object, e.g. the RNG and parameter digest for a checkpoint) and `mean` (a number
averaged over ranks) are the identity in a one-process run.
What it is not: the data parallelism itself (PyTorch's DistributedDataParallel wraps the loss module in
training.trainer) or the data sharding (training/data.py splits the files by rank).

    torchrun --nproc_per_node 2 -m training train --config CFG.json --data DIR --out RUNDIR --threads 1

Tests: tests/test_training.py (a 2-process torchrun run whose ranks stay in sync).
"""

from __future__ import annotations

import os

import torch


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
