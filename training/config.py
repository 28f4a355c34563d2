"""The training configuration: `TrainConfig`, read from JSON, validated, and saved inside every checkpoint.

What it is: frozen dataclasses (OptimConfig, PruningConfig, DataConfig, TrainConfig) holding every knob of a
training run, with `TrainConfig.from_json_file` / `to_dict` and validation that names the field and says what
was expected. The model and feature sections are pywavernn's own ModelConfig and FeatureConfig, so the model
file written at export carries exactly the configs training used.
What it is not: the training loop (training/trainer.py) or the data pipeline (training/data.py).

JSON layout (every section optional except where a field has no default; "comment" is free text):

    {"comment": "...", "seed": 1234, "device": "auto", "gru_impl": "torch"|"scan"|"scan-bf16"|"auto", "input_noise",
     "model": {ModelConfig fields}, "features": {FeatureConfig fields},
     "optimiser": {"lr", "betas", "eps", "weight_decay", "grad_clip", "schedule": "cosine"|"step"|"constant",
                   "warmup_steps", "min_lr", "step_size", "gamma"},
     "batch_size", "window_frames", "steps", "eval_every", "valid_batches", "checkpoint_every", "log_every",
     "pruning": {"target_sparsity", "t0", "S", "prune_every", "block", "prune_outputs", "per_matrix",
                 "subscale_proj", "subscale_convs"},
     "data": {"valid_fraction", "min_peak"}}

A model with subscale_factor B > 1 trains a Subscale WaveRNN (docs/format.md §9; needs subscale_horizon >= 1 and
window_frames * hop a multiple of B); one with subscale_fused the Fused Subscale WaveRNN 2x (§12; windows of an
even number of samples; its output layers for pruning are fused.O1 and fused.O2, pruned head by head). The block
shape lives in one place: pruning.block, which becomes model.block_shape (giving both and making them differ is an
error). Example configs: training/configs/*.json.

Letters: H hidden units, K output-head hidden units, BH x BW block shape, Z target sparsity, W window frames.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pywavernn.config import N_CLASSES, FeatureConfig, ModelConfig
from pywavernn.config import dataclass_from_dict as _from_dict
from pywavernn.fold import check_model_config
from training.pruning import FUSED_OUTPUT_NAMES, RECURRENT_NAMES, check_schedule, resolve_targets

SCHEDULES = ("cosine", "step", "constant")
# How the plain model's recurrence is trained (training/losses.py): torch.nn.GRU, or training.fast_gru's scan
# with a hand-written backward, its products in float32 or bfloat16; "auto": torch on a CUDA device, scan-bf16
# on a CPU with bf16 units (training.fast_gru.has_bf16_units), else scan (training.losses.resolve_gru_impl).
GRU_IMPLS = ("torch", "scan", "scan-bf16", "auto")


def _int(what: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{what}: expected an integer >= {lo}, found {value!r}")


def _num(what: str, value: Any, lo: float, hi: float = math.inf, lo_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bound = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi != math.inf else "")
        raise ValueError(f"{what}: expected a number {bound}, found {value!r}")


@dataclass(frozen=True)
class OptimConfig:
    """Adam, gradient clipping and the learning-rate schedule (linear warmup, then cosine / step / constant)."""

    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    schedule: str = "cosine"
    warmup_steps: int = 1000
    min_lr: float = 1e-5  # cosine: the lr reached at the last step
    step_size: int = 100000  # step: multiply by gamma every step_size steps after warmup
    gamma: float = 0.5

    def __post_init__(self) -> None:
        _num("optimiser.lr", self.lr, 0.0, lo_open=True)
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise ValueError(f"optimiser.betas: expected [beta1, beta2], found {self.betas!r}")
        for i, b in enumerate(self.betas):
            _num(f"optimiser.betas[{i}]", b, 0.0, 1.0)
            if b >= 1.0:
                raise ValueError(f"optimiser.betas[{i}]: expected a number in [0, 1), found {b!r}")
        _num("optimiser.eps", self.eps, 0.0, lo_open=True)
        _num("optimiser.weight_decay", self.weight_decay, 0.0)
        _num("optimiser.grad_clip", self.grad_clip, 0.0)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optimiser.schedule: expected one of {list(SCHEDULES)}, found {self.schedule!r}")
        _int("optimiser.warmup_steps", self.warmup_steps, 0)
        _num("optimiser.min_lr", self.min_lr, 0.0, self.lr)
        _int("optimiser.step_size", self.step_size, 1)
        _num("optimiser.gamma", self.gamma, 0.0, 1.0, lo_open=True)

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate for the optimizer step that follows `step` completed steps."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        after = step - self.warmup_steps
        if self.schedule == "step":
            return self.lr * self.gamma ** (after // self.step_size)
        span = max(1, total_steps - self.warmup_steps)
        progress = min(1.0, after / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class PruningConfig:
    """Gradual block pruning (training/pruning.py). target_sparsity 0 (and no per-matrix targets) trains dense.

    target_sparsity  Z of each recurrent gate (and of O1..O4, or a fused model's heads, when prune_outputs), in
                     [0, 1).
    t0, S            the ramp z(t) = Z (1 - (1 - (t - t0)/S)^3) runs over steps [t0, t0 + S].
    prune_every      steps between mask updates during the ramp.
    block            [BH, BW]; None: the model config's block_shape.
    per_matrix       overrides by name: gru.R (all gates), gru.R_u / gru.R_r / gru.R_e, out.O1 .. out.O4 (a fused
                     model: fused.O1, fused.O2, docs/format.md §12, each pruned head by head).
    subscale_proj    target of a subscale model's context projection subscale.proj.weight (3H x C_x), pruned on
                     the same ramp and block shape; 0 keeps it dense. Its cost per sample rivals a sparse R's
                     (docs/format.md §9), so a sparse subscale model should prune it too.
    subscale_convs   target of each tap (C_x x C_x) of a subscale model's dilated context layers, same ramp and
                     block shape; 0 keeps them dense. 2 D C_x^2 multiply-adds a sample dense: pruning them is how
                     a wider context network keeps the cost of a narrow one (research/experiments.md, RQ3).
    """

    target_sparsity: float = 0.0
    t0: int = 0
    S: int = 1
    prune_every: int = 500
    block: tuple[int, int] | None = None
    prune_outputs: bool = False
    per_matrix: dict = field(default_factory=dict)
    subscale_proj: float = 0.0
    subscale_convs: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.prune_outputs, bool):
            raise ValueError(f"pruning.prune_outputs: expected true or false, found {self.prune_outputs!r}")
        if not isinstance(self.per_matrix, dict):
            raise ValueError(f"pruning.per_matrix: expected an object {{name: sparsity}}, found {self.per_matrix!r}")
        try:
            check_schedule(self.target_sparsity, self.t0, self.S, self.prune_every)
            # names checked against the model kind by TrainConfig (sparsities_for); here only that they exist
            names_kind = "fused" if set(self.per_matrix) & set(FUSED_OUTPUT_NAMES) else "plain"
            resolve_targets(self.target_sparsity, self.prune_outputs, self.per_matrix, names_kind)
            check_schedule(self.subscale_proj, self.t0, self.S, self.prune_every)
            check_schedule(self.subscale_convs, self.t0, self.S, self.prune_every)
        except ValueError as exc:
            raise ValueError(f"pruning: {exc}") from None
        if self.block is not None:
            if not isinstance(self.block, tuple) or len(self.block) != 2:
                raise ValueError(f"pruning.block: expected [BH, BW], found {self.block!r}")
            for b in self.block:
                _int("pruning.block[i]", b, 1)

    @property
    def sparsities(self) -> dict[str, float]:
        """Final target of every prunable matrix of a plain or subscale model (0: not pruned)."""
        return self.sparsities_for("plain")

    def sparsities_for(self, kind: str) -> dict[str, float]:
        """Final target of every prunable matrix of a model of this kind (ModelConfig.kind): a fused model's
        output layers are fused.O1 and fused.O2 (docs/format.md §12), the others' out.O1 .. out.O4."""
        return resolve_targets(self.target_sparsity, self.prune_outputs, self.per_matrix, kind)

    @property
    def enabled(self) -> bool:
        return self.enabled_for("plain")

    def enabled_for(self, kind: str) -> bool:
        return self.subscale_proj > 0 or self.subscale_convs > 0 or \
            any(z > 0 for z in self.sparsities_for(kind).values())

    def __hash__(self) -> int:  # per_matrix is a dict; frozen dataclasses hash their fields
        return hash((self.target_sparsity, self.t0, self.S, self.prune_every, self.block, self.prune_outputs,
                     tuple(sorted(self.per_matrix.items())), self.subscale_proj, self.subscale_convs))


@dataclass(frozen=True)
class DataConfig:
    """valid_fraction: share of files held out for validation when the data has no valid.txt.
    min_peak: files whose peak |sample| is below this (full scale 1) count as silent and are skipped."""

    valid_fraction: float = 0.05
    min_peak: float = 1e-4

    def __post_init__(self) -> None:
        _num("data.valid_fraction", self.valid_fraction, 0.0, 0.5)
        _num("data.min_peak", self.min_peak, 0.0, 1.0)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data folder and the run folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    optimiser: OptimConfig = field(default_factory=OptimConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 32
    window_frames: int = 8  # W: each training window is W frames = W * hop samples
    steps: int = 400000
    eval_every: int = 5000
    valid_batches: int = 16
    checkpoint_every: int = 2000
    log_every: int = 100
    seed: int = 1234
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:N
    gru_impl: str = "torch"  # GRU_IMPLS: torch (nn.GRU), scan (hand-written backward), scan-bf16, auto
    input_noise: float = 0.0  # std (int16 steps) of noise on the teacher-forced s_{t-1} (training.losses)
    comment: str = ""

    def __post_init__(self) -> None:
        for name in ("batch_size", "window_frames", "steps", "eval_every", "valid_batches", "checkpoint_every",
                     "log_every"):
            _int(name, getattr(self, name), 1)
        _int("seed", self.seed, 0)
        if not isinstance(self.device, str) or not (
                self.device in ("auto", "cpu", "cuda") or (self.device.startswith("cuda:")
                                                          and self.device[5:].isdigit())):
            raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', found {self.device!r}")
        _num("input_noise", self.input_noise, 0.0)
        if self.input_noise and self.model.subscale_factor > 1:
            raise ValueError(f"input_noise = {self.input_noise}: implemented for the plain model only")
        if self.gru_impl not in GRU_IMPLS:
            raise ValueError(f"gru_impl: expected one of {list(GRU_IMPLS)}, found {self.gru_impl!r}")
        if self.gru_impl != "torch" and self.model.kind == "subscale":
            raise ValueError(f"gru_impl {self.gru_impl!r}: a subscale model trains through torch.nn.GRU only "
                             f"(gru_impl 'torch')")
        if not isinstance(self.comment, str):
            raise ValueError(f"comment: expected text, found {type(self.comment).__name__}")
        if self.model.n_mels != self.features.n_mels:
            raise ValueError(f"model.n_mels ({self.model.n_mels}) must equal features.n_mels "
                             f"({self.features.n_mels})")
        if self.model.kind == "subscale":
            self._check_subscale()
        else:
            for name, what in (("subscale_proj", "a context projection"), ("subscale_convs", "context layers")):
                if getattr(self.pruning, name) > 0:
                    raise ValueError(f"pruning.{name} = {getattr(self.pruning, name)}: only a subscale model "
                                     f"(model.subscale_factor > 1, not subscale_fused) has {what} to prune")
        if self.model.kind == "fused":
            self._check_fused()
        try:
            self.pruning.sparsities_for(self.model.kind)  # output-layer names of the model's kind
        except ValueError as exc:
            raise ValueError(f"pruning: {exc}") from None
        if self.pruning.block is not None and self.pruning.block != self.model.block_shape:
            raise ValueError(f"pruning.block {list(self.pruning.block)} differs from model.block_shape "
                             f"{list(self.model.block_shape)}; give the block shape in one place")
        if self.pruning.enabled_for(self.model.kind):
            end = self.pruning.t0 + self.pruning.S
            if end > self.steps:
                raise ValueError(f"pruning: the ramp ends at t0 + S = {end}, after the last step ({self.steps}); "
                                 f"the model would never reach its target sparsity")
            self._check_block_divides()

    def _check_subscale(self) -> None:
        """A Subscale WaveRNN (docs/format.md §9) needs F >= 1, and its windows of W * hop samples fold into B
        sub-tensors without padding."""
        try:
            b, _ = check_model_config(self.model)
        except ValueError as exc:
            raise ValueError(f"model.{exc}") from None
        hop = self.features.hop_length
        if (self.window_frames * hop) % b:
            step = b // math.gcd(b, hop)
            raise ValueError(f"window_frames: a subscale model (subscale_factor B = {b}) needs windows of a multiple "
                             f"of B samples, but window_frames * hop = {self.window_frames} * {hop} = "
                             f"{self.window_frames * hop}; choose window_frames a multiple of {step}")

    def _check_fused(self) -> None:
        """A fused model (docs/format.md §12) steps over pairs of samples: windows of an even count of samples."""
        hop = self.features.hop_length
        if (self.window_frames * hop) % 2:
            raise ValueError(f"window_frames: a fused model needs windows of an even number of samples, but "
                             f"window_frames * hop = {self.window_frames} * {hop} = {self.window_frames * hop}; "
                             f"choose an even window_frames")

    def _check_block_divides(self) -> None:
        m = self.model
        bh, bw = m.block_shape
        shapes = {name: (m.hidden_size, m.hidden_size) for name in RECURRENT_NAMES}
        shapes.update({"out.O1": (m.out_hidden, m.half), "out.O3": (m.out_hidden, m.half),
                       "out.O2": (N_CLASSES, m.out_hidden), "out.O4": (N_CLASSES, m.out_hidden)})
        # a fused model's heads are pruned head by head (training.pruning.fused_head_targets): one head's rows
        part = m.hidden_size // 8
        shapes.update({"fused.O1": (m.out_hidden, part), "fused.O2": (16, m.out_hidden)})
        targets = dict(self.pruning.sparsities_for(m.kind))
        if self.pruning.subscale_proj > 0:
            # Blocks never straddle gates: BH must divide H (training.pruning.subscale_proj_target).
            shapes["subscale.proj.weight"] = (m.hidden_size, m.subscale_channels)
            targets["subscale.proj.weight"] = self.pruning.subscale_proj
        if self.pruning.subscale_convs > 0:
            shapes["subscale.conv*.weight"] = (m.subscale_channels, m.subscale_channels)
            targets["subscale.conv*.weight"] = self.pruning.subscale_convs
        for name, z in targets.items():
            rows, cols = shapes[name]
            if z > 0 and (rows % bh or cols % bw):
                raise ValueError(
                    f"pruning: block {bh}x{bw} does not divide {name} ({rows}x{cols}); choose BH dividing "
                    f"{rows} and BW dividing {cols}"
                )

    # -- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        pruning = dataclasses.asdict(self.pruning)
        pruning["block"] = list(self.model.block_shape)
        return {
            "comment": self.comment, "seed": self.seed, "device": self.device, "gru_impl": self.gru_impl,
            "input_noise": self.input_noise,
            "model": self.model.to_dict(), "features": self.features.to_dict(),
            "optimiser": {**dataclasses.asdict(self.optimiser), "betas": list(self.optimiser.betas)},
            "pruning": pruning, "data": dataclasses.asdict(self.data),
            **{k: getattr(self, k) for k in ("batch_size", "window_frames", "steps", "eval_every", "valid_batches",
                                             "checkpoint_every", "log_every")},
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        if not isinstance(data, dict):
            raise ValueError(f"train config: expected a JSON object, found {type(data).__name__}")
        data = dict(data)
        model_raw = data.get("model", {})
        model = ModelConfig.from_dict(model_raw)
        pruning = _from_dict(PruningConfig, data.pop("pruning", {}), "pruning",
                             convert={"per_matrix": lambda v: v})
        if pruning.block is None:
            pruning = dataclasses.replace(pruning, block=model.block_shape)
        elif isinstance(model_raw, dict) and "block_shape" in model_raw and tuple(model_raw["block_shape"]) \
                != pruning.block:
            raise ValueError(f"pruning.block {list(pruning.block)} differs from model.block_shape "
                             f"{list(model_raw['block_shape'])}; give the block shape in one place")
        data["model"] = dataclasses.replace(model, block_shape=pruning.block)
        data["features"] = FeatureConfig.from_dict(data.get("features", {}))
        data["optimiser"] = _from_dict(OptimConfig, data.get("optimiser", {}), "optimiser")
        data["data"] = _from_dict(DataConfig, data.get("data", {}), "data")
        data["pruning"] = pruning
        return _from_dict(cls, data, "train config", convert={k: (lambda v: v) for k in
                                                              ("model", "features", "optimiser", "data", "pruning")})

    @classmethod
    def from_json(cls, text: str, source: str = "train config") -> TrainConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the config ({exc.strerror})") from None
        return cls.from_json(text, str(path))
