"""The NumPy reference (pywavernn/reference/plain.py) against the golden data from PyTorch, and on its own.

Golden data: tests/data/golden_small.npz, written by tests/data/make_golden.py (see there). No torch needed here.
Tolerances: logits and hidden states 1e-4 absolute. The golden logits are of order 1-10; NumPy and PyTorch differ
only in float32 summation order and in their exp/tanh/sigmoid, which moves them by a few 1e-6 (measured: < 1e-5),
while a wrong gate order, mask or interpolation moves them by 1e-3 or more. Sampled integers must match exactly:
the golden uniforms keep every draw >= 1e-4 of the cdf total away from a class edge.

Run: python -m pytest tests/test_reference.py -q
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from pywavernn import modelfile as fmt
from pywavernn.conditioning import cond_at, conditioning_ref, upsample_conditioning
from pywavernn.reference import plain as ref
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.testing import random_block_sparse, random_model

DATA = Path(__file__).resolve().parent / "data"
TOL = 1e-4


@pytest.fixture(scope="module")
def golden():
    with np.load(DATA / "golden_small.npz", allow_pickle=False) as npz:
        g = {k: npz[k] for k in npz.files}
    weights = {k[len("weights/"):]: v for k, v in g.items() if k.startswith("weights/")}
    g["model"] = fmt.Model(ModelConfig.from_dict(json.loads(str(g["model_config"]))),
                           FeatureConfig.from_dict(json.loads(str(g["feature_config"]))), weights)
    return g


def pruned(model: fmt.Model, density: float, seed: int) -> fmt.Model:
    """The same model with a random (1 - density) of the blocks of every sparse-capable matrix set to zero."""
    rng = np.random.default_rng(seed)
    bh, bw = model.model_config.block_shape
    weights = dict(model.weights)
    for name in fmt.SPARSE_CAPABLE:
        w = model.dense(name)
        keep = rng.random((w.shape[0] // bh, w.shape[1] // bw)) < density
        weights[name] = np.where(np.kron(keep, np.ones((bh, bw), bool)), w, np.float32(0)).astype(np.float32)
    return fmt.Model(model.model_config, model.feature_config, weights)


def bits_per_step(logits_c, logits_f, audio):
    u = audio.astype(np.int64) + 32768

    def log_softmax_at(logits, labels):
        l64 = logits.astype(np.float64)
        top = l64.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(l64 - top).sum(axis=1))
        return l64[np.arange(len(labels)), labels] - lse

    return -(log_softmax_at(logits_c, u >> 8) + log_softmax_at(logits_f, u & 255)) / np.log(2.0)


# --- against the golden data ----------------------------------------------------------------------------------

def test_golden_teacher_forced_logits(golden):
    logits_c, logits_f = ref.teacher_forced_logits_ref(golden["model"], golden["mel"], golden["audio"])
    steps = golden["tf_steps"]
    assert np.abs(logits_c[steps] - golden["tf_logits_c"]).max() < TOL
    assert np.abs(logits_f[steps] - golden["tf_logits_f"]).max() < TOL
    # every step, through the log-probability of the true bytes
    bits = bits_per_step(logits_c, logits_f, golden["audio"])
    assert np.abs(bits - golden["tf_bits"]).max() < TOL


def test_golden_nll(golden):
    nll = ref.nll_ref(golden["model"], golden["mel"], golden["audio"])
    assert nll == pytest.approx(float(golden["nll"]), rel=1e-5)


def test_golden_generation_is_sample_exact(golden):
    samples, trace = ref.generate_ref(golden["model"], golden["mel"], golden["uniforms"], trace=True)
    assert samples.dtype == np.int16
    np.testing.assert_array_equal(samples, golden["generated"])
    assert np.abs(trace["h"][golden["gen_steps"]] - golden["gen_h"]).max() < TOL


def test_golden_model_file_matches_npz(golden):
    loaded = fmt.load_model(DATA / "golden_small.safetensors")
    assert loaded.model_config == golden["model"].model_config
    assert loaded.feature_config == golden["model"].feature_config
    for name, w in golden["model"].weights.items():
        np.testing.assert_array_equal(loaded.dense(name), w, err_msg=name)


# --- dense and block-sparse -----------------------------------------------------------------------------------

@pytest.mark.parametrize("block", [(1, 1), (4, 4), (16, 1), (2, 8)])
def test_bsr_matvec_matches_dense(block):
    rng = np.random.default_rng(sum(block))
    m, dense = random_block_sparse(rng, 96, 64, *block, density=0.3)
    x = rng.standard_normal(64).astype(np.float32)
    xs = rng.standard_normal((64, 5)).astype(np.float32)
    # float32 sums of <= 64 products of magnitude <= 4: rounding well below 1e-5
    np.testing.assert_allclose(ref.matvec_ref(m, x), dense @ x, atol=1e-5)
    np.testing.assert_allclose(ref.matvec_ref(m, xs), dense @ xs, atol=1e-5)
    empty = fmt.pack_block_sparse(np.zeros((96, 64), np.float32), *block)
    np.testing.assert_array_equal(ref.matvec_ref(empty, x), np.zeros(96, np.float32))


def test_dense_and_block_sparse_models_give_the_same_samples(golden):
    dense = pruned(golden["model"], density=0.5, seed=5)
    sparse = dense.to_sparse()
    assert all(sparse.is_sparse(name) for name in fmt.SPARSE_CAPABLE)
    a = ref.generate_ref(dense, golden["mel"], golden["uniforms"])
    b = ref.generate_ref(sparse, golden["mel"], golden["uniforms"])
    np.testing.assert_array_equal(a, b)
    lc_a, lf_a = ref.teacher_forced_logits_ref(dense, golden["mel"], golden["audio"])
    lc_b, lf_b = ref.teacher_forced_logits_ref(sparse, golden["mel"], golden["audio"])
    assert np.abs(lc_a - lc_b).max() < 1e-5 and np.abs(lf_a - lf_b).max() < 1e-5


# --- the reference on its own ---------------------------------------------------------------------------------

def test_teacher_forcing_on_generated_audio_reproduces_the_generation_steps(golden):
    samples, trace = ref.generate_ref(golden["model"], golden["mel"], golden["uniforms"], trace=True)
    logits_c, logits_f = ref.teacher_forced_logits_ref(golden["model"], golden["mel"], samples, chunk=777)
    # same gate arithmetic in the same order; only the heads differ (matrix-matrix vs matrix-vector products)
    assert np.abs(logits_c - trace["logits_c"]).max() < 1e-5
    assert np.abs(logits_f - trace["logits_f"]).max() < 1e-5
    np.testing.assert_array_equal(trace["coarse"].astype(np.int32) * 256 + trace["fine"] - 32768, samples)


def test_gru_step_ref_reproduces_the_generation_steps(golden):
    model, mel = golden["model"], golden["mel"]
    _, trace = ref.generate_ref(model, mel, golden["uniforms"], trace=True)
    g = conditioning_ref(model, mel)
    c, f = trace["coarse"], trace["fine"]
    for t in (1, 299, 300, 1234):
        x_t = ref.BYTE_INPUT[[c[t - 1], f[t - 1], c[t]]]
        h = ref.gru_step_ref(model, trace["h"][t - 1], x_t, cond_at(g, t, 300))
        np.testing.assert_array_equal(h, trace["h"][t])  # the same float32 operations in the same order


def test_upsampling_follows_the_frames():
    g = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    hop = 300
    for j in range(5):
        np.testing.assert_array_equal(cond_at(g, j * hop, hop), g[j])  # frame j applies at sample j * hop
    np.testing.assert_array_equal(cond_at(g, 5 * hop - 1, hop), g[4])  # g[F] := g[F - 1]
    mid = cond_at(g, 150, hop)
    np.testing.assert_allclose(mid, (g[0] + g[1]) / 2, atol=1e-6)
    block = upsample_conditioning(g, 0, 5 * hop, hop)
    for t in (0, 1, 299, 300, 301, 777, 1499):
        np.testing.assert_array_equal(block[t], cond_at(g, t, hop))


def test_conditioning_pads_by_replicating_edge_frames():
    cfg = ModelConfig(hidden_size=4, out_hidden=4, cond_channels=2, cond_kernels=(3,), n_mels=2)
    model = random_model(cfg, FeatureConfig(n_mels=2), seed=0)
    weights = dict(model.weights)
    weights["cond.conv0.weight"] = np.zeros((2, 2, 3), np.float32)
    weights["cond.conv0.weight"][0, 0, 0] = 1.0  # channel 0 = previous frame of mel bin 0
    weights["cond.conv0.bias"] = np.zeros(2, np.float32)
    weights["cond.proj.weight"] = np.zeros((12, 2), np.float32)
    weights["cond.proj.weight"][:, 0] = 1.0
    weights["cond.proj.bias"] = np.zeros(12, np.float32)
    mel = np.array([[3.0, 0.0], [5.0, 0.0], [7.0, 0.0]], np.float32)
    g = conditioning_ref(fmt.Model(cfg, model.feature_config, weights), mel)
    np.testing.assert_array_equal(g[:, 0], [3.0, 3.0, 5.0])  # frame -1 is frame 0 replicated


def test_sampling_rule():
    flat = np.zeros(256, np.float32)
    assert ref.sample_from_logits_ref(flat, 0.0) == 0
    assert ref.sample_from_logits_ref(flat, 0.5) == 128  # cdf[k] = k + 1 > 128
    assert ref.sample_from_logits_ref(flat, np.float32(0.99999994)) == 255
    peaked = np.full(256, -100.0, np.float32)
    peaked[7] = 10.0
    assert {ref.sample_from_logits_ref(peaked, u) for u in (0.0, 0.3, 0.9)} == {7}


def test_progress_reports_samples_per_frame(golden):
    seen = []
    ref.generate_ref(golden["model"], golden["mel"][:2], golden["uniforms"][:600], progress=seen.append)
    assert seen == [300, 600]


# --- bad inputs ---------------------------------------------------------------------------------------------

def test_rejects_bad_uniforms(golden):
    model, mel, u = golden["model"], golden["mel"], golden["uniforms"]
    with pytest.raises(ValueError, match=r"\(2400, 2\)"):
        ref.generate_ref(model, mel, u[:-1])
    with pytest.raises(ValueError, match="shape"):
        ref.generate_ref(model, mel, np.ascontiguousarray(u.T))
    with pytest.raises(TypeError, match="float32"):
        ref.generate_ref(model, mel, u.astype(np.float64))
    for bad in (1.0, -0.25, np.nan):
        v = u.copy()
        v[10, 1] = bad
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            ref.generate_ref(model, mel, v)


def test_rejects_bad_mel(golden):
    model, mel, u = golden["model"], golden["mel"], golden["uniforms"]
    with pytest.raises(ValueError, match="80 mel bins"):
        ref.generate_ref(model, mel[:, :79], u)
    with pytest.raises(ValueError, match="transposed"):
        ref.teacher_forced_logits_ref(model, np.zeros((80, 30), np.float32), golden["audio"])
    bad = mel.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ref.generate_ref(model, bad, u)
    with pytest.raises(ValueError, match="NaN"):
        ref.nll_ref(model, bad, golden["audio"])


def test_rejects_bad_audio(golden):
    model, mel, audio = golden["model"], golden["mel"], golden["audio"]
    with pytest.raises(ValueError, match=r"F \* hop"):
        ref.teacher_forced_logits_ref(model, mel, audio[:-1])
    with pytest.raises(ValueError, match=r"F \* hop"):
        ref.nll_ref(model, mel[:-1], audio)
    with pytest.raises(TypeError, match="int16"):
        ref.nll_ref(model, mel, audio.astype(np.int32))


def test_rejects_a_model_that_breaks_the_input_mask(golden):
    weights = dict(golden["model"].weights)
    weights["gru.W_in"] = weights["gru.W_in"].copy()
    weights["gru.W_in"][0, 2] = 0.5  # c_t reaching the coarse half of the u gate
    broken = dataclasses.replace(golden["model"], weights=weights)
    with pytest.raises(ValueError, match="gru.W_in"):
        ref.generate_ref(broken, golden["mel"], golden["uniforms"])


def test_conditioning_of_a_frame_does_not_depend_on_the_window():
    """Streaming relies on it: g[j] from any window holding frames j - L .. j + L (or up to an utterance edge)
    must equal, bit for bit, g[j] over the whole utterance. A BLAS product would round by its shape."""
    model = random_model(ModelConfig(hidden_size=256, out_hidden=64, cond_channels=128, cond_kernels=(5, 3)),
                         seed=8)
    mel = np.random.default_rng(8).normal(-4.0, 2.0, (60, 80)).astype(np.float32)
    whole = conditioning_ref(model, mel)
    lookahead = model.model_config.cond_lookahead
    for j in range(60):
        lo, hi = max(0, j - lookahead), min(60, j + lookahead + 1)
        assert np.array_equal(conditioning_ref(model, mel[lo:hi])[j - lo], whole[j]), j


# --- the float32 operations of docs/format.md §3a ---------------------------------------------------------------

def test_exp_sigmoid_tanh_accuracy_against_float64():
    """The bounds docs/format.md §3a states (measured: 8.0e-8; 8.9e-8 absolute, 1.5e-7 relative)."""
    from pywavernn.reference.ops import exp_ref, sigmoid_ref, tanh_ref
    x = np.linspace(-87, 88, 400_001, dtype=np.float32)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(exp_ref(x) - want) / want) < 1.0e-7
    assert exp_ref(np.float32(-87.5)) == 0 and np.isfinite(exp_ref(np.float32(1e30)))
    x = np.concatenate([np.linspace(-30, 30, 400_001, dtype=np.float32),
                        np.float32(10.0) ** np.linspace(-8, 0, 20_001, dtype=np.float32)])
    x = np.concatenate([x, -x])
    x64 = x.astype(np.float64)
    for got, want in ((sigmoid_ref(x), 1 / (1 + np.exp(-x64))), (tanh_ref(x), np.tanh(x64))):
        err = np.abs(got - want)
        assert err.max() < 1.0e-7
        assert np.max(err / np.abs(want)) < 2.0e-7


@pytest.mark.parametrize("block", [None, (1, 1), (4, 4), (16, 1), (2, 8)])
def test_matvec_ref_is_the_loop_of_the_spec(block):
    """matvec_ref (one np.add.reduce) gives the bits of §3a written as loops: per row, bias first, then each kept
    column's product in increasing column order."""
    rng = np.random.default_rng(7)
    if block is None:
        w = dense = (rng.standard_normal((48, 64)) * 10.0 ** rng.integers(-3, 3, (48, 64))).astype(np.float32)
    else:
        w, dense = random_block_sparse(rng, 96, 64, *block, density=0.3)
    bias = rng.standard_normal(dense.shape[0]).astype(np.float32)
    xs = rng.standard_normal((64, 3)).astype(np.float32)
    want = np.empty((dense.shape[0], 3), np.float32)
    for b in range(3):
        for i in range(dense.shape[0]):
            acc = bias[i]
            kept = np.flatnonzero(dense[i]) if block is None else [
                j for j in range(64) if np.any(dense[(i // block[0]) * block[0]:(i // block[0] + 1) * block[0],
                                                     (j // block[1]) * block[1]:(j // block[1] + 1) * block[1]])]
            for j in kept:
                acc = np.float32(acc + np.float32(dense[i, j] * xs[j, b]))
            want[i, b] = acc
    for b in range(3):
        np.testing.assert_array_equal(ref.matvec_ref(w, xs[:, b], bias), want[:, b])
    np.testing.assert_array_equal(ref.matvec_ref(w, xs, bias), want)
