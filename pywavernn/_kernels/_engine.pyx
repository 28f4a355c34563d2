# cython: language_level=3
"""pywavernn._kernels._engine: thin typed glue over the C code in c/: CPU introspection, the kernels of
c/pwr_kernels.h and the sampling loops of c/sampler.h, c/subscale_sampler.h (subscale_glue.pxi) and
c/fused_sampler.h (fused_glue.pxi); the GIL is released around every kernel call.

Not the public API: pywavernn/_native.py, kernels.py and engines/{cpu,subscale,fused}.py wrap this module and
validate every input first. A model's weights cross into C once, as a typed net object (WaveRNNNet, SubscaleNet,
FusedNet) built with named fields when its engine is made; every loop call then takes that object.
"""
from pywavernn._kernels.cpu_features cimport (pwr_isa_name, pwr_isa_built, pwr_isa_supported, pwr_best_isa,
                                              pwr_openmp_enabled, pwr_openmp_max_threads)

ISA_IDS = {"generic": 0, "avx2": 1, "neon": 2, "avx512": 3}


def isa_name(int isa):
    return pwr_isa_name(isa).decode("ascii")


def isa_built(int isa):
    return bool(pwr_isa_built(isa))


def isa_supported(int isa):
    return bool(pwr_isa_supported(isa))


def best_isa():
    return pwr_best_isa()


def openmp_enabled():
    return bool(pwr_openmp_enabled())


def openmp_max_threads():
    return pwr_openmp_max_threads()


# ------------------------------------------------------------------------------------------------------------
# Kernels (c/pwr_kernels.h). Every argument has been validated by pywavernn/kernels.py: arrays are C-contiguous
# with the dtype and shape the C preconditions require, and row ranges are in bounds.
# ------------------------------------------------------------------------------------------------------------
cimport numpy as cnp
from libc.stdint cimport int32_t
from pywavernn._kernels.pwr_kernels cimport (PWR_MAX_RHS, pwr_matrix, pwr_kernel_table, pwr_kernel_table_for,
                                             pwr_shape_of, pwr_map_fn)

cnp.import_array()

MAX_RHS = 16


cdef const pwr_kernel_table *_table(int isa) except NULL:
    cdef const pwr_kernel_table *t = pwr_kernel_table_for(isa)
    if t == NULL:
        raise ValueError(f"no kernels built for ISA id {isa}")
    return t


cdef inline void *_ptr(object arr):
    return cnp.PyArray_DATA(<cnp.ndarray>arr)


def shape_id(int bh, int bw, bint dense):
    return pwr_shape_of(bh, bw, dense)


cdef class KernelMatrix:
    """A pwr_matrix over NumPy arrays it keeps alive (dense (M, N) or block-CSR; values float32 or uint16 fp16)."""
    cdef pwr_matrix mat
    cdef object _keep

    def __init__(self, int m, int n, int bh, int bw, int shape, int storage, row_ptr, col_idx, values):
        self._keep = (row_ptr, col_idx, values)
        self.mat.m = m
        self.mat.n = n
        self.mat.bh = bh
        self.mat.bw = bw
        self.mat.shape = shape
        self.mat.storage = storage
        self.mat.row_ptr = <const int32_t *>_ptr(row_ptr) if row_ptr is not None else NULL
        self.mat.col_idx = <const int32_t *>_ptr(col_idx) if col_idx is not None else NULL
        self.mat.values = <const void *>_ptr(values)


def gemv(int isa, KernelMatrix w, x, bias, y, int r0, int r1):
    cdef const pwr_kernel_table *t = _table(isa)
    cdef const float *xp = <const float *>_ptr(x)
    cdef const float *bp = <const float *>_ptr(bias) if bias is not None else NULL
    cdef float *yp = <float *>_ptr(y)
    with nogil:
        t.gemv[w.mat.shape][w.mat.storage](&w.mat, xp, bp, yp, r0, r1)


