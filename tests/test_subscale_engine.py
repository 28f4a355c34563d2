"""Tests of the C Subscale WaveRNN loop (pywavernn/engines/subscale.py, c/subscale_sampler.c) against the NumPy
subscale reference (pywavernn/reference/subscale.py), end to end and per sample.

Exact mode gives the very samples of generate_subscale_ref for 2,100 samples (7 frames x hop 300; B = 16 pads the
last position) on small random models: B = 2, 4, 16, F = 1..3, D = 0 and 3 context layers, dense, 16x1-sparse and
4x4-sparse, with the context projection subscale.proj.weight dense or block-sparse, on every ISA available here; the
schedule step of every sample, the state after it and its logits agree with the reference's trace within float32
rounding. Fast mode: the same shapes, and the samples agree with the reference up to the first step where a draw
falls within a hair of a class edge (none in practice: the fast approximations are within ~1 ulp), with the state of
every earlier sample within tolerance. Threads: with threads = 1..4 (and B, more than B) the trace (samples, steps,
states, logits) is identical to threads = 1, exact and fast, and in exact mode the samples are the reference's
(B = 2, 4, 16; dense, 16x1, 4x4); on an oversubscribed runner the team may finish on one thread (the serial
fallback), which must not change a sample either. Also: the property the active-subset products rely on (a gemm
column does not depend on the other columns), a run advanced over any split of the schedule (the streaming
primitive) gives the samples of one call, the loop's gate-input kernel gives the bits of its definition,
fp16 storage equals fp32 storage of the rounded weights, and invalid input raises TypeError / ValueError before C
runs.

Run: pytest tests/test_subscale_engine.py
Letters: B subscale factor, F future horizon, D context layers, H hidden units, T samples.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pywavernn import kernels
from pywavernn.reference import subscale as rs
from pywavernn.reference.prior import prior_location_ref
from pywavernn import fold
from pywavernn.config import ModelConfig
from pywavernn.modelfile import BlockSparseMatrix, Model, pack_block_sparse
from pywavernn.conditioning import conditioning_ref
from pywavernn.testing import random_model

_native = pytest.importorskip("pywavernn._native")
if not _native.available():  # pragma: no cover
    pytest.skip("compiled extension not built", allow_module_level=True)

from pywavernn.engines.subscale import SubscaleEngine  # noqa: E402

ISAS = kernels.available_isas()
N_FRAMES = 7  # x hop 300 = 2,100 samples
STEP_TOL = 1e-5  # h and logits vs the reference: float32 products summed in another order (observed ~1.2e-7)
EDGE_TOL = 1e-4  # a draw this close (relative) to a class edge may fall either way under fast arithmetic

# (B, F, D, density, block, proj_density, previous[, extra]): proj_density None keeps subscale.proj.weight dense;
# previous is the config's subscale_previous (which earlier sample the GRU input carries), extra other ModelConfig
# fields (subscale_context_order, subscale_linear, subscale_prior)
LAG = {"subscale_context_order": "lag"}
CASES = [(4, 1, 3, None, (16, 1), None, "sub_tensor"), (16, 2, 3, None, (16, 1), None, "sub_tensor"),
         (4, 1, 3, 0.3, (16, 1), None, "sub_tensor"), (16, 2, 3, 0.3, (16, 1), None, "sub_tensor"),
         (8, 3, 3, 0.5, (4, 4), None, "sub_tensor"), (2, 1, 0, None, (16, 1), None, "sub_tensor"),
         (16, 2, 3, 0.3, (16, 1), 0.25, "sub_tensor"), (8, 3, 3, 0.5, (4, 4), 0.5, "sub_tensor"),
         (4, 1, 3, None, (16, 1), None, "time"), (16, 2, 3, 0.3, (16, 1), 0.25, "time"),
         (8, 1, 3, None, (16, 1), None, "sub_tensor", LAG), (16, 2, 3, 0.3, (16, 1), 0.25, "time", LAG),
         (16, 2, 4, 0.3, (16, 1), 0.25, "time", LAG),
         (4, 1, 3, None, (16, 1), None, "sub_tensor", {"subscale_linear": 2}),
         (16, 2, 3, 0.3, (16, 1), 0.25, "time", {**LAG, "subscale_linear": 4}),
         (4, 1, 3, None, (16, 1), None, "sub_tensor", {"subscale_linear": 1, "subscale_prior": "laplace"}),
         (16, 2, 3, 0.3, (16, 1), 0.25, "time", {**LAG, "subscale_linear": 4, "subscale_prior": "laplace"})]


def _setup(factor, horizon, layers=3, density=None, block=(16, 1), hidden=32, seed=1, n_frames=N_FRAMES,
           proj_density=None, previous="sub_tensor", extra=None):
    cfg = ModelConfig(hidden_size=hidden, out_hidden=32, cond_channels=16, block_shape=block,
                      subscale_factor=factor, subscale_horizon=horizon, subscale_channels=16,
                      subscale_layers=layers, subscale_previous=previous, **(extra or {}))
    model = random_model(cfg, seed=seed, density=density, proj_density=proj_density)
    hop = model.feature_config.hop_length
    mel = np.random.default_rng(seed + 1).standard_normal((n_frames, cfg.n_mels)).astype(np.float32)
    uniforms = np.random.default_rng(seed + 2).random((n_frames * hop, 2), dtype=np.float32)
    return model, mel, uniforms


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"B{c[0]}-F{c[1]}-D{c[2]}-d{c[3]}-{c[4][0]}x{c[4][1]}"
                                                           + (f"-proj{c[5]}" if c[5] is not None else "")
                                                           + ("-prev_time" if c[6] == "time" else "")
                                                           + "".join(f"-{k.removeprefix('subscale_')}"
                                                                     for k in (c[7] if c[7:] else {})))
def case(request):
    factor, horizon, layers, density, block, proj_density, previous, *extra = request.param
    model, mel, uniforms = _setup(factor, horizon, layers, density, block, proj_density=proj_density,
                                  previous=previous, extra=extra[0] if extra else None)
    assert model.is_sparse("subscale.proj.weight") == (proj_density is not None)
    samples, steps = rs.generate_subscale_ref(model, mel, uniforms, trace=True)
    return model, conditioning_ref(model, mel), uniforms, samples, steps


def _assert_close(got: dict, want: dict, keep: np.ndarray, what: str) -> None:
    for key in ("h", "logits_c", "logits_f"):
        err = np.abs(got[key][keep] - want[key][keep]).max(initial=0.0)
        assert err < STEP_TOL, f"{what}: {key} differs by {err:.3g} (tolerance {STEP_TOL})"


def test_exact_mode_matches_reference_samples_and_steps(case):
    model, g, uniforms, want, steps = case
    for isa in ISAS:
        got = SubscaleEngine(model, exact=True, isa=isa).trace(g, uniforms)
        assert got["samples"].dtype == np.int16 and got["samples"].shape == want.shape == (uniforms.shape[0],)
        mismatch = np.flatnonzero(got["samples"] != want)
        assert mismatch.size == 0, f"{isa}: {mismatch.size} samples differ, first at t = {mismatch[:1]}"
        np.testing.assert_array_equal(got["step"], steps["step"])
        _assert_close(got, steps, np.ones(want.shape[0], bool), isa)


def test_sparse_projection_changes_context_and_matches_dense_copy():
    """A block-sparse subscale.proj.weight is the dense matrix with its pruned blocks zero: the engine and the
    reference give the samples of the same model with the pruned projection stored dense, and pruning it changes
    the samples (so the sparse matrix is really the one used)."""
    model, mel, uniforms = _setup(4, 1, density=0.3, proj_density=0.25, n_frames=3)
    assert model.is_sparse("subscale.proj.weight")
    assert model.sparsity()["subscale.proj.weight"] == pytest.approx(0.75)
    dense_copy = Model(model.model_config, model.feature_config,
                       {**model.weights, "subscale.proj.weight": model.dense("subscale.proj.weight")}, {})
    g = conditioning_ref(model, mel)
    want = rs.generate_subscale_ref(model, mel, uniforms)
    np.testing.assert_array_equal(rs.generate_subscale_ref(dense_copy, mel, uniforms), want)
    unpruned = _setup(4, 1, density=0.3, n_frames=3)[0]
    assert not np.array_equal(rs.generate_subscale_ref(unpruned, mel, uniforms), want)
    for isa in ISAS:
        np.testing.assert_array_equal(SubscaleEngine(model, exact=True, isa=isa).generate(g, uniforms), want)
        np.testing.assert_array_equal(SubscaleEngine(dense_copy, exact=True, isa=isa).generate(g, uniforms), want)


def test_context_order_changes_the_samples():
    """subscale_context_order is read by reference and engine alike: the same weights with and without "lag" give
    other samples, and each engine gives its own reference's (so neither side ignores it)."""
    plain, mel, uniforms = _setup(16, 2, layers=3, n_frames=3)
    other = Model(dataclasses.replace(plain.model_config, **LAG), plain.feature_config, plain.weights, {})
    _assert_two_models_differ_and_engines_follow_reference(plain, other, mel, uniforms)


