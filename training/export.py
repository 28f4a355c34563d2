"""Export a trained PyTorch WaveRNN (training.model, training.subscale_model's SubscaleWaveRNN or
training.fused_model's FusedWaveRNN) to a pywavernn model file (docs/format.md §8, §9 for subscale models, §12 for
the fused model).

What it is: `export_model`, which converts the module's weights to the file's names and gate order, optionally
packs the sparse-capable matrices into block-CSR (pruned blocks must be exactly zero), records provenance and
writes the file through `pywavernn.modelfile.save_model` (validated, atomic); and `export_checkpoint`, which does
so for a training checkpoint (`python -m training export`): the matrices its config prunes stored block-sparse,
its step, data, held-out NLL and pruning schedule as provenance.
What it is not: pruning (done during training) or the checkpoint reader (training/checkpoint.py).

    from training.export import export_model
    export_model(net, net.feature_config, "model.safetensors", provenance={"data": "LJSpeech"}, sparse=(16, 1))
    python -m training export RUNDIR/checkpoint.pt -o model.safetensors [--dense] [--note KEY=TEXT]

Tests: tests/test_parity_torch.py and tests/test_pruning.py (export_model); tests/test_training.py,
tests/test_training_subscale.py and tests/test_training_fused.py (checkpoints exported at their trained sparsity,
loaded and vocoded).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Iterable

import torch

import pywavernn
from pywavernn.config import FeatureConfig
from pywavernn.modelfile import FUSED_SPARSE_CAPABLE, SPARSE_CAPABLE, Model, save_model
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.fused_model import FusedWaveRNN
from training.model import WaveRNN
from training.nets import build_net
from training.pruning import FUSED_OUTPUT_NAMES, OUTPUT_NAMES, RECURRENT_NAMES
from training.subscale_model import SubscaleWaveRNN


def export_model(torch_model: WaveRNN | SubscaleWaveRNN | FusedWaveRNN, feature_config: FeatureConfig | None,
                 path: str | os.PathLike, provenance: dict | None = None, sparse: tuple[int, int] | None = None,
                 sparse_names: Iterable[str] | None = None) -> Model:
    """Write `torch_model` to `path`; return the Model written.

    feature_config  the features the model was trained on (None: the module's own feature_config).
    provenance      JSON-serialisable notes (training data, steps, licence); the exporter adds its own versions.
    sparse          None: every matrix dense. (BH, BW): the matrices in `sparse_names` (default: all of gru.R and
                    out.O1..O4, or a fused model's gru.R, fused.O1 and fused.O2) are stored block-sparse with
                    BH x BW blocks, keeping every block with a nonzero entry, and the file's model config records
                    that block shape.
    """
    if not isinstance(torch_model, (WaveRNN, SubscaleWaveRNN, FusedWaveRNN)):
        raise TypeError(f"torch_model: expected a training.model.WaveRNN, training.subscale_model.SubscaleWaveRNN "
                        f"or training.fused_model.FusedWaveRNN, found {type(torch_model).__name__}")
    notes = {"exporter": "training.export", "pywavernn_version": pywavernn.__version__,
             "torch_version": torch.__version__}
    notes.update(provenance or {})
    model = torch_model.to_model(feature_config, notes)
    if sparse is not None:
        if sparse_names is None:
            sparse_names = FUSED_SPARSE_CAPABLE if isinstance(torch_model, FusedWaveRNN) else SPARSE_CAPABLE
        model = model.to_sparse(sparse_names, block=tuple(sparse))
    save_model(model, path)
    return model


def export_checkpoint(ckpt_path, out_path, dense: bool = False, notes: dict | None = None) -> Model:
    """Write a checkpoint's model to a pywavernn model file; returns the pywavernn.modelfile.Model written.

    The pruned matrices (gru.R when any gate is pruned, and each pruned O1..O4, or a fused model's fused.O1 and
    fused.O2) are stored block-sparse with the training block shape unless dense=True; the rest dense. `notes`
    ({key: text}, e.g. the licence terms the training data impose) are stored in the file's provenance under
    "notes", where `pywavernn info` shows them.
    """
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
        "samples_seen": ckpt["metrics"].get("samples_seen"),
        "pruning": {"targets": {**z, **({"subscale.proj.weight": cfg.pruning.subscale_proj,
                                         "subscale.conv*.weight": cfg.pruning.subscale_convs}
                                        if cfg.model.kind == "subscale" else {})},
                    "block": list(cfg.model.block_shape), "t0": cfg.pruning.t0, "S": cfg.pruning.S},
        "config_sha256": hashlib.sha256(json.dumps(ckpt["config"], sort_keys=True).encode()).hexdigest(),
    }}
    if notes:
        provenance["notes"] = dict(notes)
    use_sparse = bool(sparse_names) and not dense
    return export_model(net, cfg.features, out_path, provenance=provenance,
                        sparse=cfg.model.block_shape if use_sparse else None,
                        sparse_names=sparse_names if use_sparse else ())
