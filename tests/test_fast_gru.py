"""training.fast_gru and training.losses.ScanWindowedNLL against torch.nn.GRU and WindowedNLL.

The scan's forward and hand-written backward (the C++ loops and the Python loops) give torch.nn.GRU's outputs and
every gradient; the scan loss gives WindowedNLL's loss and every parameter's gradient, so a run may switch
gru_impl and train the same model; with the linear prediction and prior of docs/format.md §11 too, whose est(t)
sees the same (noisy, with input_noise) past samples as the GRU's byte inputs.

Run: python -m pytest tests/test_fast_gru.py -q
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")

from training.config import TrainConfig  # noqa: E402
from training.fast_gru import extension, gru_scan  # noqa: E402
from training.losses import ScanWindowedNLL, WindowedNLL, loss_module  # noqa: E402
from training.nets import build_net  # noqa: E402

from pathlib import Path  # noqa: E402

torch.set_num_threads(1)
TINY = TrainConfig.from_json_file(Path(__file__).resolve().parent.parent / "training" / "configs" / "tiny.json")


def _impls():
    out = [pytest.param(False, id="python")]
    out.append(pytest.param(True, id="cpp", marks=pytest.mark.skipif(
        extension() is None, reason="the C++ loops could not be built here (no compiler); the Python loops ran")))
    return out


def _reference(seed=0, steps=37, batch=3, inputs=5, hidden=8):
    torch.manual_seed(seed)
    gru = torch.nn.GRU(inputs, hidden)
    x = torch.randn(steps, batch, inputs, requires_grad=True)
    h0 = torch.randn(1, batch, hidden, requires_grad=True)
    return gru, x, h0


@pytest.mark.parametrize("use_ext", _impls())
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scan_matches_torch_gru(use_ext, seed):
    gru, x, h0 = _reference(seed)
    out_ref, last_ref = gru(x, h0)
    g_out, g_last = torch.randn_like(out_ref), torch.randn_like(last_ref[0])
    ((out_ref * g_out).sum() + (last_ref[0] * g_last).sum()).backward()
    params = (x, h0, gru.weight_hh_l0, gru.bias_hh_l0, gru.weight_ih_l0, gru.bias_ih_l0)
    want = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    gi = torch.nn.functional.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)
    out, last = gru_scan(gi, h0[0], gru.weight_hh_l0, gru.bias_hh_l0, use_extension=use_ext)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, last_ref[0], rtol=1e-5, atol=1e-6)
    ((out * g_out).sum() + (last * g_last).sum()).backward()
    for name, a, b in zip(("x", "h0", "w_hh", "b_hh", "w_ih", "b_ih"), want, (p.grad for p in params)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("use_ext", _impls())
def test_scan_bf16_close_to_fp32(use_ext):
    """bf16 products: the outputs and gradients stay within bf16's rounding (~2^-8) of the fp32 scan."""
    gru, x, h0 = _reference(3, steps=50, hidden=16)
    gi = torch.nn.functional.linear(x, gru.weight_ih_l0, gru.bias_ih_l0).detach()
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        w = gru.weight_hh_l0.detach().clone().requires_grad_()
        out, _ = gru_scan(gi, h0[0].detach(), w, gru.bias_hh_l0.detach(), dtype, use_extension=use_ext)
        out.square().sum().backward()
        results.append((out.detach(), w.grad))
    (o32, g32), (o16, g16) = results
    assert float((o32 - o16).abs().max()) < 0.03
    assert float((g32 - g16).norm() / g32.norm()) < 0.03


def test_cpp_and_python_loops_agree():
    if extension() is None:
        pytest.skip("the C++ loops could not be built here (no compiler)")
    gru, x, h0 = _reference(4, steps=20, hidden=12)
    gi = torch.nn.functional.linear(x, gru.weight_ih_l0, gru.bias_ih_l0).detach().requires_grad_()
    grads = []
    for use_ext in (False, True):
        gi.grad = None
        out, _ = gru_scan(gi, h0[0].detach(), gru.weight_hh_l0.detach(), gru.bias_hh_l0.detach(),
                          use_extension=use_ext)
        out.sum().backward()
        grads.append((out.detach(), gi.grad.clone()))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-4, atol=1e-6)


def test_scan_rejects_bad_shapes():
    gi = torch.zeros(4, 2, 9)
    with pytest.raises(ValueError, match="gi: expected shape"):
        gru_scan(torch.zeros(4, 2, 8), torch.zeros(2, 3), torch.zeros(9, 3), torch.zeros(9))
    with pytest.raises(ValueError, match="h0: expected shape"):
        gru_scan(gi, torch.zeros(2, 4), torch.zeros(9, 3), torch.zeros(9))
    with pytest.raises(ValueError, match="float32 CPU tensor"):
        gru_scan(gi.double(), torch.zeros(2, 3), torch.zeros(9, 3), torch.zeros(9))
    with pytest.raises(ValueError, match="matmul_dtype"):
        gru_scan(gi, torch.zeros(2, 3), torch.zeros(9, 3), torch.zeros(9), torch.float16)


