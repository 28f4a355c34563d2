"""Sparse WaveRNN pruning (paper §3): gradual block-magnitude pruning with the Zhu & Gupta schedule.

What it is: `gradual_sparsity` (the schedule z(t) = Z (1 - (1 - (t - t0)/S)^3) for t0 <= t <= t0 + S, 0 before,
Z after), `block_keep_mask` (keep the blocks with the largest mean |w|, drop the rest), and `Pruner`, which owns one
boolean mask per pruned parameter, recomputes the masks every `prune_every` steps while the schedule ramps, and
applies them after every optimizer step (weights) and before it (gradients), so pruned weights stay exactly zero.
What it is not: an optimizer, or the export to block-CSR (training/export.py packs what this leaves at zero).

Matrices pruned (names of docs/format.md §6, with the recurrent matrix split into its gates):
  gru.R_u, gru.R_r, gru.R_e   the u/r/e thirds of R (each H x H), each ranked SEPARATELY, so a gate with large
                              weights cannot take the other gates' share of the kept blocks;
  out.O1 .. out.O4            optionally (prune_outputs), each ranked on its own;
  subscale.proj.weight        a subscale model's context projection (3H x C_x, docs/format.md §9), optionally
                              (`subscale_proj_target`): columns of the twin's fused gru.weight_ih_l0, ranked on
                              its own over all 3H rows. Its torch rows are in gate order r, z, n, a whole-gate
                              permutation of the spec's u, r, e, so BH must divide H: then every block lies in one
                              gate and the pruned blocks are blocks of the exported (spec-order) matrix too.
  fused.O1[p], fused.O2[p]     a fused model's head p (docs/format.md §12; `fused_head_targets`): its rows of the
                              stacked head matrices, optionally (prune_outputs, per_matrix fused.O1 / fused.O2),
                              each head ranked on its own; BH must divide the head's rows (K, 16), so no block
                              straddles two heads.
  subscale.conv{l}.weight[k]  optionally (`subscale_conv_targets`): tap k (0: position p - 2^l, 1: position p) of
                              a subscale model's dilated context layer l, a C_x x C_x matrix (output x input
                              channels) of the 3-D Conv1d weight, each tap ranked on its own. The model file keeps
                              the layer's (C_x, C_x, 2) tensor dense; the engine packs each tap to 16x1 blocks
                              and skips the all-zero ones, so the pruned blocks cost nothing at inference.
torch.nn.GRU stores weight_hh_l0 with its gates in the order r, z, n (z is the update gate u, n the candidate e),
so R_u is rows [H, 2H), R_r rows [0, H) and R_e rows [2H, 3H) of weight_hh_l0; `gate_rows` is that mapping.

Masks only shrink: a block pruned at one update is ranked below every kept block at the next, so the kept set of a
later update is a subset of the earlier one (no regrowth; the sparsity pattern is monotone, as in Zhu & Gupta).
Ties in block magnitude are broken by position (stable sort), so masks are reproducible on every rank and device.

Letters: H hidden units, K output-head hidden units, M x N a matrix, BH x BW the block shape, Z target sparsity,
t the optimizer step, t0 the first pruning step, S the ramp length in steps.

Run its tests: python -m pytest tests/test_pruning.py -q
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

GATES = ("u", "r", "e")
# Row third of torch.nn.GRU's weight_hh_l0 (gate order r, z, n) holding each spec gate (u = z, r = r, e = n).
TORCH_GRU_GATE_INDEX = {"u": 1, "r": 0, "e": 2}
RECURRENT_NAMES = tuple(f"gru.R_{g}" for g in GATES)
OUTPUT_NAMES = ("out.O1", "out.O2", "out.O3", "out.O4")
PRUNABLE_NAMES = RECURRENT_NAMES + OUTPUT_NAMES
# The fused model's (docs/format.md §12) output matrices: the eight heads' layers stacked by rows.
FUSED_OUTPUT_NAMES = ("fused.O1", "fused.O2")
FUSED_HEAD_ROWS = {"fused.O1": None, "fused.O2": 16}  # rows per head: K (out_hidden), 16 (nibble classes)


# ------------------------------------------------------------------------------------------------- schedule

def check_schedule(target: float, t0: int, duration: int, prune_every: int) -> None:
    """ValueError for a schedule that cannot run: Z outside [0, 1), t0 < 0, S <= 0 or prune_every <= 0."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 <= target < 1.0:
        raise ValueError(f"target sparsity: expected a fraction in [0, 1) (1 would prune everything), found {target!r}")
    for name, value, lo in (("t0", t0, 0), ("S (duration)", duration, 1), ("prune_every", prune_every, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"pruning {name}: expected an integer >= {lo}, found {value!r}")


def gradual_sparsity(step: int, target: float, t0: int, duration: int) -> float:
    """Zhu & Gupta: z(t) = Z * (1 - (1 - (t - t0) / S) ** 3) for t0 <= t <= t0 + S; 0 before t0, Z after."""
    if step <= t0:
        return 0.0
    if step >= t0 + duration:
        return float(target)
    return float(target) * (1.0 - (1.0 - (step - t0) / duration) ** 3)


# ---------------------------------------------------------------------------------------------------- masks

def check_block(shape: tuple[int, int], block: tuple[int, int], name: str) -> None:
    bh, bw = block
    if bh < 1 or bw < 1:
        raise ValueError(f"block shape: expected positive [BH, BW], found {list(block)}")
    if shape[0] % bh or shape[1] % bw:
        raise ValueError(
            f"{name}: block {bh}x{bw} does not divide the {shape[0]}x{shape[1]} matrix; choose BH dividing "
            f"{shape[0]} and BW dividing {shape[1]}"
        )


def n_blocks_to_prune(sparsity: float, n_blocks: int) -> int:
    """Blocks dropped at sparsity z: floor(z * n_blocks) (never more than the fraction asked for)."""
    # The epsilon keeps e.g. 0.3 * 10 = 2.9999999999999996 from flooring to 2.
    return min(n_blocks, math.floor(sparsity * n_blocks + 1e-9))


def block_scores(weight: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Mean |w| over each BH x BW block of an M x N matrix: shape (M / BH, N / BW), float32."""
    bh, bw = block
    m, n = weight.shape
    return weight.detach().abs().float().reshape(m // bh, bh, n // bw, bw).mean(dim=(1, 3))


def block_keep_mask(weight: torch.Tensor, block: tuple[int, int], sparsity: float,
                    previous: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean M x N mask keeping all but floor(sparsity * n_blocks) blocks, dropping the smallest mean |w|.

    previous (optional, M x N bool): blocks it already pruned rank below every block it kept, so masks only shrink.
    Ties go to the earlier block in row-major block order (kept first), so the result is deterministic.
    """
    check_block(tuple(weight.shape), block, "matrix")
    bh, bw = block
    scores = block_scores(weight, block)
    if previous is not None:
        alive = block_scores(previous.to(torch.float32), block) > 0  # a block is alive if any entry is kept
        scores = torch.where(alive, scores, torch.full_like(scores, -1.0))
    flat = scores.flatten()
    n_prune = n_blocks_to_prune(sparsity, flat.numel())
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=weight.device)
    if n_prune:
        # Stable descending sort: among equal scores the earlier block comes first and is kept.
        order = torch.sort(flat.cpu(), descending=True, stable=True).indices.to(weight.device)
        keep[order[flat.numel() - n_prune:]] = False
    keep = keep.reshape(scores.shape)
    return keep.repeat_interleave(bh, dim=0).repeat_interleave(bw, dim=1)


# --------------------------------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class PruneTarget:
    """One matrix ranked on its own: rows [row_start, row_stop) and columns [col_start, col_stop) (None: to the
    last) of `param_name` (a 2-D parameter)."""

    name: str  # spec name: gru.R_u, ..., out.O4, subscale.proj.weight, subscale.conv0.weight[0], ...
    param_name: str  # the nn.Module parameter that holds it
    row_start: int
    row_stop: int
    sparsity: float  # final target Z of this matrix
    col_start: int = 0
    col_stop: int | None = None
    tap: int | None = None  # a 3-D (out, in, taps) parameter: the tap whose (out, in) matrix this is

    @property
    def index(self) -> tuple[slice, slice] | tuple[slice, slice, int]:
        """The target's entries of its parameter: param[target.index] (a 2-D view)."""
        rows_cols = slice(self.row_start, self.row_stop), slice(self.col_start, self.col_stop)
        return rows_cols if self.tap is None else (*rows_cols, self.tap)

    @property
    def param_dim(self) -> int:
        """The dimensions of the parameter it lives in: 2, or 3 for a tap of a convolution weight."""
        return 2 if self.tap is None else 3


def gate_rows(gate: str, hidden_size: int) -> tuple[int, int]:
    """Rows of torch.nn.GRU's weight_hh_l0 (gate order r, z, n) that hold spec gate u, r or e."""
    i = TORCH_GRU_GATE_INDEX[gate]
    return i * hidden_size, (i + 1) * hidden_size


def resolve_targets(target: float, prune_outputs: bool, per_matrix: Mapping[str, float] | None,
                    kind: str = "plain") -> dict[str, float]:
    """Final sparsity of each prunable matrix: Z for the gates, Z or 0 for the output layers, then per-matrix
    overrides. The output layers are O1..O4 (kind "plain" or "subscale") or a fused model's fused.O1 and
    fused.O2 (kind "fused", docs/format.md §12).

    per_matrix keys: gru.R (all three gates), gru.R_u / gru.R_r / gru.R_e, and the kind's output layers.
    """
    check_schedule(target, 0, 1, 1)
    outputs = FUSED_OUTPUT_NAMES if kind == "fused" else OUTPUT_NAMES
    out = {name: float(target) for name in RECURRENT_NAMES}
    out.update({name: float(target) if prune_outputs else 0.0 for name in outputs})
    per_matrix = dict(per_matrix or {})
    if "gru.R" in per_matrix:
        value = per_matrix.pop("gru.R")
        per_matrix = {**{n: value for n in RECURRENT_NAMES}, **per_matrix}
    for name, value in per_matrix.items():
        if name not in out:
            what = "" if kind == "plain" else f" of a {kind} model"
            raise ValueError(f"per-matrix sparsity{what}: unknown matrix {name!r}; expected names from "
                             f"{['gru.R', *RECURRENT_NAMES, *outputs]}")
        try:
            check_schedule(value, 0, 1, 1)
        except ValueError as exc:
            raise ValueError(f"per-matrix sparsity of {name}: {exc}") from None
        out[name] = float(value)
    return out


def wavernn_targets(params: Mapping[str, nn.Parameter], hidden_size: int, sparsities: Mapping[str, float],
                    recurrent: str, outputs: Mapping[str, str]) -> list[PruneTarget]:
    """PruneTargets for the matrices with a nonzero target.

    recurrent: the name of the (3H, H) recurrent weight in torch gate order r, z, n (e.g. "gru.weight_hh_l0");
    outputs: spec name (out.O1..) -> parameter name of that Linear weight.
    """
    targets = []
    for name, z in sparsities.items():
        if z <= 0.0:
            continue
        if name in RECURRENT_NAMES:
            start, stop = gate_rows(name[-1], hidden_size)
            targets.append(PruneTarget(name, recurrent, start, stop, z))
        else:
            targets.append(PruneTarget(name, outputs[name], 0, params[outputs[name]].shape[0], z))
    for t in targets:
        if t.param_name not in params:
            raise ValueError(f"{t.name}: the model has no parameter {t.param_name!r}")
    return targets


def fused_head_targets(out_hidden: int, sparsities: Mapping[str, float], block: tuple[int, int],
                       params: Mapping[str, str]) -> list[PruneTarget]:
    """PruneTargets of a fused model's heads (docs/format.md §12): for fused.O1 (8K x P) and fused.O2 (128 x K)
    with a nonzero target, one target per head p = 0..7, its rows [p K, (p + 1) K) resp. [16 p, 16 p + 16),
    named "fused.O1[p]", each ranked on its own; params maps the two names to their parameters. ValueError
    unless BH divides the head's rows (no block may straddle two heads, §12)."""
    targets = []
    for name in FUSED_OUTPUT_NAMES:
        z = float(sparsities.get(name, 0.0))
        if z <= 0.0:
            continue
        check_schedule(z, 0, 1, 1)
        rows = FUSED_HEAD_ROWS[name] or out_hidden
        if rows % block[0]:
            raise ValueError(f"{name}: block {block[0]}x{block[1]} must have BH dividing each head's {rows} rows "
                             f"(no block straddles two heads, docs/format.md §12)")
        targets += [PruneTarget(f"{name}[{p}]", params[name], p * rows, (p + 1) * rows, z) for p in range(8)]
    return targets


def subscale_proj_target(hidden_size: int, columns: slice, sparsity: float, block: tuple[int, int],
                         param_name: str = "gru.weight_ih_l0") -> PruneTarget:
    """The PruneTarget of a subscale model's context projection subscale.proj.weight (3H x C_x): columns
    `columns` (start and stop given) of the fused input weight `param_name`, all 3H rows (torch gate order).
    ValueError unless BH divides H (a block must not straddle two gates, see the module docstring)."""
    check_schedule(sparsity, 0, 1, 1)
    if hidden_size % block[0]:
        raise ValueError(f"subscale.proj.weight: block {block[0]}x{block[1]} must have BH dividing H = {hidden_size} "
                         f"(each block within one gate)")
    return PruneTarget("subscale.proj.weight", param_name, 0, 3 * hidden_size, float(sparsity),
                       int(columns.start), int(columns.stop))


def subscale_conv_targets(channels: int, layers: int, sparsity: float,
                           param_name: str = "ctx_convs.{layer}.weight") -> list[PruneTarget]:
    """The PruneTargets of a subscale model's dilated context layers (docs/format.md §9): both taps of each of the
    `layers` Conv1d weights (C_x, C_x, 2) named by `param_name` (formatted with the layer), each tap a C_x x C_x
    matrix ranked on its own, so the position p - 2^l and position p halves keep their own share of blocks."""
    check_schedule(sparsity, 0, 1, 1)
    return [PruneTarget(f"subscale.conv{layer}.weight[{tap}]", param_name.format(layer=layer), 0, channels,
                        float(sparsity), tap=tap)
            for layer in range(layers) for tap in (0, 1)]


# ---------------------------------------------------------------------------------------------------- pruner

class Pruner:
    """Owns the pruning masks of a model and keeps its pruned weights at exactly zero.

    Use, once per optimizer step (step = optimizer steps completed):
        loss.backward(); pruner.mask_gradients(); optimizer.step(); step += 1; pruner.update(step)
    `update` recomputes the masks when due (every prune_every steps from t0 while the ramp runs, and once at
    t0 + S) and always re-applies them to the weights, so Adam's momentum cannot revive a pruned weight.

    params: name -> parameter (e.g. dict(model.named_parameters())); targets: the matrices to prune.
    """

    def __init__(self, params: Mapping[str, nn.Parameter], targets: Iterable[PruneTarget], t0: int, duration: int,
                 prune_every: int, block: tuple[int, int]):
        self.targets = list(targets)
        for t in self.targets:
            check_schedule(t.sparsity, t0, duration, prune_every)
        self.t0, self.duration, self.prune_every = t0, duration, prune_every
        self.block = (int(block[0]), int(block[1]))
        self.params = {t.param_name: params[t.param_name] for t in self.targets}
        for t in self.targets:
            p = self.params[t.param_name]
            if p.dim() != t.param_dim:
                raise ValueError(f"{t.name}: expected a {t.param_dim}-D weight, found shape {tuple(p.shape)}")
            check_block(tuple(p[t.index].shape), self.block, t.name)
        self.masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.params.items()}
        self.step = 0  # step of the last mask update (0: never updated, all ones)

    # -- schedule
    def sparsity_at(self, step: int) -> dict[str, float]:
        """Scheduled sparsity of each target at this step."""
        return {t.name: gradual_sparsity(step, t.sparsity, self.t0, self.duration) for t in self.targets}

    def is_update_step(self, step: int) -> bool:
        end = self.t0 + self.duration
        return self.t0 < step <= end and ((step - self.t0) % self.prune_every == 0 or step == end)

    # -- masks
    @torch.no_grad()
    def update(self, step: int) -> bool:
        """Recompute the masks if `step` is an update step; apply them either way. True if they were recomputed."""
        due = self.is_update_step(step)
        if due:
            sparsity = self.sparsity_at(step)
            for t in self.targets:
                idx = t.index
                mask = self.masks[t.param_name]
                mask[idx] = block_keep_mask(self.params[t.param_name][idx], self.block, sparsity[t.name],
                                            previous=mask[idx])
            self.step = step
        self.apply()
        return due

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight (in place)."""
        for name, p in self.params.items():
            p.mul_(self.masks[name])

    @torch.no_grad()
    def mask_gradients(self) -> None:
        """Zero the gradients of pruned weights (call between backward() and the optimizer step)."""
        for name, p in self.params.items():
            if p.grad is not None:
                p.grad.mul_(self.masks[name])

    def broadcast_masks(self, src: int = 0) -> None:
        """Make every rank hold rank `src`'s masks (DistributedDataParallel); a no-op outside torch.distributed."""
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return
        for mask in self.masks.values():
            buf = mask.to(torch.uint8)
            dist.broadcast(buf, src)
            mask.copy_(buf.bool())
        self.apply()

    # -- reporting
    def actual_sparsity(self) -> dict[str, float]:
        """Fraction of exactly-zero weights in each target matrix now."""
        out = {}
        for t in self.targets:
            w = self.params[t.param_name].detach()[t.index]
            out[t.name] = 1.0 - int(torch.count_nonzero(w)) / w.numel()
        return out

    def mask_sparsity(self) -> dict[str, float]:
        """Fraction of masked-out entries in each target matrix."""
        out = {}
        for t in self.targets:
            m = self.masks[t.param_name][t.index]
            out[t.name] = 1.0 - int(m.sum()) / m.numel()
        return out

    # -- checkpoints
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "masks": {n: m.detach().cpu().clone() for n, m in self.masks.items()},
            "targets": [(t.name, t.param_name, t.row_start, t.row_stop, t.sparsity)
                        + (() if t.col_start == 0 and t.col_stop is None and t.tap is None
                           else (t.col_start, t.col_stop))
                        + (() if t.tap is None else (t.tap,))
                        for t in self.targets],
            "schedule": {"t0": self.t0, "duration": self.duration, "prune_every": self.prune_every,
                         "block": list(self.block)},
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Take the masks of `state_dict()`. The targets may have changed since (a run resumed with other pruning
        settings, e.g. prune_outputs switched on): a matrix the state has no mask for starts with every block
        kept, and a mask of a matrix no longer pruned is dropped if it keeps every weight, refused if it has
        pruned some (dropping it would let the zeroed weights grow back)."""
        dropped = sorted(n for n, m in state["masks"].items() if n not in self.masks and not bool(m.all()))
        if dropped:
            raise ValueError(f"pruner state: {dropped} already have pruned weights but are no longer pruned by "
                             f"this configuration (pruned: {sorted(self.masks)}); keep pruning them")
        for name, mask in state["masks"].items():
            if name not in self.masks:
                continue
            if tuple(mask.shape) != tuple(self.masks[name].shape):
                raise ValueError(f"pruner state: mask {name} has shape {tuple(mask.shape)}, "
                                 f"expected {tuple(self.masks[name].shape)}")
            self.masks[name].copy_(mask.to(self.masks[name].device, torch.bool))
        self.step = int(state["step"])
        self.apply()
