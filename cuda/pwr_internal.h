/* pwr_internal.h: what the host code (pywavernn_cuda.cu) and the kernels (wavernn_persistent.cu: the plain
 * WaveRNN; wavernn_fused.cu: the Fused Subscale WaveRNN 2x, docs/format.md §12) share.
 *
 * The kernel parameters, the constants of the block shape, and the one definition of how rows are split
 * between blocks and how each block's shared memory is laid out. Host code sizes the launch from these same
 * functions that the kernel uses to find its pointers, so the two cannot disagree.
 * Not part of the ABI: only pywavernn_cuda.h is.
 *
 * Letters: H hidden units, half = H/2, K output-head hidden units, CS blocks per cluster, W worker blocks,
 * NB utterances per launch, T samples, F frames; fused model: P = H/8 units per part, N = ceil(T/2) positions.
 */
#ifndef PWR_INTERNAL_H
#define PWR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define PWR_HD __host__ __device__ __forceinline__
#else
#define PWR_HD inline
#endif

namespace pwr {

constexpr int kThreads = 512;             /* every block: 16 warps                                       */
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHidden = 2 * kThreads;  /* a head thread owns coarse unit i and fine unit half + i     */
constexpr int kClasses = 256;
constexpr int kMaxClusterSize = 16;
constexpr int kMaxBatchPerLaunch = 4;     /* kernel instantiations: NB = 1, 2, 4                          */
constexpr int kMaxWorkers = 256;          /* rh flags array length bound (one flag per worker block)      */

/* The fused model (docs/format.md §12): 2 halves x 4 nibble parts of P = H/8 units, eight 16-way heads. */
constexpr int kFusedParts = 8;
constexpr int kNibbles = 4;
constexpr int kNibbleClasses = 16;
constexpr int kFusedLag = 3;              /* half 1 runs F + 1 = 3 steps behind half 0                   */
constexpr int kFusedInputs = 14;          /* gru.W_in columns: previous nibbles 2 x 4, current 2 x 3     */
constexpr int kFusedPrevColumns = 8;
constexpr int kSilenceNibble0 = 8;        /* u = 32768 = nibbles (8, 0, 0, 0): the input where no sample */

/* Device error codes written by the kernel into err[0] (first writer wins). */
enum DeviceError : int {
    kDevOk = 0,
    kDevTimeout = 1,      /* err[1] = block, err[2] = step, err[3] = what it waited for (WaitWhat)   */
    kDevLaunchShape = 2,  /* blockDim / gridDim / cluster shape differ from the params               */
};
enum WaitWhat : int { kWaitRh = 1, kWaitYc = 2, kWaitYf = 3, kWaitStage0 = 4 /* fused: + stage j, 4..7 */ };

struct Params {
    /* model (device pointers into one packed float32 buffer) */
    int H, half, K;
    int fused;                                  /* 0: plain (§1-4); 1: fused (§12), shapes in brackets    */
    const float *R, *bR, *Win;                  /* (3H, H), (3H), (3H, 3) [(3H, 14)] */
    const float *O1, *b1, *O2, *b2;             /* (K, half), (K), (256, K), (256) [fused.O1 (8K, P), fused.b1
                                                   (8K), fused.O2 (128, K), fused.b2 (128)] */
    const float *O3, *b3, *O4, *b4;             /* plain only */
    /* this launch */
    int nb;                                     /* utterances in this launch (== template NB)            */
    int n_frames, hop, T;                       /* T = n_frames * hop                                   */
    const float *g;                             /* (nb, F, 3H)                                          */
    const float *uniforms;                      /* (nb, T, 2) [(nb, T, 4)]                              */
    int16_t *out;                               /* (nb, T)                                              */
    float *trace_h;                             /* (nb, T, H) or NULL: h after the step of sample t     */
    float *trace_logits;                        /* (nb, T, 2, 256) [(nb, T, 4, 16)] or NULL             */
    /* grid */
    int cluster_size;                           /* CS: blocks per cluster; cluster 0 is the head        */
    int n_blocks;                               /* gridDim.x = n_clusters * CS                          */
    int n_workers;                              /* W = n_blocks - CS                                    */
    /* communication through global memory (L2), reset to 0 before every launch */
    float *hbuf;                                /* (2, nb, H): h' of step t in slot t & 1               */
    float *rhbuf;                               /* (2, nb, 3H): R h(t-1) + b_R for step t in slot t & 1  */
    int *rh_flags;                              /* (W): worker w stores t + 1 once rh(t) is published   */
    int *yc_flag;                               /* head stores t + 1 once y_c(t) is published           */
    int *yf_flag;                               /* head stores t + 1 once y_f(t) is published           */
    int *stage_flag[kNibbles];                  /* fused: head stores n + 1 once stage j of step n has
                                                   published its parts (0, j) and (1, j) of h(n)        */
    int *err;                                   /* (4): DeviceError, block, step, WaitWhat              */
    long long timeout_ns;                       /* watchdog per wait                                   */
    int debug_stall_worker;                     /* test hook, see pwr_cuda_debug_set                    */
};

/* [begin, end) of part i when n items are split into `parts` contiguous parts as evenly as possible. */
PWR_HD int part_begin(int i, int n, int parts) { return (int)(((long long)i * n) / parts); }
PWR_HD int part_max(int n, int parts) { return (n + parts - 1) / parts; }
PWR_HD size_t round4(size_t n) { return (n + 3) & ~(size_t)3; } /* floats -> 16-byte multiple */

/* Shared memory of a head block (cluster 0). Offsets in floats from the dynamic shared memory base.
 * Block q of the head owns rows [part_begin(q, K, CS), ...) of O1 and O3 and rows [part_begin(q, 256, CS), ...)
 * of O2 and O4; every head block holds the full vectors it multiplies (pushed to it through DSMEM). */
struct HeadLayout {
    size_t o1, o3, o2, o4;        /* weights: rows_k * half, rows_k * half, rows_m * K, rows_m * K */
    size_t b1, b3, b2, b4;        /* the matching bias slices                                     */
    size_t ys;                    /* (NB, H): y_c | y_f of this step                              */
    size_t hid;                   /* (NB, K): relu(O1 y_c + b1), later relu(O3 y_f + b3)          */
    size_t lgc, lgf;              /* (NB, 256) logits                                             */
    size_t pscr;                  /* (NB, 256) exp(l - max l) scratch of the sampler warps        */
    size_t ints;                  /* (4 NB) int: c_cur, f_cur, c_prev, f_prev                     */
    size_t total_floats;
    int rows_k, rows_m;           /* most O1/O3 rows and O2/O4 rows of one head block             */
};

PWR_HD HeadLayout head_layout(int H, int K, int CS, int NB) {
    HeadLayout L;
    const int half = H / 2;
    L.rows_k = part_max(K, CS);
    L.rows_m = part_max(kClasses, CS);
    size_t o = 0;
    L.o1 = o; o += round4((size_t)L.rows_k * half);
    L.o3 = o; o += round4((size_t)L.rows_k * half);
    L.o2 = o; o += round4((size_t)L.rows_m * K);
    L.o4 = o; o += round4((size_t)L.rows_m * K);
    L.b1 = o; o += round4(L.rows_k);
    L.b3 = o; o += round4(L.rows_k);
    L.b2 = o; o += round4(L.rows_m);
    L.b4 = o; o += round4(L.rows_m);
    L.ys = o; o += round4((size_t)NB * H);
    L.hid = o; o += round4((size_t)NB * K);
    L.lgc = o; o += (size_t)NB * kClasses;
    L.lgf = o; o += (size_t)NB * kClasses;
    L.pscr = o; o += (size_t)NB * kClasses;
    L.ints = o; o += round4(4 * (size_t)NB);
    L.total_floats = o;
    return L;
}

/* Shared memory of a fused head block (docs/format.md §12). Block q of the head owns rows
 * [part_begin(q, K, CS), ...) of every head's O1_p (K x P) and rows [part_begin(q, 16, CS), ...) of every head's
 * O2_p (16 x K), p = 4 s + j, stored head after head. W_in is held whole but compact: part (s, j) keeps only the
 * columns it may see (the 8 previous nibbles, then its own half's current nibbles m < j; docs/format.md §12's
 * mask zeroes the rest), as [column c][gate g][unit u of the part] so that consecutive threads read consecutive
 * words. Every head block computes every gate itself, as in the plain kernel. */
struct FusedHeadLayout {
    size_t o1, o2, b1, b2;        /* 8 heads x (rows_k * P), 8 x (rows_m * K), 8 x rows_k, 8 x rows_m    */
    size_t win;                   /* compact W_in: fused_win_offset(P, s, j) + (c * 3 + g) * P + u        */
    size_t ys;                    /* (NB, H): h of this step, every block's own copy                      */
    size_t hid;                   /* (NB, 2, K): relu(O1_p y_part + b1_p) of this stage's two heads       */
    size_t lg;                    /* (NB, 2, 4, 16): logits of every (half, nibble) of this step          */
    size_t ints;                  /* (NB, 2, 4) int prev nibbles, then (NB, 2, 4) int current nibbles    */
    size_t total_floats;
    int rows_k, rows_m;           /* most O1_p rows and O2_p rows of one head block                      */
};

/* Columns part (s, j) keeps: 8 previous nibbles + its own current nibbles m < j. */
PWR_HD int fused_win_columns(int j) { return kFusedPrevColumns + j; }

/* Float offset of part (s, j) in the compact W_in: parts of half 0 then half 1, nibble 0 first. */
PWR_HD size_t fused_win_offset(int P, int s, int j) {
    size_t cols = 0;
    for (int jj = 0; jj < j; ++jj) cols += (size_t)fused_win_columns(jj);
    size_t per_half = 0;  /* 8 + 9 + 10 + 11 = 38 columns */
    for (int jj = 0; jj < kNibbles; ++jj) per_half += (size_t)fused_win_columns(jj);
    return (size_t)3 * P * ((size_t)s * per_half + cols);
}

/* The gru.W_in column of compact column c of a part of half s. */
PWR_HD int fused_win_column(int s, int c) {
    return c < kFusedPrevColumns ? c : kFusedPrevColumns + 3 * s + (c - kFusedPrevColumns);
}

PWR_HD FusedHeadLayout fused_head_layout(int H, int K, int CS, int NB) {
    FusedHeadLayout L;
    const int P = H / kFusedParts;
    L.rows_k = part_max(K, CS);
    L.rows_m = part_max(kNibbleClasses, CS);
    size_t o = 0;
    L.o1 = o; o += round4((size_t)kFusedParts * L.rows_k * P);
    L.o2 = o; o += round4((size_t)kFusedParts * L.rows_m * K);
    L.b1 = o; o += round4((size_t)kFusedParts * L.rows_k);
    L.b2 = o; o += round4((size_t)kFusedParts * L.rows_m);
    L.win = o; o += round4(fused_win_offset(P, 2, 0));
    L.ys = o; o += round4((size_t)NB * H);
    L.hid = o; o += round4((size_t)NB * 2 * K);
    L.lg = o; o += (size_t)NB * 2 * kNibbles * kNibbleClasses;
    L.ints = o; o += round4((size_t)NB * 4 * kNibbles);
    L.total_floats = o;
    return L;
}

/* The fused schedule (docs/format.md §12, pywavernn.fused): positions generated at step n, -1 where idle. */
PWR_HD int fused_positions(int T) { return (T + 1) / 2; }
PWR_HD int fused_steps(int T) { return fused_positions(T) + kFusedLag; }
PWR_HD int fused_position(int s, int n, int T) {
    const int N = fused_positions(T);
    if (s == 0) return (n >= 0 && n < N) ? n : -1;
    const int i = n - kFusedLag;
    return (i >= 0 && i < N && 2 * i + 1 < T) ? i : -1;
}

/* Shared memory of a worker block: its rows of R and b_R, the state it multiplies, its partial sums. */
struct WorkerLayout {
    size_t rw;                    /* rows * H                                                     */
    size_t brs;                   /* rows                                                         */
    size_t hs;                    /* (NB, H)                                                      */
    size_t part;                  /* (rows, NB): R[:, :half] y_c, kept until y_f arrives          */
    size_t total_floats;
    int rows;                     /* most rows of R in one worker block                           */
};

PWR_HD WorkerLayout worker_layout(int H, int n_workers, int NB) {
    WorkerLayout L;
    L.rows = part_max(3 * H, n_workers);
    size_t o = 0;
    L.rw = o; o += round4((size_t)L.rows * H);
    L.brs = o; o += round4(L.rows);
    L.hs = o; o += round4((size_t)NB * H);
    L.part = o; o += round4((size_t)L.rows * NB);
    L.total_floats = o;
    return L;
}

PWR_HD size_t smem_bytes_for(int fused, int H, int K, int CS, int n_workers, int NB) {
    const size_t a = fused ? fused_head_layout(H, K, CS, NB).total_floats : head_layout(H, K, CS, NB).total_floats;
    const size_t b = worker_layout(H, n_workers, NB).total_floats;
    return (a > b ? a : b) * sizeof(float);
}

} /* namespace pwr */