def _window_batch(cfg, n=3, seed=0):
    hop, w, pad = cfg.features.hop_length, cfg.window_frames, cfg.model.cond_lookahead
    rng = np.random.default_rng(seed)
    frames = w + 1 + 2 * pad
    mel = torch.from_numpy(rng.standard_normal((n, frames, cfg.model.n_mels)).astype(np.float32))
    audio = torch.from_numpy(rng.integers(-3000, 3000, (n, w * hop)).astype(np.int16))
    prev = torch.from_numpy(rng.integers(-3000, 3000, (n,)).astype(np.int16))
    # one window at an utterance start (crop 1, one frame fewer), as training.data makes them
    return mel, [pad] * (n - 1) + [1], [frames] * (n - 1) + [frames - 1], audio, prev


def _assert_scan_loss_matches_windowed_nll(net, impl: str, args) -> tuple[dict, dict]:
    """loss_module(net, impl) against WindowedNLL on one batch: the loss, and every parameter's gradient relative to
    its largest entry, agree (float32 summation order for "scan", bf16 rounding for "scan-bf16"). Returns the
    gradients (WindowedNLL's, the scan's) by parameter name."""
    assert isinstance(loss_module(net, impl), ScanWindowedNLL)
    grads = []
    for module in (WindowedNLL(net), loss_module(net, impl)):
        net.zero_grad()
        loss = module(*args)
        loss.backward()
        grads.append((float(loss.detach()), {k: p.grad.clone() for k, p in net.named_parameters()}))
    (l_ref, g_ref), (l_new, g_new) = grads
    tol = 1e-5 if impl == "scan" else 1e-2
    assert abs(l_new - l_ref) < tol * abs(l_ref)
    for k in g_ref:
        scale = float(g_ref[k].abs().max()) + 1e-12
        assert float((g_new[k] - g_ref[k]).abs().max()) / scale < (1e-4 if impl == "scan" else 0.05), k
    return g_ref, g_new


@pytest.mark.parametrize("impl", ["scan", "scan-bf16"])
def test_scan_loss_matches_windowed_nll(impl):
    torch.manual_seed(0)
    net = build_net(TINY)
    _, g_new = _assert_scan_loss_matches_windowed_nll(net, impl, _window_batch(TINY))
    # the input mask holds: c_t's coarse-row weights get no gradient
    from pywavernn.modelfile import coarse_rows_of_gates
    rows = torch.from_numpy(coarse_rows_of_gates(TINY.model.hidden_size))
    assert float(g_new["gru.weight_ih_l0"][rows, 2].abs().max()) == 0.0


def test_loss_module_refuses_unknown_impl():
    net = build_net(TINY)
    with pytest.raises(ValueError, match="gru_impl"):
        loss_module(net, "cudnn")
    with pytest.raises(ValueError, match="gru_impl"):
        TrainConfig.from_dict({**TINY.to_dict(), "gru_impl": "fast"})


def test_input_noise_perturbs_only_the_past_and_only_in_training():
    torch.manual_seed(0)
    net = build_net(TINY)
    args = _window_batch(TINY)
    clean = float(WindowedNLL(net)(*args).detach())
    losses = {}
    for impl in ("torch", "scan"):
        module = loss_module(net, impl, input_noise=300.0)
        torch.manual_seed(1)
        losses[impl] = float(module(*args).detach())  # gradients on: noisy past samples
        with torch.no_grad():
            assert abs(float(module(*args)) - clean) < 1e-4  # validation (no gradients) sees the clean past
    assert abs(losses["torch"] - losses["scan"]) < 1e-4 * abs(clean)  # the same noise, drawn the same way
    assert abs(losses["torch"] - clean) > 1e-5  # an untrained net barely uses its inputs: a small change
    # the noise reaches s_{t-1} only: the targets and c_t are the audio's own
    module = loss_module(net, "scan", input_noise=300.0)
    audio, prev = args[3], args[4]
    c_past, f_past = module.past_bytes(audio, prev)
    u = torch.cat([prev[:, None], audio[:, :-1]], 1).to(torch.int32) + 32768
    assert not torch.equal(c_past * 256 + f_past, u.long())
    assert float(((c_past * 256 + f_past) - u.long()).float().std()) < 400
    with pytest.raises(ValueError, match="input_noise"):
        TrainConfig.from_dict({**TINY.to_dict(), "input_noise": -1})


def _linear_config(prior: str = "laplace") -> TrainConfig:
    """TINY with linear prediction of order 4 (docs/format.md §11), with or without the prior."""
    return TrainConfig.from_dict({**TINY.to_dict(), "model": {**TINY.model.to_dict(), "linear_order": 4,
                                                              "prior": prior}})