def gemm(int isa, KernelMatrix w, x, rhs, bias, y, int r0, int r1):
    """Y = W x[rhs[b]] for b < len(rhs): x a C-contiguous (R, N) float32 array, rhs row indices in [0, R) (checked
    by pywavernn.kernels.gemm), 1 <= len(rhs) <= PWR_MAX_RHS."""
    cdef const pwr_kernel_table *t = _table(isa)
    cdef const float *xp = <const float *>_ptr(x)
    cdef const float *rows[PWR_MAX_RHS]
    cdef int nrhs = len(rhs)
    cdef Py_ssize_t n = w.mat.n
    for b in range(nrhs):
        rows[b] = xp + <Py_ssize_t>rhs[b] * n
    cdef const float *bp = <const float *>_ptr(bias) if bias is not None else NULL
    cdef float *yp = <float *>_ptr(y)
    with nogil:
        t.gemm[w.mat.shape][w.mat.storage](&w.mat, rows, nrhs, bp, yp, r0, r1)


def gru_gates(int isa, rh, gi, h, int H, int j0, int j1, bint exact):
    cdef const pwr_kernel_table *t = _table(isa)
    cdef const float *rp = <const float *>_ptr(rh)
    cdef const float *gp = <const float *>_ptr(gi)
    cdef float *hp = <float *>_ptr(h)
    with nogil:
        t.gru_gates(rp, gp, hp, H, j0, j1, exact)


def gru_input(int isa, w_in, x, g0, g1, float a, gi, int H, int j0, int j1):
    """The plain loop's gate-input kernel (pwr_gru_input_fn) on float32 arrays, unchecked: w_in (3H, n_in), x (n_in,)
    with n_in = 3 or 4 (docs/format.md §11)."""
    cdef const pwr_kernel_table *t = _table(isa)
    t.gru_input(<const float *>_ptr(w_in), <int32_t>w_in.shape[1], <const float *>_ptr(x), <const float *>_ptr(g0),
                <const float *>_ptr(g1), a, <float *>_ptr(gi), H, j0, j1)


def gru_input_t(int isa, w_in_t, x3, bint with_x2, g0, g1, float a, pq, bias, gi, int H, int j0, int j1):
    """The subscale loop's gate-input kernel (pwr_gru_input_t_fn) on float32 arrays, unchecked."""
    cdef const pwr_kernel_table *t = _table(isa)
    t.gru_input_t(<const float *>_ptr(w_in_t), <const float *>_ptr(x3), with_x2, <const float *>_ptr(g0),
                  <const float *>_ptr(g1), a, <const float *>_ptr(pq), <const float *>_ptr(bias), <float *>_ptr(gi),
                  H, j0, j1)


def fast_map(int isa, str which, x, y):
    cdef const pwr_kernel_table *t = _table(isa)
    cdef pwr_map_fn f
    if which == "sigmoid":
        f = t.fast_sigmoid
    elif which == "tanh":
        f = t.fast_tanh
    elif which == "exp":
        f = t.fast_exp
    else:
        raise ValueError(which)
    cdef const float *xp = <const float *>_ptr(x)
    cdef float *yp = <float *>_ptr(y)
    cdef int32_t n = x.shape[0]
    with nogil:
        f(xp, yp, n)


def sample_softmax(int isa, logits, float u, bint exact):
    cdef const pwr_kernel_table *t = _table(isa)
    cdef float scratch[256]
    return t.sample_softmax(<const float *>_ptr(logits), u, scratch, exact)


def sample_softmax_rows(int isa, logits, u, k, bint exact):
    """logits float32 (n, 256), u float32 (n,), k int32 (n,) out; all C-contiguous (pywavernn/kernels.py checks)."""
    cdef const pwr_kernel_table *t = _table(isa)
    cdef float scratch[8 * 256]
    cdef const float *lp = <const float *>_ptr(logits)
    cdef const float *up = <const float *>_ptr(u)
    cdef int32_t *kp = <int32_t *>_ptr(k)
    cdef int32_t n = logits.shape[0]
    with nogil:
        t.sample_softmax_rows(lp, n, up, 1, kp, scratch, exact)


def frame_matmul(int isa, w, z, y):
    """y (M, Fr) = w (M, C) @ z (C, Fr), frame-independent (c/pwr_kernels.h); float32, w and y C-contiguous, z with
    contiguous rows and any row stride (pywavernn/kernels.py checks)."""
    cdef const pwr_kernel_table *t = _table(isa)
    cdef const float *wp = <const float *>_ptr(w)
    cdef const float *zp = <const float *>_ptr(z)
    cdef float *yp = <float *>_ptr(y)
    cdef Py_ssize_t ldz = z.strides[0] // 4
    cdef int32_t M = w.shape[0], C = w.shape[1], Fr = z.shape[1]
    with nogil:
        t.frame_matmul(wp, zp, ldz, yp, M, C, Fr)


