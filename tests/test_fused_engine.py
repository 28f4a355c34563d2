"""Tests of the Fused Subscale WaveRNN 2x C engine (pywavernn/engines/fused.py, c/fused_sampler.c) against the
NumPy reference pywavernn/reference/fused.py (docs/format.md §12).

Sampled integers: in exact mode the engine gives the very samples of generate_fused_ref over 2,100 samples (1,053
steps) on random models, dense, 16x1 and 4x4 block-sparse (R and the heads), fp32, on every ISA available here
and with 1 or 2 threads (uniforms moved off class edges, where two correct implementations whose matrix products
round differently may draw different nibbles). Per sample: the state after its step and its four nibbles' logits
within 1e-5 of the reference's. Fast mode (the fast exp/sigmoid/tanh, errors <= 1.5e-7 each): teacher-forced
logits within 1e-4 of exact mode and NLL within 0.01 bits (its samples may leave the reference's trajectory at the
first draw near a class edge, so they are not compared). NLL: Vocoder.nll within 1e-4 bits of nll_fused_ref in
exact mode. Streaming == offline for any chunking, odd lengths too; threads, the forced hand-over and fp16
storage change no sample; pre-emphasis goes through Vocoder; bad input is a clear TypeError / ValueError.

Run: python -m pytest tests/test_fused_engine.py -q
Letters: H hidden units, K head hidden units, T samples, hop samples per frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from pywavernn import Vocoder, fused, kernels
from pywavernn.audio import deemphasis
from pywavernn.common import draw_uniforms
from pywavernn.conditioning import conditioning
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.engines import make_engine
from pywavernn.engines.stream import Stream
from pywavernn.modelfile import FUSED_SPARSE_CAPABLE, BlockSparseMatrix, Model, save_model
from pywavernn.reference import fused as rf
from pywavernn.testing import random_model, uniforms_clear_of_class_edges

_native = pytest.importorskip("pywavernn._native")
if not _native.available():  # pragma: no cover
    pytest.skip("compiled extension not built", allow_module_level=True)
from pywavernn.engines.fused import FusedEngine  # noqa: E402  (needs the compiled extension)

ISAS = kernels.available_isas()
HOP = 20
N_FRAMES = 105  # x hop 20 = 2,100 samples
CONFIG = ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, n_mels=12, subscale_factor=2,
                     subscale_horizon=2, subscale_fused=True, block_shape=(16, 1))
FEATURES = FeatureConfig(n_mels=12, hop_length=HOP)
MODELS = {"dense": (None, (16, 1)), "16x1": (0.3, (16, 1)), "4x4": (0.5, (4, 4))}


def make_model(density=None, block=(16, 1), features=FEATURES, seed=1, **changes) -> Model:
    cfg = dataclasses.replace(CONFIG, block_shape=block, **changes)
    return random_model(cfg, features, seed=seed, density=density)


def mel_of(frames: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(-4.0, 2.0, (frames, CONFIG.n_mels)).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    """(model, mel, g, uniforms, the reference's samples, its trace) over 2,100 samples."""
    model = make_model(*MODELS[request.param])
    mel = mel_of(N_FRAMES)
    g = conditioning(model, mel)
    uniforms = uniforms_clear_of_class_edges(lambda u: rf.generate_fused_cond_ref(model, g, u, trace=True),
                                             draw_uniforms(N_FRAMES * HOP, 5, fused.N_NIBBLES))
    samples, trace = rf.generate_fused_cond_ref(model, g, uniforms, trace=True)
    return model, mel, g, uniforms, samples, trace


# --- the gate-input kernel ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_in, j0, j1", [(8, 0, 64), (11, 8, 13), (9, 3, 35), (10, 16, 32), (1, 0, 0), (14, 5, 60),
                                          (17, 1, 63)])