def _linear_batch(cfg, n=3, seed=0):
    """_window_batch with the 4 samples before each window (Batch.prev (N, 4)); the last window at an utterance
    start, so zeros before it."""
    mel, crop, length, audio, _ = _window_batch(cfg, n, seed)
    prev = torch.from_numpy(np.random.default_rng(seed + 1).integers(-3000, 3000, (n, 4)).astype(np.int16))
    prev[-1] = 0
    return mel, crop, length, audio, prev


@pytest.mark.parametrize("prior", ["none", "laplace"])
@pytest.mark.parametrize("impl", ["scan", "scan-bf16"])
def test_scan_loss_matches_windowed_nll_with_linear_prediction(impl, prior):
    """ScanWindowedNLL == WindowedNLL, loss and every gradient (the taps' and the prior's too), for a net with
    linear prediction; random taps and prior weights so that every path carries a gradient."""
    cfg = _linear_config(prior)
    torch.manual_seed(0)
    net = build_net(cfg)
    with torch.no_grad():
        net.linear_weight.copy_(0.5 * torch.randn(4))
        if prior != "none":
            net.prior_weight.copy_(0.1 * torch.randn(2, cfg.model.out_hidden))
            net.prior_bias.copy_(torch.tensor([5.0, 3.0]))
    args = _linear_batch(cfg)
    g_ref, _ = _assert_scan_loss_matches_windowed_nll(net, impl, args)
    assert {"linear_weight"} <= set(g_ref) and (prior == "none") != ({"prior_weight", "prior_bias"} <= set(g_ref))
    assert all(float(g.abs().max()) > 1e-9 for g in g_ref.values()), "a parameter without gradient"
    with pytest.raises(ValueError, match=r"prev: a model with linear_order 4 needs"):
        WindowedNLL(net)(*args[:4], args[4][:, -1])


@pytest.mark.parametrize("impl", ["scan", "scan-bf16"])
def test_scan_loss_matches_windowed_nll_with_taps_from_the_mel(impl):
    """The same with the linear prediction's taps from the mel (docs/format.md §13): the taps' correction gets the
    same gradient in both."""
    cfg = TrainConfig.from_dict({**TINY.to_dict(), "model": {**_linear_config().model.to_dict(), "mel_lpc": True}})
    torch.manual_seed(0)
    net = build_net(cfg)
    with torch.no_grad():
        net.linear_weight.copy_(0.2 * torch.randn(4))
    g_ref, _ = _assert_scan_loss_matches_windowed_nll(net, impl, _linear_batch(cfg))
    assert float(g_ref["linear_weight"].abs().max()) > 1e-9


def test_input_noise_reaches_the_estimate_as_it_reaches_the_bytes():
    """With input_noise the est(t) of a step is computed from the very noisy samples whose bytes the step sees as
    c_{t-1}, f_{t-1}; and a model without linear prediction draws the noise it drew before §11 existed."""
    from training.model import linear_prediction, sample_values

    cfg = _linear_config()
    torch.manual_seed(0)
    net = build_net(cfg)
    with torch.no_grad():
        net.linear_weight.copy_(torch.randn(4))
    args = _linear_batch(cfg)
    audio, prev = args[3], args[4]
    module = loss_module(net, "scan", input_noise=300.0)
    torch.manual_seed(1)
    past = module.past_samples(audio, prev)
    torch.manual_seed(1)
    x, est = module.sample_inputs(audio, prev)
    clean = torch.cat([prev, audio[:, :-1]], dim=1)
    assert past.shape == clean.shape and not torch.equal(past, clean)
    c_past, f_past = ((past[:, 3:].to(torch.int32) + 32768) >> 8), ((past[:, 3:].to(torch.int32) + 32768) & 255)
    assert torch.equal(x[..., 0], net.byte_input[c_past.long()])
    assert torch.equal(x[..., 1], net.byte_input[f_past.long()])
    assert torch.equal(est, linear_prediction(net.linear_weight, sample_values(past), audio.shape[1]))
    with torch.no_grad():  # validation: the clean past
        assert torch.equal(module.sample_inputs(audio, prev)[1],
                           linear_prediction(net.linear_weight, sample_values(clean), audio.shape[1]))
    plain = loss_module(build_net(TINY), "scan", input_noise=300.0)
    audio0, prev0 = _window_batch(TINY)[3:]
    torch.manual_seed(1)
    noisy = plain.past_samples(audio0, prev0)
    torch.manual_seed(1)
    want = torch.cat([prev0[:, None], audio0[:, :-1]], 1).float() + 300.0 * torch.randn(audio0.shape)
    assert torch.equal(noisy, want.round().clamp(-32768, 32767).to(torch.int16))
