"""Tests of pywavernn/modelfile.py: the block-CSR packer, the model file round trip and the loader's refusals.

What it is: property tests (hypothesis) that unpack(pack(W)) == W and that a truncated file is always a clean
ValueError, round trips of dense and block-sparse models, and one test per kind of bad file, each building the
file by editing tensors/metadata and writing it with safetensors directly, and checking the error message.
What it is not: a test of the maths (test_reference.py) or of the kernels.

Run: python -m pytest tests/test_format.py -q     (HYPOTHESIS_PROFILE=ci for the derandomized CI profile)
Letters: H hidden units, M x N a matrix shape, BH x BW a block shape.
"""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors import safe_open
from safetensors.numpy import save_file

from pywavernn import modelfile as fmt
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.testing import random_block_sparse, random_model

SMALL = ModelConfig(hidden_size=16, out_hidden=8, cond_channels=8, cond_kernels=(3, 1), n_mels=8,
                    block_shape=(4, 4))
SMALL_FEATURES = FeatureConfig(n_mels=8)
BLOCKS = [(4, 4), (16, 1), (1, 1), (8, 4), (1, 8), (2, 3)]


# ---------------------------------------------------------------------------------------------------------
# Block-CSR packing
# ---------------------------------------------------------------------------------------------------------

@st.composite
def block_masked_matrices(draw):
    """(W, bh, bw): a float32 matrix whose pruned BH x BW blocks are zero, at a drawn block density."""
    bh, bw = draw(st.sampled_from(BLOCKS))
    mb, nb = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    values = draw(hnp.arrays(np.float32, (mb * bh, nb * bw),
                             elements=st.floats(-4, 4, width=32, allow_subnormal=False)))
    density = draw(st.sampled_from([0.0, 1.0, 0.1, 0.5, 0.9]))
    keep = np.random.default_rng(draw(st.integers(0, 2**16))).random((mb, nb)) < density
    mask = np.kron(keep, np.ones((bh, bw), dtype=bool))
    return np.where(mask, values, np.float32(0)), bh, bw


