/* pywavernn_cuda.h: the C ABI of pywavernn's CUDA sampler (a persistent-kernel WaveRNN, paper §2.1).
 *
 * What it is: an opaque sampler built once from a model's dense float32 weights (docs/format.md §6), then
 * asked to generate int16 audio from the frame-rate gate conditioning g (F, 3H) and caller-drawn uniforms
 * (T, 2), T = F * hop, following docs/format.md §1-4 exactly (same upsampling, same sampling rule).
 * Two model kinds (model_kind): the plain WaveRNN (§1-4) and the Fused Subscale WaveRNN 2x (§12: one GRU state
 * in two halves, 32 bits per step, uniforms (T, 4), one per nibble of each sample by true time).
 * What it is not: the conditioning network (it runs on the host, pywavernn.conditioning.conditioning), a
 * block-sparse kernel (dense only for now; see cuda/README.md), or a streaming API (one call = whole utterances).
 *
 * Every function returns a status code (pwr_cuda_status); nothing in the library calls exit() or prints.
 * After a failure, pwr_cuda_last_error() holds a one-line detail (CUDA call, file:line, device error) for the
 * calling thread. A sampler may be used by one thread at a time; distinct samplers are independent.
 *
 * Letters: H hidden units (half = H/2), K output-head hidden units (out_hidden), F frames, hop samples per
 * frame, T = F * hop samples, B utterances in a batch.
 *
 * Build: make -C cuda lib   ->  cuda/build/libpywavernn_cuda.so   (loaded by pywavernn/engines/cuda.py)
 */
#ifndef PYWAVERNN_CUDA_H
#define PYWAVERNN_CUDA_H

#include <stdint.h>

/* The library is built with -fvisibility=hidden; only these functions are exported. */
#if defined(__GNUC__)
#define PWR_CUDA_API __attribute__((visibility("default")))
#else
#define PWR_CUDA_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define PWR_CUDA_ABI_VERSION 2  /* 2: model_kind and the fused model (docs/format.md §12) */

/* pwr_cuda_model_desc.model_kind */
#define PWR_CUDA_MODEL_PLAIN 0  /* docs/format.md §1-4: out_* weights, W_in (3H, 3), uniforms (T, 2)            */
#define PWR_CUDA_MODEL_FUSED 1  /* docs/format.md §12: fused_* weights, W_in (3H, 14), uniforms (T, 4), H % 8 == 0 */

typedef enum pwr_cuda_status {
    PWR_CUDA_OK = 0,
    PWR_CUDA_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a bad size, a W_in mask violation, ...           */
    PWR_CUDA_ERR_UNSUPPORTED = 2,      /* model or device outside the compiled limits (pwr_cuda_limits) */
    PWR_CUDA_ERR_NO_DEVICE = 3,        /* no CUDA driver or no CUDA device                                 */
    PWR_CUDA_ERR_OUT_OF_MEMORY = 4,    /* device (or host) allocation failed                               */
    PWR_CUDA_ERR_CUDA = 5,             /* any other CUDA runtime error; detail in pwr_cuda_last_error()    */
    PWR_CUDA_ERR_TIMEOUT = 6,          /* the kernel's watchdog fired: blocks waited > timeout for a peer  */
    PWR_CUDA_ERR_DEVICE_CHECK = 7      /* the kernel refused its launch shape (a library bug, never input) */
} pwr_cuda_status;

/* The model (host pointers to dense, C-contiguous float32 arrays named as in docs/format.md §6 and §12) plus
 * run options. Read only during pwr_cuda_create; the sampler keeps its own device copy. A plain model needs
 * the out_* pointers (fused_* are ignored), a fused model the fused_* pointers (out_* are ignored). */
