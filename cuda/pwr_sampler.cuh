/* pwr_sampler.cuh: the sampling rule of docs/format.md §4 on the GPU, exactly.
 *
 *   p = exp(l - max l) (float32);  cdf = float32 running sum in index order;
 *   k = first index with cdf[k] > u * cdf[255]  (255 if none)
 *
 * Two implementations with the same result for every input:
 *  - sample_sequential_p: one thread, the rule as written (256 dependent float32 adds). It is the definition;
 *    compiled for host and device, so the CPU reference in pwr_cuda_test.cu runs the very same code.
 *  - warp_sample: one warp; a certified fast path (below) that falls back to sample_sequential_p on lane 0
 *    whenever it cannot prove its answer equal. The fast path saves ~1000 cycles of dependent adds per
 *    sample (two samples per step, on the critical path).
 *
 * Fast path and its proof. Let s_k be the sequential float32 prefix sums, E_k the exact prefix sums of the
 * same float32 p_i >= 0, thr = fl32(u * s_255) and D_k a float64 prefix sum in any order.
 *  (1) |s_k - E_k| <= g * E_k <= g * E_255 with g = gamma_255 = 255 u32 / (1 - 255 u32) = 1.520e-5
 *      (recursive summation of non-negative terms, u32 = 2^-24; subnormal adds are exact).
 *  (2) |D_k - E_k| <= 255 * 2^-53 * E_k < 3e-14 E_255; T = fl64(u * D_255) likewise.
 *  (3) thr = u s_255 (1 + d) + eta, |d| <= 2^-24, |eta| <= 2^-150; and E_255 >= 1 (the max term is exp(0) = 1).
 *  With M = 2^-14 * D_255 (6.1e-5 relative), if for a candidate k:
 *      D_k - T > M   and   (k == 0 or T - D_{k-1} > M)
 *  then s_{k-1} < thr < s_k: the errors of (1)-(3) add up to at most (2 g + 2^-24 + 1e-13) E_255 + eta
 *  < 3.1e-5 E_255 < M. Since s is non-decreasing (rounding is monotone and p_i >= 0), no j < k has s_j > thr,
 *  so k is the rule's answer. Any other case (no candidate, a margin too small, NaN or inf anywhere, where
 *  every comparison is false) takes the sequential path. The margin is twice the bound, and a uniform lands
 *  within M of a class edge with probability ~2.4e-4, so the slow path costs on average ~0.25 cycles/sample.
 *
 * Preconditions: logits in shared memory, 16-byte aligned, 256 floats; u in [0, 1); called by all 32 lanes.
 * The fused model's 16-way nibble draws (warp_sample_nibble, below) need no fast path: 16 sequential adds.
 * No fast-math: the file relies on IEEE float32 add/mul/exp without flush-to-zero or contraction.
 */
#ifndef PWR_SAMPLER_CUH
#define PWR_SAMPLER_CUH

#if defined(__CUDA_ARCH__)
#define PWR_FADD(a, b) __fadd_rn((a), (b))
#define PWR_FMUL(a, b) __fmul_rn((a), (b))
#else
#define PWR_FADD(a, b) ((a) + (b))
#define PWR_FMUL(a, b) ((a) * (b))
#endif

#if defined(__CUDACC__)
#define PWR_SAMPLER_HD __host__ __device__
#else
#define PWR_SAMPLER_HD
#endif

