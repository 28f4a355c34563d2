"""The network a TrainConfig names, and what depends on its kind: the window history it needs and its pruner.

What it is: NETS (ModelConfig.kind -> class: the plain WaveRNN, SubscaleWaveRNN, FusedWaveRNN), `build_net`,
`history_samples` (how many samples before each window a batch must carry) and `make_pruner` (the Pruner of a net
under the config's pruning section: gru.R's gates and O1..O4 for the plain and subscale models, plus a subscale
model's context projection and convolutions; gru.R's gates and the fused heads, head by head, for the fused one).
What it is not: the models (training/model.py, subscale_model.py, fused_model.py), their losses
(training/losses.py) or the pruning maths (training/pruning.py).

    from training.nets import build_net
    net = build_net(TrainConfig.from_json_file("training/configs/tiny.json"))

Tests: tests/test_training.py, tests/test_training_subscale.py, tests/test_training_fused.py (runs of each kind,
their pruning and their exported files), tests/test_fast_gru.py.
"""

from __future__ import annotations

from training.config import TrainConfig
from training.fused_model import HISTORY as FUSED_HISTORY
from training.fused_model import FusedWaveRNN
from training.model import OUTPUT_PARAMETERS, RECURRENT_PARAMETER, WaveRNN
from training.pruning import Pruner, wavernn_targets
from training.subscale_model import SubscaleWaveRNN

NETS = {"plain": WaveRNN, "subscale": SubscaleWaveRNN, "fused": FusedWaveRNN}  # by ModelConfig.kind


def build_net(cfg: TrainConfig) -> WaveRNN | SubscaleWaveRNN | FusedWaveRNN:
    """The model of cfg by model.kind: WaveRNN, SubscaleWaveRNN or FusedWaveRNN."""
    return NETS[cfg.model.kind](cfg.model, cfg.features)


def history_samples(cfg: TrainConfig) -> int:
    """Samples before each window its batch carries (Batch.prev): the linear prediction's order (§11), the
    fused model's FUSED_HISTORY (§12, training/fused_model.py), else 1 (the previous sample)."""
    return FUSED_HISTORY if cfg.model.kind == "fused" else max(1, cfg.model.linear_order)


def make_pruner(net: WaveRNN | SubscaleWaveRNN | FusedWaveRNN, cfg: TrainConfig) -> Pruner:
    """The Pruner of `net` for cfg.pruning, its masks not yet computed (every one keeps everything)."""
    params = dict(net.named_parameters())
    p = cfg.pruning
    if isinstance(net, FusedWaveRNN):  # gru.R's gates and the heads, head by head (training/fused_model.py)
        targets = net.prune_targets(p.sparsities_for("fused"), cfg.model.block_shape)
        return Pruner(params, targets, p.t0, p.S, p.prune_every, cfg.model.block_shape)
    # the twin's names of the pruned matrices (weight_hh_l0 in torch gate order r, z, n), defined in model.py once
    targets = wavernn_targets(params, cfg.model.hidden_size, cfg.pruning.sparsities, RECURRENT_PARAMETER,
                              OUTPUT_PARAMETERS)
    if p.subscale_proj > 0:
        targets.append(net.proj_prune_target(p.subscale_proj))
    if p.subscale_convs > 0:
        targets += net.conv_prune_targets(p.subscale_convs)
    return Pruner(params, targets, p.t0, p.S, p.prune_every, cfg.model.block_shape)
