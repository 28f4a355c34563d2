"""Tests of training/: config, data pipeline, windows, checkpoints, kill-and-resume, DDP and export.

What it is: TrainConfig loading and its refusals; the data folder (plain and LJSpeech layouts), the feature
cache, and the handling of empty folders, unreadable, silent, short, stereo and non-24 kHz files; windows whose
conditioning equals the full utterance's; a tiny run killed by SIGKILL at a fixed step after its first checkpoint
and resumed, ending bit-identical to an uninterrupted run; a 2-process torchrun (gloo) run whose ranks stay in
sync; export to a model file that pywavernn.modelfile.load_model accepts at the trained sparsity; and the CLI's
errors. With the linear prediction and prior of docs/format.md §11: windows that carry the P samples before them,
the windowed loss, and a short run whose exported file the reference and the C engine run alike.
What it is not: a quality test (no real training here) and it never reads ../shared: all audio is synthetic,
written in tmp_path.

Run: python -m pytest tests/test_training.py -q          (about 30 s on one CPU thread; spawns 3 Pythons)
Letters: H hidden units, W window frames, hop samples per frame, F frames, T samples.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from pywavernn.audio import float_to_int16, int16_to_float, load_audio  # noqa: E402
from pywavernn.config import REMOVED_OPTIONS, FeatureConfig  # noqa: E402
from pywavernn.features import log_mel  # noqa: E402
from pywavernn.modelfile import load_model  # noqa: E402
from training import data as tdata  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.model import WaveRNN  # noqa: E402
from training.checkpoint import load_checkpoint, params_digest, save_checkpoint  # noqa: E402
from training.cli import main  # noqa: E402
from training.losses import WindowedNLL, resolve_gru_impl  # noqa: E402
from training.trainer import train  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "training" / "configs"
RESEARCH_CONFIGS = REPO / "research" / "configs"
TINY = TrainConfig.from_json_file(CONFIGS / "tiny.json")
FEATURES = TINY.features
HOP = FEATURES.hop_length
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                  "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def tiny_config(**changes) -> TrainConfig:
    d = TINY.to_dict()
    d.update(changes)
    return TrainConfig.from_dict(d)


def write_tone(path: Path, seconds=0.5, sr=24000, freq=220.0, amp=0.3, seed=0, stereo=False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    data = np.stack([x, 0.5 * x], axis=1) if stereo else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data.astype(np.float32), sr, subtype="VORBIS" if path.suffix == ".ogg" else "PCM_16")
    return data


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    for i in range(4):
        write_tone(d / f"utt{i}.wav", seconds=0.4 + 0.1 * i, freq=180.0 + 40 * i, seed=i)
    return d


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def run_cli(*args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------------------------------------------- config

def test_example_configs_load_and_round_trip():
    paths = sorted(CONFIGS.rglob("*.json"))
    assert len(paths) >= 7  # configs/ and configs/campaign/
    for path in paths:
        cfg = TrainConfig.from_json_file(path)
        assert TrainConfig.from_json(cfg.to_json()) == cfg, path.name
    default = TrainConfig.from_json_file(CONFIGS / "sparse_default.json")
    assert default.model.block_shape == (16, 1) and default.pruning.sparsities["gru.R_u"] == 0.95


def test_research_configs_load_and_the_rq2_pair_has_equal_nonzeros():
    """The study configs of research/configs/ (research/experiments.md) load and round-trip, as long as ModelConfig
    has their options: one whose option was removed is refused naming the option and the last commit that runs
    it, which its comment names too. The RQ2 pair has equal nonzero weights in R and O1..O4 once pruned."""
    paths = sorted(RESEARCH_CONFIGS.glob("*.json"))
    assert len(paths) >= 30
    refused = set()
    for path in paths:
        raw = json.loads(path.read_text())
        removed = sorted(REMOVED_OPTIONS.keys() & raw["model"].keys())
        if removed:
            last_commit = REMOVED_OPTIONS[removed[0]].last_commit
            assert f"commit {last_commit}" in raw["comment"], path.name
            with pytest.raises(ValueError, match=f"{path.name}: {removed[0]} = .*removed.*{last_commit}"):
                TrainConfig.from_json_file(path)
            refused.add(path.stem)
            continue
        cfg = TrainConfig.from_json_file(path)
        assert TrainConfig.from_json(cfg.to_json()) == cfg, path.name
    assert refused == {"rq3_subscale256_prev_c64s_res", "rq3_subscale256_prev_c64s_res_3k"}  # subscale_residual
    dense, sparse = (TrainConfig.from_json_file(RESEARCH_CONFIGS / f"rq2_{n}.json") for n in ("dense128", "sparse256"))

    def nonzeros(cfg):
        m, z = cfg.model, cfg.pruning.sparsities
        r = sum(m.hidden_size ** 2 * (1 - z[f"gru.R_{g}"]) for g in "ure")
        heads = sum(m.out_hidden * m.half * (1 - z[n]) for n in ("out.O1", "out.O3"))
        return r, heads + sum(256 * m.out_hidden * (1 - z[n]) for n in ("out.O2", "out.O4"))

    assert nonzeros(dense) == nonzeros(sparse)
    assert {k: v for k, v in dense.to_dict().items() if k not in ("model", "pruning", "comment")} == \
        {k: v for k, v in sparse.to_dict().items() if k not in ("model", "pruning", "comment")}


@pytest.mark.parametrize("change, match", [
    ({"pruning": {"target_sparsity": 1.0, "t0": 0, "S": 5}}, "target sparsity"),
    ({"pruning": {"target_sparsity": -0.5, "t0": 0, "S": 5}}, "target sparsity"),
    ({"pruning": {"target_sparsity": 0.5, "t0": 0, "S": 0}}, "S"),
    ({"pruning": {"target_sparsity": 0.5, "t0": 0, "S": 5, "block": [5, 1]}}, "block 5x1 does not divide gru.R_u"),
    ({"pruning": {"target_sparsity": 0.5, "t0": 0, "S": 5, "prune_outputs": True, "block": [1, 16]}},
     "does not divide out.O1"),
    ({"pruning": {"target_sparsity": 0.5, "t0": 10, "S": 5}}, "after the last step"),
    ({"pruning": {"target_sparsity": 0.5, "S": 5, "per_matrix": {"gru.W": 0.5}}}, "unknown matrix"),
    ({"model": {**TINY.model.to_dict(), "block_shape": [2, 2]}, "pruning": {"block": [4, 4]}}, "one place"),
    ({"features": {**FEATURES.to_dict(), "n_mels": 40}}, "n_mels"),
    ({"batch_size": 0}, "batch_size"),
    ({"optimiser": {"lr": -1}}, "optimiser.lr"),
    ({"optimiser": {"schedule": "linear"}}, "optimiser.schedule"),
    ({"device": "tpu"}, "device"),
    ({"learning_rate": 1e-3}, "unknown field"),
])
def test_impossible_configs_are_value_errors(change, match):
    d = TINY.to_dict()
    d["model"] = {k: v for k, v in d["model"].items() if k != "block_shape"}  # the block lives in pruning.block
    d.update(change)
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(d)


def test_bad_json_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        TrainConfig.from_json_file(path)


def test_lr_schedules():
    o = tiny_config(optimiser={"lr": 1.0, "warmup_steps": 4, "min_lr": 0.1}).optimiser
    assert [o.lr_at(t, 20) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert o.lr_at(4, 20) == pytest.approx(1.0) and o.lr_at(20, 20) == pytest.approx(0.1)
    cos = [o.lr_at(t, 20) for t in range(4, 21)]
    assert all(b <= a for a, b in zip(cos, cos[1:]))
    s = tiny_config(optimiser={"lr": 1.0, "warmup_steps": 0, "schedule": "step", "step_size": 3,
                               "gamma": 0.5, "min_lr": 0.0}).optimiser
    assert [s.lr_at(t, 20) for t in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]


# ------------------------------------------------------------------------------------------------------ data

def test_empty_folder_is_a_value_error_naming_it(tmp_path):
    empty = tmp_path / "no_audio_here"
    empty.mkdir()
    (empty / "notes.txt").write_text("not audio")
    with pytest.raises(ValueError, match="no_audio_here: no audio files found"):
        tdata.split_files(empty)
    with pytest.raises(ValueError, match="data folder not found"):
        tdata.split_files(tmp_path / "missing")


def test_unreadable_silent_and_short_files_are_skipped_and_counted(tmp_path, cache_dir):
    d = tmp_path / "mixed"
    for i in range(3):
        write_tone(d / f"good{i}.wav", seed=i)
    (d / "garbage.wav").write_bytes(b"RIFF\x00\x00not really a wave file" * 10)
    sf.write(str(d / "zeros.flac"), np.zeros(12000, np.int16), 24000, subtype="PCM_16")
    sf.write(str(d / "hiss.wav"), np.full(12000, 1, np.int16), 24000, subtype="PCM_16")  # peak 3e-5
    write_tone(d / "short.ogg", seconds=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = tdata.build_datasets(d, FEATURES, 3, 1, cache_dir, valid_fraction=0.0)
    messages = [str(w.message) for w in caught]
    assert "training: skipped 4 of 7 files (1 short, 2 silent, 1 unreadable)" in messages
    assert sum(m.startswith("skipping training file") for m in messages) == 4
    assert any("validating on the training files" in m for m in messages)
    assert ds.summary["skipped"] == {"unreadable": 1, "silent": 2, "short": 1}
    assert ds.summary["train_files"] == 3 and ds.summary["valid_is_train"]
    for name in ("garbage", "zeros", "hiss", "short"):
        assert all(name not in str(u.path) for u in ds.train.utterances)


def test_nothing_usable_is_a_value_error(tmp_path, cache_dir):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "a.wav").write_bytes(b"junk" * 100)
    sf.write(str(d / "b.wav"), np.zeros(24000, np.int16), 24000, subtype="PCM_16")
    with warnings.catch_warnings(), pytest.raises(ValueError, match="no usable training audio.*1 unreadable, 1 silent"):
        warnings.simplefilter("ignore")
        tdata.build_datasets(d, FEATURES, 3, 1, cache_dir)


@pytest.mark.parametrize("sr, stereo", [(44100, True), (16000, False), (22050, True)])
def test_other_rates_and_stereo_go_through_load_audio(tmp_path, cache_dir, sr, stereo):
    path = tmp_path / f"x{sr}.flac"
    write_tone(path, seconds=0.3, sr=sr, stereo=stereo)
    utt = tdata.FeatureCache(cache_dir, FEATURES).load(path)
    expected = float_to_int16(load_audio(path, 24000))
    np.testing.assert_array_equal(utt.audio, expected)
    assert utt.audio.shape == (int(np.ceil(int(0.3 * sr) * 24000 / sr)),)
    np.testing.assert_array_equal(utt.mel, log_mel(int16_to_float(expected), FEATURES))
    assert utt.mel.shape == (1 + utt.audio.shape[0] // HOP, FEATURES.n_mels)


def test_ljspeech_layout_and_split_lists(tmp_path):
    root = tmp_path / "lj"
    ids = [f"LJ{i:03d}" for i in range(8)]
    for i in ids[:7]:  # LJ007 is listed but has no file
        write_tone(root / "wavs" / f"{i}.flac", seconds=0.05)
    (root / "metadata.csv").write_text("".join(f"{i}|text {i}|text {i}\n" for i in ids))
    split = tdata.split_files(root, valid_fraction=0.25)
    assert split.layout == "ljspeech" and split.missing == ["LJ007"]
    assert len(split.train) == 5 and len(split.valid) == 2
    (root / "train.txt").write_text("LJ000\nLJ001\nLJ002\n")
    (root / "valid.txt").write_text("LJ003\n")
    (root / "test.txt").write_text("LJ004\nLJ005\n")
    split = tdata.split_files(root)
    assert [p.stem for p in split.train] == ["LJ000", "LJ001", "LJ002"]
    assert [p.stem for p in split.valid] == ["LJ003"]
    (root / "train.txt").unlink()  # without train.txt: every id not in valid/test
    assert [p.stem for p in tdata.split_files(root).train] == ["LJ000", "LJ001", "LJ002", "LJ006"]


def test_feature_cache_keys_and_recovery(tmp_path, monkeypatch):
    wav = tmp_path / "a.wav"
    write_tone(wav)
    cache = tdata.FeatureCache(tmp_path / "cache", FEATURES)
    first = cache.load(wav)
    entry = cache.entry_path(wav)
    assert entry.exists() and entry.parent.name.startswith("features-")
    monkeypatch.setattr(tdata, "load_audio", lambda *a, **k: pytest.fail("cache miss"))
    again = cache.load(wav)  # served from disk
    np.testing.assert_array_equal(again.mel, first.mel)
    monkeypatch.undo()
    other = tdata.FeatureCache(tmp_path / "cache", FeatureConfig(n_fft=512, win_length=400, hop_length=120,
                                                                 n_mels=20))
    assert other.dir != cache.dir and other.load(wav).mel.shape[0] == 1 + first.audio.shape[0] // 120
    entry.write_bytes(b"damaged")
    np.testing.assert_array_equal(cache.load(wav).mel, first.mel)  # recomputed and replaced
    time.sleep(0.01)
    write_tone(wav, seconds=0.25)  # a changed file gets a new entry
    assert cache.entry_path(wav) != entry and cache.load(wav).audio.shape == (6000,)


def test_windows_and_sampler(speech_dir, cache_dir):
    cache = tdata.FeatureCache(cache_dir, FEATURES)
    utts = [cache.load(p) for p in sorted(speech_dir.glob("*.wav"))]
    w, pad = 3, 1
    ws = tdata.WindowSet(utts, HOP, w, pad)
    assert ws.n_windows == sum(u.audio.shape[0] // HOP - w + 1 for u in utts)
    ids = np.arange(ws.n_windows)
    b = ws.batch(ids)
    assert b.mel.shape == (len(ids), w + 1 + 2 * pad, FEATURES.n_mels) and b.audio.shape == (len(ids), w * HOP)
    k = 0
    for utt in utts:
        for j0 in range(utt.audio.shape[0] // HOP - w + 1):
            np.testing.assert_array_equal(b.audio[k], utt.audio[j0 * HOP:(j0 + w) * HOP])
            lo = max(0, j0 - pad)
            assert b.crop[k] == j0 - lo and b.prev[k] == (utt.audio[j0 * HOP - 1] if j0 else 0)
            np.testing.assert_array_equal(b.mel[k, :b.length[k]], utt.mel[lo:lo + b.length[k]])
            k += 1
    sampler = tdata.WindowSampler(ws, 4, seed=7, rank=0)
    np.testing.assert_array_equal(sampler.batch(5).audio, sampler.batch(5).audio)
    assert not np.array_equal(sampler.batch(5).audio, sampler.batch(6).audio)
    assert not np.array_equal(sampler.batch(5).audio, tdata.WindowSampler(ws, 4, seed=7, rank=1).batch(5).audio)


def test_window_conditioning_equals_full_utterance_conditioning(speech_dir, cache_dir):
    """Every window, edges included, is conditioned exactly as the whole utterance is at inference."""
    torch.manual_seed(0)
    net = WaveRNN(TINY.model.__class__(**{**TINY.model.__dict__, "cond_kernels": (5, 3)}), FEATURES)
    pad, w = net.model_config.cond_lookahead, 2
    utt = tdata.FeatureCache(cache_dir, FEATURES).load(speech_dir / "utt3.wav")
    ws = tdata.WindowSet([utt], HOP, w, pad)
    b = ws.batch(np.arange(ws.n_windows))
    module = WindowedNLL(net)
    with torch.no_grad():
        z = module.conditioning(torch.from_numpy(b.mel), b.crop.tolist(), b.length.tolist(), w + 1)
        window_cond = net.upsample(z, w * HOP)
        mel = torch.from_numpy(utt.mel)[None]
        full = net.upsample(net.conditioning_features(mel), mel.shape[1] * HOP)[0]
    for j0 in range(ws.n_windows):
        # float32 rounding only: the convolutions run over inputs of different lengths.
        torch.testing.assert_close(window_cond[j0], full[j0 * HOP:(j0 + w) * HOP], rtol=2e-6, atol=1e-6)


def test_windowed_loss_is_the_models_nll_when_conditioning_is_constant(speech_dir, cache_dir):
    """With the conditioning made independent of the mel, a window at an utterance start (previous sample 0) must
    give exactly WaveRNN.nll_bits: the rest of WindowedNLL's path is the model's own."""
    torch.manual_seed(0)
    net = WaveRNN(TINY.model, FEATURES)
    with torch.no_grad():
        for conv in net.cond_convs:
            conv.weight.zero_()
    utt = tdata.FeatureCache(cache_dir, FEATURES).load(speech_dir / "utt0.wav")
    w, pad = 3, net.model_config.cond_lookahead
    b = tdata.WindowSet([utt], HOP, w, pad).batch(np.array([0]))
    with torch.no_grad():
        windowed = WindowedNLL(net)(torch.from_numpy(b.mel), b.crop.tolist(), b.length.tolist(),
                                    torch.from_numpy(b.audio), torch.from_numpy(b.prev))
        direct = net.nll_bits(torch.from_numpy(utt.mel[None, :w]), torch.from_numpy(utt.audio[None, :w * HOP]))
    assert float(windowed) == pytest.approx(float(direct), rel=1e-6)
    assert 4.0 < float(direct) < 17.0


def _linear_model(**changes):
    """TINY's model with linear prediction of order 4 and the prior (docs/format.md §11)."""
    return {**TINY.model.to_dict(), "linear_order": 4, "prior": "laplace", **changes}