namespace pwr {

/* The rule as written over N classes, given p (N non-negative float32): 256 for the plain model's bytes, 16 for
 * the fused model's nibbles (docs/format.md §12: "§4 over 16 classes"). Two passes recompute identical sums. */
template <int N>
PWR_SAMPLER_HD inline int sample_sequential_n(const float *p, float u) {
    float total = p[0];
    for (int k = 1; k < N; ++k) total = PWR_FADD(total, p[k]);
    const float thr = PWR_FMUL(u, total);
    float s = p[0];
    if (s > thr) return 0;
    for (int k = 1; k < N; ++k) {
        s = PWR_FADD(s, p[k]);
        if (s > thr) return k;
    }
    return N - 1;
}

PWR_SAMPLER_HD inline int sample_sequential_p(const float *p, float u) { return sample_sequential_n<256>(p, u); }

#if defined(__CUDACC__)

constexpr double kSampleMarginRel = 6.103515625e-05; /* 2^-14, twice the proven error bound */

/* One warp samples from logits[0..255] (shared memory). Writes exp(l - max) to p_scratch (shared, 256 floats).
 * Returns k on every lane. *slow (lane 0 only, may be NULL) is set to 1 if the sequential path was taken. */
__device__ __forceinline__ int warp_sample(const float *logits, float u, float *p_scratch, int lane,
                                           int *slow) {
    const unsigned full = 0xffffffffu;
    const float4 a = reinterpret_cast<const float4 *>(logits)[2 * lane];
    const float4 b = reinterpret_cast<const float4 *>(logits)[2 * lane + 1];
    float l[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    float m = l[0];
#pragma unroll
    for (int i = 1; i < 8; ++i) m = fmaxf(m, l[i]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(full, m, o));
    /* fmaxf skips NaN where NumPy's max propagates it. Either way a NaN (or +inf) logit makes the float32 total
       NaN, so the rule answers 255; here the float64 total is NaN too, every fast-path comparison is false,
       and the sequential path answers 255 as well. */
    float p[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) p[i] = expf(__fsub_rn(l[i], m));
    reinterpret_cast<float4 *>(p_scratch)[2 * lane] = make_float4(p[0], p[1], p[2], p[3]);
    reinterpret_cast<float4 *>(p_scratch)[2 * lane + 1] = make_float4(p[4], p[5], p[6], p[7]);

    /* float64 prefix sums: the lane's total, an inclusive scan over lanes, then the lane's 8 prefixes again. */
    double run = 0.0;
#pragma unroll
    for (int i = 0; i < 8; ++i) run += (double)p[i];
    double incl = run;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(full, incl, o);
        if (lane >= o) incl += y;
    }
    const double excl = incl - run;  /* any order will do: only the bound (2) matters */
    const double total = __shfl_sync(full, incl, 31);
    const double thr = (double)u * total;
    const double margin = kSampleMarginRel * total;

    /* This lane's first prefix D_k > thr, with D_k and D_{k-1} (D_{-1} of lane 0 is never used). */
    int first = 8;
    double d = excl, dk = 0.0, dprev = 0.0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const double before = d;
        d += (double)p[i];
        if (first == 8 && d > thr) { first = i; dk = d; dprev = before; }
    }
    const unsigned have = __ballot_sync(full, first < 8);
    int ok = 0, k = 255;
    if (have != 0u) {
        const int owner = __ffs(have) - 1;
        const int kk = 8 * lane + first;
        const int my_ok = (dk - thr > margin) && (kk == 0 || thr - dprev > margin);
        ok = __shfl_sync(full, my_ok, owner);
        k = 8 * owner + __shfl_sync(full, first, owner);
    }
    __syncwarp();  /* p_scratch complete before lane 0 reads it */
    if (!ok) {
        int ks = 0;
        if (lane == 0) ks = sample_sequential_p(p_scratch, u);
        k = __shfl_sync(full, ks, 0);
    }
    if (slow != nullptr && lane == 0) *slow = !ok;
    return k;
}

/* One warp draws a nibble from logits[0..15] (any memory; docs/format.md §12, §4's rule over 16 classes).
 * Lanes 0..15 compute p_k = exp(l_k - max l) in parallel; every lane then gathers the 16 p_k and runs the
 * sequential rule itself (32 dependent float32 adds, ~130 cycles): the same code as the CPU reference, so no
 * certificate is needed and no lane waits for another. A NaN or +inf logit makes the total NaN and the answer 15,
 * as in NumPy (see warp_sample). Called by all 32 lanes; returns the nibble on every lane. */
__device__ __forceinline__ int warp_sample_nibble(const float *logits, float u, int lane) {
    const unsigned full = 0xffffffffu;
    const float l = lane < 16 ? logits[lane] : -__int_as_float(0x7f800000);
    float m = l;
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(full, m, o));
    const float p = lane < 16 ? expf(__fsub_rn(l, m)) : 0.0f;  /* lanes 16..31 mirror 0..15's max, unused */
    float ps[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) ps[k] = __shfl_sync(full, p, k);
    return sample_sequential_n<16>(ps, u);
}

#endif /* __CUDACC__ */

} /* namespace pwr */

#endif /* PWR_SAMPLER_CUH */
