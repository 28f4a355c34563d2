/* wavernn_persistent.cu: the persistent WaveRNN sampling kernel (docs/format.md §1-4; paper §2.1) for Hopper.
 *
 * What it is: one launch generates NB utterances of T samples, dense float32 weights, every weight loaded
 * once from device memory into shared memory at the start of the launch and kept there for all T steps.
 * What it is not: block-sparse (next step), register-resident (next step), or the conditioning network.
 *
 * Letters: H hidden units, half = H/2, K output-head hidden units, CS blocks per cluster, W worker blocks,
 * NB utterances per launch, T samples, F frames.
 *
 * ---- Design: one head cluster, many worker blocks, two point-to-point handoffs per step ----
 *
 * Per step the work is R h (3H x H: 2.4M multiply-adds at H = 896, 96% of the step) and a chain of small,
 * strictly dependent stages: coarse gates -> O1 -> O2 -> sample c_t -> fine gates -> O3 -> O4 -> sample f_t.
 * So the grid has two roles:
 *
 *  - Workers (clusters 1..n-1, W ~ 112 blocks at CS = 16 on an H100): block w holds rows
 *    [part_begin(w, 3H, W), ...) of R and b_R in shared memory (at H = 896: 24 rows, 86 KB) and computes those
 *    rows of rh(t+1) = R h(t) + b_R in two halves: R[:, :half] y_c(t) as soon as the head publishes y_c(t),
 *    R[:, half:] y_f(t) once it publishes y_f(t). Then it publishes its rows of rh(t+1).
 *  - Head (cluster 0, CS blocks, one per SM, thread-block cluster with distributed shared memory): holds O1..O4
 *    (row slices per block: 16 rows of each at K = 256, CS = 16) and W_in (registers). Each head block computes
 *    all H gate units itself (thread i owns coarse unit i and fine unit half + i, so the gates never need a
 *    barrier), its row slice of each output matrix, and pushes the results into every head block's shared
 *    memory (mapa + stores into the cluster window) before one cluster barrier; each head block then samples
 *    redundantly (same inputs, same code, same answer), which saves a broadcast.
 *
 * Synchronisation per step, and why not grid.sync:
 *  - A grid-wide barrier (cooperative groups grid.sync or a hand-written one) costs ~1-1.5 us at 132 blocks
 *    (every block's atomic on one L2 line, then all spin on it). The stages above need 6 of them per step:
 *    ~6-9 us/step before any arithmetic, ~110-160k samples/s.
 *  - Here: 2 flag handoffs (worker -> head: rh ready; head -> workers: y_c, y_f ready; release/acquire on L2
 *    words, ~0.5-0.8 us each, each is one writer and the readers poll) plus 4 cluster barriers
 *    (barrier.cluster, hardware, within one GPC; ~0.1-0.3 us) per step. And the workers' half of R h overlaps
 *    the head's O1/O2/sampling, the other half overlaps O3/O4/sampling.
 *
 * Where weights live and what that costs per step (H = 896, K = 256, CS = 16, W = 112, fp32):
 *    R: 9.6 MB over 112 workers = 86 KB each; read from shared memory at 128 B/clk/SM: ~690 clk per step,
 *       half of it after y_f arrives: ~0.2 us on the critical path.
 *    O1..O4: 1.44 MB over 16 head blocks = 90 KB each; O1 slice 16 x 448 per block: ~0.1-0.2 us per matrix.
 *    The whole model (11 MB) fits in the grid's shared memory (132 x 227 KB = 30 MB) in float32, so this version
 *    stores float32 and computes float32: results match the NumPy reference to rounding. fp16 storage (half the
 *    bytes) and register residency (paper §2.1) are the next steps once timings show smem bandwidth matters.
 * Expected step (to be measured): rh handoff ~0.8 + gates ~0.15 + 4 x (matvec ~0.15 + push/barrier ~0.25)
 *    + 2 x sample ~0.2 + slack ~0.5 = ~3.5 us -> ~280k samples/s for one utterance (paper: 96k on a P100);
 *    NB = 4 utterances per launch reuse every weight read 4 times for ~1.2 us more: ~850k samples/s in total.
 *
 * Co-residency: the flags need every block resident at once. The host sizes the grid from
 * cudaOccupancyMaxActiveClusters (one block per SM) and launches with the cooperative attribute when the
 * driver accepts it alongside clusters (then the launch itself fails rather than the blocks waiting); in any
 * case every wait has a watchdog (pwr_device.cuh), so a wrong guess ends in PWR_CUDA_ERR_TIMEOUT, never a hang.
 *
 * Data races, argued once (t = step):
 *  - hbuf/rhbuf are double-buffered by t & 1. Workers write rh(t+1) only after y_c(t), i.e. after every head
 *    block passed the last cluster barrier of step t-1, after it read rh(t-1) from the same slot. The head
 *    writes h(t+2) into slot t & 1 only after all rh(t+2) flags, and a worker publishes rh(t+2) only after it
 *    read h(t+1), which it read after h(t) (and rh(t+1) was published after reading h(t)).
 *  - Head shared memory: every DSMEM push into hid/lgc/lgf of step t is separated from the last read of the
 *    same buffer in step t-1 (or earlier in step t) by a cluster barrier that the reader only arrives at after
 *    its read.
 */
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "pwr_device.cuh"
#include "pwr_internal.h"
#include "pwr_kernel.cuh"
#include "pwr_sampler.cuh"

