"""Tests of training/metrics.py and the `python -m training.evaluate` command.

Metric sanity on a synthetic voiced signal (identical signals score best, added noise scores monotonically worse),
the Griffin-Lim floor's shape and fidelity to its mel, and the command end to end on two tiny generated files with a
small random model. Needs the `eval` extra (pesq, pystoi; matplotlib for the figure and librosa for the F0 tracker
where a test uses them): each test skips, saying which package is missing, without it; the MOS parts skip without
distillmos.

Run: `python -m pytest tests/test_evaluate.py -q` (about 20 s on 2 cores).
"""

import importlib.util
import json
import sys
from itertools import pairwise

import numpy as np
import pytest

EVAL_EXTRA = "needs the eval extra (pip install -e \".[eval]\")"
pytest.importorskip("pesq", reason=f"pesq not installed: {EVAL_EXTRA}")
pytest.importorskip("pystoi", reason=f"pystoi not installed: {EVAL_EXTRA}")

from pywavernn import features
from pywavernn.audio import save_audio
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.modelfile import save_model
from pywavernn.testing import random_model
from training import metrics

SR = 24000
HAS_DISTILLMOS = importlib.util.find_spec("distillmos") is not None


def voiced(seconds: float = 2.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Speech-like float32 audio: a glottal pulse train (f0 gliding 100..160 Hz) through three formant resonators,
    in syllables of ~0.25 s separated by short pauses, peak 0.5."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 130 + 30 * np.sin(2 * np.pi * 1.3 * t)
    phase = np.cumsum(f0 / sr)
    source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64) + 0.01 * rng.standard_normal(n)
    x = source
    for fc, bw in ((700, 130), (1220, 70), (2600, 160)):
        r = np.exp(-np.pi * bw / sr)
        x = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * fc / sr), r * r], x)
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 0.5
    x = x * envelope
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def noisy(x: np.ndarray, level: float, seed: int = 1) -> np.ndarray:
    return (x + level * np.random.default_rng(seed).standard_normal(x.shape[0])).astype(np.float32)


@pytest.fixture(scope="module")
def speech():
    return voiced()


LEVELS = (0.003, 0.02, 0.1)


def test_identical_signals_score_best(speech):
    assert metrics.pesq_wb(speech, speech) > 4.5
    assert metrics.stoi(speech, speech) == pytest.approx(1.0, abs=1e-6)
    assert metrics.mel_cepstral_distortion(speech, speech) == 0.0


def test_pesq_falls_with_noise(speech):
    scores = [metrics.pesq_wb(speech, noisy(speech, a)) for a in LEVELS]
    assert scores[0] < 4.5 and all(a > b for a, b in pairwise(scores)), scores


def test_stoi_falls_with_noise(speech):
    scores = [metrics.stoi(speech, noisy(speech, a)) for a in LEVELS]
    assert scores[0] < 1.0 and all(a > b for a, b in pairwise(scores)), scores


def test_mcd_rises_with_noise(speech):
    scores = [metrics.mel_cepstral_distortion(speech, noisy(speech, a)) for a in LEVELS]
    assert scores[0] > 0.0 and all(a < b for a, b in pairwise(scores)), scores


def test_mcd_of_a_gain_change_is_zero(speech):
    # c0 (frame energy) is excluded, so a gain change leaves the distance at 0 wherever no band sits at the
    # log floor (the added noise keeps every band above it)
    x = noisy(speech, 0.01)
    assert metrics.mel_cepstral_distortion(x, 0.5 * x) == pytest.approx(0.0, abs=1e-6)


def test_metrics_refuse_unaligned_signals(speech):
    with pytest.raises(ValueError, match="equal length"):
        metrics.stoi(speech, speech[:-1])