def test_windows_carry_the_samples_before_them(speech_dir, cache_dir):
    """WindowSet(history=L) (Batch.prev (N, L)) holds the L samples before each window, oldest first, zeros before
    the utterance; history 1, the default, keeps the (N,) of one sample, and the windows themselves do not change."""
    utt = tdata.FeatureCache(cache_dir, FEATURES).load(speech_dir / "utt1.wav")
    w, pad, history = 3, 1, 150  # more than a hop: the window at j0 = 1 reaches before the utterance
    ids = np.arange(tdata.WindowSet([utt], HOP, w, pad).n_windows)
    b = tdata.WindowSet([utt], HOP, w, pad, history=history).batch(ids)
    one = tdata.WindowSet([utt], HOP, w, pad).batch(ids)
    assert b.prev.shape == (len(ids), history) and one.prev.shape == (len(ids),) and b.prev.dtype == np.int16
    for j0 in ids:
        start = j0 * HOP
        want = np.concatenate([np.zeros(max(0, history - start), np.int16), utt.audio[max(0, start - history):start]])
        np.testing.assert_array_equal(b.prev[j0], want)
        assert one.prev[j0] == want[-1]
    np.testing.assert_array_equal(b.audio, one.audio)
    with pytest.raises(ValueError, match="history"):
        tdata.WindowSet([utt], HOP, w, pad, history=0)


