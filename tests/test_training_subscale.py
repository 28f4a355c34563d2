"""Tests of training/ on Subscale WaveRNN configs (model.subscale_factor B > 1, docs/format.md §9).

What it is: the config checks of a subscale run (F >= 1, windows a multiple of B samples), the RQ3 config pair
(subscale_small.json and plain_small.json differ only in the subscale fields), the windowed subscale loss against
SubscaleWaveRNN.nll_bits, and a tiny pruned subscale run that trains, checkpoints, is interrupted after a
checkpoint and resumed to bit-identical parameters, exports a block-sparse subscale model file that
pywavernn.modelfile.load_model accepts, and vocodes with pywavernn.Vocoder(backend="reference").
What it is not: a quality test; all audio is synthetic, written in tmp_path.

Run: python -m pytest tests/test_training_subscale.py -q      (a few seconds on one CPU thread)
Letters: B subscale factor, F future horizon, W window frames, hop samples per frame, T samples.
"""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

import pywavernn
from pywavernn import fold
from pywavernn.modelfile import load_model
from training import data as tdata
from training import trainer as ttrainer
from training.config import TrainConfig
from training.subscale_model import SubscaleWaveRNN
from training.checkpoint import load_checkpoint, save_checkpoint
from training.export import export_checkpoint
from training.cli import main
from training.losses import SubscaleWindowedNLL, batch_inputs
from training.trainer import train

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "training" / "configs"
TINY = TrainConfig.from_json_file(CONFIGS / "tiny.json")
FEATURES = TINY.features
HOP = FEATURES.hop_length
B, F = 4, 1
SUBSCALE_MODEL = {**TINY.model.to_dict(), "subscale_factor": B, "subscale_horizon": F, "subscale_channels": 8,
                  "subscale_layers": 2}
STEPS, INTERRUPT_AT = 12, 8


def subscale_config(**changes) -> TrainConfig:
    d = TINY.to_dict()
    d.update({"model": SUBSCALE_MODEL, "window_frames": 4, "steps": STEPS, "checkpoint_every": 4,
              "pruning": {**d["pruning"], "subscale_proj": 0.5, "subscale_convs": 0.5}})
    d.update(changes)
    return TrainConfig.from_dict(d)


def write_tone(path: Path, seconds: float, freq: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24000)) / 24000
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    sf.write(str(path), x.astype(np.float32), 24000, subtype="PCM_16")


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    for i in range(4):
        write_tone(d / f"utt{i}.wav", 0.3 + 0.05 * i, 180.0 + 40 * i, i)
    return d


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


# ------------------------------------------------------------------------------------------------- configs

def test_rq3_pair_differs_only_in_the_subscale_fields():
    sub = TrainConfig.from_json_file(CONFIGS / "subscale_small.json")
    plain = TrainConfig.from_json_file(CONFIGS / "plain_small.json")
    assert sub.model.subscale_factor == 16 and sub.model.subscale_horizon == 2 and sub.model.hidden_size == 512
    assert plain.model.subscale_factor == 1 and plain.model.hidden_size == 512
    a, b = sub.to_dict(), plain.to_dict()
    assert sorted(k for k in a if a[k] != b[k]) == ["comment", "model", "pruning"]
    # pruning differs only in the context network's own ratios (the plain model has no context network)
    assert {k for k in a["pruning"] if a["pruning"][k] != b["pruning"].get(k)} <= {"subscale_proj", "subscale_convs"}
    assert {k for k in a["model"] if a["model"][k] != b["model"].get(k)} <= {
        "subscale_factor", "subscale_horizon", "subscale_channels", "subscale_layers", "subscale_previous",
        "subscale_context_order", "subscale_linear", "subscale_prior"}
    assert (sub.window_frames * sub.features.hop_length) % sub.model.subscale_factor == 0
    assert "RQ3" in sub.comment and "RQ3" in plain.comment