# ------------------------------------------------------------------------------------------------------------
# The sampling loop (c/sampler.h). pywavernn/engines/cpu.py has validated the model, g, uniforms / audio, the state and
# every output buffer (shapes, dtypes, C-contiguity, no sharing between the items of a batch).
# ------------------------------------------------------------------------------------------------------------
from libc.stdint cimport int16_t, int64_t
from libc.stdlib cimport malloc, free
from pywavernn._kernels.sampler cimport (pwr_wavernn, pwr_stream, pwr_trace, pwr_utterance, pwr_generate_traced,
                                         pwr_teacher_forced, pwr_generate_batch, pwr_set_test_handover,
                                         pwr_handover_count)


def _set_test_handover(int every):
    """Tests only (c/sampler.h): every > 0 forces the threaded loops' hand-over to thread 0 every `every` steps."""
    pwr_set_test_handover(every)


def handover_count():
    """Solo stretches begun in this process by the threaded loops (c/sampler.h: pwr_handover_count)."""
    return pwr_handover_count()


cdef class WaveRNNNet:
    """A plain model as the C loop takes it (pwr_wavernn), built once per engine with named fields, keeping alive
    the KernelMatrix objects and arrays its pointers point into. R, O1..O4: KernelMatrix; w_in (3H, 3) or (3H, 4)
    with linear prediction, b_R (3H,), b1, b3 (K,), b2, b4 (256,): C-contiguous float32 arrays. Linear prediction
    (docs/format.md §11): linear_order P, linear_weight (P,); prior (bool), prior_weight (2, K), prior_bias (2,)
    float32 (at least one element each; unread without linear prediction or a prior); mel_lpc (§13, needs P >= 1):
    every g passed holds rows of 3H + P, the frame's taps last. pywavernn/engines/cpu.py has checked them all."""
    cdef pwr_wavernn net
    cdef object _keep

    def __init__(self, *, int hidden, int out_hidden, int hop, KernelMatrix R, KernelMatrix O1, KernelMatrix O2,
                 KernelMatrix O3, KernelMatrix O4, w_in, b_R, b1, b2, b3, b4, int linear_order, linear_weight,
                 bint prior, prior_weight, prior_bias, bint mel_lpc=False):
        self._keep = (R, O1, O2, O3, O4, w_in, b_R, b1, b2, b3, b4, linear_weight, prior_weight, prior_bias)
        self.net.P = linear_order
        self.net.lpc = mel_lpc
        self.net.lin_w = <const float *>_ptr(linear_weight)
        self.net.prior = prior
        self.net.prior_w = <const float *>_ptr(prior_weight)
        self.net.prior_b = <const float *>_ptr(prior_bias)
        self.net.H = hidden
        self.net.K = out_hidden
        self.net.hop = hop
        self.net.R = R.mat
        self.net.O1 = O1.mat
        self.net.O2 = O2.mat
        self.net.O3 = O3.mat
        self.net.O4 = O4.mat
        self.net.w_in = <const float *>_ptr(w_in)
        self.net.b_R = <const float *>_ptr(b_R)
        self.net.b1 = <const float *>_ptr(b1)
        self.net.b2 = <const float *>_ptr(b2)
        self.net.b3 = <const float *>_ptr(b3)
        self.net.b4 = <const float *>_ptr(b4)


cdef void _load_state(pwr_stream *s, h, past, int64_t[::1] st):
    s.h = <float *>_ptr(h)
    s.past = <float *>_ptr(past)
    s.prev_c = <int32_t>st[0]
    s.prev_f = <int32_t>st[1]
    s.t = st[2]


cdef void _store_state(const pwr_stream *s, int64_t[::1] st):
    st[0] = s.prev_c
    st[1] = s.prev_f
    st[2] = s.t