def test_windowed_loss_with_linear_prediction(speech_dir, cache_dir):
    """A window at an utterance start gives exactly WaveRNN.nll_bits (est(t) from zeros before it, as the model's
    forward has it), and an interior window's loss depends on the samples before it (its first steps' est)."""
    torch.manual_seed(0)
    net = WaveRNN(TINY.model.__class__.from_dict(_linear_model()), FEATURES)
    with torch.no_grad():
        for conv in net.cond_convs:
            conv.weight.zero_()
        net.linear_weight.copy_(torch.tensor([1.5, -0.7, 0.3, 0.2]))
    utt = tdata.FeatureCache(cache_dir, FEATURES).load(speech_dir / "utt0.wav")
    w, pad = 3, net.model_config.cond_lookahead
    b = tdata.WindowSet([utt], HOP, w, pad, history=4).batch(np.array([0, 1]))
    args = (torch.from_numpy(b.mel), b.crop.tolist(), b.length.tolist(), torch.from_numpy(b.audio))
    with torch.no_grad():
        windowed = WindowedNLL(net)(*(a[:1] for a in args), torch.from_numpy(b.prev[:1]))
        direct = net.nll_bits(torch.from_numpy(utt.mel[None, :w]), torch.from_numpy(utt.audio[None, :w * HOP]))
        interior = [float(WindowedNLL(net)(*(a[1:] for a in args), torch.from_numpy(prev)))
                    for prev in (b.prev[1:], np.zeros_like(b.prev[1:]))]
    assert float(windowed) == pytest.approx(float(direct), rel=1e-6)
    assert interior[0] != interior[1]