typedef struct pwr_cuda_model_desc {
    int abi_version;          /* must be PWR_CUDA_ABI_VERSION                                              */
    int hidden_size;          /* H: even, 2 <= H <= limits.max_hidden (fused: a multiple of 8, >= 8)       */
    int out_hidden;           /* K: >= 1; the largest K that fits depends on H and the device's shared memory */
    int device;               /* CUDA device ordinal; -1: the calling thread's current device              */
    int cluster_size;         /* blocks per thread-block cluster: 0 = automatic (16, else 8), or 8 or 16    */
    int timeout_ms;           /* watchdog per wait inside the kernel; 0 = default (2000 ms)                */
    int model_kind;           /* PWR_CUDA_MODEL_PLAIN or PWR_CUDA_MODEL_FUSED                              */
    const float *gru_R;       /* (3H, H), gate rows [u | r | e]                                            */
    const float *gru_b_R;     /* (3H,)                                                                     */
    const float *gru_W_in;    /* plain (3H, 3): column 2 zero in the coarse rows g*H + j, j < H/2;
                                 fused (3H, 14): zero where pywavernn.fused.input_mask is false (§12)      */
    const float *out_O1;      /* (K, H/2) */
    const float *out_b1;      /* (K,)     */
    const float *out_O2;      /* (256, K) */
    const float *out_b2;      /* (256,)   */
    const float *out_O3;      /* (K, H/2) */
    const float *out_b3;      /* (K,)     */
    const float *out_O4;      /* (256, K) */
    const float *out_b4;      /* (256,)   */
    const float *fused_O1;    /* (8K, H/8): head p = 4 s + j in rows [p K, (p + 1) K)  */
    const float *fused_b1;    /* (8K,)                                                 */
    const float *fused_O2;    /* (128, K): head p's 16 logits in rows [16 p, 16 p + 16) */
    const float *fused_b2;    /* (128,)                                                */
} pwr_cuda_model_desc;

/* What this build supports, independent of any device. */
typedef struct pwr_cuda_limits_info {
    int abi_version;             /* PWR_CUDA_ABI_VERSION                                                  */
    int max_hidden;              /* largest H (one head thread per coarse/fine unit pair: 2 * threads)     */
    int hidden_multiple;         /* H must be a multiple of this                                          */
    int n_classes;               /* 256                                                                   */
    int max_batch_per_launch;    /* utterances per kernel launch; larger batches run as several launches   */
    int threads_per_block;       /* 512                                                                   */
    int max_cluster_size;        /* 16 (non-portable on Hopper; 8 is the portable fallback)               */
    int weight_bytes;            /* 4: weights stored as float32 in shared memory, float32 arithmetic      */
    int n_block_shapes;          /* block-sparse shapes with a kernel: 0 (dense only in this version)     */
    int block_shapes[4][2];      /* (BH, BW) of each, unused entries 0                                    */
    int min_compute_capability;  /* 90: thread-block clusters and distributed shared memory               */
    char compiled_arch[16];      /* the ARCH the library was built for, e.g. "sm_90"                       */
    int model_kinds;             /* bit PWR_CUDA_MODEL_*: the kinds this build runs (plain and fused: 3)   */
    int fused_hidden_multiple;   /* 8: a fused model's H is a multiple of this (2 halves x 4 parts)        */
} pwr_cuda_limits_info;

/* How a sampler was laid out on its device (for benchmarks and bug reports). */
typedef struct pwr_cuda_sampler_info {
    char device_name[128];
    int compute_capability;      /* e.g. 90 */
    int multiprocessors;
    int cluster_size;            /* blocks per cluster (the head cluster and each worker cluster)         */
    int n_clusters;              /* 1 head cluster + (n_clusters - 1) worker clusters                     */
    int n_worker_blocks;         /* blocks that hold rows of R                                           */
    int worker_rows_max;         /* most rows of R in one worker block                                   */
    int smem_bytes[3];           /* dynamic shared memory per block for batch-per-launch 1, 2, 4          */
    int max_smem_per_block;      /* the device's opt-in limit                                            */
    int max_batch_per_launch;    /* 4, or less where a block's shared memory cannot hold 4 utterances     */
    int registers_per_thread;    /* of the kernel instantiation for max_batch_per_launch                  */
    int local_bytes_per_thread;  /* spills/stack of that instantiation (0 expected)                       */
    int cooperative;             /* 1: the driver accepted the cooperative attribute with clusters (it then
                                    guarantees co-residency); 0: refused or disabled (PYWAVERNN_CUDA_COOPERATIVE=0),
                                    the grid is sized by occupancy and guarded by the watchdog; -1: no launch yet */
    int model_kind;              /* PWR_CUDA_MODEL_PLAIN or PWR_CUDA_MODEL_FUSED                          */
} pwr_cuda_sampler_info;