namespace pwr {
namespace {

/* Test trace of step t (head block 0): h(t) and both logit vectors of every utterance. Kept out of line: it
 * runs only under pwr_cuda_generate_trace and would otherwise add to the step loop's register peak. */
template <int NB>
__device__ __noinline__ void write_trace(const Params &p, int t, const float *ys, const float *lgc,
                                         const float *lgf) {
    for (int b = 0; b < NB; ++b) {
        if (p.trace_h != nullptr) {
            float *dst = p.trace_h + ((size_t)b * p.T + t) * p.H;
            for (int j = threadIdx.x; j < p.H; j += kThreads) dst[j] = ys[b * p.H + j];
        }
        if (p.trace_logits != nullptr) {
            float *dst = p.trace_logits + ((size_t)b * p.T + t) * 2 * kClasses;
            for (int k = threadIdx.x; k < 2 * kClasses; k += kThreads)
                dst[k] = k < kClasses ? lgc[b * kClasses + k] : lgf[b * kClasses + k - kClasses];
        }
    }
}

/* ---- the head cluster ---- */
template <int NB>
__device__ void head_loop(const Params &p, float *smem, cg::cluster_group &cluster) {
    const int CS = p.cluster_size, q = (int)cluster.block_rank();
    const int H = p.H, half = p.half, K = p.K;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const HeadLayout L = head_layout(H, K, CS, NB);
    float *o1 = smem + L.o1, *o3 = smem + L.o3, *o2 = smem + L.o2, *o4 = smem + L.o4;
    float *b1 = smem + L.b1, *b3 = smem + L.b3, *b2 = smem + L.b2, *b4 = smem + L.b4;
    float *ys = smem + L.ys, *hid = smem + L.hid, *lgc = smem + L.lgc, *lgf = smem + L.lgf;
    float *pscr = smem + L.pscr;
    /* c_cur/f_cur: this step's bytes (written by the sampler warps); c_prev/f_prev: the previous step's. */
    int *c_cur = reinterpret_cast<int *>(smem + L.ints), *f_cur = c_cur + NB;
    int *c_prev = f_cur + NB, *f_prev = c_prev + NB;

    const int k0 = part_begin(q, K, CS), nk = part_begin(q + 1, K, CS) - k0;
    const int m0 = part_begin(q, kClasses, CS), nm = part_begin(q + 1, kClasses, CS) - m0;
    copy_to_smem(o1, p.O1 + (size_t)k0 * half, (size_t)nk * half);
    copy_to_smem(o3, p.O3 + (size_t)k0 * half, (size_t)nk * half);
    copy_to_smem(o2, p.O2 + (size_t)m0 * K, (size_t)nm * K);
    copy_to_smem(o4, p.O4 + (size_t)m0 * K, (size_t)nm * K);
    copy_to_smem(b1, p.b1 + k0, nk);
    copy_to_smem(b3, p.b3 + k0, nk);
    copy_to_smem(b2, p.b2 + m0, nm);
    copy_to_smem(b4, p.b4 + m0, nm);

    /* Thread tid owns coarse unit tid and fine unit half + tid: W_in rows and h live in its registers. */
    const bool has_unit = tid < half;
    const int uc = tid, uf = half + tid;
    float wc[3][2] = {}, wf[3][3] = {}, hc[NB], hf[NB];
    if (has_unit) {
#pragma unroll
        for (int g = 0; g < 3; ++g) {
            wc[g][0] = p.Win[(size_t)(g * H + uc) * 3 + 0];
            wc[g][1] = p.Win[(size_t)(g * H + uc) * 3 + 1];
#pragma unroll
            for (int j = 0; j < 3; ++j) wf[g][j] = p.Win[(size_t)(g * H + uf) * 3 + j];
        }
    }
#pragma unroll
    for (int b = 0; b < NB; ++b) { hc[b] = 0.0f; hf[b] = 0.0f; }
    if (tid < NB) { c_cur[tid] = 128; f_cur[tid] = 0; }  /* the sample before the first is s = 0 (§1) */
    if (tid < NB) { c_prev[tid] = 128; f_prev[tid] = 0; }
    __syncthreads();
    cluster.sync();  /* every head block has started and filled its shared memory before any DSMEM push */

    for (int t = 0; t < p.T; ++t) {
        const int slot = t & 1;
        /* (0) Loads that depend on nothing of this step go first: they overlap the wait for rh(t). */
        UnitInputs<NB> in_c, in_f;
        if (has_unit) load_cond<NB>(p, t, uc, in_c);
        float u_mine = 0.0f, uf_mine = 0.0f;
        if (warp < NB) {
            u_mine = p.uniforms[((size_t)warp * p.T + t) * 2 + 0];
            uf_mine = p.uniforms[((size_t)warp * p.T + t) * 2 + 1];
        }

        /* (1) rh(t) from every worker. */
        if (warp == 0) warp_spin_all_ge(p, p.rh_flags, p.n_workers, t + 1, t, kWaitRh, lane);
        __syncthreads();
        if (has_unit) load_rh<NB>(p, t, uc, in_c);

        /* (2) Coarse gates -> y_c(t); head block 0 publishes it for the workers' first half of R h. */
        if (has_unit) {
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                const float x0 = scale_byte(c_prev[b]), x1 = scale_byte(f_prev[b]);
                const float gu = in_proj2(wc[0][0], wc[0][1], x0, x1, in_c.cond[0][b]);
                const float gr = in_proj2(wc[1][0], wc[1][1], x0, x1, in_c.cond[1][b]);
                const float ge = in_proj2(wc[2][0], wc[2][1], x0, x1, in_c.cond[2][b]);
                hc[b] = gru_unit(hc[b], gu, gr, ge, in_c.rh[0][b], in_c.rh[1][b], in_c.rh[2][b]);
                ys[b * H + uc] = hc[b];
                if (q == 0) p.hbuf[((size_t)slot * NB + b) * H + uc] = hc[b];
            }
        }
        if (q == 0) block_publish(p.yc_flag, t + 1); else __syncthreads();
        /* The fine unit's inputs are needed only in (6): loading them now keeps the register peak low while
         * (3)-(5) hide their latency. rh(t) stays in its slot until workers write rh(t + 2), after y_c(t + 1). */
        if (has_unit) { load_cond<NB>(p, t, uf, in_f); load_rh<NB>(p, t, uf, in_f); }

        /* (3) hid = relu(O1 y_c + b1), (4) logits_c = O2 hid + b2, (5) sample c_t. */
        rows_matvec_push<NB, true>(o1, b1, nk, half, ys, H, hid, K, k0, CS, cluster);
        cluster.sync();
        rows_matvec_push<NB, false>(o2, b2, nm, K, hid, K, lgc, kClasses, m0, CS, cluster);
        cluster.sync();
        if (warp < NB) {
            const int k = warp_sample(lgc + warp * kClasses, u_mine, pscr + warp * kClasses, lane, nullptr);
            if (lane == 0) c_cur[warp] = k;
        }
        __syncthreads();

        /* (6) Fine gates with c_t -> y_f(t); block 0 publishes it for the workers' second half. */
        if (has_unit) {
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                const float x0 = scale_byte(c_prev[b]), x1 = scale_byte(f_prev[b]), x2 = scale_byte(c_cur[b]);
                const float gu = in_proj3(wf[0][0], wf[0][1], wf[0][2], x0, x1, x2, in_f.cond[0][b]);
                const float gr = in_proj3(wf[1][0], wf[1][1], wf[1][2], x0, x1, x2, in_f.cond[1][b]);
                const float ge = in_proj3(wf[2][0], wf[2][1], wf[2][2], x0, x1, x2, in_f.cond[2][b]);
                hf[b] = gru_unit(hf[b], gu, gr, ge, in_f.rh[0][b], in_f.rh[1][b], in_f.rh[2][b]);
                ys[b * H + uf] = hf[b];
                if (q == 0) p.hbuf[((size_t)slot * NB + b) * H + uf] = hf[b];
            }
        }
        if (q == 0) block_publish(p.yf_flag, t + 1); else __syncthreads();

