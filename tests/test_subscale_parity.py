"""Parity of the PyTorch Subscale WaveRNN twin (training/subscale_model.py) with the NumPy subscale reference
(pywavernn/reference/subscale.py), and the twin's round trip through the model file.

What it is: for B = 4 and B = 16 on a small random model, teacher-forced logits agree within 1e-4 (the twin fuses
the projections into one GRU input matmul, the reference sums them separately: float32 rounding, ~1e-5), and
free-running generation from the same uniforms gives identical samples for 2,100 samples. The reference walks the
schedule one sample at a time; the twin runs each step's active sub-tensors as one batch. The uniforms are first
moved away from class edges under the reference (as in tests/test_parity_torch.py, safe_uniforms), so rounding
differences cannot flip a draw. Also: the twin's teacher forcing is leak-free (exact), and its input mask survives
an optimizer step.
What it is not: a test of the index arithmetic (tests/test_subscale.py).

Run: python -m pytest tests/test_subscale_parity.py -q
Letters: B subscale factor, F future horizon, T samples, H hidden units.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pywavernn import modelfile as fmt  # noqa: E402
from pywavernn.reference import subscale as rs  # noqa: E402
from pywavernn import fold  # noqa: E402
from pywavernn.config import FeatureConfig, ModelConfig  # noqa: E402
from pywavernn.testing import uniforms_clear_of_class_edges  # noqa: E402
from training.subscale_model import SubscaleWaveRNN  # noqa: E402

TOL = 1e-4
HOP, N_FRAMES = 300, 7
N_SAMPLES = HOP * N_FRAMES  # 2100: B = 16 pads the last position
# (B, F, subscale_previous, other ModelConfig fields: subscale_context_order, subscale_linear, subscale_prior)
LAG = {"subscale_context_order": "lag"}
CASES = [(4, 1, "sub_tensor", {}), (16, 2, "sub_tensor", {}), (4, 1, "time", {}), (16, 2, "time", {}),
         (4, 1, "sub_tensor", LAG), (16, 2, "time", LAG),
         (8, 1, "time", LAG), (16, 2, "time", {**LAG, "subscale_linear": 3}),
         (4, 1, "sub_tensor", {"subscale_linear": 2}),
         (16, 2, "time", {**LAG, "subscale_linear": 2, "subscale_prior": "laplace"})]
CASE_IDS = [f"B{b}-F{f}-{p}" + "".join(f"-{k.removeprefix('subscale_')}" for k in extra) for b, f, p, extra in CASES]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(factor: int, horizon: int, previous: str = "sub_tensor", extra: dict | None = None) -> ModelConfig:
    return ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, cond_kernels=(3, 3), subscale_factor=factor,
                       subscale_horizon=horizon, subscale_channels=16, subscale_layers=3, subscale_previous=previous,
                       **(extra or {}))


def make_net(factor: int, horizon: int, seed: int = 0, previous: str = "sub_tensor",
             extra: dict | None = None) -> SubscaleWaveRNN:
    """Default init scaled up (x2, x3 for the heads) so the distributions are far from uniform."""
    torch.manual_seed(seed)
    net = SubscaleWaveRNN(config(factor, horizon, previous, extra), FeatureConfig(hop_length=HOP))
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.mul_(3.0 if name.startswith("O") else 2.0)
        if net.prior:  # log-scales from 0.4 to 400 16-bit steps, moving with the heads: sharp and wide priors
            net.prior_bias.uniform_(-1.0, 6.0)
            net.prior_weight.uniform_(-0.3, 0.3)
    return net


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    mel = rng.normal(-5.0, 1.5, (N_FRAMES, 80)).astype(np.float32)
    t = np.arange(N_SAMPLES)
    audio = (8000 * np.sin(2 * np.pi * 140 * t / 24000) + rng.normal(0, 300, N_SAMPLES)).astype(np.int16)
    return mel, audio, rng.random((N_SAMPLES, 2), dtype=np.float32)


def safe_uniforms(model: fmt.Model, mel: np.ndarray, uniforms: np.ndarray, margin: float = 1e-5) -> np.ndarray:
    """The uniforms moved off class edges under the reference (pywavernn.testing.uniforms_clear_of_class_edges)."""
    return uniforms_clear_of_class_edges(lambda u: rs.generate_subscale_ref(model, mel, u, trace=True), uniforms, margin)


def torch_logits(net, mel, audio):
    with torch.no_grad():
        lc, lf = net(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None])
    return lc[0].numpy(), lf[0].numpy()


@pytest.mark.parametrize("factor, horizon, previous, extra", CASES, ids=CASE_IDS)
def test_teacher_forced_logits_match_reference(inputs, factor, horizon, previous, extra):
    mel, audio, _ = inputs
    net = make_net(factor, horizon, previous=previous, extra=extra)
    model = net.to_model()
    lc_t, lf_t = torch_logits(net, mel, audio)
    lc_r, lf_r = rs.teacher_forced_logits_subscale_ref(model, mel, audio)
    assert lc_t.shape == lc_r.shape == (N_SAMPLES, 256)
    assert np.abs(lc_t).max() > 3.0  # the test means something only if the logits are not all near zero
    assert np.abs(lc_t - lc_r).max() < TOL and np.abs(lf_t - lf_r).max() < TOL
    with torch.no_grad():
        nll_t = float(net.nll_bits(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None]))
    assert nll_t == pytest.approx(rs.nll_subscale_ref(model, mel, audio), rel=1e-5)


@pytest.mark.parametrize("factor, horizon, previous, extra", CASES, ids=CASE_IDS)
def test_free_running_generation_is_identical(inputs, factor, horizon, previous, extra):
    mel, _, uniforms = inputs
    net = make_net(factor, horizon, previous=previous, extra=extra)
    model = net.to_model()
    uniforms = safe_uniforms(model, mel, uniforms)
    samples_t, trace_t = net.generate(mel, uniforms, trace=True)
    samples_r, trace_r = rs.generate_subscale_ref(model, mel, uniforms, trace=True)
    assert samples_t.shape == (N_SAMPLES,) and samples_t.dtype == np.int16
    first = np.flatnonzero(samples_t != samples_r)
    assert first.size == 0, f"samples differ first at t = {first[0]} of {N_SAMPLES}"
    assert len(np.unique(samples_t)) > 1000  # a live trajectory, not a stuck one
    for key in ("h", "logits_c", "logits_f"):
        assert np.abs(trace_t[key] - trace_r[key]).max() < TOL, key


def test_export_load_round_trip(tmp_path, inputs):
    mel, audio, _ = inputs
    net = make_net(4, 1, seed=1)
    path = tmp_path / "subscale.safetensors"
    fmt.save_model(net.to_model(provenance={"test": "round trip"}), path)
    loaded = fmt.load_model(path)
    assert loaded.model_config == net.model_config and loaded.provenance["test"] == "round trip"
    back = SubscaleWaveRNN.from_model(loaded)
    for (name, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    lc_r, _ = rs.teacher_forced_logits_subscale_ref(loaded, mel[:2], audio[:600])
    lc_t, _ = torch_logits(back, mel[:2], audio[:600])
    assert np.abs(lc_t - lc_r).max() < TOL


@pytest.mark.parametrize("previous", ["sub_tensor", "time"])
def test_twin_teacher_forcing_is_leak_free(inputs, previous):
    mel, audio, _ = inputs
    factor, horizon = 4, 2
    net = make_net(factor, horizon, seed=3, previous=previous)
    lc, lf = torch_logits(net, mel, audio)
    t = np.arange(N_SAMPLES)
    for t0 in (0, 401, 1002, 1403, 2099):
        changed = audio.copy()
        changed[t0] = np.int16(-int(audio[t0]) - 1)  # flips every bit: both bytes change
        lc2, lf2 = torch_logits(net, mel, changed)
        allowed = fold.may_depend(t // factor, t % factor, t0 // factor, t0 % factor, horizon)
        np.testing.assert_array_equal(lc2[~allowed], lc[~allowed])
        np.testing.assert_array_equal(lf2[~allowed & (t != t0)], lf[~allowed & (t != t0)])
        assert np.abs(lf2[t0] - lf[t0]).max() > 1e-3
        k, z = fold.previous_sample(t // factor, t % factor, factor, previous)
        for t1 in np.flatnonzero((k == t0 // factor) & (z == t0 % factor)):  # the GRU inputs that carry t0 see it
            assert np.abs(lc2[t1] - lc[t1]).max() > 1e-6, (t0, t1)


def test_input_mask_survives_an_optimizer_step(inputs):
    mel, audio, _ = inputs
    net = make_net(4, 1, seed=2)
    masked = net.input_mask == 0
    assert int(masked.sum()) == 3 * net.model_config.half
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    loss = net.nll_bits(torch.from_numpy(mel[:2])[None], torch.from_numpy(audio[:600])[None])
    loss.backward()
    assert torch.all(net.gru.weight_ih_l0.grad[masked] == 0) and net.ctx_biases.grad.abs().sum() > 0
    opt.step()
    assert torch.all(net.gru.weight_ih_l0.detach()[masked] == 0)



def test_linear_estimates_see_exactly_their_mask(inputs):
    """subscale_linear (docs/format.md §9): the estimate of sample (i, s) moves with sample (k, z) exactly when
    k - i is in 0..F and z < s, or k = i - 1 and z <= s (fold.linear_estimate_mask, a subset of
    fold.may_depend), and the model's teacher forcing stays leak-free."""
    mel, audio, _ = inputs
    factor, horizon = 4, 2
    net = make_net(factor, horizon, seed=5, previous="time", extra={**LAG, "subscale_linear": 3})
    u = torch.from_numpy(audio.astype(np.int32) + 32768)[None]
    n_pos = N_SAMPLES // factor

    def estimates(u):
        with torch.no_grad():
            return net._linear_estimates(u >> 8, u & 255, n_pos)[0].numpy()  # (B, P, E)

    base, (lc, _) = estimates(u), torch_logits(net, mel, audio)
    i, s = np.meshgrid(np.arange(n_pos), np.arange(factor))  # [s, i]
    t = np.arange(N_SAMPLES)
    for t0 in (0, 401, 1002, 1403, 2099):
        k, z = t0 // factor, t0 % factor
        changed = audio.copy()
        changed[t0] = np.int16(-int(audio[t0]) - 1)  # flips every bit: both bytes change
        moved = np.abs(estimates(torch.from_numpy(changed.astype(np.int32) + 32768)[None]) - base).max(axis=2) > 0
        expect = ((k - i >= 0) & (k - i <= horizon) & (z < s)) | ((k == i - 1) & (z <= s))
        np.testing.assert_array_equal(moved, expect, err_msg=f"t0 = {t0}")
        assert np.all(fold.may_depend(i, s, k, z, horizon)[expect])
        allowed = fold.may_depend(t // factor, t % factor, k, z, horizon)
        np.testing.assert_array_equal(torch_logits(net, mel, changed)[0][~allowed], lc[~allowed])