@pytest.mark.parametrize("n", [SR // 3 + 17, 2 * SR])
def test_griffin_lim_length_finite_and_true_to_its_mel(speech, n):
    cfg = FeatureConfig()
    x = speech[:n]
    mel = features.log_mel(x, cfg)
    y = metrics.griffin_lim_from_mel(mel, cfg, n, seed=3)
    assert y.shape == (n,) and y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 1.0
    # its own mel is close to the one it was made from, in frames and bands with energy
    loud = mel > mel.max() - np.log(100.0)
    err = np.abs(features.log_mel(y, cfg) - mel)[loud].mean()
    assert err < 0.35, err
    assert metrics.mel_cepstral_distortion(x, y) < metrics.mel_cepstral_distortion(x, noisy(x, 0.1))


def test_mos_unavailable_gives_a_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "distillmos", None)  # import fails as if not installed
    with pytest.raises(metrics.MosUnavailable, match="DistillMOS could not be loaded"):
        metrics.MosPredictor()


@pytest.mark.skipif(not HAS_DISTILLMOS, reason="distillmos not installed")
def test_mos_predictor_in_range_and_deterministic(speech):
    mos = metrics.MosPredictor()
    a, b = mos(speech), mos(speech)
    assert 1.0 <= a <= 5.0 and a == b


def needs(*modules: str) -> None:
    """Skip the calling test, naming the package, where an evaluation package it uses is not installed."""
    for name in modules:
        pytest.importorskip(name, reason=f"{name} not installed: {EVAL_EXTRA}")


def test_evaluate_command_end_to_end(tmp_path, capsys):
    needs("matplotlib", "librosa")  # the spectrogram figure; the F0 tracker
    from training import evaluate

    data = tmp_path / "data"
    data.mkdir()
    for i, sec in enumerate((0.8, 1.1)):  # 16 kHz files, as asterisk-en: load_audio resamples them to 24 kHz
        x = voiced(sec, sr=16000, seed=i)
        save_audio(data / f"utt{i}.wav", x, 16000)
    (data / "notes.txt").write_text("not audio")
    ids = tmp_path / "ids.txt"
    ids.write_text("utt1\nutt0\n")
    mc = ModelConfig(hidden_size=32, out_hidden=16, cond_channels=8, cond_kernels=(3, 3), n_mels=80,
                     block_shape=(4, 4))
    model_path = tmp_path / "m.safetensors"
    save_model(random_model(mc, seed=5), model_path)
    out = tmp_path / "out"
    argv = [str(model_path), "--data", str(data), "--list", str(ids), "--out", str(out), "--seed", "7"]
    if not HAS_DISTILLMOS:
        argv.append("--no-mos")
    assert evaluate.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert [r["file"] for r in report["files"]] == ["utt1.wav", "utt0.wav"]
    for r in report["files"]:
        assert np.isfinite(r["nll_bits"]) and r["nll_bits"] > 0
        assert abs(r["seconds"] - (1.1 if r["file"] == "utt1.wav" else 0.8)) < 1e-3
        for system in ("pywavernn", "griffin_lim"):
            assert set(r[system]) >= {"pesq", "stoi", "mcd", "f0_cents", "vuv"}
            assert r[system]["stoi"] is not None and r[system]["mcd"] is not None
            assert r[system]["vuv"] is not None and 0 <= r[system]["vuv"] <= 1
    assert report["mean"]["nll_bits"]["n"] == 2
    assert report["mos"]["available"] is HAS_DISTILLMOS
    if HAS_DISTILLMOS:
        assert report["mean"]["original"]["mos"]["n"] == 2
    assert report["model"]["model_config"]["hidden_size"] == 32 and report["machine"]["cpu_count"]
    assert report["timing"]["vocode"]["seconds"] > 0
    md = (out / "report.md").read_text()
    assert "| system | PESQ-WB" in md and "Griffin-Lim (floor)" in md and "utt0.wav" in md
    assert "F0 RMSE cents" in md and report["settings"]["f0"]["tracker"] == "librosa.pyin"
    assert (out / "spectrograms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out

    # --limit and --no-nll on the folder itself (non-audio files ignored, sorted by name)
    out2 = tmp_path / "out2"
    assert evaluate.main([str(model_path), "--data", str(data), "--limit", "1", "--no-nll", "--no-mos",
                          "--figures", "0", "--out", str(out2)]) == 0
    report2 = json.loads((out2 / "report.json").read_text())
    assert [r["file"] for r in report2["files"]] == ["utt0.wav"] and report2["files"][0]["nll_bits"] is None
    assert not (out2 / "spectrograms.png").exists()


def test_evaluate_reports_a_missing_id(tmp_path, capsys):
    from training import evaluate

    (tmp_path / "ids.txt").write_text("nope\n")
    save_model(random_model(ModelConfig(hidden_size=32, out_hidden=16, cond_channels=8, cond_kernels=(3, 3),
                                        block_shape=(4, 4))), tmp_path / "m.safetensors")
    rc = evaluate.main([str(tmp_path / "m.safetensors"), "--data", str(tmp_path), "--list",
                        str(tmp_path / "ids.txt"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "no audio file for id 'nope'" in capsys.readouterr().err


def test_evaluate_scores_a_subscale_model_with_its_reference_nll(tmp_path):
    """A subscale model vocodes through the subscale engine and gets a teacher-forced NLL (the PyTorch twin's):
    the reference's bits (pywavernn.reference.subscale) on the audio zero-padded to whole frames, averaged over
    the file's real samples."""
    pytest.importorskip("torch", reason="the subscale NLL needs the train extra (torch)")
    needs("librosa")  # the F0 tracker
    from pywavernn import features as feat
    from pywavernn.audio import float_to_int16, load_audio
    from pywavernn.modelfile import load_model
    from pywavernn.audio import coarse_fine_split
    from pywavernn.reference.subscale import teacher_forced_logits_subscale_ref
    from training import evaluate

    data = tmp_path / "data"
    data.mkdir()
    save_audio(data / "utt0.wav", voiced(0.4, sr=24000, seed=3), 24000)
    mc = ModelConfig(hidden_size=32, out_hidden=16, cond_channels=8, cond_kernels=(3, 3), n_mels=80,
                     subscale_factor=4, subscale_horizon=1, subscale_channels=8, subscale_layers=2)
    model_path = tmp_path / "sub.safetensors"
    save_model(random_model(mc, seed=2), model_path)
    out = tmp_path / "out"
    assert evaluate.main([str(model_path), "--data", str(data), "--out", str(out), "--no-mos", "--figures", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "SubscaleWaveRNN" in report["nll"]
    rec = report["files"][0]
    assert rec["pywavernn"]["stoi"] is not None and not rec["errors"]
    model = load_model(model_path)
    wav = load_audio(data / "utt0.wav", 24000)
    mel = feat.log_mel(wav, model.feature_config)
    n = wav.shape[0]
    total = mel.shape[0] * model.feature_config.hop_length
    assert total > n  # 0.4 s is not whole frames: the padding path is exercised
    audio = float_to_int16(np.pad(wav, (0, total - n)))
    lc, lf = teacher_forced_logits_subscale_ref(model, mel, audio)
    c, f = coarse_fine_split(audio)

    def bits(logits, k):
        z = logits.astype(np.float64)
        z = z - z.max(axis=1, keepdims=True)
        return np.log(np.exp(z).sum(axis=1)) - z[np.arange(k.size), k]

    want = float(np.mean((bits(lc, c) + bits(lf, f))[:n]) / np.log(2.0))
    assert rec["nll_bits"] == pytest.approx(want, abs=1e-4)
    # the same bits by sub-tensor s = t mod 4: sums per file, means pooled over files in the summary and table
    s = np.arange(n) % 4
    by_sub = report["mean"]["nll_by_subtensor"]
    assert rec["nll_by_subtensor"]["count"] == by_sub["count"] == np.bincount(s).tolist()
    for name, (logits, k) in (("coarse", (lc, c)), ("fine", (lf, f))):
        want_s = np.bincount(s, weights=bits(logits, k)[:n] / np.log(2.0)) / np.bincount(s)
        np.testing.assert_allclose(by_sub[name], want_s, atol=1e-4)
    np.testing.assert_allclose(np.dot(by_sub["total"], by_sub["count"]) / n, want, atol=1e-4)
    assert "NLL by sub-tensor" in (out / "report.md").read_text()


def test_f0_errors_measure_pitch_shift_and_voicing():
    needs("librosa")
    x = voiced(2.0)
    track = metrics.f0_track(x)
    same = metrics.f0_errors(track, track)
    assert same["f0_cents"] == 0.0 and same["vuv"] == 0.0 and same["voiced_both"] > 50
    t = np.arange(SR) / SR

    def tone(f0):  # a steady harmonic tone
        return sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 8)).astype(np.float32)

    err = metrics.f0_errors(metrics.f0_track(tone(150.0)), metrics.f0_track(tone(150.0 * 2 ** (100 / 1200))))
    assert 90 < err["f0_cents"] < 110 and err["vuv"] < 0.1  # a semitone: 100 cents
    noise = (0.1 * np.random.default_rng(1).standard_normal(x.shape[0])).astype(np.float32)
    assert metrics.f0_errors(track, metrics.f0_track(noise))["vuv"] > 0.3
    with pytest.raises(ValueError, match="at least"):
        metrics.f0_track(x[:100])

