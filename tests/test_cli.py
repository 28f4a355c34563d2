"""The `pywavernn` command line end to end: info, mel, vocode, resynth, and its errors on bad input.

Runs the CLI's main() in-process (fast) on small random models; one test resynthesises a real speech file from
../shared/data with a model exported from a randomly initialised PyTorch model (skips without either).
"""

from __future__ import annotations

import sys

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
    (tmp_path / "taken").write_text("a file where an output folder is needed")
    assert run_cli("vocode", tmp_path / "mel.npy", "-o", tmp_path / "nope" / "o.wav", "--model", model_path) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run_cli("vocode", tmp_path / "mel.npy", tmp_path / "mel.npy", "-o", tmp_path / "taken",
                   "--model", model_path) == 2
    assert "expected an output folder" in capsys.readouterr().err


# --- several files: folders in, a folder out, several at once, bad files skipped --------------------------------

def write_tone(path, seconds=0.1, rate=16000, freq=220.0):
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


@pytest.fixture
def speech_dir(tmp_path):
    """Three good files (one in a subfolder, one FLAC), a broken one, and files that are not audio."""
    root = tmp_path / "in"
    write_tone(root / "a.wav", freq=200.0)
    write_tone(root / "b.flac", freq=300.0)
    write_tone(root / "sub" / "c.wav", freq=400.0, rate=22050)
    (root / "broken.wav").write_bytes(b"RIFF, but not really")
    (root / "notes.txt").write_text("not audio, not searched for")
    write_tone(root / ".hidden" / "skipped.wav")
    return root


def test_resynth_folder_keeps_going_past_a_bad_file(model_path, speech_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("resynth", speech_dir, "-o", out, "--model", model_path, "--jobs", 2) == 1
    captured = capsys.readouterr()
    assert "pywavernn: error:" in captured.err and "broken.wav" in captured.err
    assert "cannot read as audio" in captured.err
    assert "vocoded 3 of 4 files" in captured.err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.wav", "b.wav", "sub/c.wav"]  # layout mirrored, the broken file not written
    for name in written:
        data, sr = sf.read(out / name, dtype="int16")
        assert sr == 24000 and data.shape == (2400,)  # 0.1 s at 24 kHz, trimmed to the input
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))  # nothing half-written


def test_files_vocoded_at_once_equal_one_at_a_time(model_path, speech_dir, tmp_path, capsys):
    (speech_dir / "broken.wav").unlink()
    assert run_cli("resynth", speech_dir, "-o", tmp_path / "many", "--model", model_path, "--jobs", 3,
                   "--seed", 5) == 0
    assert "vocoded 3 of 3 files" in capsys.readouterr().out
    for rel in ("a.wav", "b.flac", "sub/c.wav"):
        single = tmp_path / "single.wav"
        assert run_cli("resynth", speech_dir / rel, "-o", single, "--model", model_path, "--seed", 5, "-q") == 0
        many, _ = sf.read((tmp_path / "many" / rel).with_suffix(".wav"), dtype="int16")
        one, _ = sf.read(single, dtype="int16")
        assert np.array_equal(many, one), rel


