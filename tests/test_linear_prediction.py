"""Tests of the plain model's linear prediction and prior (docs/format.md §11) outside training: config, file,
reference and the C engine.

What it is: ModelConfig's new fields (defaults left out of the JSON, so every existing file reads and writes as
before; refusals), the file (round trip, `pywavernn info`, bad files naming the tensor), the NumPy reference (est
summed in the spec's order, streaming == one call, the prior read and pulling samples to est), and the C engine
against the reference: the very samples in exact mode (dense, 16x1, 4x4; every ISA; 1-3 threads; with and without
the prior), streaming in chunks, per-step states and logits, teacher-forced NLL, fp16 storage, the hand-over to
thread 0, and the CUDA engine's refusal.
What it is not: the twin and the losses (tests/test_parity_torch.py, tests/test_fast_gru.py, tests/test_training.py
have those), nor the conformance suite (tests/test_engines.py runs such a model too).

Run: python -m pytest tests/test_linear_prediction.py -q
Letters: P linear order, H hidden units, K output-head hidden units, T samples.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from pywavernn import _native, kernels
from pywavernn import modelfile as fmt
from pywavernn.audio import coarse_fine_split
from pywavernn.conditioning import conditioning_ref
from pywavernn.config import ModelConfig
from pywavernn.engines.cuda import available as cuda_available
from pywavernn.modelfile import BlockSparseMatrix, Model
from pywavernn.reference import plain
from pywavernn.reference.prior import prior_location_ref
from pywavernn.testing import random_model

REPO = Path(__file__).resolve().parent.parent
CONFIG = ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, linear_order=8, prior="laplace")
N_FRAMES = 7  # x hop 300 = 2,100 samples
needs_native = pytest.mark.skipif(not _native.available(), reason="compiled extension not built")


def _setup(density=None, block=(16, 1), prior="laplace", order=8, seed=1, n_frames=N_FRAMES, hidden=64):
    cfg = dataclasses.replace(CONFIG, block_shape=block, prior=prior, linear_order=order, hidden_size=hidden)
    model = random_model(cfg, seed=seed, density=density)
    mel = np.random.default_rng(seed + 1).standard_normal((n_frames, cfg.n_mels)).astype(np.float32)
    uniforms = np.random.default_rng(seed + 2).random((n_frames * 300, 2), dtype=np.float32)
    return model, mel, uniforms


def _without_prediction(model: Model) -> Model:
    """The same weights with linear prediction off: W_in's est column and the §11 tensors dropped."""
    weights = {k: v for k, v in model.weights.items() if not k.startswith(("linear.", "prior."))}
    weights["gru.W_in"] = np.ascontiguousarray(model.weights["gru.W_in"][:, :3])
    cfg = dataclasses.replace(model.model_config, linear_order=0, prior="none")
    return Model(cfg, model.feature_config, weights, {})


# --- config and file ----------------------------------------------------------------------------------------------

def test_config_defaults_are_left_out_and_bad_values_refused():
    plain_cfg = ModelConfig()
    assert "linear_order" not in plain_cfg.to_dict() and "prior" not in plain_cfg.to_dict()
    d = CONFIG.to_dict()
    assert d["linear_order"] == 8 and d["prior"] == "laplace"
    assert ModelConfig.from_dict(d) == CONFIG
    assert ModelConfig.from_dict({k: v for k, v in d.items() if k not in ("linear_order", "prior")}) \
        == dataclasses.replace(CONFIG, linear_order=0, prior="none")
    for change, match in [({"linear_order": 65}, "linear_order"), ({"linear_order": -1}, "linear_order"),
                          ({"linear_order": 2.0}, "linear_order"), ({"prior": "gauss"}, "prior"),
                          ({"linear_order": 0}, "needs linear_order >= 1"),
                          ({"subscale_factor": 4, "subscale_horizon": 1}, "plain model only")]:
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(CONFIG, **change)


@pytest.mark.parametrize("path", ["tests/data/compat/bundled_2026-12-04.safetensors", "tests/data/golden_small.safetensors"])
def test_files_without_linear_prediction_write_as_before(tmp_path, path):
    """A file written before §11 existed loads with the defaults and is written again with the very same
    model_config text and tensor bytes (the JSON header's key order is safetensors' own, not ours)."""
    with safe_open(REPO / path, framework="np") as f:
        stored = f.metadata()["model_config"]
    model = fmt.load_model(REPO / path)
    assert model.model_config.linear_order == 0 and model.model_config.prior == "none"
    assert model.model_config.to_json() == stored
    fmt.save_model(model, tmp_path / "again.safetensors")
    with safe_open(tmp_path / "again.safetensors", framework="np") as f, \
            safe_open(REPO / path, framework="np") as g:
        assert f.metadata()["model_config"] == stored and sorted(f.keys()) == sorted(g.keys())
        for key in g.keys():
            assert np.array_equal(f.get_tensor(key), g.get_tensor(key)), key


