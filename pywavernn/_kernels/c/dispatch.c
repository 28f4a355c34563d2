/* dispatch.c: pwr_kernel_table_for (ISA id -> kernel table) and pwr_shape_of. Compiled once; plain C. */
#include <stddef.h>
#include <string.h>

#include "cpu_features.h"
#include "pwr_kernels.h"

const pwr_kernel_table *pwr_kernel_table_for(int isa) {
    switch (isa) {
    case PWR_ISA_ID_GENERIC: return &pwr_kernels_generic;
#ifdef PWR_BUILT_AVX2
    case PWR_ISA_ID_AVX2: return &pwr_kernels_avx2;
#endif
#ifdef PWR_BUILT_AVX512
    case PWR_ISA_ID_AVX512: return &pwr_kernels_avx512;
#endif
#ifdef PWR_BUILT_NEON
    case PWR_ISA_ID_NEON: return &pwr_kernels_neon;
#endif
    default: return NULL;
    }
}

const pwr_kernel_table *pwr_table_for_mode(const pwr_kernel_table *table, int exact, pwr_kernel_table *buf) {
    if (!exact) return table;
    *buf = *table;
    memcpy(buf->gemv, table->gemv_ordered, sizeof buf->gemv);
    memcpy(buf->gemm, table->gemm_ordered, sizeof buf->gemm);
    return buf;
}

int pwr_shape_of(int32_t bh, int32_t bw, int is_dense) {
    if (is_dense) return PWR_SHAPE_DENSE;
    if (bh == 16 && bw == 1) return PWR_SHAPE_16X1;
    if (bh == 4 && bw == 4) return PWR_SHAPE_4X4;
    if (bh == 1 && bw == 1) return PWR_SHAPE_1X1;
    return -1;
}
