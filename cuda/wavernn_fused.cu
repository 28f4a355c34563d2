/* wavernn_fused.cu: the persistent kernel of the Fused Subscale WaveRNN 2x (docs/format.md §12; paper §4.4).
 *
 * What it is: the sibling of wavernn_persistent.cu for a model whose one GRU state is split in two halves (one
 * per sub-tensor: even and odd samples) of four nibble parts each, so one step emits two 16-bit samples as eight
 * 16-way draws. Same grid (one head cluster, worker blocks holding rows of R), same flags and watchdog
 * (pwr_device.cuh), same head matrix-vector product and DSMEM push (pwr_kernel.cuh), §4's sampling rule over 16
 * classes (pwr_sampler.cuh: warp_sample_nibble). Dense float32 weights, loaded once into shared memory.
 * What it is not: the plain model (wavernn_persistent.cu), block-sparse, or the conditioning network.
 *
 * Letters: H hidden units, half = H/2, P = H/8 units per part, K head hidden units, CS blocks per cluster,
 * NB utterances per launch, T samples, N = ceil(T/2) positions, n a step (0 .. N + 2).
 *
 * ---- One step n, as §12 orders it ----
 *   rh = R h + b_R once (the workers, exactly as in the plain kernel, published with one flag per worker);
 *   for stage j = 0..3: for each active half s: part (s, j)'s gates -> h'[part]; head p = 4 s + j:
 *       logits = O2_p relu(O1_p h'[part] + b1_p) + b2_p; nibble j of sample t_s = 2 i_s + s drawn with
 *       uniforms[t_s, j]; then nibble j of each active half becomes an input of the later stages.
 * Half 1 runs 3 steps behind half 0; a half with no sample at a step is idle: it keeps its state and draws
 * nothing (pwr_internal.h: fused_position). All utterances of a launch have the same T, so the same schedule,
 * and the decision "stage j runs" is the same in every block: the cluster barriers always match.
 *
 * ---- Who does what ----
 *  - Head (cluster 0): thread i < H/2 owns unit i of half 0 and unit H/2 + i of half 1, both in part i / P, so
 *    it works in stage i / P only. W_in lives in shared memory, compact (pwr_internal.h: FusedHeadLayout); the
 *    sum over the 8 previous-sample columns (known when the step starts) is done before the wait for rh, so a
 *    stage adds only its j current-nibble terms and the conditioning (§12's left-to-right order is kept: the
 *    previous-sample columns come first). Per stage: gates (no barrier: each thread its own units), block 0
 *    publishes h'[parts (0, j), (1, j)] with stage flag j, then each block computes its row slice of O1_p for
 *    both heads, pushes it to every head block, cluster barrier, the same for O2_p, cluster barrier, and warps
 *    0 .. 2 NB - 1 each draw one nibble (utterance b = warp / 2, half s = warp % 2), redundantly in every head
 *    block as the plain kernel samples.
 *  - Workers (clusters 1..): rh(n + 1) = R h(n) + b_R accumulated in four stages: after stage flag j of step n
 *    they read the 2P columns of h(n) that stage j wrote and add R[:, those columns] h to their rows. So R h
 *    overlaps the head's stages as the plain kernel's two halves overlap coarse and fine, and rh(n + 1) is ready
 *    shortly after stage 3.
 *  - Sync per step: 1 rh handoff (workers -> head), 4 stage handoffs (head -> workers), 8 cluster barriers
 *    (2 per stage), for two samples: the plain kernel's 2 handoffs + 4 barriers per sample.
 *  - Columns of W_in a part may not see are zero by the mask (checked at create) and are skipped: they add exact
 *    zeros in §12's sum (a zero sum's sign at most, which no sample can see).
 *
 * ---- Races, argued as in wavernn_persistent.cu ----
 *  - hbuf/rhbuf double-buffered by n & 1. The head reads rh(n) only for an active half, before the cluster
 *    barrier of that half's stage (at the step's start, or in the stage with NB = 4: kEarlyInputs), so before
 *    block 0 can publish anything of step n + 1; workers write rh(n + 2) into that slot only after stage flag 3
 *    of step n + 1. The head writes h(n + 2) into slot
 *    n & 1 only after every rh(n + 2) flag, published after the worker read all of h(n + 1), hence of h(n).
 *  - Head shared memory: pushes into hid and lg of a stage follow the cluster barrier that every block reaches
 *    only after its last read of the same words (the previous stage's O2 product, the previous stage's draw).
 *    lg holds all 4 stages of a step, so the trace of step n (block 0, after stage 3) reads it before block 0
 *    arrives at the next barrier. prev/cur nibbles: written by lanes of warps < 2 NB, read after __syncthreads.
 *
 * Expected step (to be measured; H = 1024, K = 64): rh handoff ~0.8 us + 4 x (gates ~0.1 + O1 + push/barrier
 * ~0.3 + O2 + push/barrier ~0.3 + draw ~0.1) = ~4 us per two samples: ~500k samples/s per utterance.
 */
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "pwr_device.cuh"
#include "pwr_internal.h"
#include "pwr_kernel.cuh"
#include "pwr_sampler.cuh"

