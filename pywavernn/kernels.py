"""Thin, validating Python access to pywavernn's C kernels (c/pwr_kernels.h), one call per kernel.

What it is: the edge where inputs are checked (dtype, contiguity, shape, block-CSR layout, row ranges) before any
compiled code sees them; every failure is a TypeError (wrong type or dtype) or ValueError (wrong shape, layout or
range) saying what was expected and what was found. Used by the tests, the benchmarks and pywavernn/engines/cpu.py.
What it is not: fast per call (Python overhead is microseconds) and not the per-sample loop (that is engines/cpu.py,
which runs entirely in C).

    from pywavernn import kernels
    from pywavernn.modelfile import pack_block_sparse
    w = kernels.KernelMatrix(pack_block_sparse(dense, 16, 1), storage="fp16")
    y = kernels.gemv(w, x)                      # (M,) = W x
    Y = kernels.gemm(w, X)                      # X (B, N) -> Y (B, M): B right-hand sides, each contiguous
    k = kernels.sample_softmax(logits, u)       # docs/format.md §4
    y = kernels.frame_matmul(w, z)              # (M, C) @ (C, F), bit-identical to the NumPy reference (§2)

Letters: M x N matrix shape, BH x BW block shape, B right-hand sides (1..16), H hidden units.
`isa=None` means the ISA pywavernn selected (pywavernn.selected_isa()); a name forces one that is built and
supported (see available_isas()).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pywavernn import _native
from pywavernn.common import N_CLASSES, check_f32, describe
from pywavernn.modelfile import BlockSparseMatrix

STORAGES = {"fp32": 0, "fp16": 1}
BLOCK_SHAPES = ((16, 1), (4, 4), (1, 1))  # block shapes with kernels of their own (plus dense)
MAX_RHS = 16


def available_isas() -> tuple[str, ...]:
    """Names of the ISAs whose kernels are built and that this CPU runs, generic first."""
    eng = _native.engine()
    return tuple(name for name, i in sorted(eng.ISA_IDS.items(), key=lambda kv: kv[1])
                 if eng.isa_built(i) and eng.isa_supported(i))


def isa_id(isa: str | None) -> int:
    if isa is None:
        return _native.selected_isa_id()
    eng = _native.engine()
    if not isinstance(isa, str) or isa not in available_isas():
        raise ValueError(f"isa: expected one of {available_isas()} (built and supported here), found {isa!r}")
    return eng.ISA_IDS[isa]


def _check_range(name: str, rng: Any, limit: int, unit: str) -> tuple[int, int]:
    if rng is None:
        return 0, limit
    try:
        r0, r1 = (int(v) for v in rng)
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in rng)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TypeError(f"{name}: expected a pair of integers (start, stop) in {unit}, found {rng!r}")
    if not 0 <= r0 <= r1 <= limit:
        raise ValueError(f"{name}: expected 0 <= start <= stop <= {limit} ({unit}), found ({r0}, {r1})")
    return r0, r1


def frozen_copy(a: np.ndarray) -> np.ndarray:
    """A private, C-contiguous, read-only copy of `a` (what compiled code may keep pointers into)."""
    c = np.array(a, copy=True, order="C")
    c.flags.writeable = False
    return c


class KernelMatrix:
    """A weight matrix prepared for the C kernels: dense (M, N) float32 or a validated BlockSparseMatrix, with
    values stored as fp32 or fp16 (IEEE binary16; arithmetic stays fp32). Immutable and shareable between threads.

    Attributes: shape (M, N), block (BH, BW) ((1, N) when dense), dense, storage, n_block_rows, nnz (stored
    weights), row_ptr (block-CSR only; for work splitting) and native (the compiled matrix the C loops take).
    """

    def __init__(self, w: np.ndarray | BlockSparseMatrix, storage: str = "fp32"):
        if storage not in STORAGES:
            raise ValueError(f"storage: expected one of {sorted(STORAGES)}, found {storage!r}")
        eng = _native.engine()
        self.storage = storage
        if isinstance(w, BlockSparseMatrix):
            # Private read-only copies, validated after copying: the C kernels index with them, so nothing the
            # caller later does to its own arrays can make a kernel read out of bounds.
            w = BlockSparseMatrix(tuple(w.shape), tuple(w.block), frozen_copy(w.row_ptr), frozen_copy(w.col_idx),
                                  frozen_copy(w.values))
            w.validate("KernelMatrix")
            if tuple(w.block) not in BLOCK_SHAPES:
                raise ValueError(f"KernelMatrix: expected a block shape in {BLOCK_SHAPES} (or a dense matrix), "
                                 f"found {tuple(w.block)}")
            self.dense = False
            self.shape, self.block = tuple(w.shape), tuple(w.block)
            self.row_ptr, self.col_idx = w.row_ptr, w.col_idx
            values = w.values
        elif isinstance(w, np.ndarray):
            if w.dtype != np.float32 or w.ndim != 2 or 0 in w.shape:
                raise TypeError(f"KernelMatrix: expected a non-empty 2-D float32 array or a BlockSparseMatrix, "
                                f"found {describe(w)}")
            self.dense = True
            self.shape, self.block = tuple(w.shape), (1, int(w.shape[1]))
            self.row_ptr = self.col_idx = None
            values = frozen_copy(w)
        else:
            raise TypeError(f"KernelMatrix: expected a float32 numpy array or a BlockSparseMatrix, found {describe(w)}")
        if max(self.shape) >= 2**31 or values.size >= 2**62:
            raise ValueError(f"KernelMatrix: shape {self.shape} is too large for the kernels' int32 indices")
        if storage == "fp16":
            with np.errstate(over="ignore"):
                half = values.astype(np.float16)
            if not np.isfinite(half).all():
                raise ValueError("KernelMatrix: a weight overflows fp16 storage (|w| > 65504); use storage='fp32'")
            self.values = np.ascontiguousarray(half).view(np.uint16)
        else:
            self.values = np.ascontiguousarray(values, dtype=np.float32)
        self.n_block_rows = self.shape[0] // self.block[0]
        self.nnz = int(self.values.size)
        self.shape_id = eng.shape_id(self.block[0], self.block[1], self.dense)
        self.native = eng.KernelMatrix(self.shape[0], self.shape[1], self.block[0], self.block[1], self.shape_id,
                                       STORAGES[storage], self.row_ptr, self.col_idx, self.values)

    def weights_f32(self) -> np.ndarray:
        """The dense float32 matrix the kernels multiply by (fp16 storage rounded), for tests and benchmarks."""
        vals = self.values.view(np.float16).astype(np.float32) if self.storage == "fp16" else self.values
        if self.dense:
            return vals.reshape(self.shape).copy()
        (m, n), (bh, bw) = self.shape, self.block
        out = np.zeros((m // bh, bh, n // bw, bw), np.float32)
        block_row = np.repeat(np.arange(m // bh), np.diff(self.row_ptr))
        out[block_row, :, self.col_idx, :] = vals
        return out.reshape(m, n)

    def __repr__(self) -> str:
        kind = "dense" if self.dense else f"bsr {self.block[0]}x{self.block[1]}"
        return f"KernelMatrix({self.shape[0]}x{self.shape[1]}, {kind}, {self.storage}, nnz={self.nnz})"


def _check_matrix(w: Any) -> KernelMatrix:
    if not isinstance(w, KernelMatrix):
        raise TypeError(f"w: expected a pywavernn.kernels.KernelMatrix, found {type(w).__name__}")
    return w


def gemv(w: KernelMatrix, x: np.ndarray, bias: np.ndarray | None = None, *, rows: tuple[int, int] | None = None,
         out: np.ndarray | None = None, isa: str | None = None) -> np.ndarray:
    """y = W x (+ bias) over block rows `rows` = (r0, r1) (default all); other rows of `out` are left untouched.

    x float32 (N,), bias float32 (M,) or None, out float32 (M,) or None (a new zero array). Returns out.
    """
    w = _check_matrix(w)
    m, n = w.shape
    x = check_f32("x", x, (n,))
    if bias is not None:
        bias = check_f32("bias", bias, (m,))
    out = np.zeros(m, np.float32) if out is None else check_f32("out", out, (m,), writable=True)
    if np.shares_memory(out, x):
        raise ValueError("out: expected an array that does not overlap x")
    r0, r1 = _check_range("rows", rows, w.n_block_rows, f"block rows of {w.block[0]}")
    _native.engine().gemv(isa_id(isa), w.native, x, bias, out, r0, r1)
    return out


def gemm(w: KernelMatrix, x: np.ndarray, bias: np.ndarray | None = None, *, rows: tuple[int, int] | None = None,
         out: np.ndarray | None = None, rhs=None, isa: str | None = None) -> np.ndarray:
    """Y = (W X^T)^T (+ bias): X float32 (B, N) holds B right-hand sides (1 <= B <= 16), each contiguous; returns
    Y float32 (B, M), row b = W X[b] (+ bias). `rows` and `out` as in gemv.

    rhs: None, or a sequence of B row indices of x (any order, repeats allowed; then x may have any number of
    rows): row b of Y is W x[rhs[b]], read in place through the kernel's row pointers, as the subscale loop reads
    its GRU state and context rings."""
    w = _check_matrix(w)
    m, n = w.shape
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise TypeError(f"x: expected a 2-D float32 array (B, {n}), found {describe(x)}")
    x = check_f32("x", x, (x.shape[0], n))
    if rhs is None:
        rhs = range(x.shape[0])
    else:
        idx = np.asarray(rhs)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"rhs: expected a 1-D sequence of row indices of x, found {describe(rhs)}")
        if idx.size and not (0 <= idx.min() and idx.max() < x.shape[0]):
            raise ValueError(f"rhs: expected row indices in [0, {x.shape[0]}), found {idx.min()}..{idx.max()}")
        rhs = [int(i) for i in idx]
    nrhs = len(rhs)
    if not 1 <= nrhs <= MAX_RHS:
        raise ValueError(f"x: expected 1 <= B <= {MAX_RHS} right-hand sides (rows of x), found {nrhs}")
    if bias is not None:
        bias = check_f32("bias", bias, (m,))
    out = np.zeros((nrhs, m), np.float32) if out is None else check_f32("out", out, (nrhs, m), writable=True)
    if np.shares_memory(out, x):
        raise ValueError("out: expected an array that does not overlap x")
    r0, r1 = _check_range("rows", rows, w.n_block_rows, f"block rows of {w.block[0]}")
    _native.engine().gemm(isa_id(isa), w.native, x, rhs, bias, out, r0, r1)
    return out


def gru_gates(rh: np.ndarray, gi: np.ndarray, h: np.ndarray, *, units: tuple[int, int] | None = None,
              exact: bool = False, isa: str | None = None) -> np.ndarray:
    """The fused gate update of docs/format.md §3 for hidden units `units` = (j0, j1) (default all), in place on h.

    rh = R h + b_R and gi = W_in x + cond, float32 (3H,) ordered [u | r | e]; h float32 (H,), writable. exact=True
    uses the sigmoid and tanh of docs/format.md §3a (pywavernn.reference.ops), False the fast approximations (errors
    stated in c/fastmath.h). Returns h.
    """
    if not isinstance(h, np.ndarray) or h.ndim != 1:
        raise TypeError(f"h: expected a 1-D float32 array (H,), found {describe(h)}")
    hidden = h.shape[0]
    h = check_f32("h", h, (hidden,), writable=True)
    rh = check_f32("rh", rh, (3 * hidden,))
    gi = check_f32("gi", gi, (3 * hidden,))
    if np.shares_memory(h, rh) or np.shares_memory(h, gi):
        raise ValueError("h: expected an array that does not overlap rh or gi")
    j0, j1 = _check_range("units", units, hidden, "hidden units")
    _native.engine().gru_gates(isa_id(isa), rh, gi, h, hidden, j0, j1, bool(exact))
    return h


def _fast_map(which: str, x: np.ndarray, isa: str | None) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 1:
        raise TypeError(f"x: expected a 1-D float32 array, found {describe(x)}")
    x = check_f32("x", x, x.shape)
    if x.shape[0] >= 2**31:
        raise ValueError(f"x: expected fewer than 2**31 elements, found {x.shape[0]}")
    y = np.empty_like(x)
    _native.engine().fast_map(isa_id(isa), which, x, y)
    return y


def fast_sigmoid(x: np.ndarray, isa: str | None = None) -> np.ndarray:
    """The fast sigmoid the kernels use in non-exact mode, elementwise over a 1-D float32 array."""
    return _fast_map("sigmoid", x, isa)


def fast_tanh(x: np.ndarray, isa: str | None = None) -> np.ndarray:
    """The fast tanh the kernels use in non-exact mode."""
    return _fast_map("tanh", x, isa)


def fast_exp(x: np.ndarray, isa: str | None = None) -> np.ndarray:
    """The fast exp (softmax sampling in non-exact mode)."""
    return _fast_map("exp", x, isa)


def sample_softmax(logits: np.ndarray, u: float, *, exact: bool = True, isa: str | None = None) -> int:
    """docs/format.md §4: the first k with cdf[k] > u * cdf[255] (255 if none), cdf = float32 running sum of
    exp(l - max l). logits float32 (256,), finite; u in [0, 1)."""
    logits = check_f32("logits", logits, (N_CLASSES,))
    if not np.isfinite(logits).all():
        raise ValueError("logits: expected finite values")
    if isinstance(u, bool) or not isinstance(u, (float, int, np.floating, np.integer)):
        raise TypeError(f"u: expected a float in [0, 1), found {type(u).__name__}")
    u32 = np.float32(u)
    if not 0.0 <= u32 < 1.0:
        raise ValueError(f"u: expected a float in [0, 1) (as float32), found {u!r}")
    return int(_native.engine().sample_softmax(isa_id(isa), logits, float(u32), bool(exact)))


def sample_softmax_rows(logits: np.ndarray, u: np.ndarray, *, exact: bool = True, isa: str | None = None) -> np.ndarray:
    """sample_softmax for each row at once: k[r] = sample_softmax(logits[r], u[r]) as int32 (n,). logits float32
    (n, 256), finite; u float32 (n,) in [0, 1). The subscale loop's draw for its B streams (the AVX2 copy runs 8
    rows in parallel lanes with the one-row kernel's float32 operations, so the classes are the same)."""
    if not isinstance(logits, np.ndarray) or logits.ndim != 2:
        raise TypeError(f"logits: expected a float32 array (n, {N_CLASSES}), found {describe(logits)}")
    logits = check_f32("logits", logits, (logits.shape[0], N_CLASSES))
    if not np.isfinite(logits).all():
        raise ValueError("logits: expected finite values")
    u = check_f32("u", u, (logits.shape[0],))
    if not (np.all(u >= 0) and np.all(u < 1)):  # also rejects NaN
        raise ValueError("u: expected values in [0, 1)")
    k = np.empty(logits.shape[0], np.int32)
    _native.engine().sample_softmax_rows(isa_id(isa), logits, u, k, bool(exact))
    return k


