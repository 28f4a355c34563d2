"""Tests for pywavernn.audio: the 16-bit coarse/fine split, sample conversions, load/resample, atomic save.

Not tested here: features (tests/test_features.py). Files are generated in tmp_path; nothing external is needed.
Run: `python -m pytest tests/test_audio.py -q`.
"""

import os

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis.extra import numpy as hnp

from pywavernn import audio
from pywavernn.audio import (
    coarse_fine_join,
    coarse_fine_split,
    float_to_int16,
    int16_to_float,
    load_audio,
    resample,
    save_audio,
    scale_byte,
)

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


# ------------------------------------------------------------------------------------------ 16-bit split

def test_split_join_exhaustive_over_all_int16():
    c, f = coarse_fine_split(ALL_INT16)
    assert c.dtype == np.uint8 and f.dtype == np.uint8
    u = ALL_INT16.astype(np.int32) + 32768
    np.testing.assert_array_equal(c, u >> 8)
    np.testing.assert_array_equal(f, u & 255)
    back = coarse_fine_join(c, f)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, ALL_INT16)
    # Every (c, f) pair occurs exactly once: the split is a bijection onto 256 x 256.
    assert len(set(zip(c.tolist(), f.tolist()))) == 65536


def test_split_fixed_points_from_the_spec():
    # docs/format.md: the sample before the first is s = 0, i.e. c = 128, f = 0.
    assert [tuple(map(int, coarse_fine_split(np.int16(v)))) for v in (0, -32768, 32767, -1)] == [
        (128, 0), (0, 0), (255, 255), (127, 255)
    ]


@given(hnp.arrays(np.int16, hnp.array_shapes(min_dims=0, max_dims=3, max_side=8)))
def test_split_join_round_trip_any_shape(s):
    c, f = coarse_fine_split(s)
    assert c.shape == s.shape and f.shape == s.shape
    np.testing.assert_array_equal(coarse_fine_join(c, f), s)
    np.testing.assert_array_equal(c.astype(np.int32) * 256 + f, s.astype(np.int32) + 32768)


def test_split_accepts_wider_ints_in_range_and_refuses_out_of_range():
    np.testing.assert_array_equal(coarse_fine_split(np.array([-32768, 32767], np.int64))[0], [0, 255])
    with pytest.raises(ValueError, match=r"\[-32768, 32767\].*32768"):
        coarse_fine_split(np.array([0, 32768], np.int32))
    with pytest.raises(TypeError, match="integer array.*float"):
        coarse_fine_split(np.array([0.5]))