        /* (7) hid = relu(O3 y_f + b3), logits_f = O4 hid + b4, (8) sample f_t. */
        rows_matvec_push<NB, true>(o3, b3, nk, half, ys + half, H, hid, K, k0, CS, cluster);
        cluster.sync();
        rows_matvec_push<NB, false>(o4, b4, nm, K, hid, K, lgf, kClasses, m0, CS, cluster);
        cluster.sync();
        if (warp < NB) {
            const int k = warp_sample(lgf + warp * kClasses, uf_mine, pscr + warp * kClasses, lane, nullptr);
            if (lane == 0) f_cur[warp] = k;
        }
        __syncthreads();

        /* (9) Outputs (block 0 only; every head block holds the same values). */
        if (q == 0) {
            if (tid < NB) p.out[(size_t)tid * p.T + t] = (int16_t)(((c_cur[tid] << 8) | f_cur[tid]) - 32768);
            if (p.trace_h != nullptr || p.trace_logits != nullptr) write_trace<NB>(p, t, ys, lgc, lgf);
        }
        /* (10) This step's bytes become the previous ones. Everyone read c_prev/f_prev in (6), before (8)'s
         * barrier; (9) reads only c_cur/f_cur; the next reads of c_prev follow the next step's barrier (1). */
        if (tid < NB) { c_prev[tid] = c_cur[tid]; f_prev[tid] = f_cur[tid]; }
    }
    cluster.sync();  /* no head block exits while a sibling could still push into its shared memory */
}

