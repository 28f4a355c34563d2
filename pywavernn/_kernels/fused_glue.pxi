# fused_glue.pxi: thin typed glue over c/fused_sampler.h, included at the end of _engine.pyx (it uses that module's
# _ptr, _table and KernelMatrix). Not the public API: pywavernn/engines/fused.py validates every input (model, g,
# uniforms / audio, state, output buffers: dtypes, shapes, C-contiguity, the step range) before calling in; the GIL
# is released around the loop. The model crosses into C once, as a FusedNet built with named fields.
from pywavernn._kernels.fused_sampler cimport (pwr_fused_net, pwr_fused_stream, pwr_fused_trace, pwr_fused_io,
                                               pwr_fused_run)


cdef class FusedNet:
    """A fused model as the C loop takes it (pwr_fused_net), built once per engine with named fields, keeping alive
    the KernelMatrix objects and arrays its pointers point into: R (3H, H), O1 (8K, P), O2 (128, K) KernelMatrix;
    w_in_t (11, 3H) (gru.W_in by half, transposed: c/fused_sampler.h), b_R (3H,), b1 (8K,), b2 (128,) C-contiguous
    float32 arrays (pywavernn/engines/fused.py has checked them all)."""
    cdef pwr_fused_net net
    cdef object _keep

    def __init__(self, *, int hidden, int out_hidden, int hop, KernelMatrix R, KernelMatrix O1, KernelMatrix O2,
                 w_in_t, b_R, b1, b2):
        self._keep = (R, O1, O2, w_in_t, b_R, b1, b2)
        self.net.H = hidden
        self.net.K = out_hidden
        self.net.hop = hop
        self.net.R = R.mat
        self.net.O1 = O1.mat
        self.net.O2 = O2.mat
        self.net.w_in_t = <const float *>_ptr(w_in_t)
        self.net.b_R = <const float *>_ptr(b_R)
        self.net.b1 = <const float *>_ptr(b1)
        self.net.b2 = <const float *>_ptr(b2)


def fused_run(FusedNet model, int isa, bint exact, int nthreads, g, int64_t g_first, int64_t T, int64_t t_first,
              uniforms, audio, out, nll, trace, h, int64_t[::1] st, int64_t n_end):
    """Steps [st[0], n_end) of pwr_fused_run; st = int64 [step, prev0, prev1] and h float32 (H,) updated in place.
    uniforms float32 (., 4) or None, audio int16 (.) or None, out int16 (.) or None, nll float64 (.) or None: rows
    from t_first; trace None or (h (., H) | None, logits (., 4, 16) | None, step int64 (.) | None)."""
    cdef const pwr_kernel_table *t = _table(isa)
    cdef pwr_fused_stream s
    cdef pwr_fused_trace tr
    cdef pwr_fused_io io
    s.h = <float *>_ptr(h)
    s.step = st[0]
    s.prev[0] = <int32_t>st[1]
    s.prev[1] = <int32_t>st[2]
    io.uniforms = <const float *>_ptr(uniforms) if uniforms is not None else NULL
    io.audio = <const int16_t *>_ptr(audio) if audio is not None else NULL
    io.out = <int16_t *>_ptr(out) if out is not None else NULL
    io.nll = <double *>_ptr(nll) if nll is not None else NULL
    io.trace = NULL
    if trace is not None:
        th, tl, ts = trace
        tr.h = <float *>_ptr(th) if th is not None else NULL
        tr.logits = <float *>_ptr(tl) if tl is not None else NULL
        tr.step = <int64_t *>_ptr(ts) if ts is not None else NULL
        io.trace = &tr
    cdef const float *gp = <const float *>_ptr(g)
    cdef int32_t g_rows = g.shape[0]
    cdef int rc
    with nogil:
        rc = pwr_fused_run(&model.net, t, exact, nthreads, gp, g_first, g_rows, T, t_first, &io, &s, n_end)
    if rc != 0:
        raise MemoryError("pywavernn: could not allocate the fused loop's scratch memory")
    st[0] = s.step
    st[1] = s.prev[0]
    st[2] = s.prev[1]


def gru_input_cols(int isa, w_t, int n_in, x, g0, g1, float a, gi, int H, int j0, int j1):
    """The fused loop's gate-input kernel (pwr_gru_input_cols_fn) on C-contiguous float32 arrays, unchecked (tests:
    w_t (>= n_in, 3H), x (>= n_in,), g0, g1, gi (3H,), 0 <= j0 <= j1 <= H)."""
    cdef const pwr_kernel_table *t = _table(isa)
    t.gru_input_cols(<const float *>_ptr(w_t), n_in, <const float *>_ptr(x), <const float *>_ptr(g0),
                     <const float *>_ptr(g1), a, <float *>_ptr(gi), H, j0, j1)
