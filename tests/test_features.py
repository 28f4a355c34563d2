"""Tests for pywavernn.features: filterbank, STFT and log-mel against librosa, short audio, chunking, check_mel.

librosa is a test-only oracle (tests that need it skip without it); the shared-data test skips without
../shared/data. Run: `python -m pytest tests/test_features.py -q`.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pywavernn import features
from pywavernn.audio import load_audio
from pywavernn.config import FeatureConfig
from pywavernn.features import check_mel, log_mel, mel_filterbank, stft_magnitude

CFG = FeatureConfig()


@pytest.fixture(scope="module")
def librosa():
    return pytest.importorskip("librosa")


def _signal(n, seed=0):
    """Noise plus a tone, with a silent stretch so the log floor is exercised; float32 like real audio."""
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal(n) + 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / 24000)
    x[n // 3: n // 2] = 0.0
    return x.astype(np.float32)


def _librosa_stft(librosa, x, cfg):
    spec = librosa.stft(
        x.astype(np.float64), n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        window="hann", center=cfg.center, pad_mode=cfg.pad_mode,
    )
    return (np.abs(spec) ** cfg.power).T


def _librosa_log_mel(librosa, x, cfg):
    mel = librosa.feature.melspectrogram(
        y=x.astype(np.float64), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, window="hann", center=cfg.center, pad_mode=cfg.pad_mode, power=cfg.power,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=cfg.mel_scale == "htk",
        norm="slaney" if cfg.mel_norm == "slaney" else None,
    )
    return np.log(np.maximum(mel, cfg.log_floor)).T


CONFIGS = [
    CFG,
    FeatureConfig(mel_scale="htk", mel_norm="none"),
    FeatureConfig(mel_scale="slaney", mel_norm="none", power=2.0),
    FeatureConfig(n_fft=1024, win_length=1024, hop_length=256, n_mels=40, fmin=0.0, fmax=8000.0,
                  mel_scale="htk", mel_norm="slaney", pad_mode="constant"),
]


# ------------------------------------------------------------------------------------- against librosa

@pytest.mark.parametrize("cfg", CONFIGS)
def test_mel_filterbank_matches_librosa(librosa, cfg):
    ours = mel_filterbank(cfg)
    ref = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
        htk=cfg.mel_scale == "htk", norm="slaney" if cfg.mel_norm == "slaney" else None,
    )
    assert ours.shape == (cfg.n_mels, cfg.n_fft // 2 + 1) and ours.dtype == np.float32
    # Same float64 construction; librosa rounds to float32 before the Slaney scaling, we after, so entries
    # differ by at most 1 float32 ulp: bound 2 ulps of the largest weight (measured: 1 ulp, or identical).
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2 * np.spacing(np.float32(ref.max())))


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large:UserWarning")  # librosa's note on 1025 samples
@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("n", [1025, 7777, 9000])
def test_stft_magnitude_matches_librosa(librosa, cfg, n):
    x = _signal(n)
    ours = stft_magnitude(x, cfg)
    ref = _librosa_stft(librosa, x, cfg)
    assert ours.shape == ref.shape == (cfg.n_frames(n), cfg.n_fft // 2 + 1) and ours.dtype == np.float32
    # Both float64; ours is rounded to float32 at the end (<= 6e-8 relative; measured max 6e-8). rtol 1e-6
    # covers that; atol 1e-9 of the peak covers float64 FFT-order noise in near-empty bins.
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9 * ref.max())


@pytest.mark.parametrize("cfg", CONFIGS)
def test_log_mel_matches_librosa(librosa, cfg):
    x = _signal(12345, seed=3)
    ours = log_mel(x, cfg)
    ref = _librosa_log_mel(librosa, x, cfg)
    assert ours.shape == ref.shape == (1 + 12345 // cfg.hop_length, cfg.n_mels)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    assert ours.min() == np.float32(np.log(cfg.log_floor))  # the silent stretch hits the floor
    # Absolute error in log = relative error in mel. Sources: rounding our log values (|v| <= ~12, half an
    # ulp <= 5e-7) and librosa's float32 filterbank (1 ulp, 1.2e-7 relative). Bound 2e-6 (measured 1.5e-7).
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6)


# ---------------------------------------------------------------------------------- lengths and chunks

@pytest.mark.parametrize("n", [1, 2, 299, 300, 301, 1024])
def test_short_audio_acts_as_if_followed_by_silence(n):
    x = _signal(n, seed=n)
    ours = log_mel(x)
    assert ours.shape == (1 + n // 300, 80)
    padded = np.concatenate([x, np.zeros(1025 - n, np.float32)])  # n_fft // 2 + 1 = 1025 samples
    np.testing.assert_array_equal(ours, log_mel(padded)[: ours.shape[0]])


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large:UserWarning")
def test_short_audio_matches_librosa_on_zero_extended_input(librosa):
    x = _signal(500, seed=7)
    padded = np.concatenate([x, np.zeros(525, np.float32)])
    ref = _librosa_log_mel(librosa, padded, CFG)[: 1 + 500 // 300]
    np.testing.assert_allclose(log_mel(x), ref, rtol=0, atol=2e-6)  # tolerance as in the librosa test above


@given(st.integers(min_value=1, max_value=4000))
def test_frame_count_and_finiteness_any_length(n):
    x = np.sin(np.arange(n, dtype=np.float32) * 0.3)
    mel = log_mel(x)
    assert mel.shape == (CFG.n_frames(n), 80) == (1 + n // 300, 80)
    assert mel.dtype == np.float32 and np.isfinite(mel).all()


def test_chunked_processing_is_invisible(monkeypatch):
    x = _signal(9001, seed=5)
    whole_mel, whole_mag = log_mel(x), stft_magnitude(x)
    monkeypatch.setattr(features, "_FRAMES_PER_CHUNK", 3)  # 31 frames: 10 full chunks and 1 partial
    np.testing.assert_array_equal(log_mel(x), whole_mel)
    np.testing.assert_array_equal(stft_magnitude(x), whole_mag)


def test_odd_n_fft_gives_the_configured_frame_count():
    cfg = FeatureConfig(n_fft=1023, win_length=1000, hop_length=300)
    assert log_mel(np.zeros(600, np.float32) + 0.1, cfg).shape == (cfg.n_frames(600), 80) == (3, 80)


def test_empty_mel_channels_warn():
    with pytest.warns(UserWarning, match="cover no FFT bin"):
        fb = mel_filterbank(FeatureConfig(n_fft=256, win_length=256, n_mels=100, fmin=0.0))
    assert (fb.max(axis=1) == 0).any()


def test_center_false(librosa):
    cfg = FeatureConfig(center=False)
    x = _signal(5000)
    np.testing.assert_allclose(log_mel(x, cfg), _librosa_log_mel(librosa, x, cfg), rtol=0, atol=2e-6)
    with pytest.raises(ValueError, match="center=False.*2048.*found 100"):
        log_mel(np.zeros(100, np.float32), cfg)


def test_audio_validation():
    with pytest.raises(ValueError, match="1-D.*\\(2, 100\\)"):
        log_mel(np.zeros((2, 100), np.float32))
    with pytest.raises(TypeError, match="floating-point.*int16.*int16_to_float"):
        log_mel(np.zeros(100, np.int16))
    with pytest.raises(ValueError, match="at least one sample"):
        log_mel(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="finite.*2 NaN/inf"):
        stft_magnitude(np.array([0.0, np.nan, np.inf]))
    with pytest.raises(TypeError, match="FeatureConfig.*dict"):
        log_mel(np.zeros(100, np.float32), {"n_mels": 80})


# ------------------------------------------------------------------------------------------- check_mel

def test_check_mel_accepts_and_normalises():
    mel = np.asfortranarray(np.random.default_rng(0).standard_normal((7, 80)))
    out = check_mel(mel, 80)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (7, 80)
    np.testing.assert_array_equal(out, mel.astype(np.float32))
    assert check_mel(np.zeros((80, 80)), 80).shape == (80, 80)  # square is ambiguous, so accepted
    assert check_mel([[0, 1, 2]], 3).dtype == np.float32


@pytest.mark.parametrize(
    "mel, error, pattern",
    [
        (np.zeros(80), ValueError, r"2-D.*\(frames, 80\).*1-D shape \(80,\)"),
        (np.zeros((1, 5, 80)), ValueError, r"2-D.*3-D shape \(1, 5, 80\)"),
        (np.zeros((80, 123)), ValueError, r"\(frames, 80\).*\(80, 123\).*looks transposed"),
        (np.zeros((123, 64)), ValueError, r"\(frames, 80\).*80 mel bins.*\(123, 64\)"),
        (np.zeros((0, 80)), ValueError, r"at least 1 frame.*\(0, 80\)"),
        (np.zeros((4, 80), np.complex64), TypeError, "real-valued.*complex64"),
        (np.full((4, 80), "a"), TypeError, "real-valued"),
        (np.zeros((4, 80), bool), TypeError, "real-valued.*bool"),
    ],
)
def test_check_mel_shape_and_type_errors(mel, error, pattern):
    with pytest.raises(error, match=pattern):
        check_mel(mel, 80)


def test_check_mel_non_finite():
    mel = np.zeros((6, 80), np.float32)
    mel[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"finite.*1 NaN and 0 inf.*frame 2, bin 5"):
        check_mel(mel, 80)
    mel[2, 5] = -np.inf
    with pytest.raises(ValueError, match=r"0 NaN and 1 inf"):
        check_mel(mel, 80)
    big = np.zeros((6, 80))
    big[0, 0] = 1e40  # finite in float64, inf in float32: the kernels would see inf
    with pytest.raises(ValueError, match=r"1 inf.*frame 0, bin 0"):
        check_mel(big, 80)
    with pytest.raises(ValueError, match="n_mels.*positive integer"):
        check_mel(mel, 0)


# ----------------------------------------------------------------------------------------- real speech

@pytest.mark.parametrize("corpus, rate", [("asterisk-en", 16000), ("piper-joe", 22050)])
def test_log_mel_on_shared_speech(shared_data, corpus, rate):
    import soundfile as sf

    path = sorted((shared_data / corpus).glob("*.flac"))[0]
    info = sf.info(path)
    assert info.samplerate == rate
    x = load_audio(path)
    assert x.shape == (-(-info.frames * 24000 // rate),)
    mel = log_mel(x)
    assert mel.shape == (1 + x.size // 300, 80) and np.isfinite(mel).all()
    floor = np.log(CFG.log_floor)
    assert mel.max() > floor + 5  # speech, not silence
    if rate == 16000:
        # G.722 16 kHz audio has nothing above 8 kHz: the top mel bins sit far below the speech band.
        top = mel_filterbank(CFG)[:, np.fft.rfftfreq(2048, 1 / 24000) > 8500].sum(axis=1) > 0
        assert mel[:, top].mean() < mel[:, ~top].mean() - 3