def test_gate_input_kernel_sums_the_columns_in_order_on_every_isa(n_in, j0, j1):
    """gru_input_cols (c/pwr_kernels.h) gives, bit for bit on every ISA, the float32 operations of the spec's gate
    input (pywavernn.reference.fused.part_input_projection_ref): the columns left to right, then the interpolated
    conditioning; rows outside the unit range are untouched."""
    hidden, rng = 64, np.random.default_rng(n_in)
    w_t = rng.standard_normal((17, 3 * hidden)).astype(np.float32)
    x = fused.NIBBLE_INPUT[rng.integers(0, 16, 17)]
    g0, g1 = rng.standard_normal((2, 3 * hidden)).astype(np.float32)
    a = np.float32(7) / np.float32(20)
    rows = (np.arange(3)[:, None] * hidden + np.arange(j0, j1)).ravel()
    want = x[0] * w_t[0, rows]
    for c in range(1, n_in):
        want = want + x[c] * w_t[c, rows]
    want = want + (g0[rows] + a * (g1[rows] - g0[rows]))
    for isa in ISAS:
        gi = np.full(3 * hidden, np.float32(7), np.float32)
        _native.engine().gru_input_cols(kernels.isa_id(isa), w_t, n_in, x, g0, g1, float(a), gi, hidden, j0, j1)
        np.testing.assert_array_equal(gi[rows], want, err_msg=isa)
        assert np.all(np.delete(gi, rows) == 7), isa


# --- the reference's samples, steps and likelihood ---------------------------------------------------------------

def test_exact_mode_gives_the_reference_samples(case):
    model, _, g, uniforms, want, _ = case
    assert want.shape == (2100,)
    for isa in ISAS:
        for threads in (1, 2):
            got = FusedEngine(model, exact=True, threads=threads, isa=isa).generate(g, uniforms)
            assert got.dtype == np.int16 and got.shape == want.shape
            mismatch = np.flatnonzero(got != want)
            assert mismatch.size == 0, f"{isa} threads={threads}: first mismatch at sample {mismatch[:1]}"