@pytest.mark.parametrize("mel_lpc", [False, True])
def test_training_with_linear_prediction_exports_a_file_the_engines_run(tmp_path, speech_dir, cache_dir, mel_lpc):
    """A short run of a model with linear prediction and the prior (with taps from the mel too, docs/format.md
    §13) trains the taps and the prior, and its export loads, reproduces the torch model's NLL, and gives the same
    samples in the reference and the C engine."""
    from pywavernn.conditioning import conditioning
    from pywavernn.engines import make_engine

    run = tmp_path / "run"
    cfg = tiny_config(model=_linear_model(**({"mel_lpc": True} if mel_lpc else {})), steps=8, checkpoint_every=4,
                      eval_every=4)
    assert train(cfg, speech_dir, run, cache_dir=cache_dir, progress=False)["step"] == 8
    ckpt = load_checkpoint(run / "checkpoint.pt")
    start = torch.tensor([0.0, 0.0, 0.0, 0.0] if mel_lpc else [1.0, 0.0, 0.0, 0.0])
    assert not torch.equal(ckpt["model"]["linear_weight"], start)
    assert not torch.equal(ckpt["model"]["prior_bias"], torch.tensor([6.0, 6.0]))
    out = tmp_path / "lp.safetensors"
    assert main(["export", str(run / "checkpoint.pt"), "-o", str(out)]) == 0
    model = load_model(out)
    assert (model.model_config.linear_order, model.model_config.prior, model.model_config.mel_lpc) == (4, "laplace",
                                                                                                       mel_lpc)
    net = WaveRNN(cfg.model, FEATURES)
    net.load_state_dict(ckpt["model"])
    mel, audio = torch.randn(1, 3, FEATURES.n_mels), torch.randint(-2000, 2000, (1, 3 * HOP), dtype=torch.int16)
    with torch.no_grad():
        assert float(net.nll_bits(mel, audio)) == float(WaveRNN.from_model(model).nll_bits(mel, audio))
    g = conditioning(model, mel[0].numpy())
    uniforms = np.random.default_rng(0).random((3 * HOP, 2), dtype=np.float32)
    np.testing.assert_array_equal(make_engine(model, "cpu", exact=True).generate(g, uniforms),
                                  make_engine(model, "reference").generate(g, uniforms))


