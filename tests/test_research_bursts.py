"""research.bursts (issue 24's probe of full-band bursts in free-running output): the burst count holds to its
definition on synthetic signals, and the measurement runs a model at several spectrum floors of docs/format.md §13,
changing only a mel_lpc model's output, and leaves pywavernn.lpc.NOISE_FLOOR as it found it.

Run: python -m pytest tests/test_research_bursts.py -q
"""

import numpy as np
import pytest
import soundfile as sf

from pywavernn import lpc
from pywavernn.config import ModelConfig
from pywavernn.modelfile import save_model
from pywavernn.testing import random_model
from research import bursts


def _voiced(n=24000, seed=0):
    t = np.arange(n) / 24000
    rng = np.random.default_rng(seed)
    return (0.2 * np.sin(2 * np.pi * 150 * t) + 0.01 * rng.normal(size=n)).astype(np.float32)


def test_a_near_nyquist_stretch_counts_and_the_signal_itself_does_not():
    ref = _voiced()
    assert bursts.burst_windows(ref, ref) == (0, (ref.size - 1) // bursts.WINDOW)
    y = ref.copy()
    y[1200:1560] += 0.3 * (-1.0) ** np.arange(360)  # 360 samples of +-0.3 at Nyquist: three whole windows
    b, n = bursts.burst_windows(y, ref)
    assert b == 3 and n == 199
    assert bursts.burst_windows(np.zeros(1000), np.zeros(1000))[0] == 0  # digital silence is not a burst
    assert bursts.burst_windows(np.zeros(50), np.zeros(50)) == (0, 0)


def test_burst_windows_refuses_mismatched_signals():
    with pytest.raises(ValueError, match="one length"):
        bursts.burst_windows(np.zeros(300), np.zeros(301))


@pytest.mark.parametrize("mel_lpc", [False, True])
def test_measure_runs_each_floor_and_restores_the_module(tmp_path, mel_lpc):
    pytest.importorskip("pystoi", reason="pystoi is in the eval extra")
    cfg = ModelConfig(hidden_size=32, out_hidden=16, cond_channels=8, linear_order=8, prior="laplace",
                      preemphasis=0.85, mel_lpc=mel_lpc)
    save_model(random_model(cfg, seed=3), tmp_path / "m.safetensors")
    sf.write(tmp_path / "a.wav", _voiced(36000, 1), 24000)  # 1.5 s: STOI needs 30 frames of 25.6 ms
    before = lpc.NOISE_FLOOR
    rows = bursts.measure(str(tmp_path / "m.safetensors"), [tmp_path / "a.wav"], [1e-4, 1e-1])
    assert lpc.NOISE_FLOOR == before
    assert [r["floor"] for r in rows] == [1e-4, 1e-1] and all(r["windows"] == 299 for r in rows)
    assert all(0.0 <= r["share"] <= 1.0 and np.isfinite(r["stoi"]) for r in rows)
    same = (rows[0]["bursts"], rows[0]["stoi"]) == (rows[1]["bursts"], rows[1]["stoi"])
    assert same != mel_lpc  # the floor moves a mel_lpc model's samples, and nothing else's
