/* pywavernn_cuda.cu: the host side of the C ABI in pywavernn_cuda.h.
 *
 * What it is: argument checks, the choice of grid layout for the device (cluster size, number of worker blocks,
 * shared memory per block), weight upload, device buffers, the launch (batch split into launches of 4, 2, 1
 * utterances) and the mapping of every CUDA error to a status code with a file:line detail, for both model
 * kinds (plain: docs/format.md §1-4; fused: §12).
 * What it is not: the kernels (wavernn_persistent.cu, wavernn_fused.cu) or the maths (docs/format.md).
 * Every CUDA call goes through PWR_TRY / PWR_TRY_LAUNCH; nothing here prints or exits.
 *
 * Letters: H hidden units, K output-head hidden units, CS cluster size, W worker blocks, NB utterances per launch.
 */
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "pwr_internal.h"
#include "pywavernn_cuda.h"

#ifndef PWR_CUDA_ARCH_STR
#define PWR_CUDA_ARCH_STR "unknown"
#endif

namespace {

thread_local char g_detail[512];

int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_detail, sizeof g_detail, fmt, ap);
    va_end(ap);
    return status;
}

int status_of(cudaError_t e) {
    switch (e) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInitializationError:
    case cudaErrorStubLibrary:
    case cudaErrorDevicesUnavailable: return PWR_CUDA_ERR_NO_DEVICE;
    case cudaErrorMemoryAllocation: return PWR_CUDA_ERR_OUT_OF_MEMORY;
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInvalidDeviceFunction: return PWR_CUDA_ERR_UNSUPPORTED;
    default: return PWR_CUDA_ERR_CUDA;
    }
}

int cuda_fail(cudaError_t e, const char *call, const char *file, int line) {
    return fail(status_of(e), "%s failed at %s:%d: %s (%s)", call, file, line, cudaGetErrorName(e),
                cudaGetErrorString(e));
}

#define PWR_TRY(call)                                                                                       \
    do {                                                                                                    \
        const cudaError_t e_ = (call);                                                                      \
        if (e_ != cudaSuccess) return cuda_fail(e_, #call, __FILE__, __LINE__);                             \
    } while (0)

/* For the helpers in wavernn_persistent.cu that return a cudaError_t as int. */
#define PWR_TRY_INT(call) PWR_TRY(static_cast<cudaError_t>(call))

/* rh_flags[0..255] | yc @256 | yf @288 | err[4] @320 | fused stage flags 2, 3 @352, @384 (stages 0, 1 share
 * yc's and yf's words: a sampler runs one kind): each on its own 128-byte line. */
constexpr int kFlagsInts = 416;
constexpr int kYcAt = 256, kYfAt = 288, kErrAt = 320;
constexpr int kStageAt[pwr::kNibbles] = {kYcAt, kYfAt, 352, 384};
constexpr int kDefaultTimeoutMs = 2000;
constexpr int kNbChoices[3] = {1, 2, 4};

int nb_index(int nb) { return nb == 4 ? 2 : nb - 1; }

template <typename T>
int grow(T **ptr, size_t *cap, size_t n) {
    if (n <= *cap) return PWR_CUDA_OK;
    if (*ptr != nullptr) PWR_TRY(cudaFree(*ptr));
    *ptr = nullptr;
    *cap = 0;
    PWR_TRY(cudaMalloc(reinterpret_cast<void **>(ptr), n * sizeof(T)));
    *cap = n;
    return PWR_CUDA_OK;
}

}  // namespace

struct pwr_cuda_sampler {
    int device = 0;
    int H = 0, K = 0;
    int fused = 0;         /* model_kind == PWR_CUDA_MODEL_FUSED */
    int cluster_size = 0, n_clusters = 0, n_workers = 0, nb_max = 0;
    size_t smem[3] = {0, 0, 0};
    int cooperative = -1;  /* -1 not yet launched, 1 accepted, 0 refused or disabled */
    long long timeout_ns = 0;
    int poison = -1, stall_worker = 0;
    cudaStream_t stream = nullptr;
    float *weights = nullptr;
    pwr::Params model{}; /* the model pointers, filled once */
    float *hbuf = nullptr, *rhbuf = nullptr;
    int *flags = nullptr;
    float *g = nullptr, *u = nullptr, *trace_h = nullptr, *trace_logits = nullptr;
    int16_t *out = nullptr;
    size_t g_cap = 0, u_cap = 0, out_cap = 0, th_cap = 0, tl_cap = 0;
    pwr_cuda_sampler_info info{};
};

