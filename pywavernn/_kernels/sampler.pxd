# Declarations of c/sampler.h (the WaveRNN sampling loop, teacher forcing and batches).
from libc.stdint cimport int16_t, int32_t, int64_t
from pywavernn._kernels.pwr_kernels cimport pwr_matrix, pwr_kernel_table

cdef extern from "sampler.h" nogil:
    ctypedef struct pwr_wavernn:
        int32_t H, K, hop
        pwr_matrix R, O1, O2, O3, O4
        const float *w_in
        const float *b_R
        const float *b1
        const float *b2
        const float *b3
        const float *b4
        int32_t P
        const float *lin_w
        int32_t lpc
        int32_t prior
        const float *prior_w
        const float *prior_b
    ctypedef struct pwr_stream:
        float *h
        int32_t prev_c, prev_f
        int64_t t
        float *past
    ctypedef struct pwr_trace:
        int64_t lo, hi
        float *h
        float *logits_c
        float *logits_f
    ctypedef struct pwr_utterance:
        const float *g
        int32_t n_frames
        const float *uniforms
        int64_t n
        pwr_stream *s
        int16_t *out
    int pwr_generate(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                     const float *g, int32_t n_frames, const float *uniforms, int64_t n, pwr_stream *s,
                     int16_t *out)
    int pwr_generate_traced(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                            const float *g, int32_t n_frames, const float *uniforms, int64_t n, pwr_stream *s,
                            int16_t *out, const pwr_trace *trace)
    int pwr_teacher_forced(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                           const float *g, int32_t n_frames, const int16_t *audio, int64_t n, pwr_stream *s,
                           double *nll_bits, const pwr_trace *trace)
    int pwr_generate_batch(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                           const pwr_utterance *items, int32_t n_items)
    void pwr_set_test_handover(int every)
    long pwr_handover_count()
