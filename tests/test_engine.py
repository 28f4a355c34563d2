"""End-to-end tests of the C sampling loop (pywavernn/engine.py, c/sampler.c) against the NumPy reference.

Sampled integers: in exact mode the C loop gives the very samples of pywavernn.reference.generate_ref for
2,100 steps (7 frames x hop 300) on random models, dense and block-sparse, on every ISA available here and with
1 or 2 threads. Also: samples do not depend on the thread count; streaming in chunks equals one offline call;
fp16 storage equals fp32 storage of the fp16-rounded weights; invalid input raises before C runs.

Run: pytest tests/test_engine.py
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pywavernn import kernels
from pywavernn.config import ModelConfig
from pywavernn.engine import CpuEngine
from pywavernn.format import BlockSparseMatrix, Model
from pywavernn.reference import conditioning_ref, generate_ref
from pywavernn.testing import random_model

_native = pytest.importorskip("pywavernn._native")
if not _native.available():  # pragma: no cover
    pytest.skip("compiled extension not built", allow_module_level=True)

ISAS = kernels.available_isas()
N_FRAMES = 7  # x hop 300 = 2,100 steps


def _setup(density, block=(16, 1), hidden=64, seed=1):
    cfg = ModelConfig(hidden_size=hidden, out_hidden=32, cond_channels=16, block_shape=block)
    model = random_model(cfg, seed=seed, density=density)
    hop = model.feature_config.hop_length
    mel = np.random.default_rng(seed + 1).standard_normal((N_FRAMES, cfg.n_mels)).astype(np.float32)
    uniforms = np.random.default_rng(seed + 2).random((N_FRAMES * hop, 2), dtype=np.float32)
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


def test_thread_count_and_chunking_do_not_change_samples():
    model, mel, uniforms = _setup(0.4, (16, 1), hidden=96)
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
