"""The examples gallery runs as a user runs it (a fresh interpreter, the script's own command line), so it cannot rot.

Every examples/*.py has a test here (one test checks that none is left out, and that examples/README.md lists each
one); each asserts what the script claims to show, and that its figure is a PNG. Examples that read speech need
../shared/data (skip without it); the ones that plot need matplotlib, the training ones torch.

Run: pytest tests/test_examples.py   (about two minutes on 2 cores; train_tiny is most of it)
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TESTED = {"vocode_file.py", "stream_latency.py", "train_tiny.py", "prune_blocks.py", "check_kernel_hypothesis.py",
          "subscale_walkthrough.py", "export_random_model.py"}


def run_example(name: str, *args, cwd=None) -> str:
    """Run examples/NAME with args, from `cwd` (default: this process's); returns its stdout."""
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
                         timeout=600, cwd=cwd)
    assert out.returncode == 0, f"{name} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} not written"
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"


def test_every_example_is_tested_and_indexed():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == TESTED, f"untested examples: {scripts - TESTED}; tested but gone: {TESTED - scripts}"
    index = (EXAMPLES / "README.md").read_text()
    assert all(f"`{name}`" in index for name in scripts), "examples/README.md must list every example"


def test_vocode_file(shared_data, tmp_path):
    pytest.importorskip("matplotlib")
    import soundfile as sf

    src = shared_data / "asterisk-en" / "demo-echodone.flac"
    out = run_example("vocode_file.py", src, "--out", tmp_path, cwd=tmp_path)
    assert "faster than real time" in out
    data, rate = sf.read(tmp_path / "vocoded.wav", dtype="int16")
    info = sf.info(src)
    assert rate == 24000 and abs(data.shape[0] - round(info.frames * 24000 / info.samplerate)) <= 1
    assert_png(tmp_path / "vocode_file.png")


def test_stream_latency(shared_data, tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("stream_latency.py", "--out", tmp_path, cwd=tmp_path)
    assert "streamed == offline vocode(mel, seed=0): True" in out
    assert "algorithmic latency: (L + 1) = " in out and "real-time factor" in out
    assert_png(tmp_path / "stream_latency.png")


def test_prune_blocks(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("prune_blocks.py", "--out", tmp_path, cwd=tmp_path)
    for row in ("dense, C kernel", "16x1 blocks, bsr_sgemv_16x1", "4x4 blocks, bsr_sgemv_4x4"):
        assert row in out
    assert "240,864" in out  # 10 % of 2688 x 896: the pruning kept exactly the blocks it should
    assert_png(tmp_path / "prune_blocks.png")


def test_check_kernel_hypothesis(tmp_path):
    pytest.importorskip("hypothesis")
    out = run_example("check_kernel_hypothesis.py", "--examples", 100, cwd=tmp_path)
    assert "100 drawn cases passed on generic" in out
    assert "planted bug caught" in out and "W 16x1 with 16 nonzero weight(s), x = [1.0]" in out  # fully shrunk


def test_train_tiny(shared_data, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    import pywavernn

    # a step count, not --minutes: a busy machine fits too few steps in a time budget to log any
    out = run_example("train_tiny.py", "--files", 6, "--steps", 30, "--out", tmp_path, cwd=tmp_path)
    assert "after 30 steps" in out
    assert "noise, as promised" in out
    assert_png(tmp_path / "train_tiny_loss.png")
    model = pywavernn.load_model(tmp_path / "train_tiny" / "tiny.safetensors")
    assert model.model_config.hidden_size == 16
    assert (tmp_path / "train_tiny" / "resynth.wav").is_file()


def test_subscale_walkthrough_runs_and_engine_matches_reference():
    out = run_example("subscale_walkthrough.py")
    assert "unfold(fold(x)) == x" in out
    assert "48 samples in 18 steps" in out
    assert "reference and C engine give the same samples: True" in out
    assert "context 19,580" in out  # the H = 256 recipe's figure in research/experiments.md (RQ5)


def test_export_random_model(tmp_path):
    pytest.importorskip("torch")
    import pywavernn

    path = tmp_path / "random.safetensors"
    run_example("export_random_model.py", path, "--hidden", 32, cwd=tmp_path)
    assert pywavernn.load_model(path).model_config.hidden_size == 32
    fused = tmp_path / "fused.safetensors"  # issue 27: the example writes a random fused 2x model that vocodes
    run_example("export_random_model.py", fused, "--hidden", 32, "--fused", cwd=tmp_path)
    vocoder = pywavernn.Vocoder(fused)
    assert vocoder.model_config.kind == "fused" and "kind='fused'" in repr(vocoder)
    assert vocoder.vocode(np.zeros((3, 80), np.float32) - 5).shape == (3 * vocoder.hop_length,)
