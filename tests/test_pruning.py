"""Tests of training/pruning.py: the Zhu & Gupta schedule, block masks, per-gate ranking, exact zeros.

What it is: the schedule's values; masks for 4x4 / 16x1 / 1x1 blocks with exact kept counts and the
largest-magnitude blocks kept; each gate of R ranked on its own (through torch's r, z, n row order, checked
against the exported file's u, r, e order); pruned weights exactly zero after Adam steps and in the exported
model file; the Pruner's checkpoint state; and the clear errors for impossible settings.
What it is not: a training-loop test (tests/test_training.py).

Run: python -m pytest tests/test_pruning.py -q          (a few seconds on one CPU thread)
Letters: H hidden units, BH x BW block shape, Z target sparsity, t0 / S the start and length of the ramp.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pywavernn.config import FeatureConfig, ModelConfig  # noqa: E402
from pywavernn.modelfile import load_model  # noqa: E402
from training.export import export_model  # noqa: E402
from training.model import OUTPUT_PARAMETERS, RECURRENT_PARAMETER, WaveRNN  # noqa: E402
from training.pruning import (  # noqa: E402
    Pruner, block_keep_mask, block_scores, check_schedule, gradual_sparsity, resolve_targets, subscale_conv_targets,
    wavernn_targets,
)

torch.set_num_threads(1)

H = 16
TINY = ModelConfig(hidden_size=H, out_hidden=16, cond_channels=8, cond_kernels=(3, 1), n_mels=20, block_shape=(4, 4))
TINY_FEATURES = FeatureConfig(n_fft=512, win_length=400, hop_length=100, n_mels=20)


def make_net(seed=0) -> WaveRNN:
    torch.manual_seed(seed)
    return WaveRNN(TINY, TINY_FEATURES)


def make_pruner(net, sparsities, t0=0, duration=4, prune_every=1, block=(4, 4)) -> Pruner:
    params = dict(net.named_parameters())
    targets = wavernn_targets(params, H, sparsities, RECURRENT_PARAMETER, OUTPUT_PARAMETERS)
    return Pruner(params, targets, t0, duration, prune_every, block)


def gate_sparsity_in_file(r: np.ndarray) -> dict:
    """Sparsity of the u, r, e thirds of the file's gru.R (file gate order u, r, e)."""
    return {g: float(np.mean(r[i * H:(i + 1) * H] == 0)) for i, g in enumerate("ure")}


# ------------------------------------------------------------------------------------------------- schedule