def test_round_trip_and_info(tmp_path):
    model, _, _ = _setup(density=0.5)
    assert model.dense("gru.W_in").shape == (3 * 64, 4)
    path = tmp_path / "lp.safetensors"
    fmt.save_model(model, path)
    loaded = fmt.load_model(path)
    assert loaded.model_config == model.model_config
    for name in ("linear.weight", "prior.weight", "prior.bias", "gru.W_in"):
        np.testing.assert_array_equal(loaded.weights[name], model.weights[name])
    text = fmt.describe(loaded)
    assert "linear_order: 8" in text and "prior: laplace" in text
    assert "linear.weight" in text and "prior.weight" in text and "192x4" in text


def _write(path, model: Model, drop=(), replace=None, config=None):
    tensors, meta = {}, None
    fmt.save_model(model, path)
    with safe_open(path, framework="np") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys() if k not in drop}
    tensors.update(replace or {})
    if config is not None:
        meta["model_config"] = json.dumps(config)
    save_file(tensors, str(path), metadata=meta)
    return path


def test_bad_files_name_the_tensor(tmp_path):
    model, _, _ = _setup(density=None)
    d = model.model_config.to_dict()
    cases = [
        ({"drop": ("linear.weight",)}, r"missing \['linear.weight'\]"),
        ({"drop": ("prior.bias",)}, r"missing \['prior.bias'\]"),
        ({"replace": {"linear.weight": np.zeros(7, np.float32)}}, r"linear.weight: expected shape \(8,\)"),
        ({"replace": {"prior.weight": np.zeros((2, 31), np.float32)}}, r"prior.weight: expected shape \(2, 32\)"),
        ({"replace": {"linear.weight": np.full(8, np.nan, np.float32)}}, "linear.weight: expected finite"),
        ({"config": {**d, "linear_order": 0}}, "prior = 'laplace'.*needs linear_order >= 1"),
        ({"config": {**d, "linear_order": 0, "prior": "none"}, "drop": ("linear.weight", "prior.weight",
                                                                          "prior.bias")},
         r"gru.W_in: expected shape \(192, 3\), found \(192, 4\) \(4 columns"),  # est's column without P
        ({"config": {**d, "prior": "none"}}, r"unexpected \['prior.bias', 'prior.weight'\]"),
    ]
    for i, (kw, match) in enumerate(cases):
        path = _write(tmp_path / f"bad{i}.safetensors", model, **kw)
        with pytest.raises(ValueError, match=match):
            fmt.load_model(path)


# --- the reference ---------------------------------------------------------------------------------------------------

