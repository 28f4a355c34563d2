"""research.onestep (a research script, research/onestep.py): one-step resynthesis from teacher-forced
distributions. A model whose distributions sit on the true bytes must give back the original (coarse always
right, no error, the PESQ of a copy); a real (tiny, random) model gives seeded, reproducible draws; a subscale model
and a missing file are refused clearly."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch", reason="research.onestep runs the PyTorch twin (the train extra)")
pytest.importorskip("pesq", reason="research.onestep scores with training.metrics (the eval extra)")
pytest.importorskip("pystoi", reason="research.onestep scores with training.metrics (the eval extra)")

from research import onestep  # noqa: E402
from training.model import WaveRNN  # noqa: E402

COMPAT = Path(__file__).parent / "data" / "compat"
MODEL = COMPAT / "plain_preemph_lp_laplace.safetensors"  # pre-emphasis, linear prediction and the prior


@pytest.fixture(scope="module")
def speechlike(tmp_path_factory) -> Path:
    """0.75 s of a 140 Hz harmonic tone with a syllable-rate envelope, at 24 kHz."""
    t = np.arange(18000) / 24000.0
    x = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    path = tmp_path_factory.mktemp("onestep") / "tone.wav"
    sf.write(path, (0.2 * x / np.abs(x).max()).astype(np.float32), 24000, subtype="PCM_16")
    return path


def test_distributions_on_the_true_bytes_give_the_original_back(speechlike, monkeypatch):
    def oracle(self, mel, audio=None, *, coarse=None, fine=None):
        return tuple(60.0 * torch.nn.functional.one_hot(b.long(), 256).float() for b in (coarse, fine))

    monkeypatch.setattr(WaveRNN, "forward", oracle)
    r = onestep.one_step(MODEL, speechlike)
    assert r["coarse_right"] == 1.0 and r["err_median"] == 0 and r["err_p90"] == 0
    assert r["pesq"] > 4.4, r  # a copy up to the rounding of the pre-emphasis round trip (4.64 for x itself)


@pytest.mark.slow  # three runs of the twin and the metrics
def test_a_model_draws_reproducibly_by_seed(speechlike):
    a, b, c = (onestep.one_step(MODEL, speechlike, seed) for seed in (0, 0, 1))
    assert a == b and a != c
    assert 0.0 <= a["coarse_right"] <= 1.0 and 0 <= a["err_median"] <= a["err_p90"]


def test_refusals(speechlike, tmp_path, capsys):
    with pytest.raises(ValueError, match="plain models, found subscale"):
        onestep.one_step(COMPAT / "subscale_b16.safetensors", speechlike)
    assert onestep.main([str(MODEL), str(tmp_path / "none.wav")]) == 2
    assert "research.onestep: error:" in capsys.readouterr().err
    out = tmp_path / "r.json"
    assert onestep.main([str(MODEL), str(speechlike), "--json", str(out)]) == 0 and out.stat().st_size > 0
