"""Kernel-level tests: every C kernel on every ISA available here vs the generic C vs NumPy (float64 of the weights
the kernel multiplies by), over hypothesis-drawn shapes, densities, block shapes, storages and B; the fast
nonlinearities over a dense grid; and the Python wrapper's validation (malformed input never reaches C).

Run: pytest tests/test_kernels.py   (HYPOTHESIS_PROFILE=ci for the derandomized, fuller run)

Tolerance for a matrix product (why): each output is a sum of L = (terms in its row) + 1 (the bias) float32
products. Any summation order, with or without FMA, satisfies |fl(y) - y| <= gamma_L * sum |w||x| (+|b|) with
gamma_L ~ L * 2^-24 (Higham, Accuracy and Stability, §3.1); the reference is computed in float64 from the very
weights the kernel uses (fp16-rounded for fp16 storage), so that bound, with (L + 2) for slack, is the tolerance.
Two kernels both within it differ by at most twice it. Letters: M x N shape, BH x BW block, B right-hand sides.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pywavernn import kernels as K
from pywavernn.modelfile import BlockSparseMatrix, pack_block_sparse
from pywavernn.reference.plain import sample_from_logits_ref

_native = pytest.importorskip("pywavernn._native")
if not _native.available():  # pragma: no cover
    pytest.skip("compiled extension not built", allow_module_level=True)

ISAS = K.available_isas()
EPS32 = 2.0**-24
SHAPES = [None, (16, 1), (4, 4), (1, 1)]  # None = dense


def _matrix(seed: int, block, mb: int, nb: int, density: float, dense_n: int) -> np.ndarray | BlockSparseMatrix:
    """A random matrix: dense (16*mb, dense_n), or block-sparse (BH*mb, BW*nb) keeping each block w.p. density."""
    rng = np.random.default_rng(seed)
    if block is None:
        return rng.standard_normal((4 * mb + mb % 3, dense_n)).astype(np.float32)
    bh, bw = block
    w = rng.standard_normal((bh * mb, bw * nb)).astype(np.float32)
    keep = rng.random((mb, nb)) < density
    w *= np.kron(keep, np.ones((bh, bw), np.float32))
    return pack_block_sparse(w, bh, bw)


def _bound(wq: np.ndarray, x: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """gamma_(L+2) * (sum |w||x| + |b|) per output; x is (N,) or (N, B)."""
    terms = np.count_nonzero(wq, axis=1).max(initial=0) + 1
    mag = np.abs(wq.astype(np.float64)) @ np.abs(x.astype(np.float64))
    if bias is not None:
        mag = mag + np.abs(bias.astype(np.float64)).reshape((-1,) + (1,) * (x.ndim - 1))
    return (terms + 2) * EPS32 * mag + 1e-30


matrices = st.builds(
    _matrix,
    seed=st.integers(0, 2**32 - 1),
    block=st.sampled_from(SHAPES),
    mb=st.integers(1, 9),
    nb=st.integers(1, 40),
    density=st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)),
    dense_n=st.integers(1, 300),
)


@given(w=matrices, storage=st.sampled_from(["fp32", "fp16"]), with_bias=st.booleans(), seed=st.integers(0, 999))
def test_gemv_matches_numpy_and_generic(w, storage, with_bias, seed):
    km = K.KernelMatrix(w, storage)
    m, n = km.shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
    wq = km.weights_f32()
    ref = wq.astype(np.float64) @ x.astype(np.float64) + (0 if bias is None else bias)
    tol = _bound(wq, x, bias)
    generic = K.gemv(km, x, bias, isa="generic")
    assert np.all(np.abs(generic - ref) <= tol)
    for isa in ISAS:
        y = K.gemv(km, x, bias, isa=isa)
        assert np.all(np.abs(y - ref) <= tol), isa
        assert np.all(np.abs(y - generic) <= 2 * tol), isa


@given(w=matrices, storage=st.sampled_from(["fp32", "fp16"]), nrhs=st.integers(1, 16), with_bias=st.booleans(),
       seed=st.integers(0, 999))
def test_gemm_matches_numpy_and_generic(w, storage, nrhs, with_bias, seed):
    km = K.KernelMatrix(w, storage)
    m, n = km.shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((nrhs, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
    wq = km.weights_f32()
    ref = (wq.astype(np.float64) @ x.T.astype(np.float64) + (0 if bias is None else bias[:, None])).T
    tol = _bound(wq, x.T, bias).T
    generic = K.gemm(km, x, bias, isa="generic")
    for b in range(nrhs):  # the generic gemm is documented to equal gemv column by column, bit for bit
        np.testing.assert_array_equal(generic[b], K.gemv(km, x[b], bias, isa="generic"))
    for isa in ISAS:
        y = K.gemm(km, x, bias, isa=isa)
        assert np.all(np.abs(y - ref) <= tol), isa
        assert np.all(np.abs(y - generic) <= 2 * tol), isa


@pytest.mark.skipif(not {"avx2", "avx512"} <= set(ISAS),
                    reason=f"needs the avx2 and avx512 kernels, built and run by this CPU (available: {ISAS})")
@given(w=matrices, storage=st.sampled_from(["fp32", "fp16"]), nrhs=st.integers(1, 16), with_bias=st.booleans(),
       seed=st.integers(0, 999))
def test_avx512_copy_gives_the_avx2_bits(w, storage, nrhs, with_bias, seed):
    """The avx512 copy is the avx2 copy with 16-lane 16x1 kernels whose lanes run the avx2 lanes' operations
    (pwr_isa.h): every product, of every shape and storage, gemv and gemm, is the avx2 one bit for bit."""
    km = K.KernelMatrix(w, storage)
    m, n = km.shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((nrhs, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
    bits = lambda a: a.view(np.uint32)  # noqa: E731  (-0.0 vs 0.0 and NaN payloads count as different)
    np.testing.assert_array_equal(bits(K.gemm(km, x, bias, isa="avx512")), bits(K.gemm(km, x, bias, isa="avx2")))
    np.testing.assert_array_equal(bits(K.gemv(km, x[0], bias, isa="avx512")),
                                  bits(K.gemv(km, x[0], bias, isa="avx2")))


@given(w=matrices, storage=st.sampled_from(["fp32", "fp16"]), n_rows=st.integers(1, 20), data=st.data())
def test_gemm_reads_right_hand_sides_through_row_pointers(w, storage, n_rows, data):
    """The gemm takes one pointer per right-hand side (the subscale loop reads its GRU state and context rings in
    place): any rows of x, in any order, repeated or not, give bit for bit the gemm of those rows stacked."""
    km = K.KernelMatrix(w, storage)
    x = np.random.default_rng(n_rows).standard_normal((n_rows, km.shape[1])).astype(np.float32)
    rhs = data.draw(st.lists(st.integers(0, n_rows - 1), min_size=1, max_size=16))
    for isa in ("generic", *ISAS):
        np.testing.assert_array_equal(K.gemm(km, x, rhs=rhs, isa=isa), K.gemm(km, x[rhs], isa=isa))


@given(w=matrices, cut=st.tuples(st.floats(0, 1), st.floats(0, 1)), nrhs=st.integers(1, 16))
def test_row_range_touches_only_its_rows_and_matches_full_run(w, cut, nrhs):
    """Splitting rows (as threads do) gives bit-identical rows and never writes outside the range."""
    km = K.KernelMatrix(w)
    m, n = km.shape
    r0, r1 = sorted(int(c * km.n_block_rows) for c in cut)
    lo, hi = r0 * km.block[0], r1 * km.block[0]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n).astype(np.float32)
    xs = rng.standard_normal((nrhs, n)).astype(np.float32)
    for isa in ISAS:
        full = K.gemv(km, x, isa=isa)
        part = K.gemv(km, x, rows=(r0, r1), out=np.full(m, 7.0, np.float32), isa=isa)
        np.testing.assert_array_equal(part[lo:hi], full[lo:hi])
        assert np.all(part[:lo] == 7.0) and np.all(part[hi:] == 7.0)
        full = K.gemm(km, xs, isa=isa)
        part = K.gemm(km, xs, rows=(r0, r1), out=np.full((nrhs, m), 7.0, np.float32), isa=isa)
        np.testing.assert_array_equal(part[:, lo:hi], full[:, lo:hi])
        assert np.all(part[:, :lo] == 7.0) and np.all(part[:, hi:] == 7.0)


def test_fp16_storage_converts_every_finite_half_exactly():
    """An (M, 1) matrix times x = [1] returns its weights: every finite nonzero fp16 value, subnormals included,
    through the scalar conversion (dense) and the vector one (16x1 blocks: F16C on AVX2)."""
    halves = np.arange(2**16, dtype=np.uint16).view(np.float16)
    halves = halves[np.isfinite(halves) & (halves != 0)]  # 63,486 values; two more make 16 x 3,968
    w = np.concatenate([halves, [1.0, -1.0]]).astype(np.float32)[:, None].copy()
    for src in (w, pack_block_sparse(w, 16, 1)):
        km = K.KernelMatrix(src, "fp16")
        for isa in ISAS:
            np.testing.assert_array_equal(K.gemv(km, np.ones(1, np.float32), isa=isa), w[:, 0])


# --- nonlinearities and the gate update ------------------------------------------------------------------------

FAST_ABS_ERR = 1.5e-7  # sigmoid, tanh: max abs error bound stated in c/gru_isa.c (measured 8.9e-8)
FAST_EXP_REL_ERR = 1.5e-7  # exp on [-87, 88]: max relative error bound (measured 8.3e-8)


@pytest.mark.parametrize("isa", ISAS)
def test_fast_nonlinearities_max_error_on_dense_grid(isa):
    x = np.linspace(-30, 30, 2_000_001, dtype=np.float32)
    x64 = x.astype(np.float64)
    assert np.abs(K.fast_sigmoid(x, isa=isa) - 1 / (1 + np.exp(-x64))).max() <= FAST_ABS_ERR
    assert np.abs(K.fast_tanh(x, isa=isa) - np.tanh(x64)).max() <= FAST_ABS_ERR
    xe = np.linspace(-87, 88, 2_000_001, dtype=np.float32)
    ref = np.exp(xe.astype(np.float64))
    assert (np.abs(K.fast_exp(xe, isa=isa) - ref) / ref).max() <= FAST_EXP_REL_ERR
    extremes = np.array([-1e30, -100, -0.0, 0.0, 100, 1e30], np.float32)  # clamped, never inf or NaN
    np.testing.assert_allclose(K.fast_sigmoid(extremes, isa=isa), [0, 0, 0.5, 0.5, 1, 1], atol=1e-30)
    np.testing.assert_allclose(K.fast_tanh(extremes, isa=isa), [-1, -1, 0, 0, 1, 1], atol=1e-30)


def _gates_ref64(rh, gi, h):
    hidden = h.shape[0]
    rh, gi, h = (a.astype(np.float64) for a in (rh, gi, h))
    u = 1 / (1 + np.exp(-(gi[:hidden] + rh[:hidden])))
    r = 1 / (1 + np.exp(-(gi[hidden:2 * hidden] + rh[hidden:2 * hidden])))
    e = np.tanh(gi[2 * hidden:] + r * rh[2 * hidden:])
    return u * h + (1 - u) * e


@given(half=st.integers(1, 70), scale=st.sampled_from([0.1, 1.0, 10.0]), seed=st.integers(0, 2**32 - 1),
       cut=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_gru_gates_exact_and_fast(half, scale, seed, cut):
    hidden = 2 * half
    rng = np.random.default_rng(seed)
    rh, gi = (scale * rng.standard_normal(3 * hidden)).astype(np.float32), \
        (scale * rng.standard_normal(3 * hidden)).astype(np.float32)
    h0 = rng.uniform(-1, 1, hidden).astype(np.float32)
    ref = _gates_ref64(rh, gi, h0)
    j0, j1 = sorted(int(c * hidden) for c in cut)
    # Bound: each float32 op adds <= 1 ulp (6e-8 relative) on values <= 1 in magnitude; the r * rh_e product
    # carries |rh_e| * eps into tanh (derivative <= 1). Exact: ~8 ops; fast: + 2 x 1.5e-7 from sigmoid/tanh.
    tol_exact = 1e-6 + 2 * EPS32 * np.abs(rh[2 * hidden:]).max()
    for isa in ISAS:
        for exact, tol in ((True, tol_exact), (False, tol_exact + 4 * FAST_ABS_ERR)):
            h = h0.copy()
            K.gru_gates(rh, gi, h, units=(j0, j1), exact=exact, isa=isa)
            assert np.all(np.abs(h[j0:j1] - ref[j0:j1]) <= tol), (isa, exact)
            np.testing.assert_array_equal(h[:j0], h0[:j0])
            np.testing.assert_array_equal(h[j1:], h0[j1:])


# --- softmax sampling ------------------------------------------------------------------------------------------

def _near_tie(logits, u, k1, k2, rel):
    """True when the threshold u * cdf[255] lies within rel * cdf[255] of the cdf between the two answers."""
    p = np.exp(logits.astype(np.float64) - logits.max())
    cdf = np.cumsum(p)
    thr = u * cdf[-1]
    lo, hi = min(k1, k2), max(k1, k2)
    return np.abs(cdf[lo:hi] - thr).min(initial=np.inf) <= rel * cdf[-1]


@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.01, 1.0, 5.0, 30.0]),
       u=st.one_of(st.floats(0, 1, exclude_max=True, width=32), st.just(0.0), st.just(0.99999994)))
def test_sample_softmax_matches_reference(seed, scale, u):
    logits = (scale * np.random.default_rng(seed).standard_normal(256)).astype(np.float32)
    want = sample_from_logits_ref(logits, np.float32(u))
    for isa in ISAS:
        got = K.sample_softmax(logits, u, exact=True, isa=isa)
        assert got == want or _near_tie(logits, u, got, want, 1e-6), (isa, got, want)
        fast = K.sample_softmax(logits, u, exact=False, isa=isa)
        assert fast == want or _near_tie(logits, u, fast, want, 1e-5), (isa, fast, want)


def test_sample_softmax_edges():
    logits = np.full(256, -1e4, np.float32)
    logits[17] = 0.0  # all the mass on one class
    for isa in ISAS:
        for exact in (True, False):
            assert K.sample_softmax(logits, 0.0, exact=exact, isa=isa) == 17
            assert K.sample_softmax(logits, 0.9999999, exact=exact, isa=isa) == 17
        flat = np.zeros(256, np.float32)
        assert K.sample_softmax(flat, 0.0, isa=isa) == 0
        assert K.sample_softmax(flat, 0.5, isa=isa) == 128



@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 20), flat_row=st.booleans())
def test_sample_softmax_rows_is_the_one_row_draw_per_row(seed, n, flat_row):
    """The batched draw (the subscale loop's, 8 rows per AVX2 register) returns, row by row, exactly the class of
    the one-row kernel: same ISA, same mode, any row count (a partial last group of 8 included)."""
    rng = np.random.default_rng(seed)
    scales = rng.choice(np.array([0.01, 1.0, 5.0, 30.0, 200.0], np.float32), size=(n, 1))
    logits = (scales * rng.standard_normal((n, 256))).astype(np.float32)
    u = rng.random(n, dtype=np.float32)
    if n:
        u[0] = 0.0
        u[-1] = np.float32(0.99999994)
        if flat_row:
            logits[n // 2] = 0.0  # ties everywhere: the first index above the threshold must win
    for isa in ISAS:
        for exact in (True, False):
            got = K.sample_softmax_rows(logits, u, exact=exact, isa=isa)
            want = [K.sample_softmax(logits[r], float(u[r]), exact=exact, isa=isa) for r in range(n)]
            assert got.dtype == np.int32 and got.tolist() == want, (isa, exact)


def test_sample_softmax_rows_validation():
    with pytest.raises(TypeError, match=r"\(n, 256\)"):
        K.sample_softmax_rows(np.zeros(256, np.float32), np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="shape"):
        K.sample_softmax_rows(np.zeros((3, 256), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="finite"):
        K.sample_softmax_rows(np.full((2, 256), np.inf, np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        K.sample_softmax_rows(np.zeros((2, 256), np.float32), np.array([0.5, 1.0], np.float32))

@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 13), c=st.integers(0, 40), f=st.integers(0, 70),
       offset=st.integers(0, 5), special=st.booleans())
def test_frame_matmul_is_the_reference_bit_for_bit(seed, m, c, f, offset, special):
    """The conditioning network's compiled product gives the very bits of the NumPy definition
    (conditioning.frame_independent_matmul) on every ISA: any shape (the AVX2 copy's 4-row x 16/8-frame tiles and
    their row and frame tails), z a window of columns of a wider array (the convolution taps), values spanning
    many magnitudes, and IEEE specials (inf, NaN, -0) that must propagate as NumPy's do."""
    from pywavernn.conditioning import frame_independent_matmul

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((m, c)) * 10.0 ** rng.integers(-3, 4, size=(m, c))).astype(np.float32)
    wide = (rng.standard_normal((c, f + offset + 3)) * 10.0 ** rng.integers(-3, 4, size=(c, 1))).astype(np.float32)
    if special and c and f:
        wide[rng.integers(c), offset + rng.integers(f)] = rng.choice(np.array([np.inf, -np.inf, np.nan, -0.0],
                                                                               np.float32))
        w[rng.integers(m), rng.integers(c)] = -0.0
    z = wide[:, offset:offset + f]
    with np.errstate(invalid="ignore", over="ignore"):
        want = frame_independent_matmul(w, z)
        for isa in ISAS:
            got = K.frame_matmul(w, z, isa=isa)
            assert got.dtype == np.float32 and got.shape == (m, f)
            assert got.tobytes() == want.tobytes(), isa


