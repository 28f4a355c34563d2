"""The float32 operations every pywavernn backend computes alike: matrix-vector products and exp, sigmoid, tanh.

What it is: the definition-by-code of docs/format.md §3a, the one order of float32 operations that the NumPy
reference and the C engines in exact mode both follow, so that they give the same bits (and so the same samples)
on any model, trained or not. Each function is written as the sequence of IEEE float32 additions, subtractions,
multiplications, divisions and floors it stands for; NumPy performs each of those correctly rounded, as C does, so
the same sequence gives the same bits. Nothing here calls a library's exp or tanh, or BLAS: their results depend on
the library (NumPy's own SIMD exp, glibc's expf, a BLAS's blocking and FMA), which is what made exact mode and the
reference drift apart on a trained model (issue 25).
What it is not: fast. The C kernels (pywavernn/_kernels/c/: gemv_isa.c, fastmath.h) follow the same order with
vector registers across rows.

    from pywavernn.reference.ops import matvec_ref, sigmoid_ref, tanh_ref, exp_ref
    y = matvec_ref(w, x, bias)        # bias + w x, each row summed in increasing column order

Tests: `python -m pytest tests/test_reference.py tests/test_kernels.py -q` (accuracy against float64, the C kernels
bit for bit, and a trained model's samples in tests/test_exactness.py).
Letters: M x N a matrix, BH x BW a block shape, S the most entries a row keeps.
"""

from __future__ import annotations

import weakref

import numpy as np

from pywavernn.common import F32
from pywavernn.modelfile import BlockSparseMatrix

# --- matrix-vector products ---------------------------------------------------------------------------------------

def ordered_entries(w: np.ndarray | BlockSparseMatrix) -> tuple[np.ndarray | None, np.ndarray]:
    """The entries of each row of w in the order they are summed: (cols, weights), each (S, M).

    Row i's s-th entry is w[i, cols[s, i]] = weights[s, i]. A dense matrix keeps every column in increasing order
    (cols is None: column s, weights = w.T); a block-CSR one (docs/format.md §7) the columns of its stored blocks,
    block after block (block columns increase within a block row), each block's BW columns in increasing order:
    increasing column order over the kept columns either way. A row with fewer than S entries is padded with
    weight -0.0 on column N, an input fixed at 1 (matvec_ref appends it): the term -0.0 changes no float32 sum.
    Computed once per block-CSR matrix and kept while the matrix lives.
    """
    if not isinstance(w, BlockSparseMatrix):
        return None, w.T
    key = id(w)
    held = _ENTRIES.get(key)
    if held is None or held[0]() is not w:
        held = (weakref.ref(w, lambda _, k=key: _ENTRIES.pop(k, None)), _bsr_ordered_entries(w))
        _ENTRIES[key] = held
    return held[1]


_ENTRIES: dict[int, tuple] = {}  # id(matrix) -> (weak reference to it, its ordered_entries)


