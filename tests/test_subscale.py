"""Tests of the subscale bookkeeping (pywavernn/fold.py), the NumPy subscale reference's leak-freedom, and the
subscale additions to the config and the model file.

What it is: hypothesis properties that unfold(fold(x)) == x for any length, that the step schedule generates every
sample exactly once and only after everything it may depend on, that the lag F + 1 is the smallest that works, that
changing a sample a logit may not see never changes that logit (NumPy reference, exact), and one test per bad input.
What it is not: the PyTorch parity tests (tests/test_subscale_parity.py).

Run: python -m pytest tests/test_subscale.py -q
Letters: B subscale factor, F future horizon, T samples, N = ceil(T / B) positions, H hidden units.
"""

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from pywavernn import modelfile as fmt
from pywavernn.reference import subscale as rs
from pywavernn.reference.prior import prior_term_ref
from pywavernn import fold
from pywavernn.config import REMOVED_OPTIONS, FeatureConfig, ModelConfig
from pywavernn.testing import random_model

FACTORS = [1, 2, 4, 8, 16]
SMALL = ModelConfig(hidden_size=16, out_hidden=16, cond_channels=8, cond_kernels=(3,), n_mels=8,
                    subscale_factor=4, subscale_horizon=1, subscale_channels=8, subscale_layers=2)
SMALL_FEATURES = FeatureConfig(n_mels=8, hop_length=25)


# --- folding ------------------------------------------------------------------------------------------------------

