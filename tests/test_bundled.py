"""The bundled model (pywavernn/data/default.safetensors): present, what its card says, used by default, and trained.

What it is: checks that the package ships the model README and docs/quality.md describe (a Sparse WaveRNN in
16x1 blocks on the standard features, with the campaign's recipe, a few MB, its licence terms in the file), that
`Vocoder()` and the CLI without --model use it, that the compiled engine and the NumPy reference give it the same
samples, and, on real speech from ../shared/data (skipped without it), that its resynthesis has the input's
spectral envelope, far more closely than a random model of the same shape.
What it is not: the quality evaluation (docs/quality.md, `python -m training.evaluate`).

Run: python -m pytest tests/test_bundled.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import pywavernn
from pywavernn import audio as pa
from pywavernn import cli
from pywavernn.config import FeatureConfig
from pywavernn.modelfile import load_model
from pywavernn.reference.plain import generate_ref
from pywavernn.testing import random_model
from pywavernn.common import draw_uniforms
from pywavernn.vocoder import BUNDLED_MODEL, Vocoder, bundled_model_path


def test_bundled_model_is_shipped_and_is_what_its_card_says():
    assert bundled_model_path() == BUNDLED_MODEL and BUNDLED_MODEL.is_file()
    assert BUNDLED_MODEL.stat().st_size < 4 * 2**20  # "a few MB at most"
    model = load_model(BUNDLED_MODEL)
    mc = model.model_config
    assert model.feature_config == FeatureConfig()  # 24 kHz, 80 mels: what pywavernn.features computes by default
    assert mc.subscale_factor == 1 and mc.block_shape == (16, 1)
    # H = 384 with the campaign's recipe: pre-emphasis, 32-tap linear prediction, the Laplace prior
    assert (mc.hidden_size, mc.preemphasis, mc.linear_order, mc.prior) == (384, 0.85, 32, "laplace")
    # 90 % of each gate's 9,216 blocks of 16x1, rounded to whole blocks: 922 kept per gate; O1..O4 75 %
    assert model.is_sparse("gru.R") and model.sparsity()["gru.R"] == pytest.approx(0.9, abs=1e-4)
    assert all(model.sparsity()[f"out.O{i}"] == pytest.approx(0.75) for i in range(1, 5))
    notes = model.provenance["notes"]
    assert "research and demonstration use only" in notes["licence"]
    assert "piper-joe" in notes["data"]
    assert model.provenance["training"]["step"] == 6900  # the card: the campaign's run c13 (docs/quality.md)
    assert all(run in notes["recipe"] for run in ("c6", "c10", "c13"))  # its lineage


def test_vocoder_and_cli_default_to_it(tmp_path):
    voc = Vocoder()
    assert voc.model_config == load_model(BUNDLED_MODEL).model_config
    t = np.arange(24000 // 2) / 24000
    wav = (0.3 * np.sin(2 * np.pi * 150 * t) * np.sin(2 * np.pi * 2 * t)).astype(np.float32)
    src = tmp_path / "in.wav"
    sf.write(str(src), wav, 24000, subtype="PCM_16")
    outs = []
    for name in ("a.wav", "b.wav"):
        assert cli.main(["resynth", str(src), "-o", str(tmp_path / name), "--seed", "3"]) == 0
        data, sr = sf.read(str(tmp_path / name), dtype="int16")
        assert sr == 24000 and data.shape == (wav.shape[0],)
        outs.append(data)
    assert np.array_equal(outs[0], outs[1])  # seeded
    mel = voc.mel(pa.load_audio(src, voc.sample_rate))  # the 16-bit file the CLI read
    assert np.array_equal(voc.vocode(mel, seed=3)[: wav.shape[0]], outs[0])


def test_engine_and_reference_give_it_the_same_samples():
    model = load_model(BUNDLED_MODEL)
    mel = np.random.default_rng(1).normal(-5.0, 2.0, size=(4, 80)).astype(np.float32)
    u = draw_uniforms(mel.shape[0] * model.feature_config.hop_length, 5)
    want = generate_ref(model, mel, u)
    if model.model_config.preemphasis:
        want, _ = pa.deemphasis(want, model.model_config.preemphasis)
    got = Vocoder(model, exact=True).vocode(mel, seed=5)
    assert np.array_equal(got, want)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_resynthesis_of_real_speech_follows_its_spectrum(shared_data):
    """A trained vocoder reproduces the log-mel it was given (correlation 0.8+ on real, unseen speech), far more
    closely than the same architecture with random weights (by 0.3+): a plain random model gives noise whose
    log-mel is unrelated (|correlation| ~0.03), one with pre-emphasis and linear prediction noise already tilted
    and shaped somewhat like speech (0.3-0.45 over seeds 0-2)."""
    voc = Vocoder()
    wav = pa.load_audio(shared_data / "asterisk-en" / "digits_1.flac", voc.sample_rate)
    mel = voc.mel(wav)
    trained = voc.mel(pa.int16_to_float(voc.vocode(mel, seed=0))[: wav.shape[0]])
    rand = Vocoder(random_model(voc.model_config, seed=0))
    untrained = voc.mel(pa.int16_to_float(rand.vocode(mel, seed=0))[: wav.shape[0]])
    assert _corr(mel, trained) > 0.8
    assert _corr(mel, trained) - abs(_corr(mel, untrained)) > 0.3
    assert pywavernn.__version__
