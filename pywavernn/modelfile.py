"""The pywavernn model file: the one reader/writer, the block-CSR layout and the in-memory `Model`.

What it is: the implementation of docs/format.md §6-§8. `save_model` / `load_model` read and write the
safetensors file; `pack_block_sparse` / `unpack_block_sparse` are the only way in and out of the block-CSR
layout; `expected_weight_shapes` is the single source of truth for weight names and shapes; `Model.validate`
holds every check the loader makes, so an in-memory model can be checked before it is saved or run.
What it is not: the maths (pywavernn/reference/plain.py) or any kernel. Plain Python + NumPy + safetensors.

Run its tests with `python -m pytest tests/test_format.py -q`; inspect a file with `python -m pywavernn info FILE`.

Letters: H hidden units, K output-head hidden units, C conditioning channels, M x N a matrix shape,
BH x BW a block shape, MB = M/BH block rows, NB = N/BW block columns, nnzb stored blocks.

Loaded models are immutable: every array of a loaded model is a private copy (not a memory map, so replacing
the file later cannot change a loaded model) marked read-only, so one model can be shared between threads and
streams. Models built in memory (e.g. `pywavernn.testing.random_model`) hold whatever arrays they were given.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Union

import numpy as np

from pywavernn.atomic import atomic_write
from pywavernn.common import N_CLASSES, STEP_MATRICES
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn import fused
from pywavernn.config import FUSED_PARTS
from pywavernn.fold import linear_estimate_mask

FORMAT_MAGIC = "pywavernn"
FORMAT_VERSION = 1
# Matrices a file may store in block-CSR layout (docs/format.md §6); everything else is always dense.
SPARSE_CAPABLE = STEP_MATRICES
# Further matrices a subscale model (subscale_factor > 1, docs/format.md §9) may store in block-CSR layout.
SUBSCALE_SPARSE_CAPABLE = ("subscale.proj.weight",)
# The matrices a fused model (docs/format.md §12) may store in block-CSR layout: R and its eight heads' layers.
FUSED_SPARSE_CAPABLE = ("gru.R", "fused.O1", "fused.O2")
SPARSE_PARTS = ("row_ptr", "col_idx", "values")
MODEL_KIND_NAMES = {"plain": "WaveRNN (dual softmax, one sample per step; docs/format.md §1-8)",
                    "subscale": "Subscale WaveRNN (docs/format.md §9)",
                    "fused": "Fused Subscale WaveRNN 2x (two samples, eight 4-bit softmaxes per step; "
                             "docs/format.md §12)"}
_METADATA_KEYS = {"format", "format_version", "model_config", "feature_config", "sparse", "provenance"}
# safetensors dtype names of the arrays we store.
_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}


# ---------------------------------------------------------------------------------------------------------
# Block-CSR layout (docs/format.md §7)
# ---------------------------------------------------------------------------------------------------------

def _check_pair(name: str, what: str, value: Any) -> tuple[int, int]:
    if (not isinstance(value, tuple) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in value)):
        raise ValueError(f"{name}: expected {what} as a pair of positive integers, found {value!r}")
    return int(value[0]), int(value[1])


def _check_array(name: str, arr: Any, dtype: type, shape: tuple[int, ...]) -> None:
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, found {type(arr).__name__}")
    if arr.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype).name}, found {arr.dtype.name}")
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, found {arr.shape}")


def _check_finite(name: str, arr: np.ndarray) -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        first = np.unravel_index(int(np.argmin(finite)), arr.shape)
        raise ValueError(f"{name}: expected finite values, found {arr[first]} at index {tuple(map(int, first))} "
                         f"({int(arr.size - finite.sum())} non-finite in all)")


@dataclass(frozen=True)
class BlockSparseMatrix:
    """An M x N float32 matrix in block-CSR layout with BH x BW blocks (docs/format.md §7).

    row_ptr  int32 (MB + 1,)       block row i owns blocks row_ptr[i]:row_ptr[i+1]
    col_idx  int32 (nnzb,)         block column of each block, strictly increasing within a block row
    values   float32 (nnzb, BH, BW) each block's entries, row-major

    Build one with `pack_block_sparse`; `validate` checks the layout (kernels trust a validated matrix).
    """

    shape: tuple[int, int]
    block: tuple[int, int]
    row_ptr: np.ndarray
    col_idx: np.ndarray
    values: np.ndarray

    @property
    def nnz_blocks(self) -> int:
        return int(self.col_idx.shape[0])

    @property
    def density(self) -> float:
        """Stored blocks / all blocks of the matrix."""
        n_blocks = (self.shape[0] // self.block[0]) * (self.shape[1] // self.block[1])
        return self.nnz_blocks / n_blocks

    @property
    def nnz(self) -> int:
        """Stored weights (nnzb * BH * BW), zeros inside stored blocks included."""
        return int(self.values.size)

    def validate(self, name: str = "matrix") -> None:
        """Raise ValueError naming `name` for any violation of the layout; return None if it is valid."""
        m, n = _check_pair(name, "shape", self.shape)
        bh, bw = _check_pair(name, "block", self.block)
        if m % bh or n % bw:
            raise ValueError(f"{name}: expected block {bh}x{bw} to divide shape {m}x{n}")
        mb, nb = m // bh, n // bw
        _check_array(f"{name}.row_ptr", self.row_ptr, np.int32, (mb + 1,))
        if not isinstance(self.col_idx, np.ndarray) or self.col_idx.ndim != 1:
            found = getattr(self.col_idx, "shape", type(self.col_idx).__name__)
            raise ValueError(f"{name}.col_idx: expected a 1-D int32 array (nnzb,), found {found}")
        nnzb = self.col_idx.shape[0]
        _check_array(f"{name}.col_idx", self.col_idx, np.int32, (nnzb,))
        _check_array(f"{name}.values", self.values, np.float32, (nnzb, bh, bw))
        for part in SPARSE_PARTS:
            if not getattr(self, part).flags.c_contiguous:
                raise ValueError(f"{name}.{part}: expected a C-contiguous array")
        self._validate_indices(name, mb, nb, nnzb)
        _check_finite(f"{name}.values", self.values)

    def _validate_indices(self, name: str, mb: int, nb: int, nnzb: int) -> None:
        row_ptr, col_idx = self.row_ptr, self.col_idx
        if row_ptr[0] != 0:
            raise ValueError(f"{name}.row_ptr: expected row_ptr[0] == 0, found {row_ptr[0]}")
        steps = np.diff(row_ptr.astype(np.int64))  # int64: an int32 difference could wrap and look valid
        if (steps < 0).any():
            i = int(np.argmax(steps < 0))
            raise ValueError(f"{name}.row_ptr: expected non-decreasing values, found row_ptr[{i}] = {row_ptr[i]} "
                             f"> row_ptr[{i + 1}] = {row_ptr[i + 1]}")
        if row_ptr[-1] != nnzb:
            raise ValueError(f"{name}.row_ptr: expected row_ptr[-1] == nnzb == {nnzb} (length of col_idx), "
                             f"found {row_ptr[-1]}")
        bad = (col_idx < 0) | (col_idx >= nb)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name}.col_idx: expected block columns in [0, {nb}), found col_idx[{i}] = {col_idx[i]}")
        # Within a block row each column must exceed the previous one; across a row boundary anything goes.
        block_row = np.repeat(np.arange(mb), steps)
        same_row = block_row[1:] == block_row[:-1]
        bad = same_row & (np.diff(col_idx) <= 0)
        if bad.any():
            i = int(np.argmax(bad)) + 1
            raise ValueError(f"{name}.col_idx: expected strictly increasing block columns within block row "
                             f"{block_row[i]}, found col_idx[{i - 1}] = {col_idx[i - 1]}, col_idx[{i}] = {col_idx[i]}")


def _blocked(dense: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """View (M, N) as (MB, NB, BH, BW)."""
    m, n = dense.shape
    return dense.reshape(m // bh, bh, n // bw, bw).transpose(0, 2, 1, 3)


def pack_block_sparse(dense: np.ndarray, bh: int, bw: int) -> BlockSparseMatrix:
    """Pack an (M, N) matrix into block-CSR with BH x BW blocks, keeping every block with a nonzero entry.

    The input is converted to float32. Raises ValueError if it is not 2-D or BH, BW do not divide its shape.
    """
    dense = np.asarray(dense)
    if dense.ndim != 2:
        raise ValueError(f"pack_block_sparse: expected a 2-D matrix, found shape {dense.shape}")
    if not np.issubdtype(dense.dtype, np.floating) and not np.issubdtype(dense.dtype, np.integer):
        raise ValueError(f"pack_block_sparse: expected a real-valued matrix, found dtype {dense.dtype}")
    bh, bw = _check_pair("pack_block_sparse", "block", (bh, bw))
    m, n = dense.shape
    if m == 0 or n == 0 or m % bh or n % bw:
        raise ValueError(f"pack_block_sparse: expected block {bh}x{bw} to divide a non-empty shape, found {m}x{n}")
    blocks = _blocked(dense.astype(np.float32, copy=False), bh, bw)
    keep = (blocks != 0).any(axis=(2, 3))  # NaN != 0, so a NaN block is kept (and later refused by validate)
    rows, cols = np.nonzero(keep)  # row-major order: columns ascend within each block row
    row_ptr = np.zeros(m // bh + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=m // bh), out=row_ptr[1:])
    return BlockSparseMatrix(
        shape=(m, n), block=(bh, bw), row_ptr=row_ptr, col_idx=cols.astype(np.int32),
        values=np.ascontiguousarray(blocks[rows, cols], dtype=np.float32),
    )


def unpack_block_sparse(matrix: BlockSparseMatrix) -> np.ndarray:
    """The dense float32 (M, N) matrix of a block-CSR matrix (validated first; pruned blocks are zero)."""
    matrix.validate("unpack_block_sparse")
    (m, n), (bh, bw) = matrix.shape, matrix.block
    dense = np.zeros((m, n), dtype=np.float32)
    block_row = np.repeat(np.arange(m // bh), np.diff(matrix.row_ptr))
    _blocked(dense, bh, bw)[block_row, matrix.col_idx] = matrix.values  # writes through the view
    return dense


# ---------------------------------------------------------------------------------------------------------
# Names and shapes (docs/format.md §6)
# ---------------------------------------------------------------------------------------------------------

def expected_weight_shapes(model_config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every weight name of a model with this config and its (dense) shape, in docs/format.md §6 order, followed by
    the linear prediction's and the prior's (§11) when the plain model has them, and the subscale context
    network's (§9) when subscale_factor > 1."""
    h, k, c = model_config.hidden_size, model_config.out_hidden, model_config.cond_channels
    if model_config.kind == "fused":
        return fused_weight_shapes(model_config)
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = model_config.n_mels
    for i, kernel in enumerate(model_config.cond_kernels):
        shapes[f"cond.conv{i}.weight"] = (c, c_in, kernel)
        shapes[f"cond.conv{i}.bias"] = (c,)
        c_in = c
    shapes.update({
        "cond.proj.weight": (3 * h, c), "cond.proj.bias": (3 * h,),
        "gru.W_in": (3 * h, gru_input_columns(model_config)), "gru.R": (3 * h, h), "gru.b_R": (3 * h,),
        "out.O1": (k, h // 2), "out.b1": (k,), "out.O2": (N_CLASSES, k), "out.b2": (N_CLASSES,),
        "out.O3": (k, h // 2), "out.b3": (k,), "out.O4": (N_CLASSES, k), "out.b4": (N_CLASSES,),
    })
    if model_config.linear_order:  # the linear prediction's taps, then the prior's log-scale (docs/format.md §11)
        shapes["linear.weight"] = (model_config.linear_order,)
    if model_config.prior != "none":  # a row per byte [coarse, fine] over the head's K hidden units, a bias per byte
        shapes.update({"prior.weight": (2, k), "prior.bias": (2,)})
    if model_config.subscale_factor > 1:
        shapes.update(subscale_weight_shapes(model_config))
    return shapes


def _cond_shapes(model_config: ModelConfig) -> dict[str, tuple[int, ...]]:
    h, c, c_in = model_config.hidden_size, model_config.cond_channels, model_config.n_mels
    shapes: dict[str, tuple[int, ...]] = {}
    for i, kernel in enumerate(model_config.cond_kernels):
        shapes[f"cond.conv{i}.weight"] = (c, c_in, kernel)
        shapes[f"cond.conv{i}.bias"] = (c,)
        c_in = c
    shapes.update({"cond.proj.weight": (3 * h, c), "cond.proj.bias": (3 * h,)})
    return shapes


def fused_weight_shapes(model_config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The fused model's weights (docs/format.md §12), in order: the conditioning network of §2, the GRU with 14
    input columns, and the eight nibble heads stacked by rows (head p = 4 s + j owns rows [p K, (p + 1) K) of
    fused.O1 and [16 p, 16 p + 16) of fused.O2)."""
    h, k = model_config.hidden_size, model_config.out_hidden
    p, heads = h // FUSED_PARTS, FUSED_PARTS
    shapes = _cond_shapes(model_config)
    shapes.update({
        "gru.W_in": (3 * h, fused.INPUT_COLUMNS), "gru.R": (3 * h, h), "gru.b_R": (3 * h,),
        "fused.O1": (heads * k, p), "fused.b1": (heads * k,),
        "fused.O2": (heads * fused.NIBBLE_CLASSES, k), "fused.b2": (heads * fused.NIBBLE_CLASSES,),
    })
    return shapes


def gru_input_columns(model_config: ModelConfig) -> int:
    """Columns of gru.W_in: 3 (c_{t-1}, f_{t-1}, c_t), and a 4th, est(t), with linear prediction (§3, §11)."""
    return 4 if model_config.linear_order else 3


def subscale_weight_shapes(model_config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The subscale context network's weights (docs/format.md §9), in order; every bias has one row per sub-tensor.

    Letters: B subscale factor, C_x context channels, D context layers.
    """
    b, cx, h = model_config.subscale_factor, model_config.subscale_channels, model_config.hidden_size
    shapes: dict[str, tuple[int, ...]] = {"subscale.embed.weight": (cx, 2 * b), "subscale.embed.bias": (b, cx)}
    for i in range(model_config.subscale_layers):
        shapes[f"subscale.conv{i}.weight"] = (cx, cx, 2)
        shapes[f"subscale.conv{i}.bias"] = (b, cx)
    shapes.update({"subscale.proj.weight": (3 * h, cx), "subscale.proj.bias": (b, 3 * h)})
    e = model_config.subscale_linear
    if e:  # the linear estimates: weights [s, d, z, e] (zero outside fold.linear_estimate_mask), GRU columns
        shapes.update({"subscale.linear.weight": (b, model_config.subscale_horizon + 2, b, e),
                       "subscale.linear.proj": (3 * h, e)})
    if model_config.subscale_prior != "none":  # the prior's log-scale: a row per byte [coarse, fine] over the
        # output head's K hidden units, and a bias per byte and sub-tensor
        shapes.update({"subscale.prior.weight": (2, model_config.out_hidden),
                       "subscale.prior.bias": (2, b)})
    return shapes


def sparse_capable(model_config: ModelConfig) -> tuple[str, ...]:
    """The matrices a model with this config may store block-sparse: SPARSE_CAPABLE, plus
    SUBSCALE_SPARSE_CAPABLE for a subscale model (docs/format.md §6, §9)."""
    if model_config.kind == "fused":
        return FUSED_SPARSE_CAPABLE
    return SPARSE_CAPABLE + (SUBSCALE_SPARSE_CAPABLE if model_config.subscale_factor > 1 else ())


def coarse_rows_of_gates(hidden_size: int) -> np.ndarray:
    """Rows g*H + j (gate g in u, r, e; j < H/2) of W_in whose c_t column must be zero (docs/format.md §3)."""
    h = hidden_size
    return (np.arange(3)[:, None] * h + np.arange(h // 2)[None, :]).ravel()


Weight = Union[np.ndarray, BlockSparseMatrix]


# ---------------------------------------------------------------------------------------------------------
# The in-memory model
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Model:
    """A WaveRNN model: both configs, the weights by name (dense arrays or BlockSparseMatrix) and provenance.

    Treat it as immutable (a loaded model's arrays are read-only); `to_sparse` returns a new Model.
    """

    model_config: ModelConfig
    feature_config: FeatureConfig
    weights: dict[str, Weight]
    provenance: dict = field(default_factory=dict)

    def is_sparse(self, name: str) -> bool:
        return isinstance(self._weight(name), BlockSparseMatrix)

    def dense(self, name: str) -> np.ndarray:
        """The weight as a dense float32 array: the stored array itself, or a fresh unpacked copy if sparse."""
        w = self._weight(name)
        return unpack_block_sparse(w) if isinstance(w, BlockSparseMatrix) else w

    def _weight(self, name: str) -> Weight:
        try:
            return self.weights[name]
        except KeyError:
            raise KeyError(f"no weight named {name!r}; the model has {sorted(self.weights)}") from None

    def sparsity(self) -> dict[str, float]:
        """Fraction of zero weights in each sparse-capable matrix (`sparse_capable(model_config)`; zeros inside
        stored blocks count as zero)."""
        out = {}
        for name in sparse_capable(self.model_config):
            w = self._weight(name)
            values = w.values if isinstance(w, BlockSparseMatrix) else w
            total = w.shape[0] * w.shape[1]
            out[name] = 1.0 - int(np.count_nonzero(values)) / total
        return out

    def n_parameters(self) -> int:
        """Stored weights: every dense entry plus every entry of every stored block (indices not counted)."""
        return sum(w.nnz if isinstance(w, BlockSparseMatrix) else int(w.size) for w in self.weights.values())

    def validate(self) -> None:
        """Every check `load_model` makes, on this in-memory model; ValueError naming the tensor on failure."""
        if not isinstance(self.model_config, ModelConfig):
            raise ValueError(f"model_config: expected a ModelConfig, found {type(self.model_config).__name__}")
        if not isinstance(self.feature_config, FeatureConfig):
            raise ValueError(f"feature_config: expected a FeatureConfig, found {type(self.feature_config).__name__}")
        _check_n_mels(self.model_config, self.feature_config)
        if not isinstance(self.provenance, dict):
            raise ValueError(f"provenance: expected a dict, found {type(self.provenance).__name__}")
        shapes = expected_weight_shapes(self.model_config)
        _check_name_set(set(shapes), set(self.weights), "weights")
        for name, shape in shapes.items():
            _validate_weight(name, self.weights[name], shape, self.model_config.block_shape,
                             sparse_capable(self.model_config))
        if self.model_config.kind == "fused":
            _check_fused_input_mask(self.dense("gru.W_in"), self.model_config.hidden_size)
            _check_fused_head_blocks(self)
        else:
            _check_input_mask(self.dense("gru.W_in"), self.model_config.hidden_size)
        if self.model_config.subscale_linear:
            _check_linear_mask(self.weights["subscale.linear.weight"], self.model_config)

    def to_sparse(self, names: Iterable[str] = SPARSE_CAPABLE, block: tuple[int, int] | None = None) -> "Model":
        """A new Model with the listed matrices in block-CSR layout (blocks of `block`, default the config's).

        A block other than model_config.block_shape becomes the new model's block_shape, and every matrix
        already sparse is repacked with it, since all block-sparse matrices of a model share one block shape.
        """
        names = tuple(names)
        capable = sparse_capable(self.model_config)
        unknown = sorted(set(names) - set(capable))
        if unknown:
            raise ValueError(f"to_sparse: {unknown} may not be block-sparse; expected names from {capable}")
        block = _check_pair("to_sparse", "block", tuple(block)) if block is not None \
            else self.model_config.block_shape
        config = dataclasses.replace(self.model_config, block_shape=block)
        weights = dict(self.weights)
        for name, w in self.weights.items():
            wants_block = name in names or isinstance(w, BlockSparseMatrix)
            if wants_block and not (isinstance(w, BlockSparseMatrix) and w.block == block):
                weights[name] = pack_block_sparse(self.dense(name), *block)
        return Model(config, self.feature_config, weights, dict(self.provenance))


def _check_n_mels(model_config: ModelConfig, feature_config: FeatureConfig) -> None:
    if model_config.n_mels != feature_config.n_mels:
        raise ValueError(f"n_mels: the model config expects {model_config.n_mels} mel bins but the feature config "
                         f"computes {feature_config.n_mels}")


def _check_name_set(expected: set[str], found: set[str], what: str) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise ValueError(f"{what}: expected exactly the names for this model config; "
                         f"missing {missing}, unexpected {unexpected}")


def _validate_weight(name: str, w: Any, shape: tuple[int, ...], block: tuple[int, int],
                     capable: tuple[str, ...] = SPARSE_CAPABLE) -> None:
    if isinstance(w, BlockSparseMatrix):
        if name not in capable:
            raise ValueError(f"{name}: expected a dense array (only {capable} may be block-sparse)")
        if tuple(w.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, found {tuple(w.shape)}")
        if tuple(w.block) != block:
            raise ValueError(f"{name}: expected the model config's block shape {block}, found {tuple(w.block)}")
        w.validate(name)
    else:
        _check_array(name, w, np.float32, shape)
        _check_finite(name, w)


def _check_input_mask(w_in: np.ndarray, hidden_size: int) -> None:
    rows = coarse_rows_of_gates(hidden_size)
    leaks = np.flatnonzero(w_in[rows, 2])
    if leaks.size:
        raise ValueError(f"gru.W_in: expected column 2 (c_t) to be zero in the coarse rows g*H + j, j < H/2, of "
                         f"every gate (docs/format.md §3), found {leaks.size} nonzero, first at row {rows[leaks[0]]}")


def _check_fused_input_mask(w_in: np.ndarray, hidden_size: int) -> None:
    leaks = np.argwhere(~fused.input_mask(hidden_size) & (w_in != 0))
    if leaks.size:
        row, col = leaks[0]
        raise ValueError(f"gru.W_in: expected zeros where a part of the fused state may not see a current nibble (part "
                         f"(s, j) sees nibbles m < j of its own sample only; docs/format.md §12), found {len(leaks)} "
                         f"nonzero, first at row {row}, column {col}")


def _check_fused_head_blocks(model: "Model") -> None:
    """Every head owns whole block rows of a block-sparse fused.O1 (K rows each) and fused.O2 (16 rows each)."""
    for name, rows in (("fused.O1", model.model_config.out_hidden), ("fused.O2", fused.NIBBLE_CLASSES)):
        w = model.weights[name]
        if isinstance(w, BlockSparseMatrix) and rows % w.block[0]:
            raise ValueError(f"{name}: a block-sparse head matrix needs a block height dividing each head's {rows} "
                             f"rows (docs/format.md §12), found blocks {w.block[0]}x{w.block[1]}")


def _check_linear_mask(w: np.ndarray, model_config: ModelConfig) -> None:
    outside = ~linear_estimate_mask(model_config.subscale_factor, model_config.subscale_horizon)
    leaks = np.argwhere(outside[..., None] & (w != 0))
    if leaks.size:
        s, d, z, _ = leaks[0]
        raise ValueError(f"subscale.linear.weight: expected zeros where sub-tensor s may not see sample (i - 1 + d, z) "
                         f"(z <= s at d = 0, z < s for d >= 1; docs/format.md §9), found {len(leaks)} nonzero, first "
                         f"at [s, d, z] = [{s}, {d}, {z}]")


# ---------------------------------------------------------------------------------------------------------
# The file (docs/format.md §8)
# ---------------------------------------------------------------------------------------------------------

def save_model(model: Model, path: str | os.PathLike) -> None:
    """Validate `model`, then write it to `path` atomically (temporary file in the same folder, then rename).

    On any failure the temporary file is removed and an existing file at `path` is left as it was.
    """
    from safetensors.numpy import save as st_save

    model.validate()
    tensors: dict[str, np.ndarray] = {}
    sparse_meta = {}
    for name, w in model.weights.items():
        if isinstance(w, BlockSparseMatrix):
            for part in SPARSE_PARTS:
                tensors[f"{name}.{part}"] = getattr(w, part)
            sparse_meta[name] = {"shape": list(w.shape), "block": list(w.block)}
        else:
            tensors[name] = np.ascontiguousarray(w)
    metadata = {
        "format": FORMAT_MAGIC,
        "format_version": str(FORMAT_VERSION),
        "model_config": model.model_config.to_json(),
        "feature_config": model.feature_config.to_json(),
        "sparse": json.dumps(sparse_meta, sort_keys=True),
        "provenance": json.dumps(model.provenance, sort_keys=True),
    }
    data = _canonical_header(st_save(tensors, metadata=metadata))
    with atomic_write(path) as fh:
        fh.write(data)


def _canonical_header(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted (the writer orders the metadata keys at
    random), so the same model always gives the same bytes. Offsets count from the end of the header, so the
    tensor data stays as it is; the header is padded with spaces to a multiple of 8 bytes, as the writer pads it."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data[8 + n:]


def load_model(path: str | os.PathLike) -> Model:
    """Read and fully validate a model file (docs/format.md §8). Every problem is a ValueError naming the file.

    A missing file raises FileNotFoundError. The returned model's arrays are read-only private copies.
    """
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        with safe_open(path, framework="np") as f:
            header = _read_header(f)
            model_config, feature_config, sparse, provenance = _parse_metadata(header[0])
            _check_tensor_headers(header[1], model_config, sparse)
            raw = {key: _owned_copy(f.get_tensor(key)) for key in header[1]}
        model = Model(model_config, feature_config, _assemble_weights(raw, model_config, sparse), provenance)
        model.validate()
    except FileNotFoundError:
        raise
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    except (SafetensorError, OSError) as exc:  # bad header, truncated file, not safetensors at all
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    return model


def _read_header(f) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...]]]]:
    """The metadata and, per tensor, its (safetensors dtype, shape): read before any tensor data is."""
    metadata = f.metadata()
    if metadata is None or metadata.get("format") != FORMAT_MAGIC:
        found = "no metadata" if metadata is None else f"format {metadata.get('format')!r}"
        raise ValueError(f"not a pywavernn model file: expected metadata format {FORMAT_MAGIC!r}, found {found}")
    tensors = {}
    for key in f.keys():
        info = f.get_slice(key)
        tensors[key] = (info.get_dtype(), tuple(info.get_shape()))
    return metadata, tensors


def _parse_json(metadata: dict[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except KeyError:
        raise ValueError(f"metadata: missing key {key!r}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"metadata {key!r}: expected JSON, found invalid JSON ({exc})") from None


def _parse_metadata(metadata: dict[str, str]) -> tuple[ModelConfig, FeatureConfig, dict, dict]:
    version_text = metadata.get("format_version")
    if version_text is None or not (version_text.isascii() and version_text.isdigit()):
        raise ValueError(f"metadata 'format_version': expected a positive integer, found {version_text!r}")
    version = int(version_text)
    if version > FORMAT_VERSION:
        raise ValueError(f"written by a newer pywavernn (format version {version} > {FORMAT_VERSION}); "
                         "upgrade pywavernn")
    if version < 1:
        raise ValueError(f"metadata 'format_version': expected 1..{FORMAT_VERSION}, found {version}")
    unknown = sorted(set(metadata) - _METADATA_KEYS)
    if unknown:
        raise ValueError(f"metadata: unexpected key(s) {unknown}; expected only {sorted(_METADATA_KEYS)}")
    model_config = ModelConfig.from_dict(_parse_json(metadata, "model_config"))
    feature_config = FeatureConfig.from_dict(_parse_json(metadata, "feature_config"))
    _check_n_mels(model_config, feature_config)
    provenance = _parse_json(metadata, "provenance") if "provenance" in metadata else {}
    if not isinstance(provenance, dict):
        raise ValueError(f"metadata 'provenance': expected a JSON object, found {type(provenance).__name__}")
    sparse = _parse_sparse_metadata(_parse_json(metadata, "sparse"), model_config)
    return model_config, feature_config, sparse, provenance


def _parse_sparse_metadata(sparse: Any, model_config: ModelConfig) -> dict[str, tuple[int, int]]:
    """{NAME: block} for each block-sparse matrix, checked against the names and shapes of §6."""
    if not isinstance(sparse, dict):
        raise ValueError(f"metadata 'sparse': expected a JSON object, found {type(sparse).__name__}")
    shapes = expected_weight_shapes(model_config)
    capable = sparse_capable(model_config)
    blocks = {}
    for name, entry in sparse.items():
        if name not in capable:
            raise ValueError(f"metadata 'sparse': {name!r} may not be block-sparse; expected names from "
                             f"{capable}")
        if not isinstance(entry, dict) or set(entry) != {"shape", "block"}:
            raise ValueError(f"metadata 'sparse' {name!r}: expected {{\"shape\": [M, N], \"block\": [BH, BW]}}, "
                             f"found {entry!r}")
        if not isinstance(entry["shape"], list) or tuple(entry["shape"]) != shapes[name]:
            raise ValueError(f"{name}: expected shape {shapes[name]}, found {entry['shape']!r} in metadata 'sparse'")
        if not isinstance(entry["block"], list):
            raise ValueError(f"{name}: expected block [BH, BW] in metadata 'sparse', found {entry['block']!r}")
        blocks[name] = _check_pair(name, "block", tuple(entry["block"]))
    return blocks


def _check_tensor_headers(tensors: dict[str, tuple[str, tuple[int, ...]]], model_config: ModelConfig,
                          sparse: dict[str, tuple[int, int]]) -> None:
    """Exact tensor names, dtypes and (where known without reading data) shapes, from the header alone."""
    expected: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    for name, shape in expected_weight_shapes(model_config).items():
        if name in sparse:
            (m, n), (bh, bw) = shape, sparse[name]
            if m % bh or n % bw:
                raise ValueError(f"{name}: expected block {bh}x{bw} to divide shape {m}x{n}")
            expected[f"{name}.row_ptr"] = ("I32", (m // bh + 1,))
            expected[f"{name}.col_idx"] = ("I32", None)  # (nnzb,): checked with values once read
            expected[f"{name}.values"] = ("F32", None)
        else:
            expected[name] = ("F32", shape)
    _check_name_set(set(expected), set(tensors), "tensors")
    for key, (dtype, shape) in expected.items():
        found_dtype, found_shape = tensors[key]
        if found_dtype != dtype:
            want = "float32" if dtype == "F32" else "int32"
            raise ValueError(f"{key}: expected dtype {want} ({dtype}), found {found_dtype}")
        if shape is not None and found_shape != shape:
            hint = ""
            if key == "gru.W_in" and found_shape[1:] != shape[1:]:
                hint = (" (4 columns, the 4th est(t), belong to a model with linear_order >= 1, 3 to one without; "
                        "docs/format.md §11)")
            raise ValueError(f"{key}: expected shape {shape}, found {found_shape}{hint}")


def _owned_copy(arr: np.ndarray) -> np.ndarray:
    out = np.array(arr, copy=True, order="C")
    out.setflags(write=False)
    return out


def _assemble_weights(raw: dict[str, np.ndarray], model_config: ModelConfig,
                      sparse: dict[str, tuple[int, int]]) -> dict[str, Weight]:
    """Weights by name; Model.validate then checks each block-sparse matrix against its metadata block."""
    weights: dict[str, Weight] = {}
    for name, shape in expected_weight_shapes(model_config).items():
        if name not in sparse:
            weights[name] = raw[name]
            continue
        weights[name] = BlockSparseMatrix(shape=shape, block=sparse[name], row_ptr=raw[f"{name}.row_ptr"],
                                          col_idx=raw[f"{name}.col_idx"], values=raw[f"{name}.values"])
    return weights


# ---------------------------------------------------------------------------------------------------------
# Summary for `pywavernn info`
# ---------------------------------------------------------------------------------------------------------

def describe(model: Model) -> str:
    """A human-readable summary: format version, configs, parameter count, per-matrix layout, provenance."""
    lines = [f"pywavernn model (format version {FORMAT_VERSION})", f"kind: {MODEL_KIND_NAMES[model.model_config.kind]}",
             "model config:"]
    lines += [f"  {k}: {v}" for k, v in model.model_config.to_dict().items()]
    lines.append("feature config:")
    lines += [f"  {k}: {v}" for k, v in model.feature_config.to_dict().items()]
    lines.append(f"parameters (stored weights): {model.n_parameters():,}")
    lines.append("weights:")
    sparsity = model.sparsity()
    width = max(len(name) for name in model.weights)
    for name, w in model.weights.items():
        shape = "x".join(str(d) for d in w.shape)
        if isinstance(w, BlockSparseMatrix):
            layout = (f"block-sparse {w.block[0]}x{w.block[1]}, {w.nnz_blocks} blocks, "
                      f"density {w.density:.3f}")
        else:
            layout = "dense"
        extra = f", sparsity {sparsity[name]:.3f}" if name in sparsity else ""
        lines.append(f"  {name:<{width}}  {shape:<12} {layout}{extra}")
    lines.append("provenance:" + ("" if model.provenance else " (none)"))
    lines += [f"  {k}: {json.dumps(v)}" for k, v in model.provenance.items()]
    return "\n".join(lines)