@given(block_masked_matrices())
def test_unpack_inverts_pack(case):
    dense, bh, bw = case
    m = fmt.pack_block_sparse(dense, bh, bw)
    m.validate("W")
    assert np.array_equal(fmt.unpack_block_sparse(m), dense)
    blocks_with_nonzero = int((dense.reshape(dense.shape[0] // bh, bh, -1, bw) != 0).any(axis=(1, 3)).sum())
    assert m.nnz_blocks == blocks_with_nonzero
    assert m.nnz == blocks_with_nonzero * bh * bw


@given(st.sampled_from(BLOCKS), st.integers(1, 5), st.integers(1, 5), st.sampled_from([0.0, 0.3, 1.0]),
       st.integers(0, 1000))
def test_random_block_sparse_keeps_exact_block_count(block, mb, nb, density, seed):
    bh, bw = block
    m, dense = random_block_sparse(np.random.default_rng(seed), mb * bh, nb * bw, bh, bw, density)
    assert m.nnz_blocks == round(density * mb * nb)
    assert m.density == pytest.approx(m.nnz_blocks / (mb * nb))
    assert np.array_equal(fmt.unpack_block_sparse(m), dense)


def test_pack_all_zero_matrix():
    m = fmt.pack_block_sparse(np.zeros((8, 12), np.float32), 4, 4)
    m.validate("zeros")
    assert m.nnz_blocks == 0 and m.density == 0.0
    assert m.row_ptr.tolist() == [0, 0, 0] and m.values.shape == (0, 4, 4)
    assert np.array_equal(fmt.unpack_block_sparse(m), np.zeros((8, 12), np.float32))


def test_pack_rejects_block_that_does_not_divide_shape():
    with pytest.raises(ValueError, match="block 4x4 to divide"):
        fmt.pack_block_sparse(np.ones((8, 6), np.float32), 4, 4)
    with pytest.raises(ValueError, match="2-D"):
        fmt.pack_block_sparse(np.ones(8, np.float32), 1, 1)


def test_random_model_density_is_exact_and_mask_applied():
    model = random_model(SMALL, SMALL_FEATURES, seed=4, density=0.25)
    for name in fmt.SPARSE_CAPABLE:
        w = model.weights[name]
        assert model.is_sparse(name) and w.block == (4, 4)
        assert w.nnz_blocks == round(0.25 * (w.shape[0] // 4) * (w.shape[1] // 4))
        assert model.sparsity()[name] == pytest.approx(0.75)
    assert not model.dense("gru.W_in")[fmt.coarse_rows_of_gates(16), 2].any()


def test_random_model_per_matrix_densities():
    model = random_model(SUBSCALE_SMALL, SMALL_FEATURES, seed=4,
                         densities={"gru.R": 0.25, "out.O1": 0.5, "subscale.proj.weight": 0.5})
    assert model.sparsity()["gru.R"] == pytest.approx(0.75)
    assert model.sparsity()["out.O1"] == pytest.approx(0.5)
    assert model.sparsity()["subscale.proj.weight"] == pytest.approx(0.5)
    assert not model.is_sparse("out.O2") and not model.is_sparse("out.O4")
    # the same draws as `density` for the matrices it names
    assert np.array_equal(random_model(SMALL, SMALL_FEATURES, seed=4, densities=dict.fromkeys(fmt.SPARSE_CAPABLE, 0.25))
                          .dense("gru.R"), random_model(SMALL, SMALL_FEATURES, seed=4, density=0.25).dense("gru.R"))
    with pytest.raises(ValueError, match="not a block-sparse-capable matrix"):
        random_model(SMALL, SMALL_FEATURES, densities={"subscale.proj.weight": 0.5})
    with pytest.raises(ValueError, match="not a block-sparse-capable matrix"):
        random_model(SMALL, SMALL_FEATURES, densities={"gru.W_in": 0.5})
    with pytest.raises(ValueError):
        random_model(SMALL, SMALL_FEATURES, densities={"gru.R": 1.5})


def test_to_sparse_keeps_values_and_records_block():
    dense = random_model(SMALL, SMALL_FEATURES, seed=5)
    sparse = dense.to_sparse(block=(8, 4))
    assert sparse.model_config.block_shape == (8, 4)
    for name in dense.weights:
        assert sparse.is_sparse(name) == (name in fmt.SPARSE_CAPABLE)
        assert np.array_equal(sparse.dense(name), dense.dense(name))
    sparse.validate()
    with pytest.raises(ValueError, match="may not be block-sparse"):
        dense.to_sparse(["gru.W_in"])


# ---------------------------------------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("density", [None, 0.0, 0.3, 1.0])
def test_save_load_round_trip_is_bit_exact(tmp_path, density):
    model = random_model(SMALL, SMALL_FEATURES, seed=7, density=density)
    model.provenance = {"note": "round trip", "steps": 3}
    path = tmp_path / "m.safetensors"
    fmt.save_model(model, path)
    loaded = fmt.load_model(path)
    assert loaded.model_config == model.model_config and loaded.feature_config == model.feature_config
    assert loaded.provenance == model.provenance
    assert list(loaded.weights) == list(model.weights)
    for name in model.weights:
        assert loaded.is_sparse(name) == model.is_sparse(name)
        assert np.array_equal(loaded.dense(name).view(np.uint32), model.dense(name).view(np.uint32))
    assert loaded.n_parameters() == model.n_parameters()
    arrays = [w for w in loaded.weights.values() if isinstance(w, np.ndarray)]
    arrays += [getattr(w, p) for w in loaded.weights.values() if isinstance(w, fmt.BlockSparseMatrix)
               for p in fmt.SPARSE_PARTS]
    assert arrays and not any(a.flags.writeable for a in arrays)
    assert "format version 1" in fmt.describe(loaded)


def test_the_same_model_saves_to_the_same_bytes(tmp_path):
    """The header's keys are sorted (the safetensors writer orders the metadata at random), so a model file's
    SHA-256 names its contents: re-exporting an unchanged model changes nothing."""
    model = random_model(SMALL, SMALL_FEATURES, seed=3, density=0.3)
    model.provenance = {"note": "a", "training": {"step": 1, "data": ["x"]}}
    files = []
    for i in range(6):
        fmt.save_model(model, tmp_path / f"m{i}.safetensors")
        files.append((tmp_path / f"m{i}.safetensors").read_bytes())
    assert all(f == files[0] for f in files)
    assert int.from_bytes(files[0][:8], "little") % 8 == 0


def test_save_leaves_no_temp_files(tmp_path):
    fmt.save_model(random_model(SMALL, SMALL_FEATURES), tmp_path / "m.safetensors")
    fmt.save_model(random_model(SMALL, SMALL_FEATURES, seed=1), tmp_path / "m.safetensors")  # overwrite
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_failed_save_leaves_existing_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    fmt.save_model(random_model(SMALL, SMALL_FEATURES), path)
    before = path.read_bytes()
    bad = random_model(SMALL, SMALL_FEATURES, seed=2)
    bad.weights["gru.b_R"] = bad.weights["gru.b_R"].copy()
    bad.weights["gru.b_R"][0] = np.nan
    with pytest.raises(ValueError, match="gru.b_R: expected finite"):
        fmt.save_model(bad, path)
    # A failure while writing (here: the rename) must remove the temporary file too.
    monkeypatch.setattr(fmt.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk on fire")))
    with pytest.raises(OSError, match="disk on fire"):
        fmt.save_model(random_model(SMALL, SMALL_FEATURES, seed=3), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


# ---------------------------------------------------------------------------------------------------------
# The loader's refusals
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.safetensors"
    fmt.save_model(random_model(SMALL, SMALL_FEATURES, seed=11, density=0.5), path)
    return path


def read_raw(path):
    """(tensors, metadata) of a safetensors file, as writeable copies to edit."""
    with safe_open(str(path), framework="np") as f:
        return {k: np.array(f.get_tensor(k)) for k in f.keys()}, dict(f.metadata() or {})


def write_edited(good_file, tmp_path, edit):
    """Apply edit(tensors, metadata) to a copy of the good file and return the new file's path."""
    tensors, metadata = read_raw(good_file)
    edit(tensors, metadata)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


def assert_refused(path, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        fmt.load_model(path)
    assert str(path) in str(info.value)


def test_good_file_loads_as_it_was_saved(good_file):
    """The fixture the refusals below edit is itself accepted, and loads as the model that was saved: the same
    configs, the same layout per matrix, the same weights bit for bit, read-only."""
    saved = random_model(SMALL, SMALL_FEATURES, seed=11, density=0.5)
    loaded = fmt.load_model(good_file)
    assert loaded.model_config == saved.model_config and loaded.feature_config == saved.feature_config
    assert sorted(loaded.weights) == sorted(saved.weights)
    assert any(loaded.is_sparse(n) for n in loaded.weights)
    for name in saved.weights:
        assert loaded.is_sparse(name) == saved.is_sparse(name), name
        assert np.array_equal(loaded.dense(name), saved.dense(name)), name
        w = loaded.weights[name]
        assert not (w.values if loaded.is_sparse(name) else w).flags.writeable, name


@settings(max_examples=40)
@given(data=st.data())
def test_every_truncation_is_a_clean_value_error(good_file, tmp_path_factory, data):
    raw = good_file.read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    path = tmp_path_factory.mktemp("cut") / "cut.safetensors"
    path.write_bytes(raw[:cut])
    assert_refused(path, "not a readable safetensors file")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fmt.load_model(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("content", [
    np.random.default_rng(0).bytes(5000),
    json.dumps({"format": "pywavernn", "weights": [1, 2, 3]}).encode(),
    b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\xc0\x5d\x00\x00" + bytes(200),
], ids=["random-bytes", "json", "wav"])
def test_non_safetensors_file_is_refused(tmp_path, content):
    path = tmp_path / "not-a-model.safetensors"
    path.write_bytes(content)
    assert_refused(path, "not a readable safetensors file")


def test_safetensors_file_of_another_project_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": np.ones((4, 4), np.float32)}, str(path), metadata={"format": "pt"})
    assert_refused(path, "not a pywavernn model file.*found format 'pt'")
    save_file({"encoder.weight": np.ones((4, 4), np.float32)}, str(path))
    assert_refused(path, "not a pywavernn model file.*found no metadata")


def _set(key, value):
    return lambda tensors, metadata: metadata.__setitem__(key, value)


def _poke(name, index, value):
    def edit(tensors, metadata):
        tensors[name][index] = value
    return edit


def _mel_mismatch(tensors, metadata):
    metadata["feature_config"] = FeatureConfig(n_mels=10).to_json()


BAD_FILES = {
    "newer-version": (_set("format_version", "2"), r"newer pywavernn \(format version 2 > 1\); upgrade pywavernn"),
    "bad-version": (_set("format_version", "one"), "format_version.*expected a positive integer"),
    "unicode-digit-version": (_set("format_version", "\u00b2"), "format_version.*expected a positive integer"),
    "missing-sparse-key": (lambda t, m: m.pop("sparse"), "metadata: missing key 'sparse'"),
    "bad-model-config": (_set("model_config", '{"hidden_size": 15}'), "hidden_size: expected an even number"),
    "bad-json": (_set("feature_config", "{not json"), "feature_config.*invalid JSON"),
    "unknown-metadata": (_set("provenence", "{}"), r"unexpected key\(s\) \['provenence'\]"),
    "n-mels-mismatch": (_mel_mismatch, "n_mels: the model config expects 8 mel bins but the feature config "
                                       "computes 10"),
    "col-idx-out-of-range": (_poke("gru.R.col_idx", 0, 4), r"gru.R.col_idx: expected block columns in \[0, 4\)"),
    "col-idx-negative": (_poke("out.O2.col_idx", 0, -1), r"out.O2.col_idx: expected block columns"),
    "col-idx-not-increasing": (lambda t, m: _repeat_column(t, "gru.R"), "gru.R.col_idx: expected strictly increasing"),
    "row-ptr-decreasing": (_poke("gru.R.row_ptr", 1, 99), "gru.R.row_ptr: expected non-decreasing"),
    "row-ptr-wraps": (lambda t, m: t["gru.R.row_ptr"].__setitem__(slice(1, 3), [2**31 - 1, -2**31]),
                      "gru.R.row_ptr: expected non-decreasing"),
    "row-ptr-start": (_poke("gru.R.row_ptr", 0, 1), r"gru.R.row_ptr: expected row_ptr\[0\] == 0"),
    "row-ptr-end": (lambda t, m: t["gru.R.row_ptr"].__setitem__(-1, t["gru.R.row_ptr"][-2]),
                    r"gru.R.row_ptr: expected row_ptr\[-1\] == nnzb"),
    "nan-weight": (_poke("cond.proj.weight", (0, 0), np.nan), "cond.proj.weight: expected finite values"),
    "inf-sparse-value": (_poke("out.O1.values", (0, 0, 0), np.inf), "out.O1.values: expected finite values"),
    "wrong-shape": (lambda t, m: t.__setitem__("out.b1", np.zeros(9, np.float32)),
                    r"out.b1: expected shape \(8,\), found \(9,\)"),
    "wrong-values-shape": (lambda t, m: t.__setitem__("out.O3.values", t["out.O3.values"][:-1].copy()),
                           r"out.O3.values: expected shape"),
    "float64": (lambda t, m: t.__setitem__("gru.b_R", t["gru.b_R"].astype(np.float64)),
                r"gru.b_R: expected dtype float32 \(F32\), found F64"),
    "int64-index": (lambda t, m: t.__setitem__("gru.R.col_idx", t["gru.R.col_idx"].astype(np.int64)),
                    r"gru.R.col_idx: expected dtype int32 \(I32\), found I64"),
    "missing-tensor": (lambda t, m: t.pop("out.b4"), r"missing \['out.b4'\], unexpected \[\]"),
    "unexpected-tensor": (lambda t, m: t.__setitem__("extra", np.zeros(1, np.float32)),
                          r"missing \[\], unexpected \['extra'\]"),
    "w-in-mask-broken": (_poke("gru.W_in", (16 + 3, 2), 0.5),
                         "gru.W_in: expected column 2 .* zero in the coarse rows.* first at row 19"),
    "sparse-not-capable": (_set("sparse", json.dumps({"gru.W_in": {"shape": [48, 3], "block": [4, 1]}})),
                           "'gru.W_in' may not be block-sparse"),
    "block-not-config": (lambda t, m: _reblock(t, m, "out.O1", (8, 4)),
                         r"out.O1: expected the model config's block shape \(4, 4\), found \(8, 4\)"),
}


def _repeat_column(tensors, name):
    """Give the second block of the first block row holding two blocks the first one's column."""
    row_ptr, col_idx = tensors[f"{name}.row_ptr"], tensors[f"{name}.col_idx"]
    start = row_ptr[:-1][np.diff(row_ptr) >= 2][0]
    col_idx[start + 1] = col_idx[start]


def _reblock(tensors, metadata, name, block):
    """Store `name` with another block shape, consistently, so only the block-vs-config check can fire."""
    dense = fmt.unpack_block_sparse(fmt.BlockSparseMatrix(
        (8, 8), (4, 4), tensors[f"{name}.row_ptr"], tensors[f"{name}.col_idx"], tensors[f"{name}.values"]))
    packed = fmt.pack_block_sparse(dense, *block)
    for part in fmt.SPARSE_PARTS:
        tensors[f"{name}.{part}"] = getattr(packed, part)
    sparse = json.loads(metadata["sparse"])
    sparse[name]["block"] = list(block)
    metadata["sparse"] = json.dumps(sparse)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_refused(good_file, tmp_path, case):
    edit, pattern = BAD_FILES[case]
    assert_refused(write_edited(good_file, tmp_path, edit), pattern)


def test_validate_catches_bad_in_memory_matrix():
    model = random_model(SMALL, SMALL_FEATURES, seed=1, density=0.5)
    r = model.weights["gru.R"]
    col_idx = r.col_idx.copy()
    col_idx[-1] = 100
    model.weights["gru.R"] = fmt.BlockSparseMatrix(r.shape, r.block, r.row_ptr, col_idx, r.values)
    with pytest.raises(ValueError, match="gru.R.col_idx: expected block columns"):
        model.validate()


# ---------------------------------------------------------------------------------------------------------
# Subscale models: the context projection may be block-sparse (docs/format.md §9)
# ---------------------------------------------------------------------------------------------------------

SUBSCALE_SMALL = ModelConfig(hidden_size=16, out_hidden=8, cond_channels=8, cond_kernels=(3, 1), n_mels=8,
                             block_shape=(4, 4), subscale_factor=4, subscale_horizon=1, subscale_channels=8,
                             subscale_layers=1)


def test_sparse_capable_adds_context_projection_for_subscale_models_only():
    assert fmt.sparse_capable(SMALL) == fmt.SPARSE_CAPABLE
    assert fmt.sparse_capable(SUBSCALE_SMALL) == fmt.SPARSE_CAPABLE + ("subscale.proj.weight",)
    with pytest.raises(ValueError, match="proj_density"):
        random_model(SMALL, SMALL_FEATURES, proj_density=0.5)


def test_subscale_sparse_projection_round_trip(tmp_path):
    model = random_model(SUBSCALE_SMALL, SMALL_FEATURES, seed=3, density=0.5, proj_density=0.25)
    proj = model.weights["subscale.proj.weight"]
    assert model.is_sparse("subscale.proj.weight") and proj.block == (4, 4) and proj.shape == (48, 8)
    assert proj.nnz_blocks == round(0.25 * 12 * 2)
    assert model.sparsity()["subscale.proj.weight"] == pytest.approx(0.75)
    assert not model.is_sparse("subscale.embed.weight")
    path = tmp_path / "m.safetensors"
    fmt.save_model(model, path)
    loaded = fmt.load_model(path)
    assert loaded.is_sparse("subscale.proj.weight")
    for name in model.weights:
        assert np.array_equal(loaded.dense(name).view(np.uint32), model.dense(name).view(np.uint32))
    assert "block-sparse 4x4" in next(line for line in fmt.describe(loaded).splitlines()
                                      if "subscale.proj.weight" in line)


def test_random_model_conv_density_prunes_each_tap_and_keeps_the_layers_dense():
    model = random_model(SUBSCALE_SMALL, SMALL_FEATURES, seed=3, conv_density=0.5)  # C_x = 8: 2 x 2 blocks of 4x4
    conv = model.weights["subscale.conv0.weight"]
    assert isinstance(conv, np.ndarray) and conv.shape == (8, 8, 2)
    for tap in (0, 1):
        blocks = np.abs(conv[:, :, tap]).reshape(2, 4, 2, 4).sum(axis=(1, 3))
        assert int((blocks == 0).sum()) == 2 and np.all(conv[:, :, tap][np.repeat(np.repeat(blocks, 4, 0), 4, 1) > 0])
    with pytest.raises(ValueError, match="conv_density"):
        random_model(SMALL, SMALL_FEATURES, conv_density=0.5)


def test_subscale_to_sparse_and_validation_of_projection():
    dense = random_model(SUBSCALE_SMALL, SMALL_FEATURES, seed=5)
    assert dense.sparsity()["subscale.proj.weight"] == 0.0
    sparse = dense.to_sparse(["gru.R", "subscale.proj.weight"])
    assert sparse.is_sparse("subscale.proj.weight") and not sparse.is_sparse("out.O1")
    assert np.array_equal(sparse.dense("subscale.proj.weight"), dense.dense("subscale.proj.weight"))
    sparse.validate()
    assert not dense.to_sparse().is_sparse("subscale.proj.weight")  # the default names are unchanged
    with pytest.raises(ValueError, match="may not be block-sparse"):
        dense.to_sparse(["subscale.embed.weight"])
    with pytest.raises(ValueError, match="divide"):
        dense.to_sparse(["subscale.proj.weight"], block=(4, 3))  # C_x = 8 is not a multiple of 3
    wrong = dict(sparse.weights)
    wrong["subscale.proj.weight"] = fmt.pack_block_sparse(dense.dense("subscale.proj.weight"), 2, 2)
    with pytest.raises(ValueError, match="subscale.proj.weight: expected the model config's block shape"):
        fmt.Model(sparse.model_config, sparse.feature_config, wrong).validate()
    plain_sparse = dict(sparse.weights)
    plain_sparse["subscale.embed.weight"] = fmt.pack_block_sparse(dense.dense("subscale.embed.weight"), 4, 4)
    with pytest.raises(ValueError, match="subscale.embed.weight: expected a dense array"):
        fmt.Model(sparse.model_config, sparse.feature_config, plain_sparse).validate()
