/* pwr_reference.h: a plain C++ reference of one WaveRNN step (docs/format.md §1-4) and of one Fused Subscale
 * WaveRNN 2x step (§12) for the CUDA tests and bench.
 *
 * What it is: the same element-wise float32 operations, in the same order, as pywavernn/reference/plain.py and
 * pywavernn/conditioning.py (input projection ((x0 w0 + x1 w1) [+ x2 w2]) + cond, sigmoid 1 / (1 + exp(-x)),
 * h' = u h + (1 - u) e, cond by g0 + a (g1 - g0)), matrix-vector products accumulated in float64 and rounded
 * once (closer to exact than any float32 order, so GPU error is measured against the truth), and the sampler pwr::sample_sequential_p,
 * the very code the GPU falls back to. The fused step follows pywavernn/reference/fused.py (fused_step_ref) line
 * for line: all 14 input columns summed left to right, then + cond; the 16-way draws by pwr::sample_sequential_n.
 * What it is not: fast (no SIMD, no threads) or part of the library.
 *
 * Letters: H hidden units, half = H/2, K output-head hidden units, F frames, hop samples per frame, T samples;
 * fused: P = H/8 units per part, N = ceil(T/2) positions, n a step.
 */
#ifndef PWR_REFERENCE_H
#define PWR_REFERENCE_H

#include <cmath>
#include <cstdint>
#include <vector>

#include "pwr_sampler.cuh"

namespace pwr_ref {

struct Model {
    int H = 0, K = 0;
    std::vector<float> R, bR, Win, O1, b1, O2, b2, O3, b3, O4, b4;
};

/* splitmix64: a tiny, portable generator so every machine draws the same test data for a seed. */
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed) {}
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    float uniform01() { return (float)(next() >> 40) * (1.0f / 16777216.0f); } /* [0, 1), 24 bits */
    float symmetric(float bound) { return bound * (2.0f * uniform01() - 1.0f); }
};

inline void fill(std::vector<float> &v, size_t n, Rng &rng, float bound) {
    v.resize(n);
    for (float &x : v) x = rng.symmetric(bound);
}

/* PyTorch-style init (bound 1/sqrt(fan_in); GRU tensors 1/sqrt(H)) with the output layers O2, O4 scaled by
 * logit_gain so that the distributions are peaked enough to exercise the sampler; the W_in mask applied. */
inline Model random_model(int H, int K, uint64_t seed, float logit_gain = 4.0f) {
    Model m;
    m.H = H;
    m.K = K;
    Rng rng(seed);
    const int half = H / 2;
    const float gh = 1.0f / std::sqrt((float)H), gk = 1.0f / std::sqrt((float)K), gy = 1.0f / std::sqrt((float)half);
    fill(m.R, (size_t)3 * H * H, rng, gh);
    fill(m.bR, (size_t)3 * H, rng, gh);
    fill(m.Win, (size_t)9 * H, rng, gh * 4.0f);
    for (int g = 0; g < 3; ++g)
        for (int j = 0; j < half; ++j) m.Win[(size_t)(g * H + j) * 3 + 2] = 0.0f;
    fill(m.O1, (size_t)K * half, rng, gy);
    fill(m.b1, (size_t)K, rng, gy);
    fill(m.O2, (size_t)256 * K, rng, gk * logit_gain);
    fill(m.b2, 256, rng, gk);
    fill(m.O3, (size_t)K * half, rng, gy);
    fill(m.b3, (size_t)K, rng, gy);
    fill(m.O4, (size_t)256 * K, rng, gk * logit_gain);
    fill(m.b4, 256, rng, gk);
    return m;
}

/* Gate conditioning g (F, 3H): a slow random walk, so neighbouring frames differ as real ones do. */
inline std::vector<float> random_conditioning(int F, int H, uint64_t seed) {
    Rng rng(seed);
    std::vector<float> g((size_t)F * 3 * H);
    for (int j = 0; j < 3 * H; ++j) g[j] = rng.symmetric(1.0f);
    for (int f = 1; f < F; ++f)
        for (int j = 0; j < 3 * H; ++j)
            g[(size_t)f * 3 * H + j] = 0.8f * g[(size_t)(f - 1) * 3 * H + j] + rng.symmetric(0.5f);
    return g;
}