def test_frame_matmul_frames_do_not_depend_on_the_window():
    """Frame j of a product over a window equals frame j over the whole sequence, bit for bit (what streaming
    relies on), for windows that put j in a vector tile, a frame tail, or alone."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((9, 37)).astype(np.float32)
    z = rng.standard_normal((37, 61)).astype(np.float32)
    for isa in ISAS:
        full = K.frame_matmul(w, z, isa=isa)
        for lo, hi in [(0, 61), (5, 22), (17, 18), (40, 61), (3, 11)]:
            assert K.frame_matmul(w, z[:, lo:hi], isa=isa).tobytes() == full[:, lo:hi].tobytes(), (isa, lo, hi)


def test_frame_matmul_validation():
    with pytest.raises(TypeError, match=r"float32 array \(M, C\)"):
        K.frame_matmul(np.zeros(3, np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match="float32"):
        K.frame_matmul(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float64))
    with pytest.raises(ValueError, match="3 rows"):
        K.frame_matmul(np.zeros((2, 3), np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.frame_matmul(np.zeros((3, 2), np.float32).T, np.zeros((3, 2), np.float32))
    w, zt = np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(6, dtype=np.float32).reshape(2, 3).T
    assert K.frame_matmul(w, zt).tolist() == (w @ zt).tolist()  # any other layout of z is copied, not misread
    assert K.frame_matmul(w, zt[:, ::-1]).tolist() == (w @ zt[:, ::-1]).tolist()
    assert K.frame_matmul(np.zeros((2, 0), np.float32), np.zeros((0, 5), np.float32)).tolist() == [[0.0] * 5] * 2

# --- validation at the Python edge -----------------------------------------------------------------------------

def _bsr():
    return pack_block_sparse(np.arange(1, 1 + 32 * 8, dtype=np.float32).reshape(32, 8), 16, 1)


def test_matrix_validation():
    good = _bsr()
    with pytest.raises(TypeError, match="float32"):
        K.KernelMatrix(np.zeros((4, 4), np.float64))
    with pytest.raises(TypeError):
        K.KernelMatrix([[1.0]])
    with pytest.raises(ValueError, match="storage"):
        K.KernelMatrix(good, "int8")
    with pytest.raises(ValueError, match="block shape"):
        K.KernelMatrix(pack_block_sparse(np.ones((4, 4), np.float32), 2, 2))
    with pytest.raises(ValueError, match="fp16"):
        K.KernelMatrix(np.full((2, 2), 1e6, np.float32), "fp16")
    bad_col = good.col_idx.copy()
    bad_col[3] = 99
    with pytest.raises(ValueError, match="col_idx"):
        K.KernelMatrix(BlockSparseMatrix(good.shape, good.block, good.row_ptr, bad_col, good.values))
    bad_ptr = good.row_ptr.copy()
    bad_ptr[1] = bad_ptr[2] + 1
    with pytest.raises(ValueError, match="row_ptr"):
        K.KernelMatrix(BlockSparseMatrix(good.shape, good.block, bad_ptr, good.col_idx, good.values))
    with pytest.raises(ValueError):
        K.KernelMatrix(BlockSparseMatrix(good.shape, good.block, good.row_ptr, good.col_idx, good.values[:-1]))
    with pytest.raises(ValueError):
        K.KernelMatrix(BlockSparseMatrix(good.shape, good.block, good.row_ptr.astype(np.int64), good.col_idx,
                                         good.values))


def test_call_validation():
    km = K.KernelMatrix(_bsr())
    x = np.ones(8, np.float32)
    with pytest.raises(TypeError, match="float32"):
        K.gemv(km, x.astype(np.float64))
    with pytest.raises(ValueError, match="shape"):
        K.gemv(km, np.ones(9, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.gemv(km, np.ones(16, np.float32)[::2])
    with pytest.raises(ValueError, match="shape"):
        K.gemv(km, x, bias=np.ones(31, np.float32))
    with pytest.raises(ValueError, match="start <= stop"):
        K.gemv(km, x, rows=(0, 3))
    with pytest.raises(ValueError, match="start <= stop"):
        K.gemv(km, x, rows=(2, 1))
    with pytest.raises(TypeError, match="integers"):
        K.gemv(km, x, rows=(0.5, 1))
    ro = np.zeros(32, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        K.gemv(km, x, out=ro)
    with pytest.raises(TypeError, match="KernelMatrix"):
        K.gemv(np.ones((32, 8), np.float32), x)
    with pytest.raises(ValueError, match="isa"):
        K.gemv(km, x, isa="altivec")  # a real ISA this package never builds
    with pytest.raises(ValueError, match="right-hand sides"):
        K.gemm(km, np.ones((17, 8), np.float32))
    with pytest.raises(ValueError, match="right-hand sides"):
        K.gemm(km, np.ones((0, 8), np.float32))
    with pytest.raises(TypeError):
        K.gemm(km, x)
    with pytest.raises(ValueError, match=r"rhs: expected row indices in \[0, 2\)"):
        K.gemm(km, np.ones((2, 8), np.float32), rhs=[0, 2])
    with pytest.raises(ValueError, match="right-hand sides"):
        K.gemm(km, np.ones((2, 8), np.float32), rhs=[0] * 17)
    with pytest.raises(TypeError, match="rhs"):
        K.gemm(km, np.ones((2, 8), np.float32), rhs=[0.5])
    with pytest.raises(ValueError, match="shape"):
        K.gru_gates(np.ones(12, np.float32), np.ones(11, np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match="overlap"):
        buf = np.ones(12, np.float32)
        K.gru_gates(buf, np.ones(12, np.float32), buf[:4])
    with pytest.raises(ValueError, match="finite"):
        K.sample_softmax(np.full(256, np.nan, np.float32), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        K.sample_softmax(np.zeros(256, np.float32), 1.0)
    with pytest.raises(TypeError):
        K.sample_softmax(np.zeros(256, np.float32), "0.5")


# --- exact mode: the operations of docs/format.md §3a, bit for bit ---------------------------------------------

@given(half=st.integers(1, 70), scale=st.sampled_from([0.01, 1.0, 10.0, 100.0]), seed=st.integers(0, 2**32 - 1))
def test_gru_gates_exact_is_the_reference_bit_for_bit(half, scale, seed):
    from pywavernn.reference.plain import gru_update_ref
    hidden = 2 * half
    rng = np.random.default_rng(seed)
    rh, gi = ((scale * rng.standard_normal(3 * hidden)).astype(np.float32) for _ in range(2))
    h0 = rng.uniform(-1, 1, hidden).astype(np.float32)
    want = gru_update_ref(h0, gi.reshape(3, hidden), rh.reshape(3, hidden))
    for isa in ISAS:
        h = h0.copy()
        K.gru_gates(rh, gi, h, exact=True, isa=isa)
        np.testing.assert_array_equal(h, want, err_msg=isa)


@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.01, 1.0, 5.0, 30.0]),
       u=st.one_of(st.floats(0, 1, exclude_max=True, width=32), st.just(0.0), st.just(0.99999994)))
def test_sample_softmax_exact_is_the_reference_draw(seed, scale, u):
    logits = (scale * np.random.default_rng(seed).standard_normal(256)).astype(np.float32)
    want = sample_from_logits_ref(logits, np.float32(u))
    rows = np.stack([logits] * 3)
    for isa in ISAS:
        assert K.sample_softmax(logits, u, exact=True, isa=isa) == want, isa
        assert list(K.sample_softmax_rows(rows, np.full(3, u, np.float32), exact=True, isa=isa)) == [want] * 3, isa
