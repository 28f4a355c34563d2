/* cond_isa.c: the conditioning network's products (docs/format.md §2), frame-independent (pwr_kernels.h:
 * pwr_frame_matmul_fn).
 *
 * Compiled once per ISA (see pwr_isa.h). Every output element is the same chain of float32 operations in every copy
 * and whatever the number of frames: acc = +0; for c = 0, 1, ..., C - 1: acc = acc + (w[m, c] * z[c, f]), one
 * rounded multiply and one rounded add per term (the build's -std=c11 keeps the compiler from contracting them into
 * an FMA). That is the arithmetic of pywavernn.conditioning.frame_independent_matmul (a NumPy loop over c), so the
 * results are bit-identical to it, and a frame's value never depends on which other frames are in the call (what
 * lets streaming reproduce the offline samples). The AVX2 copy only changes which elements are in flight: a tile of
 * 4 rows x 16 frames (8 accumulators) per pass over c, frames across vector lanes.
 */
#include "pwr_isa.h"

/* Rows [m0, m1) and frames [f0, Fr) of y, one element at a time (the generic body and the vector copy's tails). */
static void frame_matmul_scalar(const float *w, const float *z, int64_t ldz, float *y, int32_t m0, int32_t m1,
                                int32_t C, int32_t f0, int32_t Fr) {
    for (int32_t m = m0; m < m1; m++) {
        const float *wm = w + (size_t)m * (size_t)C;
        for (int32_t f = f0; f < Fr; f++) {
            float acc = 0.0f;
            for (int32_t c = 0; c < C; c++) acc = acc + wm[c] * z[(size_t)c * (size_t)ldz + (size_t)f];
            y[(size_t)m * (size_t)Fr + (size_t)f] = acc;
        }
    }
}

void PWR_FN(frame_matmul)(const float *w, const float *z, int64_t ldz, float *y, int32_t M, int32_t C, int32_t Fr) {
    int32_t m = 0;
#if defined(PWR_ISA_AVX2) && PWR_ISA_AVX2
    for (; m + 4 <= M; m += 4) {
        const float *w0 = w + (size_t)m * (size_t)C, *w1 = w0 + C, *w2 = w1 + C, *w3 = w2 + C;
        int32_t f = 0;
        for (; f + 16 <= Fr; f += 16) {
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
                   a31 = a00;
            for (int32_t c = 0; c < C; c++) {
                const float *zc = z + (size_t)c * (size_t)ldz + (size_t)f;
                const __m256 z0 = _mm256_loadu_ps(zc), z1 = _mm256_loadu_ps(zc + 8);
                const __m256 b0 = _mm256_set1_ps(w0[c]), b1 = _mm256_set1_ps(w1[c]);
                const __m256 b2 = _mm256_set1_ps(w2[c]), b3 = _mm256_set1_ps(w3[c]);
                a00 = _mm256_add_ps(a00, _mm256_mul_ps(b0, z0));
                a01 = _mm256_add_ps(a01, _mm256_mul_ps(b0, z1));
                a10 = _mm256_add_ps(a10, _mm256_mul_ps(b1, z0));
                a11 = _mm256_add_ps(a11, _mm256_mul_ps(b1, z1));
                a20 = _mm256_add_ps(a20, _mm256_mul_ps(b2, z0));
                a21 = _mm256_add_ps(a21, _mm256_mul_ps(b2, z1));
                a30 = _mm256_add_ps(a30, _mm256_mul_ps(b3, z0));
                a31 = _mm256_add_ps(a31, _mm256_mul_ps(b3, z1));
            }
            float *ym = y + (size_t)m * (size_t)Fr + (size_t)f;
            _mm256_storeu_ps(ym, a00);
            _mm256_storeu_ps(ym + 8, a01);
            _mm256_storeu_ps(ym + Fr, a10);
            _mm256_storeu_ps(ym + Fr + 8, a11);
            _mm256_storeu_ps(ym + 2 * (size_t)Fr, a20);
            _mm256_storeu_ps(ym + 2 * (size_t)Fr + 8, a21);
            _mm256_storeu_ps(ym + 3 * (size_t)Fr, a30);
            _mm256_storeu_ps(ym + 3 * (size_t)Fr + 8, a31);
        }
        for (; f + 8 <= Fr; f += 8) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int32_t c = 0; c < C; c++) {
                const __m256 zv = _mm256_loadu_ps(z + (size_t)c * (size_t)ldz + (size_t)f);
                a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_set1_ps(w0[c]), zv));
                a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_set1_ps(w1[c]), zv));
                a2 = _mm256_add_ps(a2, _mm256_mul_ps(_mm256_set1_ps(w2[c]), zv));
                a3 = _mm256_add_ps(a3, _mm256_mul_ps(_mm256_set1_ps(w3[c]), zv));
            }
            float *ym = y + (size_t)m * (size_t)Fr + (size_t)f;
            _mm256_storeu_ps(ym, a0);
            _mm256_storeu_ps(ym + Fr, a1);
            _mm256_storeu_ps(ym + 2 * (size_t)Fr, a2);
            _mm256_storeu_ps(ym + 3 * (size_t)Fr, a3);
        }
        frame_matmul_scalar(w, z, ldz, y, m, m + 4, C, f, Fr);
    }
    for (; m < M; m++) {
        const float *wm = w + (size_t)m * (size_t)C;
        int32_t f = 0;
        for (; f + 8 <= Fr; f += 8) {
            __m256 a = _mm256_setzero_ps();
            for (int32_t c = 0; c < C; c++)
                a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(wm[c]),
                                                   _mm256_loadu_ps(z + (size_t)c * (size_t)ldz + (size_t)f)));
            _mm256_storeu_ps(y + (size_t)m * (size_t)Fr + (size_t)f, a);
        }
        frame_matmul_scalar(w, z, ldz, y, m, m + 1, C, f, Fr);
    }
#endif
    frame_matmul_scalar(w, z, ldz, y, m, M, C, 0, Fr);
}