@given(factor=st.sampled_from(FACTORS), extra=st.integers(0, 200), seed=st.integers(0, 2**31 - 1))
def test_unfold_inverts_fold_for_any_length(factor, extra, seed):
    x = np.random.default_rng(seed).integers(-32768, 32768, factor + extra).astype(np.int16)
    folded = fold.fold(x, factor)
    assert folded.shape == (fold.n_positions(x.size, factor), factor) and folded.dtype == np.int16
    np.testing.assert_array_equal(fold.unfold(folded, x.size), x)
    t = np.arange(x.size)
    np.testing.assert_array_equal(folded[t // factor, t % factor], x)  # sample i * B + s -> [i, s]
    assert np.all(folded.reshape(-1)[x.size:] == 0)  # the padding


def test_fold_keeps_trailing_axes():
    x = np.arange(22 * 2).reshape(22, 2)
    np.testing.assert_array_equal(fold.unfold(fold.fold(x, 8, pad_value=-1), 22), x)
    assert fold.fold(x, 8, pad_value=-1)[-1, -1, 0] == -1


@pytest.mark.parametrize("call, match", [
    (lambda: fold.fold(np.zeros(32), 3), "power of two"),
    (lambda: fold.fold(np.zeros(32), 0), "power of two"),
    (lambda: fold.fold(np.zeros(7), 8), "shorter|larger"),
    (lambda: fold.unfold(np.zeros((4, 8)), 40), "positions"),
    (lambda: fold.schedule(100, 4, 0), "horizon"),
    (lambda: fold.schedule(3, 4, 1), "one fold"),
    (lambda: ModelConfig(subscale_factor=6, subscale_horizon=1), "power of two"),
    (lambda: fold.check_model_config(ModelConfig(subscale_factor=4, subscale_horizon=0)), "horizon"),
    (lambda: fold.check_model_config(ModelConfig()), "B >= 2"),
    (lambda: ModelConfig(subscale_factor=4, subscale_horizon=1, subscale_previous="next"),
     "subscale_previous: expected one of 'sub_tensor', 'time', found 'next'"),
    (lambda: ModelConfig(subscale_factor=4, subscale_horizon=1, subscale_context_order="time"),
     "subscale_context_order: expected one of 'sub_tensor', 'lag', found 'time'"),
    (lambda: fold.context_input_order(1, 4, "reversed"), "order: expected 'sub_tensor' or 'lag'"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- the schedule ---------------------------------------------------------------------------------------------------

schedules = st.tuples(st.sampled_from([2, 4, 8, 16]), st.integers(1, 4), st.integers(0, 120))


@settings(max_examples=40)
@given(case=schedules)
def test_schedule_generates_every_sample_once_after_all_its_dependencies(case):
    factor, horizon, extra = case
    n_samples = factor + extra
    sched = fold.schedule(n_samples, factor, horizon)
    n = fold.n_positions(n_samples, factor)
    assert sched.shape == (fold.n_steps(n_samples, factor, horizon), factor)
    step = np.full((n, factor), -1)
    for n_step, s in zip(*np.nonzero(sched >= 0)):
        i = sched[n_step, s]
        assert step[i, s] == -1, "generated twice"
        step[i, s] = n_step
    real = fold.sample_time(np.arange(n)[:, None], np.arange(factor), factor) < n_samples
    assert np.all((step >= 0) == real), "every real sample exactly once, no padded one"
    for i, s in zip(*np.nonzero(real)):
        deps = fold.dependency_mask(i, s, n_samples, factor, horizon)
        assert np.all(step[deps] < step[i, s]), f"({i}, {s}) would see a sample not yet generated"
        # the frontier exists and is at the last step before: the schedule wastes nothing
        if s > 0 and i + horizon < n and real[i + horizon, s - 1]:
            assert step[i + horizon, s - 1] == step[i, s] - 1


@given(case=schedules)
def test_all_sub_tensors_run_together_after_the_warm_up(case):
    factor, horizon, extra = case
    n_samples = factor + extra
    sched = fold.schedule(n_samples, factor, horizon)
    warm, n = fold.warmup_steps(factor, horizon), fold.n_positions(n_samples, factor)
    assert warm == (factor - 1) * (horizon + 1)
    for step in range(warm, n - 1):  # before the last, possibly padded, position
        assert np.all(sched[step] >= 0), f"step {step}: {sched[step]}"
    assert np.all(sched[:warm, -1] == -1)


@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_a_lag_of_f_would_not_do(horizon):
    """The frontier dependency (i + F, s - 1) is generated at step i + F + (s - 1) * lag; with lag F that is the
    step of (i, s) itself (not yet available), with lag F + 1 the step before."""
    i, s = 3, 2
    for lag, available in ((horizon, False), (horizon + 1, True)):
        assert ((i + horizon + (s - 1) * lag) < (i + s * lag)) == available


@given(case=schedules, previous=st.sampled_from(["sub_tensor", "time"]))
def test_previous_sample_is_an_allowed_dependency_generated_before(case, previous):
    """The sample a GRU input carries (fold.previous_sample) may be seen, exists by the step that reads it, is
    real whenever the reader is, and with "time" is sample t - 1 for every sub-tensor but the first."""
    factor, horizon, extra = case
    n_samples = factor + extra
    n = fold.n_positions(n_samples, factor)
    i, s = np.meshgrid(np.arange(n), np.arange(factor), indexing="ij")
    t = fold.sample_time(i, s, factor)
    real = t < n_samples
    k, z = fold.previous_sample(i, s, factor, previous)
    has = k >= 0
    assert np.all(has == ((i > 0) | ((s > 0) if previous == "time" else False)))
    assert np.all(fold.may_depend(i, s, k, z, horizon)[has])
    assert np.all(fold.step_of(k, z, horizon)[has] < fold.step_of(i, s, horizon)[has])
    assert np.all(fold.sample_time(k, z, factor)[has & real] < n_samples)
    want = np.where(s > 0, t - 1, t - factor) if previous == "time" else t - factor
    np.testing.assert_array_equal(fold.sample_time(k, z, factor)[has], want[has])
    with pytest.raises(ValueError, match="previous: expected 'sub_tensor' or 'time', found 'next'"):
        fold.previous_sample(0, 0, factor, "next")


@given(case=schedules)
def test_linear_estimates_weigh_allowed_samples_generated_before(case):
    """Every sample the linear estimates of (i, s) weigh (fold.linear_estimate_mask, entry [s, d, z]: sample
    (i - 1 + d, z)) may be seen and is generated at an earlier step; linear_estimate_taps lists their true-time
    offsets: earliest t - B - s, nearest later sample t + B - s (s >= 1)."""
    factor, horizon, extra = case
    n = fold.n_positions(factor + extra, factor)
    mask = fold.linear_estimate_mask(factor, horizon)
    assert mask.shape == (factor, horizon + 2, factor)
    for i in range(n):
        for s, d, z in zip(*np.nonzero(mask)):
            k = i - 1 + d
            assert fold.may_depend(i, s, k, z, horizon)
            assert fold.step_of(k, z, horizon) < fold.step_of(i, s, horizon)
    for s in range(factor):
        taps = fold.linear_estimate_taps(s, factor, horizon)
        assert taps.size == mask[s].sum() and 0 not in taps
        assert taps.min() == -factor - s and (s == 0 or taps[taps > 0].min() == factor - s)


def test_context_input_mask_matches_may_depend():
    for factor in (2, 4, 16):
        for s in range(factor):
            z = np.repeat(np.arange(factor), 2)
            np.testing.assert_array_equal(fold.context_input_mask(s, factor),
                                          fold.may_depend(0, s, 0, z, 1) & (z != s))


def test_context_input_order_lag_puts_the_same_distance_in_the_same_column():
    """subscale_context_order "lag": pair j of sub-tensor s's row is sub-tensor s - 1 - j, i.e. true time t - 1 - j
    at the row's position, for every s; it permutes the row and keeps the unseen pairs (zeros) where they were."""
    for factor in (2, 4, 16):
        for s in range(factor):
            ident = fold.context_input_order(s, factor)
            np.testing.assert_array_equal(ident, np.arange(2 * factor))
            lag = fold.context_input_order(s, factor, "lag")
            np.testing.assert_array_equal(np.sort(lag), np.arange(2 * factor))  # a permutation
            seen = fold.context_input_mask(s, factor)
            np.testing.assert_array_equal(seen[lag], seen)  # seen entries stay in the seen columns
            z = lag[0::2] // 2  # the sub-tensor in pair j
            j = np.arange(factor)
            np.testing.assert_array_equal(np.where(j < s, s - z, 0), np.where(j < s, j + 1, 0))  # distance j + 1
            np.testing.assert_array_equal(lag[1::2], lag[0::2] + 1)  # [c, f] pairs stay together


# --- leak-freedom of the NumPy reference ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["sub_tensor", "lag"], ids=lambda o: f"order_{o}")
def small(request):
    """A small model in each subscale_context_order (the lag order permutes the context input: it must stay
    leak-free too)."""
    cfg = dataclasses.replace(SMALL, subscale_context_order=request.param)
    model = random_model(cfg, SMALL_FEATURES, seed=3, scale=0.6)
    rng = np.random.default_rng(0)
    mel = rng.normal(size=(4, 8)).astype(np.float32)  # T = 100
    audio = rng.integers(-20000, 20000, 100).astype(np.int16)
    return model, mel, audio, rs.teacher_forced_logits_subscale_ref(model, mel, audio)


@settings(max_examples=20)
@given(t0=st.integers(0, 99), d_coarse=st.integers(64, 192), d_fine=st.integers(1, 255))
def test_changing_a_forbidden_sample_never_changes_a_logit(small, t0, d_coarse, d_fine):
    model, mel, audio, (lc, lf) = small
    b, horizon = SMALL.subscale_factor, SMALL.subscale_horizon
    u = int(audio[t0]) + 32768
    changed = audio.copy()  # both bytes move
    changed[t0] = np.int16(((((u >> 8) + d_coarse) % 256) << 8 | (((u & 255) + d_fine) % 256)) - 32768)
    lc2, lf2 = rs.teacher_forced_logits_subscale_ref(model, mel, changed)
    t = np.arange(audio.size)
    allowed = fold.may_depend(t // b, t % b, t0 // b, t0 % b, horizon)
    coarse_same = np.all(lc2 == lc, axis=1)
    fine_same = np.all(lf2 == lf, axis=1)
    assert np.all(coarse_same[~allowed]), "a coarse logit saw a sample it may not"
    assert np.all(fine_same[~allowed & (t != t0)]), "a fine logit saw a sample it may not"
    assert not fine_same[t0]  # the fine head sees its own coarse byte
    frontier = (t0 // b - horizon) * b + t0 % b + 1  # (i, s) = (k - F, z + 1): sees (k, z) at its horizon
    if t0 // b >= horizon and t0 % b + 1 < b:
        # (either head: with random weights one head's ReLUs may all be off at a sample)
        assert not (coarse_same[frontier] and fine_same[frontier]), "the context does not reach the horizon"


def test_generation_reads_only_generated_samples(small):
    """Not-yet-generated samples are NaN inside generate_subscale_ref: a leak would make a logit NaN."""
    model, mel, _, _ = small
    uniforms = np.random.default_rng(1).random((100, 2), dtype=np.float32)
    samples, trace = rs.generate_subscale_ref(model, mel, uniforms, trace=True)
    assert np.isfinite(trace["logits_c"]).all() and np.isfinite(trace["logits_f"]).all()
    t = np.arange(100)
    np.testing.assert_array_equal(trace["step"], fold.step_of(t // 4, t % 4, SMALL.subscale_horizon))
    lc, lf = rs.teacher_forced_logits_subscale_ref(model, mel, samples)  # teacher forcing on its own output
    assert np.abs(lc - trace["logits_c"]).max() < 1e-5 and np.abs(lf - trace["logits_f"]).max() < 1e-5


def test_reference_refuses_bad_models_and_short_audio():
    with pytest.raises(ValueError, match="horizon"):
        rs.generate_subscale_ref(random_model(dataclasses.replace(SMALL, subscale_horizon=0), SMALL_FEATURES),
                                 np.zeros((4, 8), np.float32), np.zeros((100, 2), np.float32))
    tiny = random_model(dataclasses.replace(SMALL, subscale_factor=16), FeatureConfig(n_mels=8, hop_length=5))
    with pytest.raises(ValueError, match="one fold"):
        rs.generate_subscale_ref(tiny, np.zeros((2, 8), np.float32), np.zeros((10, 2), np.float32))


# --- config and file ----------------------------------------------------------------------------------------------

def test_plain_config_json_is_unchanged_and_old_files_load():
    d = ModelConfig().to_dict()
    assert "subscale_channels" not in d and "subscale_layers" not in d
    assert ModelConfig.from_dict(d) == ModelConfig()
    sub = dataclasses.replace(SMALL, subscale_channels=5)
    assert ModelConfig.from_dict(json.loads(sub.to_json())) == sub
    # subscale_previous is written only when not the default, so subscale files from before it are unchanged too
    assert "subscale_previous" not in sub.to_dict() and sub.subscale_previous == "sub_tensor"
    by_time = dataclasses.replace(SMALL, subscale_previous="time")
    assert by_time.to_dict()["subscale_previous"] == "time"
    assert ModelConfig.from_dict(json.loads(by_time.to_json())) == by_time
    # subscale_context_order likewise
    assert "subscale_context_order" not in sub.to_dict() and sub.subscale_context_order == "sub_tensor"
    lag = dataclasses.replace(SMALL, subscale_context_order="lag")
    assert lag.to_dict()["subscale_context_order"] == "lag"
    assert ModelConfig.from_dict(json.loads(lag.to_json())) == lag


def with_model_config_fields(path, out, **fields):
    """A copy of the model file at path whose model_config JSON also gives `fields`, as a file written by an older
    pywavernn may."""
    with safe_open(str(path), framework="np") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    metadata["model_config"] = json.dumps({**json.loads(metadata["model_config"]), **fields}, sort_keys=True)
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_removed_subscale_residual_loads_where_it_changed_nothing_and_is_refused_by_name_else(tmp_path):
    """subscale_residual left ModelConfig and the format (issue 25, item 3; config.REMOVED_OPTIONS). A file that
    says false loads as the same model as one that omits it; one that says true (a different network) is refused
    with a ValueError naming the file, the option, why it went and the last commit that runs it."""
    model = random_model(SMALL, SMALL_FEATURES, seed=1)
    fmt.save_model(model, tmp_path / "now.safetensors")
    old = fmt.load_model(with_model_config_fields(tmp_path / "now.safetensors", tmp_path / "false.safetensors",
                                                  subscale_residual=False))
    assert old.model_config == SMALL and not hasattr(old.model_config, "subscale_residual")
    for name, w in model.weights.items():
        np.testing.assert_array_equal(old.dense(name), w)
    refused = with_model_config_fields(tmp_path / "now.safetensors", tmp_path / "true.safetensors",
                                       subscale_residual=True)
    with pytest.raises(ValueError, match="subscale_residual = true: this option was removed") as info:
        fmt.load_model(refused)
    message = str(info.value)
    assert str(refused) in message and REMOVED_OPTIONS["subscale_residual"].last_commit in message
    assert "research/experiments.md" in message and "retrain without it" in message
    # The same rule for any JSON that reaches ModelConfig: only the exact no-op value passes, not a falsy stand-in.
    assert ModelConfig.from_dict({**SMALL.to_dict(), "subscale_residual": False}) == SMALL
    for value in (True, 0, None, "false"):
        with pytest.raises(ValueError, match="subscale_residual = .*: this option was removed"):
            ModelConfig.from_dict({**SMALL.to_dict(), "subscale_residual": value})
    with pytest.raises(TypeError):
        ModelConfig(subscale_residual=False)  # the field itself is gone


def test_subscale_weights_are_listed_only_for_subscale_models():
    plain = set(fmt.expected_weight_shapes(dataclasses.replace(SMALL, subscale_factor=1, subscale_horizon=0)))
    shapes = fmt.expected_weight_shapes(SMALL)
    assert not any(name.startswith("subscale.") for name in plain)
    assert set(shapes) - plain == {"subscale.embed.weight", "subscale.embed.bias", "subscale.conv0.weight",
                                   "subscale.conv0.bias", "subscale.conv1.weight", "subscale.conv1.bias",
                                   "subscale.proj.weight", "subscale.proj.bias"}
    assert shapes["subscale.embed.weight"] == (8, 8) and shapes["subscale.proj.bias"] == (4, 48)


def test_subscale_model_file_round_trip_and_refusals(tmp_path):
    model = random_model(SMALL, SMALL_FEATURES, seed=1)
    path = tmp_path / "subscale.safetensors"
    fmt.save_model(model, path)
    loaded = fmt.load_model(path)
    assert loaded.model_config == SMALL
    for name, w in model.weights.items():
        np.testing.assert_array_equal(loaded.dense(name), w)
    broken = dict(model.weights)
    broken["subscale.proj.bias"] = np.zeros((3, 48), np.float32)
    with pytest.raises(ValueError, match=r"subscale.proj.bias: expected shape \(4, 48\)"):
        fmt.Model(SMALL, SMALL_FEATURES, broken).validate()
    del broken["subscale.proj.bias"]
    with pytest.raises(ValueError, match="missing.*subscale.proj.bias"):
        fmt.Model(SMALL, SMALL_FEATURES, broken).validate()


def test_linear_estimates_in_the_file_round_trip_and_their_mask_is_checked(tmp_path):
    cfg = dataclasses.replace(SMALL, subscale_linear=3)
    assert cfg.to_dict()["subscale_linear"] == 3 and "subscale_linear" not in SMALL.to_dict()
    model = random_model(cfg, SMALL_FEATURES, seed=1)
    assert fmt.expected_weight_shapes(cfg)["subscale.linear.weight"] == (4, 3, 4, 3)
    assert fmt.expected_weight_shapes(cfg)["subscale.linear.proj"] == (48, 3)
    path = tmp_path / "linear.safetensors"
    fmt.save_model(model, path)
    loaded = fmt.load_model(path)
    assert loaded.model_config == cfg
    np.testing.assert_array_equal(loaded.dense("subscale.linear.weight"), model.dense("subscale.linear.weight"))
    leak = {**model.weights, "subscale.linear.weight": model.weights["subscale.linear.weight"].copy()}
    leak["subscale.linear.weight"][2, 1, 2, 0] = 0.5  # sub-tensor 2 weighing its own sample at position i
    with pytest.raises(ValueError, match=r"subscale.linear.weight: expected zeros .* at \[s, d, z\] = \[2, 1, 2\]"):
        fmt.Model(cfg, SMALL_FEATURES, leak).validate()
    with pytest.raises(ValueError, match="subscale_linear = 3: only a subscale model"):
        ModelConfig(subscale_linear=3)
    with pytest.raises(ValueError, match=r"subscale_linear: expected an integer in \[0, 64\], found 65"):
        dataclasses.replace(SMALL, subscale_linear=65)


def test_prior_in_the_file_round_trips_and_its_config_is_checked(tmp_path):
    cfg = dataclasses.replace(SMALL, subscale_linear=1, subscale_prior="laplace")
    assert cfg.to_dict()["subscale_prior"] == "laplace" and "subscale_prior" not in SMALL.to_dict()
    shapes = fmt.expected_weight_shapes(cfg)
    assert shapes["subscale.prior.weight"] == (2, 16) and shapes["subscale.prior.bias"] == (2, 4)
    assert "subscale.prior.weight" not in fmt.expected_weight_shapes(dataclasses.replace(cfg, subscale_prior="none"))
    model = random_model(cfg, SMALL_FEATURES, seed=1)
    path = tmp_path / "prior.safetensors"
    fmt.save_model(model, path)
    loaded = fmt.load_model(path)
    assert loaded.model_config == cfg
    np.testing.assert_array_equal(loaded.weights["subscale.prior.bias"], model.weights["subscale.prior.bias"])
    broken = {k: v for k, v in model.weights.items() if k != "subscale.prior.weight"}
    with pytest.raises(ValueError, match="missing.*subscale.prior.weight"):
        fmt.Model(cfg, SMALL_FEATURES, broken).validate()
    with pytest.raises(ValueError, match="subscale_prior = 'laplace': .* needs subscale_linear >= 1, found 0"):
        dataclasses.replace(SMALL, subscale_prior="laplace")
    with pytest.raises(ValueError, match="subscale_prior: expected one of 'none', 'laplace', found 'gauss'"):
        dataclasses.replace(cfg, subscale_prior="gauss")


def _laplace_log_mass(lo: np.ndarray, hi: np.ndarray, mu: float, b: float) -> np.ndarray:
    """log(CDF(hi) - CDF(lo)) of Laplace(mu, b) in float64, from the CDF itself (the slow, obvious way)."""
    def cdf(x):
        return np.where(x < mu, 0.5 * np.exp(np.minimum(x - mu, 0) / b), 1.0 - 0.5 * np.exp(-np.maximum(x - mu, 0) / b))
    with np.errstate(divide="ignore"):
        return np.log(cdf(hi) - cdf(lo))


@settings(max_examples=300, deadline=None)
@given(mu=st.floats(-1000.0, 66000.0), log_b=st.floats(-3.0, 12.0), fine=st.booleans(), c=st.integers(0, 255))
def test_prior_term_is_the_floored_log_mass_of_each_bin(mu, log_b, fine, c):
    """prior_term_ref (docs/format.md §9) against the Laplace CDF differenced in float64: equal (to float32
    precision, relative to the scale of the numbers involved) wherever the mass is above the floor, the floor
    elsewhere; over the 256 coarse bins the masses sum to the distribution's mass on [0, 65536)."""
    lo = (256.0 * c + np.arange(256.0)) if fine else 256.0 * np.arange(256.0)
    width = 1.0 if fine else 256.0
    b = float(np.exp(np.float32(log_b)))
    got = prior_term_ref(lo.astype(np.float32), width, np.float32(mu), np.float32(log_b)).astype(np.float64)
    want = np.maximum(_laplace_log_mass(lo, lo + width, float(np.float32(mu)), b), -16.0)
    # float32 distances near 65536 carry ~4e-3 of rounding, divided by b; plus the log's own rounding
    tol = 1e-4 * np.abs(want) + 4e-3 / b + 1e-4
    assert np.all(np.abs(got - want) <= tol), (np.abs(got - want) - tol).max()
    if not fine and 1000 < mu < 64500 and b < 50:  # nearly all the mass inside [0, 65536)
        assert abs(np.exp(got).sum() - 1.0) < 1e-3


def test_cost_per_sample():
    cfg = ModelConfig(hidden_size=512, out_hidden=256, subscale_factor=16, subscale_horizon=2,
                      subscale_channels=32, subscale_layers=4)
    ctx, gru = fold.context_macs_per_sample(cfg), fold.gru_macs_per_sample(cfg)
    assert ctx == {"embed": 1024, "layers": 8192, "proj": 49152, "total": 58368}
    assert gru["R"] == 3 * 512 * 512 and ctx["total"] < 0.1 * gru["total"]
    assert fold.context_receptive_field(cfg) == 16
    wide = ModelConfig(hidden_size=256, subscale_factor=16, subscale_horizon=2, subscale_channels=64,
                       subscale_layers=4)  # rq3_subscale256_prev_c64s: layers 75 %, projection 87.5 % pruned
    assert fold.context_macs_per_sample(wide, layer_density=0.25, proj_density=0.125) == {
        "embed": 2048, "layers": 8192, "proj": 6144, "total": 16384}
    # subscale_linear 4: taps (B - 1)(F + 2) / 2 + 1 = 31 a sample on average, and 3H columns each
    lin = dataclasses.replace(wide, subscale_linear=4)
    assert fold.context_macs_per_sample(lin, layer_density=0.25, proj_density=0.125) == {
        "embed": 2048, "layers": 8192, "proj": 6144, "linear": 4 * 31 + 4 * 768, "total": 16384 + 124 + 3072}