def test_init_from_learned_taps_to_taps_from_the_mel(tmp_path, speech_dir, cache_dir):
    """A run of a model with learned taps (§11) may start a run whose taps come from the mel (§13): every weight
    carries over but linear.weight, which starts at zero (a correction to the mel's taps); the other way round, or
    any other change with it, is refused."""
    source_run, run = tmp_path / "lp", tmp_path / "mel"
    unpruned = {**TINY.to_dict()["pruning"], "target_sparsity": 0.0}
    train(tiny_config(model=_linear_model(), steps=2, checkpoint_every=2, eval_every=2, pruning=unpruned), speech_dir,
          source_run, cache_dir=cache_dir, progress=False)
    source = load_checkpoint(source_run / "checkpoint.pt")
    still = {"steps": 1, "optimiser": {**TINY.to_dict()["optimiser"], "lr": 1e-30, "min_lr": 0.0}, "pruning": unpruned}
    train(tiny_config(model=_linear_model(mel_lpc=True), **still), speech_dir, run, cache_dir=cache_dir,
          progress=False, init_from=source_run / "checkpoint.pt")
    got = load_checkpoint(run / "checkpoint.pt")["model"]
    assert float(got["linear_weight"].abs().max()) < 1e-20 and source["model"]["linear_weight"].any()
    for name, tensor in source["model"].items():  # lr 1e-30: the one step moved nothing but zeros, by < 1e-20
        if name != "linear_weight":
            assert torch.allclose(got[name], tensor, rtol=0, atol=1e-20), name
    with pytest.raises(ValueError, match=r"differs from this run's in \['mel_lpc'\]"):
        train(tiny_config(model=_linear_model(), **still), speech_dir, tmp_path / "back", cache_dir=cache_dir,
              progress=False, init_from=run / "checkpoint.pt")


# -------------------------------------------------------------------------------------------- checkpoints

def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"format": "pywavernn-train-checkpoint", "version": 1, "step": 1})
    real_save = torch.save

    def crash_midway(obj, fh):
        real_save({"partial": torch.zeros(1000)}, fh)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"format": "pywavernn-train-checkpoint", "version": 1, "step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    path.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        load_checkpoint(path)


def test_a_step_with_a_non_finite_gradient_is_skipped(speech_dir, cache_dir, monkeypatch):
    """A gradient that overflows leaves the weights and Adam's moments as they were (the step still counts), a
    finite one after it trains as usual, and MAX_SKIPPED_IN_ROW overflows in a row stop the run with an error."""
    import warnings

    from training import trainer as tr
    from training.distributed import Dist

    trainer = tr.Trainer(tiny_config(), speech_dir, cache_dir, Dist("cpu"))
    trainer.train_step(trainer.module)  # Adam has moments now
    weight = trainer.net.gru.weight_hh_l0
    before = {n: p.detach().clone() for n, p in trainer.net.named_parameters()}
    moments = {k: v.clone() for k, v in trainer.optimizer.state[weight].items()}
    hook = weight.register_hook(lambda g: torch.full_like(g, math.inf))
    with pytest.warns(UserWarning, match="step 1: gradient norm inf; this step's update was skipped"):
        _, norm, _ = trainer.train_step(trainer.module)
    assert not math.isfinite(norm) and trainer.step == 2 and trainer.metrics["skipped_steps"] == 1
    assert all(torch.equal(p, before[n]) for n, p in trainer.net.named_parameters())
    assert all(torch.equal(v, moments[k]) for k, v in trainer.optimizer.state[weight].items())
    hook.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.train_step(trainer.module)
    assert torch.isfinite(weight).all() and not torch.equal(weight, before["gru.weight_hh_l0"])
    monkeypatch.setattr(tr, "MAX_SKIPPED_IN_ROW", 2)
    weight.register_hook(lambda g: torch.full_like(g, math.nan))
    with pytest.warns(UserWarning, match="skipped"):
        trainer.train_step(trainer.module)
    with pytest.raises(RuntimeError, match="not finite in 2 steps in a row"):
        trainer.train_step(trainer.module)


KILL_RUN = {"steps": 40, "checkpoint_every": 4, "eval_every": 8, "log_every": 2}


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory, speech_dir, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(tiny_config(**KILL_RUN), speech_dir, out, cache_dir=cache_dir, progress=False)
    return out


