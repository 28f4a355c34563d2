"""The engine interface (pywavernn/engines/base.py): one conformance suite over every backend present.

What it is: the same checks for each engine `pywavernn.engines.make_engine` gives, plain models (with and without
the linear prediction and prior of docs/format.md §11), subscale models and the fused model (§12) alike: it is an
Engine; generate gives the reference's samples (the C engines in exact mode) and calls progress; streaming through
`advance` (pywavernn/engines/stream.py) gives generate's samples for any chunking; nll agrees with the reference;
the thread count never changes the samples; bad input is a TypeError or ValueError before any compiled code runs.
The CUDA engine joins when its library and a GPU are present (tests/test_cuda.py has its own per-step tests).
What it is not: the per-kernel and per-step tests of each engine (test_kernels.py, test_engine.py,
test_subscale_engine.py, test_fused_engine.py) or the public API's (test_vocoder.py).

Run: python -m pytest tests/test_engines.py -q
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pywavernn.common import draw_uniforms
from pywavernn.conditioning import conditioning
from pywavernn.config import ModelConfig
from pywavernn.engines import Engine, make_engine
from pywavernn.engines.cuda import available as cuda_available
from pywavernn.engines.stream import Stream
from pywavernn.reference.fused import generate_fused_ref
from pywavernn.reference.plain import generate_ref
from pywavernn.reference.subscale import generate_subscale_ref
from pywavernn.testing import random_model, uniforms_clear_of_class_edges

PLAIN = ModelConfig(hidden_size=32, out_hidden=16, cond_channels=8, cond_kernels=(5, 3), block_shape=(16, 1))
SUBSCALE = replace(PLAIN, block_shape=(1, 1), subscale_factor=4, subscale_horizon=1, subscale_channels=8,
                   subscale_layers=2)
LINEAR = replace(PLAIN, linear_order=6, prior="laplace")  # docs/format.md §11
FUSED = replace(PLAIN, subscale_factor=2, subscale_horizon=2, subscale_fused=True)  # docs/format.md §12
N_FRAMES = 3


@pytest.fixture(scope="module", params=["plain", "plain-linear-prior", "subscale", "fused"])
def model(request):
    if request.param == "plain":
        return random_model(PLAIN, seed=11, density=0.5)
    if request.param == "plain-linear-prior":
        return random_model(LINEAR, seed=12, density=0.5)
    if request.param == "fused":
        return random_model(FUSED, seed=13, density=0.5)
    return random_model(SUBSCALE, seed=2)


def _uniforms(model, n_samples, seed):
    """The uniforms every engine of this model draws: (T, 2), or (T, 4) for the fused model (uniform_columns)."""
    return draw_uniforms(n_samples, seed, make_engine(model, "reference").uniform_columns)


def _backends(model):
    """(name, kwargs) of every engine to check for this model: the reference, the C engine (exact: the
    reference's samples; fast), and CUDA where it runs."""
    out = [("reference", {}), ("cpu", {"exact": True}), ("cpu", {})]
    if cuda_available(model)[0]:
        out.append(("cuda", {}))
    return out


@pytest.fixture(scope="module")
def case(model):
    """(mel, g, uniforms, the reference's samples): uniforms moved off class edges, where two correct
    implementations (matrix products summed in different orders) may draw different classes."""
    mel = np.random.default_rng(0).normal(-4.0, 2.0, size=(N_FRAMES, model.model_config.n_mels)).astype(np.float32)
    g = conditioning(model, mel)
    generate = {"plain": generate_ref, "subscale": generate_subscale_ref,
                "fused": generate_fused_ref}[model.model_config.kind]
    uniforms = uniforms_clear_of_class_edges(lambda u: generate(model, mel, u, trace=True),
                                             _uniforms(model, N_FRAMES * model.feature_config.hop_length, 7))
    reference = make_engine(model, "reference")
    return mel, g, uniforms, reference.generate(g, uniforms)


def _engines(model):
    return [(f"{name}{'-exact' if kw else ''}", make_engine(model, name, **kw)) for name, kw in _backends(model)]


def test_every_engine_meets_the_interface(model):
    for label, engine in _engines(model):
        assert isinstance(engine, Engine), label
        assert engine.backend in ("reference", "cpu", "cuda") and engine.hop == model.feature_config.hop_length
        assert engine.model_config == model.model_config and engine.new_state().t == 0


def test_generate_gives_the_reference_samples_and_reports_progress(model, case):
    _, g, uniforms, want = case
    for label, engine in _engines(model):
        seen = []
        got = engine.generate(g, uniforms, progress=seen.append)
        assert got.dtype == np.int16 and got.shape == want.shape, label
        if label != "cpu":  # the fast nonlinearities may move a draw across a class edge
            np.testing.assert_array_equal(got, want, err_msg=label)
        assert seen and seen[-1] == want.shape[0] and seen == sorted(seen), label
        state = engine.new_state()  # a fresh state gives the same samples and records them as returned
        np.testing.assert_array_equal(engine.generate(g, uniforms, state), got, err_msg=label)
        assert state.t == want.shape[0], label


@pytest.mark.parametrize("cuts", [(1,), (0, 1, 1, 3), (3,), (2, 3)])
def test_streaming_equals_generate(model, case, cuts):
    """Mel pushed in pieces (cuts: frames pushed so far after each push) through the stream over the engine's
    advance: the samples of one generate call, with the same seed."""
    mel, _, uniforms, _ = case
    for label, engine in _engines(model):
        if not engine.streams:
            with pytest.raises(ValueError, match="streaming is not available"):
                Stream(engine, model, seed=7)
            continue
        assert engine.uniform_columns == uniforms.shape[1], label
        want = engine.generate(conditioning(model, mel), _uniforms(model, mel.shape[0] * engine.hop, 7))
        stream, pieces, at = Stream(engine, model, seed=7), [], 0
        for cut in cuts:
            pieces.append(stream.push(mel[at:cut]))
            at = cut
            assert stream.samples_out == sum(p.shape[0] for p in pieces), label
        pieces.append(stream.push(mel[at:]))
        pieces.append(stream.finish())
        np.testing.assert_array_equal(np.concatenate(pieces), want, err_msg=label)


def test_nll_agrees_with_the_reference(model, case):
    _, g, _, audio = case
    want = make_engine(model, "reference").nll(g, audio)
    assert np.isfinite(want) and want > 0
    for label, engine in _engines(model):
        tolerance = 0.01 if label == "cpu" else 1e-4  # fast nonlinearities: see tests/test_engine.py
        assert abs(engine.nll(g, audio) - want) < tolerance, label


def test_thread_count_never_changes_the_samples(model, case):
    _, g, uniforms, _ = case
    one = make_engine(model, "cpu", threads=1).generate(g, uniforms)
    for threads in (2, 3):
        np.testing.assert_array_equal(make_engine(model, "cpu", threads=threads).generate(g, uniforms), one)


def test_bad_input_is_a_clear_error(model, case):
    _, g, uniforms, audio = case
    too_long = np.concatenate([uniforms, uniforms[:1]])
    outside = uniforms.copy()
    outside[3, 1] = 1.0
    for label, engine in _engines(model):
        with pytest.raises(TypeError, match="uniforms"):
            engine.generate(g, uniforms.astype(np.float64))
        with pytest.raises(ValueError, match="uniforms"):
            engine.generate(g, too_long)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            engine.generate(g, outside)
        with pytest.raises(ValueError, match="audio_int16"):
            engine.nll(g, np.concatenate([audio, audio[:1]]))
        np.testing.assert_array_equal(engine.generate(g, uniforms), engine.generate(g, uniforms), err_msg=label)


def test_whole_utterance_engines_refuse_a_used_state(model, case):
    _, g, uniforms, _ = case
    for label, engine in _engines(model):
        if model.model_config.subscale_factor == 1 and engine.backend != "cuda":
            continue  # plain engines continue a state: generate in pieces (tests/test_engine.py)
        state = engine.new_state()
        engine.generate(g, uniforms, state)
        with pytest.raises(ValueError, match="state"):
            engine.generate(g, uniforms, state)
