"""The PyTorch side of the linear prediction with taps from the mel (docs/format.md §13, ModelConfig.mel_lpc): the
twin against the NumPy reference (teacher-forced logits and NLL, free-running samples, the export round trip), its
starting point (the mel's taps alone) and the windowed loss's estimate (the taps of the window's frames). The scan
loss against WindowedNLL is in tests/test_fast_gru.py, a short training run whose export the engines run and
--init-from learned taps in tests/test_training.py.

Run: python -m pytest tests/test_mel_lpc_training.py -q
Letters: P linear order, H hidden units.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the twin and the losses need the train extra")

from pywavernn import modelfile as fmt  # noqa: E402
from pywavernn.config import FeatureConfig, ModelConfig  # noqa: E402
from pywavernn.reference import plain as ref  # noqa: E402
from pywavernn.testing import uniforms_clear_of_class_edges  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.export import export_model  # noqa: E402
from training.losses import WindowedNLL  # noqa: E402
from training.model import WaveRNN  # noqa: E402
from training.nets import build_net  # noqa: E402

TOL = 1e-4
HOP, N_FRAMES = 300, 5
CONFIG = ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, cond_kernels=(3, 3), block_shape=(4, 4),
                     linear_order=8, prior="laplace", preemphasis=0.85, mel_lpc=True)
TINY = TrainConfig.from_json_file(Path(__file__).resolve().parent.parent / "training" / "configs" / "tiny.json")
TINY_LPC = TrainConfig.from_dict({**TINY.to_dict(), "model": {**TINY.model.to_dict(), "linear_order": 4,
                                                              "prior": "laplace", "mel_lpc": True}})


def make_net(seed: int = 3) -> WaveRNN:
    """Scaled random weights, a random correction to the mel's taps and a prior the heads move."""
    torch.manual_seed(seed)
    net = WaveRNN(CONFIG, FeatureConfig(hop_length=HOP))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(("O", "gru", "cond")):
                p.mul_(3.0 if name.startswith("O") else 2.0)
        net.linear_weight.copy_(0.1 * torch.randn(8))
        net.prior_weight.copy_(0.05 * torch.randn(2, CONFIG.out_hidden))
        net.prior_bias.copy_(torch.tensor([4.0, 2.0]))
    return net


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    mel = rng.normal(-5.0, 1.5, (N_FRAMES, CONFIG.n_mels)).astype(np.float32)
    t = np.arange(N_FRAMES * HOP)
    audio = (8000 * np.sin(2 * np.pi * 140 * t / 24000) + rng.normal(0, 300, t.size)).astype(np.int16)
    return mel, audio, rng.random((t.size, 2), dtype=np.float32)


def test_twin_matches_the_reference(tmp_path, inputs):
    mel, audio, uniforms = inputs
    net = make_net()
    model = export_model(net, net.feature_config, tmp_path / "lpc.safetensors")
    loaded = fmt.load_model(tmp_path / "lpc.safetensors")
    assert loaded.model_config.mel_lpc and loaded.model_config == CONFIG
    with torch.no_grad():
        lc_t, lf_t = (x[0].numpy() for x in net(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None]))
        nll_t = float(net.nll_bits(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None]))
    lc_r, lf_r = ref.teacher_forced_logits_ref(loaded, mel, audio)
    assert np.abs(lc_t - lc_r).max() < TOL and np.abs(lf_t - lf_r).max() < TOL
    assert nll_t == pytest.approx(ref.nll_ref(loaded, mel, audio), rel=1e-5)
    safe = uniforms_clear_of_class_edges(lambda u: ref.generate_ref(model, mel, u, trace=True), uniforms, 1e-5)
    samples_t = net.generate(mel, safe)
    samples_r = ref.generate_ref(model, mel, safe)
    first = np.flatnonzero(samples_t != samples_r)
    assert first.size == 0, f"samples differ first at step {first[0]}"
    assert len(np.unique(samples_t)) > 30
    back = WaveRNN.from_model(loaded)
    for (name, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    # the mel's taps matter: the twin without them (the same weights, mel_lpc off) predicts otherwise
    fixed = WaveRNN(replace(CONFIG, mel_lpc=False), net.feature_config)
    fixed.load_state_dict(net.state_dict())
    with torch.no_grad():
        lf_fixed = fixed(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None])[1][0].numpy()
    assert np.abs(lf_fixed - lf_t).max() > 1e-3


def test_a_fresh_twin_predicts_with_the_mels_taps_alone():
    assert not WaveRNN(CONFIG, FeatureConfig(hop_length=HOP)).linear_weight.detach().any()
    assert WaveRNN(replace(CONFIG, mel_lpc=False)).linear_weight.tolist() == [1.0] + [0.0] * 7


def _batch(cfg, n=3, seed=0):
    """Windows as training.data makes them, the last at an utterance start (crop 1, one frame fewer), with the P
    samples before each (zeros before the utterance)."""
    hop, w, pad = cfg.features.hop_length, cfg.window_frames, cfg.model.cond_lookahead
    rng = np.random.default_rng(seed)
    frames = w + 1 + 2 * pad
    mel = torch.from_numpy((rng.standard_normal((n, frames, cfg.model.n_mels)) - 3).astype(np.float32))
    audio = torch.from_numpy(rng.integers(-3000, 3000, (n, w * hop)).astype(np.int16))
    prev = torch.from_numpy(rng.integers(-3000, 3000, (n, cfg.model.linear_order)).astype(np.int16))
    prev[-1] = 0
    return mel, [pad] * (n - 1) + [1], [frames] * (n - 1) + [frames - 1], audio, prev


def test_the_windows_estimate_uses_its_frames_taps():
    """est(t) of a window (zeros before it, at an utterance start) is the reference's sum with the taps of the
    frame nearest each sample among the window's frames j0 .. j0 + W: float32(A_j + linear.weight), bit for bit."""
    from pywavernn import lpc

    torch.manual_seed(1)
    net = build_net(TINY_LPC)
    with torch.no_grad():
        net.linear_weight.copy_(0.2 * torch.randn(4))
    mel, crop, length, audio, prev = _batch(TINY_LPC)
    with torch.no_grad():
        _, est = WindowedNLL(net).sample_inputs(audio, prev, mel, crop, length)
    hop, w = TINY_LPC.features.hop_length, TINY_LPC.window_frames
    for i in range(audio.shape[0]):
        frames = mel[i, crop[i]:crop[i] + w + 1].numpy()
        taps = lpc.mel_lpc_taps(frames, TINY_LPC.features, 4, 0.0) + net.linear_weight.detach().numpy()
        per_sample = taps[lpc.frame_of_sample(np.arange(audio.shape[1]), hop, w + 1)]
        v = ref.sample_value_ref(np.concatenate([prev[i].numpy(), audio[i].numpy()]))
        past = ref.past_values_ref(v, 4)[:, 4:]  # v(t - 1) .. v(t - 4) of each window sample t
        want = ref.linear_prediction_ref(np.ascontiguousarray(per_sample.T), past)
        np.testing.assert_array_equal(est[i].numpy(), want)
