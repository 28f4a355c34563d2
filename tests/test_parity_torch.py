"""The PyTorch twin (training/model.py) against the NumPy reference, export round trips, and the input mask.

Same random weights, same mel and audio: teacher-forced logits agree within 1e-4 and free-running generation from
the same uniforms gives identical samples for 2,100 steps (hop 300, 7 frames).
Tolerance: 1e-4 absolute on logits of magnitude up to ~10. Both sides are float32 and differ only in summation
order (torch's fused GRU and its conv/matmul kernels vs NumPy's BLAS) and in exp/sigmoid/tanh rounding: a few ulp
per step, which the contracting recurrence does not amplify (measured max |diff| ~5e-6 over 2,100 steps). A
real mistake (gate order, mask, upsampling off by a sample) moves logits by 1e-3 or more.
Sample equality holds because both paths sum the input projection in the same order, interpolate the
conditioning with the same float32 operations and sample with the same float32 rule; the remaining rounding
differences (~1e-6 of the cdf total) change a sample only if a uniform lands that close to a class edge. Seeded
draws do that now and then (this test's raw draws come within 2e-7 once), so the uniforms both paths get are
first made safe: see safe_uniforms.
The same holds with the linear prediction and prior of docs/format.md §11 (est(t) has the reference's bits in the
twin: the same float32 sum in the same order), with and without the prior.

Run: python -m pytest tests/test_parity_torch.py -q
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pywavernn import modelfile as fmt  # noqa: E402
from pywavernn.reference import plain as ref  # noqa: E402
from pywavernn.config import FeatureConfig, ModelConfig  # noqa: E402
from pywavernn.testing import uniforms_clear_of_class_edges  # noqa: E402
from training.export import export_model  # noqa: E402
from training.model import WaveRNN, swap_gates_ur  # noqa: E402

TOL = 1e-4
CONFIG = ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, cond_kernels=(3, 3), block_shape=(4, 4))
HOP, N_FRAMES = 300, 7
N_SAMPLES = HOP * N_FRAMES


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_net(seed: int = 0) -> WaveRNN:
    """Default init scaled up (x2 GRU and conditioning, x3 heads) so the distributions are far from uniform."""
    torch.manual_seed(seed)
    net = WaveRNN(CONFIG, FeatureConfig(hop_length=HOP))
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.mul_(3.0 if name.startswith("O") else 2.0)
    return net


@pytest.fixture(scope="module")
def net():
    return make_net()


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    mel = (rng.normal(-5.0, 1.5, (N_FRAMES, CONFIG.n_mels))).astype(np.float32)
    t = np.arange(N_SAMPLES)
    audio = (8000 * np.sin(2 * np.pi * 140 * t / 24000) + rng.normal(0, 300, N_SAMPLES)).astype(np.int16)
    uniforms = rng.random((N_SAMPLES, 2), dtype=np.float32)
    return mel, audio, uniforms


def safe_uniforms(model: fmt.Model, mel: np.ndarray, uniforms: np.ndarray, margin: float = 1e-5) -> np.ndarray:
    """The uniforms moved off class edges under the reference (pywavernn.testing.uniforms_clear_of_class_edges)."""
    return uniforms_clear_of_class_edges(lambda u: ref.generate_ref(model, mel, u, trace=True), uniforms, margin)


def torch_logits(net, mel, audio):
    with torch.no_grad():
        lc, lf = net(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None])
    return lc[0].numpy(), lf[0].numpy()


def test_teacher_forced_logits_match_reference(net, inputs):
    mel, audio, _ = inputs
    model = net.to_model()
    lc_t, lf_t = torch_logits(net, mel, audio)
    lc_r, lf_r = ref.teacher_forced_logits_ref(model, mel, audio)
    assert lc_t.shape == lc_r.shape == (N_SAMPLES, 256)
    assert np.abs(lc_t).max() > 3.0  # the test means something only if the logits are not all near zero
    assert np.abs(lc_t - lc_r).max() < TOL
    assert np.abs(lf_t - lf_r).max() < TOL
    with torch.no_grad():
        nll_t = float(net.nll_bits(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None]))
    assert nll_t == pytest.approx(ref.nll_ref(model, mel, audio), rel=1e-5)


def test_free_running_generation_is_identical(net, inputs):
    mel, _, uniforms = inputs
    model = net.to_model()
    uniforms = safe_uniforms(model, mel, uniforms)
    samples_t, trace_t = net.generate(mel, uniforms, trace=True)
    samples_r, trace_r = ref.generate_ref(model, mel, uniforms, trace=True)
    assert samples_t.shape == (N_SAMPLES,) and samples_t.dtype == np.int16
    first = np.flatnonzero(samples_t != samples_r)
    assert first.size == 0, f"samples differ first at step {first[0]} of {N_SAMPLES}"
    assert len(np.unique(samples_t)) > 1000  # a live trajectory, not a stuck one
    assert np.abs(trace_t["h"] - trace_r["h"]).max() < TOL
    assert np.abs(trace_t["logits_c"] - trace_r["logits_c"]).max() < TOL
    assert np.abs(trace_t["logits_f"] - trace_r["logits_f"]).max() < TOL


def test_gate_order_is_swapped_between_file_and_torch(net):
    model = net.to_model()
    h = CONFIG.hidden_size
    # file rows [u | r | e] = torch rows [z | r | n]; torch stores [r | z | n]
    np.testing.assert_array_equal(model.dense("gru.R")[:h], net.gru.weight_hh_l0.detach().numpy()[h:2 * h])
    np.testing.assert_array_equal(model.dense("gru.R")[h:2 * h], net.gru.weight_hh_l0.detach().numpy()[:h])
    np.testing.assert_array_equal(swap_gates_ur(swap_gates_ur(np.arange(3 * h), h), h), np.arange(3 * h))


@pytest.mark.parametrize("sparse", [None, (4, 4)])
def test_export_load_reference_round_trip(tmp_path, inputs, sparse):
    mel, audio, _ = inputs
    net = make_net(seed=1)
    if sparse is not None:  # prune half of the 4x4 blocks of R so the file really is sparse
        with torch.no_grad():
            keep = torch.rand(3 * CONFIG.hidden_size // 4, CONFIG.hidden_size // 4) < 0.5
            net.gru.weight_hh_l0.mul_(keep.repeat_interleave(4, 0).repeat_interleave(4, 1))
    path = tmp_path / "exported.safetensors"
    export_model(net, net.feature_config, path, provenance={"test": "round trip"}, sparse=sparse)
    loaded = fmt.load_model(path)
    assert loaded.provenance["test"] == "round trip"
    assert loaded.is_sparse("gru.R") == (sparse is not None)
    if sparse is not None:
        assert loaded.weights["gru.R"].density == pytest.approx(0.5, abs=0.1)
    lc_r, lf_r = ref.teacher_forced_logits_ref(loaded, mel, audio)
    lc_t, lf_t = torch_logits(net, mel, audio)
    assert np.abs(lc_t - lc_r).max() < TOL and np.abs(lf_t - lf_r).max() < TOL
    back = WaveRNN.from_model(loaded)
    for (name, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


def masked_entries(net: WaveRNN) -> torch.Tensor:
    return net.gru.weight_ih_l0.detach()[net.input_mask == 0]


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
])
def test_input_mask_survives_optimizer_steps(inputs, make_optimizer):
    mel, audio, _ = inputs
    net = make_net(seed=2)
    assert masked_entries(net).numel() == 3 * CONFIG.half and torch.all(masked_entries(net) == 0)
    with torch.no_grad():
        net.gru.weight_ih_l0[net.input_mask == 0] = 0.5  # as if loaded from a bad checkpoint
    opt = make_optimizer(net.parameters())
    mel_t, audio_t = torch.from_numpy(mel[:2])[None], torch.from_numpy(audio[:600])[None]
    for _ in range(3):
        opt.zero_grad()
        net.nll_bits(mel_t, audio_t).backward()
        assert torch.all(net.gru.weight_ih_l0.grad[net.input_mask == 0] == 0)
        assert net.gru.weight_ih_l0.grad.abs().sum() > 0
        opt.step()
        assert torch.all(masked_entries(net) == 0)
    clone = copy.deepcopy(net)  # a new parameter object gets the gradient hook too
    clone.nll_bits(mel_t, audio_t).backward()
    assert torch.all(clone.gru.weight_ih_l0.grad[clone.input_mask == 0] == 0)


def test_coarse_logits_do_not_see_the_current_coarse_byte(net, inputs):
    mel, audio, _ = inputs
    t0 = 1000
    changed = audio.copy()
    changed[t0] = np.int16(int(audio[t0]) + 256 * (40 if audio[t0] < 0 else -40))  # coarse byte moves, fine stays
    assert (int(changed[t0]) & 255) == (int(audio[t0]) & 255)
    lc_a, lf_a = torch_logits(net, mel, audio)
    lc_b, lf_b = torch_logits(net, mel, changed)
    np.testing.assert_array_equal(lc_a[:t0 + 1], lc_b[:t0 + 1])
    assert np.abs(lf_a[t0] - lf_b[t0]).max() > 1e-3  # the fine head does see c_t
    assert np.abs(lc_a[t0 + 1] - lc_b[t0 + 1]).max() > 1e-3  # and the next step sees it as c_{t-1}


LINEAR = replace(CONFIG, linear_order=8, prior="laplace")  # docs/format.md §11


def make_linear_net(prior: str, seed: int = 3) -> WaveRNN:
    """make_net's scaled weights, random taps (the start, est = v(t - 1), would test one tap only) and a prior of
    scales e^2 and e^4 16-bit steps that the heads' hidden layers move."""
    torch.manual_seed(seed)
    net = WaveRNN(replace(LINEAR, prior=prior), FeatureConfig(hop_length=HOP))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(("O", "gru", "cond")):
                p.mul_(3.0 if name.startswith("O") else 2.0)
        net.linear_weight.copy_(0.4 * torch.randn(8))
        if prior != "none":
            net.prior_weight.copy_(0.05 * torch.randn(2, CONFIG.out_hidden))
            net.prior_bias.copy_(torch.tensor([4.0, 2.0]))
    return net


