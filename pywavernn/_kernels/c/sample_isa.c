/* sample_isa.c: softmax sampling from a supplied uniform (docs/format.md §4), one row or several at once.
 *
 * Compiled once per ISA (see pwr_isa.h). p = exp(l - max l) with fastmath.h's exp: in exact mode pwr_exp_exact (the
 * bits of pywavernn.reference.ops.exp_ref, so the draw is the reference's), in fast mode the fast approximation.
 * sample_softmax_rows draws from several rows at once (the subscale loop's B streams) with the very float32
 * operations of sample_softmax per row, so each row's class is the one sample_softmax returns.
 * Preconditions: see pwr_kernels.h.
 */
#include "pwr_isa.h"

#include "fastmath.h"

int PWR_FN(sample_softmax)(const float *logits, float u, float *cdf, int exact) {
    float mx = logits[0];
    for (int k = 1; k < 256; k++) mx = logits[k] > mx ? logits[k] : mx;
    for (int k = 0; k < 256; k++) cdf[k] = logits[k] - mx;
    if (exact) {
        for (int k = 0; k < 256; k++) cdf[k] = pwr_exp_exact(cdf[k]);
    } else {
        PWR_FN(fast_exp)(cdf, cdf, 256);
    }
    for (int k = 1; k < 256; k++) cdf[k] += cdf[k - 1]; /* sequential, as docs/format.md §4 requires */
    const float threshold = u * cdf[255];
    for (int k = 0; k < 256; k++)
        if (cdf[k] > threshold) return k;
    return 255;
}

/* Rows r < n of logits (n, 256): k[r] = sample_softmax(logits + 256 r, u[r * u_stride]). The generic copy is that
 * loop. The AVX2 copy takes 8 rows at a time with one row per lane: it transposes them to (256, 8) and runs the
 * per-row steps of sample_softmax down the columns, so every lane does the same float32 operations in the same
 * order as the one-row kernel (max over the row, l - max, exp, the running sum in index order, the threshold
 * u * cdf[255], the first index above it). The running sum is a serial chain of 255 adds per row; 8 chains in one
 * register take the latency of one, and in fast mode the exps are computed in the same loop, where they fill the
 * adds' latency. The first index above the threshold is found by bisection of the (non-decreasing) running sums,
 * which returns the index the linear scan would. A last group of fewer than 8 rows repeats its first row in the
 * spare lanes.
 * scratch has 8 * 256 floats. */
void PWR_FN(sample_softmax_rows)(const float *logits, int32_t n, const float *u, int32_t u_stride, int32_t *k,
                                 float *scratch, int exact) {
    int32_t r = 0;
#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
    for (; r < n; r += 8) {
        const int32_t nr = n - r < 8 ? n - r : 8;
        const float *row[8];
        float uu[8];
        for (int q = 0; q < 8; q++) {
            const int32_t rq = r + (q < nr ? q : 0);
            row[q] = logits + (size_t)rq * 256;
            uu[q] = u[(size_t)rq * (size_t)u_stride];
        }
        __m256 *col = (__m256 *)scratch; /* col[c] lane q = row q's entry c; scratch needs no alignment */
        __m256 mx = _mm256_setzero_ps();
        for (int c = 0; c < 256; c += 8) { /* 8x8 transpose of rows' entries c..c+7 */
            const __m256 a0 = _mm256_loadu_ps(row[0] + c), a1 = _mm256_loadu_ps(row[1] + c);
            const __m256 a2 = _mm256_loadu_ps(row[2] + c), a3 = _mm256_loadu_ps(row[3] + c);
            const __m256 a4 = _mm256_loadu_ps(row[4] + c), a5 = _mm256_loadu_ps(row[5] + c);
            const __m256 a6 = _mm256_loadu_ps(row[6] + c), a7 = _mm256_loadu_ps(row[7] + c);
            const __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
            const __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
            const __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
            const __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
            const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            __m256 v[8];
            v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
            v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
            v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
            v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
            v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
            v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
            v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
            v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
            if (c == 0) mx = v[0];
            for (int q = 0; q < 8; q++) {
                mx = _mm256_max_ps(v[q], mx); /* sample_softmax's l > mx ? l : mx, NaN entries skipped alike */
                _mm256_storeu_ps((float *)(col + c + q), v[q]);
            }
        }
        __m256 acc;
        if (exact) {
            float d[8];
            for (int c = 0; c < 256; c++) {
                _mm256_storeu_ps(d, _mm256_sub_ps(_mm256_loadu_ps((float *)(col + c)), mx));
                for (int q = 0; q < 8; q++) d[q] = pwr_exp_exact(d[q]);
                _mm256_storeu_ps((float *)(col + c), _mm256_loadu_ps(d));
            }
            acc = _mm256_loadu_ps((float *)col);
            for (int c = 1; c < 256; c++) { /* cdf[c] = cdf[c - 1] + p[c], per lane */
                acc = _mm256_add_ps(acc, _mm256_loadu_ps((float *)(col + c)));
                _mm256_storeu_ps((float *)(col + c), acc);
            }
        } else { /* the same p[c] and running sum in one pass: the exps (independent) overlap the serial adds */
            acc = fast_exp_8(_mm256_sub_ps(_mm256_loadu_ps((float *)col), mx));
            _mm256_storeu_ps((float *)col, acc);
            int c = 1;
            for (; c + 4 <= 256; c += 4) { /* four columns' exps interleaved (fast_exp_8n), then their adds */
                __m256 p[4];
                for (int q = 0; q < 4; q++) p[q] = _mm256_sub_ps(_mm256_loadu_ps((float *)(col + c + q)), mx);
                fast_exp_8n(p, 4);
                for (int q = 0; q < 4; q++) {
                    acc = _mm256_add_ps(acc, p[q]);
                    _mm256_storeu_ps((float *)(col + c + q), acc);
                }
            }
            for (; c < 256; c++) {
                acc = _mm256_add_ps(acc, fast_exp_8(_mm256_sub_ps(_mm256_loadu_ps((float *)(col + c)), mx)));
                _mm256_storeu_ps((float *)(col + c), acc);
            }
        }
        const __m256 thr = _mm256_mul_ps(_mm256_loadu_ps(uu), acc);
        /* Per lane, the first c with cdf[c] > threshold (255 if none), found by bisection: each lane's cdf is a
         * running sum of p >= 0, so it never decreases, and "cdf[c] > threshold" is false up to some index and true
         * from it on. base counts the entries not above the threshold (8 halvings of 256, branch-free); that count
         * is the index of the first one above it, the one the linear scan of sample_softmax returns. */
        float th[8];
        int32_t out[8];
        _mm256_storeu_ps(th, thr);
        const float *cdf = (const float *)col;
        for (int q = 0; q < 8; q++) {
            int32_t base = 0;
            for (int32_t step = 128; step >= 1; step >>= 1)
                base += (cdf[(size_t)(base + step - 1) * 8 + (size_t)q] > th[q]) ? 0 : step;
            out[q] = base < 256 ? base : 255;
        }
        for (int q = 0; q < nr; q++) k[r + q] = out[q];
    }
#endif
    for (; r < n; r++) k[r] = PWR_FN(sample_softmax)(logits + (size_t)r * 256, u[(size_t)r * (size_t)u_stride],
                                                      scratch, exact);
}
