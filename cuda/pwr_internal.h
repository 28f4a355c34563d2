/* pwr_internal.h: what the host code (pywavernn_cuda.cu) and the kernel (wavernn_persistent.cu) share.
 *
 * The kernel parameters, the constants of the block shape, and the one definition of how rows are split
 * between blocks and how each block's shared memory is laid out. Host code sizes the launch from these same
 * functions that the kernel uses to find its pointers, so the two cannot disagree.
 * Not part of the ABI: only pywavernn_cuda.h is.
 *
 * Letters: H hidden units, half = H/2, K output-head hidden units, CS blocks per cluster, W worker blocks,
 * NB utterances per launch, T samples, F frames.
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

/* Device error codes written by the kernel into err[0] (first writer wins). */
enum DeviceError : int {
    kDevOk = 0,
    kDevTimeout = 1,      /* err[1] = block, err[2] = step, err[3] = what it waited for (WaitWhat)   */
    kDevLaunchShape = 2,  /* blockDim / gridDim / cluster shape differ from the params               */
};
enum WaitWhat : int { kWaitRh = 1, kWaitYc = 2, kWaitYf = 3 };

struct Params {
    /* model (device pointers into one packed float32 buffer) */
    int H, half, K;
    const float *R, *bR, *Win;                  /* (3H, H), (3H), (3H, 3) */
    const float *O1, *b1, *O2, *b2;             /* (K, half), (K), (256, K), (256) */
    const float *O3, *b3, *O4, *b4;
    /* this launch */
    int nb;                                     /* utterances in this launch (== template NB)            */
    int n_frames, hop, T;                       /* T = n_frames * hop                                   */
    const float *g;                             /* (nb, F, 3H)                                          */
    const float *uniforms;                      /* (nb, T, 2)                                           */
    int16_t *out;                               /* (nb, T)                                              */
    float *trace_h;                             /* (nb, T, H) or NULL                                   */
    float *trace_logits;                        /* (nb, T, 2, 256) or NULL                              */
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

PWR_HD size_t smem_bytes_for(int H, int K, int CS, int n_workers, int NB) {
    const size_t a = head_layout(H, K, CS, NB).total_floats, b = worker_layout(H, n_workers, NB).total_floats;
    return (a > b ? a : b) * sizeof(float);
}

} /* namespace pwr */

/* Launches the persistent kernel for NB = p.nb (1, 2 or 4) on `stream` with the cluster attribute and, if
 * cooperative != 0, the cooperative attribute. Returns the launch's cudaError_t as an int (0 = success). */
int pwr_launch_persistent(const pwr::Params &p, size_t smem_bytes, int cooperative, void *stream);

/* cudaFuncSetAttribute for every instantiation (max dynamic smem, non-portable cluster size); cudaError_t. */
int pwr_prepare_kernels(size_t smem_bytes_max);

/* cudaOccupancyMaxActiveClusters for the NB instantiation with this cluster size and smem; cudaError_t. */
int pwr_max_active_clusters(int nb, int cluster_size, size_t smem_bytes, int *n_clusters);

/* Registers per thread and local (spill) bytes of the NB instantiation, for the info struct; cudaError_t. */
int pwr_kernel_attributes(int nb, int *regs, int *local_bytes);

#endif /* PWR_INTERNAL_H */