@pytest.mark.parametrize("change, match", [
    ({"model": {**SUBSCALE_MODEL, "subscale_horizon": 0}}, "subscale_horizon"),
    ({"model": {**SUBSCALE_MODEL, "subscale_factor": 8}, "window_frames": 3}, "multiple of 2"),
    ({"model": {**SUBSCALE_MODEL, "subscale_factor": 3}}, "power of two"),
    ({"model": TINY.model.to_dict()}, "only a subscale model"),
    ({"model": {**SUBSCALE_MODEL, "subscale_channels": 6}}, r"block 4x4 does not divide subscale.proj.weight"),
    ({"model": {**SUBSCALE_MODEL, "subscale_channels": 6},
      "pruning": {"target_sparsity": 0.5, "t0": 2, "S": 6, "prune_every": 2, "block": [4, 4],
                  "subscale_convs": 0.5}}, r"block 4x4 does not divide subscale.conv\*.weight \(6x6\)"),
    ({"model": TINY.model.to_dict(), "pruning": {"target_sparsity": 0.5, "t0": 2, "S": 6, "prune_every": 2,
                                                  "block": [4, 4], "subscale_convs": 0.5}},
     "only a subscale model .* context layers"),
    ({"pruning": {"target_sparsity": 0.5, "t0": 2, "S": 6, "prune_every": 2, "block": [4, 4],
                  "subscale_proj": 1.0}}, "pruning"),
    ({"model": {**SUBSCALE_MODEL, "subscale_linear": -1}}, "subscale_linear"),
    ({"model": {**SUBSCALE_MODEL, "subscale_linear": 65}}, "subscale_linear"),
    ({"model": {**TINY.model.to_dict(), "subscale_linear": 2}}, "subscale_linear = 2: only a subscale model"),
    ({"model": {**SUBSCALE_MODEL, "subscale_residual": True}},
     "subscale_residual = true: this option was removed from pywavernn after commit"),
])
def test_impossible_subscale_configs_are_value_errors(change, match):
    with pytest.raises(ValueError, match=match):
        subscale_config(**change)


# ---------------------------------------------------------------------------------------------------- loss

@pytest.mark.parametrize("previous, extra", [("sub_tensor", {}), ("time", {}),
                                             ("time", {"subscale_context_order": "lag"})])
def test_windowed_loss_is_the_models_nll_when_conditioning_is_constant(speech_dir, cache_dir, previous, extra):
    """With the conditioning independent of the mel, SubscaleWindowedNLL must give SubscaleWaveRNN.nll_bits on
    the window's samples: the rest of its path is the model's own forward, for every model config."""
    cfg = subscale_config(model={**SUBSCALE_MODEL, "subscale_previous": previous, **extra})
    torch.manual_seed(0)
    net = SubscaleWaveRNN(cfg.model, FEATURES)
    with torch.no_grad():
        for conv in net.cond_convs:
            conv.weight.zero_()
    utt = tdata.FeatureCache(cache_dir, FEATURES).load(speech_dir / "utt1.wav")
    w, pad = cfg.window_frames, cfg.model.cond_lookahead
    batch = tdata.WindowSet([utt], HOP, w, pad).batch(np.array([0, 5]))
    with torch.no_grad():
        windowed = SubscaleWindowedNLL(net)(*batch_inputs(batch, torch.device("cpu")))
        direct = net.nll_bits(torch.from_numpy(batch.mel[:, :w]), torch.from_numpy(batch.audio))
    assert float(windowed) == pytest.approx(float(direct), rel=1e-5)
    assert 4.0 < float(direct) < 17.0


# ------------------------------------------------------------------------------- train, resume, export

class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory, speech_dir, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    result = train(subscale_config(), speech_dir, out, cache_dir=cache_dir, progress=False)
    assert result["step"] == STEPS and result["valid_bits"] is not None
    return out


def _rows(path: Path) -> list[tuple]:
    with open(path, newline="") as fh:
        return [(r["step"], r["train_bits"], r["valid_bits"], r["sparsity_R"]) for r in csv.DictReader(fh)]


