"""Tests of the linear prediction with taps from the mel (docs/format.md §13, ModelConfig.mel_lpc) outside training.

What it is: pywavernn.lpc (Levinson-Durbin against SciPy's Toeplitz solver, taps of a stable all-pole filter
whatever the mel, each frame's taps independent of the others passed, taps that predict a resonance as well as
the ideal per-frame LPC), the config (left out of the JSON at its default, refusals), the conditioning (g carries
each frame's taps after its 3H values), the NumPy reference (est uses the taps of the frame nearest the sample;
streaming == one call; teacher forcing == generation's logits) and the C engine against the reference: the very
samples in exact mode on every ISA and thread count, chunked calls, streaming through Vocoder, the NLL.
What it is not: the twin and the losses (tests/test_parity_torch.py), nor the fixed-taps prediction of §11
(tests/test_linear_prediction.py).

Run: python -m pytest tests/test_mel_lpc.py -q
Letters: P linear order, H hidden units, F frames, T samples.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.linalg
import scipy.signal

from pywavernn import _native, kernels, lpc
from pywavernn.audio import float_to_int16
from pywavernn.conditioning import conditioning_ref, conditioning_width
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.features import log_mel
from pywavernn.modelfile import Model
from pywavernn.reference import plain
from pywavernn.testing import random_model

CONFIG = ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, linear_order=8, prior="laplace",
                     preemphasis=0.85, mel_lpc=True)
FEATURES = FeatureConfig()
needs_native = pytest.mark.skipif(not _native.available(), reason="compiled extension not built")


def _setup(n_frames=5, seed=1, density=None, block=(16, 1), prior="laplace"):
    cfg = dataclasses.replace(CONFIG, block_shape=block, prior=prior)
    model = random_model(cfg, seed=seed, density=density)
    mel = (np.random.default_rng(seed + 1).standard_normal((n_frames, cfg.n_mels)) - 2.0).astype(np.float32)
    uniforms = np.random.default_rng(seed + 2).random((n_frames * 300, 2), dtype=np.float32)
    return model, mel, uniforms


def _resonance(f_hz: float, n: int, seed: int) -> np.ndarray:
    pole = 0.97 * np.exp(2j * np.pi * f_hz / 24000)
    x = scipy.signal.lfilter([1.0], np.poly([pole, pole.conjugate()]).real,
                             np.random.default_rng(seed).normal(size=n))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


# --- pywavernn.lpc ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_levinson_durbin_solves_the_normal_equations(seed):
    x = np.random.default_rng(seed).normal(size=4000)
    x = scipy.signal.lfilter([1.0], [1.0, -0.9, 0.4], x)
    r = np.array([np.dot(x[: x.size - k], x[k:]) for k in range(13)])
    np.testing.assert_allclose(lpc.levinson_durbin(r, 12), scipy.linalg.solve_toeplitz(r[:12], r[1:13]),
                               rtol=1e-8, atol=1e-10)
    assert not lpc.levinson_durbin(np.zeros(5), 4).any()  # no signal: no prediction


@pytest.mark.parametrize("fill", [None, np.log(FEATURES.log_floor), 12.0])
def test_taps_are_finite_stable_and_frame_by_frame(fill):
    rng = np.random.default_rng(3)
    mel = (rng.standard_normal((9, 80)) * 3 - 3).astype(np.float32)
    if fill is not None:
        mel[:] = fill  # silence at the log floor, or a huge flat spectrum
    taps = lpc.mel_lpc_taps(mel, FEATURES, 16, 0.85)
    assert taps.shape == (9, 16) and taps.dtype == np.float32 and np.isfinite(taps).all()
    for a in taps.astype(np.float64):  # the synthesis filter 1 / (1 - sum a_k z^-k) is stable, its poles pulled in
        assert np.abs(np.roots(np.concatenate([[1.0], -a]))).max() < lpc.BANDWIDTH_EXPANSION + 1e-4
    np.testing.assert_array_equal(lpc.mel_lpc_taps(mel[3:6], FEATURES, 16, 0.85), taps[3:6])


def test_taps_from_the_mel_predict_a_resonance_like_the_ideal_lpc():
    x = _resonance(1200.0, 24000, 0)
    taps = lpc.mel_lpc_taps(log_mel(x, FEATURES), FEATURES, 4, 0.0)
    e = float_to_int16(x).astype(np.float64)
    past = np.stack([np.concatenate([np.zeros(k + 1), e[:-k - 1]]) for k in range(4)], axis=1)
    frames = lpc.frame_of_sample(np.arange(e.size), 300, taps.shape[0])
    residual = e - np.einsum("tk,tk->t", past, taps[frames].astype(np.float64))
    ideal = np.linalg.lstsq(past, e, rcond=None)[0]
    gain_db = 10 * np.log10(np.sum(e ** 2) / np.sum(residual ** 2))
    ideal_db = 10 * np.log10(np.sum(e ** 2) / np.sum((e - past @ ideal) ** 2))
    assert gain_db > ideal_db - 1.0 and gain_db > 10.0, (gain_db, ideal_db)


def test_bandwidth_expansion_scales_tap_p_by_gamma_to_the_p(monkeypatch):
    rng = np.random.default_rng(4)
    mel = (rng.standard_normal((6, 80)) * 3 - 3).astype(np.float32)
    expanded = lpc.mel_lpc_taps(mel, FEATURES, 16, 0.85).astype(np.float64)
    monkeypatch.setattr(lpc, "BANDWIDTH_EXPANSION", 1.0)
    plain_taps = lpc.mel_lpc_taps(mel, FEATURES, 16, 0.85).astype(np.float64)
    gamma = 0.96 ** np.arange(1, 17)
    np.testing.assert_allclose(expanded, plain_taps * gamma, rtol=2e-7, atol=1e-7)
    assert np.abs(expanded).sum() < np.abs(plain_taps).sum()


def _predictor_gain(taps: np.ndarray) -> np.ndarray:
    """max over w of |sum_p a_p e^{-i w p}| per frame: how much louder est is than a past at that frequency."""
    w = np.linspace(0.0, np.pi, 513)
    return np.abs(taps.astype(np.float64) @ np.exp(-1j * np.outer(np.arange(1, taps.shape[1] + 1), w))).max(axis=1)


def test_the_floor_bounds_the_predictors_gain_in_an_empty_band(monkeypatch):
    # speech-like tilted noise with nothing above 7 kHz, as a G.722 codec leaves it: the mel says 7-12 kHz is empty,
    # and the predictor's gain there is what a free-running model's noise in that band meets (lpc's docstring)
    x = np.random.default_rng(5).normal(size=48000)
    x = scipy.signal.lfilter([1.0], [1.0, -0.9], scipy.signal.lfilter(scipy.signal.firwin(255, 7000, fs=24000), 1, x))
    mel = log_mel((0.3 * x / np.abs(x).max()).astype(np.float32), FEATURES)
    assert _predictor_gain(lpc.mel_lpc_taps(mel, FEATURES, 32, 0.85)).max() < 10.0
    monkeypatch.setattr(lpc, "NOISE_FLOOR", 1e-4)  # -40 dB: the gain about doubles (17.5 here)
    assert _predictor_gain(lpc.mel_lpc_taps(mel, FEATURES, 32, 0.85)).max() > 15.0


def test_frame_of_sample_is_the_nearest_frame_centre():
    t = np.arange(0, 1500)
    np.testing.assert_array_equal(lpc.frame_of_sample(t, 300, 5), np.minimum(np.floor(t / 300 + 0.5), 4))


def test_taps_refuse_bad_arguments():
    mel = np.zeros((2, 80), np.float32)
    for order in (0, 1024, 2.0):
        with pytest.raises(ValueError, match="order"):
            lpc.mel_lpc_taps(mel, FEATURES, order, 0.85)
    with pytest.raises(ValueError, match="preemphasis"):
        lpc.mel_lpc_taps(mel, FEATURES, 8, 1.0)
    with pytest.raises(ValueError):
        lpc.mel_lpc_taps(np.zeros((2, 40), np.float32), FEATURES, 8, 0.85)


# --- config and conditioning ------------------------------------------------------------------------------------

def test_config_leaves_the_default_out_and_refuses_what_cannot_run():
    assert "mel_lpc" not in dataclasses.replace(CONFIG, mel_lpc=False).to_dict()
    d = CONFIG.to_dict()
    assert d["mel_lpc"] is True and ModelConfig.from_dict(d) == CONFIG
    with pytest.raises(ValueError, match="needs linear_order >= 1"):
        ModelConfig(linear_order=0, mel_lpc=True)
    with pytest.raises(ValueError, match="true or false"):
        ModelConfig(linear_order=4, mel_lpc=1)
    with pytest.raises(ValueError, match="plain model"):
        ModelConfig(subscale_factor=4, linear_order=4, mel_lpc=True)


def test_conditioning_carries_each_frames_taps():
    model, mel, _ = _setup()
    g = conditioning_ref(model, mel)
    h3 = 3 * CONFIG.hidden_size
    assert g.shape == (5, h3 + 8) == (5, conditioning_width(CONFIG))
    without = Model(dataclasses.replace(CONFIG, mel_lpc=False), model.feature_config, model.weights, {})
    np.testing.assert_array_equal(g[:, :h3], conditioning_ref(without, mel))
    want = lpc.mel_lpc_taps(mel, model.feature_config, 8, 0.85) + model.weights["linear.weight"]
    np.testing.assert_array_equal(g[:, h3:], want)


# --- the reference ------------------------------------------------------------------------------------------------

def test_reference_predicts_with_the_nearest_frames_taps_and_streams():
    model, mel, uniforms = _setup(n_frames=3)
    g = conditioning_ref(model, mel)
    samples, steps = plain.generate_ref(model, mel, uniforms, trace=True)
    state = plain.GenerationState.fresh(model)
    parts = [plain.generate_cond_ref(model, g, uniforms[a:b], state) for a, b in ((0, 1), (1, 449), (449, 900))]
    np.testing.assert_array_equal(np.concatenate(parts), samples)
    # the same samples from a window of g that starts later (streaming), its first row frame 1
    state = plain.GenerationState.fresh(model)
    head = plain.generate_cond_ref(model, g, uniforms[:300], state)
    tail = plain.generate_cond_ref(model, g[1:], uniforms[300:], state, g_first=1)
    np.testing.assert_array_equal(np.concatenate([head, tail]), samples)
    # teacher forcing on the generated samples gives generation's logits
    logits_c, logits_f = plain.teacher_forced_logits_ref(model, mel, samples)
    assert np.abs(logits_c - steps["logits_c"]).max() < 1e-4 and np.abs(logits_f - steps["logits_f"]).max() < 1e-4
    # and the frame taps matter: with linear.weight alone the samples differ
    fixed = Model(dataclasses.replace(CONFIG, mel_lpc=False), model.feature_config, model.weights, {})
    assert not np.array_equal(plain.generate_ref(fixed, mel, uniforms), samples)


# --- the C engine ---------------------------------------------------------------------------------------------------

@needs_native
@pytest.mark.parametrize("density, block, prior", [(None, (16, 1), "laplace"), (0.4, (16, 1), "none"),
                                                   (0.5, (4, 4), "laplace")])
def test_exact_mode_gives_the_reference_samples(density, block, prior):
    from pywavernn.engines.cpu import CpuEngine

    model, mel, uniforms = _setup(density=density, block=block, prior=prior)
    want = plain.generate_ref(model, mel, uniforms)
    assert len(np.unique(want)) > 100
    g = conditioning_ref(model, mel)
    for isa in kernels.available_isas():
        for threads in (1, 2):
            engine = CpuEngine(model, exact=True, threads=threads, isa=isa)
            np.testing.assert_array_equal(engine.generate(g, uniforms), want, err_msg=f"{isa} x{threads}")
            state = engine.new_state()
            cuts = [0, 1, 150, 151, 299, 300, 749, 1500]
            parts = [engine.generate(g, uniforms[a:b], state) for a, b in zip(cuts[:-1], cuts[1:])]
            np.testing.assert_array_equal(np.concatenate(parts), want, err_msg=f"{isa} x{threads} chunks")
    engine = CpuEngine(model, exact=True)
    state = engine.new_state()
    head = engine.generate(g, uniforms[:600], state)
    tail = engine.generate(g[2:], uniforms[600:], state, cond_first=2)
    np.testing.assert_array_equal(np.concatenate([head, tail]), want)
    with pytest.raises(ValueError, match=str(conditioning_width(CONFIG))):
        engine.generate(np.ascontiguousarray(g[:, :3 * CONFIG.hidden_size]), uniforms)


@needs_native
def test_nll_and_streaming_vocoder():
    from pywavernn import Vocoder
    from pywavernn.engines.cpu import CpuEngine

    model, mel, uniforms = _setup(n_frames=6, density=0.4)
    audio = plain.generate_ref(model, mel, uniforms)
    g = conditioning_ref(model, mel)
    assert abs(CpuEngine(model, exact=True).nll(g, audio) - plain.nll_ref(model, mel, audio)) < 1e-4
    voc = Vocoder(model)
    offline = voc.vocode(mel, seed=4)
    stream = voc.stream(seed=4)
    pieces = [stream.push(mel[j:j + 1]) for j in range(mel.shape[0])] + [stream.finish()]
    np.testing.assert_array_equal(np.concatenate(pieces), offline)