namespace pwr {
namespace {

constexpr int kLogitsPerUtterance = 2 * kNibbles * kNibbleClasses; /* lg: (2 halves, 4 nibbles, 16) */

/* Test trace of step n (head block 0), by true time as pywavernn.reference.fused: for each active half's
 * sample t, h after the step (H) and its four nibbles' logits (4, 16). Out of line: off the step's register peak. */
template <int NB>
__device__ __noinline__ void write_fused_trace(const Params &p, int t0, int t1, const float *ys, const float *lg) {
    for (int b = 0; b < NB; ++b) {
        for (int s = 0; s < 2; ++s) {
            const int t = s == 0 ? t0 : t1;
            if (t < 0) continue;
            if (p.trace_h != nullptr) {
                float *dst = p.trace_h + ((size_t)b * p.T + t) * p.H;
                for (int i = threadIdx.x; i < p.H; i += kThreads) dst[i] = ys[b * p.H + i];
            }
            if (p.trace_logits != nullptr) {
                float *dst = p.trace_logits + ((size_t)b * p.T + t) * kNibbles * kNibbleClasses;
                const float *src = lg + b * kLogitsPerUtterance + s * kNibbles * kNibbleClasses;
                for (int k = threadIdx.x; k < kNibbles * kNibbleClasses; k += kThreads) dst[k] = src[k];
            }
        }
    }
}

/* Head block: fills its shared memory (row slices of the 8 heads, the compact W_in) and zeroes the state. */
template <int NB>
__device__ void fused_head_load(const Params &p, float *smem, int q) {
    const int H = p.H, K = p.K, P = H / kFusedParts, CS = p.cluster_size;
    const FusedHeadLayout L = fused_head_layout(H, K, CS, NB);
    const int k0 = part_begin(q, K, CS), nk = part_begin(q + 1, K, CS) - k0;
    const int m0 = part_begin(q, kNibbleClasses, CS), nm = part_begin(q + 1, kNibbleClasses, CS) - m0;
    for (int hp = 0; hp < kFusedParts; ++hp) {
        copy_to_smem(smem + L.o1 + (size_t)hp * L.rows_k * P, p.O1 + ((size_t)hp * K + k0) * P, (size_t)nk * P);
        copy_to_smem(smem + L.o2 + (size_t)hp * L.rows_m * K, p.O2 + ((size_t)hp * kNibbleClasses + m0) * K,
                     (size_t)nm * K);
        copy_to_smem(smem + L.b1 + (size_t)hp * L.rows_k, p.b1 + (size_t)hp * K + k0, nk);
        copy_to_smem(smem + L.b2 + (size_t)hp * L.rows_m, p.b2 + (size_t)hp * kNibbleClasses + m0, nm);
    }
    for (int s = 0; s < 2; ++s) {
        for (int j = 0; j < kNibbles; ++j) {
            float *dst = smem + L.win + fused_win_offset(P, s, j);
            const int n = fused_win_columns(j) * 3 * P;
            for (int i = threadIdx.x; i < n; i += kThreads) {
                const int c = i / (3 * P), g = (i / P) % 3, u = i % P;
                const size_t row = (size_t)g * H + (size_t)s * p.half + (size_t)j * P + u;
                dst[i] = p.Win[row * kFusedInputs + fused_win_column(s, c)];
            }
        }
    }
    float *ys = smem + L.ys;
    for (int i = threadIdx.x; i < NB * H; i += kThreads) ys[i] = 0.0f;  /* h starts at 0 */
    int *prev = reinterpret_cast<int *>(smem + L.ints), *cur = prev + NB * 2 * kNibbles;
    for (int i = threadIdx.x; i < NB * 2 * kNibbles; i += kThreads) {
        prev[i] = i % kNibbles == 0 ? kSilenceNibble0 : 0;  /* before the first sample: silence */
        cur[i] = 0;
    }
}

/* The 8 previous-sample terms of one gate row of a thread's unit, summed left to right (§12):
 * x_0 w_0 + x_1 w_1 + ... + x_7 w_7 with x_c the scaled nibble c of prev (2 halves x 4 nibbles). */
__device__ __forceinline__ float previous_terms(const float *w, int col_stride, const int *prev_b) {
    float acc = __fmul_rn(scale_nibble(prev_b[0]), w[0]);
#pragma unroll
    for (int c = 1; c < kFusedPrevColumns; ++c)
        acc = __fadd_rn(acc, __fmul_rn(scale_nibble(prev_b[c]), w[c * col_stride]));
    return acc;
}

/* Whether a head thread loads its conditioning and R h and sums its previous-sample terms when the step starts
 * (off the critical path) or in its own stage (one L2 round trip and 8 terms more on the path of that stage):
 * early holds 18 NB registers through all four stages, which NB = 4 does not have (128 per thread at 512
 * threads: it spilled). Both give the same float32 values in the same order. */
template <int NB>
constexpr bool kEarlyInputs = NB <= 2;

/* ---- the head cluster ---- */
template <int NB>
__device__ void fused_head_loop(const Params &p, float *smem, cg::cluster_group &cluster) {
    const int CS = p.cluster_size, q = (int)cluster.block_rank();
    const int H = p.H, half = p.half, K = p.K, P = H / kFusedParts;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const FusedHeadLayout L = fused_head_layout(H, K, CS, NB);
    const float *o1 = smem + L.o1, *o2 = smem + L.o2, *b1 = smem + L.b1, *b2 = smem + L.b2, *win = smem + L.win;
    float *ys = smem + L.ys, *hid = smem + L.hid, *lg = smem + L.lg;
    int *prev = reinterpret_cast<int *>(smem + L.ints), *cur = prev + NB * 2 * kNibbles;
    const int k0 = part_begin(q, K, CS), nk = part_begin(q + 1, K, CS) - k0;
    const int m0 = part_begin(q, kNibbleClasses, CS), nm = part_begin(q + 1, kNibbleClasses, CS) - m0;

    fused_head_load<NB>(p, smem, q);
    /* Thread tid < half owns unit tid of half 0 and unit half + tid of half 1, both in part js = tid / P. */
    const bool has_unit = tid < half;
    const int js = has_unit ? tid / P : 0, uu = tid - js * P;
    __syncthreads();
    cluster.sync();  /* every head block has started and filled its shared memory before any DSMEM push */

    const int n_steps = fused_steps(p.T);
    for (int n = 0; n < n_steps; ++n) {
        const int slot = n & 1;
        const int pos0 = fused_position(0, n, p.T), pos1 = fused_position(1, n, p.T);
        const bool act0 = pos0 >= 0, act1 = pos1 >= 0;
        const int t0 = act0 ? 2 * pos0 : -1, t1 = act1 ? 2 * pos1 + 1 : -1;

        /* (0) What depends on nothing of this step: conditioning, uniforms, the previous-sample terms. */
        UnitInputs<NB> in[2];
        float pre[2][3][NB];
        if (has_unit && kEarlyInputs<NB>) {
            if (act0) load_cond<NB>(p, t0, tid, in[0]);
            if (act1) load_cond<NB>(p, t1, half + tid, in[1]);
#pragma unroll
            for (int s = 0; s < 2; ++s)
#pragma unroll
                for (int g = 0; g < 3; ++g)
#pragma unroll
                    for (int b = 0; b < NB; ++b)
                        pre[s][g][b] = previous_terms(win + fused_win_offset(P, s, js) + g * P + uu, 3 * P,
                                                      prev + b * 2 * kNibbles);
        }
        const int my_b = warp >> 1, my_s = warp & 1;  /* the draw of sampler warp `warp` < 2 NB */
        const bool sampler = warp < 2 * NB && (my_s == 0 ? act0 : act1);
        float u_mine[kNibbles] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (sampler) {
            const float *u = p.uniforms + ((size_t)my_b * p.T + (my_s == 0 ? t0 : t1)) * kNibbles;
#pragma unroll
            for (int j = 0; j < kNibbles; ++j) u_mine[j] = u[j];
        }

        /* (1) rh(n) from every worker. */
        if (warp == 0) warp_spin_all_ge(p, p.rh_flags, p.n_workers, n + 1, n, kWaitRh, lane);
        __syncthreads();
        if (has_unit && kEarlyInputs<NB>) {
            if (act0) load_rh<NB>(p, n, tid, in[0]);
            if (act1) load_rh<NB>(p, n, half + tid, in[1]);
        }

#pragma unroll 1
        for (int j = 0; j < kNibbles; ++j) {
            /* (2) Gates of parts (0, j) and (1, j); block 0 publishes them (an idle half's unchanged) for the
             * workers' stage-j columns of R h. */
            if (has_unit && js == j) {
#pragma unroll
                for (int s = 0; s < 2; ++s) {
                    const int unit = s * half + tid;
                    if (s == 0 ? act0 : act1) {
                        const float *w = win + fused_win_offset(P, s, j) + uu;
                        if (!kEarlyInputs<NB>) {
                            load_cond<NB>(p, s == 0 ? t0 : t1, unit, in[s]);
                            load_rh<NB>(p, n, unit, in[s]);
                        }
#pragma unroll
                        for (int b = 0; b < NB; ++b) {
                            float gi[3];
#pragma unroll
                            for (int g = 0; g < 3; ++g) {
                                float acc = kEarlyInputs<NB> ? pre[s][g][b]
                                                            : previous_terms(w + g * P, 3 * P, prev + b * 2 * kNibbles);
                                for (int m = 0; m < j; ++m)
                                    acc = __fadd_rn(acc, __fmul_rn(scale_nibble(cur[(b * 2 + s) * kNibbles + m]),
                                                                   w[((kFusedPrevColumns + m) * 3 + g) * P]));
                                gi[g] = __fadd_rn(acc, in[s].cond[g][b]);
                            }
                            ys[b * H + unit] = gru_unit(ys[b * H + unit], gi[0], gi[1], gi[2], in[s].rh[0][b],
                                                        in[s].rh[1][b], in[s].rh[2][b]);
                        }
                    }
                    if (q == 0)
                        for (int b = 0; b < NB; ++b) p.hbuf[((size_t)slot * NB + b) * H + unit] = ys[b * H + unit];
                }
            }
            if (q == 0) block_publish(p.stage_flag[j], n + 1); else __syncthreads();
            if (!act0 && !act1) continue;  /* the same in every block: no barrier is skipped by some only */

            /* (3) hid = relu(O1_p y_part + b1_p), (4) logits = O2_p hid + b2_p, for p = 4 s + j. */
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                if (!(s == 0 ? act0 : act1)) continue;
                const int hp = s * kNibbles + j;
                rows_matvec_push<NB, true>(o1 + (size_t)hp * L.rows_k * P, b1 + hp * L.rows_k, nk, P,
                                           ys + s * half + j * P, H, hid, 2 * K, s * K + k0, CS, cluster);
            }
            cluster.sync();
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                if (!(s == 0 ? act0 : act1)) continue;
                const int hp = s * kNibbles + j;
                rows_matvec_push<NB, false>(o2 + (size_t)hp * L.rows_m * K, b2 + hp * L.rows_m, nm, K, hid + s * K,
                                            2 * K, lg, kLogitsPerUtterance,
                                            s * kNibbles * kNibbleClasses + j * kNibbleClasses + m0, CS, cluster);
            }
            cluster.sync();

            /* (5) Nibble j of each active half's sample. */
            if (sampler) {
                /* a select chain, not u_mine[j]: a runtime index would put the array in local memory */
                const float u = j == 0 ? u_mine[0] : j == 1 ? u_mine[1] : j == 2 ? u_mine[2] : u_mine[3];
                const int k = warp_sample_nibble(lg + my_b * kLogitsPerUtterance +
                                                     my_s * kNibbles * kNibbleClasses + j * kNibbleClasses,
                                                 u, lane);
                if (lane == 0) cur[(my_b * 2 + my_s) * kNibbles + j] = k;
            }
            __syncthreads();
        }