/* (T, columns) uniforms in [0, 1): 2 per sample for the plain model, 4 for the fused one. */
inline std::vector<float> random_uniforms(size_t T, uint64_t seed, int columns = 2) {
    Rng rng(seed);
    std::vector<float> u((size_t)columns * T);
    for (float &x : u) x = rng.uniform01();
    return u;
}

inline float scale_byte(int v) { return (float)v / 127.5f - 1.0f; }
inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

/* cond(t) of row `row` (docs/format.md §2). */
inline float cond_at(const float *g, int F, int H, int hop, int t, int row) {
    const int j = t / hop, j1 = j + 1 < F ? j + 1 : F - 1;
    const float a = (float)(t % hop) / (float)hop;
    const float g0 = g[(size_t)j * 3 * H + row], g1 = g[(size_t)j1 * 3 * H + row];
    return g0 + a * (g1 - g0);
}

inline float dot(const float *w, const float *x, int n) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) s += (double)w[i] * (double)x[i];
    return (float)s;
}

/* Sampling per §4 over N classes plus how close the draw was to a class edge:
 * margin = min(s_k - thr, thr - s_{k-1}) / s_{N-1} (the smaller, the more a rounding difference could change k). */
template <int N>
inline int sample_n(const float *logits, float u, double *margin) {
    float m = logits[0];
    for (int k = 1; k < N; ++k) m = logits[k] > m ? logits[k] : m;
    float p[N];
    for (int k = 0; k < N; ++k) p[k] = std::exp(logits[k] - m);
    const int k = pwr::sample_sequential_n<N>(p, u);
    if (margin != nullptr) {
        float s = 0.0f, total = 0.0f, sk = 0.0f, skm1 = 0.0f;
        for (int i = 0; i < N; ++i) total += p[i];
        for (int i = 0; i <= k; ++i) { skm1 = s; s += p[i]; }
        sk = s;
        const float thr = u * total;
        double mg = (double)sk - thr;
        if (k > 0 && (double)thr - skm1 < mg) mg = (double)thr - skm1;
        *margin = mg / total;
    }
    return k;
}

inline int sample(const float *logits, float u, double *margin) { return sample_n<256>(logits, u, margin); }

struct Step {
    std::vector<float> h;               /* h' (H) */
    float logits_c[256], logits_f[256];
    int c = 0, f = 0;
    double margin_c = 1.0, margin_f = 1.0;
};

/* One step from h (H) and the previous bytes. force_c >= 0: use it as c_t in the fine half (teacher forcing
 * against another backend's draw); the coarse draw is still made and returned in o.c. */
inline void step(const Model &m, const float *g, int F, int hop, int t, const float *h, int c_prev, int f_prev,
                 float u_c, float u_f, int force_c, Step &o) {
    const int H = m.H, half = H / 2, K = m.K;
    std::vector<float> rh((size_t)3 * H), hid((size_t)K);
    for (int i = 0; i < 3 * H; ++i) rh[i] = dot(&m.R[(size_t)i * H], h, H) + m.bR[i];
    o.h.assign(h, h + H);
    const float x0 = scale_byte(c_prev), x1 = scale_byte(f_prev);
    auto unit = [&](int j, float x2, bool fine) {
        float gi[3];
        for (int gate = 0; gate < 3; ++gate) {
            const int row = gate * H + j;
            const float *w = &m.Win[(size_t)row * 3];
            const float xw = x0 * w[0] + x1 * w[1];
            gi[gate] = (fine ? xw + x2 * w[2] : xw) + cond_at(g, F, H, hop, t, row);
        }
        const float u = sigmoid(gi[0] + rh[j]), r = sigmoid(gi[1] + rh[H + j]);
        const float e = std::tanh(gi[2] + r * rh[2 * H + j]);
        o.h[j] = u * h[j] + (1.0f - u) * e;
    };
    for (int j = 0; j < half; ++j) unit(j, 0.0f, false);
    for (int k = 0; k < K; ++k) {
        const float v = dot(&m.O1[(size_t)k * half], o.h.data(), half) + m.b1[k];
        hid[k] = v > 0.0f ? v : 0.0f;
    }
    for (int k = 0; k < 256; ++k) o.logits_c[k] = dot(&m.O2[(size_t)k * K], hid.data(), K) + m.b2[k];
    o.c = sample(o.logits_c, u_c, &o.margin_c);
    const float x2 = scale_byte(force_c >= 0 ? force_c : o.c);
    for (int j = half; j < H; ++j) unit(j, x2, true);
    for (int k = 0; k < K; ++k) {
        const float v = dot(&m.O3[(size_t)k * half], o.h.data() + half, half) + m.b3[k];
        hid[k] = v > 0.0f ? v : 0.0f;
    }
    for (int k = 0; k < 256; ++k) o.logits_f[k] = dot(&m.O4[(size_t)k * K], hid.data(), K) + m.b4[k];
    o.f = sample(o.logits_f, u_f, &o.margin_f);
}