def _bsr_ordered_entries(w: BlockSparseMatrix) -> tuple[np.ndarray, np.ndarray]:
    n_rows, n_cols = w.shape
    bh, bw = w.block
    counts = np.diff(w.row_ptr).astype(np.int64)          # blocks per block row
    step = np.arange(int(counts.max(initial=0)) * bw)[:, None]  # (S, 1): entry s = block s // BW, column s % BW
    block_row = np.arange(n_rows) // bh                     # (M,) the block row of each row
    kept = step // bw < counts[block_row][None, :]          # (S, M)
    block = np.where(kept, w.row_ptr[block_row][None, :] + step // bw, 0)
    cols = np.where(kept, w.col_idx[block] * bw + step % bw, n_cols)
    weights = np.where(kept, w.values[block, (np.arange(n_rows) % bh)[None, :], step % bw], F32(-0.0))
    return cols, weights.astype(F32)


def matvec_ref(w: np.ndarray | BlockSparseMatrix, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """bias + w x in the one order of docs/format.md §3a: row i starts from bias[i] (or +0 without a bias) and adds
    its terms w[i, j] * x[j] in increasing column j over the kept columns, each product and each sum rounded to
    float32 (no fused multiply-add). w dense (M, N) float32 or a BlockSparseMatrix; x (N,) or (N, k) for k
    right-hand sides (each column computed alone, the same way); bias (M,) or None. Returns (M,) or (M, k).

    Written as a loop it is: y = start; for s: y = y + terms[s], step s adding the s-th term of every row at once.
    It runs as one np.add.reduce over the first axis of the stacked [start; terms] (S + 1, M, ...), which NumPy
    computes as that loop, row after row, elementwise (its pairwise summation applies only along a contiguous
    reduced axis; tests/test_reference.py checks it against the loop). k vectors are taken a slice of columns at a
    time, to bound the terms' memory.
    """
    n_rows, n_cols = w.shape
    if x.shape[0] != n_cols:
        raise ValueError(f"matvec_ref: matrix is {n_rows} x {n_cols}, vector has {x.shape[0]} rows")
    if x.ndim == 1:
        return _sum_in_order(w, x, bias)
    step = max(1, TERMS_MAX // max(1, n_rows * n_cols))  # right-hand sides per slice
    return np.concatenate([_sum_in_order(w, x[:, i:i + step], bias) for i in range(0, x.shape[1], step)], axis=1)


TERMS_MAX = 1 << 22  # floats of terms held at once (16 MiB)


def _sum_in_order(w: np.ndarray | BlockSparseMatrix, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    cols, weights = ordered_entries(w)
    extra = (Ellipsis,) + (None,) * (x.ndim - 1)  # weights (S, M) against inputs (S, M, ...)
    if cols is None:  # dense: term s of row i is w[i, s] * x[s]
        inputs = x[:, None]
    else:  # x with the padding's input 1 appended as column N
        inputs = np.concatenate([x, np.ones((1,) + x.shape[1:], F32)])[cols]
    out_shape = (w.shape[0],) + x.shape[1:]
    # [start; terms] in one C-ordered array, so that the first axis is the outer one of the reduction
    stacked = np.empty((weights.shape[0] + 1,) + out_shape, F32, order="C")
    stacked[0] = 0 if bias is None else bias.reshape((-1,) + (1,) * (x.ndim - 1))
    np.multiply(weights[extra], inputs, out=stacked[1:])
    return np.add.reduce(stacked, axis=0)


# --- nonlinearities -----------------------------------------------------------------------------------------------
# exp (Cephes expf's algorithm, constants of its float32 version): x = n ln2 + r with n = floor(x log2(e) + 1/2)
# and r reduced in two steps (ln2 = C1 - C2' split so n C1 is exact), exp(r) by a degree-7 form on |r| <= ln2/2,
# times 2^n built from exponent bits. Inputs above 88 are taken as 88 (exp(88) = 1.65e38, finite); below -87 the
# result is 0. Max relative error against float64 on [-87, 88]: 1.2e-7 (2 ulp); tests/test_reference.py.

EXP_HI, EXP_LO = F32(88.0), F32(-87.0)
LOG2E = F32(1.44269504088896341)
EXP_C1, EXP_C2 = F32(0.693359375), F32(-2.12194440e-4)
EXP_P = tuple(F32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                               1.6666665459e-1, 5.0000001201e-1))
# tanh: for |x| < 0.625 Cephes tanhf's odd polynomial x + x^3 P(x^2); above, (1 - t) / (1 + t) with t = exp(-2|x|)
# (no cancellation there: t <= 0.29), the sign put back. Max error against float64: 1.8e-7 relative (tests).
TANH_SMALL = F32(0.625)
TANH_P = tuple(F32(c) for c in (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
                                -3.33332819422e-1))


def exp_ref(x: np.ndarray) -> np.ndarray:
    """exp of float32 x, elementwise, by the float32 operations of docs/format.md §3a (C: pwr_exp in fastmath.h)."""
    x = np.asarray(x, dtype=F32)
    v = np.minimum(np.maximum(x, EXP_LO), EXP_HI)        # C: x > 88 ? 88 : x (and below -87 the result is 0)
    n = np.floor(v * LOG2E + F32(0.5))
    r = v - n * EXP_C1
    r = r - n * EXP_C2
    z = r * r
    p = EXP_P[0]
    for c in EXP_P[1:]:
        p = p * r + c
    y = (p * z + r) + F32(1)
    two_n = ((n.astype(np.int32) + 127) << 23).view(F32)  # 2^n exactly: n is in [-126, 127] here
    return np.where(x < EXP_LO, F32(0), y * two_n).astype(F32)


def sigmoid_ref(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) with exp_ref."""
    return F32(1) / (F32(1) + exp_ref(-np.asarray(x, dtype=F32)))


def tanh_ref(x: np.ndarray) -> np.ndarray:
    """tanh of float32 x, elementwise, by the float32 operations of docs/format.md §3a (C: pwr_tanh)."""
    x = np.asarray(x, dtype=F32)
    a = np.abs(x)
    z = x * x
    p = TANH_P[0]
    for c in TANH_P[1:]:
        p = p * z + c
    small = (p * z) * x + x
    t = exp_ref(F32(-2) * a)
    large = (F32(1) - t) / (F32(1) + t)
    large = np.where(x < F32(0), -large, large)
    return np.where(a < TANH_SMALL, small, large).astype(F32)