cdef const pwr_trace *_fill_trace(pwr_trace *tr, trace):
    """trace = None or (lo, hi, h (hi-lo, H) | None, logits_c (hi-lo, 256) | None, logits_f | None)."""
    if trace is None:
        return NULL
    lo, hi, th, tc, tf = trace
    tr.lo = lo
    tr.hi = hi
    tr.h = <float *>_ptr(th) if th is not None else NULL
    tr.logits_c = <float *>_ptr(tc) if tc is not None else NULL
    tr.logits_f = <float *>_ptr(tf) if tf is not None else NULL
    return tr


def generate(WaveRNNNet model, int isa, bint exact, int nthreads, g, int n_frames, uniforms, h, past, state, out,
             trace=None):
    """state = int64 array [prev_c, prev_f, t] (updated); h float32 (H,) and past float32 (max(P, 1),) (updated);
    out int16 (n,); trace as in _fill_trace."""
    cdef const pwr_kernel_table *t = _table(isa)
    cdef pwr_stream s
    cdef pwr_trace tr
    _load_state(&s, h, past, state)
    cdef const pwr_trace *trp = _fill_trace(&tr, trace)
    cdef const float *gp = <const float *>_ptr(g)
    cdef const float *up = <const float *>_ptr(uniforms)
    cdef int16_t *op = <int16_t *>_ptr(out)
    cdef int64_t n = out.shape[0]
    cdef int rc
    with nogil:
        rc = pwr_generate_traced(&model.net, t, exact, nthreads, gp, n_frames, up, n, &s, op, trp)
    if rc != 0:
        raise MemoryError("pywavernn: could not allocate the sampling loop's scratch memory")
    _store_state(&s, state)


def teacher_forced(WaveRNNNet model, int isa, bint exact, int nthreads, g, int n_frames, audio, h, past, state, nll,
                   trace=None):
    """audio int16 (n,); nll float64 (n,) or None; h, past, state and trace as in generate."""
    cdef const pwr_kernel_table *t = _table(isa)
    cdef pwr_stream s
    cdef pwr_trace tr
    _load_state(&s, h, past, state)
    cdef const pwr_trace *trp = _fill_trace(&tr, trace)
    cdef const float *gp = <const float *>_ptr(g)
    cdef const int16_t *ap = <const int16_t *>_ptr(audio)
    cdef double *np_ = <double *>_ptr(nll) if nll is not None else NULL
    cdef int64_t n = audio.shape[0]
    cdef int rc
    with nogil:
        rc = pwr_teacher_forced(&model.net, t, exact, nthreads, gp, n_frames, ap, n, &s, np_, trp)
    if rc != 0:
        raise MemoryError("pywavernn: could not allocate the sampling loop's scratch memory")
    _store_state(&s, state)


def generate_batch(WaveRNNNet model, int isa, bint exact, int nthreads, list items):
    """items: list of (g, uniforms, h, past, state, out) as in generate, no two sharing h, past, state or out."""
    cdef const pwr_kernel_table *t = _table(isa)
    cdef int32_t n_items = len(items)
    cdef pwr_utterance *utt = <pwr_utterance *>malloc(sizeof(pwr_utterance) * max(n_items, 1))
    cdef pwr_stream *streams = <pwr_stream *>malloc(sizeof(pwr_stream) * max(n_items, 1))
    cdef int32_t k
    cdef int rc
    if utt == NULL or streams == NULL:
        free(utt)
        free(streams)
        raise MemoryError("pywavernn: could not allocate the batch descriptors")
    try:
        for k in range(n_items):
            g, uniforms, h, past, state, out = items[k]
            _load_state(&streams[k], h, past, state)
            utt[k].g = <const float *>_ptr(g)
            utt[k].n_frames = g.shape[0]
            utt[k].uniforms = <const float *>_ptr(uniforms)
            utt[k].n = out.shape[0]
            utt[k].s = &streams[k]
            utt[k].out = <int16_t *>_ptr(out)
        with nogil:
            rc = pwr_generate_batch(&model.net, t, exact, nthreads, utt, n_items)
        for k in range(n_items):  # an item that could not run left its stream unchanged
            _store_state(&streams[k], items[k][4])
    finally:
        free(utt)
        free(streams)
    if rc != 0:
        raise MemoryError("pywavernn: could not allocate the sampling loop's scratch memory for a batch item")


include "subscale_glue.pxi"
include "fused_glue.pxi"
