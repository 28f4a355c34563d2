# subscale_glue.pxi: thin typed glue over c/subscale_sampler.h, included at the end of _engine.pyx (it uses that
# module's _ptr, _table and KernelMatrix). Not the public API: pywavernn/engines/subscale.py validates every input
# (model, g, uniforms, output buffers: dtypes, shapes, C-contiguity) before calling in; the GIL is released around
# the loop. The model crosses into C once, as a SubscaleNet built with named fields when the engine is made.
from pywavernn._kernels.subscale_sampler cimport (PWR_SUBSCALE_MAX_LAYERS, pwr_subscale_net, pwr_subscale_trace,
                                                  pwr_generate_subscale,
                                                  pwr_subscale_run, pwr_subscale_run_new, pwr_subscale_run_free,
                                                  pwr_subscale_run_next_step, pwr_subscale_advance)


cdef class SubscaleNet:
    """A subscale model as the C loop takes it (pwr_subscale_net), built once per engine with named fields,
    keeping alive the KernelMatrix objects and arrays its pointers point into (pywavernn/engines/subscale.py has
    checked them all). The WaveRNN step: R, O1..O4 KernelMatrix; w_in_t (3, 3H), b_R, b1..b4 float32. The context
    network: embed, proj ((3H, C_x + E): subscale.proj.weight and subscale.linear.proj side by side) and the
    lists conv_prev, conv_cur (D each) KernelMatrix; embed_bias (B, C_x), conv_bias (D, B, C_x), proj_bias
    (B, 3H), linear_weight (B, F + 2, B, E), prior_weight (2, K), prior_bias (2, B) float32 (at least one element
    each; the last three unread without linear estimates or a prior). The switches: previous_time
    (subscale_previous "time"), context_lag (subscale_context_order "lag"),
    linear (E, subscale_linear), prior (subscale_prior "laplace")."""
    cdef pwr_subscale_net net
    cdef object _keep

    def __init__(self, *, int hidden, int out_hidden, int hop, int factor, int horizon, int channels, int layers,
                 bint previous_time, bint context_lag, int linear, bint prior,
                 KernelMatrix R, KernelMatrix O1, KernelMatrix O2, KernelMatrix O3, KernelMatrix O4,
                 w_in_t, b_R, b1, b2, b3, b4, KernelMatrix embed, KernelMatrix proj, list conv_prev, list conv_cur,
                 embed_bias, conv_bias, proj_bias, linear_weight, prior_weight, prior_bias):
        cdef KernelMatrix m
        cdef int l
        if not (0 <= layers <= PWR_SUBSCALE_MAX_LAYERS and len(conv_prev) == layers and len(conv_cur) == layers):
            raise ValueError(f"layers: expected 0 .. {PWR_SUBSCALE_MAX_LAYERS} with one conv_prev and conv_cur "
                             f"each, found {layers}, {len(conv_prev)}, {len(conv_cur)}")
        self._keep = (R, O1, O2, O3, O4, w_in_t, b_R, b1, b2, b3, b4, embed, proj, conv_prev, conv_cur, embed_bias,
                      conv_bias, proj_bias, linear_weight, prior_weight, prior_bias)
        self.net.H = hidden
        self.net.K = out_hidden
        self.net.hop = hop
        self.net.B = factor
        self.net.F = horizon
        self.net.Cx = channels
        self.net.D = layers
        self.net.prev_time = previous_time
        self.net.context_lag = context_lag
        self.net.E = linear
        self.net.prior = prior
        self.net.R = R.mat
        self.net.O1 = O1.mat
        self.net.O2 = O2.mat
        self.net.O3 = O3.mat
        self.net.O4 = O4.mat
        self.net.w_in_t = <const float *>_ptr(w_in_t)
        self.net.b_R = <const float *>_ptr(b_R)
        self.net.b1 = <const float *>_ptr(b1)
        self.net.b2 = <const float *>_ptr(b2)
        self.net.b3 = <const float *>_ptr(b3)
        self.net.b4 = <const float *>_ptr(b4)
        self.net.embed = embed.mat
        self.net.proj = proj.mat
        for l in range(layers):
            m = conv_prev[l]
            self.net.conv_prev[l] = m.mat
            m = conv_cur[l]
            self.net.conv_cur[l] = m.mat
        self.net.embed_bias = <const float *>_ptr(embed_bias)
        self.net.conv_bias = <const float *>_ptr(conv_bias)
        self.net.proj_bias = <const float *>_ptr(proj_bias)
        self.net.lin_w = <const float *>_ptr(linear_weight)
        self.net.prior_w = <const float *>_ptr(prior_weight)
        self.net.prior_b = <const float *>_ptr(prior_bias)


cdef class SubscaleRun:
    """A resumable subscale generation (pwr_subscale_run): the net it was made with (kept alive here) and the
    loop's state between calls of `advance`. Not thread-safe: one caller at a time."""
    cdef pwr_subscale_run *run
    cdef SubscaleNet model

    def __cinit__(self, SubscaleNet model, int nthreads):
        self.run = NULL
        self.model = model
        self.run = pwr_subscale_run_new(&model.net, nthreads)
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
            pwr_subscale_advance(self.run, &self.model.net, t, exact, gp, g_first, g_end, T, up, op, t_first, NULL,
                                 n_end)


def generate_subscale(SubscaleNet model, int isa, bint exact, int nthreads, g, int n_frames, uniforms, out,
                      trace=None):
    """nthreads >= 1 (the team's size; the loop uses at most B); g (F, 3H), uniforms (T, 2) float32; out int16 (T,);
    trace None or (h (T, H) | None, logits_c | None, logits_f | None, step int64 (T,) | None)."""
    cdef const pwr_kernel_table *t = _table(isa)
    cdef pwr_subscale_trace tr
    cdef const pwr_subscale_trace *trp = NULL
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
        rc = pwr_generate_subscale(&model.net, t, exact, nthreads, gp, n_frames, up, op, trp)
    if rc != 0:
        raise MemoryError("pywavernn: could not allocate the subscale loop's scratch memory")
