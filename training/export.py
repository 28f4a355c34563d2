"""Export a trained PyTorch WaveRNN (training.model, training.subscale_model's SubscaleWaveRNN or
training.fused_model's FusedWaveRNN) to a pywavernn model file (docs/format.md §8, §9 for subscale models, §12 for
the fused model).

What it is: `export_model`, which converts the module's weights to the file's names and gate order, optionally
packs the sparse-capable matrices into block-CSR (pruned blocks must be exactly zero), records provenance and
writes the file through `pywavernn.modelfile.save_model` (validated, atomic).
What it is not: pruning (done during training) or a checkpoint reader.

    from training.export import export_model
    export_model(net, net.feature_config, "model.safetensors", provenance={"data": "LJSpeech"}, sparse=(16, 1))
"""

from __future__ import annotations

import os
from typing import Iterable

import torch

import pywavernn
from pywavernn.config import FeatureConfig
from pywavernn.modelfile import FUSED_SPARSE_CAPABLE, SPARSE_CAPABLE, Model, save_model
from training.fused_model import FusedWaveRNN
from training.model import WaveRNN
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
