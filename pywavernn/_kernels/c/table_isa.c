/* table_isa.c: the kernel table of one ISA copy (compiled once per ISA; see pwr_isa.h and pwr_kernels.h). */
#include "pwr_isa.h"

#define PWR_SHAPE_ENTRY(gemv_or_gemm, shape) {PWR_FN(bsr_s##gemv_or_gemm##_##shape##_f32), PWR_FN(bsr_s##gemv_or_gemm##_##shape##_f16)}

const pwr_kernel_table PWR_TABLE_NAME = {
    .isa = PWR_SUFFIX_NAME,
    .gemv = {{PWR_FN(sgemv_dense_f32), PWR_FN(sgemv_dense_f16)}, PWR_SHAPE_ENTRY(gemv, 16x1),
             PWR_SHAPE_ENTRY(gemv, 4x4), PWR_SHAPE_ENTRY(gemv, 1x1)},
    .gemm = {{PWR_FN(sgemm_dense_f32), PWR_FN(sgemm_dense_f16)}, PWR_SHAPE_ENTRY(gemm, 16x1),
             PWR_SHAPE_ENTRY(gemm, 4x4), PWR_SHAPE_ENTRY(gemm, 1x1)},
    .gemv_ordered = {{PWR_FN(sgemv_dense_ordered_f32), PWR_FN(sgemv_dense_ordered_f16)},
                     PWR_SHAPE_ENTRY(gemv, 16x1_ordered), PWR_SHAPE_ENTRY(gemv, 4x4_ordered),
                     PWR_SHAPE_ENTRY(gemv, 1x1_ordered)},
    .gemm_ordered = {{PWR_FN(sgemm_dense_ordered_f32), PWR_FN(sgemm_dense_ordered_f16)},
                     PWR_SHAPE_ENTRY(gemm, 16x1_ordered), PWR_SHAPE_ENTRY(gemm, 4x4_ordered),
                     PWR_SHAPE_ENTRY(gemm, 1x1_ordered)},
    .gru_gates = PWR_FN(gru_gates),
    .gru_input = PWR_FN(gru_input),
    .gru_input_t = PWR_FN(gru_input_t),
    .gru_input_cols = PWR_FN(gru_input_cols),
    .fast_sigmoid = PWR_FN(fast_sigmoid),
    .fast_tanh = PWR_FN(fast_tanh),
    .fast_exp = PWR_FN(fast_exp),
    .sample_softmax = PWR_FN(sample_softmax),
    .sample_softmax_rows = PWR_FN(sample_softmax_rows),
    .frame_matmul = PWR_FN(frame_matmul),
    .laplace_prior = PWR_FN(laplace_prior),
};