typedef struct pwr_cuda_sampler pwr_cuda_sampler;

/* Fills *out with this build's limits. Never fails unless out is NULL. */
PWR_CUDA_API int pwr_cuda_limits(pwr_cuda_limits_info *out);

/* Number of CUDA devices; PWR_CUDA_ERR_NO_DEVICE (and *count = 0) without a driver or device. */
PWR_CUDA_API int pwr_cuda_device_count(int *count);

/* A static, human-readable name for a status code. */
PWR_CUDA_API const char *pwr_cuda_status_string(int status);

/* One line about the calling thread's most recent failure ("" if none). Valid until the next call. */
PWR_CUDA_API const char *pwr_cuda_last_error(void);

/* Build a sampler: checks the description, picks the cluster layout for the device, uploads the weights. */
PWR_CUDA_API int pwr_cuda_create(const pwr_cuda_model_desc *desc, pwr_cuda_sampler **out);

/* Frees everything; NULL is allowed. */
PWR_CUDA_API void pwr_cuda_destroy(pwr_cuda_sampler *sampler);

PWR_CUDA_API int pwr_cuda_sampler_get_info(const pwr_cuda_sampler *sampler, pwr_cuda_sampler_info *out);

/* Generate `batch` utterances of T = n_frames * hop samples each (synchronous; host pointers):
 *   g        (batch, n_frames, 3H) float32, the gate conditioning of docs/format.md §2 (frame rate)
 *   uniforms plain: (batch, T, 2) float32 in [0, 1): (u_coarse, u_fine) per sample (docs/format.md §4);
 *            fused: (batch, T, 4): row t for sample t, column j for its nibble j (docs/format.md §12)
 *   out      (batch, T) int16 samples (a fused model needs T >= 2: one fold of B = 2)
 * Each utterance starts from h = 0, previous sample s = 0, and is exactly what one would get alone. */
PWR_CUDA_API int pwr_cuda_generate(pwr_cuda_sampler *sampler, const float *g, int n_frames, int hop, const float *uniforms,
                      int16_t *out, int batch);

/* As pwr_cuda_generate, also writing per-step state for tests (either trace may be NULL):
 *   trace_h      (batch, T, H) float32: h after the step that generated sample t (plain: [y_c | y_f])
 *   trace_logits plain: (batch, T, 2, 256) float32: logits_c, logits_f of sample t;
 *                fused: (batch, T, 4, 16): the logits of sample t's four nibbles (pywavernn.reference.fused's
 *                trace, by true time) */
PWR_CUDA_API int pwr_cuda_generate_trace(pwr_cuda_sampler *sampler, const float *g, int n_frames, int hop,
                            const float *uniforms, int16_t *out, int batch, float *trace_h, float *trace_logits);

/* Test hooks (not for production use).
 * poison_byte >= 0: before each launch the device output buffers are filled with this byte, so a test that
 *                   runs twice with different bytes and gets equal results knows every element was written.
 * stall_worker = 1: worker block 0 never publishes its rows for step 1, so the head's watchdog must fire and
 *                   the call must return PWR_CUDA_ERR_TIMEOUT (tests the abort path; set timeout_ms small). */
PWR_CUDA_API int pwr_cuda_debug_set(pwr_cuda_sampler *sampler, int poison_byte, int stall_worker);

#ifdef __cplusplus
}
#endif

#endif /* PYWAVERNN_CUDA_H */