inline int16_t join(int c, int f) { return (int16_t)(((c << 8) | f) - 32768); }
inline void split(int16_t s, int *c, int *f) {
    const int u = (int)s + 32768;
    *c = u >> 8;
    *f = u & 255;
}


/* ---- the Fused Subscale WaveRNN 2x (docs/format.md §12) ---- */

constexpr int kFusedInputs = 14, kNibbles = 4, kNibbleClasses = 16, kFusedLag = 3;

struct FusedModel {
    int H = 0, K = 0;
    std::vector<float> R, bR, Win, O1, b1, O2, b2;  /* (3H, H), (3H), (3H, 14), (8K, P), (8K), (128, K), (128) */
};

/* pywavernn.fused.input_mask: may W_in[row, col] be nonzero? */
inline bool fused_mask(int H, int row, int col) {
    if (col < 8) return true;
    const int unit = row % H, half = H / 2, P = H / 8;
    const int s = unit / half, j = (unit % half) / P, owner = (col - 8) / 3, m = (col - 8) % 3;
    return owner == s && j > m;
}

inline FusedModel random_fused_model(int H, int K, uint64_t seed, float logit_gain = 4.0f) {
    FusedModel m;
    m.H = H;
    m.K = K;
    Rng rng(seed);
    const int P = H / 8;
    const float gh = 1.0f / std::sqrt((float)H), gk = 1.0f / std::sqrt((float)K), gp = 1.0f / std::sqrt((float)P);
    fill(m.R, (size_t)3 * H * H, rng, gh);
    fill(m.bR, (size_t)3 * H, rng, gh);
    fill(m.Win, (size_t)3 * H * kFusedInputs, rng, gh * 4.0f);
    for (int row = 0; row < 3 * H; ++row)
        for (int c = 0; c < kFusedInputs; ++c)
            if (!fused_mask(H, row, c)) m.Win[(size_t)row * kFusedInputs + c] = 0.0f;
    fill(m.O1, (size_t)8 * K * P, rng, gp);
    fill(m.b1, (size_t)8 * K, rng, gp);
    fill(m.O2, (size_t)128 * K, rng, gk * logit_gain);
    fill(m.b2, 128, rng, gk);
    return m;
}

inline float scale_nibble(int v) { return (float)v / 7.5f - 1.0f; }

/* The schedule (pywavernn.fused.step_positions): the position half s generates at step n, -1 where idle. */
inline int fused_position(int s, int n, int T) {
    const int N = (T + 1) / 2;
    if (s == 0) return (n >= 0 && n < N) ? n : -1;
    const int i = n - kFusedLag;
    return (i >= 0 && i < N && 2 * i + 1 < T) ? i : -1;
}
inline int fused_steps(int T) { return (T + 1) / 2 + kFusedLag; }

struct FusedStep {
    std::vector<float> h;                         /* h' (H) */
    float logits[2][kNibbles][kNibbleClasses] = {};
    int nib[2][kNibbles] = {};                    /* the draws (0 for an idle half) */
    double margin[2][kNibbles] = {};
};

/* One step of §12 from h (H). prev (2, 4): the nibbles the input carries (silence 8, 0, 0, 0 where none);
 * t[s]: the sample half s generates (-1: idle); u[s]: its 4 uniforms. force (may be NULL): force[s][j] is used
 * as nibble j's input to the later stages (teacher forcing against another backend's draw); the draw is still
 * made and returned in o.nib. */
