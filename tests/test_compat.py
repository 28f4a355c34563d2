"""Every model file committed to the repository still means what it meant when it was pinned.

What it is: for each `*.safetensors` git tracks (the bundled model, tests/data/golden_small.safetensors and the tiny
models of tests/data/compat/, one per model kind and option set: plain dense, plain 16x1, the campaign's
pre-emphasis + linear prediction + Laplace prior, the shipped subscale recipe, the fused 2x), the pins of
tests/data/compat/pins.json: the file's SHA-256, the SHA-256 of the int16 samples it vocodes in exact mode from a
fixed mel (tests/data/compat/mels.npz, the log-mel of a chirp under the file's feature config) with seed 0, on
every ISA this build runs, with fp32 and with fp16 weight storage; the NumPy reference's samples of the mel's
first frames, which must be exact mode's; and the teacher-forced NLL of the chirp. So a change to the loader, the
conditioning, an engine, the sampling rule or the features that alters what an existing model file vocodes fails
here, and so does a model file committed without a pin.
What it is not: a test of the engines against each other in general (tests/test_engines.py, test_exactness.py) or
against PyTorch (tests/test_parity_torch.py); the fast (non-exact) mode, whose samples depend on the ISA.

A failure here means a model file users already have would vocode differently. If that is intended (a format
decision, recorded in docs/format.md's version history) or a model file was added, replaced or removed, rerun
`python tests/data/make_compat.py` and commit what it writes; its docstring says when that is right.

Run: python -m pytest tests/test_compat.py -q     (about 6 CPU-seconds, most of it the NumPy reference)
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pywavernn import Vocoder
from pywavernn.kernels import available_isas

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_compat", REPO / "tests" / "data" / "make_compat.py")
make_compat = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_compat)  # torch is imported only when it writes models

PINS = json.loads(make_compat.PINS.read_text())["files"]
MELS = dict(np.load(make_compat.MELS))
RERUN = ("python tests/data/make_compat.py (a deliberate format decision: read its docstring) and commit "
         "tests/data/compat/")
NLL_TOLERANCE = 1e-4  # bits: exact mode's NLL is within 1e-4 of the reference's (pywavernn.Vocoder.nll)


def _committed() -> list[str] | None:
    """The committed model files, or None outside a git checkout (an unpacked sdist has no tests)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return None
    return make_compat.committed_models()


COMMITTED = _committed()
NAMES = sorted(set(PINS) | set(COMMITTED or ()))


def test_every_committed_model_file_is_pinned():
    if COMMITTED is None:
        pytest.skip("not a git checkout: the committed model files cannot be listed")
    unpinned = sorted(set(COMMITTED) - set(PINS))
    assert not unpinned, f"model file(s) committed without a pin: {unpinned}; run {RERUN}"
    gone = sorted(set(PINS) - set(COMMITTED))
    assert not gone, f"pinned model file(s) no longer committed: {gone}; if that is deliberate, run {RERUN}"
    kinds = {PINS[name]["kind"] for name in PINS}
    assert kinds == {"plain", "subscale", "fused"}, f"every model kind has a pinned file; found {sorted(kinds)}"


def _pin(name: str) -> dict:
    assert name in PINS, f"{name}: committed without a pin; run {RERUN}"
    return PINS[name]


@pytest.mark.parametrize("name", NAMES)
def test_file_is_the_one_pinned(name):
    pin = _pin(name)
    path = REPO / name
    assert path.is_file(), f"{name}: pinned but missing from the checkout"
    assert make_compat.sha256_file(path) == pin["file_sha256"], (
        f"{name} changed since it was pinned: a new file, whose meaning nobody has pinned. If it was replaced on "
        f"purpose (e.g. the bundled model retrained), run {RERUN}")


@pytest.mark.parametrize("name", NAMES)
def test_chirp_mel_is_the_one_pinned(name):
    """The stored mel is still what pywavernn.features computes for the chirp under the file's feature config (to
    FFT rounding), so the pinned samples are those of the features a user computes."""
    pin = _pin(name)
    fc = Vocoder(REPO / name, backend="reference").feature_config
    assert make_compat.mel_key(fc) == pin["mel"]
    mel, _ = make_compat.chirp_mel(fc)
    np.testing.assert_allclose(mel, MELS[pin["mel"]], rtol=0, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_vocodes_the_pinned_samples(name):
    pin = _pin(name)
    path, mel = REPO / name, MELS[pin["mel"]]
    for weights in ("fp32", "fp16"):
        want = pin["exact_sha256" if weights == "fp32" else "fp16_exact_sha256"]
        for isa in available_isas():
            got = Vocoder(path, exact=True, weights=weights, isa=isa).vocode(mel, seed=pin["seed"])
            assert got.dtype == np.int16 and got.shape == (pin["samples"],)
            assert make_compat.sha256_samples(got) == want, (
                f"{name}: exact mode ({weights} weights, isa {isa}) no longer vocodes the pinned samples: the file "
                f"means something else now")
    short = mel[:pin["reference_frames"]]  # the reference is slow: a few frames
    reference = Vocoder(path, backend="reference").vocode(short, seed=pin["seed"])
    exact = Vocoder(path, exact=True).vocode(short, seed=pin["seed"])
    assert make_compat.sha256_samples(reference) == pin["reference_sha256"], (
        f"{name}: the NumPy reference no longer vocodes the pinned samples of the first {short.shape[0]} frames")
    assert np.array_equal(exact, reference), f"{name}: exact mode leaves the NumPy reference"


@pytest.mark.parametrize("name", NAMES)
def test_nll_is_the_one_pinned(name):
    pin = _pin(name)
    voc = Vocoder(REPO / name, exact=True)
    mel, audio = make_compat.chirp_mel(voc.feature_config)
    assert voc.nll(MELS[pin["mel"]], audio) == pytest.approx(pin["nll_bits"], abs=NLL_TOLERANCE)
