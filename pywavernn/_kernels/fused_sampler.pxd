# Declarations of c/fused_sampler.h (the Fused Subscale WaveRNN 2x loop, docs/format.md §12).
from libc.stdint cimport int16_t, int32_t, int64_t
from pywavernn._kernels.pwr_kernels cimport pwr_matrix, pwr_kernel_table

cdef extern from "fused_sampler.h" nogil:
    ctypedef struct pwr_fused_net:
        int32_t H, K, hop
        pwr_matrix R, O1, O2
        const float *w_in_t
        const float *b_R
        const float *b1
        const float *b2
    ctypedef struct pwr_fused_stream:
        float *h
        int64_t step
        int32_t prev[2]
    ctypedef struct pwr_fused_trace:
        float *h
        float *logits
        int64_t *step
    ctypedef struct pwr_fused_io:
        const float *uniforms
        const int16_t *audio
        int16_t *out
        double *nll
        const pwr_fused_trace *trace
    int64_t pwr_fused_n_steps(int64_t T)
    int pwr_fused_run(const pwr_fused_net *net, const pwr_kernel_table *table, int exact, int nthreads,
                      const float *g, int64_t g_first, int32_t g_rows, int64_t T, int64_t t_first,
                      const pwr_fused_io *io, pwr_fused_stream *s, int64_t n_end)