/* ---- a worker block: rows [r0, r0 + nrows) of R ----
 * Warp wp owns rows wp, wp + 16, ...; lane 0 keeps the first-half sums in `part` and, after the second half,
 * stores rh to global memory. The same lane reads back what it wrote, so no barrier is needed between halves. */
template <int NB, bool SECOND>
__device__ __forceinline__ void worker_rows(const float *rw, int nrows, int H, int half, const float *hs,
                                            float *part, const float *brs, float *rh_out, int r0) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int c0 = SECOND ? half : 0;
    for (int r = warp; r < nrows; r += kWarps) {
        const float *w = rw + (size_t)r * H;
        float acc[NB];
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[b] = 0.0f;
#pragma unroll 4
        for (int c = c0 + lane; c < c0 + half; c += 32) {
            const float wv = w[c];
#pragma unroll
            for (int b = 0; b < NB; ++b) acc[b] = fmaf(wv, hs[b * H + c], acc[b]);
        }
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[b] = warp_allsum(acc[b]);
        if (lane == 0) {
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                if (!SECOND) part[r * NB + b] = acc[b];
                else __stcg(rh_out + (size_t)b * 3 * H + r0 + r, (part[r * NB + b] + acc[b]) + brs[r]);
            }
        }
    }
}

template <int NB>
__device__ void worker_loop(const Params &p, float *smem, int w) {
    const int H = p.H, half = p.half, H3 = 3 * H;
    const WorkerLayout L = worker_layout(H, p.n_workers, NB);
    float *rw = smem + L.rw, *brs = smem + L.brs, *hs = smem + L.hs, *part = smem + L.part;
    const int r0 = part_begin(w, H3, p.n_workers), nrows = part_begin(w + 1, H3, p.n_workers) - r0;
    copy_to_smem(rw, p.R + (size_t)r0 * H, (size_t)nrows * H);
    copy_to_smem(brs, p.bR + r0, nrows);
    __syncthreads();

    /* rh(0) = R 0 + b_R = b_R. */
    for (int i = threadIdx.x; i < NB * nrows; i += kThreads)
        __stcg(p.rhbuf + (size_t)(i / nrows) * H3 + r0 + (i % nrows), brs[i % nrows]);
    block_publish(p.rh_flags + w, 1);

    for (int t = 0; t + 1 < p.T; ++t) {  /* computes rh(t + 1) from h(t) */
        const float *hslot = p.hbuf + (size_t)(t & 1) * NB * H;
        float *rh_out = p.rhbuf + (size_t)((t + 1) & 1) * NB * H3;

        block_wait(p, p.yc_flag, t + 1, t, kWaitYc);
        for (int i = threadIdx.x; i < NB * half; i += kThreads) {
            const int b = i / half, c = i % half;
            hs[b * H + c] = __ldcg(hslot + (size_t)b * H + c);
        }
        __syncthreads();
        worker_rows<NB, false>(rw, nrows, H, half, hs, part, brs, rh_out, r0);

        block_wait(p, p.yf_flag, t + 1, t, kWaitYf);
        for (int i = threadIdx.x; i < NB * half; i += kThreads) {
            const int b = i / half, c = half + i % half;
            hs[b * H + c] = __ldcg(hslot + (size_t)b * H + c);
        }
        __syncthreads();
        worker_rows<NB, true>(rw, nrows, H, half, hs, part, brs, rh_out, r0);

        if (p.debug_stall_worker && w == 0 && t == 0) __syncthreads();  /* test hook: never publish rh(1) */
        else block_publish(p.rh_flags + w, t + 2);
    }
}