def frame_matmul(w: np.ndarray, z: np.ndarray, isa: str | None = None) -> np.ndarray:
    """w (M, C) @ z (C, F) as float32 (M, F), bit-identical to pywavernn.conditioning.frame_independent_matmul: each
    element summed over c = 0, 1, ... from zero, a rounded multiply and a rounded add per term, so frame f's value
    does not depend on the other frames. The conditioning network's products (pywavernn.conditioning.conditioning).
    w must be C-contiguous; z may be a view with contiguous rows (e.g. a window of columns of a larger array),
    other layouts are copied first."""
    if not isinstance(w, np.ndarray) or w.ndim != 2:
        raise TypeError(f"w: expected a float32 array (M, C), found {describe(w)}")
    w = check_f32("w", w, w.shape)
    if not isinstance(z, np.ndarray) or z.dtype != np.float32 or z.ndim != 2:
        raise TypeError(f"z: expected a float32 array ({w.shape[1]}, F), found {describe(z)}")
    if z.shape[0] != w.shape[1]:
        raise ValueError(f"z: expected {w.shape[1]} rows (w has {w.shape[1]} columns), found {z.shape[0]}")
    if z.size and (z.strides[1] != 4 or z.strides[0] % 4 or z.strides[0] < 4 * z.shape[1]):
        z = np.ascontiguousarray(z)  # the kernel reads rows of contiguous floats at a non-negative row stride
    if max(w.shape[0], w.shape[1], z.shape[1]) > np.iinfo(np.int32).max:
        raise ValueError(f"frame_matmul: dimensions must fit int32, found w {w.shape}, z {z.shape}")
    y = np.empty((w.shape[0], z.shape[1]), np.float32)
    if y.size and w.shape[1]:
        _native.engine().frame_matmul(isa_id(isa), w, z, y)
    else:
        y.fill(0.0)
    return y
