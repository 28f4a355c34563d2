# Declarations of c/pwr_kernels.h (dense and block-sparse gemv/gemm, GRU gates, fast nonlinearities, sampling).
from libc.stdint cimport int32_t, int64_t

cdef extern from "pwr_kernels.h" nogil:
    enum: PWR_MAX_RHS
    ctypedef struct pwr_matrix:
        int32_t m, n, bh, bw, shape, storage
        const int32_t *row_ptr
        const int32_t *col_idx
        const void *values
    ctypedef void (*pwr_gemv_fn)(const pwr_matrix *w, const float *x, const float *bias, float *y,
                                 int32_t r0, int32_t r1)
    ctypedef void (*pwr_gemm_fn)(const pwr_matrix *w, const float *const *x, int32_t nrhs, const float *bias,
                                 float *y, int32_t r0, int32_t r1)
    ctypedef void (*pwr_gru_gates_fn)(const float *rh, const float *gi, float *h, int32_t H, int32_t j0,
                                      int32_t j1, int exact)
    ctypedef void (*pwr_gru_input_fn)(const float *w_in, int32_t n_in, const float *x, const float *g0,
                                      const float *g1, float a, float *gi, int32_t H, int32_t j0, int32_t j1)
    ctypedef void (*pwr_gru_input_t_fn)(const float *w_in_t, const float *x3, int with_x2, const float *g0,
                                        const float *g1, float a, const float *pq, const float *bias, float *gi,
                                        int32_t H, int32_t j0, int32_t j1)
    ctypedef void (*pwr_gru_input_cols_fn)(const float *w_t, int32_t n_in, const float *x, const float *g0,
                                           const float *g1, float a, float *gi, int32_t H, int32_t j0, int32_t j1)
    ctypedef void (*pwr_map_fn)(const float *x, float *y, int32_t n)
    ctypedef int (*pwr_sample_fn)(const float *logits, float u, float *scratch, int exact)
    ctypedef void (*pwr_sample_rows_fn)(const float *logits, int32_t n, const float *u, int32_t u_stride,
                                        int32_t *k, float *scratch, int exact)
    ctypedef void (*pwr_frame_matmul_fn)(const float *w, const float *z, int64_t ldz, float *y, int32_t M,
                                         int32_t C, int32_t Fr)
    ctypedef struct pwr_kernel_table:
        const char *isa
        pwr_gemv_fn gemv[4][2]
        pwr_gemm_fn gemm[4][2]
        pwr_gru_gates_fn gru_gates
        pwr_gru_input_fn gru_input
        pwr_gru_input_t_fn gru_input_t
        pwr_gru_input_cols_fn gru_input_cols
        pwr_map_fn fast_sigmoid
        pwr_map_fn fast_tanh
        pwr_map_fn fast_exp
        pwr_sample_fn sample_softmax
        pwr_sample_rows_fn sample_softmax_rows
        pwr_frame_matmul_fn frame_matmul
    const pwr_kernel_table *pwr_kernel_table_for(int isa)
    int pwr_shape_of(int32_t bh, int32_t bw, int is_dense)