        /* (6) Outputs and trace (block 0; every head block holds the same values). */
        if (q == 0) {
            if (tid < 2 * NB && ((tid & 1) == 0 ? act0 : act1)) {
                const int *nib = cur + tid * kNibbles;
                const int u16 = (nib[0] << 12) | (nib[1] << 8) | (nib[2] << 4) | nib[3];
                p.out[(size_t)(tid >> 1) * p.T + ((tid & 1) == 0 ? t0 : t1)] = (int16_t)(u16 - 32768);
            }
            if (p.trace_h != nullptr || p.trace_logits != nullptr) write_fused_trace<NB>(p, t0, t1, ys, lg);
        }
        /* (7) The next step's input: this step's samples, or silence where a half was idle (§12). */
        if (tid < 2 * NB) {
            const bool was_active = (tid & 1) == 0 ? act0 : act1;
#pragma unroll
            for (int m = 0; m < kNibbles; ++m)
                prev[tid * kNibbles + m] = was_active ? cur[tid * kNibbles + m] : (m == 0 ? kSilenceNibble0 : 0);
        }
        __syncthreads();  /* (0) of the next step reads prev */
    }
    cluster.sync();  /* no head block exits while a sibling could still push into its shared memory */
}

/* ---- a worker block: rows [r0, r0 + nrows) of R, stage j's columns ----
 * The 2P columns of parts (0, j) and (1, j); warp wp owns rows wp, wp + 16, ...; lane 0 accumulates the four
 * stages in `part` (the same lane every stage, so no barrier) and stores rh after the last. */