def test_estimate_is_the_ordered_float32_sum_of_the_past():
    """est(t) of teacher forcing (vectorised) and of generation (one sample at a time) is the loop of §11 written
    out in float32, with zeros before the utterance."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal(8).astype(np.float32)
    audio = rng.integers(-32768, 32768, 500).astype(np.int16)
    v = plain.sample_value_ref(audio)
    est = plain.linear_prediction_ref(weight, plain.past_values_ref(v, 8))
    for t in (0, 1, 7, 8, 499):
        want = np.float32(0)
        for p in range(1, 9):
            want = np.float32(want + np.float32(weight[p - 1] * (v[t - p] if t - p >= 0 else np.float32(0))))
        assert est[t] == want, t
        past = np.array([v[t - p] if t - p >= 0 else 0 for p in range(1, 9)], np.float32)
        assert plain.linear_prediction_ref(weight, past) == want


@pytest.mark.parametrize("prior", ["none", "laplace"])
def test_reference_streams_and_reads_the_prediction(prior):
    model, mel, uniforms = _setup(prior=prior, n_frames=3)
    g = conditioning_ref(model, mel)
    want, steps = plain.generate_ref(model, mel, uniforms, trace=True)
    state = plain.GenerationState.fresh(model)
    parts = [plain.generate_cond_ref(model, g, uniforms[a:b], state) for a, b in ((0, 1), (1, 345), (345, 900))]
    np.testing.assert_array_equal(np.concatenate(parts), want)
    np.testing.assert_array_equal(state.past, plain.sample_value_ref(want[::-1][:8]))
    # teacher forcing with the generated samples reproduces generation's logits (matrix products batched there)
    logits_c, logits_f = plain.teacher_forced_logits_ref(model, mel, want)
    assert np.abs(logits_c - steps["logits_c"]).max() < 1e-4 and np.abs(logits_f - steps["logits_f"]).max() < 1e-4
    assert not np.array_equal(plain.generate_ref(_without_prediction(model), mel, uniforms), want)


def test_sharp_prior_pulls_the_samples_to_the_estimate():
    """With b = 0.05 steps and a floor of -16 nats a sample leaves the estimate only where the heads' logits
    outweigh the prior: far more samples lie within a step of est(t) than without the prior."""
    model, mel, uniforms = _setup(n_frames=2)
    sharp = Model(model.model_config, model.feature_config,
                  {**model.weights, "prior.bias": np.full(2, -3.0, np.float32),
                   "prior.weight": np.zeros_like(model.weights["prior.weight"])}, {})
    off = Model(dataclasses.replace(model.model_config, prior="none"), model.feature_config,
                {k: v for k, v in model.weights.items() if not k.startswith("prior.")}, {})
    for m, lo, hi in ((sharp, 0.5, 1.0), (off, -1.0, 0.1)):  # near in (lo, hi]
        samples = plain.generate_ref(m, mel, uniforms)
        est = plain.linear_prediction_ref(m.weights["linear.weight"],
                                          plain.past_values_ref(plain.sample_value_ref(samples), 8))
        near = np.mean(np.abs(samples.astype(np.float64) + 32768 - prior_location_ref(est)) <= 1.0)
        assert lo < near <= hi, (m.model_config.prior, near)


# --- the C engine --------------------------------------------------------------------------------------------------

CASES = [(None, (16, 1), "laplace"), (0.3, (16, 1), "laplace"), (0.5, (4, 4), "laplace"), (0.3, (16, 1), "none"),
         (0.5, (4, 4), "none")]


@needs_native
@pytest.mark.parametrize("density, block, prior", CASES)
def test_exact_mode_gives_the_reference_samples(density, block, prior):
    from pywavernn.engines.cpu import CpuEngine

    model, mel, uniforms = _setup(density, block, prior)
    want = plain.generate_ref(model, mel, uniforms)
    assert len(np.unique(want)) > 100
    g = conditioning_ref(model, mel)
    for isa in kernels.available_isas():
        for threads in (1, 2, 3):
            got = CpuEngine(model, exact=True, threads=threads, isa=isa).generate(g, uniforms)
            mismatch = np.flatnonzero(got != want)
            assert mismatch.size == 0, f"{isa} threads={threads}: first mismatch at sample {mismatch[:1]}"


@needs_native
@pytest.mark.parametrize("exact", [True, False])
def test_streaming_threads_and_steps(exact):
    """Chunks of any size give one call's samples (the state carries the P past values); the thread count
    changes nothing; every step's state and logits (teacher-forced and, exact, free-running) are the reference's:
    bit for bit in exact mode (the prior's libm calls and dot-product order included, docs/format.md §9), within
    float32 rounding in fast mode."""
    from pywavernn.engines.cpu import CpuEngine

    model, mel, uniforms = _setup(0.4, (16, 1), n_frames=4)
    samples, want = plain.generate_ref(model, mel, uniforms, trace=True)
    g = conditioning_ref(model, mel)
    tol = 0.0 if exact else 1e-3
    for isa in kernels.available_isas():
        one = CpuEngine(model, exact=exact, isa=isa).generate(g, uniforms)
        for threads in (2, 3):
            engine = CpuEngine(model, exact=exact, threads=threads, isa=isa)
            np.testing.assert_array_equal(engine.generate(g, uniforms), one)
            state = engine.new_state()
            cuts = [0, 1, 5, 299, 300, 601, len(uniforms)]
            parts = [engine.generate(g, uniforms[a:b], state) for a, b in zip(cuts[:-1], cuts[1:])]
            np.testing.assert_array_equal(np.concatenate(parts), one)
            np.testing.assert_array_equal(state.past, plain.sample_value_ref(one[::-1][:8]))
        engine = CpuEngine(model, exact=exact, threads=2, isa=isa)
        runs = [engine.trace(g, samples, len(samples))] + ([engine.trace(g, uniforms, len(samples))] if exact else [])
        for run in runs:
            np.testing.assert_array_equal(run["samples"], samples)
            for key in ("h", "logits_c", "logits_f"):
                err = np.abs(run[key] - want[key]).max()
                assert err <= tol, f"{isa} exact={exact}: {key} off by {err:.3g}"


@needs_native
@pytest.mark.parametrize("prior", ["none", "laplace"])
def test_nll_matches_reference(prior):
    from pywavernn.engines.cpu import CpuEngine

    model, mel, uniforms = _setup(0.4, (4, 4), prior, n_frames=4)
    audio = plain.generate_ref(model, mel, uniforms)
    want = plain.nll_ref(model, mel, audio)
    assert np.isfinite(want) and want > 0
    logits_c, logits_f = plain.teacher_forced_logits_ref(model, mel, audio)
    coarse, fine = coarse_fine_split(audio)
    per_sample = []
    for logits, labels in ((logits_c, coarse), (logits_f, fine)):
        l64 = logits.astype(np.float64)
        top = l64.max(axis=1)
        per_sample.append((top + np.log(np.exp(l64 - top[:, None]).sum(1)) - l64[np.arange(len(labels)), labels])
                          / np.log(2))
    g = conditioning_ref(model, mel)
    for isa in kernels.available_isas():
        assert abs(CpuEngine(model, exact=True, isa=isa).nll(g, audio) - want) < 1e-4
        fast = CpuEngine(model, threads=2, isa=isa).nll(g, audio, per_sample=True)
        np.testing.assert_allclose(fast, per_sample[0] + per_sample[1], rtol=0, atol=1e-3)


@needs_native
def test_fp16_storage_keeps_the_prediction_and_prior_fp32():
    """fp16 storage rounds the five large matrices only: it equals fp32 storage of those rounded."""
    from pywavernn.engines.cpu import CpuEngine

    model, mel, uniforms = _setup(0.5, (4, 4), n_frames=2)
    weights = dict(model.weights)
    for name in ("gru.R", "out.O1", "out.O2", "out.O3", "out.O4"):
        w = weights[name]
        weights[name] = (dataclasses.replace(w, values=w.values.astype(np.float16).astype(np.float32))
                         if isinstance(w, BlockSparseMatrix) else w.astype(np.float16).astype(np.float32))
    rounded = Model(model.model_config, model.feature_config, weights, {})
    g = conditioning_ref(model, mel)
    for isa in kernels.available_isas():
        np.testing.assert_array_equal(CpuEngine(model, weights="fp16", isa=isa).generate(g, uniforms),
                                      CpuEngine(rounded, weights="fp32", isa=isa).generate(g, uniforms))


@needs_native
@pytest.mark.skipif(not _native.openmp_enabled(), reason="built without OpenMP: every loop runs on one thread")
def test_handover_to_thread_zero_keeps_the_past(forced_handover):
    """While thread 0 runs alone the others keep stale copies of the past; on rejoining they take thread 0's."""
    from pywavernn.engines.cpu import CpuEngine

    model, mel, uniforms = _setup(0.4, (16, 1), n_frames=3)
    g = conditioning_ref(model, mel)
    want = CpuEngine(model, exact=True).generate(g, uniforms)
    forced_handover(100)
    np.testing.assert_array_equal(CpuEngine(model, exact=True, threads=2).generate(g, uniforms), want)


@needs_native
def test_state_and_batch_validation():
    from pywavernn.engines.cpu import CpuEngine

    model, mel, uniforms = _setup(n_frames=2)
    g = conditioning_ref(model, mel)
    engine = CpuEngine(model)
    other = CpuEngine(_without_prediction(model))
    with pytest.raises(ValueError, match="state.past"):
        engine.generate(g, uniforms, other.new_state())
    state = engine.new_state()
    state.past[3] = np.inf
    with pytest.raises(ValueError, match="state.past: expected finite"):
        engine.generate(g, uniforms, state)
    outs = engine.generate_batch([g, g], [uniforms, uniforms[:300]], threads=2)
    np.testing.assert_array_equal(outs[0], engine.generate(g, uniforms))
    np.testing.assert_array_equal(outs[1], engine.generate(g, uniforms[:300]))


def test_cuda_refuses_linear_prediction():
    model, _, _ = _setup(n_frames=1)
    ok, why = cuda_available(model)
    assert not ok and "linear prediction" in why and "cpu" in why
    from pywavernn.engines import make_engine

    with pytest.raises(ValueError, match="linear prediction"):
        make_engine(model, "cuda")