inline void fused_step(const FusedModel &m, const float *g, int F, int hop, const float *h, const int prev[2][4],
                       const int t[2], const float *const u[2], const int (*force)[4], FusedStep &o) {
    const int H = m.H, K = m.K, P = H / 8, half = H / 2;
    std::vector<float> rh((size_t)3 * H), hid((size_t)K);
    for (int i = 0; i < 3 * H; ++i) rh[i] = dot(&m.R[(size_t)i * H], h, H) + m.bR[i];
    float x[kFusedInputs] = {};
    for (int c = 0; c < 8; ++c) x[c] = scale_nibble(prev[c / 4][c % 4]);
    o.h.assign(h, h + H);
    for (int s = 0; s < 2; ++s)
        for (int j = 0; j < kNibbles; ++j) { o.nib[s][j] = 0; o.margin[s][j] = 1.0; }
    for (int j = 0; j < kNibbles; ++j) {
        for (int s = 0; s < 2; ++s) {
            if (t[s] < 0) continue;
            for (int uu = 0; uu < P; ++uu) {
                const int unit = s * half + j * P + uu;
                float gi[3];
                for (int gate = 0; gate < 3; ++gate) {
                    const int row = gate * H + unit;
                    const float *w = &m.Win[(size_t)row * kFusedInputs];
                    float acc = x[0] * w[0];
                    for (int c = 1; c < kFusedInputs; ++c) acc = acc + x[c] * w[c];
                    gi[gate] = acc + cond_at(g, F, H, hop, t[s], row);
                }
                const float uz = sigmoid(gi[0] + rh[unit]), r = sigmoid(gi[1] + rh[H + unit]);
                const float e = std::tanh(gi[2] + r * rh[2 * H + unit]);
                o.h[unit] = uz * h[unit] + (1.0f - uz) * e;
            }
            const int p = 4 * s + j;
            for (int k = 0; k < K; ++k) {
                const float v = dot(&m.O1[((size_t)p * K + k) * P], o.h.data() + s * half + j * P, P) +
                                m.b1[(size_t)p * K + k];
                hid[k] = v > 0.0f ? v : 0.0f;
            }
            for (int k = 0; k < kNibbleClasses; ++k)
                o.logits[s][j][k] = dot(&m.O2[((size_t)p * kNibbleClasses + k) * K], hid.data(), K) +
                                    m.b2[p * kNibbleClasses + k];
            o.nib[s][j] = sample_n<kNibbleClasses>(o.logits[s][j], u[s][j], &o.margin[s][j]);
        }
        for (int s = 0; s < 2; ++s)  /* nibble j of both samples becomes an input once both parts ran it */
            if (t[s] >= 0 && j < 3) x[8 + 3 * s + j] = scale_nibble(force != nullptr ? force[s][j] : o.nib[s][j]);
    }
}

inline int16_t join_nibbles(const int nib[4]) {
    return (int16_t)(((nib[0] << 12) | (nib[1] << 8) | (nib[2] << 4) | nib[3]) - 32768);
}
inline void split_nibbles(int16_t v, int nib[4]) {
    const int u = (int)v + 32768;
    for (int j = 0; j < 4; ++j) nib[j] = (u >> (12 - 4 * j)) & 15;
}

/* Free-running generation of T samples (uniforms (T, 4)); stops at the first sample that differs from `want`
 * (if given), returning its t, or -1 if none differs; *margin: that sample's smallest draw margin. */
inline int fused_generate(const FusedModel &m, const float *g, int F, int hop, const float *uniforms,
                          std::vector<int16_t> &out, const int16_t *want, double *margin) {
    const int T = F * hop;
    out.assign((size_t)T, 0);
    std::vector<float> h((size_t)m.H, 0.0f);
    int prev[2][4] = {{8, 0, 0, 0}, {8, 0, 0, 0}};
    FusedStep st;
    for (int n = 0; n < fused_steps(T); ++n) {
        int t[2];
        const float *u[2];
        for (int s = 0; s < 2; ++s) {
            const int i = fused_position(s, n, T);
            t[s] = i >= 0 ? 2 * i + s : -1;
            u[s] = uniforms + (size_t)(t[s] >= 0 ? t[s] : 0) * kNibbles;
        }
        fused_step(m, g, F, hop, h.data(), prev, t, u, nullptr, st);
        h = st.h;
        for (int s = 0; s < 2; ++s) {
            for (int j = 0; j < 4; ++j) prev[s][j] = t[s] >= 0 ? st.nib[s][j] : (j == 0 ? 8 : 0);
            if (t[s] < 0) continue;
            out[t[s]] = join_nibbles(st.nib[s]);
            if (want != nullptr && out[t[s]] != want[t[s]]) {
                double mg = 1.0;
                for (int j = 0; j < 4; ++j) mg = std::fmin(mg, st.margin[s][j]);
                if (margin != nullptr) *margin = mg;
                return t[s];
            }
        }
    }
    return -1;
}

} /* namespace pwr_ref */

#endif /* PWR_REFERENCE_H */