def _assert_two_models_differ_and_engines_follow_reference(a: Model, b: Model, mel, uniforms, threads=(1,)):
    """The reference gives other samples for a and b, and every ISA's engine (exact, each thread count) its own."""
    g = conditioning_ref(a, mel)
    want = [rs.generate_subscale_ref(m, mel, uniforms) for m in (a, b)]
    assert not np.array_equal(want[0], want[1])
    for isa in ISAS:
        for m, samples in zip((a, b), want):
            for n in threads:
                np.testing.assert_array_equal(SubscaleEngine(m, exact=True, isa=isa, threads=n).generate(g, uniforms),
                                              samples, err_msg=f"{isa} threads={n}")


def test_linear_estimates_are_read_by_reference_and_engine_alike():
    """subscale_linear (docs/format.md §9): the engine gives the reference's samples with the linear estimates and
    with their GRU columns zeroed, the two differ (so neither side ignores them), and the thread count does not
    change them (stream s reads samples of streams z < s, often written by another thread)."""
    model, mel, uniforms = _setup(16, 2, layers=3, n_frames=3, extra={"subscale_linear": 3})
    off = Model(model.model_config, model.feature_config,
                {**model.weights, "subscale.linear.proj": np.zeros_like(model.weights["subscale.linear.proj"])}, {})
    _assert_two_models_differ_and_engines_follow_reference(model, off, mel, uniforms, threads=(1, 2, 3, 16))