extern "C" {

const char *pwr_cuda_status_string(int status) {
    switch (status) {
    case PWR_CUDA_OK: return "ok";
    case PWR_CUDA_ERR_INVALID_ARGUMENT: return "invalid argument";
    case PWR_CUDA_ERR_UNSUPPORTED: return "unsupported model or device";
    case PWR_CUDA_ERR_NO_DEVICE: return "no CUDA device";
    case PWR_CUDA_ERR_OUT_OF_MEMORY: return "out of memory";
    case PWR_CUDA_ERR_CUDA: return "CUDA error";
    case PWR_CUDA_ERR_TIMEOUT: return "kernel watchdog timeout";
    case PWR_CUDA_ERR_DEVICE_CHECK: return "kernel refused its launch shape";
    default: return "unknown status";
    }
}

const char *pwr_cuda_last_error(void) { return g_detail; }

int pwr_cuda_limits(pwr_cuda_limits_info *out) {
    if (out == nullptr) return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "pwr_cuda_limits: out is NULL");
    std::memset(out, 0, sizeof *out);
    out->abi_version = PWR_CUDA_ABI_VERSION;
    out->max_hidden = pwr::kMaxHidden;
    out->hidden_multiple = 2;
    out->n_classes = pwr::kClasses;
    out->max_batch_per_launch = pwr::kMaxBatchPerLaunch;
    out->threads_per_block = pwr::kThreads;
    out->max_cluster_size = pwr::kMaxClusterSize;
    out->weight_bytes = 4;
    out->n_block_shapes = 0;
    out->min_compute_capability = 90;
    std::snprintf(out->compiled_arch, sizeof out->compiled_arch, "%s", PWR_CUDA_ARCH_STR);
    out->model_kinds = (1 << PWR_CUDA_MODEL_PLAIN) | (1 << PWR_CUDA_MODEL_FUSED);
    out->fused_hidden_multiple = pwr::kFusedParts;
    return PWR_CUDA_OK;
}

int pwr_cuda_device_count(int *count) {
    if (count == nullptr) return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "pwr_cuda_device_count: count is NULL");
    *count = 0;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* not sticky; leave no error behind for the caller's next CUDA call */
        return fail(PWR_CUDA_ERR_NO_DEVICE, "no CUDA device: cudaGetDeviceCount: %s (%s)", cudaGetErrorName(e),
                    cudaGetErrorString(e));
    }
    if (n == 0) return fail(PWR_CUDA_ERR_NO_DEVICE, "no CUDA device: cudaGetDeviceCount returned 0");
    *count = n;
    return PWR_CUDA_OK;
}

}  // extern "C"

