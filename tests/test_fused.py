"""Tests of the Fused Subscale WaveRNN 2x definition (docs/format.md §12): pywavernn.fused's bookkeeping, the
config and file fields, and the NumPy reference pywavernn/reference/fused.py (consistency of generation and
teacher forcing, the dependency rule as leak tests, the idle-half rule, bad input).

The C engine's parity with this reference is tests/test_fused_engine.py; the twin's, tests/test_training_fused.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pywavernn import fused
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.modelfile import Model, load_model, save_model
from pywavernn.reference import fused as rf
from pywavernn.testing import random_model

HOP = 20
FEATURES = FeatureConfig(n_mels=12, hop_length=HOP)
CONFIG = ModelConfig(hidden_size=32, out_hidden=16, cond_channels=8, n_mels=12, subscale_factor=2,
                     subscale_horizon=2, subscale_fused=True, block_shape=(4, 4))


def small_model(seed: int = 0, density: float | None = None, **changes) -> Model:
    return random_model(dataclasses.replace(CONFIG, **changes), FEATURES, seed=seed, density=density, scale=0.6)


def mel_of(frames: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((frames, FEATURES.n_mels)).astype(np.float32)


def uniforms_of(n: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).random((n, fused.N_NIBBLES), dtype=np.float32)


# --- bookkeeping ------------------------------------------------------------------------------------------------------

def test_nibbles_split_most_significant_first_and_join_back_for_every_value():
    u = np.arange(65536)
    nibbles = fused.split_nibbles(u)
    assert nibbles.shape == (65536, 4) and nibbles.min() == 0 and nibbles.max() == 15
    assert fused.split_nibbles(0x1234).tolist() == [1, 2, 3, 4]
    assert np.array_equal(fused.join_nibbles(nibbles), u)
    assert fused.SILENCE_NIBBLES.tolist() == [8, 0, 0, 0]
    assert fused.NIBBLE_INPUT[0] == -1 and fused.NIBBLE_INPUT[15] == 1


@pytest.mark.parametrize("n_samples", [2, 3, 7, 10, 41])
def test_schedule_generates_each_sample_once_and_inputs_what_the_previous_step_generated(n_samples):
    made_at = {}
    for step in range(fused.n_steps(n_samples)):
        for s, i in enumerate(fused.step_positions(step, n_samples)):
            if i >= 0:
                assert (i, s) not in made_at
                made_at[(i, s)] = step
        for s, k in enumerate(fused.previous_positions(step, n_samples)):
            if k >= 0:
                assert made_at[(k, s)] == step - 1  # the last sample of that half, made by the previous step
    assert sorted(2 * i + s for i, s in made_at) == list(range(n_samples))  # the padded odd sample never made
    for (i, s), step in made_at.items():
        assert step == i + s * fused.LAG


def test_input_mask_lets_each_part_see_only_its_own_earlier_nibbles():
    h = 64
    mask = fused.input_mask(h)
    assert mask.shape == (3 * h, 14) and mask[:, :8].all()
    for s in range(2):
        for j in range(4):
            rows = fused.part_rows(h, s, j)
            assert rows.size == 3 * h // 8
            for col in range(8, 14):
                half, m = divmod(col - 8, 3)
                assert mask[rows, col].all() == (half == s and m < j)
                assert mask[rows, col].any() == (half == s and m < j)
    all_rows = np.concatenate([fused.part_rows(h, s, j) for s in range(2) for j in range(4)])
    assert np.array_equal(np.sort(all_rows), np.arange(3 * h))  # the parts tile every gate row once


# --- config and file ------------------------------------------------------------------------------------------------

def test_config_names_the_fused_model_and_refuses_what_it_does_not_define():
    assert CONFIG.kind == "fused" and ModelConfig().kind == "plain"
    assert ModelConfig(subscale_factor=4, subscale_horizon=1).kind == "subscale"
    assert CONFIG.to_dict()["subscale_fused"] is True and "subscale_channels" not in CONFIG.to_dict()
    assert "subscale_fused" not in ModelConfig().to_dict()
    assert ModelConfig.from_dict(CONFIG.to_dict()) == CONFIG
    with pytest.raises(ValueError, match="subscale_factor 2 and subscale_horizon 2"):
        dataclasses.replace(CONFIG, subscale_factor=4)
    with pytest.raises(ValueError, match="multiple of 8"):
        dataclasses.replace(CONFIG, hidden_size=36)
    with pytest.raises(ValueError, match="subscale_layers: the fused model has no context network"):
        dataclasses.replace(CONFIG, subscale_layers=2)
    with pytest.raises(ValueError, match="subscale_fused: expected true or false"):
        dataclasses.replace(CONFIG, subscale_fused=1)


@pytest.mark.parametrize("density", [None, 0.5])
def test_a_fused_file_round_trips(tmp_path, density):
    model = small_model(density=density)
    save_model(model, tmp_path / "f.safetensors")
    back = load_model(tmp_path / "f.safetensors")
    assert back.model_config == model.model_config
    for name in model.weights:
        assert np.array_equal(back.dense(name), model.dense(name))
    assert back.is_sparse("fused.O1") == (density is not None)


def test_the_loader_refuses_a_broken_mask_a_missing_head_or_a_wrong_input_count(tmp_path):
    model = small_model()
    leak = dict(model.weights)
    w_in = model.weights["gru.W_in"].copy()
    w_in[fused.part_rows(32, 0, 0)[0], 8] = 0.5  # nibble 0 of half 0 seeing its own nibble 0
    leak["gru.W_in"] = w_in
    with pytest.raises(ValueError, match="gru.W_in: expected zeros where a part of the fused state may not see"):
        Model(model.model_config, model.feature_config, leak).validate()
    missing = {k: v for k, v in model.weights.items() if k != "fused.O2"}
    with pytest.raises(ValueError, match=r"missing \['fused.O2'\]"):
        Model(model.model_config, model.feature_config, missing).validate()
    narrow = dict(model.weights, **{"gru.W_in": model.weights["gru.W_in"][:, :3].copy()})
    with pytest.raises(ValueError, match=r"gru.W_in: expected shape \(96, 14\)"):
        Model(model.model_config, model.feature_config, narrow).validate()
    heads = dict(model.weights, **{"fused.b2": np.zeros(64, np.float32)})  # 4 nibble classes' worth of rows
    with pytest.raises(ValueError, match=r"fused.b2: expected shape \(128,\)"):
        Model(model.model_config, model.feature_config, heads).validate()


def test_block_sparse_heads_need_a_block_height_dividing_each_head():
    with pytest.raises(ValueError, match="fused.O1: a block-sparse head matrix needs a block height dividing"):
        small_model(density=0.5, block_shape=(16, 1), out_hidden=8)  # K = 8: a 16-row block spans two heads


# --- the reference ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("density", [None, 0.5])
def test_teacher_forcing_on_generated_audio_gives_the_generation_logits(density):
    model = small_model(seed=3, density=density)
    mel = mel_of(5)
    samples, trace = rf.generate_fused_ref(model, mel, uniforms_of(5 * HOP), trace=True)
    assert samples.dtype == np.int16 and samples.shape == (5 * HOP,)
    np.testing.assert_array_equal(rf.teacher_forced_logits_fused_ref(model, mel, samples), trace["logits"])
    bits = rf.nll_fused_ref(model, mel, samples)
    assert 0 < bits < 16
    assert np.array_equal(trace["step"][0::2], np.arange(5 * HOP // 2))
    assert np.array_equal(trace["step"][1::2], np.arange(5 * HOP // 2) + 3)


def test_the_draws_follow_the_uniforms_nibble_by_nibble():
    model = small_model(seed=4)
    mel, u = mel_of(3), uniforms_of(3 * HOP)
    samples, trace = rf.generate_fused_ref(model, mel, u, trace=True)
    nibbles = fused.split_nibbles(samples.astype(np.int64) + fused.SILENCE)
    for t in range(0, 3 * HOP, 7):
        for j in range(4):
            assert nibbles[t, j] == rf.sample_nibble_ref(trace["logits"][t, j], u[t, j])
    low = u.copy()
    low[:, 0] = 0.0  # the first class with any mass: the same draws for every other uniform
    assert not np.array_equal(rf.generate_fused_ref(model, mel, low), samples)


def test_an_idle_half_keeps_its_state():
    model = small_model(seed=5)
    _, trace = rf.generate_fused_ref(model, mel_of(2), uniforms_of(2 * HOP), trace=True)
    half = CONFIG.hidden_size // 2
    assert np.all(trace["h"][0, half:] == 0) and np.all(trace["h"][4, half:] == 0)  # steps 0, 2: half 1 idle
    assert np.any(trace["h"][0, :half] != 0)
    # N = HOP positions: (N - 1, 0) is made at step N - 1, (N - 1, 1) at step N + 2, after half 0 idled 3 steps
    assert np.array_equal(trace["h"][2 * (HOP - 1) + 1, :half], trace["h"][2 * (HOP - 1), :half])
    assert not np.array_equal(trace["h"][2 * (HOP - 1) + 1, half:], trace["h"][2 * (HOP - 2) + 1, half:])


def test_odd_lengths_fold_with_a_padded_sample_that_is_never_generated():
    features = FeatureConfig(n_mels=12, hop_length=25)
    model = random_model(CONFIG, features, seed=6, scale=0.6)
    mel = mel_of(3)
    samples, trace = rf.generate_fused_ref(model, mel, uniforms_of(75), trace=True)
    assert samples.shape == (75,)
    np.testing.assert_array_equal(rf.teacher_forced_logits_fused_ref(model, mel, samples), trace["logits"])


def _logits_after_change(model, mel, audio, t, delta):
    changed = audio.copy()
    changed[t] = np.int16(int(changed[t]) + delta if -30000 < int(changed[t]) + delta < 30000 else 0)
    return rf.teacher_forced_logits_fused_ref(model, mel, changed)


def test_no_sample_sees_what_its_step_may_not():
    """§12's dependency rule: (i, 0) sees (k, 0), k < i and (k, 1), k <= i - 4; (i, 1) sees (k, 1), k < i and
    (k, 0), k <= i + 2; nibble j sees nibbles < j of its own sample. Changing anything else never changes its
    logits; changing the nearest allowed sample of the other half does."""
    model = small_model(seed=7)
    mel = mel_of(2)
    audio = rf.generate_fused_ref(model, mel, uniforms_of(2 * HOP))
    base = rf.teacher_forced_logits_fused_ref(model, mel, audio)
    i = 8
    t0, t1 = 2 * i, 2 * i + 1
    # (i, 0) must not see (i - 3, 1) (generated in its own step) nor (i + 1, 0); it sees (i - 4, 1).
    for other in (2 * (i - 3) + 1, 2 * (i + 1)):
        np.testing.assert_array_equal(_logits_after_change(model, mel, audio, other, 4099)[t0], base[t0])
    assert not np.array_equal(_logits_after_change(model, mel, audio, 2 * (i - 4) + 1, 4099)[t0], base[t0])
    # (i, 1) must not see (i + 3, 0) (generated in its own step) nor (i + 1, 1); it sees (i + 2, 0).
    for other in (2 * (i + 3), 2 * (i + 1) + 1):
        np.testing.assert_array_equal(_logits_after_change(model, mel, audio, other, 4099)[t1], base[t1])
    assert not np.array_equal(_logits_after_change(model, mel, audio, 2 * (i + 2), 4099)[t1], base[t1])
    # within a sample: changing nibble m changes nothing of nibbles <= m, and changes nibble m + 1's logits.
    for t in (t0, t1):
        for m, delta in ((0, 4096), (1, 256), (2, 16), (3, 1)):
            after = _logits_after_change(model, mel, audio, t, -delta if int(audio[t]) > 0 else delta)[t]
            np.testing.assert_array_equal(after[:m + 1], base[t][:m + 1])
            if m < 3:
                assert not np.array_equal(after[m + 1], base[t][m + 1])


def test_bad_input_gets_a_clear_error():
    model = small_model()
    mel = mel_of(2)
    with pytest.raises(ValueError, match=r"uniforms: expected shape \(40, 4\)"):
        rf.generate_fused_ref(model, mel, np.zeros((40, 2), np.float32))
    with pytest.raises(ValueError, match="uniforms: expected float32"):
        rf.generate_fused_ref(model, mel, np.zeros((40, 4)))
    with pytest.raises(ValueError, match=r"uniforms: expected values in \[0, 1\)"):
        rf.generate_fused_ref(model, mel, np.ones((40, 4), np.float32))
    with pytest.raises(ValueError, match="this reference implements the Fused Subscale WaveRNN"):
        rf.generate_fused_ref(random_model(ModelConfig(hidden_size=16, out_hidden=8, cond_channels=8, n_mels=12),
                                           FEATURES), mel, uniforms_of(40))
    with pytest.raises(ValueError):
        rf.nll_fused_ref(model, mel, np.zeros(39, np.int16))