def test_prior_is_read_by_reference_and_engine_alike():
    """subscale_prior "laplace" (docs/format.md §9): the same weights with and without the prior give other samples
    in reference and engine alike, each engine its own reference's, at every thread count; the prior pulls the
    samples to the first estimate (they lie nearer it than without the prior)."""
    model, mel, uniforms = _setup(16, 2, layers=3, n_frames=3, extra={"subscale_linear": 2,
                                                                       "subscale_prior": "laplace"})
    weights = {k: v for k, v in model.weights.items() if not k.startswith("subscale.prior.")}
    off = Model(dataclasses.replace(model.model_config, subscale_prior="none"), model.feature_config, weights, {})
    _assert_two_models_differ_and_engines_follow_reference(model, off, mel, uniforms, threads=(1, 2, 16))
    sharp = Model(model.model_config, model.feature_config,
                  {**model.weights, "subscale.prior.bias": np.full_like(model.weights["subscale.prior.bias"], -3.0),
                   "subscale.prior.weight": np.zeros_like(model.weights["subscale.prior.weight"])}, {})
    g = conditioning_ref(model, mel)
    a, b = (SubscaleEngine(m, exact=True).trace(g, uniforms)["samples"] for m in (sharp, off))
    # with b = 0.05 steps and a floor of -16 nats, a sample is off the estimate only where the heads' logits
    # outweigh the prior; the samples themselves then sit within a step of the estimate far more often
    est = _first_estimates(sharp, a)
    assert np.mean(np.abs(a.astype(np.float64) + 32768 - est) <= 1.0) > 0.5
    assert np.mean(np.abs(b.astype(np.float64) + 32768 - _first_estimates(sharp, b)) <= 1.0) < 0.1