/* Each kernel (plain: wavernn_persistent.cu, fused: wavernn_fused.cu) exports the same four entry points; the
 * host (pywavernn_cuda.cu) calls those of the model's kind.
 * launch: NB = p.nb (1, 2 or 4) on `stream` with the cluster attribute and, if cooperative != 0, the cooperative
 *         attribute. Returns the launch's cudaError_t as an int (0 = success).
 * prepare: cudaFuncSetAttribute for every instantiation (max dynamic smem, non-portable cluster size).
 * max_active_clusters: cudaOccupancyMaxActiveClusters for the NB instantiation with this cluster size and smem.
 * kernel_attributes: registers per thread and local (spill) bytes of the NB instantiation, for the info struct.
 * All return a cudaError_t as int. */
int pwr_launch_persistent(const pwr::Params &p, size_t smem_bytes, int cooperative, void *stream);
int pwr_prepare_kernels(size_t smem_bytes_max);
int pwr_max_active_clusters(int nb, int cluster_size, size_t smem_bytes, int *n_clusters);
int pwr_kernel_attributes(int nb, int *regs, int *local_bytes);

int pwr_launch_fused(const pwr::Params &p, size_t smem_bytes, int cooperative, void *stream);
int pwr_prepare_fused_kernels(size_t smem_bytes_max);
int pwr_max_active_clusters_fused(int nb, int cluster_size, size_t smem_bytes, int *n_clusters);
int pwr_kernel_attributes_fused(int nb, int *regs, int *local_bytes);

#endif /* PWR_INTERNAL_H */