def test_exact_mode_steps_match_the_reference_trace(case):
    """Per sample: the state after its step and its four nibbles' logits (within 1e-5: the matrix products sum in
    another order than NumPy's), and the schedule step itself."""
    model, _, g, uniforms, want, trace = case
    got = FusedEngine(model, exact=True).trace(g, uniforms)
    np.testing.assert_array_equal(got["samples"], want)
    np.testing.assert_array_equal(got["step"], trace["step"])
    np.testing.assert_allclose(got["h"], trace["h"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["logits"], trace["logits"], rtol=0, atol=1e-5)
    forced = FusedEngine(model, exact=True).trace(g, want)  # teacher forcing on the generated audio: same steps
    np.testing.assert_array_equal(forced["logits"], got["logits"])
    np.testing.assert_array_equal(forced["h"], got["h"])


def test_fast_mode_is_close_to_exact_mode(case):
    """Fast nonlinearities: teacher-forced logits within 1e-4 of exact mode's, NLL within 0.01 bits."""
    model, _, g, _, want, _ = case
    exact, fast = FusedEngine(model, exact=True), FusedEngine(model, exact=False)
    np.testing.assert_allclose(fast.trace(g, want)["logits"], exact.trace(g, want)["logits"], rtol=0, atol=1e-4)
    assert abs(fast.nll(g, want) - exact.nll(g, want)) < 0.01


def test_vocoder_nll_matches_the_reference(case):
    """Vocoder.nll (teacher forcing in C) within 1e-4 bits of nll_fused_ref in exact mode, 0.01 in fast mode."""
    model, mel, _, _, audio, _ = case
    want = rf.nll_fused_ref(model, mel, audio)
    assert np.isfinite(want) and want > 0
    assert abs(Vocoder(model, exact=True).nll(mel, audio) - want) < 1e-4
    assert abs(Vocoder(model).nll(mel, audio) - want) < 0.01
    bits = FusedEngine(model, exact=True).nll(conditioning(model, mel), audio, per_sample=True)
    assert bits.shape == audio.shape and abs(bits.mean() - want) < 1e-4


def test_vocoder_draws_four_uniforms_a_sample_and_vocodes_the_reference(case):
    model, mel, _, _, _, _ = case
    mel = mel[:20]  # 400 samples
    g = conditioning(model, mel)
    voc = Vocoder(model, exact=True)
    assert voc.engine.uniform_columns == fused.N_NIBBLES
    want = FusedEngine(model, exact=True).generate(g, draw_uniforms(400, 9, fused.N_NIBBLES))
    np.testing.assert_array_equal(voc.vocode(mel, seed=9), want)
    np.testing.assert_array_equal(Vocoder(model, backend="reference").vocode(mel, seed=9),
                                  rf.generate_fused_cond_ref(model, g, draw_uniforms(400, 9, fused.N_NIBBLES)))


# --- streaming, threads, storage, odd lengths, pre-emphasis ------------------------------------------------------

@pytest.mark.parametrize("cuts", [(1,), (0, 1, 2, 7), (3, 4, 5, 6, 19), (25,)])
def test_streaming_equals_offline(cuts):
    model = make_model(0.3)
    mel = mel_of(30)
    voc = Vocoder(model)
    want = voc.vocode(mel, seed=4)
    stream, pieces, at = voc.stream(seed=4), [], 0
    for cut in cuts:
        pieces.append(stream.push(mel[at:cut]))
        at = cut
        assert stream.samples_out == sum(p.shape[0] for p in pieces)
    pieces.append(stream.push(mel[at:]))
    assert sum(p.shape[0] for p in pieces) > 0  # samples come out before the end is known
    pieces.append(stream.finish())
    np.testing.assert_array_equal(np.concatenate(pieces), want)


@pytest.mark.parametrize("hop", [25, 7])
def test_odd_lengths_match_the_reference_offline_and_streamed(hop):
    """T = F * hop odd: the last position of sub-tensor 1 is padding, never generated (§12)."""
    model = make_model(0.5, (4, 4), features=FeatureConfig(n_mels=12, hop_length=hop), seed=2)
    mel = mel_of(9)
    g = conditioning(model, mel)
    uniforms = uniforms_clear_of_class_edges(lambda u: rf.generate_fused_cond_ref(model, g, u, trace=True),
                                             draw_uniforms(9 * hop, 6, fused.N_NIBBLES))
    want = rf.generate_fused_cond_ref(model, g, uniforms)
    assert want.shape[0] % 2 == 1
    engine = FusedEngine(model, exact=True)
    np.testing.assert_array_equal(engine.generate(g, uniforms), want)
    pieces = []
    stream = Stream(engine, model, seed=np.random.default_rng(0))
    for at in range(9):
        pieces.append(stream.push(mel[at:at + 1]))
    pieces.append(stream.finish())
    np.testing.assert_array_equal(np.concatenate(pieces),
                                  engine.generate(g, draw_uniforms(9 * hop, np.random.default_rng(0), 4)))
    assert abs(engine.nll(g, want) - rf.nll_fused_cond_ref(model, g, want)) < 1e-4


def test_thread_count_and_progress_do_not_change_samples():
    model = make_model(0.3, hidden_size=96, out_hidden=48)
    g = conditioning(model, mel_of(40))
    uniforms = draw_uniforms(40 * HOP, 1, fused.N_NIBBLES)
    for isa in ISAS:
        one = FusedEngine(model, threads=1, isa=isa).generate(g, uniforms)
        for threads in (2, 3):
            np.testing.assert_array_equal(FusedEngine(model, threads=threads, isa=isa).generate(g, uniforms), one)
    seen = []
    engine = FusedEngine(model)
    np.testing.assert_array_equal(engine.generate(g, uniforms, progress=seen.append), one)
    assert seen and seen[-1] == 40 * HOP and seen == sorted(seen)


@pytest.mark.skipif(not _native.openmp_enabled(), reason="built without OpenMP: every loop runs on one thread")
def test_handover_to_thread_zero_and_back_keeps_samples(forced_handover):
    model = make_model(0.3)
    mel = mel_of(60)
    g = conditioning(model, mel)
    uniforms = draw_uniforms(60 * HOP, 2, fused.N_NIBBLES)
    want = FusedEngine(model, threads=1).generate(g, uniforms)
    want_nll = FusedEngine(model, threads=1).nll(g, want)
    forced_handover(50)
    before = _native.engine().handover_count()
    engine = FusedEngine(model, threads=2)
    np.testing.assert_array_equal(engine.generate(g, uniforms), want)
    assert engine.nll(g, want) == want_nll
    assert _native.engine().handover_count() - before >= 2 * 5  # 603 steps each: solo at 50-100, 150-200, ...


def _rounded_to_fp16(model: Model) -> Model:
    weights = dict(model.weights)
    for name in FUSED_SPARSE_CAPABLE:
        w = weights[name]
        if isinstance(w, BlockSparseMatrix):
            weights[name] = dataclasses.replace(w, values=w.values.astype(np.float16).astype(np.float32))
        else:
            weights[name] = w.astype(np.float16).astype(np.float32)
    return Model(model.model_config, model.feature_config, weights, dict(model.provenance))


@pytest.mark.parametrize("density", [None, 0.5])
def test_fp16_storage_equals_fp32_of_rounded_weights(density):
    model = make_model(density, (4, 4))
    g = conditioning(model, mel_of(30))
    uniforms = draw_uniforms(30 * HOP, 3, fused.N_NIBBLES)
    for isa in ISAS:
        half = FusedEngine(model, weights="fp16", isa=isa).generate(g, uniforms)
        rounded = FusedEngine(_rounded_to_fp16(model), weights="fp32", isa=isa).generate(g, uniforms)
        np.testing.assert_array_equal(half, rounded)


def test_preemphasis_is_undone_by_the_vocoder_offline_and_streamed():
    """§10 applies to the fused model unchanged: the network's samples are de-emphasised by Vocoder and the
    stream (generic code, no branch on the model kind), and its NLL scores the pre-emphasised audio."""
    model = make_model(0.3, preemphasis=0.85)
    mel = mel_of(20)
    voc = Vocoder(model, exact=True)
    network = FusedEngine(model, exact=True).generate(conditioning(model, mel), draw_uniforms(400, 8, 4))
    want = deemphasis(network, 0.85)[0]
    np.testing.assert_array_equal(voc.vocode(mel, seed=8), want)
    stream = voc.stream(seed=8)
    pieces = [stream.push(mel[:7]), stream.push(mel[7:])]
    pieces.append(stream.finish())
    np.testing.assert_array_equal(np.concatenate(pieces), want)


# --- bad input ---------------------------------------------------------------------------------------------------

def test_bad_input_is_a_clear_error():
    model = make_model(0.3)
    engine = FusedEngine(model)
    g = conditioning(model, mel_of(5))
    uniforms = draw_uniforms(100, 0, fused.N_NIBBLES)
    with pytest.raises(ValueError, match=r"uniforms: expected shape \(100, 4\).*found \(100, 2\)"):
        engine.generate(g, draw_uniforms(100, 0))
    with pytest.raises(ValueError, match=r"uniforms: expected shape \(100, 4\)"):
        engine.generate(g, uniforms[:99])
    with pytest.raises(TypeError, match="uniforms: expected a float32"):
        engine.generate(g, uniforms.astype(np.float64))
    with pytest.raises(ValueError, match=r"uniforms: expected values in \[0, 1\)"):
        engine.generate(g, np.where(np.arange(100)[:, None] == 3, np.float32(1), uniforms))
    with pytest.raises(ValueError, match="C-contiguous"):
        engine.generate(g, np.asfortranarray(uniforms))
    with pytest.raises(ValueError, match=r"g: expected shape \(5, 192\)"):
        engine.generate(g[:, :-1].copy(), uniforms)
    with pytest.raises(ValueError, match="at least one frame and finite"):
        engine.generate(np.where(np.arange(5)[:, None] == 2, np.float32(np.nan), g), uniforms)
    with pytest.raises(ValueError, match=r"audio_int16: expected shape \(100,\)"):
        engine.nll(g, np.zeros(101, np.int16))
    with pytest.raises(TypeError, match="audio_int16: expected an int16"):
        engine.nll(g, np.zeros(100, np.float32))
    draw = lambda n: draw_uniforms(n, 0, 4)  # noqa: E731
    state = engine.new_state()
    engine.generate(g, uniforms, state)
    with pytest.raises(ValueError, match="state"):
        engine.generate(g, uniforms, state)
    with pytest.raises(ValueError, match="state"):
        engine.advance(state, g, 0, 5, draw)
    with pytest.raises(ValueError, match="n_frames"):  # the end known: cond must reach it
        engine.advance(engine.new_state(), g[:3], 0, 5, draw)
    with pytest.raises(ValueError, match=r"draw\(n\): expected shape"):  # a draw of the plain model's 2 columns
        engine.advance(engine.new_state(), g, 0, 5, lambda n: draw_uniforms(n, 0))
    for field, value in (("_st", np.array([-1, 0, 0])), ("_st", np.array([0, 70000, 0])),
                         ("t", 7), ("h", np.zeros(63, np.float32)), ("h", np.zeros(64, np.float64))):
        tampered = engine.new_state()  # a state edited by hand: refused before C could write out of its buffers
        setattr(tampered, field, value)
        with pytest.raises((TypeError, ValueError), match="state"):
            engine.advance(tampered, g, 0, None, draw)
        with pytest.raises((TypeError, ValueError), match="state"):
            engine.generate(g, uniforms, tampered)
    with pytest.raises(ValueError, match="FusedEngine runs the Fused"):
        FusedEngine(random_model(ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, n_mels=12)))
    with pytest.raises(ValueError, match="weights"):
        FusedEngine(model, weights="int8")
    with pytest.raises(ValueError, match="threads"):
        FusedEngine(model, threads=0)
    tiny = make_model(features=FeatureConfig(n_mels=12, hop_length=1))  # one frame of one sample: no pair
    with pytest.raises(ValueError, match="at least 2 samples"):
        FusedEngine(tiny).generate(conditioning(tiny, mel_of(1)), draw_uniforms(1, 0, 4))
    np.testing.assert_array_equal(engine.generate(g, uniforms), engine.generate(g, uniforms))  # still works


