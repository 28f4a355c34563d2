/* pwr_kernel.cuh: the kernel code the plain and the fused persistent kernels share (wavernn_persistent.cu,
 * wavernn_fused.cu): shared-memory loading, the head's row-slice matrix-vector product pushed through the
 * cluster's distributed shared memory, the per-unit loads of the conditioning and of R h, the launch-shape check,
 * and the launch / attribute helpers, generic over the kernel function.
 * What it is not: the flags and the element-wise maths (pwr_device.cuh) or the sampler (pwr_sampler.cuh).
 * Device code only; include from a .cu file. Build: make -C cuda lib.
 *
 * Letters: H hidden units, CS blocks per cluster, NB utterances per launch, T samples, F frames.
 */
#ifndef PWR_KERNEL_CUH
#define PWR_KERNEL_CUH

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "pwr_device.cuh"
#include "pwr_internal.h"

namespace pwr {
namespace cg = cooperative_groups;

/* Copies n floats global -> shared with 512 threads (contiguous source). */
__device__ __forceinline__ void copy_to_smem(float *dst, const float *src, size_t n) {
    for (size_t i = threadIdx.x; i < n; i += kThreads) dst[i] = src[i];
}

/* ---- head: rows of an output matrix times NB vectors, pushed to every head block ----
 * W: nrows x ncols (shared), x: NB vectors with stride x_stride (shared), result row r goes to
 * dst[b * dst_stride + row_base + r] in the shared memory of every block of the cluster. One warp per row,
 * lanes over columns (conflict-free consecutive words), butterfly sum, lanes 0..CS-1 each push to one block. */
template <int NB, bool RELU>
__device__ __forceinline__ void rows_matvec_push(const float *W, const float *bias, int nrows, int ncols,
                                                 const float *x, int x_stride, float *dst, int dst_stride,
                                                 int row_base, int CS, cg::cluster_group &cluster) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int r = warp; r < nrows; r += kWarps) {
        const float *w = W + (size_t)r * ncols;
        float acc[NB];
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[b] = 0.0f;
#pragma unroll 4
        for (int c = lane; c < ncols; c += 32) {
            const float wv = w[c];
#pragma unroll
            for (int b = 0; b < NB; ++b) acc[b] = fmaf(wv, x[b * x_stride + c], acc[b]);
        }
#pragma unroll
        for (int b = 0; b < NB; ++b) {
            acc[b] = warp_allsum(acc[b]) + bias[r];
            if (RELU) acc[b] = fmaxf(acc[b], 0.0f);
        }
        if (lane < CS) {
            float *remote = cluster.map_shared_rank(dst, lane);
#pragma unroll
            for (int b = 0; b < NB; ++b) remote[b * dst_stride + row_base + r] = acc[b];
        }
    }
}

/* Per-thread gate inputs of one unit for NB utterances. */
template <int NB>
struct UnitInputs {
    float cond[3][NB];  /* cond(t) for rows u, r, e */
    float rh[3][NB];    /* R h + b_R for rows u, r, e */
};

/* cond(t) of rows g * H + unit (g = u, r, e) for each utterance, per docs/format.md §2. */
template <int NB>
__device__ __forceinline__ void load_cond(const Params &p, int t, int unit, UnitInputs<NB> &in) {
    const int H3 = 3 * p.H;
    const int fr = t / p.hop;
    const int fr1 = min(fr + 1, p.n_frames - 1);
    const float a = __fdiv_rn((float)(t - fr * p.hop), (float)p.hop);
#pragma unroll
    for (int b = 0; b < NB; ++b) {
        const float *gb = p.g + (size_t)b * p.n_frames * H3;
#pragma unroll
        for (int g = 0; g < 3; ++g) {
            const int row = g * p.H + unit;
            in.cond[g][b] = upsample(gb[(size_t)fr * H3 + row], gb[(size_t)fr1 * H3 + row], a);
        }
    }
}

/* R h + b_R of rows g * H + unit from the rh slot of step `step` (slot step & 1), as the workers published it. */
template <int NB>
__device__ __forceinline__ void load_rh(const Params &p, int step, int unit, UnitInputs<NB> &in) {
    const float *slot = p.rhbuf + (size_t)(step & 1) * NB * 3 * p.H;
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
        for (int g = 0; g < 3; ++g) in.rh[g][b] = __ldcg(slot + (size_t)b * 3 * p.H + g * p.H + unit);
}

/* The launch must match the params exactly. Every block checks the same values (nothing block-specific), so
 * either all blocks run or all return: never a partial grid waiting at a barrier that has no watchdog. */
__device__ __forceinline__ bool launch_shape_ok(const Params &p, cg::cluster_group &cluster) {
    return blockDim.x == (unsigned)kThreads && blockDim.y == 1u && blockDim.z == 1u &&
           gridDim.x == (unsigned)p.n_blocks && gridDim.y == 1u && gridDim.z == 1u &&
           (int)cluster.num_blocks() == p.cluster_size && p.n_workers == p.n_blocks - p.cluster_size &&
           p.n_workers >= 1 && p.n_workers <= kMaxWorkers && p.H <= kMaxHidden;
}

__device__ __forceinline__ unsigned cluster_id_x() {
    unsigned v;
    asm volatile("mov.u32 %0, %%clusterid.x;" : "=r"(v));
    return v;
}

/* ---- host side of a kernel: launch, attributes, occupancy (all return a cudaError_t as int) ---- */
using PersistentKernel = void (*)(Params);

inline int launch_kernel(PersistentKernel kernel, const Params &p, size_t smem, int cooperative,
                         cudaStream_t stream) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)p.n_blocks, 1, 1);
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attrs[2];
    attrs[0].id = cudaLaunchAttributeClusterDimension;
    attrs[0].val.clusterDim.x = (unsigned)p.cluster_size;
    attrs[0].val.clusterDim.y = 1;
    attrs[0].val.clusterDim.z = 1;
    attrs[1].id = cudaLaunchAttributeCooperative;
    attrs[1].val.cooperative = 1;
    cfg.attrs = attrs;
    cfg.numAttrs = cooperative ? 2 : 1;
    return (int)cudaLaunchKernelEx(&cfg, kernel, p);
}

inline int prepare_kernel(PersistentKernel kernel, size_t smem_max) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_max);
    if (e != cudaSuccess) return (int)e;
    return (int)cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
}

inline int max_clusters_of(PersistentKernel kernel, int cluster_size, size_t smem, int *n) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)cluster_size, 1, 1);
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = (unsigned)cluster_size;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    return (int)cudaOccupancyMaxActiveClusters(n, kernel, &cfg);
}

inline int attributes_of(PersistentKernel kernel, int *regs, int *local_bytes) {
    cudaFuncAttributes a;
    const cudaError_t e = cudaFuncGetAttributes(&a, kernel);
    if (e != cudaSuccess) return (int)e;
    *regs = a.numRegs;
    *local_bytes = (int)a.localSizeBytes;
    return 0;
}

} /* namespace pwr */

#endif /* PWR_KERNEL_CUH */