def test_schedule_endpoints_and_monotone():
    z, t0, s = 0.9, 100, 400
    assert gradual_sparsity(0, z, t0, s) == 0.0
    assert gradual_sparsity(t0, z, t0, s) == 0.0
    assert gradual_sparsity(t0 + s, z, t0, s) == pytest.approx(z)
    assert gradual_sparsity(t0 + 10 * s, z, t0, s) == z
    assert gradual_sparsity(t0 + s // 2, z, t0, s) == pytest.approx(z * (1 - 0.5 ** 3))
    values = [gradual_sparsity(t, z, t0, s) for t in range(0, t0 + s + 50)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    # Cubic: most of the pruning happens early in the ramp.
    assert gradual_sparsity(t0 + s // 4, z, t0, s) > z / 2


def test_update_steps_follow_prune_every_and_end_of_ramp():
    net = make_net()
    pruner = make_pruner(net, {"gru.R_u": 0.5}, t0=10, duration=25, prune_every=10)
    due = [t for t in range(0, 60) if pruner.is_update_step(t)]
    assert due == [20, 30, 35]  # every 10 steps from t0, and once at t0 + S


@pytest.mark.parametrize("target, t0, duration, every, match", [
    (1.0, 0, 10, 1, "target sparsity"), (1.5, 0, 10, 1, "target sparsity"), (-0.1, 0, 10, 1, "target sparsity"),
    (0.5, 0, 0, 1, "S"), (0.5, 0, -3, 1, "S"), (0.5, -1, 10, 1, "t0"), (0.5, 0, 10, 0, "prune_every"),
])
def test_impossible_schedules_are_value_errors(target, t0, duration, every, match):
    with pytest.raises(ValueError, match=match):
        check_schedule(target, t0, duration, every)


def test_per_matrix_targets():
    z = resolve_targets(0.9, False, {"gru.R_e": 0.5, "out.O2": 0.25})
    assert z == {"gru.R_u": 0.9, "gru.R_r": 0.9, "gru.R_e": 0.5, "out.O1": 0.0, "out.O2": 0.25, "out.O3": 0.0,
                 "out.O4": 0.0}
    assert resolve_targets(0.9, True, {"gru.R": 0.8})["gru.R_r"] == 0.8
    assert resolve_targets(0.9, True, {})["out.O3"] == 0.9
    with pytest.raises(ValueError, match="unknown matrix 'gru.W_in'"):
        resolve_targets(0.5, False, {"gru.W_in": 0.5})
    with pytest.raises(ValueError, match="out.O1"):
        resolve_targets(0.5, False, {"out.O1": 1.0})


# ---------------------------------------------------------------------------------------------- block masks

@pytest.mark.parametrize("block", [(4, 4), (16, 1), (1, 1), (2, 8)])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.95])
def test_block_mask_keeps_exact_count_of_largest_blocks(block, sparsity):
    bh, bw = block
    w = torch.from_numpy(np.random.default_rng(1).standard_normal((32, 48)).astype(np.float32))
    mask = block_keep_mask(w, block, sparsity)
    assert mask.shape == w.shape and mask.dtype == torch.bool
    blocks = mask.reshape(32 // bh, bh, 48 // bw, bw)
    kept = blocks.all(dim=3).all(dim=1)
    assert torch.equal(kept, blocks.any(dim=3).any(dim=1)), "each block is wholly kept or wholly dropped"
    n_blocks = (32 // bh) * (48 // bw)
    assert int(kept.sum()) == n_blocks - int(np.floor(sparsity * n_blocks + 1e-9))
    scores = block_scores(w, block)
    if 0 < int(kept.sum()) < n_blocks:
        assert scores[kept].min() >= scores[~kept].max()


def test_block_mask_ranks_by_mean_magnitude_not_peak():
    w = torch.zeros(1, 4)
    w[0, :2] = torch.tensor([0.9, 0.0])  # block 0: peak 0.9, mean 0.45
    w[0, 2:] = torch.tensor([-0.5, 0.5])  # block 1: peak 0.5, mean 0.5
    assert block_keep_mask(w, (1, 2), 0.5).tolist() == [[False, False, True, True]]


def test_block_that_does_not_divide_is_a_value_error():
    with pytest.raises(ValueError, match="block 5x1 does not divide"):
        block_keep_mask(torch.ones(16, 16), (5, 1), 0.5)
    net = make_net()
    with pytest.raises(ValueError, match="gru.R_u: block 3x1 does not divide"):
        make_pruner(net, {"gru.R_u": 0.5}, block=(3, 1))


def test_masks_only_shrink():
    net = make_net()
    pruner = make_pruner(net, {"gru.R_u": 0.75, "gru.R_r": 0.75, "gru.R_e": 0.75}, t0=0, duration=6)
    previous = pruner.masks[RECURRENT_PARAMETER].clone()
    for step in range(1, 8):
        with torch.no_grad():  # disturb the weights so a fresh ranking alone could revive pruned blocks
            net.gru.weight_hh_l0.add_(torch.randn_like(net.gru.weight_hh_l0))
        pruner.update(step)
        mask = pruner.masks[RECURRENT_PARAMETER]
        assert not (mask & ~previous).any(), f"step {step}: a pruned weight came back"
        previous = mask.clone()
    assert pruner.mask_sparsity() == {"gru.R_u": 0.75, "gru.R_r": 0.75, "gru.R_e": 0.75}


# ------------------------------------------------------------------------------------------- gate separation

def test_each_gate_is_ranked_separately():
    net = make_net()
    with torch.no_grad():  # torch rows [H, 2H) are the update gate u: make it dominate every magnitude
        net.gru.weight_hh_l0[H:2 * H] *= 1000.0
    # Ranked as one matrix, the large gate would take every kept block and the r and e gates none.
    joint = block_keep_mask(net.gru.weight_hh_l0, (4, 4), 0.75)
    assert int(joint[H:2 * H].sum()) == 12 * 16 and not joint[:H].any() and not joint[2 * H:].any()
    pruner = make_pruner(net, resolve_targets(0.75, False, {}))
    pruner.update(pruner.t0 + pruner.duration)
    assert pruner.actual_sparsity() == {"gru.R_u": 0.75, "gru.R_r": 0.75, "gru.R_e": 0.75}


def test_gate_targets_land_on_the_right_rows_of_the_file(tmp_path):
    net = make_net()
    z = resolve_targets(0.5, True, {"gru.R_u": 0.75, "gru.R_r": 0.25, "gru.R_e": 0.5, "out.O2": 0.25})
    pruner = make_pruner(net, z)
    pruner.update(pruner.t0 + pruner.duration)
    path = tmp_path / "pruned.safetensors"
    export_model(net, TINY_FEATURES, path, sparse=(4, 4))
    model = load_model(path)
    assert gate_sparsity_in_file(model.dense("gru.R")) == {"u": 0.75, "r": 0.25, "e": 0.5}
    sparsity = model.sparsity()
    assert sparsity["out.O1"] == 0.5 and sparsity["out.O2"] == 0.25
    assert model.weights["gru.R"].nnz_blocks == (48 // 4) * (16 // 4) * (0.25 + 0.75 + 0.5) / 3


# ------------------------------------------------------------------------------------ exact zeros under Adam

def test_pruned_weights_stay_exactly_zero_through_adam_steps(tmp_path):
    net = make_net()
    pruner = make_pruner(net, resolve_targets(0.5, True, {}), t0=0, duration=4, prune_every=2)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    mel = torch.randn(2, 3, 20)
    audio = torch.randint(-3000, 3000, (2, 300), dtype=torch.int16)
    for step in range(8):
        opt.zero_grad()
        net.nll_bits(mel, audio).backward()
        pruner.mask_gradients()
        for name, p in pruner.params.items():
            assert not p.grad[~pruner.masks[name]].any(), "a pruned weight has a gradient"
        opt.step()
        pruner.update(step + 1)
        for name, p in pruner.params.items():
            assert torch.all(p[~pruner.masks[name]] == 0), f"step {step + 1}: {name} has a nonzero pruned weight"
    assert pruner.actual_sparsity() == dict.fromkeys(pruner.actual_sparsity(), 0.5)
    path = tmp_path / "m.safetensors"
    export_model(net, TINY_FEATURES, path, sparse=(4, 4))
    model = load_model(path)
    assert gate_sparsity_in_file(model.dense("gru.R")) == {"u": 0.5, "r": 0.5, "e": 0.5}
    assert model.sparsity() == dict.fromkeys(model.sparsity(), 0.5)
    for name in ("gru.R", "out.O1", "out.O2", "out.O3", "out.O4"):
        w = model.weights[name]
        assert np.count_nonzero(w.values) == w.nnz  # every stored block is wholly nonzero: pruning was by block


def test_adam_would_revive_pruned_weights_without_the_pruner():
    """The reason `update` re-applies the masks after every step: Adam's momentum moves zeroed weights."""
    net = make_net()
    pruner = make_pruner(net, {"gru.R_u": 0.5}, t0=0, duration=1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    mel, audio = torch.randn(1, 2, 20), torch.randint(-3000, 3000, (1, 200), dtype=torch.int16)
    net.nll_bits(mel, audio).backward()
    opt.step()
    pruner.update(1)
    opt.zero_grad()
    net.nll_bits(mel, audio).backward()
    opt.step()  # no mask_gradients, no update: the first step's momentum still moves pruned weights
    pruned = ~pruner.masks[RECURRENT_PARAMETER]
    assert net.gru.weight_hh_l0[pruned].abs().max() > 0


# ----------------------------------------------------------------------------------------------- checkpoints

def test_state_dict_round_trip():
    net = make_net()
    pruner = make_pruner(net, resolve_targets(0.5, True, {}), t0=0, duration=4, prune_every=2)
    pruner.update(2)
    state = pruner.state_dict()
    fresh_net = make_net(seed=5)
    fresh = make_pruner(fresh_net, resolve_targets(0.5, True, {}), t0=0, duration=4, prune_every=2)
    fresh.load_state_dict(state)
    assert fresh.step == 2
    for name in pruner.masks:
        assert torch.equal(fresh.masks[name], pruner.masks[name])
        assert torch.all(fresh.params[name][~fresh.masks[name]] == 0)  # loading applies the masks
    other = make_pruner(make_net(), {"gru.R_u": 0.5})
    with pytest.raises(ValueError, match=r"\['O1.weight'.*no longer pruned"):
        other.load_state_dict(state)  # the output layers' zeroed weights would grow back


def test_resume_with_more_matrices_pruned_starts_them_unpruned():
    """A run resumed with prune_outputs switched on: the recurrent masks carry over, the output layers start with
    every block kept and are pruned from the next update on; a mask that keeps everything may be dropped."""
    net = make_net()
    pruner = make_pruner(net, resolve_targets(0.5, False, {}), t0=0, duration=4, prune_every=2)
    pruner.update(2)
    state = pruner.state_dict()
    more = make_pruner(make_net(seed=5), resolve_targets(0.5, True, {}), t0=2, duration=4, prune_every=2)
    more.load_state_dict(state)
    assert torch.equal(more.masks[RECURRENT_PARAMETER], pruner.masks[RECURRENT_PARAMETER])
    assert not more.masks[RECURRENT_PARAMETER].all()
    assert all(more.masks[f"O{i}.weight"].all() for i in range(1, 5))
    more.update(4)
    assert not more.masks["O1.weight"].all()
    assert torch.all(more.masks[RECURRENT_PARAMETER] <= pruner.masks[RECURRENT_PARAMETER])  # masks only shrink
    unpruned = make_pruner(make_net(), resolve_targets(0.5, True, {}), t0=0, duration=4, prune_every=2).state_dict()
    fewer = make_pruner(make_net(), {"gru.R_u": 0.5})
    fewer.load_state_dict(unpruned)  # nothing was pruned yet: dropping the output masks loses nothing
    assert set(fewer.masks) == {RECURRENT_PARAMETER}


def test_conv_taps_are_ranked_separately_and_only_their_blocks_change():
    """subscale_conv_targets: each tap of a (C, C, 2) Conv1d weight is its own matrix; a tap whose weights are all
    larger cannot take the other tap's share of kept blocks, and pruning one tap leaves the other's values alone."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(8, 8, 2, bias=False)
    with torch.no_grad():
        conv.weight[:, :, 1] *= 100.0  # tap 1 dominates: ranked together, it would keep every block
    before = conv.weight.detach().clone()
    targets = subscale_conv_targets(8, 1, 0.5, param_name="w{layer}")
    assert [t.name for t in targets] == ["subscale.conv0.weight[0]", "subscale.conv0.weight[1]"]
    pruner = Pruner({"w0": conv.weight}, targets, t0=0, duration=1, prune_every=1, block=(4, 4))
    assert pruner.update(1)
    assert pruner.mask_sparsity() == pruner.actual_sparsity() == {"subscale.conv0.weight[0]": 0.5,
                                                                 "subscale.conv0.weight[1]": 0.5}
    for tap in (0, 1):
        w, w0 = conv.weight.detach()[:, :, tap], before[:, :, tap]
        kept = block_scores(w, (4, 4)) > 0
        assert int(kept.sum()) == 2
        assert torch.equal(block_keep_mask(w0, (4, 4), 0.5), kept.repeat_interleave(4, 0).repeat_interleave(4, 1))
        assert torch.equal(w[w != 0], w0[w != 0])  # kept weights untouched
    assert [t[-1] for t in pruner.state_dict()["targets"]] == [0, 1]
    with pytest.raises(ValueError, match="expected a 3-D weight"):
        Pruner({"w0": torch.nn.Parameter(torch.zeros(8, 8))}, targets[:1], 0, 1, 1, (4, 4))