namespace {

/* The fused input mask (docs/format.md §12, pywavernn.fused.input_mask): column 8 + 3 s + m (nibble m of the
 * current sample of half s) may be nonzero only in the rows of parts (s, j) with j > m. The kernel skips every
 * other current-nibble column, so a model that breaks the mask would silently compute something else. */
int check_fused_mask(const float *w_in, int H) {
    const int P = H / pwr::kFusedParts, half = H / 2;
    for (int g = 0; g < 3; ++g)
        for (int unit = 0; unit < H; ++unit) {
            const int s = unit / half, j = (unit % half) / P, row = g * H + unit;
            for (int col = pwr::kFusedPrevColumns; col < pwr::kFusedInputs; ++col) {
                const int owner = (col - pwr::kFusedPrevColumns) / 3, m = (col - pwr::kFusedPrevColumns) % 3;
                const float v = w_in[(size_t)row * pwr::kFusedInputs + col];
                if (v != 0.0f && !(owner == s && j > m))
                    return fail(PWR_CUDA_ERR_INVALID_ARGUMENT,
                                "gru_W_in[%d, %d] = %g: a fused part (half %d, nibble %d) may not see nibble %d of "
                                "half %d's current sample; that weight must be zero (docs/format.md §12)", row, col,
                                (double)v, s, j, m, owner);
            }
        }
    return PWR_CUDA_OK;
}

int check_desc(const pwr_cuda_model_desc *d) {
    if (d->abi_version != PWR_CUDA_ABI_VERSION)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "abi_version %d, this library is ABI %d", d->abi_version,
                    PWR_CUDA_ABI_VERSION);
    if (d->model_kind != PWR_CUDA_MODEL_PLAIN && d->model_kind != PWR_CUDA_MODEL_FUSED)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "model_kind: expected %d (plain) or %d (fused), got %d",
                    PWR_CUDA_MODEL_PLAIN, PWR_CUDA_MODEL_FUSED, d->model_kind);
    const bool fused = d->model_kind == PWR_CUDA_MODEL_FUSED;
    const int H = d->hidden_size, K = d->out_hidden;
    if (H < 2 || H % 2 != 0)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "hidden_size: expected an even number >= 2, got %d", H);
    if (fused && H % pwr::kFusedParts != 0)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "hidden_size: a fused model's state is 2 halves x 4 parts, so H "
                    "must be a multiple of %d, got %d", pwr::kFusedParts, H);
    if (H > pwr::kMaxHidden)
        return fail(PWR_CUDA_ERR_UNSUPPORTED, "hidden_size %d > %d, the largest this build supports", H,
                    pwr::kMaxHidden);
    if (K < 1) return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "out_hidden: expected >= 1, got %d", K);
    if (d->cluster_size != 0 && d->cluster_size != 8 && d->cluster_size != 16)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "cluster_size: expected 0 (auto), 8 or 16, got %d",
                    d->cluster_size);
    if (d->timeout_ms < 0) return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "timeout_ms: expected >= 0");
    const float *ptrs[] = {d->gru_R,  d->gru_b_R, d->gru_W_in, d->out_O1, d->out_b1,  d->out_O2,  d->out_b2,
                           d->out_O3, d->out_b3,  d->out_O4,   d->out_b4, d->fused_O1, d->fused_b1, d->fused_O2,
                           d->fused_b2};
    const char *names[] = {"gru_R",  "gru_b_R", "gru_W_in", "out_O1", "out_b1",   "out_O2",   "out_b2",  "out_O3",
                           "out_b3", "out_O4",  "out_b4",   "fused_O1", "fused_b1", "fused_O2", "fused_b2"};
    for (int i = 0; i < 15; ++i) {
        const bool needed = i < 3 || (fused ? i >= 11 : i < 11);
        if (needed && ptrs[i] == nullptr)
            return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "%s is NULL (a %s model needs it)", names[i],
                        fused ? "fused" : "plain");
    }
    if (fused) return check_fused_mask(d->gru_W_in, H);
    /* The input mask (docs/format.md §3): the kernel never reads column 2 of the coarse rows, so a model that
     * breaks the mask would silently compute something else. */
    for (int g = 0; g < 3; ++g)
        for (int j = 0; j < H / 2; ++j)
            if (d->gru_W_in[(size_t)(g * H + j) * 3 + 2] != 0.0f)
                return fail(PWR_CUDA_ERR_INVALID_ARGUMENT,
                            "gru_W_in[%d, 2] = %g: column 2 must be zero in the coarse rows (docs/format.md §3)",
                            g * H + j, (double)d->gru_W_in[(size_t)(g * H + j) * 3 + 2]);
    return PWR_CUDA_OK;
}

/* The kernel entry points of the sampler's model kind (pwr_internal.h). */
int kernel_attributes(const pwr_cuda_sampler *s, int nb, int *regs, int *lmem) {
    return s->fused ? pwr_kernel_attributes_fused(nb, regs, lmem) : pwr_kernel_attributes(nb, regs, lmem);
}
int prepare_kernels(const pwr_cuda_sampler *s, size_t smem_max) {
    return s->fused ? pwr_prepare_fused_kernels(smem_max) : pwr_prepare_kernels(smem_max);
}
int max_active_clusters(const pwr_cuda_sampler *s, int nb, int cs, size_t smem, int *n) {
    return s->fused ? pwr_max_active_clusters_fused(nb, cs, smem, n) : pwr_max_active_clusters(nb, cs, smem, n);
}
int launch_kernel(const pwr_cuda_sampler *s, const pwr::Params &p, size_t smem, int cooperative) {
    return s->fused ? pwr_launch_fused(p, smem, cooperative, s->stream)
                    : pwr_launch_persistent(p, smem, cooperative, s->stream);
}

