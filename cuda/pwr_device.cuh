/* pwr_device.cuh: the device-side primitives of the persistent kernel: flags between blocks, the watchdog,
 * warp reductions and the float32 element-wise maths of docs/format.md §1-3.
 *
 * Memory-ordering pattern (the one cooperative_groups::grid_group::sync uses):
 *   producer block: every thread stores its data; __syncthreads(); thread 0: __threadfence(); st.release.gpu flag
 *   consumer block: one warp spins on ld.acquire.gpu flag; __syncthreads(); every thread reads the data with
 *                   ld.global.cg (L2, never a stale L1 line)
 * The bar.sync orders the other threads' stores before thread 0's release (PTX memory model: release is
 * cumulative over what its thread has observed through the barrier), and the acquire + bar.sync orders the
 * consumer's loads after it.
 *
 * Watchdog: every spin reads %globaltimer; a wait longer than p.timeout_ns records kDevTimeout in p.err and
 * returns. Every spin also returns once p.err is non-zero, so after one block gives up all blocks run to the end
 * of their loops without waiting (computing garbage that the host discards) and the launch always terminates.
 */
#ifndef PWR_DEVICE_CUH
#define PWR_DEVICE_CUH

#include "pwr_internal.h"

namespace pwr {

__device__ __forceinline__ int ld_acquire(const int *p) {
    int v;
    asm volatile("ld.acquire.gpu.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ int ld_relaxed(const int *p) {
    int v;
    asm volatile("ld.relaxed.gpu.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void st_release(int *p, int v) {
    asm volatile("st.release.gpu.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ unsigned long long global_timer_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* Records the first device error; later ones are dropped. */
__device__ __forceinline__ void report_error(const Params &p, int code, int step, int what) {
    if (atomicCAS(p.err, 0, code) == 0) {
        p.err[1] = (int)blockIdx.x;
        p.err[2] = step;
        p.err[3] = what;
        __threadfence();
    }
}

/* One thread: wait until *flag >= target (or the launch is aborting). */
static __device__ __noinline__ void spin_until_ge(const Params &p, const int *flag, int target, int step, int what) {
    if (ld_acquire(flag) >= target) return;
    const unsigned long long t0 = global_timer_ns();
    for (unsigned it = 1;; ++it) {
        if (ld_acquire(flag) >= target) return;
        if ((it & 15u) == 0u) {
            if (ld_relaxed(p.err) != 0) return;
            if ((long long)(global_timer_ns() - t0) > p.timeout_ns) {
                report_error(p, kDevTimeout, step, what);
                return;
            }
        }
    }
}

/* One whole warp: wait until flags[i] >= target for every i < n (or the launch is aborting). */
static __device__ __noinline__ void warp_spin_all_ge(const Params &p, const int *flags, int n, int target, int step,
                                              int what, int lane) {
    const unsigned full = 0xffffffffu;
    unsigned long long t0 = 0;
    for (unsigned it = 0;; ++it) {
        bool ok = true;
        for (int i = lane; i < n; i += 32) ok = ok && (ld_acquire(flags + i) >= target);
        if (__all_sync(full, ok)) return;
        if (it == 0u) t0 = global_timer_ns();
        if ((it & 15u) == 15u) {
            int stop = 0;
            if (lane == 0) {
                stop = ld_relaxed(p.err) != 0;
                if (!stop && (long long)(global_timer_ns() - t0) > p.timeout_ns) {
                    report_error(p, kDevTimeout, step, what);
                    stop = 1;
                }
            }
            if (__shfl_sync(full, stop, 0)) return;
        }
    }
}

/* Whole block: publish `value` in *flag after every thread's prior global stores. */
__device__ __forceinline__ void block_publish(int *flag, int value) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        st_release(flag, value);
    }
}

/* Whole block: wait for *flag >= target; afterwards every thread may read what the producer published. */
__device__ __forceinline__ void block_wait(const Params &p, const int *flag, int target, int step, int what) {
    if (threadIdx.x == 0) spin_until_ge(p, flag, target, step, what);
    __syncthreads();
}

/* Sum over the warp, the same butterfly order on every lane, so every lane holds the identical total. */
__device__ __forceinline__ float warp_allsum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---- float32 maths of docs/format.md, written with _rn intrinsics so nvcc never contracts them into FMAs
 *      (the NumPy reference rounds every product and sum; these match it bit for bit). ---- */

/* byte v -> float32(v) / 127.5 - 1 (pywavernn.audio.scale_byte) */
__device__ __forceinline__ float scale_byte(int v) { return __fsub_rn(__fdiv_rn((float)v, 127.5f), 1.0f); }

/* nibble v -> float32(v) / 7.5 - 1 (pywavernn.fused.NIBBLE_INPUT, docs/format.md §12) */
__device__ __forceinline__ float scale_nibble(int v) { return __fsub_rn(__fdiv_rn((float)v, 7.5f), 1.0f); }

/* cond(t) = g0 + a * (g1 - g0) (docs/format.md §2) */
__device__ __forceinline__ float upsample(float g0, float g1, float a) {
    return __fadd_rn(g0, __fmul_rn(a, __fsub_rn(g1, g0)));
}

__device__ __forceinline__ float sigmoid_ref(float x) { return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x))); }

/* One GRU unit (docs/format.md §3): u = s(gi_u + rh_u), r = s(gi_r + rh_r), e = tanh(gi_e + r rh_e),
 * h' = u h + (1 - u) e. gi_* already hold W_in x + cond. */
__device__ __forceinline__ float gru_unit(float h, float gi_u, float gi_r, float gi_e, float rh_u, float rh_r,
                                          float rh_e) {
    const float u = sigmoid_ref(__fadd_rn(gi_u, rh_u));
    const float r = sigmoid_ref(__fadd_rn(gi_r, rh_r));
    const float e = tanhf(__fadd_rn(gi_e, __fmul_rn(r, rh_e)));
    return __fadd_rn(__fmul_rn(u, h), __fmul_rn(__fsub_rn(1.0f, u), e));
}

/* Input projection, summed as pywavernn.reference.plain.input_projection_ref: coarse rows ((x0 w0 + x1 w1) + cond)
 * (their c_t weight is zero by the mask), fine rows (((x0 w0 + x1 w1) + x2 w2) + cond). */
__device__ __forceinline__ float in_proj2(float w0, float w1, float x0, float x1, float cond) {
    return __fadd_rn(__fadd_rn(__fmul_rn(x0, w0), __fmul_rn(x1, w1)), cond);
}
__device__ __forceinline__ float in_proj3(float w0, float w1, float w2, float x0, float x1, float x2, float cond) {
    return __fadd_rn(__fadd_rn(__fadd_rn(__fmul_rn(x0, w0), __fmul_rn(x1, w1)), __fmul_rn(x2, w2)), cond);
}

} /* namespace pwr */

#endif /* PWR_DEVICE_CUH */