def _log_columns(path: Path) -> list[tuple]:
    import csv
    with open(path, newline="") as fh:
        return [(r["step"], r["lr"], r["train_bits"], r["grad_norm"], r["valid_bits"], r["sparsity_R"])
                for r in csv.DictReader(fh)]


# A training process that SIGKILLs itself right after writing the log row of step KILL_AT: after the checkpoint of
# step 4 (checkpoint_every 4) and before that of step 8, with a row in log.csv that the checkpoint does not cover.
# The point is fixed by the run's own progress, not by a timer, so the test is deterministic; the kill is as abrupt
# as an outside one (no handler runs, nothing is flushed). It wraps training.trainer.CsvLog.write from outside:
# training/trainer.py has no hook for it.
KILL_AT = 6
SELF_KILLING_TRAINER = f"""
import os, signal, sys
from training import cli, trainer
write = trainer.CsvLog.write
def write_then_die(self, row):
    write(self, row)
    if row["step"] == {KILL_AT}:
        os.kill(os.getpid(), signal.SIGKILL)
trainer.CsvLog.write = write_then_die
sys.exit(cli.main(sys.argv[1:]))
"""


def test_killed_run_resumes_bit_identical(tmp_path, speech_dir, cache_dir, uninterrupted_run):
    config = tmp_path / "cfg.json"
    config.write_text(tiny_config(**KILL_RUN).to_json())
    run = tmp_path / "run"
    ckpt = run / "checkpoint.pt"
    killed = run_cli("-c", SELF_KILLING_TRAINER, "train", "--config", str(config), "--data", str(speech_dir),
                     "--out", str(run), "--cache-dir", str(cache_dir), "--threads", "1")
    assert killed.returncode == -signal.SIGKILL, f"the run was not killed at step {KILL_AT}: {killed.stderr[-2000:]}"
    assert load_checkpoint(ckpt)["step"] == 4  # readable: not corrupted by the kill
    assert [r[0] for r in _log_columns(run / "log.csv")] == ["2", "4", "6"]  # row 6 is past the checkpoint

    resumed = run_cli("-m", "training", "train", "--data", str(speech_dir), "--out", str(run), "--resume",
                      "--cache-dir", str(cache_dir), "--threads", "1")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_checkpoint(uninterrupted_run / "checkpoint.pt"), load_checkpoint(ckpt)
    assert a["step"] == b["step"] == KILL_RUN["steps"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"{name} differs after kill + resume"
    for name, mask in a["pruner"]["masks"].items():
        assert torch.equal(mask, b["pruner"]["masks"][name])
    for (ka, va), (kb, vb) in zip(a["optimizer"]["state"].items(), b["optimizer"]["state"].items()):
        assert all(torch.equal(va[k], vb[k]) for k in va), f"Adam state {ka} differs"
    assert a["ranks"][0]["params_sha256"] == b["ranks"][0]["params_sha256"]
    # The log: rows written after the killed checkpoint were dropped and rewritten identically.
    assert _log_columns(uninterrupted_run / "log.csv") == _log_columns(run / "log.csv")
    assert not list(run.glob(".*.tmp"))


def test_max_minutes_stops_with_a_checkpoint_and_resume_finishes_identically(tmp_path, speech_dir, cache_dir,
                                                                           uninterrupted_run):
    """A deadline already past when the first step ends stops the run after step 1 with a checkpoint of it;
    --resume then ends bit-identical to the uninterrupted run (deterministic: no timing involved)."""
    run = tmp_path / "run"
    result = train(tiny_config(**KILL_RUN), speech_dir, run, cache_dir=cache_dir, progress=False, max_minutes=1e-9)
    assert result["stopped"] == "time" and result["step"] == 1
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 1
    done = train(None, speech_dir, run, resume=True, cache_dir=cache_dir, progress=False)
    assert done["stopped"] == "done" and done["step"] == KILL_RUN["steps"]
    a, b = load_checkpoint(uninterrupted_run / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"{name} differs after a --max-minutes stop and resume"
    with pytest.raises(ValueError, match="max_minutes"):
        train(tiny_config(**KILL_RUN), speech_dir, tmp_path / "r2", cache_dir=cache_dir, progress=False,
              max_minutes=0)


def test_several_data_folders_train_together(tmp_path, speech_dir, cache_dir, capsys):
    other = tmp_path / "other"
    for i in range(3):
        write_tone(other / f"b{i}.wav", seconds=0.5, freq=300.0 + 30 * i, seed=10 + i)
    run = tmp_path / "run"
    assert main(["train", "--config", str(CONFIGS / "tiny.json"), "--data", str(speech_dir), str(other),
                 "--out", str(run), "--cache-dir", str(cache_dir), "--threads", "1", "--max-minutes", "1e-9"]) == 0
    assert "stopped at --max-minutes" in capsys.readouterr().out
    summary = load_checkpoint(run / "checkpoint.pt")["data"]
    assert summary["data_dir"] == [str(speech_dir), str(other)]
    assert summary["train_files"] + summary["valid_files"] == 7
    assert main(["train", "--config", str(CONFIGS / "tiny.json"), "--data", str(speech_dir), str(speech_dir),
                 "--out", str(tmp_path / "twice"), "--cache-dir", str(cache_dir)]) == 2
    assert "the same folder is given twice" in capsys.readouterr().err


def test_scan_gru_trains_the_same_model_and_a_run_may_switch_to_it(tmp_path, speech_dir, cache_dir,
                                                                  uninterrupted_run):
    """gru_impl "scan" (training/fast_gru.py) trains the torch run's model: after a resume that switches to it,
    the logged losses and the parameters match the uninterrupted torch run's to float32 summation-order noise."""
    run = tmp_path / "run"
    train(tiny_config(**KILL_RUN), speech_dir, run, cache_dir=cache_dir, progress=False, max_minutes=1e-9)
    done = train(tiny_config(**KILL_RUN, gru_impl="scan"), speech_dir, run, resume=True, cache_dir=cache_dir,
                 progress=False)
    assert done["step"] == KILL_RUN["steps"]
    b = load_checkpoint(run / "checkpoint.pt")
    assert b["runtime"]["gru_impl"] == "scan"
    a = load_checkpoint(uninterrupted_run / "checkpoint.pt")
    for name, tensor in a["model"].items():
        dist = float((b["model"][name] - tensor).norm() / tensor.norm())
        assert dist < 1e-4, f"{name}: relative distance {dist:.2e} from the torch run"
    rows_a, rows_b = _log_columns(uninterrupted_run / "log.csv"), _log_columns(run / "log.csv")
    assert [r[0] for r in rows_a] == [r[0] for r in rows_b]
    for ra, rb in zip(rows_a[1:], rows_b[1:]):  # the first row after the resume at step 1 averages step 2 only
        assert abs(float(ra[2]) - float(rb[2])) < 1e-3, (ra, rb)  # train_bits


def test_auto_gru_impl_is_the_scan_on_a_cpu_and_torch_on_a_cuda_device():
    """"auto" must not pick the scan on a GPU: training.fast_gru's C++ loop takes CPU tensors only, so a CUDA run
    of an "auto" config (training/configs/fused_small.json) failed in gru_scan. Resolved from the device name, so
    it needs no GPU; an explicit gru_impl is left as given."""
    cpu = resolve_gru_impl("auto", "cpu")
    assert cpu in ("scan", "scan-bf16") and resolve_gru_impl("auto") == cpu
    assert resolve_gru_impl("auto", torch.device("cpu")) == cpu
    for device in ("cuda", "cuda:1", torch.device("cuda", 0)):
        assert resolve_gru_impl("auto", device) == "torch"
    assert resolve_gru_impl("scan", "cuda") == "scan" and resolve_gru_impl("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="gru_impl"):
        resolve_gru_impl("cudnn", "cuda")
    assert TrainConfig.from_json_file(CONFIGS / "fused_small.json").gru_impl == "auto"


def test_cli_refuses_to_overwrite_or_resume_nothing(tmp_path, speech_dir, cache_dir, uninterrupted_run, capsys):
    base = ["--data", str(speech_dir), "--cache-dir", str(cache_dir)]
    assert main(["train", "--config", str(CONFIGS / "tiny.json"), "--out", str(uninterrupted_run), *base]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "new"), "--resume", *base]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--config", str(CONFIGS / "tiny.json"), "--data", str(empty), "--out",
                 str(tmp_path / "r"), "--cache-dir", str(cache_dir)]) == 2
    assert "empty: no audio files found" in capsys.readouterr().err
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({**tiny_config(**KILL_RUN).to_dict(), "window_frames": 4}))
    assert main(["train", "--config", str(changed), "--out", str(uninterrupted_run), "--resume", *base]) == 2
    assert "window_frames" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing.pt"), "-o", str(tmp_path / "m.safetensors")]) == 2


