"""Exact mode on a trained model: the C engine gives the NumPy reference's samples on real speech.

Why: small random models (tests/test_engine.py) leave wide margins between a draw's classes, so two backends that
differ by a few ulp in the logits rarely pick different samples; a trained model's softmax is sharp and its state
long-lived, so such differences do show (before the one order of docs/format.md §3a, exact mode left the
reference at sample 5,148 of vm-goodbye.flac). Here the bundled model vocodes 2.7 seconds of real speech
(asterisk-en/vm-goodbye.flac and all-circuits-busy-now.flac, whole, seed 0) in exact mode and with the reference,
and the samples must be identical; and every step's state and logits, free-running and teacher-forced, must be
identical bit for bit on every ISA.

Run: `python -m pytest tests/test_exactness.py -q` (slow: the reference takes about a minute; needs ../shared).
"""

import numpy as np
import pytest

from pywavernn import Vocoder, audio as pa
from pywavernn.common import draw_uniforms
from pywavernn.conditioning import conditioning
from pywavernn.engines.cpu import CpuEngine
from pywavernn.kernels import available_isas
from pywavernn.reference import plain

pytestmark = pytest.mark.slow

FILES = ("vm-goodbye", "all-circuits-busy-now")  # 0.87 s and 1.80 s


def _speech(shared_data, voc: Vocoder, name: str, seconds: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """(mel, int16 audio of mel's frames x hop samples) of asterisk-en/<name>.flac, at most its first `seconds`."""
    wav = pa.load_audio(shared_data / "asterisk-en" / f"{name}.flac", voc.sample_rate)
    wav = wav[: int(min(seconds, wav.shape[0] / voc.sample_rate) * voc.sample_rate)]
    mel = voc.mel(wav)
    audio = np.zeros(mel.shape[0] * voc.hop_length, np.int16)
    n = min(audio.shape[0], wav.shape[0])
    audio[:n] = pa.float_to_int16(wav[:n])
    return mel, audio


@pytest.mark.parametrize("name", FILES)  # one file a case, so that pytest -n spreads the reference's minute
def test_exact_mode_vocodes_the_reference_samples_of_real_speech(shared_data, name):
    exact, ref = Vocoder(exact=True), Vocoder(backend="reference")
    mel, _ = _speech(shared_data, exact, name)
    got, want = exact.vocode(mel, seed=0), ref.vocode(mel, seed=0)
    first = np.flatnonzero(got != want)
    assert first.size == 0, f"{name}: exact mode leaves the reference at sample {first[0]} of {got.shape[0]}"
    assert got.shape[0] == mel.shape[0] * exact.hop_length >= 0.85 * exact.sample_rate  # the whole file


@pytest.mark.parametrize("isa", available_isas())
def test_generation_and_teacher_forcing_steps_are_the_reference_bits(shared_data, isa):
    """Every step's state and logits, free-running from the first 0.5 s of real speech's mel and teacher-forced on
    the samples that gave, are the reference's bit for bit (whatever options the bundled model has: pre-emphasis,
    linear prediction, the prior)."""
    voc = Vocoder()
    model = voc.model
    mel, _ = _speech(shared_data, voc, FILES[0], 0.5)
    uniforms = draw_uniforms(mel.shape[0] * voc.hop_length, 0)
    samples, want = plain.generate_ref(model, mel, uniforms, trace=True)
    engine, g = CpuEngine(model, exact=True, isa=isa), conditioning(model, mel)
    for how, run in (("free-running", engine.trace(g, uniforms, len(samples))),
                     ("teacher-forced", engine.trace(g, samples, len(samples)))):
        np.testing.assert_array_equal(run["samples"], samples, err_msg=f"{isa} {how}: samples")
        for name in ("h", "logits_c", "logits_f"):
            first = np.flatnonzero((run[name] != want[name]).any(axis=1))
            assert first.size == 0, f"{isa} {how}: {name} differs from the reference's at step {first[0]}"
    assert len(samples) >= 0.5 * voc.sample_rate - voc.hop_length