@pytest.mark.parametrize("prior", ["none", "laplace"])
def test_linear_prediction_matches_reference(tmp_path, inputs, prior):
    """Teacher-forced logits and NLL, free-running samples, and the export round trip of a twin with linear
    prediction (and the prior): the reference's, as for the plain model."""
    mel, audio, uniforms = inputs
    net = make_linear_net(prior)
    path = tmp_path / "linear.safetensors"
    model = export_model(net, net.feature_config, path)
    loaded = fmt.load_model(path)
    assert loaded.model_config.linear_order == 8 and loaded.dense("gru.W_in").shape == (3 * CONFIG.hidden_size, 4)
    lc_t, lf_t = torch_logits(net, mel, audio)
    lc_r, lf_r = ref.teacher_forced_logits_ref(loaded, mel, audio)
    assert np.abs(lc_t - lc_r).max() < TOL and np.abs(lf_t - lf_r).max() < TOL
    with torch.no_grad():
        nll_t = float(net.nll_bits(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None]))
    assert nll_t == pytest.approx(ref.nll_ref(loaded, mel, audio), rel=1e-5)
    safe = safe_uniforms(model, mel, uniforms)
    samples_t, trace_t = net.generate(mel, safe, trace=True)
    samples_r, trace_r = ref.generate_ref(model, mel, safe, trace=True)
    first = np.flatnonzero(samples_t != samples_r)
    assert first.size == 0, f"samples differ first at step {first[0]} of {N_SAMPLES}"
    assert len(np.unique(samples_t)) > 30  # a live trajectory (a prior of a few steps keeps it near est)
    for key in ("h", "logits_c", "logits_f"):
        assert np.abs(trace_t[key] - trace_r[key]).max() < TOL, key
    back = WaveRNN.from_model(loaded)
    for (name, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    # the taps matter: the same weights with est's column zeroed give other logits
    with torch.no_grad():
        net.gru.weight_ih_l0[:, 3] = 0.0
    assert np.abs(torch_logits(net, mel, audio)[1] - lf_t).max() > 1e-3


def test_linear_prediction_starts_as_the_previous_sample():
    """A fresh twin's est(t) is v(t - 1) and its prior's log-scale is PRIOR_INIT_LOG_SCALE (docs/format.md §11)."""
    net = WaveRNN(LINEAR, FeatureConfig(hop_length=HOP))
    assert net.linear_weight.tolist() == [1.0] + [0.0] * 7
    assert net.prior_bias.tolist() == [6.0, 6.0] and not net.prior_weight.detach().any()
    coarse = torch.tensor([[1, 200, 129, 7]])
    fine = torch.tensor([[3, 4, 0, 255]])
    est = net.gru_inputs(coarse, fine)[0, :, 3]
    want = [0.0] + [(256 * c + f - 32768) / 32768 for c, f in zip([1, 200, 129], [3, 4, 0])]
    assert est.tolist() == pytest.approx(want, abs=0)


def test_forward_rejects_mismatched_lengths(net, inputs):
    mel, audio, _ = inputs
    with pytest.raises(ValueError, match=r"F \* hop"):
        net(torch.from_numpy(mel)[None], torch.from_numpy(audio[:-1])[None])
    with pytest.raises(TypeError, match="int16"):
        net(torch.from_numpy(mel)[None], torch.from_numpy(audio.astype(np.int32))[None])


@pytest.mark.parametrize("fine", [False, True])
def test_prior_term_matches_reference(fine):
    """training.prior.prior_term (the bin holding mu computed alone and scattered in) against the reference's
    per-bin formula, mu on bin edges, inside and outside the 256 bins, scales from 0.05 to 1.6e5 steps; its
    gradients are finite."""
    from pywavernn.reference.prior import prior_term_ref
    from training.prior import prior_term

    rng = np.random.default_rng(5)
    c = 77
    mu = np.concatenate([[0.0, 256.0, 19712.0, 19712.5, 19967.0, 19968.0, 65535.0, 65536.0, -7.0, 70000.0],
                         rng.uniform(-1000, 66500, 200)]).astype(np.float32)
    log_b = rng.uniform(-3.0, 12.0, mu.shape).astype(np.float32)
    lo = (256.0 * c + np.arange(256.0)) if fine else 256.0 * np.arange(256.0)
    width = 1.0 if fine else 256.0
    mu_t, log_b_t = torch.from_numpy(mu).requires_grad_(), torch.from_numpy(log_b).requires_grad_()
    got = prior_term(torch.from_numpy(lo.astype(np.float32)), width, mu_t, log_b_t)
    want = np.stack([prior_term_ref(lo.astype(np.float32), width, m, b) for m, b in zip(mu, log_b)])
    assert np.abs(got.detach().numpy() - want).max() < 1e-4
    got.sum().backward()
    assert torch.isfinite(mu_t.grad).all() and torch.isfinite(log_b_t.grad).all()


def test_prior_term_gradients_are_autograds():
    """training.prior's hand-written backward against autograd through the reference's formula written in torch
    (every bin's one-sided term or the term of the bin holding mu, floored): the gradients of mu and log b agree."""
    import math

    from pywavernn.reference.prior import PRIOR_FLOOR
    from training.prior import prior_term

    def by_autograd(lo, width, mu, log_b):
        inv_b, mu = torch.exp(-log_b)[..., None], mu[..., None]
        d = torch.maximum(lo - mu, mu - (lo + width))
        side = torch.log(-torch.expm1(-width * inv_b)) - math.log(2.0)
        a, c = ((lo - mu) * inv_b).clamp(max=0.0), ((lo + width - mu) * inv_b).clamp(min=0.0)
        inside = torch.log((-0.5 * (torch.expm1(a) + torch.expm1(-c))).clamp(min=1e-30))
        return torch.where(d > 0, side - d * inv_b, inside).clamp(min=float(PRIOR_FLOOR))

    torch.manual_seed(0)
    for lo, width in ((torch.arange(256.0) * 256, 256.0), (torch.arange(256.0) + 256 * 40, 1.0)):
        mu = (torch.rand(300, dtype=torch.float64) * 70000 - 2000).float()
        log_b = torch.rand(300) * 15 - 3
        weights = torch.randn(300, 256)
        grads = []
        for fn in (prior_term, by_autograd):
            m, b = mu.clone().requires_grad_(), log_b.clone().requires_grad_()
            (fn(lo, width, m, b) * weights).sum().backward()
            grads.append((m.grad, b.grad))
        for got, want in zip(*grads):
            assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max()), (width, got, want)