/* Picks the cluster size and grid for this device; fills s->cluster_size, n_clusters, n_workers, smem, nb_max. */
int plan_grid(pwr_cuda_sampler *s, int requested_cs) {
    const int dev = s->device;
    int major = 0, minor = 0, sms = 0, cluster_ok = 0, smem_optin = 0;
    PWR_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    PWR_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    PWR_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    PWR_TRY(cudaDeviceGetAttribute(&cluster_ok, cudaDevAttrClusterLaunch, dev));
    PWR_TRY(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    cudaDeviceProp prop;
    PWR_TRY(cudaGetDeviceProperties(&prop, dev));
    std::snprintf(s->info.device_name, sizeof s->info.device_name, "%.127s", prop.name);
    s->info.compute_capability = 10 * major + minor;
    s->info.multiprocessors = sms;
    s->info.max_smem_per_block = smem_optin;
    if (major < 9 || !cluster_ok)
        return fail(PWR_CUDA_ERR_UNSUPPORTED,
                    "device %d (%s) is compute capability %d.%d; the persistent kernel needs >= 9.0 "
                    "(thread-block clusters)", dev, prop.name, major, minor);
    int regs = 0, lmem = 0;
    const int e = kernel_attributes(s, 1, &regs, &lmem);
    if (e != 0) {
        cudaGetLastError();
        return fail(status_of(static_cast<cudaError_t>(e)),
                    "the kernel cannot run on device %d (%s, sm_%d%d): %s; this library was built for %s "
                    "(rebuild with make -C cuda ARCH=sm_%d%d)", dev, prop.name, major, minor,
                    cudaGetErrorString(static_cast<cudaError_t>(e)), PWR_CUDA_ARCH_STR, major, minor);
    }
    PWR_TRY_INT(prepare_kernels(s, (size_t)smem_optin));

    /* Every candidate cluster size that fits; the one with the most blocks wins (ties: more utterances per
     * launch, then the larger cluster, whose head blocks hold smaller slices of O1..O4). Which GPCs have 16
     * free SMs varies from chip to chip, so 16 can cost whole worker clusters; the bench's --cluster compares. */
    const int candidates[2] = {requested_cs != 0 ? requested_cs : 16, 8};
    const int n_candidates = requested_cs != 0 ? 1 : 2;
    bool found = false;
    for (int ci = 0; ci < n_candidates; ++ci) {
        const int cs = candidates[ci];
        int n_clusters = sms / cs;
        bool launchable = true;
        for (int nb : kNbChoices) {
            int n = 0;
            const int oe = max_active_clusters(s, nb, cs, (size_t)smem_optin, &n);
            if (oe != 0) { cudaGetLastError(); launchable = false; break; }
            if (n < n_clusters) n_clusters = n;
        }
        while (n_clusters > 1 && (n_clusters - 1) * cs > pwr::kMaxWorkers) --n_clusters;
        if (!launchable || n_clusters < 2) {
            if (!found)
                fail(PWR_CUDA_ERR_UNSUPPORTED, "cluster size %d: only %d cluster(s) of 512-thread blocks fit on %s "
                     "(need a head cluster and at least one worker cluster)", cs, n_clusters, prop.name);
            continue;
        }
        const int workers = (n_clusters - 1) * cs;
        size_t smem[3];
        int nb_max = 0;
        for (int nb : kNbChoices) {
            smem[nb_index(nb)] = pwr::smem_bytes_for(s->fused, s->H, s->K, cs, workers, nb);
            if (smem[nb_index(nb)] <= (size_t)smem_optin) nb_max = nb;
        }
        if (nb_max == 0) {
            if (!found)
                fail(PWR_CUDA_ERR_UNSUPPORTED, "H=%d, K=%d: a block needs %zu bytes of shared memory with cluster "
                     "size %d and %d workers; %s allows %d", s->H, s->K, smem[0], cs, workers, prop.name,
                     smem_optin);
            continue;
        }
        const int blocks = n_clusters * cs, best_blocks = s->n_clusters * s->cluster_size;
        if (found && (blocks < best_blocks || (blocks == best_blocks && nb_max <= s->nb_max))) continue;
        found = true;
        s->cluster_size = cs;
        s->n_clusters = n_clusters;
        s->n_workers = workers;
        s->nb_max = nb_max;
        for (int i = 0; i < 3; ++i) s->smem[i] = smem[i];
    }
    return found ? PWR_CUDA_OK : PWR_CUDA_ERR_UNSUPPORTED; /* if not found, the detail names the last failure */
}

/* Packs the weights into one device buffer and points s->model at the pieces (a fused model's fused_* go
 * where the plain model's O1, b1, O2, b2 go; O3..b4 stay NULL). */
int upload_weights(pwr_cuda_sampler *s, const pwr_cuda_model_desc *d) {
    const size_t H = (size_t)s->H, half = H / 2, K = (size_t)s->K, C = pwr::kClasses;
    const size_t heads = pwr::kFusedParts, P = H / pwr::kFusedParts, NC = pwr::kNibbleClasses;
    struct Piece { const float *src; size_t n; const float **dst; };
    pwr::Params &m = s->model;
    const Piece plain[] = {
        {d->gru_R, 3 * H * H, &m.R},   {d->gru_b_R, 3 * H, &m.bR}, {d->gru_W_in, 9 * H, &m.Win},
        {d->out_O1, K * half, &m.O1}, {d->out_b1, K, &m.b1},      {d->out_O2, C * K, &m.O2},
        {d->out_b2, C, &m.b2},        {d->out_O3, K * half, &m.O3}, {d->out_b3, K, &m.b3},
        {d->out_O4, C * K, &m.O4},    {d->out_b4, C, &m.b4},
    };
    const Piece fused[] = {
        {d->gru_R, 3 * H * H, &m.R},          {d->gru_b_R, 3 * H, &m.bR},
        {d->gru_W_in, 3 * H * pwr::kFusedInputs, &m.Win},
        {d->fused_O1, heads * K * P, &m.O1}, {d->fused_b1, heads * K, &m.b1},
        {d->fused_O2, heads * NC * K, &m.O2}, {d->fused_b2, heads * NC, &m.b2},
    };
    const Piece *pieces = s->fused ? fused : plain;
    const int n_pieces = s->fused ? 7 : 11;
    size_t total = 0;
    for (int i = 0; i < n_pieces; ++i) total += pwr::round4(pieces[i].n);
    PWR_TRY(cudaMalloc(reinterpret_cast<void **>(&s->weights), total * sizeof(float)));
    size_t off = 0;
    for (int i = 0; i < n_pieces; ++i) {
        PWR_TRY(cudaMemcpy(s->weights + off, pieces[i].src, pieces[i].n * sizeof(float), cudaMemcpyHostToDevice));
        *pieces[i].dst = s->weights + off;
        off += pwr::round4(pieces[i].n);
    }
    m.H = s->H;
    m.half = s->H / 2;
    m.K = s->K;
    m.fused = s->fused;
    return PWR_CUDA_OK;
}

int create_impl(const pwr_cuda_model_desc *d, pwr_cuda_sampler *s) {
    int st = check_desc(d);
    if (st != PWR_CUDA_OK) return st;
    int n_dev = 0;
    st = pwr_cuda_device_count(&n_dev);
    if (st != PWR_CUDA_OK) return st;
    if (d->device >= 0) {
        if (d->device >= n_dev)
            return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "device %d: only %d CUDA device(s)", d->device, n_dev);
        s->device = d->device;
        PWR_TRY(cudaSetDevice(s->device));
    } else {
        PWR_TRY(cudaGetDevice(&s->device));
    }
    s->H = d->hidden_size;
    s->K = d->out_hidden;
    s->fused = d->model_kind == PWR_CUDA_MODEL_FUSED;
    s->timeout_ns = (long long)(d->timeout_ms > 0 ? d->timeout_ms : kDefaultTimeoutMs) * 1000000LL;
    const char *coop_env = std::getenv("PYWAVERNN_CUDA_COOPERATIVE");
    if (coop_env != nullptr && std::strcmp(coop_env, "0") == 0) s->cooperative = 0;
    st = plan_grid(s, d->cluster_size);
    if (st != PWR_CUDA_OK) return st;
    PWR_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    st = upload_weights(s, d);
    if (st != PWR_CUDA_OK) return st;
    PWR_TRY(cudaMalloc(reinterpret_cast<void **>(&s->hbuf), 2 * pwr::kMaxBatchPerLaunch * (size_t)s->H * 4));
    PWR_TRY(cudaMalloc(reinterpret_cast<void **>(&s->rhbuf), 2 * pwr::kMaxBatchPerLaunch * 3 * (size_t)s->H * 4));
    PWR_TRY(cudaMalloc(reinterpret_cast<void **>(&s->flags), kFlagsInts * sizeof(int)));
    int regs = 0, lmem = 0;
    PWR_TRY_INT(kernel_attributes(s, s->nb_max, &regs, &lmem));
    s->info.cluster_size = s->cluster_size;
    s->info.n_clusters = s->n_clusters;
    s->info.n_worker_blocks = s->n_workers;
    s->info.worker_rows_max = pwr::part_max(3 * s->H, s->n_workers);
    for (int i = 0; i < 3; ++i) s->info.smem_bytes[i] = (int)s->smem[i];
    s->info.cooperative = s->cooperative;
    s->info.max_batch_per_launch = s->nb_max;
    s->info.registers_per_thread = regs;
    s->info.local_bytes_per_thread = lmem;
    s->info.model_kind = s->fused ? PWR_CUDA_MODEL_FUSED : PWR_CUDA_MODEL_PLAIN;
    return PWR_CUDA_OK;
}

}  // namespace