def test_resume_may_change_the_batch_and_pruning_schedule_but_not_the_block(tmp_path, speech_dir, cache_dir,
                                                                            uninterrupted_run):
    """A fork of a run at a new batch size trains on from the checkpoint (campaign comparisons start from one
    checkpoint); a pruning block shape other than the model's (the one its masks were pruned in) is refused."""
    fork = tmp_path / "fork"
    shutil.copytree(uninterrupted_run, fork)
    saved = tiny_config(**KILL_RUN)
    done = train(tiny_config(**{**KILL_RUN, "steps": 44, "batch_size": 3}), speech_dir, fork, resume=True,
                 cache_dir=cache_dir, progress=False)
    ckpt = load_checkpoint(fork / "checkpoint.pt")
    assert done["step"] == 44 and ckpt["config"]["batch_size"] == 3
    window = saved.window_frames * saved.features.hop_length  # samples seen count each step at its own batch
    assert ckpt["metrics"]["samples_seen"] == (40 * saved.batch_size + 4 * 3) * window
    reblocked = {**saved.to_dict()["pruning"], "block": [16, 1]}
    with pytest.raises(ValueError, match=r"pruning.block \[16, 1\] differs from model.block_shape"):
        train(tiny_config(**{**KILL_RUN, "steps": 48, "pruning": reblocked}), speech_dir, fork, resume=True,
              cache_dir=cache_dir, progress=False)


