"""Two research scripts of the training campaign (issue 24): research.temperature (a plain model file whose draws
are cooled by a temperature folded into its output heads and prior) and research.mel_lpc_headroom (how well a
per-frame linear predictor computed from the log-mel alone predicts the network's samples, against one fixed
predictor and the ideal per-frame one). Both are measurements, not package code; these tests hold them to what
their docstrings claim on small synthetic inputs."""

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from pywavernn.modelfile import load_model
from research import mel_lpc_headroom as mlh
from research import temperature

COMPAT = Path(__file__).parent / "data" / "compat"
LP_MODEL = COMPAT / "plain_preemph_lp_laplace.safetensors"  # pre-emphasis, linear prediction and the prior


def test_temperature_scales_the_heads_logits_and_the_prior_scale_only(tmp_path):
    out = tmp_path / "cool.safetensors"
    temperature.temper(str(LP_MODEL), 0.5, str(out))
    a, b = load_model(LP_MODEL), load_model(out)
    assert a.model_config == b.model_config and set(a.weights) == set(b.weights)
    for name in a.weights:
        wa, wb = a.dense(name), b.dense(name)
        if name in ("out.O2", "out.b2", "out.O4", "out.b4"):
            np.testing.assert_array_equal(wb, (wa * np.float32(2.0)).astype(np.float32))
        elif name == "prior.bias":
            np.testing.assert_allclose(wb, wa + math.log(0.5), rtol=0, atol=1e-6)
        else:
            np.testing.assert_array_equal(wa, wb)
    assert "sampling_temperature" in b.provenance


def test_temperature_refusals(tmp_path):
    with pytest.raises(ValueError, match="finite number above 0"):
        temperature.temper(str(LP_MODEL), 0.0, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="plain models only"):
        temperature.temper(str(COMPAT / "subscale_b16.safetensors"), 0.8, str(tmp_path / "x.safetensors"))


def test_levinson_recovers_an_all_pole_process_from_its_autocorrelation():
    taps = np.array([1.3, -0.8, 0.2])
    # the autocorrelation of the AR(3) process x(t) = sum_k taps[k] x(t-1-k) + w(t), from a long realisation
    x = scipy.signal.lfilter([1.0], np.concatenate([[1.0], -taps]), np.random.default_rng(0).normal(size=400000))
    r = np.array([np.dot(x[: x.size - k], x[k:]) for k in range(4)])
    np.testing.assert_allclose(mlh.levinson(r, 3), taps, atol=0.02)


@pytest.fixture(scope="module")
def resonant_noise(tmp_path_factory) -> Path:
    """Two 1.5 s files of noise through a fixed two-pole resonance, one at 700 Hz and one at 2.5 kHz, at 24 kHz."""
    folder = tmp_path_factory.mktemp("lpc")
    rng = np.random.default_rng(1)
    for i, f in enumerate((700.0, 2500.0)):
        pole = 0.97 * np.exp(2j * np.pi * f / 24000)
        x = scipy.signal.lfilter([1.0], np.poly([pole, pole.conjugate()]).real, rng.normal(size=36000))
        sf.write(folder / f"res{i}.wav", (0.3 * x / np.abs(x).max()).astype(np.float32), 24000, subtype="PCM_16")
    return folder


def test_the_mel_predicts_each_file_as_well_as_the_ideal_per_frame_predictor(resonant_noise, capsys):
    out = mlh.main(["--data", str(resonant_noise), "--order", "2", "--preemphasis", "0"])
    assert out["files"] == 2 and "mel-LPC" in capsys.readouterr().out
    # one fixed predictor cannot fit both resonances; a per-frame one (ideal or from the mel) fits each file's own
    assert out["oracle"]["db"] < out["fixed"]["db"] - 3.0, out
    assert abs(out["mel-LPC"]["db"] - out["oracle"]["db"]) < 1.5, out
    assert out["signal"]["db"] == 0.0 and out["oracle"]["mean_abs"] < out["signal"]["mean_abs"]