template <int NB>
__device__ __forceinline__ void fused_worker_rows(const float *rw, int nrows, int H, int P, int j, const float *hs,
                                                  float *part, const float *brs, float *rh_out, int r0) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, half = H / 2;
    for (int r = warp; r < nrows; r += kWarps) {
        const float *w = rw + (size_t)r * H;
        float acc[NB];
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[b] = 0.0f;
        for (int c = lane; c < 2 * P; c += 32) {
            const int col = (c < P ? 0 : half - P) + j * P + c;
            const float wv = w[col];
#pragma unroll
            for (int b = 0; b < NB; ++b) acc[b] = fmaf(wv, hs[b * H + col], acc[b]);
        }
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[b] = warp_allsum(acc[b]);
        if (lane == 0) {
#pragma unroll
            for (int b = 0; b < NB; ++b) {
                if (j == 0) part[r * NB + b] = acc[b];
                else if (j < kNibbles - 1) part[r * NB + b] += acc[b];
                else __stcg(rh_out + (size_t)b * 3 * H + r0 + r, (part[r * NB + b] + acc[b]) + brs[r]);
            }
        }
    }
}

template <int NB>
__device__ void fused_worker_loop(const Params &p, float *smem, int w) {
    const int H = p.H, half = p.half, H3 = 3 * H, P = H / kFusedParts;
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

    const int n_steps = fused_steps(p.T);
    for (int n = 0; n + 1 < n_steps; ++n) {  /* computes rh(n + 1) from h(n) */
        const float *hslot = p.hbuf + (size_t)(n & 1) * NB * H;
        float *rh_out = p.rhbuf + (size_t)((n + 1) & 1) * NB * H3;
#pragma unroll 1
        for (int j = 0; j < kNibbles; ++j) {
            block_wait(p, p.stage_flag[j], n + 1, n, kWaitStage0 + j);
            for (int i = threadIdx.x; i < NB * 2 * P; i += kThreads) {
                const int b = i / (2 * P), c = i % (2 * P);
                const int col = (c < P ? 0 : half - P) + j * P + c;
                hs[b * H + col] = __ldcg(hslot + (size_t)b * H + col);
            }
            __syncthreads();
            fused_worker_rows<NB>(rw, nrows, H, P, j, hs, part, brs, rh_out, r0);
        }
        if (p.debug_stall_worker && w == 0 && n == 0) __syncthreads();  /* test hook: never publish rh(1) */
        else block_publish(p.rh_flags + w, n + 2);
    }
}

