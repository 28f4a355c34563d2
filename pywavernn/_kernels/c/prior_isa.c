/* prior_isa.c: the Laplace prior's logit terms (docs/format.md §9 subscale_prior, §11 prior "laplace"), per byte.
 *
 * Compiled once per ISA (see pwr_isa.h); plain C in every copy (libm expf, logf, expm1f in every mode, the formulas
 * of pywavernn.reference.prior). Preconditions: see pwr_kernels.h.
 */
#include <math.h>

#include "pwr_isa.h"


/* The Laplace prior of a subscale model (§9) or a plain one (§11) (pwr_kernels.h, pwr_prior_fn). A bin wholly on
 * one side of mu, at distance d to its nearer edge, gets side - d / b; beyond d = (side - FLOOR) b that is below the
 * floor, so only the bins within that reach (widened by two bins, far more than float32 rounding needs, and to whole
 * groups of 16 so the loop runs in full vectors) evaluate it and the rest add FLOOR, which is what the formula would
 * give them. The bin or two whose d <= 0 hold mu get the exact formula, from their logits as they were. Bin starts
 * are integers below 2^24: exact. */
#define PRIOR_FLOOR (-16.0f)
#define PRIOR_LOG_B_MIN (-3.0f)
#define PRIOR_LOG_B_MAX 12.0f

static inline int32_t prior_bin(float k) { return k < 0.0f ? 0 : k > 256.0f ? 256 : (int32_t)k; }

void PWR_FN(laplace_prior)(float *restrict logits, float lo0, float width, float mu, const float *restrict w,
                           float bias, const float *restrict hid, int32_t K) {
    float acc[8] = {0}; /* eight running sums side by side (vector lanes), then added in order */
    const int32_t k8 = K - K % 8;
    for (int32_t k = 0; k < k8; k += 8)
        for (int32_t j = 0; j < 8; j++) acc[j] += w[k + j] * hid[k + j];
    for (int32_t k = k8; k < K; k++) acc[k % 8] += w[k] * hid[k];
    float z = 0.0f;
    for (int32_t j = 0; j < 8; j++) z += acc[j];
    z += bias;
    z = z < PRIOR_LOG_B_MIN ? PRIOR_LOG_B_MIN : z > PRIOR_LOG_B_MAX ? PRIOR_LOG_B_MAX : z;
    const float inv_b = expf(-z);
    const float side = logf(-expm1f(-(width * inv_b))) - 0.693147182f; /* float32(log 2) */
    int32_t held[3], n_held = 0; /* the bins holding mu: (mu - lo0) / width rounded down, or a neighbour */
    float kept[3];
    const float kf = (mu - lo0) / width;
    if (kf > -2.0f && kf < 257.0f) {
        const int32_t k0 = (int32_t)kf;
        for (int32_t k = k0 - 1; k <= k0 + 1; k++) {
            if (k < 0 || k >= 256) continue;
            const float lo = lo0 + (float)k * width, hi = lo + width, a = lo - mu, c = mu - hi;
            if ((a > c ? a : c) > 0.0f) continue;
            held[n_held] = k;
            kept[n_held++] = logits[k];
        }
    }
    float reach = (side - PRIOR_FLOOR) / inv_b; /* d beyond this: below the floor */
    reach = reach > 0.0f ? reach : 0.0f;
    const int32_t k_lo = prior_bin((mu - reach - lo0) / width - 2.0f) & ~15;
    const int32_t k_hi = (prior_bin((mu + reach - lo0) / width + 3.0f) + 15) & ~15;
    for (int32_t k = 0; k < k_lo; k++) logits[k] += PRIOR_FLOOR;
    for (int32_t k = k_lo; k < k_hi; k++) {
        const float lo = lo0 + (float)k * width, hi = lo + width;
        const float a = lo - mu, c = mu - hi;
        const float d = a > c ? a : c;
        const float p = d * inv_b;
        const float t = side - p;
        logits[k] += t > PRIOR_FLOOR ? t : PRIOR_FLOOR;
    }
    for (int32_t k = k_hi; k < 256; k++) logits[k] += PRIOR_FLOOR;
    for (int32_t j = 0; j < n_held; j++) {
        const int32_t k = held[j];
        const float lo = lo0 + (float)k * width, hi = lo + width;
        const float t = logf(-0.5f * (expm1f((lo - mu) * inv_b) + expm1f(-((hi - mu) * inv_b))));
        logits[k] = kept[j] + (t > PRIOR_FLOOR ? t : PRIOR_FLOOR);
    }
}

