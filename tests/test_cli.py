"""The `pywavernn` command line end to end: info, mel, vocode, resynth, and its errors on bad input.

Runs the CLI's main() in-process (fast) on small random models; one test resynthesises a real speech file from
../shared/data with a model exported from a randomly initialised PyTorch model (skips without either).
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pywavernn import cli, modelfile as fmt
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.testing import random_model

SMALL = ModelConfig(hidden_size=32, out_hidden=16, cond_channels=8, cond_kernels=(3,), block_shape=(4, 4))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "small.safetensors"
    fmt.save_model(random_model(SMALL, seed=3, density=0.5), path)
    return path


def run_cli(*argv: str) -> int:
    return cli.main([str(a) for a in argv])


def test_info_prints_configs_and_sparsity(model_path, capsys):
    assert run_cli("info", model_path) == 0
    out = capsys.readouterr().out
    assert "hidden_size" in out and "32" in out
    assert "hop_length" in out and "n_mels" in out
    assert "gru.R" in out and "4x4" in out.replace(" ", "").replace("(4,4)", "4x4")


def test_vocode_writes_audio_of_expected_length_and_is_seeded(model_path, tmp_path, capsys):
    mel = np.random.default_rng(0).normal(-4.0, 1.0, size=(3, 80)).astype(np.float32)
    np.save(tmp_path / "mel.npy", mel)
    outs = []
    for name, seed in (("a.wav", 1), ("b.wav", 1), ("c.wav", 2)):
        assert run_cli("vocode", tmp_path / "mel.npy", "-o", tmp_path / name, "--model", model_path,
                       "--seed", seed, "--backend", "reference", "-q") == 0
        data, sr = sf.read(tmp_path / name, dtype="int16")
        assert sr == 24000 and data.shape == (3 * 300,)
        outs.append(data)
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize("bad, message", [
    (np.full((3, 80), np.nan, np.float32), "finite"),
    (np.zeros((3, 40), np.float32), "80"),
    (np.zeros((80,), np.float32), "2-D"),
])
def test_vocode_rejects_bad_mel_and_writes_nothing(model_path, tmp_path, capsys, bad, message):
    np.save(tmp_path / "bad.npy", bad)
    out = tmp_path / "out.wav"
    assert run_cli("vocode", tmp_path / "bad.npy", "-o", out, "--model", model_path, "--backend", "reference") == 2
    err = capsys.readouterr().err
    assert "pywavernn: error:" in err and message in err
    assert not out.exists()


def test_vocode_rejects_a_non_npy_file(model_path, tmp_path, capsys):
    (tmp_path / "mel.npy").write_text("not an array")
    assert run_cli("vocode", tmp_path / "mel.npy", "-o", tmp_path / "o.wav", "--model", model_path) == 2
    assert "not a readable .npy" in capsys.readouterr().err


def test_truncated_model_is_a_clear_error(model_path, tmp_path, capsys):
    data = model_path.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    assert run_cli("info", bad) == 2
    err = capsys.readouterr().err
    assert "pywavernn: error:" in err and "truncated.safetensors" in err


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert run_cli("info", tmp_path / "nope.safetensors") == 2
    assert "nope.safetensors" in capsys.readouterr().err


def test_mel_then_vocode_matches_resynth(model_path, tmp_path):
    t = np.arange(4800) / 24000.0
    sf.write(tmp_path / "in.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 24000)
    assert run_cli("mel", tmp_path / "in.wav", "-o", tmp_path / "mel.npy", "--model", model_path) == 0
    assert run_cli("vocode", tmp_path / "mel.npy", "-o", tmp_path / "v.wav", "--model", model_path,
                   "--backend", "reference", "-q") == 0
    assert run_cli("resynth", tmp_path / "in.wav", "-o", tmp_path / "r.wav", "--model", model_path,
                   "--backend", "reference", "-q") == 0
    v, _ = sf.read(tmp_path / "v.wav", dtype="int16")
    r, _ = sf.read(tmp_path / "r.wav", dtype="int16")
    assert r.shape == (4800,)  # trimmed to the input's length
    assert np.array_equal(v[:4800], r)


def test_resynth_real_speech_with_exported_random_torch_model(shared_data, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from training.export import export_model
    from training.model import WaveRNN

    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, cond_kernels=(3, 3))
    path = tmp_path / "random.safetensors"
    export_model(WaveRNN(cfg), FeatureConfig(), path, provenance={"note": "random init, for plumbing"})
    assert run_cli("info", path) == 0
    assert "hidden_size" in capsys.readouterr().out

    src = shared_data / "asterisk-en" / "digits_1.flac"
    out = tmp_path / "resynth.wav"
    assert run_cli("resynth", src, "-o", out, "--model", path, "--backend", "reference", "-q") == 0
    data, sr = sf.read(out, dtype="int16")
    info = sf.info(src)
    assert sr == 24000
    assert abs(data.shape[0] - round(info.frames * 24000 / info.samplerate)) <= 1
    assert np.abs(data.astype(np.int32)).max() > 0  # noise, but audio was produced


def test_unusable_output_paths_fail_before_any_work(model_path, tmp_path, capsys):
    np.save(tmp_path / "mel.npy", np.zeros((2, 80), np.float32))
    (tmp_path / "dir.wav").mkdir()
    for out, message in ((tmp_path / "dir.wav", "directory"), (tmp_path / "nope" / "o.wav", "does not exist")):
        assert run_cli("vocode", tmp_path / "mel.npy", "-o", out, "--model", model_path) == 2
        assert message in capsys.readouterr().err
