# Declarations of c/subscale_sampler.h (the Subscale WaveRNN generation loop, docs/format.md §9).
from libc.stdint cimport int16_t, int32_t, int64_t
from pywavernn._kernels.pwr_kernels cimport pwr_matrix, pwr_kernel_table

cdef extern from "subscale_sampler.h" nogil:
    enum: PWR_SUBSCALE_MAX_LAYERS
    ctypedef struct pwr_subscale_net:
        int32_t H, K, hop, B, F, Cx, D, prev_time, context_lag, E
        pwr_matrix R, O1, O2, O3, O4
        const float *w_in_t
        const float *b_R
        const float *b1
        const float *b2
        const float *b3
        const float *b4
        pwr_matrix embed
        pwr_matrix conv_prev[16]
        pwr_matrix conv_cur[16]
        pwr_matrix proj
        const float *embed_bias
        const float *conv_bias
        const float *proj_bias
        const float *lin_w
        int32_t prior
        const float *prior_w
        const float *prior_b
    ctypedef struct pwr_subscale_trace:
        float *h
        float *logits_c
        float *logits_f
        int64_t *step
    int pwr_generate_subscale(const pwr_subscale_net *net, const pwr_kernel_table *table, int exact, int nthreads,
                              const float *g, int32_t n_frames, const float *uniforms, int16_t *out,
                              const pwr_subscale_trace *trace)
    ctypedef struct pwr_subscale_run:
        pass
    pwr_subscale_run *pwr_subscale_run_new(const pwr_subscale_net *net, int nthreads)
    void pwr_subscale_run_free(pwr_subscale_run *run)
    int64_t pwr_subscale_run_next_step(const pwr_subscale_run *run)
    int64_t pwr_subscale_n_steps(const pwr_subscale_net *net, int64_t T)
    void pwr_subscale_advance(pwr_subscale_run *run, const pwr_subscale_net *net, const pwr_kernel_table *table,
                              int exact, const float *g, int64_t g_first, int64_t g_end, int64_t T,
                              const float *uniforms, int16_t *out, int64_t t_first, const pwr_subscale_trace *trace,
                              int64_t n_end)
