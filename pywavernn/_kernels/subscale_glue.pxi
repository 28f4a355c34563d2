# subscale_glue.pxi: thin typed glue over c/subscale_sampler.h, included at the end of _engine.pyx (it uses that
# module's _ptr, _table and KernelMatrix). Not the public API: pywavernn/engines/subscale.py validates every input
# (model, g, uniforms, output buffers: dtypes, shapes, C-contiguity) before calling in; the GIL is released around
# the loop.
from pywavernn._kernels.subscale_sampler cimport (pwr_subscale_net, pwr_subscale_trace, pwr_generate_subscale,
                                                  pwr_subscale_run, pwr_subscale_run_new, pwr_subscale_run_free,
                                                  pwr_subscale_run_next_step, pwr_subscale_advance)


cdef void _fill_subscale_net(pwr_subscale_net *net, tuple dims, tuple mats, tuple vecs, tuple ctx_mats,
                             tuple ctx_vecs) except *:
    cdef KernelMatrix m
    cdef int l
    (net.H, net.K, net.hop, net.B, net.F, net.Cx, net.D, net.prev_time, net.residual, net.context_lag, net.E,
     net.prior) = dims
    m = mats[0]; net.R = m.mat
    m = mats[1]; net.O1 = m.mat
    m = mats[2]; net.O2 = m.mat
    m = mats[3]; net.O3 = m.mat
    m = mats[4]; net.O4 = m.mat
    net.w_in_t = <const float *>_ptr(vecs[0])
    net.b_R = <const float *>_ptr(vecs[1])
    net.b1 = <const float *>_ptr(vecs[2])
    net.b2 = <const float *>_ptr(vecs[3])
    net.b3 = <const float *>_ptr(vecs[4])
    net.b4 = <const float *>_ptr(vecs[5])
    m = ctx_mats[0]; net.embed = m.mat
    m = ctx_mats[1]; net.proj = m.mat
    for l in range(net.D):
        m = ctx_mats[2 + 2 * l]; net.conv_prev[l] = m.mat
        m = ctx_mats[3 + 2 * l]; net.conv_cur[l] = m.mat
    net.embed_bias = <const float *>_ptr(ctx_vecs[0])
    net.conv_bias = <const float *>_ptr(ctx_vecs[1])
    net.proj_bias = <const float *>_ptr(ctx_vecs[2])
    net.lin_w = <const float *>_ptr(ctx_vecs[3])
    net.prior_w = <const float *>_ptr(ctx_vecs[4])
    net.prior_b = <const float *>_ptr(ctx_vecs[5])


cdef class SubscaleRun:
    """A resumable subscale generation (pwr_subscale_run): the weights it was made with (kept alive here) and the
    loop's state between calls of `advance`. Not thread-safe: one caller at a time."""
    cdef pwr_subscale_run *run
    cdef pwr_subscale_net net
    cdef object _keep

    def __cinit__(self, int nthreads, tuple dims, tuple mats, tuple vecs, tuple ctx_mats, tuple ctx_vecs):
        self.run = NULL
        _fill_subscale_net(&self.net, dims, mats, vecs, ctx_mats, ctx_vecs)
        self._keep = (mats, vecs, ctx_mats, ctx_vecs)
        self.run = pwr_subscale_run_new(&self.net, nthreads)
        if self.run == NULL:
            raise MemoryError("pywavernn: could not allocate the subscale loop's state")

    def __dealloc__(self):
        pwr_subscale_run_free(self.run)

    @property
    def next_step(self):
        return pwr_subscale_run_next_step(self.run)

    def advance(self, int isa, bint exact, g, int64_t g_first, int64_t g_end, int64_t T, uniforms, out,
                int64_t t_first, int64_t n_end):
        """Steps [next_step, n_end); the windows and T as pwr_subscale_advance (unchecked here: the caller,
        SubscaleEngine.run_steps in pywavernn/engines/subscale.py, guarantees them)."""
        cdef const pwr_kernel_table *t = _table(isa)
        cdef const float *gp = <const float *>_ptr(g)
        cdef const float *up = <const float *>_ptr(uniforms)
        cdef int16_t *op = <int16_t *>_ptr(out)
        with nogil:
            pwr_subscale_advance(self.run, &self.net, t, exact, gp, g_first, g_end, T, up, op, t_first, NULL,
                                 n_end)


def generate_subscale(int isa, bint exact, int nthreads, tuple dims, tuple mats, tuple vecs, tuple ctx_mats,
                      tuple ctx_vecs, g, int n_frames, uniforms, out, trace=None):
    """nthreads >= 1 (the team's size; the loop uses at most B); dims = (H, K, hop, B, F, C_x, D, prev_time,
    residual, context_lag, E, prior) (prev_time 1 for subscale_previous "time", residual 1 for subscale_residual,
    context_lag 1 for subscale_context_order "lag", E subscale_linear, prior 1 for subscale_prior "laplace"); mats = (R, O1, O2, O3, O4) KernelMatrix; vecs = (w_in_t (3, 3H), b_R, b1,
    b2, b3, b4) float32; ctx_mats = (embed, proj, conv_prev_0, conv_cur_0, ..., conv_prev_{D-1}, conv_cur_{D-1})
    KernelMatrix (dense fp32; proj (3H, C_x + E): subscale.proj.weight and subscale.linear.proj side by side);
    ctx_vecs = (embed_bias (B, C_x), conv_bias (D, B, C_x) (at least one element),
    proj_bias (B, 3H), lin_w (B, F + 2, B, E) (at least one element; unread when E = 0), prior_w (2, K),
    prior_b (2, B) (at least one element each; unread when prior = 0)); out int16 (T,); trace None or (h (T, H) | None, logits_c | None, logits_f | None, step int64
    (T,) | None)."""
    cdef const pwr_kernel_table *t = _table(isa)
    cdef pwr_subscale_net net
    cdef pwr_subscale_trace tr
    cdef const pwr_subscale_trace *trp = NULL
    _fill_subscale_net(&net, dims, mats, vecs, ctx_mats, ctx_vecs)
    if trace is not None:
        th, tc, tf, ts = trace
        tr.h = <float *>_ptr(th) if th is not None else NULL
        tr.logits_c = <float *>_ptr(tc) if tc is not None else NULL
        tr.logits_f = <float *>_ptr(tf) if tf is not None else NULL
        tr.step = <int64_t *>_ptr(ts) if ts is not None else NULL
        trp = &tr
    cdef const float *gp = <const float *>_ptr(g)
    cdef const float *up = <const float *>_ptr(uniforms)
    cdef int16_t *op = <int16_t *>_ptr(out)
    cdef int rc
    with nogil:
        rc = pwr_generate_subscale(&net, t, exact, nthreads, gp, n_frames, up, op, trp)
    if rc != 0:
        raise MemoryError("pywavernn: could not allocate the subscale loop's scratch memory")
