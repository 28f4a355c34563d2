"""The CUDA backend (cuda/ built by nvcc, loaded by pywavernn/engines/cuda.py).

Runs everywhere: the library builds with `make -C cuda lib` (skipped without nvcc; built into a temporary folder,
so the checkout's cuda/build is left alone); `available()` answers (False, reason) without raising when the
library, the driver or a device is missing, or the model is unsupported; CudaEngine raises ValueError for every
bad model or input before it touches the library.
Also everywhere: the fused model's (docs/format.md §12) validation and input checks, and the C++ reference that
the fused CUDA self-test trusts (cuda/pwr_reference.h, compiled with the host C++ compiler) against
pywavernn.reference.fused, sample for sample.
Needs a GPU (skipped with the reason "no CUDA device" otherwise): the golden samples of tests/data (exact; their
draws sit >= 1e-4 of the cdf total from any class edge), per-step parity with pywavernn.reference (hidden state
and logits within 1e-4 absolute, as in tests/test_reference.py: float32 summation order and exp/tanh ulps move
them by ~1e-6), the same for the fused model against pywavernn.reference.fused (dense and block-sparse, odd T),
batching, `Vocoder(backend="cuda")` on a fused model, and the C self-tests cuda/build/pwr_cuda_test --quick and
pwr_cuda_fused_test --quick when they have been built.

Run: python -m pytest tests/test_cuda.py -q
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pywavernn.engines import cuda
from pywavernn import fused
from pywavernn import modelfile as fmt
from pywavernn.conditioning import conditioning_ref
from pywavernn.reference import fused as fused_ref
from pywavernn.reference import plain as ref
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.testing import random_model, uniforms_clear_of_class_edges

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TOL = 1e-4
SMALL = ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, cond_kernels=(3,))
FUSED = dataclasses.replace(SMALL, subscale_factor=2, subscale_horizon=2, subscale_fused=True)
ODD_HOP = 75  # F * 75 samples: odd T for odd F, so the padded last position of sub-tensor 1 is exercised


@pytest.fixture(scope="module")
def built_lib(tmp_path_factory) -> Path:
    """cuda/ built into a temporary folder with the Makefile's own `lib` target."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found: the CUDA build check needs the CUDA toolkit")
    build = tmp_path_factory.mktemp("cuda_build")
    proc = subprocess.run(["make", "-C", str(REPO / "cuda"), "-j2", "lib", f"BUILD={build}"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"make -C cuda lib failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    lib = build / "libpywavernn_cuda.so"
    assert lib.is_file()
    return lib


@pytest.fixture
def no_library(monkeypatch, tmp_path):
    monkeypatch.setenv(cuda.ENV_LIB, str(tmp_path / "missing" / "libpywavernn_cuda.so"))


@pytest.fixture(scope="module")
def gpu(built_lib_or_default) -> None:
    ok, why = cuda.available()
    if not ok:
        pytest.skip(why if why.lower().startswith("no cuda device") else f"no CUDA device ({why})")


@pytest.fixture(scope="module")
def built_lib_or_default(request):
    """The library the GPU tests use: $PYWAVERNN_CUDA_LIB or cuda/build/ if present, else a fresh build."""
    if cuda.library_path().is_file():
        return cuda.library_path()
    lib = request.getfixturevalue("built_lib")
    mp = pytest.MonkeyPatch()
    mp.setenv(cuda.ENV_LIB, str(lib))
    request.addfinalizer(mp.undo)
    return lib


# --- runs everywhere ------------------------------------------------------------------------------------------------

def test_library_builds_and_reports_limits(built_lib, monkeypatch):
    monkeypatch.setenv(cuda.ENV_LIB, str(built_lib))
    limits = cuda.limits()
    assert limits["max_hidden"] == cuda.MAX_HIDDEN
    assert limits["max_batch_per_launch"] == 4
    assert limits["weight_bytes"] == 4
    assert limits["compiled_arch"].startswith("sm_")
    assert limits["min_compute_capability"] == 90
    assert limits["model_kinds"] == ["plain", "fused"]
    assert limits["fused_hidden_multiple"] == 8


def test_ctypes_structs_match_the_c_header(tmp_path):
    """Every field offset and struct size of pywavernn/engines/cuda.py's ctypes mirrors equals the C compiler's."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler to read the header's layout")
    structs = {"pwr_cuda_model_desc": cuda._ModelDesc, "pwr_cuda_limits_info": cuda._Limits,
               "pwr_cuda_sampler_info": cuda._Info}
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "pywavernn_cuda.h"', "int main(void) {"]
    for cname, mirror in structs.items():
        lines.append(f'printf("{cname} size %zu\\n", sizeof({cname}));')
        for field, _ in mirror._fields_:
            lines.append(f'printf("{cname} {field} %zu\\n", offsetof({cname}, {field}));')
    lines += ["return 0;", "}"]
    src, exe = tmp_path / "layout.c", tmp_path / "layout"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run([compiler, "-std=c99", "-I", str(REPO / "cuda"), str(src), "-o", str(exe)], check=True)
    got = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    for line in filter(None, got):
        cname, field, value = line.split()
        mirror = structs[cname]
        want = ctypes.sizeof(mirror) if field == "size" else getattr(mirror, field).offset
        assert want == int(value), f"{cname}.{field}: ctypes {want}, C {value}"


def test_available_says_no_device_without_one(built_lib, monkeypatch):
    monkeypatch.setenv(cuda.ENV_LIB, str(built_lib))
    ok, why = cuda.available()
    if ok:
        pytest.skip(f"a CUDA device is present ({why})")
    assert "no cuda device" in why.lower(), why


def test_available_without_library(no_library):
    ok, why = cuda.available()
    assert ok is False
    assert "not built" in why and "make -C cuda lib" in why


def test_available_rejects_unsupported_model(no_library):
    model = random_model(dataclasses.replace(SMALL, subscale_factor=2), seed=0)
    ok, why = cuda.available(model)
    assert ok is False and "unsupported model" in why and "subscale" in why


def test_engine_needs_the_library_after_validation(no_library):
    with pytest.raises(RuntimeError, match="not built"):
        cuda.CudaEngine(random_model(SMALL, seed=0))


def _with_weight(model: fmt.Model, name: str, value: np.ndarray) -> fmt.Model:
    weights = dict(model.weights)
    weights[name] = value
    return fmt.Model(model.model_config, model.feature_config, weights)


@pytest.mark.parametrize("case, match", [
    ("float64", "dtype float32"),
    ("shape", "expected shape"),
    ("nan", "finite"),
    ("mask", "column 2"),
])
def test_engine_rejects_bad_weights(no_library, case, match):
    model = random_model(SMALL, seed=1)
    if case == "float64":
        model = _with_weight(model, "out.O2", model.dense("out.O2").astype(np.float64))
    elif case == "shape":
        model = _with_weight(model, "out.b1", np.zeros(SMALL.out_hidden + 1, np.float32))
    elif case == "nan":
        r = model.dense("gru.R").copy()
        r[3, 4] = np.nan
        model = _with_weight(model, "gru.R", r)
    else:
        w_in = model.dense("gru.W_in").copy()
        w_in[SMALL.hidden_size + 5, 2] = 0.25  # gate r, coarse unit 5, the c_t column
        model = _with_weight(model, "gru.W_in", w_in)
    with pytest.raises(ValueError, match=match):  # ValueError, not the RuntimeError of the missing library
        cuda.CudaEngine(model)


def test_engine_rejects_unsupported_configs(no_library):
    big = ModelConfig(hidden_size=1026, out_hidden=8, cond_channels=4, cond_kernels=(1,))
    with pytest.raises(ValueError, match="exceeds"):
        cuda.CudaEngine(random_model(big, seed=0))
    with pytest.raises(ValueError, match="subscale"):
        cuda.CudaEngine(random_model(dataclasses.replace(SMALL, subscale_factor=2), seed=0))
    with pytest.raises(ValueError, match="cluster_size"):
        cuda.CudaEngine(random_model(SMALL, seed=0), cluster_size=4)


@pytest.mark.parametrize("case, match", [
    ("g_dtype", "g: expected a float32"),
    ("g_width", "g: expected shape"),
    ("u_dtype", "uniforms: expected a float32"),
    ("u_shape", "uniforms: expected shape"),
    ("u_range", r"\[0, 1\)"),
    ("g_nan", "finite"),
    ("hop", "hop"),
    ("batch", "uniforms: expected shape"),
])
def test_generate_input_checks(case, match):
    hidden, n_frames, hop = 64, 3, 5
    g = np.zeros((n_frames, 3 * hidden), np.float32)
    u = np.full((n_frames * hop, 2), 0.5, np.float32)
    if case == "g_dtype":
        g = g.astype(np.float64)
    elif case == "g_width":
        g = np.zeros((n_frames, 3 * hidden + 1), np.float32)
    elif case == "u_dtype":
        u = u.astype(np.float64)
    elif case == "u_shape":
        u = u[:-1]
    elif case == "u_range":
        u[4, 1] = 1.0
    elif case == "g_nan":
        g[1, 2] = np.inf
    elif case == "hop":
        hop = 0
    else:
        g = np.zeros((2, n_frames, 3 * hidden), np.float32)  # batch of 2 with unbatched uniforms
    with pytest.raises(ValueError, match=match):
        cuda.check_generate_inputs(g, u, hidden, hop)


def test_generate_input_checks_accept_and_normalise():
    hidden, n_frames, hop = 64, 3, 5
    g = np.asfortranarray(np.zeros((n_frames, 3 * hidden), np.float32))
    u = np.full((n_frames * hop, 2), 0.5, np.float32)
    g3, u3, batched = cuda.check_generate_inputs(g, u, hidden, hop)
    assert not batched and g3.shape == (1, n_frames, 3 * hidden) and u3.shape == (1, n_frames * hop, 2)
    assert g3.flags.c_contiguous and u3.flags.c_contiguous


# --- the fused model (docs/format.md §12), runs everywhere -------------------------------------------------------

def _fused_model(seed: int = 0, hop: int = ODD_HOP, **kwargs) -> fmt.Model:
    return random_model(FUSED, FeatureConfig(n_mels=FUSED.n_mels, hop_length=hop), seed=seed, **kwargs)


def test_fused_model_passes_validation_and_needs_the_library(no_library):
    model = _fused_model()
    arrays = cuda.model_arrays(model)
    assert arrays["gru.W_in"].shape == (3 * 64, 14) and arrays["fused.O1"].shape == (8 * 32, 8)
    assert arrays["fused.O2"].shape == (128, 32) and "out.O1" not in arrays
    ok, why = cuda.available(model)
    assert ok is False and "not built" in why  # not "unsupported model": the fused model is supported
    with pytest.raises(RuntimeError, match="not built"):
        cuda.CudaEngine(model)


def test_fused_block_sparse_weights_are_densified(no_library):
    model = _fused_model(density=0.5)
    assert isinstance(model.weights["fused.O1"], fmt.BlockSparseMatrix)
    np.testing.assert_array_equal(cuda.model_arrays(model)["fused.O1"], model.dense("fused.O1"))


@pytest.mark.parametrize("case, match", [
    ("mask", "fused input mask"),
    ("w_in_shape", "expected shape"),
    ("o2_nan", "finite"),
])
def test_engine_rejects_bad_fused_weights(no_library, case, match):
    model = _fused_model(seed=1)
    if case == "mask":
        w_in = model.dense("gru.W_in").copy()
        w_in[64 + 3, 8] = 0.5  # gate r, part (0, 0): nibble 0 of its own sample is the one it predicts
        model = _with_weight(model, "gru.W_in", w_in)
    elif case == "w_in_shape":
        model = _with_weight(model, "gru.W_in", np.zeros((3 * 64, 3), np.float32))
    else:
        o2 = model.dense("fused.O2").copy()
        o2[5, 1] = np.inf
        model = _with_weight(model, "fused.O2", o2)
    with pytest.raises(ValueError, match=match):
        cuda.CudaEngine(model)


def test_fused_generate_input_checks():
    hidden, n_frames, hop = 64, 3, 5
    g = np.zeros((n_frames, 3 * hidden), np.float32)
    g3, u3, batched = cuda.check_generate_inputs(g, np.full((15, 4), 0.5, np.float32), hidden, hop, columns=4)
    assert u3.shape == (1, 15, 4) and not batched
    with pytest.raises(ValueError, match=r"uniforms: expected shape \(15, 4\).*4 nibbles"):
        cuda.check_generate_inputs(g, np.full((15, 2), 0.5, np.float32), hidden, hop, columns=4)
    with pytest.raises(ValueError, match="at least 2 samples"):
        cuda.check_generate_inputs(g[:1], np.full((1, 4), 0.5, np.float32), hidden, 1, columns=4)


def _write_fused_case(folder: Path, model: fmt.Model, g: np.ndarray, uniforms: np.ndarray) -> None:
    """The files cuda/pwr_reference_check.cpp reads."""
    cfg = model.model_config
    (folder / "dims.txt").write_text(f"{cfg.hidden_size} {cfg.out_hidden} {g.shape[0]} "
                                     f"{model.feature_config.hop_length}\n")
    for name, key in (("R", "gru.R"), ("bR", "gru.b_R"), ("Win", "gru.W_in"), ("O1", "fused.O1"),
                      ("b1", "fused.b1"), ("O2", "fused.O2"), ("b2", "fused.b2")):
        np.ascontiguousarray(model.dense(key), dtype="<f4").tofile(folder / name)
    np.ascontiguousarray(g, dtype="<f4").tofile(folder / "g")
    np.ascontiguousarray(uniforms, dtype="<f4").tofile(folder / "uniforms")


@pytest.mark.parametrize("density", [None, 0.5])
def test_c_fused_reference_matches_numpy_reference(tmp_path, density):
    """cuda/pwr_reference.h's fused step, which judges the GPU in pwr_cuda_fused_test, is docs/format.md §12: the
    same samples as pywavernn.reference.fused (odd T; uniforms kept 1e-5 of the cdf total off class edges, since
    the C reference sums matrix products in float64), logits within 1e-5."""
    compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler for the C reference")
    model = _fused_model(seed=3, density=density)
    rng = np.random.default_rng(4)
    g = conditioning_ref(model, rng.normal(-4.0, 1.5, size=(3, FUSED.n_mels)).astype(np.float32))
    n_samples = 3 * ODD_HOP
    uniforms = uniforms_clear_of_class_edges(lambda u: fused_ref.generate_fused_cond_ref(model, g, u, trace=True),
                                             rng.random((n_samples, 4), dtype=np.float32))
    want, steps = fused_ref.generate_fused_cond_ref(model, g, uniforms, trace=True)
    exe = tmp_path / "check"
    subprocess.run([compiler, "-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror",
                    "-I", str(REPO / "cuda"), str(REPO / "cuda" / "pwr_reference_check.cpp"), "-o", str(exe)],
                   check=True)
    _write_fused_case(tmp_path, model, g, uniforms)
    subprocess.run([str(exe), str(tmp_path)], check=True)
    got = np.fromfile(tmp_path / "samples", "<i2")
    logits = np.fromfile(tmp_path / "logits", "<f4").reshape(n_samples, 4, 16)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(logits, steps["logits"], rtol=0, atol=1e-5)


# --- needs a GPU ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def golden():
    with np.load(DATA / "golden_small.npz", allow_pickle=False) as npz:
        g = {k: npz[k] for k in npz.files}
    weights = {k[len("weights/"):]: v for k, v in g.items() if k.startswith("weights/")}
    g["model"] = fmt.Model(ModelConfig.from_dict(json.loads(str(g["model_config"]))),
                           FeatureConfig.from_dict(json.loads(str(g["feature_config"]))), weights)
    return g


def test_golden_samples_exact(gpu, golden):
    model = golden["model"]
    with cuda.CudaEngine(model) as engine:
        samples = engine.generate(conditioning_ref(model, golden["mel"]), golden["uniforms"])
    np.testing.assert_array_equal(samples, golden["generated"])


def test_step_parity_with_reference(gpu):
    model = random_model(SMALL, seed=3)
    rng = np.random.default_rng(4)
    mel = rng.normal(-4.0, 1.5, size=(3, SMALL.n_mels)).astype(np.float32)
    uniforms = rng.random((3 * model.feature_config.hop_length, 2), dtype=np.float32)
    want, steps = ref.generate_ref(model, mel, uniforms, trace=True)
    with cuda.CudaEngine(model) as engine:
        got, trace = engine.generate_trace(conditioning_ref(model, mel), uniforms)
    differ = np.flatnonzero(got != want)
    upto = differ[0] if differ.size else len(want)  # a float32 tie may fork the paths; compare before it
    assert upto >= 2 * model.feature_config.hop_length, f"samples differ from step {upto}"
    np.testing.assert_allclose(trace["h"][:upto], steps["h"][:upto], rtol=0, atol=TOL)
    np.testing.assert_allclose(trace["logits_c"][:upto], steps["logits_c"][:upto], rtol=0, atol=TOL)
    np.testing.assert_allclose(trace["logits_f"][:upto], steps["logits_f"][:upto], rtol=0, atol=TOL)


def test_batch_equals_single(gpu):
    model = random_model(SMALL, seed=5)
    rng = np.random.default_rng(6)
    hop = model.feature_config.hop_length
    g = np.stack([conditioning_ref(model, rng.normal(-4, 1.5, (2, SMALL.n_mels)).astype(np.float32))
                  for _ in range(3)])
    u = rng.random((3, 2 * hop, 2), dtype=np.float32)
    with cuda.CudaEngine(model) as engine:
        batch = engine.generate(g, u)
        assert batch.shape == (3, 2 * hop) and batch.dtype == np.int16
        for b in range(3):
            np.testing.assert_array_equal(batch[b], engine.generate(g[b], u[b]))


def _fused_inputs(model: fmt.Model, n_frames: int, seed: int):
    rng = np.random.default_rng(seed)
    g = conditioning_ref(model, rng.normal(-4.0, 1.5, size=(n_frames, FUSED.n_mels)).astype(np.float32))
    n_samples = n_frames * model.feature_config.hop_length
    return g, rng.random((n_samples, fused.N_NIBBLES), dtype=np.float32)


@pytest.mark.parametrize("density", [None, 0.5])
def test_fused_parity_with_reference(gpu, density):
    """The CUDA fused sampler against pywavernn.reference.fused: the same samples (odd T, uniforms kept off class
    edges), and per sample the state after its step and its four nibbles' logits within 1e-4."""
    model = _fused_model(seed=5, density=density)
    g, u = _fused_inputs(model, 5, seed=6)
    u = uniforms_clear_of_class_edges(lambda uu: fused_ref.generate_fused_cond_ref(model, g, uu, trace=True), u)
    want, steps = fused_ref.generate_fused_cond_ref(model, g, u, trace=True)
    with cuda.CudaEngine(model) as engine:
        assert engine.uniform_columns == 4 and engine.info["model_kind"] == cuda.MODEL_FUSED
        got, trace = engine.generate_trace(g, u)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(trace["step"], steps["step"])
    np.testing.assert_allclose(trace["h"], steps["h"], rtol=0, atol=TOL)
    np.testing.assert_allclose(trace["logits"], steps["logits"], rtol=0, atol=TOL)


def test_fused_batch_equals_single(gpu):
    model = _fused_model(seed=7)
    inputs = [_fused_inputs(model, 3, seed=8 + b) for b in range(3)]
    g, u = np.stack([x[0] for x in inputs]), np.stack([x[1] for x in inputs])
    with cuda.CudaEngine(model) as engine:
        batch = engine.generate(g, u)
        assert batch.shape == (3, 3 * ODD_HOP) and batch.dtype == np.int16
        for b in range(3):
            np.testing.assert_array_equal(batch[b], engine.generate(g[b], u[b]))


def test_fused_vocoder_backend_cuda(gpu):
    """Vocoder(fused model, backend="cuda") runs the CUDA engine with (T, 4) uniforms drawn from the seed."""
    from pywavernn import Vocoder
    from pywavernn.common import draw_uniforms
    from pywavernn.conditioning import conditioning

    model = _fused_model(seed=9)
    mel = np.random.default_rng(10).normal(-4.0, 1.5, size=(2, FUSED.n_mels)).astype(np.float32)
    vocoder = Vocoder(model, backend="cuda")
    assert isinstance(vocoder.engine, cuda.CudaEngine) and vocoder.engine.uniform_columns == 4
    samples = vocoder.vocode(mel, seed=11)
    want = vocoder.engine.generate(conditioning(model, mel), draw_uniforms(2 * ODD_HOP, 11, 4))
    np.testing.assert_array_equal(samples, want)


@pytest.mark.parametrize("name", ["pwr_cuda_test", "pwr_cuda_fused_test"])
def test_c_selftest(gpu, name):
    binary = REPO / "cuda" / "build" / name
    if not binary.is_file():
        pytest.skip(f"cuda/build/{name} not built (make -C cuda test)")
    proc = subprocess.run([str(binary), "--quick"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