def test_join_validates():
    with pytest.raises(ValueError, match=r"\[0, 255\].*256"):
        coarse_fine_join(np.array([256]), np.array([0]))
    with pytest.raises(ValueError, match=r"f: expected values in \[0, 255\].*-1"):
        coarse_fine_join(np.array([0]), np.array([-1]))
    with pytest.raises(ValueError, match="same shape"):
        coarse_fine_join(np.zeros(3, np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(TypeError, match="integer"):
        coarse_fine_join(np.zeros(3, np.float32), np.zeros(3, np.uint8))


def test_scale_byte_endpoints_and_arithmetic():
    v = np.arange(256, dtype=np.uint8)
    x = scale_byte(v)
    assert x.dtype == np.float32
    assert x[0] == -1.0 and x[255] == 1.0  # 255 / 127.5 = 2 exactly
    assert np.all(np.diff(x) > 0)
    # The network's definition is float32 arithmetic: float32(v) / float32(127.5) - float32(1), bit for bit.
    expected = np.array([np.float32(i) / np.float32(127.5) - np.float32(1) for i in range(256)], np.float32)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_allclose(x, v / 127.5 - 1.0, rtol=0, atol=1.2e-7)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        scale_byte(np.array([256]))


# ----------------------------------------------------------------------------------- float <-> int16

def test_int16_float_round_trip_exact():
    x = int16_to_float(ALL_INT16)
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 32767 / 32768
    np.testing.assert_array_equal(float_to_int16(x), ALL_INT16)


def test_float_to_int16_clips_and_rounds():
    x = np.array([-2.0, -1.0, 1.0, 2.0, 0.4 / 32768, 0.6 / 32768, -0.6 / 32768])
    np.testing.assert_array_equal(float_to_int16(x), [-32768, -32768, 32767, 32767, 0, 1, -1])
    with pytest.raises(ValueError, match="finite"):
        float_to_int16(np.array([0.0, np.nan]))
    with pytest.raises(TypeError, match="floating-point.*int16_to_float"):
        float_to_int16(np.zeros(3, np.int16))
    with pytest.raises(TypeError, match="int16.*float64"):
        int16_to_float(np.zeros(3))


# ---------------------------------------------------------------------------------------- load_audio

def _sine(freq, sr, seconds, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def test_load_pcm16_at_model_rate_is_exact(tmp_path):
    s = (np.random.default_rng(1).integers(-32768, 32768, 1000)).astype(np.int16)
    sf.write(tmp_path / "a.wav", s, 24000, subtype="PCM_16")
    x = load_audio(tmp_path / "a.wav")
    assert x.dtype == np.float32 and x.ndim == 1
    np.testing.assert_array_equal(x, s / np.float32(32768))


def test_load_stereo_mixes_to_mono(tmp_path):
    rng = np.random.default_rng(2)
    left, right = rng.uniform(-0.5, 0.5, 2400), rng.uniform(-0.5, 0.5, 2400)
    sf.write(tmp_path / "st.flac", np.stack([left, right], axis=1), 24000, subtype="PCM_16")
    x = load_audio(str(tmp_path / "st.flac"))
    assert x.shape == (2400,)
    # Each channel is quantised to 16 bits on write: the mean is off by at most one LSB.
    np.testing.assert_allclose(x, (left + right) / 2, rtol=0, atol=1 / 32768)


@pytest.mark.parametrize("sr_in", [16000, 22050])
def test_load_resamples_band_limited(tmp_path, sr_in):
    n_in = sr_in  # one second
    sf.write(tmp_path / "s.wav", _sine(1000.0, sr_in, 1.0), sr_in, subtype="PCM_16")
    x = load_audio(tmp_path / "s.wav")
    assert x.shape == (-(-n_in * 24000 // sr_in),)  # ceil(n * 24000 / sr_in) = 24000
    # Hann-windowed spectrum with 1 Hz bins; the window hides the start/end transients of the finite sine.
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 24000)
    assert abs(freqs[np.argmax(power)] - 1000.0) <= 1.0
    total = power.sum()
    # Thresholds -60 dB; resample_poly measures about -70 dB or less on both, while np.interp (linear
    # interpolation, not band-limited) fails: -44 dB above 8 kHz at 16 kHz in, -42 dB off-tone at 22.05 kHz in.
    # The 1 kHz tone's images (16 kHz - 1 kHz folds to 9 kHz at 24 kHz) land above the old Nyquist:
    assert power[freqs > sr_in / 2].sum() / total < 1e-6
    # and nothing else anywhere: everything outside 900..1100 Hz (images, aliasing, distortion).
    assert power[np.abs(freqs - 1000.0) > 100].sum() / total < 1e-6


def test_resample_identity_and_length():
    x = np.linspace(-1, 1, 101)
    y = resample(x, 24000, 24000)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x.astype(np.float32))
    assert resample(x, 22050, 24000).shape == (-(-101 * 160 // 147),)
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 2)), 16000, 24000)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="nope.wav.*not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(ValueError, match="directory"):
        load_audio(tmp_path)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(os.urandom(64) + b"this is not audio" * 10)
    with pytest.raises(ValueError, match="garbage.wav.*cannot read as audio"):
        load_audio(garbage)
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(ValueError, match="zero.wav.*cannot read"):
        load_audio(zero_bytes)
    sf.write(tmp_path / "empty.wav", np.zeros(0), 24000, subtype="PCM_16")
    with pytest.raises(ValueError, match="empty.wav.*0 samples"):
        load_audio(tmp_path / "empty.wav")
    sf.write(tmp_path / "low.wav", np.zeros(100), 4000, subtype="PCM_16")
    with pytest.raises(ValueError, match=r"low.wav.*>= 8000 Hz.*found 4000 Hz"):
        load_audio(tmp_path / "low.wav")
    with pytest.raises(TypeError, match="str or os.PathLike"):
        load_audio(123)


def test_load_refuses_bad_float_samples(tmp_path):
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], np.float32), 24000, subtype="FLOAT")
    with pytest.raises(ValueError, match="nan.wav.*finite.*1 NaN/inf"):
        load_audio(tmp_path / "nan.wav")
    sf.write(tmp_path / "loud.wav", np.array([0.0, 1.5, 0.1], np.float32), 24000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"loud.wav.*full scale.*1.5"):
        load_audio(tmp_path / "loud.wav")


# ---------------------------------------------------------------------------------------- save_audio

@pytest.mark.parametrize("name", ["out.wav", "out.flac", "OUT.WAV"])
def test_save_round_trip_and_no_temp_left(tmp_path, name):
    s = ALL_INT16[::97].copy()
    save_audio(tmp_path / name, s)
    assert os.listdir(tmp_path) == [name]
    info = sf.info(tmp_path / name)
    assert info.subtype == "PCM_16" and info.samplerate == 24000 and info.channels == 1
    assert info.format == ("FLAC" if name.endswith("flac") else "WAV")
    back, _ = sf.read(tmp_path / name, dtype="int16")
    np.testing.assert_array_equal(back, s)


def test_save_float_converts_with_float_to_int16(tmp_path):
    x = np.array([-1.5, -0.25, 0.0, 0.3, 1.0], np.float32)
    save_audio(tmp_path / "f.wav", x, sample_rate=16000)
    back, sr = sf.read(tmp_path / "f.wav", dtype="int16")
    assert sr == 16000
    np.testing.assert_array_equal(back, float_to_int16(x))


def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    target.write_bytes(b"old contents")

    def failing_write(fh, *args, **kwargs):
        fh.write(b"RIFF partial")  # a partial file exists when the failure happens
        raise OSError("disk full")

    monkeypatch.setattr(audio.sf, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_audio(target, np.zeros(10, np.int16))
    assert os.listdir(tmp_path) == ["out.wav"]
    assert target.read_bytes() == b"old contents"
    with pytest.raises(OSError):
        save_audio(tmp_path / "new.wav", np.zeros(10, np.int16))
    assert os.listdir(tmp_path) == ["out.wav"]


def test_save_validates(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp3.*\.flac"):
        save_audio(tmp_path / "x.mp3", np.zeros(4, np.int16))
    with pytest.raises(ValueError, match="1-D.*mono.*\\(1, 4\\)"):
        save_audio(tmp_path / "x.wav", np.zeros((1, 4), np.int16))
    with pytest.raises(ValueError, match="at least one sample"):
        save_audio(tmp_path / "x.wav", np.zeros(0, np.int16))
    with pytest.raises(TypeError, match="int16 or floating-point.*int32"):
        save_audio(tmp_path / "x.wav", np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="finite"):
        save_audio(tmp_path / "x.wav", np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="does not exist"):
        save_audio(tmp_path / "no" / "x.wav", np.zeros(4, np.int16))
    assert os.listdir(tmp_path) == []