def test_run_is_pruned_and_logs_held_out_nll(uninterrupted_run):
    ckpt = load_checkpoint(uninterrupted_run / "checkpoint.pt")
    assert ckpt["step"] == STEPS and ckpt["config"]["model"]["subscale_factor"] == B
    assert set(ckpt["pruner"]["masks"]) == {"gru.weight_hh_l0", "O1.weight", "O2.weight", "O3.weight", "O4.weight",
                                            "gru.weight_ih_l0", "ctx_convs.0.weight", "ctx_convs.1.weight"}
    w = ckpt["model"]["gru.weight_hh_l0"]
    assert float((w == 0).float().mean()) == 0.5
    # The context projection's columns of weight_ih are pruned to pruning.subscale_proj; the other columns are not.
    net = SubscaleWaveRNN(TrainConfig.from_dict(ckpt["config"]).model, FEATURES)
    proj = ckpt["model"]["gru.weight_ih_l0"][:, net._column_slices[2]]
    assert float((proj == 0).float().mean()) == 0.5
    # Each tap of each dilated context layer (8 x 8: four 4x4 blocks) keeps its own half of the blocks.
    for layer in range(2):
        w = ckpt["model"][f"ctx_convs.{layer}.weight"]
        for tap in (0, 1):
            blocks = w[:, :, tap].reshape(2, 4, 2, 4).abs().sum(dim=(1, 3))
            assert int((blocks == 0).sum()) == 2, (layer, tap)
    assert ckpt["data"]["valid_is_train"] is False and np.isfinite(ckpt["metrics"]["valid_bits"])
    rows = _rows(uninterrupted_run / "log.csv")
    assert [r[0] for r in rows] == [str(s) for s in range(2, STEPS + 1, 2)]
    assert rows[-1][3] == "0.5" and rows[-1][2] != ""