def _first_estimates(model: Model, samples: np.ndarray) -> np.ndarray:
    """The prior's centre (unsigned 16-bit units) of every sample, from the samples themselves (teacher forcing)."""
    factor = model.model_config.subscale_factor
    v16 = fold.fold(samples.astype(np.float32) / np.float32(32768), factor)
    real = fold.sample_time(np.arange(v16.shape[0])[:, None], np.arange(factor), factor) < samples.size
    est = np.empty(samples.size)
    for t in range(samples.size):
        e0 = rs.linear_estimates_ref(model, v16, real, t // factor, t % factor)[0]
        est[t] = prior_location_ref(e0)
    return est


THREAD_CASES = ([(b, *kind, "sub_tensor") for b in (2, 4, 16)
                 for kind in ((None, (16, 1)), (0.3, (16, 1)), (0.5, (4, 4)))]
                + [(4, 0.3, (16, 1), "time"), (16, 0.5, (4, 4), "time")])  # (B, density, block, previous)


@pytest.mark.parametrize("factor,density,block,previous", THREAD_CASES,
                         ids=[f"B{b}-{'dense' if d is None else f'{k[0]}x{k[1]}'}"
                              + ("-prev_time" if p == "time" else "") for b, d, k, p in THREAD_CASES])
def test_thread_count_does_not_change_samples_or_trace(factor, density, block, previous):
    """Also with previous = "time", where stream s reads stream s - 1's sample, often written by another thread."""
    model, mel, uniforms = _setup(factor, 1 if factor < 16 else 2, 3, density, block, n_frames=3, previous=previous)
    g = conditioning_ref(model, mel)
    want = rs.generate_subscale_ref(model, mel, uniforms)
    for isa in ISAS:
        for exact in (True, False):
            one = SubscaleEngine(model, exact=exact, isa=isa).trace(g, uniforms)
            if exact:
                np.testing.assert_array_equal(one["samples"], want, err_msg=f"{isa} threads=1")
            for threads in sorted({2, 3, 4, factor, factor + 1}):
                engine = SubscaleEngine(model, exact=exact, isa=isa, threads=threads)
                assert engine.threads == (min(threads, factor) if _native.openmp_enabled() else 1)
                got = engine.trace(g, uniforms)
                for key in ("samples", "step", "h", "logits_c", "logits_f"):
                    np.testing.assert_array_equal(got[key], one[key],
                                                  err_msg=f"{isa} exact={exact} threads={threads}: {key}")
                np.testing.assert_array_equal(engine.generate(g, uniforms), one["samples"])


@pytest.mark.skipif(not _native.openmp_enabled(), reason="built without OpenMP: every loop runs on one thread")
@pytest.mark.parametrize("previous", ["sub_tensor", "time"])
def test_handover_to_thread_zero_and_back_keeps_samples(forced_handover, previous):
    """Thread 0 takes every stream for a stretch of steps and hands them back (what the team does when its
    barriers keep sleeping), forced every 20 steps: the trace and samples are those of one thread, also when the
    schedule is advanced in pieces, and the hand-overs did happen."""
    model, mel, uniforms = _setup(16, 2, 3, 0.3, (16, 1), n_frames=4, previous=previous)
    g = conditioning_ref(model, mel)
    one = SubscaleEngine(model).trace(g, uniforms)
    forced_handover(20)
    before = _native.engine().handover_count()
    for threads in (2, 3):
        engine = SubscaleEngine(model, threads=threads)
        got = engine.trace(g, uniforms)
        for key in ("samples", "step", "h", "logits_c", "logits_f"):
            np.testing.assert_array_equal(got[key], one[key], err_msg=f"threads={threads}: {key}")
        run, out = engine.new_run(), np.zeros(len(uniforms), np.int16)
        total = len(uniforms)
        for n_end in (37, 90, engine.n_steps(total)):
            engine.run_steps(run, g, 0, total, uniforms, 0, out, n_end)
        np.testing.assert_array_equal(out, one["samples"])
    n_steps = SubscaleEngine(model).n_steps(len(uniforms))  # 75 positions + 45 warm-up steps = 120
    assert _native.engine().handover_count() - before >= 2 * (n_steps // 40)


def test_threads_validation():
    model = _setup(4, 1, n_frames=2)[0]
    for bad in (0, -1, 1.5, "2", True, None, np.float32(2)):
        with pytest.raises(ValueError, match=r"threads: expected an integer >= 1, found"):
            SubscaleEngine(model, threads=bad)
    assert SubscaleEngine(model, threads=np.int64(2)).threads in (1, 2)
    assert SubscaleEngine(model).threads == 1


def _near_edge(logits: np.ndarray, u: float, k_a: int, k_b: int) -> bool:
    """Whether u * cdf[255] lies within EDGE_TOL (relative) of a class edge between k_a and k_b (docs §4)."""
    cdf = np.cumsum(np.exp(logits.astype(np.float64) - logits.max()))
    edges = cdf[min(k_a, k_b):max(k_a, k_b)]
    return edges.size > 0 and bool(np.min(np.abs(edges - u * cdf[-1])) <= EDGE_TOL * cdf[-1])


def test_fast_mode_agrees_up_to_draws_at_class_edges(case):
    model, g, uniforms, want, steps = case
    for isa in ISAS:
        got = SubscaleEngine(model, exact=False, isa=isa).trace(g, uniforms)
        assert got["samples"].dtype == np.int16 and got["samples"].shape == want.shape
        bad = got["samples"] != want
        first = got["step"][bad].min() if bad.any() else np.iinfo(np.int64).max
        _assert_close(got, steps, steps["step"] < first, f"fast {isa}")
        for t in np.flatnonzero(bad & (steps["step"] == first)):  # the first diverging draws: at an edge
            (c_got, f_got), (c_want, f_want) = divmod(int(got["samples"][t]) + 32768, 256), \
                divmod(int(want[t]) + 32768, 256)
            logits, u, a, b = ((steps["logits_c"][t], uniforms[t, 0], c_got, c_want) if c_got != c_want else
                               (steps["logits_f"][t], uniforms[t, 1], f_got, f_want))
            assert _near_edge(logits, float(u), a, b), f"fast {isa}: sample {t} differs away from a class edge"


def test_projection_pruned_in_training_twin_runs_block_sparse():
    """training.pruning prunes subscale.proj.weight as columns of the twin's fused gru.weight_ih_l0 (torch gate
    order); the exported matrix is then block-sparse in the spec's gate order, and the engine runs it."""
    torch = pytest.importorskip("torch")
    from training.pruning import Pruner, subscale_proj_target
    from training.subscale_model import SubscaleWaveRNN

    model, mel, uniforms = _setup(4, 1, density=0.5, n_frames=3)  # H = 32, C_x = 16, 16x1 blocks
    net = SubscaleWaveRNN.from_model(model)
    target = net.proj_prune_target(0.75)
    before = net.gru.weight_ih_l0.detach().clone()
    pruner = Pruner(dict(net.named_parameters()), [target], t0=0, duration=1, prune_every=1, block=(16, 1))
    assert pruner.update(1)
    assert pruner.mask_sparsity() == pruner.actual_sparsity() == {"subscale.proj.weight": 0.75}
    after = net.gru.weight_ih_l0.detach()
    outside = torch.ones(after.shape[1], dtype=torch.bool)
    outside[target.index[1]] = False
    assert torch.equal(after[:, outside], before[:, outside])  # W_in, cond.proj, proj.bias untouched
    assert pruner.state_dict()["targets"][0][-2:] == (target.col_start, target.col_stop)
    with pytest.raises(ValueError, match="BH dividing H"):  # a 16-row block would straddle two gates of H = 40
        subscale_proj_target(40, target.index[1], 0.5, (16, 1))

    pruned = net.to_model(model.feature_config).to_sparse(["gru.R", "subscale.proj.weight"])
    proj = pruned.weights["subscale.proj.weight"]
    assert proj.nnz_blocks == 24 and pruned.sparsity()["subscale.proj.weight"] == 0.75  # 96 x 16: 6 x 16 blocks
    g = conditioning_ref(pruned, mel)
    want = rs.generate_subscale_ref(pruned, mel, uniforms)
    for isa in ISAS:
        np.testing.assert_array_equal(SubscaleEngine(pruned, exact=True, isa=isa).generate(g, uniforms), want)


def test_context_layers_pruned_in_training_twin_run_block_sparse():
    """training.pruning prunes each tap of the dilated context layers (SubscaleWaveRNN.conv_prune_targets); the
    file keeps them dense, the engine packs only their nonzero 16x1 blocks and still gives the reference's
    samples."""
    torch = pytest.importorskip("torch")
    from training.pruning import Pruner
    from training.subscale_model import SubscaleWaveRNN

    model, mel, uniforms = _setup(4, 1, density=0.5, n_frames=3)  # C_x = 16, D = 3, 16x1 blocks
    net = SubscaleWaveRNN.from_model(model)
    targets = net.conv_prune_targets(0.75)
    assert len(targets) == 2 * 3
    pruner = Pruner(dict(net.named_parameters()), targets, t0=0, duration=1, prune_every=1, block=(16, 1))
    assert pruner.update(1)
    assert set(pruner.actual_sparsity().values()) == {0.75}
    pruned = net.to_model(model.feature_config).to_sparse(["gru.R"])
    assert float((pruned.dense("subscale.conv2.weight") == 0).mean()) == 0.75
    want = rs.generate_subscale_ref(pruned, mel, uniforms)
    g = conditioning_ref(pruned, mel)
    for isa in ISAS:
        engine = SubscaleEngine(pruned, exact=True, isa=isa)
        # embed, proj, then both taps of each layer: 16 x 16 taps keep 4 of their 16 blocks of 16 x 1
        assert [km.nnz for km in engine.context_matrices[2:]] == [4 * 16] * 6
        np.testing.assert_array_equal(engine.generate(g, uniforms), want)


@pytest.mark.parametrize("block", [(16, 1), (4, 4), (1, 1)])
def test_gemm_column_does_not_depend_on_other_columns(block):
    """The loop multiplies only the active streams (rows lo..hi of X); that is exact only if each column of the
    gemm is computed the same whatever the number and position of its neighbours."""
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((64, 48)).astype(np.float32)
    dense[rng.random(dense.shape) < 0.6] = 0
    x = rng.standard_normal((16, 48)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    for storage in kernels.STORAGES:
        for w in (kernels.KernelMatrix(dense, storage), kernels.KernelMatrix(pack_block_sparse(dense, *block), storage)):
            for isa in ISAS:
                full = kernels.gemm(w, x, bias, isa=isa)
                for lo, hi in ((0, 1), (3, 4), (5, 12), (2, 16), (15, 16)):
                    part = kernels.gemm(w, np.ascontiguousarray(x[lo:hi]), bias, isa=isa)
                    np.testing.assert_array_equal(part, full[lo:hi], err_msg=f"{w} {isa} rows {lo}:{hi}")


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
    model, mel, uniforms = _setup(16, 2, density=density, n_frames=3)
    g = conditioning_ref(model, mel)
    for isa in ISAS:
        half = SubscaleEngine(model, weights="fp16", isa=isa).generate(g, uniforms)
        rounded = SubscaleEngine(_rounded_to_fp16(model), weights="fp32", isa=isa).generate(g, uniforms)
        np.testing.assert_array_equal(half, rounded)


def test_validation():
    model, mel, uniforms = _setup(4, 1, n_frames=2)
    g = conditioning_ref(model, mel)
    with pytest.raises(TypeError, match="model"):
        SubscaleEngine("model.safetensors")
    plain = random_model(ModelConfig(hidden_size=32, out_hidden=32, cond_channels=16), seed=0)
    with pytest.raises(ValueError, match="subscale_factor"):
        SubscaleEngine(plain)
    big = random_model(dataclasses.replace(model.model_config, subscale_factor=32), seed=0)
    with pytest.raises(ValueError, match="at most 16"):
        SubscaleEngine(big)
    with pytest.raises(ValueError, match="weights"):
        SubscaleEngine(model, weights="int8")
    with pytest.raises(TypeError, match="exact"):
        SubscaleEngine(model, exact="yes")
    with pytest.raises(ValueError, match="isa"):
        SubscaleEngine(model, isa="sse9")

    engine = SubscaleEngine(model)
    with pytest.raises(TypeError, match="g: expected a float32"):
        engine.generate(g.astype(np.float64), uniforms)
    with pytest.raises(TypeError, match="g: expected a float32"):
        engine.generate(g.tolist(), uniforms)
    with pytest.raises(ValueError, match=r"g: expected shape"):
        engine.generate(np.ascontiguousarray(g[:, :-3]), uniforms)
    with pytest.raises(ValueError, match="C-contiguous"):
        engine.generate(np.asfortranarray(g), uniforms)
    bad_g = g.copy()
    bad_g[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        engine.generate(bad_g, uniforms)
    with pytest.raises(ValueError, match="at least one frame"):
        engine.generate(g[:0], uniforms[:0])
    with pytest.raises(TypeError, match="uniforms: expected a float32"):
        engine.generate(g, uniforms.astype(np.float64))
    with pytest.raises(TypeError, match="uniforms"):
        engine.generate(g, uniforms[:, 0])
    with pytest.raises(ValueError, match=r"uniforms: expected shape \(600, 2\)"):
        engine.generate(g, uniforms[:-1])
    for value in (1.0, -0.5, np.nan):
        bad_u = uniforms.copy()
        bad_u[5, 1] = value
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            engine.generate(g, bad_u)
    # Nothing above reached C; the engine still works.
    assert engine.generate(g, uniforms).shape == (600,)


@pytest.mark.parametrize("hidden", [1, 7, 8, 9, 96, 101])
def test_gate_input_kernel_gives_the_bits_of_its_definition(hidden):
    """gru_input_t (the loop's per-stream gate input, conditioning and context included, one copy per ISA) computes
    exactly the float32 expressions of pwr_kernels.h in their order (NumPy float32 arithmetic is IEEE single, no
    contraction), on every ISA, for lengths and unit ranges that are and are not multiples of the AVX2 width, and
    writes only its units."""
    eng = _native.engine()
    rng = np.random.default_rng(hidden)
    h3 = 3 * hidden
    g0, g1, pq, bias = (rng.standard_normal(h3).astype(np.float32) for _ in range(4))
    a = np.float32(rng.random())
    q = (g0 + a * (g1 - g0)) + (pq + bias)
    w_in_t = rng.standard_normal((3, h3)).astype(np.float32)
    x3 = rng.standard_normal(3).astype(np.float32)
    half = max(hidden // 2, 1)
    for isa in ISAS:
        for with_x2, (j0, j1) in ((False, (0, half)), (True, (half, hidden)), (True, (1, max(hidden - 2, 1)))):
            gi = np.full(h3, np.nan, np.float32)
            eng.gru_input_t(kernels.isa_id(isa), w_in_t, x3, with_x2, g0, g1, float(a), pq, bias, gi, hidden,
                            j0, j1)
            v = x3[0] * w_in_t[0] + x3[1] * w_in_t[1]
            if with_x2:
                v = v + x3[2] * w_in_t[2]
            rows = np.concatenate([np.arange(j0, j1) + gate * hidden for gate in range(3)]).astype(int)
            np.testing.assert_array_equal(gi[rows], (v + q)[rows], err_msg=f"gru_input_t {isa} {with_x2}")
            assert np.isnan(np.delete(gi, rows)).all(), f"gru_input_t {isa}: wrote outside its units"


@pytest.mark.parametrize("threads, extra", [(1, None), (2, None), (2, {"subscale_linear": 3})])
def test_advance_in_pieces_equals_generate(threads, extra):
    """A run advanced over any split of the schedule, with windows trimmed to what is still needed, gives the
    samples of one generate call; windows that do not cover the steps raise ValueError before C runs. Also with
    linear estimates, which read the samples of the step before, kept across calls in the run."""
    model, mel, uniforms = _setup(8, 2, 3, 0.5, (4, 4), n_frames=4, extra=extra)
    g = conditioning_ref(model, mel)
    engine = SubscaleEngine(model, threads=threads)
    want = engine.generate(g, uniforms)
    total, hop = uniforms.shape[0], engine.hop
    n_steps = engine.n_steps(total)
    run, got = engine.new_run(), np.zeros(total, np.int16)
    cuts = sorted(set(np.random.default_rng(threads).integers(0, n_steps, 6).tolist()) | {n_steps})
    for n_end in cuts:
        first = engine.first_pending(run.next_step)
        j0 = first // hop
        engine.run_steps(run, np.ascontiguousarray(g[j0:]), j0, total, np.ascontiguousarray(uniforms[first:]), first,
                       got[first:], n_end)  # a view: C writes sample t at got[t]
        done = min(engine.first_pending(n_end), total)
        np.testing.assert_array_equal(got[:done], want[:done])  # everything before first_pending is final
        assert run.next_step == n_end
    np.testing.assert_array_equal(got, want)

    run = engine.new_run()
    with pytest.raises(ValueError, match="needs frame"):  # end unknown: the steps must not reach the last frame
        engine.run_steps(run, g, 0, None, uniforms, 0, np.zeros(total, np.int16), n_steps)
    with pytest.raises(ValueError, match="uniforms"):
        engine.run_steps(run, g, 0, total, uniforms[:10], 0, np.zeros(total, np.int16), 5)
    with pytest.raises(ValueError, match="out"):
        engine.run_steps(run, g, 0, total, uniforms, 0, np.zeros(3, np.int16), 5)
    with pytest.raises(ValueError, match="n_samples"):
        engine.run_steps(run, g, 0, total + 1, uniforms, 0, np.zeros(total, np.int16), 5)
    assert run.next_step == 0