template <int NB>
__global__ void __launch_bounds__(kThreads, 1) wavernn_persistent(const __grid_constant__ Params p) {
    extern __shared__ float4 smem4[];  /* float4: 16-byte alignment for the sampler's vector loads */
    float *smem = reinterpret_cast<float *>(smem4);
    cg::cluster_group cluster = cg::this_cluster();
    if (!launch_shape_ok(p, cluster) || p.nb != NB) {
        if (threadIdx.x == 0 && blockIdx.x == 0) report_error(p, kDevLaunchShape, -1, 0);
        return;
    }
    /* Roles from the hardware's cluster id and rank, not from assumptions about blockIdx numbering. */
    const int cluster_id = (int)cluster_id_x();
    if (cluster_id == 0) head_loop<NB>(p, smem, cluster);
    else worker_loop<NB>(p, smem, (cluster_id - 1) * p.cluster_size + (int)cluster.block_rank());
}

} /* namespace */
} /* namespace pwr */

int pwr_launch_persistent(const pwr::Params &p, size_t smem_bytes, int cooperative, void *stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    switch (p.nb) {
    case 1: return pwr::launch_kernel(pwr::wavernn_persistent<1>, p, smem_bytes, cooperative, s);
    case 2: return pwr::launch_kernel(pwr::wavernn_persistent<2>, p, smem_bytes, cooperative, s);
    case 4: return pwr::launch_kernel(pwr::wavernn_persistent<4>, p, smem_bytes, cooperative, s);
    default: return (int)cudaErrorInvalidValue;
    }
}

int pwr_prepare_kernels(size_t smem_bytes_max) {
    int e = pwr::prepare_kernel(pwr::wavernn_persistent<1>, smem_bytes_max);
    if (e == 0) e = pwr::prepare_kernel(pwr::wavernn_persistent<2>, smem_bytes_max);
    if (e == 0) e = pwr::prepare_kernel(pwr::wavernn_persistent<4>, smem_bytes_max);
    return e;
}

int pwr_max_active_clusters(int nb, int cluster_size, size_t smem_bytes, int *n_clusters) {
    switch (nb) {
    case 1: return pwr::max_clusters_of(pwr::wavernn_persistent<1>, cluster_size, smem_bytes, n_clusters);
    case 2: return pwr::max_clusters_of(pwr::wavernn_persistent<2>, cluster_size, smem_bytes, n_clusters);
    case 4: return pwr::max_clusters_of(pwr::wavernn_persistent<4>, cluster_size, smem_bytes, n_clusters);
    default: return (int)cudaErrorInvalidValue;
    }
}

int pwr_kernel_attributes(int nb, int *regs, int *local_bytes) {
    switch (nb) {
    case 1: return pwr::attributes_of(pwr::wavernn_persistent<1>, regs, local_bytes);
    case 2: return pwr::attributes_of(pwr::wavernn_persistent<2>, regs, local_bytes);
    case 4: return pwr::attributes_of(pwr::wavernn_persistent<4>, regs, local_bytes);
    default: return (int)cudaErrorInvalidValue;
    }
}