template <int NB>
__global__ void __launch_bounds__(kThreads, 1) wavernn_fused(const __grid_constant__ Params p) {
    extern __shared__ float4 smem4[];  /* float4: 16-byte alignment, as the plain kernel */
    float *smem = reinterpret_cast<float *>(smem4);
    cg::cluster_group cluster = cg::this_cluster();
    if (!launch_shape_ok(p, cluster) || p.nb != NB || !p.fused || p.H % kFusedParts != 0 || p.T < 2) {
        if (threadIdx.x == 0 && blockIdx.x == 0) report_error(p, kDevLaunchShape, -1, 0);
        return;
    }
    const int cluster_id = (int)cluster_id_x();
    if (cluster_id == 0) fused_head_loop<NB>(p, smem, cluster);
    else fused_worker_loop<NB>(p, smem, (cluster_id - 1) * p.cluster_size + (int)cluster.block_rank());
}

} /* namespace */
} /* namespace pwr */

int pwr_launch_fused(const pwr::Params &p, size_t smem_bytes, int cooperative, void *stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    switch (p.nb) {
    case 1: return pwr::launch_kernel(pwr::wavernn_fused<1>, p, smem_bytes, cooperative, s);
    case 2: return pwr::launch_kernel(pwr::wavernn_fused<2>, p, smem_bytes, cooperative, s);
    case 4: return pwr::launch_kernel(pwr::wavernn_fused<4>, p, smem_bytes, cooperative, s);
    default: return (int)cudaErrorInvalidValue;
    }
}

