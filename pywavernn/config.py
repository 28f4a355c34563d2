"""Frozen, serialisable configurations: the feature (log-mel) config and the model config.

Both travel inside every model file (see docs/format.md), so a model can never be fed features it was not
trained on. This module is plain Python: no NumPy arrays, no compiled code (it imports only pywavernn.common).

Dimension letters used across pywavernn: H hidden units (even; H/2 coarse + H/2 fine), C conditioning channels,
K output-head hidden units, BH x BW block shape, B subscale factor, T samples, F frames.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from pywavernn.common import N_CLASSES  # coarse and fine are 8 bits each (defined once, in common)

SUPPORTED_SAMPLE_RATE = 24000
SUBSCALE_PREVIOUS = ("sub_tensor", "time")  # the values of ModelConfig.subscale_previous
SUBSCALE_CONTEXT_ORDER = ("sub_tensor", "lag")  # the values of ModelConfig.subscale_context_order
SUBSCALE_MAX_LINEAR = 64  # the largest ModelConfig.subscale_linear (the C loop keeps the estimates on its stack)
PRIOR = ("none", "laplace")  # the values of ModelConfig.prior (plain model) and subscale_prior (subscale model)
SUBSCALE_PRIOR = PRIOR
FUSED_FACTOR, FUSED_HORIZON = 2, 2  # the Fused Subscale WaveRNN 2x's B and F (docs/format.md §12)
FUSED_PARTS = 8  # its state parts: 2 samples x 4 nibbles
MAX_LINEAR_ORDER = 64  # the largest ModelConfig.linear_order (the C loop keeps the past samples on its stack)


def dataclass_from_dict(cls, data: Any, what: str, convert: dict[str, Any] | None = None):
    """cls(**data) for a frozen config dataclass read from JSON: unknown or missing fields and JSON lists (for
    tuples) handled; `convert` maps a field name to a function applied to its value. ValueError naming `what`."""
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a JSON object, found {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what}: unknown field(s) {unknown}; expected only {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        if convert and key in convert:
            value = convert[key](value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing required field
        raise ValueError(f"{what}: {exc}") from None


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, found {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}: expected an integer {bound}, found {value}")


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel spectrogram parameters. Every parameter is explicit; defaults are the pywavernn standard.

    Frame j is centred on sample j * hop_length (the signal is reflect-padded by n_fft // 2 on both sides),
    so audio of T samples gives 1 + T // hop_length frames, and F frames drive F * hop_length samples.
    Values are log(max(mel_magnitude, log_floor)) with the natural log, shape (F, n_mels).
    """

    sample_rate: int = SUPPORTED_SAMPLE_RATE
    n_fft: int = 2048
    win_length: int = 1200
    hop_length: int = 300
    n_mels: int = 80
    fmin: float = 40.0
    fmax: float = 12000.0
    window: str = "hann"  # periodic Hann (scipy.signal.get_window("hann", win_length, fftbins=True))
    power: float = 1.0  # 1: magnitude, 2: power
    mel_scale: str = "slaney"  # "slaney" or "htk"
    mel_norm: str = "slaney"  # "slaney" (area normalisation) or "none"
    log_floor: float = 1e-5
    center: bool = True
    pad_mode: str = "reflect"

    def __post_init__(self) -> None:
        if self.sample_rate != SUPPORTED_SAMPLE_RATE:
            raise ValueError(
                f"sample_rate: pywavernn models run at {SUPPORTED_SAMPLE_RATE} Hz, found {self.sample_rate}"
            )
        _check_int("n_fft", self.n_fft, 16, 65536)  # bounded: a model file must not make us allocate terabytes
        _check_int("win_length", self.win_length, 1, self.n_fft)
        _check_int("hop_length", self.hop_length, 1, 65536)
        _check_int("n_mels", self.n_mels, 1, self.n_fft // 2 + 1)
        for name in ("fmin", "fmax", "log_floor", "power"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, found {value!r}")
        if not isinstance(self.center, bool):
            raise ValueError(f"center: expected true or false, found {self.center!r}")
        if not (0.0 <= self.fmin < self.fmax <= self.sample_rate / 2):
            raise ValueError(
                f"fmin/fmax: expected 0 <= fmin < fmax <= {self.sample_rate / 2}, found {self.fmin}, {self.fmax}"
            )
        if self.window != "hann":
            raise ValueError(f"window: only 'hann' is supported, found {self.window!r}")
        if self.power not in (1.0, 2.0):
            raise ValueError(f"power: expected 1.0 or 2.0, found {self.power!r}")
        if self.mel_scale not in ("slaney", "htk"):
            raise ValueError(f"mel_scale: expected 'slaney' or 'htk', found {self.mel_scale!r}")
        if self.mel_norm not in ("slaney", "none"):
            raise ValueError(f"mel_norm: expected 'slaney' or 'none', found {self.mel_norm!r}")
        if not (self.log_floor > 0.0):
            raise ValueError(f"log_floor: expected a positive number, found {self.log_floor!r}")
        if self.pad_mode not in ("reflect", "constant"):
            raise ValueError(f"pad_mode: expected 'reflect' or 'constant', found {self.pad_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureConfig":
        return dataclass_from_dict(cls, data, "feature config")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def n_frames(self, n_samples: int) -> int:
        """Frames the analysis gives for n_samples of audio."""
        return 1 + n_samples // self.hop_length if self.center else 1 + (n_samples - self.n_fft) // self.hop_length


@dataclass(frozen=True)
class ModelConfig:
    """The WaveRNN architecture (see docs/format.md for the equations and weight names).

    hidden_size      H, even: the GRU state is [coarse half (H/2), fine half (H/2)].
    out_hidden       K: rows of O1 and O3 (the output heads are O2 relu(O1 y) and O4 relu(O3 y)).
    cond_channels    C: channels of the frame-rate conditioning network.
    cond_kernels     kernel size of each conditioning Conv1d layer (odd; 'same' padding; ReLU after each).
    n_mels           mel bins the model was trained on (must equal the feature config's).
    block_shape      (BH, BW) of the block-sparse matrices; (1, 1) for dense or unstructured.
    subscale_factor  B, a power of two; 1 for the plain WaveRNN (docs/format.md §9 for B > 1).
    subscale_horizon F of the subscale model (>= 1 to run one; pywavernn.fold checks); 0 for the plain WaveRNN.
    subscale_channels C_x: channels of the subscale context network (used only when B > 1).
    subscale_layers  D: its dilated kernel-2 layers, dilations 1, 2, ..., 2**(D-1) (used only when B > 1).
    subscale_previous which earlier sample the GRU input x_t of a subscale sample (i, s) carries (docs/format.md §9):
                     "sub_tensor", its own sub-tensor's (i - 1, s) (the paper's; the default), or "time", the sample
                     just before it in true time, t - 1 = (i, s - 1), for s >= 1 (sub-tensor 0 keeps its own).
    subscale_context_order how the context network's input row of sub-tensor s is ordered (docs/format.md §9):
                     "sub_tensor" (the default), pair z holds sub-tensor z; "lag", pair j holds sub-tensor s - 1 - j,
                     so each embedding column means the same distance in true time for every s.
    subscale_linear  E >= 0 linear estimates of each subscale sample (i, s) from the 16-bit values of the samples
                     its mask lets through at positions i - 1 .. i + F (z <= s at i - 1, z < s from i on), added to
                     the GRU input through their own columns (docs/format.md §9); 0 (the default): none.
    subscale_prior   "laplace": each byte's logits add the log-mass a Laplace distribution centred on the first
                     linear estimate gives its 256 bins, at a scale the output head predicts (docs/format.md §9;
                     needs subscale_linear >= 1); "none" (the default): the logits are the output heads' alone.
    subscale_fused   True: the Fused Subscale WaveRNN 2x (docs/format.md §12): B = 2 and F = 2, no context network,
                     the GRU state split in two halves (one per sub-tensor) of four nibble parts each, so one step
                     emits two 16-bit samples as eight 4-bit draws; False (the default), left out of to_dict().
    preemphasis      a in [0, 1): the network models e[n] = s[n] - a s[n-1], and the samples it generates are
                     de-emphasised, y[n] = e[n] + a y[n-1], before they are returned (docs/format.md §10), so its
                     sampling noise is shaped like speech's spectrum; 0 (the default): none, left out of to_dict().
    linear_order     P in [0, 64]: a learned linear prediction est(t) = sum_p linear.weight[p-1] v(t - p) from the P
                     previous samples' 16-bit values enters the GRU as a 4th input column (docs/format.md §11; plain
                     model only); 0 (the default): none, left out of to_dict().
    prior            "laplace": each byte's logits add the log-mass a Laplace distribution centred on est(t) gives
                     its 256 bins, at a scale the output head predicts (docs/format.md §11; needs linear_order >= 1);
                     "none" (the default): the heads' logits alone, left out of to_dict().
    mel_lpc          True: the taps of the linear prediction vary by frame, float32(A_j + linear.weight), A_j the
                     LPC that frame j's log-mel implies (pywavernn.lpc; docs/format.md §13; needs linear_order >= 1,
                     plain model only); False (the default): linear.weight alone, left out of to_dict().

    The two subscale_ context fields are left out of to_dict() for a plain model at their defaults, and
    subscale_previous, subscale_context_order, subscale_linear and subscale_prior for any model at their defaults,
    so files are written exactly as before they existed, and a file without them loads with the defaults.
    preemphasis, linear_order, prior and mel_lpc are left out at their defaults for the same reason. Options since removed
    (REMOVED_OPTIONS) load at the value that changed nothing and are refused by name at any other (from_dict).
    """

    hidden_size: int = 512
    out_hidden: int = 256
    cond_channels: int = 128
    cond_kernels: tuple[int, ...] = (5, 3)
    n_mels: int = 80
    block_shape: tuple[int, int] = (1, 1)
    subscale_factor: int = 1
    subscale_horizon: int = 0
    subscale_channels: int = 32
    subscale_layers: int = 4
    subscale_previous: str = "sub_tensor"
    subscale_context_order: str = "sub_tensor"
    subscale_linear: int = 0
    subscale_prior: str = "none"
    subscale_fused: bool = False
    preemphasis: float = 0.0
    linear_order: int = 0
    prior: str = "none"
    mel_lpc: bool = False
    n_classes: int = field(default=N_CLASSES)

    def __post_init__(self) -> None:
        _check_int("hidden_size", self.hidden_size, 2)
        if self.hidden_size % 2:
            raise ValueError(f"hidden_size: expected an even number (coarse + fine halves), found {self.hidden_size}")
        _check_int("out_hidden", self.out_hidden, 1)
        _check_int("cond_channels", self.cond_channels, 1)
        _check_int("n_mels", self.n_mels, 1)
        if not isinstance(self.cond_kernels, tuple) or not self.cond_kernels:
            raise ValueError(f"cond_kernels: expected a non-empty list of odd sizes, found {self.cond_kernels!r}")
        for k in self.cond_kernels:
            _check_int("cond_kernels[i]", k, 1)
            if k % 2 == 0:
                raise ValueError(f"cond_kernels: expected odd kernel sizes ('same' padding), found {k}")
        if not isinstance(self.block_shape, tuple) or len(self.block_shape) != 2:
            raise ValueError(f"block_shape: expected [BH, BW], found {self.block_shape!r}")
        for b in self.block_shape:
            _check_int("block_shape[i]", b, 1)
        _check_int("subscale_factor", self.subscale_factor, 1)
        if self.subscale_factor & (self.subscale_factor - 1):
            raise ValueError(f"subscale_factor: expected a power of two (1 for the plain WaveRNN, or 2, 4, 8, ...), "
                             f"found {self.subscale_factor}")
        _check_int("subscale_horizon", self.subscale_horizon, 0)
        _check_int("subscale_channels", self.subscale_channels, 1)
        _check_int("subscale_layers", self.subscale_layers, 0, 16)
        if self.subscale_previous not in SUBSCALE_PREVIOUS:
            raise ValueError(f"subscale_previous: expected one of {', '.join(map(repr, SUBSCALE_PREVIOUS))}, "
                             f"found {self.subscale_previous!r}")
        if self.subscale_context_order not in SUBSCALE_CONTEXT_ORDER:
            raise ValueError(f"subscale_context_order: expected one of "
                             f"{', '.join(map(repr, SUBSCALE_CONTEXT_ORDER))}, found {self.subscale_context_order!r}")
        _check_int("subscale_linear", self.subscale_linear, 0, SUBSCALE_MAX_LINEAR)
        if self.subscale_linear and self.subscale_factor == 1:
            raise ValueError(f"subscale_linear = {self.subscale_linear}: only a subscale model (subscale_factor > 1) "
                             f"has sub-tensors to estimate")
        if self.subscale_prior not in SUBSCALE_PRIOR:
            raise ValueError(f"subscale_prior: expected one of {', '.join(map(repr, SUBSCALE_PRIOR))}, "
                             f"found {self.subscale_prior!r}")
        if self.subscale_prior != "none" and self.subscale_linear < 1:
            raise ValueError(f"subscale_prior = {self.subscale_prior!r}: the prior is centred on the first linear "
                             f"estimate, so it needs subscale_linear >= 1, found {self.subscale_linear}")
        self._check_fused()
        if isinstance(self.preemphasis, bool) or not isinstance(self.preemphasis, (int, float)) \
                or not 0.0 <= self.preemphasis < 1.0:
            raise ValueError(f"preemphasis: expected a coefficient in [0, 1) (0: none), found {self.preemphasis!r}")
        if self.preemphasis and self.subscale_factor > 1 and not self.subscale_fused:
            raise ValueError(f"preemphasis = {self.preemphasis}: implemented for the plain model only "
                             f"(subscale_factor 1), found subscale_factor {self.subscale_factor}")
        self._check_linear_prediction()
        if self.n_classes != N_CLASSES:
            raise ValueError(f"n_classes: expected {N_CLASSES} (8-bit coarse and fine), found {self.n_classes}")

    def _check_fused(self) -> None:
        """The fused model (docs/format.md §12) is one model, not a family: B = 2, F = 2, no context network and none
        of the §9 options; its state splits into 2 x 4 parts of H/8 units."""
        if not isinstance(self.subscale_fused, bool):
            raise ValueError(f"subscale_fused: expected true or false, found {self.subscale_fused!r}")
        if not self.subscale_fused:
            return
        if (self.subscale_factor, self.subscale_horizon) != (FUSED_FACTOR, FUSED_HORIZON):
            raise ValueError(f"subscale_fused: the Fused Subscale WaveRNN is defined for subscale_factor "
                             f"{FUSED_FACTOR} and subscale_horizon {FUSED_HORIZON}, found {self.subscale_factor} and "
                             f"{self.subscale_horizon}")
        if self.hidden_size % FUSED_PARTS:
            raise ValueError(f"hidden_size: the fused model splits its state in {FUSED_PARTS} parts (2 samples x 4 "
                             f"nibbles), so it must be a multiple of {FUSED_PARTS}, found {self.hidden_size}")
        for name in _SUBSCALE_CONTEXT_FIELDS + _SUBSCALE_OPTION_FIELDS:
            if getattr(self, name) != _SUBSCALE_DEFAULTS[name]:
                raise ValueError(f"{name}: the fused model has no context network and none of the subscale options "
                                 f"(docs/format.md §12), found {getattr(self, name)!r} (leave it out)")
        if self.linear_order or self.prior != "none" or self.mel_lpc:
            raise ValueError("linear_order / prior / mel_lpc: implemented for the plain model only, not the fused "
                             "model")

    @property
    def kind(self) -> str:
        """"plain" (B = 1), "subscale" (B > 1, docs/format.md §9) or "fused" (§12): what runs the model."""
        if self.subscale_fused:
            return "fused"
        return "plain" if self.subscale_factor == 1 else "subscale"

    def _check_linear_prediction(self) -> None:
        _check_int("linear_order", self.linear_order, 0, MAX_LINEAR_ORDER)
        if self.linear_order and self.subscale_factor > 1:
            raise ValueError(f"linear_order = {self.linear_order}: implemented for the plain model only "
                             f"(subscale_factor 1; a subscale model has subscale_linear), found subscale_factor "
                             f"{self.subscale_factor}")
        if self.prior not in PRIOR:
            raise ValueError(f"prior: expected one of {', '.join(map(repr, PRIOR))}, found {self.prior!r}")
        if self.prior != "none" and self.linear_order < 1:
            raise ValueError(f"prior = {self.prior!r}: the prior is centred on the linear prediction, so it needs "
                             f"linear_order >= 1, found {self.linear_order}")
        if not isinstance(self.mel_lpc, bool):
            raise ValueError(f"mel_lpc: expected true or false, found {self.mel_lpc!r}")
        if self.mel_lpc and self.linear_order < 1:
            raise ValueError(f"mel_lpc: the taps from the mel are those of the linear prediction, so it needs "
                             f"linear_order >= 1, found {self.linear_order}")

    @property
    def half(self) -> int:
        return self.hidden_size // 2

    @property
    def cond_lookahead(self) -> int:
        """Frames of future mel the conditioning network sees (its one-sided receptive field)."""
        return sum((k - 1) // 2 for k in self.cond_kernels)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cond_kernels"] = list(self.cond_kernels)
        d["block_shape"] = list(self.block_shape)
        omitted = _SUBSCALE_OPTION_FIELDS + (_SUBSCALE_CONTEXT_FIELDS if self.kind != "subscale" else ())
        for name in omitted:
            if d[name] == _SUBSCALE_DEFAULTS[name]:
                del d[name]
        if not d["subscale_fused"]:
            del d["subscale_fused"]  # nor those of any model but the fused one (docs/format.md §12)
        if not d["preemphasis"]:
            del d["preemphasis"]  # files without pre-emphasis are written as before the field existed
        if not d["linear_order"]:
            del d["linear_order"]  # nor those without linear prediction (docs/format.md §11)
        if d["prior"] == "none":
            del d["prior"]
        if not d["mel_lpc"]:
            del d["mel_lpc"]  # nor those whose taps do not vary by frame (docs/format.md §13)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return dataclass_from_dict(cls, _without_removed_options(data), "model config")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# Left out of to_dict() at their defaults, so files from before the fields existed are written unchanged: the
# context network's size for a plain model, the later subscale options for any model.
_SUBSCALE_CONTEXT_FIELDS = ("subscale_channels", "subscale_layers")
_SUBSCALE_OPTION_FIELDS = ("subscale_previous", "subscale_context_order", "subscale_linear", "subscale_prior")
_SUBSCALE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)
                      if f.name in _SUBSCALE_CONTEXT_FIELDS + _SUBSCALE_OPTION_FIELDS}

# Options that lost their experiments and left ModelConfig, the file format, the C loop and the training twin
# (issue 25, item 3). A model file, train config or checkpoint that gives one at its no-op value loads exactly as
# it did (to_dict() left such values out, so only hand-written JSON has them); any other value meant a different
# network, so it is refused by name rather than run as another model. docs/format.md §9 lists them.
@dataclass(frozen=True)
class RemovedOption:
    no_op: Any  # the value at which the option changed nothing: accepted and dropped
    last_commit: str  # the last commit of pywavernn that runs the option
    why: str


REMOVED_OPTIONS = {
    "subscale_residual": RemovedOption(False, "871b8b0", "residual context layers lost their experiment, 0.09 "
                                       "bits/sample behind the plain stack at equal cost (research/experiments.md, "
                                       "'Residual context layers')"),
}


def _without_removed_options(data: Any) -> Any:
    """data without the REMOVED_OPTIONS it gives at their no-op values; ValueError naming any other."""
    if not isinstance(data, dict) or not REMOVED_OPTIONS.keys() & data.keys():
        return data  # dataclass_from_dict reports a non-object
    kept = dict(data)
    for name in sorted(REMOVED_OPTIONS.keys() & data.keys()):
        removed, value = REMOVED_OPTIONS[name], kept.pop(name)
        if not (type(value) is type(removed.no_op) and value == removed.no_op):
            raise ValueError(f"{name} = {json.dumps(value, default=repr)}: this option was removed from pywavernn "
                             f"after commit {removed.last_commit}: {removed.why}; retrain without it, or use "
                             f"pywavernn at commit {removed.last_commit} to run it")
    return kept
