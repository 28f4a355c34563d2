"""The public Vocoder: backends agree, seeds reproduce, streaming equals offline (plain and subscale models, any
chunking and thread count; subscale latency and memory bounded), threads may share a Vocoder.

Small random models (pywavernn.testing.random_model); the kernels themselves are tested in test_kernels.py and
the engine against the reference step by step in test_engine.py.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pywavernn.config import ModelConfig
from pywavernn.testing import random_model
from pywavernn.vocoder import Vocoder

CFG = ModelConfig(hidden_size=32, out_hidden=16, cond_channels=8, cond_kernels=(5, 3), block_shape=(16, 1))


@pytest.fixture(scope="module")
def model():
    return random_model(CFG, seed=11, density=0.5)


def _mel(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(-4.0, 2.0, size=(frames, 80)).astype(np.float32)


def test_cpu_exact_equals_reference(model):
    mel = _mel(8)
    ref = Vocoder(model, backend="reference").vocode(mel, seed=3)
    cpu = Vocoder(model, backend="cpu", exact=True).vocode(mel, seed=3)
    assert ref.dtype == np.int16 and ref.shape == (8 * 300,)
    assert np.array_equal(ref, cpu)


@pytest.mark.parametrize("frames", [1, 2, 17, 64])
def test_conditioning_is_the_numpy_definition_bit_for_bit(model, frames):
    """Vocoder's conditioning runs its products in the compiled kernel (kernels.frame_matmul); g must be the bits
    of the NumPy definition (conditioning_ref with its own matmul), or the same seed would not give the
    reference backend's samples."""
    from pywavernn import _native
    from pywavernn.conditioning import conditioning, conditioning_ref

    if not _native.available():  # pragma: no cover
        pytest.skip("compiled extension not built")
    mel = _mel(frames, seed=frames)
    assert conditioning(model, mel).tobytes() == conditioning_ref(model, mel).tobytes()


def test_progress_chunks_do_not_change_samples(model):
    mel = _mel(90)  # 27,000 samples: two progress chunks
    voc = Vocoder(model)
    seen = []
    with_progress = voc.vocode(mel, seed=5, progress=seen.append)
    assert np.array_equal(with_progress, voc.vocode(mel, seed=5))
    assert seen == [24000, 27000]


@settings(max_examples=15)
@given(chunks=st.lists(st.integers(0, 7), min_size=1, max_size=8), seed=st.integers(0, 2**31))
def test_stream_equals_offline(model, chunks, seed):
    if sum(chunks) == 0:
        chunks = chunks + [1]
    mel = _mel(sum(chunks), seed % 100)
    voc = Vocoder(model)
    offline = voc.vocode(mel, seed=seed)
    stream = voc.stream(seed=seed)
    pieces, at = [], 0
    for n in chunks:
        pieces.append(stream.push(mel[at:at + n]))
        at += n
        assert stream.samples_out == sum(p.shape[0] for p in pieces)
    pieces.append(stream.finish())
    assert np.array_equal(np.concatenate(pieces), offline)


def test_stream_on_the_reference_backend_equals_offline(model):
    """The plain reference carries its state too, so it streams through the same interface as the C engine."""
    mel = _mel(6, 3)
    voc = Vocoder(model, backend="reference")
    stream = voc.stream(seed=2)
    pieces = [stream.push(mel[a:b]) for a, b in ((0, 2), (2, 5), (5, 6))] + [stream.finish()]
    assert np.array_equal(np.concatenate(pieces), voc.vocode(mel, seed=2))


def test_stream_equals_offline_one_frame_at_a_time_on_a_wider_model():
    # Wide enough (C = 64, H = 128) that a BLAS product's rounding would depend on the window's frame count;
    # the conditioning network must give each frame the same bits however many frames it is given.
    wide = random_model(ModelConfig(hidden_size=128, out_hidden=64, cond_channels=64, cond_kernels=(5, 3)),
                        seed=4)
    mel = _mel(23, 5)
    voc = Vocoder(wide)
    stream = voc.stream(seed=5)
    pieces = [stream.push(mel[j:j + 1]) for j in range(mel.shape[0])] + [stream.finish()]
    assert np.array_equal(np.concatenate(pieces), voc.vocode(mel, seed=5))


def test_a_vocoder_is_unaffected_by_later_changes_to_the_callers_arrays():
    from pywavernn.modelfile import pack_block_sparse

    m = random_model(CFG, seed=11, density=0.5)
    voc = Vocoder(m)
    mel = _mel(4)
    before = voc.vocode(mel, seed=1)
    r = m.weights["gru.R"]
    writable = pack_block_sparse(np.ascontiguousarray(m.dense("gru.R")), *r.block)
    m.weights["gru.R"] = writable
    voc2 = Vocoder(m)
    writable.col_idx[:] = 2**30  # after validation: the engine must hold its own copy
    m.weights["gru.W_in"] = np.ones_like(m.dense("gru.W_in"))
    assert np.array_equal(voc2.vocode(mel, seed=1), before)