def test_interrupted_run_resumes_bit_identical(tmp_path, speech_dir, cache_dir, uninterrupted_run, monkeypatch):
    out = tmp_path / "run"
    real_save = ttrainer.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        if state["step"] == INTERRUPT_AT:
            raise Interrupted

    monkeypatch.setattr(ttrainer, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        train(subscale_config(), speech_dir, out, cache_dir=cache_dir, progress=False)
    monkeypatch.setattr(ttrainer, "save_checkpoint", real_save)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == INTERRUPT_AT
    result = train(None, speech_dir, out, resume=True, cache_dir=cache_dir, progress=False)
    assert result["step"] == STEPS
    a, b = load_checkpoint(uninterrupted_run / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert a["ranks"][0]["params_sha256"] == b["ranks"][0]["params_sha256"]
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert a["metrics"]["valid_bits"] == b["metrics"]["valid_bits"]
    assert _rows(out / "log.csv") == _rows(uninterrupted_run / "log.csv")


def test_export_writes_a_subscale_model_that_vocodes(tmp_path, uninterrupted_run):
    path = tmp_path / "subscale.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(path)]) == 0
    model = load_model(path)
    mc = model.model_config
    assert (mc.subscale_factor, mc.subscale_horizon, mc.subscale_channels, mc.subscale_layers) == (B, F, 8, 2)
    assert mc.block_shape == (4, 4) and model.feature_config == FEATURES
    assert all(model.is_sparse(n) for n in ("gru.R", "out.O1", "out.O2", "out.O3", "out.O4"))
    assert model.sparsity()["gru.R"] == 0.5
    assert model.is_sparse("subscale.proj.weight") and model.sparsity()["subscale.proj.weight"] == 0.5
    assert model.provenance["training"]["step"] == STEPS
    assert model.provenance["training"]["pruning"]["targets"]["subscale.conv*.weight"] == 0.5
    # The dilated layers stay dense tensors in the file (docs/format.md §9) with half of each tap's blocks zero;
    # the engine packs only the nonzero ones.
    conv = model.dense("subscale.conv0.weight")
    assert conv.shape == (8, 8, 2) and float((conv == 0).mean()) == 0.5
    # The file holds the checkpoint's weights: it gives the torch model's NLL back.
    net = SubscaleWaveRNN(mc, FEATURES)
    net.load_state_dict(load_checkpoint(uninterrupted_run / "checkpoint.pt")["model"])
    back = SubscaleWaveRNN.from_model(model)
    mel, audio = torch.randn(1, 3, FEATURES.n_mels), torch.randint(-2000, 2000, (1, 3 * HOP), dtype=torch.int16)
    with torch.no_grad():
        assert float(net.nll_bits(mel, audio)) == float(back.nll_bits(mel, audio))
    vocoder = pywavernn.Vocoder(str(path), backend="reference")
    n_frames = 3
    wav = vocoder.vocode(np.random.default_rng(0).standard_normal((n_frames, FEATURES.n_mels)).astype(np.float32))
    assert wav.dtype == np.int16 and wav.shape == (n_frames * HOP,)
    dense = tmp_path / "dense.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(dense), "--dense"]) == 0
    assert not load_model(dense).is_sparse("gru.R")
    assert load_model(dense).model_config.subscale_factor == B


def test_checkpoint_with_the_removed_subscale_residual_exports_and_resumes_only_where_it_changed_nothing(
        tmp_path, speech_dir, cache_dir, uninterrupted_run):
    """A checkpoint whose config gives subscale_residual (removed, issue 25 item 3) at false exports the same model
    as one without it; at true (a network this pywavernn no longer defines) export and resume refuse it by name."""
    ckpt = load_checkpoint(uninterrupted_run / "checkpoint.pt")
    assert "subscale_residual" not in ckpt["config"]["model"]  # to_dict() never wrote it at false
    runs = {}
    for value in (False, True):
        runs[value] = tmp_path / f"residual_{str(value).lower()}"
        shutil.copytree(uninterrupted_run, runs[value])
        config = {**ckpt["config"], "model": {**ckpt["config"]["model"], "subscale_residual": value}}
        save_checkpoint(runs[value] / "checkpoint.pt", {**ckpt, "config": config})
    want = export_checkpoint(uninterrupted_run / "checkpoint.pt", tmp_path / "now.safetensors")
    got = export_checkpoint(runs[False] / "checkpoint.pt", tmp_path / "false.safetensors")
    assert got.model_config == want.model_config
    for name in want.weights:
        np.testing.assert_array_equal(got.dense(name), want.dense(name))
    for call in (lambda: export_checkpoint(runs[True] / "checkpoint.pt", tmp_path / "true.safetensors"),
                 lambda: train(None, speech_dir, runs[True], resume=True, cache_dir=cache_dir, progress=False)):
        with pytest.raises(ValueError, match="subscale_residual = true: this option was removed .*retrain without it"):
            call()
    assert not (tmp_path / "true.safetensors").exists()


def test_score_gives_the_exported_models_nll_from_the_checkpoint(tmp_path, speech_dir, uninterrupted_run):
    from training.score import score

    path = tmp_path / "subscale.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(path)]) == 0
    a, b = (score(p, speech_dir, log=lambda m: None) for p in (uninterrupted_run / "checkpoint.pt", path))
    assert a["what"] == f"checkpoint at step {STEPS}" and b["what"] == "model file" and a["n_files"] == 4
    for key in ("nll_bits", "coarse", "fine"):
        assert abs(a["mean"][key] - b["mean"][key]) < 1e-4, key
    assert abs(a["mean"]["nll_bits"] - a["mean"]["coarse"] - a["mean"]["fine"]) < 1e-9
    assert len(a["by_subtensor"]["total"]) == B
    # the same bits as training.evaluate's subscale NLL for the exported file
    from training.evaluate import _TorchSubscaleNLL
    from pywavernn import features
    from pywavernn.audio import float_to_int16, load_audio

    audio = load_audio(speech_dir / "utt0.wav", 24000)
    bits, _ = _TorchSubscaleNLL(load_model(path)).nll(features.log_mel(audio, FEATURES), float_to_int16(audio))
    assert abs(bits - b["files"][0]["nll_bits"]) < 1e-6


@pytest.mark.parametrize("prior", ["none", "laplace"])
def test_linear_estimates_train_export_and_vocode(tmp_path, speech_dir, cache_dir, prior):
    """A run with model.subscale_linear (docs/format.md §9), with or without the prior, trains, exports its
    estimates (zero outside their mask), their GRU columns and the prior's weights, and the file gives the
    checkpoint's NLL back and vocodes with the C engine."""
    from training.score import score

    cfg = subscale_config(model={**SUBSCALE_MODEL, "subscale_linear": 2, "subscale_prior": prior})
    assert TrainConfig.from_dict(cfg.to_dict()).model.subscale_linear == 2
    assert "subscale_linear" not in subscale_config().to_dict()["model"]  # earlier configs keep their hashes
    assert ("subscale_prior" in cfg.to_dict()["model"]) == (prior != "none")
    out = tmp_path / "run"
    result = train(cfg, speech_dir, out, cache_dir=cache_dir, progress=False)
    assert result["step"] == STEPS and np.isfinite(result["valid_bits"])
    path = tmp_path / "linear.safetensors"
    assert main(["export", str(out / "checkpoint.pt"), "-o", str(path)]) == 0
    model = load_model(path)
    assert model.model_config.subscale_linear == 2
    assert model.weights["subscale.linear.weight"].shape == (B, F + 2, B, 2)
    assert np.all(model.weights["subscale.linear.weight"][~fold.linear_estimate_mask(B, F)] == 0)
    assert model.model_config.subscale_prior == prior and ("subscale.prior.bias" in model.weights) == (prior != "none")
    a, b = (score(p, speech_dir, log=lambda m: None) for p in (out / "checkpoint.pt", path))
    assert abs(a["mean"]["nll_bits"] - b["mean"]["nll_bits"]) < 1e-4
    mel = np.random.default_rng(0).standard_normal((3, FEATURES.n_mels)).astype(np.float32)
    wav = pywavernn.Vocoder(str(path), exact=True).vocode(mel)
    assert wav.dtype == np.int16 and wav.shape == (3 * HOP,)
    np.testing.assert_array_equal(wav, pywavernn.Vocoder(str(path), backend="reference").vocode(mel))


def test_linear_headroom_finds_interpolation_beats_prediction_on_band_limited_audio(tmp_path, capsys):
    """research.linear_headroom on band-limited noise (nothing above 0.3 x Nyquist): the last sub-tensor, which
    sees the next sample, is estimated far better than a plain model's past-only predictor; s = 0, which sees only
    its own previous sample, far worse. A missing folder is a clear error (exit 2)."""
    from research import linear_headroom

    rng = np.random.default_rng(3)
    spectrum = np.fft.rfft(rng.standard_normal(48000))
    spectrum[int(0.3 * spectrum.size):] = 0
    x = np.fft.irfft(spectrum)
    sf.write(str(tmp_path / "band.wav"), (0.3 * x / np.abs(x).max()).astype(np.float32), 24000, subtype="PCM_16")
    signals = [np.round(0.3 * x / np.abs(x).max() * 32767)]
    past, _ = linear_headroom.fit(signals, list(range(-8, 0)), None, 4)
    last, _ = linear_headroom.fit(signals, fold.linear_estimate_taps(3, 4, 1).tolist(), 3, 4)
    first, _ = linear_headroom.fit(signals, fold.linear_estimate_taps(0, 4, 1).tolist(), 0, 4)
    assert last < past - 10 and first > past + 10, (past, last, first)
    assert linear_headroom.main(["--data", str(tmp_path), "--factor", "4", "--horizon", "1", "--past", "8"]) == 0
    out = capsys.readouterr().out
    assert "| plain: the previous 8 samples | 8 |" in out and "subscale s = 3" in out
    assert linear_headroom.main(["--data", str(tmp_path / "missing")]) == 2
    assert "--data: expected a directory" in capsys.readouterr().err