extern "C" {

int pwr_cuda_create(const pwr_cuda_model_desc *desc, pwr_cuda_sampler **out) {
    g_detail[0] = '\0';
    if (desc == nullptr || out == nullptr)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "pwr_cuda_create: desc and out must not be NULL");
    *out = nullptr;
    pwr_cuda_sampler *s = new (std::nothrow) pwr_cuda_sampler();
    if (s == nullptr) return fail(PWR_CUDA_ERR_OUT_OF_MEMORY, "pwr_cuda_create: host allocation failed");
    const int st = create_impl(desc, s);
    if (st != PWR_CUDA_OK) {
        pwr_cuda_destroy(s); /* keeps g_detail: destroy does not touch it */
        return st;
    }
    *out = s;
    g_detail[0] = '\0'; /* a cluster size that did not fit is not an error once another did */
    return PWR_CUDA_OK;
}

void pwr_cuda_destroy(pwr_cuda_sampler *s) {
    if (s == nullptr) return;
    /* Best effort: errors while freeing cannot be reported and must not mask the caller's own status. */
    int prev = 0;
    if (cudaGetDevice(&prev) == cudaSuccess && prev != s->device) cudaSetDevice(s->device);
    if (s->stream != nullptr) cudaStreamSynchronize(s->stream);
    void *bufs[] = {s->weights, s->hbuf, s->rhbuf, s->flags, s->g, s->u, s->out, s->trace_h, s->trace_logits};
    for (void *b : bufs)
        if (b != nullptr) cudaFree(b);
    if (s->stream != nullptr) cudaStreamDestroy(s->stream);
    cudaGetLastError();
    if (prev != s->device) cudaSetDevice(prev);
    delete s;
}