def test_stream_memory_is_bounded(model):
    voc = Vocoder(model)
    stream = voc.stream(seed=0)
    for i in range(40):
        stream.push(_mel(5, i))
        assert stream._mel.shape[0] <= 2 * CFG.cond_lookahead + 5
        assert stream._g.shape[0] <= CFG.cond_lookahead + 6


def test_stream_errors(model):
    from dataclasses import replace

    sub = random_model(replace(CFG, subscale_factor=4, subscale_horizon=1, subscale_channels=8, subscale_layers=2),
                       seed=5)
    with pytest.raises(ValueError, match="streaming is not available on the 'reference' backend.*'cpu'"):
        Vocoder(sub, backend="reference").stream()  # the subscale reference runs whole utterances
    stream = Vocoder(model).stream()
    with pytest.raises(ValueError, match="no mel frames"):
        stream.finish()
    stream.push(_mel(2))
    with pytest.raises(ValueError, match="finite"):
        stream.push(np.full((1, 80), np.inf, np.float32))
    stream.finish()
    with pytest.raises(ValueError, match="finished"):
        stream.push(_mel(1))


def test_concurrent_vocode_from_python_threads(model):
    voc = Vocoder(model)
    mels = [_mel(6, i) for i in range(4)]
    expected = [voc.vocode(m, seed=i) for i, m in enumerate(mels)]
    results = [None] * 4

    def work(i):
        results[i] = voc.vocode(mels[i], seed=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "gpu"}, "backend"),
    ({"weights": "int8"}, "weights"),
    ({"threads": 0}, "threads"),
    ({"backend": "reference", "weights": "fp16"}, "cpu' backend only"),
    ({"backend": "reference", "threads": 2}, "cpu' backend only"),
])
def test_constructor_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Vocoder(model, **kwargs)


def test_cuda_backend_says_why_it_is_unavailable(model):
    from pywavernn.engines import cuda

    ok, why = cuda.available(model)
    if ok:
        pytest.skip("a CUDA device is present; tests/test_cuda.py checks the backend there")
    with pytest.raises(ValueError, match="backend 'cuda' is not available: .+"):
        Vocoder(model, backend="cuda")


def test_nll_cpu_matches_reference(model):
    mel = _mel(4)
    audio = Vocoder(model, backend="reference").vocode(mel, seed=1)
    ref = Vocoder(model, backend="reference").nll(mel, audio)
    assert abs(Vocoder(model, exact=True).nll(mel, audio) - ref) < 1e-4
    assert abs(Vocoder(model).nll(mel, audio) - ref) < 0.01


def test_subscale_model_runs_on_both_backends_with_the_same_samples():
    from dataclasses import replace

    cfg = replace(CFG, block_shape=(1, 1), subscale_factor=4, subscale_horizon=1, subscale_channels=8,
                  subscale_layers=2)
    sub = random_model(cfg, seed=2)
    mel = _mel(3)
    ref = Vocoder(sub, backend="reference").vocode(mel, seed=4)
    seen = []
    cpu = Vocoder(sub, exact=True).vocode(mel, seed=4, progress=seen.append)
    assert ref.shape == (900,) and np.array_equal(ref, cpu) and seen == [900]
    for threads in (2, 3, 5):  # the streams split over threads (5 > B uses 4): the same samples
        assert np.array_equal(Vocoder(sub, exact=True, threads=threads).vocode(mel, seed=4), ref)


SUB_CASES = [(4, 1, 2, (1, 1)), (16, 2, 2, (16, 1)), (2, 3, 0, (16, 1))]  # (B, F, D, block)


@pytest.fixture(scope="module", params=SUB_CASES, ids=[f"B{c[0]}-F{c[1]}-D{c[2]}" for c in SUB_CASES])
def sub_model(request):
    from dataclasses import replace

    factor, horizon, layers, block = request.param
    cfg = replace(CFG, block_shape=block, subscale_factor=factor, subscale_horizon=horizon, subscale_channels=8,
                  subscale_layers=layers)
    return random_model(cfg, seed=factor + horizon, density=None if block == (1, 1) else 0.5)


@settings(max_examples=10)
@given(chunks=st.lists(st.integers(0, 6), min_size=1, max_size=7), seed=st.integers(0, 2**31),
       threads=st.integers(1, 3), exact=st.booleans())
