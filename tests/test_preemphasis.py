"""Pre-emphasis (docs/format.md §10): the filter pair, the config field, and every path that honours it.

A model with preemphasis a generates the same network samples as the model without it, and returns them
de-emphasised: offline on each backend, streamed in chunks (equal to offline), and its NLL scores the
pre-emphasised audio. Training windows carry the pre-emphasised samples with the file's own mel.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pywavernn import Vocoder
from pywavernn.audio import deemphasis, preemphasis
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.modelfile import Model
from pywavernn.testing import random_model

FEAT = FeatureConfig(n_mels=20)
CFG = ModelConfig(hidden_size=16, out_hidden=16, cond_channels=8, cond_kernels=(3, 1), n_mels=20)


def _pair(coef=0.85, seed=3):
    plain = random_model(CFG, FEAT, seed=seed)
    emph = Model(dataclasses.replace(CFG, preemphasis=coef), FEAT, plain.weights, dict(plain.provenance))
    emph.validate()
    return plain, emph


def test_filters_invert_and_chain():
    rng = np.random.default_rng(0)
    s = (rng.standard_normal(5000) * 3000).astype(np.int16)
    e = preemphasis(s, 0.85)
    assert e[0] == s[0] and e[1] == np.int16(np.rint(s[1] - 0.85 * s[0]))
    back, _ = deemphasis(e, 0.85)
    assert np.max(np.abs(back.astype(int) - s.astype(int))) <= 4  # the rounding of e, accumulated by the IIR
    whole, last = deemphasis(e, 0.85)
    parts, state = [], 0.0
    for a, b in ((0, 1), (1, 700), (700, 700), (700, 5000)):
        out, state = deemphasis(e[a:b], 0.85, state)
        parts.append(out)
    assert np.array_equal(np.concatenate(parts), whole) and state == last
    assert np.array_equal(preemphasis(s, 0.0), s)


def test_filters_clip_and_reject_bad_input():
    loud = np.array([32767, -32768, 32767, -32768], np.int16)
    assert np.array_equal(preemphasis(loud, 0.9), [32767, -32768, 32767, -32768])
    with pytest.raises(ValueError, match=r"coefficient in \[0, 1\)"):
        preemphasis(loud, 1.0)
    with pytest.raises(ValueError, match=r"coefficient in \[0, 1\)"):
        deemphasis(loud, -0.1)
    with pytest.raises(TypeError, match="1-D int16"):
        preemphasis(loud.astype(np.float32), 0.5)
    with pytest.raises(TypeError, match="1-D int16"):
        deemphasis(loud.reshape(2, 2), 0.5)
    with pytest.raises(ValueError, match="finite"):
        deemphasis(loud, 0.5, float("nan"))


def test_config_field():
    assert "preemphasis" not in CFG.to_dict()  # files without it are written as before
    c = dataclasses.replace(CFG, preemphasis=0.85)
    assert ModelConfig.from_dict(c.to_dict()) == c
    for bad in (1.0, -0.5, True, "0.85"):
        with pytest.raises(ValueError, match="preemphasis"):
            dataclasses.replace(CFG, preemphasis=bad)
    with pytest.raises(ValueError, match="plain model only"):
        dataclasses.replace(CFG, preemphasis=0.85, subscale_factor=4, subscale_horizon=1)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_vocode_is_the_plain_models_samples_deemphasised(backend):
    plain, emph = _pair()
    mel = np.random.default_rng(1).standard_normal((6, 20)).astype(np.float32)
    raw = Vocoder(plain, backend=backend).vocode(mel, seed=5)
    out = Vocoder(emph, backend=backend).vocode(mel, seed=5)
    assert np.array_equal(out, deemphasis(raw, 0.85)[0])
    assert not np.array_equal(out, raw)


def test_stream_equals_offline_and_file_round_trip(tmp_path):
    from pywavernn.modelfile import load_model, save_model

    _, emph = _pair(0.9)
    path = tmp_path / "emph.safetensors"
    save_model(emph, path)
    loaded = load_model(path)
    assert loaded.model_config.preemphasis == 0.9
    voc = Vocoder(path)
    mel = np.random.default_rng(2).standard_normal((11, 20)).astype(np.float32)
    want = voc.vocode(mel, seed=9)
    stream = voc.stream(seed=9)
    pieces = [stream.push(mel[a:b]) for a, b in ((0, 1), (1, 4), (4, 4), (4, 11))] + [stream.finish()]
    assert np.array_equal(np.concatenate(pieces), want)


def test_nll_scores_the_preemphasised_audio():
    plain, emph = _pair()
    mel = np.random.default_rng(3).standard_normal((4, 20)).astype(np.float32)
    audio = (np.random.default_rng(4).standard_normal(4 * FEAT.hop_length) * 2000).astype(np.int16)
    for backend in ("cpu", "reference"):
        want = Vocoder(plain, backend=backend).nll(mel, preemphasis(audio, 0.85))
        assert Vocoder(emph, backend=backend).nll(mel, audio) == want


def test_training_windows_carry_preemphasised_samples(tmp_path):
    sf = pytest.importorskip("soundfile")
    from training.data import build_datasets

    rng = np.random.default_rng(5)
    (tmp_path / "d").mkdir()
    for i in range(3):
        x = 0.3 * np.sin(2 * np.pi * 200 * np.arange(12000) / 24000) + 0.01 * rng.standard_normal(12000)
        sf.write(str(tmp_path / "d" / f"u{i}.wav"), x.astype(np.float32), 24000, subtype="PCM_16")
    kw = dict(feature_config=FEAT, window_frames=4, pad=1, cache_dir=tmp_path / "c", valid_fraction=0.34)
    plain = build_datasets(tmp_path / "d", **kw)
    emph = build_datasets(tmp_path / "d", **kw, preemphasis=0.85)
    for a, b in zip(plain.train.utterances, emph.train.utterances):
        assert np.array_equal(b.audio, preemphasis(a.audio, 0.85)) and np.array_equal(b.mel, a.mel)