int pwr_prepare_fused_kernels(size_t smem_bytes_max) {
    int e = pwr::prepare_kernel(pwr::wavernn_fused<1>, smem_bytes_max);
    if (e == 0) e = pwr::prepare_kernel(pwr::wavernn_fused<2>, smem_bytes_max);
    if (e == 0) e = pwr::prepare_kernel(pwr::wavernn_fused<4>, smem_bytes_max);
    return e;
}

int pwr_max_active_clusters_fused(int nb, int cluster_size, size_t smem_bytes, int *n_clusters) {
    switch (nb) {
    case 1: return pwr::max_clusters_of(pwr::wavernn_fused<1>, cluster_size, smem_bytes, n_clusters);
    case 2: return pwr::max_clusters_of(pwr::wavernn_fused<2>, cluster_size, smem_bytes, n_clusters);
    case 4: return pwr::max_clusters_of(pwr::wavernn_fused<4>, cluster_size, smem_bytes, n_clusters);
    default: return (int)cudaErrorInvalidValue;
    }
}

int pwr_kernel_attributes_fused(int nb, int *regs, int *local_bytes) {
    switch (nb) {
    case 1: return pwr::attributes_of(pwr::wavernn_fused<1>, regs, local_bytes);
    case 2: return pwr::attributes_of(pwr::wavernn_fused<2>, regs, local_bytes);
    case 4: return pwr::attributes_of(pwr::wavernn_fused<4>, regs, local_bytes);
    default: return (int)cudaErrorInvalidValue;
    }
}