def test_subscale_stream_equals_offline(sub_model, chunks, seed, threads, exact):
    if sum(chunks) == 0:
        chunks = chunks + [1]
    mel = _mel(sum(chunks), seed % 100)
    voc = Vocoder(sub_model, threads=threads, exact=exact)
    offline = voc.vocode(mel, seed=seed)
    stream = voc.stream(seed=seed)
    pieces, at = [], 0
    for n in chunks:
        pieces.append(stream.push(mel[at:at + n]))
        at += n
        assert stream.samples_out == sum(p.shape[0] for p in pieces)
    pieces.append(stream.finish())
    assert np.array_equal(np.concatenate(pieces), offline)


def test_subscale_stream_latency_and_memory_are_bounded(sub_model):
    """Samples come out once the lagging stream has them: at most (B - 1)(F + 1) B + B samples behind the last
    sample whose conditioning is final; mel, g and the pending samples stay bounded."""
    cfg = sub_model.model_config
    factor, horizon, hop, look = cfg.subscale_factor, cfg.subscale_horizon, 300, cfg.cond_lookahead
    lag = (factor - 1) * (horizon + 1) * factor + factor
    stream = Vocoder(sub_model).stream(seed=0)
    for i in range(30):
        stream.push(_mel(2, i))
        ready = (2 * (i + 1) - look - 1) * hop  # samples whose next frame's g is final
        assert ready - lag <= stream.samples_out <= max(0, ready)
        assert stream._mel.shape[0] <= 2 * look + 2
        assert stream._g.shape[0] <= lag // hop + 4
        assert stream._state.pending.shape[0] <= lag and stream._state.uniforms.shape[0] <= lag
    before = stream.samples_out
    assert before + stream.finish().shape[0] == stream.samples_out == 60 * hop


def test_model_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="model"):
        Vocoder(42)
    with pytest.raises(FileNotFoundError):
        Vocoder(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("field, value, message", [
    ("hop_length", 10**12, "hop_length"),
    ("n_fft", 2**40, "n_fft"),
    ("center", "no", "center"),
    ("log_floor", float("inf"), "log_floor"),
])
def test_feature_config_refuses_values_a_model_file_could_smuggle_in(field, value, message):
    from pywavernn.config import FeatureConfig

    with pytest.raises(ValueError, match=message):
        FeatureConfig.from_dict({**FeatureConfig().to_dict(), field: value})


def test_huge_but_finite_mel_is_a_clear_error_on_every_backend(model):
    mel = np.full((3, 80), 3e38, np.float32)
    for backend in ("cpu", "reference"):
        with pytest.raises(ValueError, match="natural-log mel"):
            Vocoder(model, backend=backend).vocode(mel)


def test_conditioning_overflow_is_a_clear_error():
    from pywavernn.conditioning import conditioning

    loud = random_model(CFG, seed=1, scale=1e30)
    with pytest.raises(ValueError, match="overflow the conditioning network"):
        conditioning(loud, np.full((2, 80), 1e3, np.float32))


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_bad_seed_is_named(model, seed):
    with pytest.raises(ValueError, match="seed"):
        Vocoder(model).vocode(_mel(2), seed=seed)


def test_nll_requires_frames_times_hop_samples_on_every_backend(model):
    audio = np.zeros(599, np.int16)
    for backend in ("cpu", "reference"):
        with pytest.raises(ValueError, match="frames x hop"):
            Vocoder(model, backend=backend).nll(_mel(2), audio)


def test_isa_choice_keeps_the_samples_and_is_checked(model):
    """Vocoder(isa=...) picks the sampling loop's kernels: the avx512 copy gives the avx2 samples bit for bit, plain
    and subscale (pwr_isa.h); every ISA available here vocodes; an unknown or unavailable one, or isa with another
    backend, is a clear error."""
    from dataclasses import replace

    from pywavernn import kernels

    mel = _mel(6)
    sub = random_model(replace(CFG, subscale_factor=4, subscale_horizon=1, subscale_channels=8, subscale_layers=2),
                       seed=5, density=0.5)
    for m in (model, sub):
        got = {isa: Vocoder(m, isa=isa).vocode(mel, seed=2) for isa in kernels.available_isas()}
        assert all(a.shape == (6 * 300,) for a in got.values())
        if {"avx2", "avx512"} <= set(got):
            np.testing.assert_array_equal(got["avx512"], got["avx2"])
    with pytest.raises(ValueError, match="isa"):
        Vocoder(model, isa="altivec")
    with pytest.raises(ValueError, match="cpu"):
        Vocoder(model, backend="reference", isa="generic")
