"""Tests of the C sampling loop (pywavernn/engines/cpu.py, c/sampler.c) against the NumPy reference, end to end and
step by step.

Sampled integers: in exact mode the C loop gives the very samples of pywavernn.reference.plain.generate_ref for
2,100 steps (7 frames x hop 300) on random models, dense and block-sparse, on every ISA available here and with
1 or 2 threads. Also: samples do not depend on the thread count; streaming in chunks equals one offline call;
fp16 storage equals fp32 storage of the fp16-rounded weights; invalid input raises before C runs.

Steps: the hidden state and both logits of every step (CpuEngine.trace, teacher-forced with the reference's own
samples, and free-running in exact mode) against generate_ref(trace=True); teacher-forced NLL against nll_ref.
Batches and threads: generate_batch equals item-by-item generate (1 and 2 threads); concurrent generate calls
from 4 Python threads on one engine equal sequential calls.

Run: pytest tests/test_engine.py
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pywavernn import kernels
from pywavernn.audio import coarse_fine_split
from pywavernn.config import ModelConfig
from pywavernn.engines.cpu import CpuEngine
from pywavernn.modelfile import BlockSparseMatrix, Model
from pywavernn.conditioning import conditioning_ref
from pywavernn.reference.plain import generate_ref, nll_ref, teacher_forced_logits_ref
from pywavernn.testing import random_model

_native = pytest.importorskip("pywavernn._native")
if not _native.available():  # pragma: no cover
    pytest.skip("compiled extension not built", allow_module_level=True)

ISAS = kernels.available_isas()
N_FRAMES = 7  # x hop 300 = 2,100 steps


def _setup(density, block=(16, 1), hidden=64, seed=1, n_frames=N_FRAMES):
    cfg = ModelConfig(hidden_size=hidden, out_hidden=32, cond_channels=16, block_shape=block)
    model = random_model(cfg, seed=seed, density=density)
    hop = model.feature_config.hop_length
    mel = np.random.default_rng(seed + 1).standard_normal((n_frames, cfg.n_mels)).astype(np.float32)
    uniforms = np.random.default_rng(seed + 2).random((n_frames * hop, 2), dtype=np.float32)
    return model, mel, uniforms


@pytest.mark.parametrize("density, block", [(None, (16, 1)), (0.3, (16, 1)), (0.5, (4, 4)), (0.2, (1, 1)),
                                            (0.5, (8, 4))])
def test_exact_mode_matches_reference_samples(density, block):
    model, mel, uniforms = _setup(density, block)
    want = generate_ref(model, mel, uniforms)
    g = conditioning_ref(model, mel)
    for isa in ISAS:
        for threads in (1, 2):
            got = CpuEngine(model, exact=True, threads=threads, isa=isa).generate(g, uniforms)
            assert got.dtype == np.int16 and got.shape == want.shape
            mismatch = np.flatnonzero(got != want)
            assert mismatch.size == 0, f"{isa} threads={threads}: first mismatch at sample {mismatch[:1]}"


@pytest.mark.parametrize("hidden", [96, 48])  # 48: H/2 is no multiple of 16, so R rows are not split by gate
def test_thread_count_and_chunking_do_not_change_samples(hidden):
    model, mel, uniforms = _setup(0.4, (16, 1), hidden=hidden)
    g = conditioning_ref(model, mel)
    uniforms = uniforms[:700]  # 3 threads on a 2-core runner oversubscribe the spin barriers: keep it short
    for isa in ISAS:
        one = CpuEngine(model, threads=1, isa=isa).generate(g, uniforms)
        for threads in (2, 3):
            np.testing.assert_array_equal(CpuEngine(model, threads=threads, isa=isa).generate(g, uniforms), one)
        engine = CpuEngine(model, threads=2, isa=isa)
        state = engine.new_state()
        cuts = [0, 1, 299, 300, 601, len(uniforms)]
        parts = [engine.generate(g, uniforms[a:b], state) for a, b in zip(cuts[:-1], cuts[1:])]
        np.testing.assert_array_equal(np.concatenate(parts), one)
        assert state.t == len(uniforms)


@pytest.mark.skipif(not _native.openmp_enabled(), reason="built without OpenMP: every loop runs on one thread")
def test_handover_to_thread_zero_and_back_keeps_samples(forced_handover):
    """The team hands all rows to thread 0 for a stretch of steps and takes them back (what it does when its
    barriers keep sleeping on a busy machine), here forced every 100 steps: samples, NLL and a streamed run across
    calls are those of one thread, and the hand-overs did happen."""
    model, mel, uniforms = _setup(0.4, (16, 1), hidden=96)
    g = conditioning_ref(model, mel)
    audio = generate_ref(model, mel, uniforms)
    want = CpuEngine(model, threads=1).generate(g, uniforms)
    want_nll = CpuEngine(model, threads=1).nll(g, audio)
    forced_handover(100)
    before = _native.engine().handover_count()
    engine = CpuEngine(model, threads=2)
    np.testing.assert_array_equal(engine.generate(g, uniforms), want)
    assert engine.nll(g, audio) == want_nll
    state = engine.new_state()
    parts = [engine.generate(g, uniforms[a:b], state) for a, b in ((0, 450), (450, 1234), (1234, len(uniforms)))]
    np.testing.assert_array_equal(np.concatenate(parts), want)
    assert _native.engine().handover_count() - before >= 3 * 5  # 2,100 steps: solo at 100-200, 300-400, ...


def _rounded_to_fp16(model: Model) -> Model:
    weights = dict(model.weights)
    for name in ("gru.R", "out.O1", "out.O2", "out.O3", "out.O4"):
        w = weights[name]
        if isinstance(w, BlockSparseMatrix):
            weights[name] = dataclasses.replace(w, values=w.values.astype(np.float16).astype(np.float32))
        else:
            weights[name] = w.astype(np.float16).astype(np.float32)
    return Model(model.model_config, model.feature_config, weights, dict(model.provenance))


@pytest.mark.parametrize("density", [None, 0.5])
def test_fp16_storage_equals_fp32_of_rounded_weights(density):
    model, mel, uniforms = _setup(density, (4, 4))
    g = conditioning_ref(model, mel)
    for isa in ISAS:
        half = CpuEngine(model, weights="fp16", isa=isa).generate(g, uniforms[:600])
        rounded = CpuEngine(_rounded_to_fp16(model), weights="fp32", isa=isa).generate(g, uniforms[:600])
        np.testing.assert_array_equal(half, rounded)


def test_validation():
    model, mel, uniforms = _setup(None)
    g = conditioning_ref(model, mel)
    with pytest.raises(ValueError, match="weights"):
        CpuEngine(model, weights="int8")
    with pytest.raises(ValueError, match="threads"):
        CpuEngine(model, threads=0)
    with pytest.raises(TypeError, match="Model"):
        CpuEngine({"gru.R": 1})
    engine = CpuEngine(model)
    with pytest.raises(ValueError, match="shape"):
        engine.generate(g[:, :-1].copy(), uniforms)
    with pytest.raises(TypeError, match="float32"):
        engine.generate(g.astype(np.float64), uniforms)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        engine.generate(g, np.ones_like(uniforms))
    with pytest.raises(ValueError, match="run past"):
        engine.generate(g, np.zeros((len(uniforms) + 1, 2), np.float32))
    with pytest.raises(ValueError, match="finite"):
        bad = g.copy()
        bad[0, 0] = np.nan
        engine.generate(bad, uniforms)
    with pytest.raises(TypeError, match="StreamState"):
        engine.generate(g, uniforms, state="fresh")
    with pytest.raises(TypeError, match="StreamState"):
        engine.generate(g, uniforms, state=CpuEngine(random_model(ModelConfig(hidden_size=32, out_hidden=32,
                                                                              cond_channels=16))).new_state())


# --- step level: traces and NLL against the reference ----------------------------------------------------------
#
# Tolerances. The C kernels sum matrix rows in another order than NumPy's BLAS (and with FMA on AVX2), so one
# step differs by a few ulp; the recurrence carries that on, but the GRU is contractive and over 2,100 steps of
# these random models the largest difference seen is ~1.2e-7 (|h| <= 1, |logits| ~ 1). Exact mode (libm
# exp/tanh) is held to 1e-5 * (1 + |ref|), ~100x that margin; fast mode (exp/sigmoid/tanh approximations within
# 1.5e-7 absolute, c/gru_isa.c) adds its own rounding to every gate of every step and is held to 1e-4 * (1 + |ref|).
STEP_TOL = {True: 1e-5, False: 1e-4}


def _assert_steps_close(got: dict, want: dict, tol: float, what: str) -> None:
    for key in ("h", "logits_c", "logits_f"):
        err = np.abs(got[key] - want[key]) / (1 + np.abs(want[key]))
        worst = np.unravel_index(int(np.argmax(err)), err.shape)
        assert err.max() <= tol, f"{what}: {key} off by {err.max():.3g} (> {tol}) at step {worst[0]}"


@pytest.mark.parametrize("density, block", [(None, (16, 1)), (0.25, (16, 1)), (0.4, (4, 4))])
@pytest.mark.parametrize("exact", [True, False])
def test_step_traces_match_reference(density, block, exact):
    model, mel, uniforms = _setup(density, block, hidden=128)
    samples, want = generate_ref(model, mel, uniforms, trace=True)
    g = conditioning_ref(model, mel)
    for isa in ISAS:
        for threads in (1, 2):
            engine = CpuEngine(model, exact=exact, threads=threads, isa=isa)
            what = f"{isa} threads={threads} exact={exact}"
            forced = engine.trace(g, samples, len(samples))  # driven by the reference's own samples
            np.testing.assert_array_equal(forced["samples"], samples)
            _assert_steps_close(forced, want, STEP_TOL[exact], "teacher-forced " + what)
            if exact:  # free-running: the same samples, so the same steps
                free = engine.trace(g, uniforms, len(samples))
                np.testing.assert_array_equal(free["samples"], samples)
                _assert_steps_close(free, want, STEP_TOL[exact], "free-running " + what)


def test_trace_of_a_step_range_equals_the_slice_of_a_full_trace():
    model, mel, uniforms = _setup(0.3, (4, 4))
    g = conditioning_ref(model, mel)
    engine = CpuEngine(model, threads=2)
    samples = engine.generate(g, uniforms)
    for inputs in (samples, uniforms):
        full = engine.trace(g, inputs, 900)
        part = engine.trace(g, inputs, 250, start=599)
        for key in ("h", "logits_c", "logits_f", "samples"):
            np.testing.assert_array_equal(part[key], full[key][599:849])
        assert engine.trace(g, inputs, 0, start=10)["h"].shape == (0, 128 // 2)


def _neg_log2_softmax_at(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    l64 = logits.astype(np.float64)
    top = l64.max(axis=1)
    log_norm = top + np.log(np.exp(l64 - top[:, None]).sum(axis=1))
    return (log_norm - l64[np.arange(len(labels)), labels]) / np.log(2)


@pytest.mark.parametrize("density, block", [(None, (16, 1)), (0.25, (16, 1)), (0.4, (4, 4))])
def test_nll_matches_reference(density, block):
    model, mel, uniforms = _setup(density, block, hidden=128, n_frames=10)  # 3,000 samples
    audio = generate_ref(model, mel, uniforms)  # the model's own audio: a realistic, low-NLL input
    want = nll_ref(model, mel, audio)
    logits_c, logits_f = teacher_forced_logits_ref(model, mel, audio)
    coarse, fine = coarse_fine_split(audio)
    want_per_sample = _neg_log2_softmax_at(logits_c, coarse) + _neg_log2_softmax_at(logits_f, fine)
    g = conditioning_ref(model, mel)
    for isa in ISAS:
        exact_bits = CpuEngine(model, exact=True, isa=isa).nll(g, audio)
        fast = CpuEngine(model, exact=False, threads=2, isa=isa)
        fast_bits = fast.nll(g, audio)
        assert abs(exact_bits - want) < 1e-4, (isa, exact_bits, want)
        assert abs(fast_bits - want) < 0.01, (isa, fast_bits, want)
        per_sample = fast.nll(g, audio, per_sample=True)
        assert per_sample.shape == audio.shape and per_sample.dtype == np.float64
        assert per_sample.mean() == pytest.approx(fast_bits, rel=1e-12)
        np.testing.assert_allclose(per_sample, want_per_sample, rtol=0, atol=1e-3)


# --- batches and concurrency -------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
def test_generate_batch_equals_individual_calls(threads):
    model, mel, _ = _setup(0.3, (16, 1), hidden=96)
    g = conditioning_ref(model, mel)
    rng = np.random.default_rng(9)
    gs = [g, g[:3].copy(), (g[::-1] * 0.5).copy(), g[:1].copy(), g]
    us = [rng.random((n, 2), dtype=np.float32) for n in (2100, 900, 1500, 300, 0)]
    for isa in ISAS:
        engine = CpuEngine(model, isa=isa)
        want = [engine.generate(gi, ui) for gi, ui in zip(gs, us)]
        got = engine.generate_batch(gs, us, threads=threads)
        assert len(got) == len(want)
        for i, (a, b) in enumerate(zip(got, want)):
            assert a.dtype == np.int16
            np.testing.assert_array_equal(a, b, err_msg=f"{isa} threads={threads} item {i}")
        # With states: a batch continues streams exactly as generate would.
        states = [engine.new_state() for _ in gs]
        first = engine.generate_batch(gs, [u[:100] for u in us], threads=threads, states=states)
        rest = engine.generate_batch(gs, [u[100:] for u in us], threads=threads, states=states)
        for i, (a, b, w) in enumerate(zip(first, rest, want)):
            np.testing.assert_array_equal(np.concatenate([a, b]), w, err_msg=f"streamed item {i}")
            assert states[i].t == len(us[i])
    assert CpuEngine(model).generate_batch([], []) == []


@pytest.mark.parametrize("engine_threads", [1, 2])
def test_concurrent_generate_from_python_threads(engine_threads):
    """With engine_threads = 2, four teams of 2 share the runner's cores: their barriers sleep, and a team that keeps
    sleeping hands the rest of its call to one thread (c/sampler.c) -- the samples must not change either way."""
    from concurrent.futures import ThreadPoolExecutor

    model, mel, _ = _setup(0.3, (16, 1), hidden=96)
    g = conditioning_ref(model, mel)
    n = 2100 if engine_threads == 1 else 600  # 4 x 2 spinning threads on a 2-core runner: keep it short
    us = [np.random.default_rng(20 + i).random((n, 2), dtype=np.float32) for i in range(4)]
    engine = CpuEngine(model, threads=engine_threads)
    want = [engine.generate(g, u) for u in us]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda u: engine.generate(g, u), us))
            for i, (a, b) in enumerate(zip(got, want)):
                np.testing.assert_array_equal(a, b, err_msg=f"python thread {i}")


def test_validation_of_batches_nll_and_traces():
    model, mel, uniforms = _setup(None)
    g = conditioning_ref(model, mel)
    engine = CpuEngine(model)
    with pytest.raises(ValueError, match="equal length"):
        engine.generate_batch([g, g], [uniforms])
    with pytest.raises(TypeError, match="lists"):
        engine.generate_batch(g, uniforms)
    with pytest.raises(ValueError, match=r"uniforms\[1\]"):
        engine.generate_batch([g, g], [uniforms, np.ones_like(uniforms)])
    with pytest.raises(TypeError, match=r"gs\[0\]"):
        engine.generate_batch([g.astype(np.float64)], [uniforms])
    with pytest.raises(ValueError, match="run past"):
        engine.generate_batch([g[:1].copy()], [uniforms])
    with pytest.raises(ValueError, match="threads"):
        engine.generate_batch([g], [uniforms], threads=0)
    state = engine.new_state()
    with pytest.raises(ValueError, match="distinct"):
        engine.generate_batch([g, g], [uniforms, uniforms], states=[state, state])
    with pytest.raises(TypeError, match="int16"):
        engine.nll(g, np.zeros(len(uniforms), np.int32))
    with pytest.raises(ValueError, match="run past"):
        engine.nll(g, np.zeros(len(uniforms) + 1, np.int16))
    with pytest.raises(ValueError, match="at least one"):
        engine.nll(g, np.zeros(0, np.int16))
    with pytest.raises(ValueError, match="start \\+ n_steps"):
        engine.trace(g, uniforms[:10], 11)
    with pytest.raises(ValueError, match="n_steps"):
        engine.trace(g, uniforms, -1)
    with pytest.raises(TypeError, match="float32"):
        engine.trace(g, uniforms.astype(np.float64), 10)