def _edit_file(src, dst, edit):
    with safe_open(str(src), framework="np") as f:
        tensors, metadata = {k: np.array(f.get_tensor(k)) for k in f.keys()}, dict(f.metadata() or {})
    edit(tensors)
    save_file(tensors, str(dst), metadata=metadata)
    return dst


@pytest.mark.parametrize("edit, pattern", [
    (lambda t: t.pop("fused.O2"), r"missing \['fused.O2'\]"),
    (lambda t: t.pop("fused.b1"), r"missing \['fused.b1'\]"),
    (lambda t: t.__setitem__("gru.W_in", t["gru.W_in"][:, :12].copy()), r"gru.W_in: expected shape \(192, 14\)"),
    (lambda t: t.__setitem__("fused.O2", t["fused.O2"][:64].copy()), r"fused.O2: expected shape \(128, 32\)"),
    (lambda t: t.__setitem__("fused.b2", np.zeros(144, np.float32)), r"fused.b2: expected shape \(128,\)"),
], ids=["missing-head", "missing-bias", "w-in-columns", "nibble-heads", "nibble-classes"])
def test_a_broken_fused_file_is_refused_clearly(tmp_path, edit, pattern):
    """A fused file with a missing tensor, 12 instead of 14 W_in columns, or heads for the wrong number of nibbles
    or classes: Vocoder(path) raises ValueError naming the tensor and the file; nothing reaches C."""
    good = tmp_path / "good.safetensors"
    save_model(make_model(), good)
    assert Vocoder(good).engine.uniform_columns == 4
    bad = _edit_file(good, tmp_path / "bad.safetensors", edit)
    with pytest.raises(ValueError, match=pattern) as info:
        Vocoder(bad)
    assert str(bad) in str(info.value)


def test_make_engine_routes_the_fused_model():
    model = make_model()
    assert type(make_engine(model, "cpu")).__name__ == "FusedEngine"
    assert type(make_engine(model, "reference")).__name__ == "FusedReferenceEngine"
    assert make_engine(model, "reference").uniform_columns == 4 and not make_engine(model, "reference").streams
    with pytest.raises(ValueError, match="cuda"):
        make_engine(model, "cuda")