def test_init_from_starts_a_new_run_from_a_checkpoint_or_a_model_file(tmp_path, speech_dir, cache_dir,
                                                                     uninterrupted_run):
    """--init-from: a new run (fresh optimiser, step 0) whose first weights are the source's: a checkpoint's (with
    its pruning masks) or an exported file's; a source of another model config is refused, naming the field."""
    source = load_checkpoint(uninterrupted_run / "checkpoint.pt")
    still = {**KILL_RUN, "steps": 1, "optimiser": {**TINY.to_dict()["optimiser"], "lr": 1e-30, "min_lr": 0.0},
             "pruning": {**TINY.to_dict()["pruning"], "t0": 0, "S": 1, "prune_every": 1}}  # the source's masks
    exported = tmp_path / "m.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(exported)]) == 0
    for init in (uninterrupted_run / "checkpoint.pt", exported):
        run = tmp_path / f"from-{init.suffix[1:]}"
        done = train(tiny_config(**still), speech_dir, run, cache_dir=cache_dir, progress=False, init_from=init)
        ckpt = load_checkpoint(run / "checkpoint.pt")
        assert done["step"] == 1 and ckpt["metrics"]["init_from"] == str(init)
        for name, tensor in source["model"].items():  # lr 1e-30: the step changed nothing
            assert torch.equal(ckpt["model"][name], tensor), f"{name} differs from --init-from {init.name}"
    with pytest.raises(ValueError, match=r"differs from this run's in \['hidden_size'"):
        train(tiny_config(**{**still, "model": {**TINY.model.to_dict(), "hidden_size": 2 * TINY.model.hidden_size}}), speech_dir,
              tmp_path / "other", cache_dir=cache_dir, progress=False, init_from=exported)
    with pytest.raises(ValueError, match="give one"):
        train(None, speech_dir, uninterrupted_run, resume=True, cache_dir=cache_dir, init_from=exported)


def test_export_writes_a_loadable_file_at_the_trained_sparsity(tmp_path, uninterrupted_run, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(out)]) == 0
    model = load_model(out)
    assert model.model_config.block_shape == (4, 4) and model.feature_config == FEATURES
    assert model.sparsity() == {"gru.R": 0.5, "out.O1": 0.5, "out.O2": 0.5, "out.O3": 0.5, "out.O4": 0.5}
    r, h = model.dense("gru.R"), model.model_config.hidden_size
    for gate in range(3):  # u, r, e each at the target on its own
        assert np.mean(r[gate * h:(gate + 1) * h] == 0) == 0.5
    assert all(model.is_sparse(n) for n in ("gru.R", "out.O1", "out.O2", "out.O3", "out.O4"))
    assert model.provenance["training"]["step"] == KILL_RUN["steps"]
    # The exported weights are the checkpoint's: the file's model reproduces the torch model's NLL.
    ckpt = load_checkpoint(uninterrupted_run / "checkpoint.pt")
    net = WaveRNN(TINY.model, FEATURES)
    net.load_state_dict(ckpt["model"])
    back = WaveRNN.from_model(model)
    mel, audio = torch.randn(1, 3, FEATURES.n_mels), torch.randint(-2000, 2000, (1, 3 * HOP), dtype=torch.int16)
    with torch.no_grad():
        assert float(net.nll_bits(mel, audio)) == float(back.nll_bits(mel, audio))
    dense = tmp_path / "dense.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(dense), "--dense",
                 "--note", "licence=research use only", "--note", "data = a test set"]) == 0
    assert not load_model(dense).is_sparse("gru.R")
    assert load_model(dense).provenance["notes"] == {"licence": "research use only", "data": "a test set"}
    capsys.readouterr()
    bad = tmp_path / "bad.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(bad), "--note", "licence"]) == 2
    assert "KEY=TEXT" in capsys.readouterr().err and not bad.exists()


# ------------------------------------------------------------------------------------------- distributed

def test_two_process_torchrun_ranks_stay_in_sync(tmp_path, speech_dir, cache_dir):
    config = tmp_path / "cfg.json"
    pruning = {**TINY.to_dict()["pruning"], "S": 4}  # the ramp ends at step 6
    config.write_text(tiny_config(steps=6, checkpoint_every=6, eval_every=3, pruning=pruning).to_json())
    run = tmp_path / "ddp"
    result = run_cli("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "training",
                     "train", "--config", str(config), "--data", str(speech_dir), "--out", str(run),
                     "--cache-dir", str(cache_dir), "--threads", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["world_size"] == 2 and [r["rank"] for r in state["ranks"]] == [0, 1]
    net = WaveRNN(TINY.model, FEATURES)
    net.load_state_dict(state["model"])
    assert state["ranks"][0]["params_sha256"] == state["ranks"][1]["params_sha256"] == params_digest(net)
    # Each rank trained on its own shard of the 3 training files (2 + 1), so their window sets differ.
    assert state["ranks"][0]["sampler"]["n_windows"] != state["ranks"][1]["sampler"]["n_windows"]
    assert not torch.equal(state["model"]["gru.weight_hh_l0"],
                           WaveRNN(TINY.model, FEATURES).state_dict()["gru.weight_hh_l0"])
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,")
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "3", "4", "6"]  # log_every 2, eval_every 3; rank 0 only


def test_heap_settings_keep_and_release_memory():
    """keep_freed_memory and release_free_memory (called at every checkpoint) work on glibc and are harmless
    elsewhere: after a large block is freed under the kept-memory settings, a trim hands its pages back. In a
    subprocess, so the allocator settings do not outlive the test."""
    code = ("import torch\n"
            "from training.heap import keep_freed_memory, release_free_memory\n"
            "kept = keep_freed_memory()\n"
            "big = torch.ones(16 * 1024 * 1024)\n"  # 64 MB from the heap (mmap is off under the kept settings)
            "del big\n"
            "released = release_free_memory()\n"
            "assert isinstance(kept, bool) and isinstance(released, bool)\n"
            "assert released or not kept, 'the freed 64 MB should have been returned'\n"
            "print('ok', kept, released)\n")
    result = run_cli("-c", code, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-2000:]