int pwr_cuda_sampler_get_info(const pwr_cuda_sampler *s, pwr_cuda_sampler_info *out) {
    if (s == nullptr || out == nullptr)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "pwr_cuda_sampler_get_info: NULL argument");
    *out = s->info;
    out->cooperative = s->cooperative;
    return PWR_CUDA_OK;
}

int pwr_cuda_debug_set(pwr_cuda_sampler *s, int poison_byte, int stall_worker) {
    if (s == nullptr) return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "pwr_cuda_debug_set: sampler is NULL");
    if (poison_byte > 255) return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "poison_byte: expected -1..255");
    s->poison = poison_byte < 0 ? -1 : poison_byte;
    s->stall_worker = stall_worker != 0;
    return PWR_CUDA_OK;
}

}  // extern "C"

namespace {

/* Per sample: uniforms (plain: coarse, fine; fused: one per nibble) and trace logits (2 x 256; 4 x 16). */
size_t uniform_columns(const pwr_cuda_sampler *s) { return s->fused ? pwr::kNibbles : 2; }
size_t logits_per_sample(const pwr_cuda_sampler *s) {
    return s->fused ? (size_t)pwr::kNibbles * pwr::kNibbleClasses : 2 * (size_t)pwr::kClasses;
}

/* One launch of nb utterances whose inputs are already on the device; copies the results back. */
int launch_once(pwr_cuda_sampler *s, pwr::Params &p) {
    const int idx = nb_index(p.nb);
    PWR_TRY(cudaMemsetAsync(s->flags, 0, kFlagsInts * sizeof(int), s->stream));
    if (s->cooperative != 0) {
        const cudaError_t e = static_cast<cudaError_t>(launch_kernel(s, p, s->smem[idx], 1));
        if (e == cudaSuccess) {
            s->cooperative = 1;
            return PWR_CUDA_OK;
        }
        cudaGetLastError(); /* launch-configuration errors are not sticky */
        if (e == cudaErrorCooperativeLaunchTooLarge)
            return fail(PWR_CUDA_ERR_UNSUPPORTED, "the grid (%d clusters of %d blocks, %zu bytes of shared memory "
                        "each) cannot be co-resident on this device: %s", s->n_clusters, s->cluster_size,
                        s->smem[idx], cudaGetErrorString(e));
        s->cooperative = 0; /* the driver refuses cooperative + cluster launches: rely on occupancy + watchdog */
    }
    const cudaError_t e = static_cast<cudaError_t>(launch_kernel(s, p, s->smem[idx], 0));
    if (e != cudaSuccess)
        return cuda_fail(e, s->fused ? "cudaLaunchKernelEx(wavernn_fused)" : "cudaLaunchKernelEx(wavernn_persistent)",
                         __FILE__, __LINE__);
    return PWR_CUDA_OK;
}

int device_error(const int err[4], const pwr_cuda_sampler *s) {
    static const char *what[] = {"?", "rh from the workers", "y_c from the head", "y_f from the head",
                                 "stage 0 from the head", "stage 1 from the head", "stage 2 from the head",
                                 "stage 3 from the head"};
    if (err[0] == pwr::kDevTimeout)
        return fail(PWR_CUDA_ERR_TIMEOUT, "kernel watchdog: block %d waited more than %lld ms at step %d for %s "
                    "(blocks not co-resident, or a kernel bug)", err[1], s->timeout_ns / 1000000, err[2],
                    what[(err[3] >= 0 && err[3] <= 7) ? err[3] : 0]);
    if (err[0] == pwr::kDevLaunchShape)
        return fail(PWR_CUDA_ERR_DEVICE_CHECK, "the kernel refused its launch shape (library bug)");
    return fail(PWR_CUDA_ERR_DEVICE_CHECK, "unknown device error code %d", err[0]);
}

int run_chunk(pwr_cuda_sampler *s, const float *g, int n_frames, int hop, const float *uniforms, int16_t *out,
              int nb, float *trace_h, float *trace_logits) {
    const size_t T = (size_t)n_frames * hop, H = (size_t)s->H;
    const size_t g_n = (size_t)nb * n_frames * 3 * H, u_n = (size_t)nb * T * uniform_columns(s), out_n = (size_t)nb * T;
    const size_t tl_n = out_n * logits_per_sample(s);
    int st = grow(&s->g, &s->g_cap, g_n);
    if (st == PWR_CUDA_OK) st = grow(&s->u, &s->u_cap, u_n);
    if (st == PWR_CUDA_OK) st = grow(&s->out, &s->out_cap, out_n);
    if (st == PWR_CUDA_OK && trace_h != nullptr) st = grow(&s->trace_h, &s->th_cap, out_n * H);
    if (st == PWR_CUDA_OK && trace_logits != nullptr) st = grow(&s->trace_logits, &s->tl_cap, tl_n);
    if (st != PWR_CUDA_OK) return st;
    PWR_TRY(cudaMemcpyAsync(s->g, g, g_n * sizeof(float), cudaMemcpyHostToDevice, s->stream));
    PWR_TRY(cudaMemcpyAsync(s->u, uniforms, u_n * sizeof(float), cudaMemcpyHostToDevice, s->stream));
    if (s->poison >= 0) {
        PWR_TRY(cudaMemsetAsync(s->out, s->poison, out_n * sizeof(int16_t), s->stream));
        if (trace_h != nullptr)
            PWR_TRY(cudaMemsetAsync(s->trace_h, s->poison, out_n * H * sizeof(float), s->stream));
        if (trace_logits != nullptr)
            PWR_TRY(cudaMemsetAsync(s->trace_logits, s->poison, tl_n * sizeof(float), s->stream));
    }
    pwr::Params p = s->model;
    p.nb = nb;
    p.n_frames = n_frames;
    p.hop = hop;
    p.T = (int)T;
    p.g = s->g;
    p.uniforms = s->u;
    p.out = s->out;
    p.trace_h = trace_h != nullptr ? s->trace_h : nullptr;
    p.trace_logits = trace_logits != nullptr ? s->trace_logits : nullptr;
    p.cluster_size = s->cluster_size;
    p.n_blocks = s->n_clusters * s->cluster_size;
    p.n_workers = s->n_workers;
    p.hbuf = s->hbuf;
    p.rhbuf = s->rhbuf;
    p.rh_flags = s->flags;
    p.yc_flag = s->flags + kYcAt;
    p.yf_flag = s->flags + kYfAt;
    for (int j = 0; j < pwr::kNibbles; ++j) p.stage_flag[j] = s->flags + kStageAt[j];
    p.err = s->flags + kErrAt;
    p.timeout_ns = s->timeout_ns;
    p.debug_stall_worker = s->stall_worker;
    st = launch_once(s, p);
    if (st != PWR_CUDA_OK) return st;
    int err[4] = {0, 0, 0, 0};
    PWR_TRY(cudaMemcpyAsync(err, s->flags + kErrAt, sizeof err, cudaMemcpyDeviceToHost, s->stream));
    PWR_TRY(cudaMemcpyAsync(out, s->out, out_n * sizeof(int16_t), cudaMemcpyDeviceToHost, s->stream));
    if (trace_h != nullptr)
        PWR_TRY(cudaMemcpyAsync(trace_h, s->trace_h, out_n * H * sizeof(float), cudaMemcpyDeviceToHost, s->stream));
    if (trace_logits != nullptr)
        PWR_TRY(cudaMemcpyAsync(trace_logits, s->trace_logits, tl_n * sizeof(float), cudaMemcpyDeviceToHost,
                                s->stream));
    PWR_TRY(cudaStreamSynchronize(s->stream));
    if (err[0] != 0) return device_error(err, s);
    return PWR_CUDA_OK;
}

}  // namespace