def test_several_inputs_and_a_missing_one(model_path, speech_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("resynth", speech_dir / "a.wav", tmp_path / "missing.wav", speech_dir / "b.flac", "-o", out,
                   "--model", model_path, "-q") == 1
    captured = capsys.readouterr()
    assert "missing.wav" in captured.err and "no such file" in captured.err
    assert captured.out == ""  # --quiet: no per-file lines, no bar; the failure summary goes to stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav"]


def test_single_file_into_a_folder_with_trailing_slash(model_path, speech_dir, tmp_path):
    out = tmp_path / "new" / "folder"
    assert run_cli("resynth", speech_dir / "a.wav", "-o", f"{out}/", "--model", model_path, "-q") == 0
    assert (out / "a.wav").is_file()


def test_name_clashes_and_overwriting_inputs_are_refused_before_work(model_path, tmp_path, capsys):
    write_tone(tmp_path / "x" / "s.wav")
    write_tone(tmp_path / "y" / "s.flac")
    assert run_cli("resynth", tmp_path / "x" / "s.wav", tmp_path / "y" / "s.flac", "-o", tmp_path / "out",
                   "--model", model_path) == 2
    assert "would both be written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert run_cli("resynth", tmp_path / "x", "-o", tmp_path / "x", "--model", model_path) == 2
    assert "replace an input" in capsys.readouterr().err


def test_output_folder_inside_the_input_folder_is_not_searched(model_path, speech_dir, capsys):
    (speech_dir / "broken.wav").unlink()
    for _ in range(2):  # the second run must not pick up the first run's outputs
        assert run_cli("resynth", speech_dir, "-o", speech_dir / "out", "--model", model_path) == 0
        assert "vocoded 3 of 3 files" in capsys.readouterr().out
    assert not (speech_dir / "out" / "out").exists()


def test_vocode_folder_of_mels(model_path, tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "mels").mkdir()
    for name in ("m1", "m2"):
        np.save(tmp_path / "mels" / f"{name}.npy", rng.normal(-4.0, 1.0, size=(2, 80)).astype(np.float32))
    np.save(tmp_path / "mels" / "bad.npy", np.zeros((2, 40), np.float32))  # 40 mel bins, the model wants 80
    assert run_cli("vocode", tmp_path / "mels", "-o", tmp_path / "wavs", "--model", model_path, "-q") == 1
    assert "bad.npy" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "wavs").iterdir()) == ["m1.wav", "m2.wav"]


def test_progress_bar_only_on_a_terminal_and_not_with_quiet(model_path, speech_dir, tmp_path, capsys, monkeypatch):
    (speech_dir / "broken.wav").unlink()
    assert run_cli("resynth", speech_dir, "-o", tmp_path / "o1", "--model", model_path) == 0
    assert "vocoding" not in capsys.readouterr().err  # stderr is not a terminal here: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert run_cli("resynth", speech_dir, "-o", tmp_path / "o2", "--model", model_path) == 0
    assert "vocoding" in capsys.readouterr().err
    assert run_cli("resynth", speech_dir, "-o", tmp_path / "o3", "--model", model_path, "--quiet") == 0
    assert capsys.readouterr().err == ""


def test_bad_jobs_and_threads_are_usage_errors(model_path, tmp_path, capsys):
    for flag in ("--jobs", "--threads"):
        with pytest.raises(SystemExit) as exc:
            run_cli("resynth", tmp_path / "a.wav", "-o", tmp_path / "o.wav", flag, "0")
        assert exc.value.code == 2
        assert "expected a positive integer" in capsys.readouterr().err


# --- info without a model, doctor -----------------------------------------------------------------------------

def test_info_without_a_model_describes_the_bundled_one(capsys):
    assert run_cli("info") == 0
    out = capsys.readouterr().out
    assert "the bundled model" in out and "default.safetensors" in out
    from pywavernn.vocoder import BUNDLED_MODEL

    hidden = fmt.load_model(BUNDLED_MODEL).model_config.hidden_size
    assert f"hidden_size: {hidden}" in out and "gru.R" in out


def test_doctor_reports_build_machine_and_measured_speed(capsys):
    import pywavernn

    assert run_cli("doctor", "--seconds", "0.25", "--threads", "2") == 0
    out = capsys.readouterr().out
    assert f"{pywavernn.selected_isa()} selected" in out
    assert "openmp:" in out and "usable cores" in out and "cuda backend:" in out
    assert out.count("real-time factor") == (3 if pywavernn.openmp_enabled() else 2)  # header + 1 or 2 timings
    assert run_cli("info", "--system", "--seconds", "0.25") == 0
    assert "real-time factor" in capsys.readouterr().out
