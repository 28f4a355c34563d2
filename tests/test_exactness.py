"""Exact mode on a trained model: the C engine gives the NumPy reference's samples on real speech.

Why: small random models (tests/test_engine.py) leave wide margins between a draw's classes, so two backends that
differ by a few ulp in the logits rarely pick different samples; a trained model's softmax is sharp and its state
long-lived, so such differences do show (before the one order of docs/format.md §3a, exact mode left the
reference at sample 5,148 of vm-goodbye.flac). Here the bundled model vocodes 2.7 seconds of real speech
(asterisk-en/vm-goodbye.flac and all-circuits-busy-now.flac, whole, seed 0) in exact mode and with the reference,
and the samples must be identical; and the teacher-forced steps (state and logits) must be identical bit for bit on
every ISA.

Run: `python -m pytest tests/test_exactness.py -q` (slow: the reference takes about a minute; needs ../shared).
"""

import numpy as np
import pytest

from pywavernn import Vocoder, audio as pa
from pywavernn.conditioning import cond_at, conditioning
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


def test_exact_mode_vocodes_the_reference_samples_of_real_speech(shared_data):
    exact, ref = Vocoder(exact=True), Vocoder(backend="reference")
    total = 0
    for name in FILES:
        mel, _ = _speech(shared_data, exact, name)
        got, want = exact.vocode(mel, seed=0), ref.vocode(mel, seed=0)
        first = np.flatnonzero(got != want)
        assert first.size == 0, f"{name}: exact mode leaves the reference at sample {first[0]} of {got.shape[0]}"
        total += got.shape[0]
    assert total >= 2.5 * exact.sample_rate


@pytest.mark.parametrize("isa", available_isas())
def test_teacher_forced_steps_are_the_reference_bits(shared_data, isa):
    voc = Vocoder()
    model, w = voc.model, voc.model.weights
    mel, audio = _speech(shared_data, voc, FILES[0], 0.5)
    g = conditioning(model, mel)
    n_steps = 1500
    trace = CpuEngine(model, exact=True, isa=isa).trace(g, audio, n_steps)
    coarse, fine = pa.coarse_fine_split(audio)
    half = model.model_config.half
    h = np.zeros(model.model_config.hidden_size, np.float32)
    c_prev, f_prev = 128, 0
    for t in range(n_steps):
        x = plain.BYTE_INPUT[[c_prev, f_prev, coarse[t]]]
        h = plain.gru_step_ref(model, h, x, cond_at(g, t, voc.hop_length))
        logits_c = plain.output_head_ref(h[:half], w["out.O1"], w["out.b1"], w["out.O2"], w["out.b2"])
        logits_f = plain.output_head_ref(h[half:], w["out.O3"], w["out.b3"], w["out.O4"], w["out.b4"])
        for name, want in (("h", h), ("logits_c", logits_c), ("logits_f", logits_f)):
            np.testing.assert_array_equal(trace[name][t], want, err_msg=f"{isa}: {name} at step {t}")
        c_prev, f_prev = coarse[t], fine[t]