extern "C" {

int pwr_cuda_generate_trace(pwr_cuda_sampler *s, const float *g, int n_frames, int hop, const float *uniforms,
                            int16_t *out, int batch, float *trace_h, float *trace_logits) {
    g_detail[0] = '\0';
    if (s == nullptr || g == nullptr || uniforms == nullptr || out == nullptr)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "pwr_cuda_generate: sampler, g, uniforms and out must not be NULL");
    if (n_frames < 1 || hop < 1 || batch < 1)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "n_frames, hop and batch must be >= 1 (got %d, %d, %d)",
                    n_frames, hop, batch);
    if ((long long)n_frames * hop > (long long)INT_MAX - 8)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "n_frames * hop = %lld samples is too many for one call",
                    (long long)n_frames * hop);
    if (s->fused && (long long)n_frames * hop < 2)
        return fail(PWR_CUDA_ERR_INVALID_ARGUMENT, "a fused model needs T = n_frames * hop >= 2 samples (one fold of "
                    "B = 2, docs/format.md §12), got %lld", (long long)n_frames * hop);
    PWR_TRY(cudaSetDevice(s->device));
    const size_t T = (size_t)n_frames * hop, H = (size_t)s->H;
    for (int b0 = 0; b0 < batch;) {
        int nb = s->nb_max;
        while (nb > batch - b0) nb /= 2; /* 4 -> 2 -> 1 */
        const int st = run_chunk(s, g + (size_t)b0 * n_frames * 3 * H, n_frames, hop,
                                 uniforms + (size_t)b0 * T * uniform_columns(s), out + (size_t)b0 * T, nb,
                                 trace_h != nullptr ? trace_h + (size_t)b0 * T * H : nullptr,
                                 trace_logits != nullptr ? trace_logits + (size_t)b0 * T * logits_per_sample(s)
                                                         : nullptr);
        if (st != PWR_CUDA_OK) return st;
        b0 += nb;
    }
    return PWR_CUDA_OK;
}

int pwr_cuda_generate(pwr_cuda_sampler *s, const float *g, int n_frames, int hop, const float *uniforms,
                      int16_t *out, int batch) {
    return pwr_cuda_generate_trace(s, g, n_frames, hop, uniforms, out, batch, nullptr, nullptr);
}

}  // extern "C"
