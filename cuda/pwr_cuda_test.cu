/* pwr_cuda_test.cu: self-test of the CUDA sampler against a CPU reference (pwr_reference.h). Needs a GPU.
 *
 *   make -C cuda test && cuda/build/pwr_cuda_test [--quick]
 *
 * Checks, each printed as PASS/FAIL, exit code 0 only if all pass:
 *  1. API errors: bad descriptions and arguments give the documented status codes (no launch).
 *  2. Sampler exactness: the warp sampler (certified float64 fast path + sequential fallback) equals the
 *     sequential float32 rule on the same p, bit for bit, for 2^16 random cases, draws placed on and around
 *     every kind of class edge (u = s_k / s_255 and its float neighbours), and special inputs (ties, one-hot,
 *     underflow to 0 and subnormals, -inf, NaN, u = 0, u = 1 - 2^-24).
 *  3. End to end, several shapes (H 32..1024, odd K, hop 7..300, batch 1..4, cluster 8 and 16):
 *     - every output element written: two runs with the device buffers poisoned by different bytes (0xFF, 0x5A)
 *       must agree bit for bit (also proves run-to-run determinism); no NaN in the traces;
 *     - per-step parity, teacher forced: from the GPU's h(t-1) and previous bytes the CPU computes step t;
 *       h(t) within 1e-5 and logits within 1e-4 absolute (single-step float32 rounding is ~1e-6; a wrong gate,
 *       mask, interpolation or index is >= 1e-3), and identical c_t, f_t unless the CPU draw lies within 1e-5
 *       (relative to the cdf total) of a class edge (a rounding tie; at most 2 allowed, each reported);
 *     - the GPU's draws equal the CPU sampler run on the GPU's own logits (ties within 1e-6: exp ulps);
 *     - free-running: the CPU generates from scratch and must produce the same integers for min(T, 2000+) steps,
 *       or the first difference must sit on a CPU near-tie (margin < 1e-4), after which paths may diverge;
 *     - batch > 1: each utterance equals the same utterance generated alone, bit for bit.
 *  4. Watchdog: a worker that never publishes makes the call return PWR_CUDA_ERR_TIMEOUT (not hang), and the
 *     same sampler works normally afterwards.
 * The fused model (docs/format.md §12) has its own self-test: pwr_cuda_fused_test.cu.
 *
 * Letters: H hidden units, K output-head hidden units, F frames, hop samples per frame, T samples, B batch.
 */
#include <cuda_runtime.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "pwr_reference.h"
#include "pwr_sampler.cuh"
#include "pwr_test_util.h"
#include "pywavernn_cuda.h"

namespace {

using pwr_test::fmt;
using pwr_test::g_failed;
using pwr_test::g_passed;
using pwr_test::report;

pwr_cuda_model_desc describe(const pwr_ref::Model &m, int cluster, int timeout_ms) {
    pwr_cuda_model_desc d;
    std::memset(&d, 0, sizeof d);
    d.abi_version = PWR_CUDA_ABI_VERSION;
    d.hidden_size = m.H;
    d.out_hidden = m.K;
    d.device = -1;
    d.cluster_size = cluster;
    d.timeout_ms = timeout_ms;
    d.gru_R = m.R.data(); d.gru_b_R = m.bR.data(); d.gru_W_in = m.Win.data();
    d.out_O1 = m.O1.data(); d.out_b1 = m.b1.data(); d.out_O2 = m.O2.data(); d.out_b2 = m.b2.data();
    d.out_O3 = m.O3.data(); d.out_b3 = m.b3.data(); d.out_O4 = m.O4.data(); d.out_b4 = m.b4.data();
    return d;
}

/* ---- 1. API errors ---- */
void test_api_errors() {
    pwr_ref::Model m = pwr_ref::random_model(64, 32, 7);
    pwr_cuda_sampler *s = nullptr;
    bool ok = pwr_cuda_create(nullptr, &s) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    pwr_cuda_model_desc d = describe(m, 0, 0);
    d.abi_version = 999;
    ok = ok && pwr_cuda_create(&d, &s) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    d = describe(m, 0, 0);
    d.hidden_size = 63;
    ok = ok && pwr_cuda_create(&d, &s) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    d = describe(m, 0, 0);
    d.hidden_size = 1026;
    ok = ok && pwr_cuda_create(&d, &s) == PWR_CUDA_ERR_UNSUPPORTED;
    d = describe(m, 5, 0);
    ok = ok && pwr_cuda_create(&d, &s) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    std::vector<float> bad = m.Win;
    bad[(size_t)(64 + 3) * 3 + 2] = 0.5f; /* gate r, coarse unit 3, c_t column */
    d = describe(m, 0, 0);
    d.gru_W_in = bad.data();
    const int mask_status = pwr_cuda_create(&d, &s);
    ok = ok && mask_status == PWR_CUDA_ERR_INVALID_ARGUMENT && s == nullptr;
    d = describe(m, 0, 0);
    ok = ok && pwr_cuda_create(&d, &s) == PWR_CUDA_OK;
    if (s != nullptr) {
        std::vector<float> g(3 * 64 * 2), u(2 * 2 * 3);
        std::vector<int16_t> out(6);
        ok = ok && pwr_cuda_generate(s, g.data(), 0, 3, u.data(), out.data(), 1) == PWR_CUDA_ERR_INVALID_ARGUMENT;
        ok = ok && pwr_cuda_generate(s, g.data(), 2, 3, nullptr, out.data(), 1) == PWR_CUDA_ERR_INVALID_ARGUMENT;
        ok = ok && pwr_cuda_generate(s, g.data(), 2, 3, u.data(), out.data(), 0) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    }
    pwr_cuda_destroy(s);
    pwr_cuda_destroy(nullptr);
    report(ok, "api: status codes for bad input", ok ? "" : pwr_cuda_last_error());
}

/* ---- 2. sampler exactness ---- */
__global__ void sampler_kernel(const float *logits, const float *u, int n, int *k_warp, int *k_seq, float *p_out,
                               int *slow) {
    __shared__ __align__(16) float lg[4][256];
    __shared__ __align__(16) float ps[4][256];
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * 4 + w;
    if (i >= n) return; /* whole warps only */
    for (int k = lane; k < 256; k += 32) lg[w][k] = logits[(size_t)i * 256 + k];
    __syncwarp();
    int sl = 0;
    const int k = pwr::warp_sample(lg[w], u[i], ps[w], lane, &sl);
    __syncwarp();
    for (int j = lane; j < 256; j += 32) p_out[(size_t)i * 256 + j] = ps[w][j];
    if (lane == 0) {
        k_warp[i] = k;
        k_seq[i] = pwr::sample_sequential_p(ps[w], u[i]);
        slow[i] = sl;
    }
}

struct SamplerRun {
    std::vector<int> k_warp, k_seq, slow;
    std::vector<float> p;
};

SamplerRun run_sampler(const std::vector<float> &logits, const std::vector<float> &u) {
    const int n = (int)u.size();
    float *d_l, *d_u, *d_p;
    int *d_kw, *d_ks, *d_sl;
    CHECK_CUDA(cudaMalloc(&d_l, logits.size() * 4));
    CHECK_CUDA(cudaMalloc(&d_u, u.size() * 4));
    CHECK_CUDA(cudaMalloc(&d_p, logits.size() * 4));
    CHECK_CUDA(cudaMalloc(&d_kw, n * 4));
    CHECK_CUDA(cudaMalloc(&d_ks, n * 4));
    CHECK_CUDA(cudaMalloc(&d_sl, n * 4));
    CHECK_CUDA(cudaMemcpy(d_l, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(d_u, u.data(), u.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemset(d_kw, 0xFF, n * 4));
    CHECK_CUDA(cudaMemset(d_ks, 0xFF, n * 4));
    sampler_kernel<<<(n + 3) / 4, 128>>>(d_l, d_u, n, d_kw, d_ks, d_p, d_sl);
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaDeviceSynchronize());
    SamplerRun r;
    r.k_warp.resize(n); r.k_seq.resize(n); r.slow.resize(n); r.p.resize(logits.size());
    CHECK_CUDA(cudaMemcpy(r.k_warp.data(), d_kw, n * 4, cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(r.k_seq.data(), d_ks, n * 4, cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(r.slow.data(), d_sl, n * 4, cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(r.p.data(), d_p, logits.size() * 4, cudaMemcpyDeviceToHost));
    void *bufs[] = {d_l, d_u, d_p, d_kw, d_ks, d_sl};
    for (void *b : bufs) CHECK_CUDA(cudaFree(b));
    return r;
}

/* Every case: warp sampler == GPU sequential == CPU sequential on the GPU's p. */
void check_sampler(const char *what, const std::vector<float> &logits, const std::vector<float> &u) {
    const SamplerRun r = run_sampler(logits, u);
    long bad = 0, slow = 0;
    for (size_t i = 0; i < u.size(); ++i) {
        const int cpu = pwr::sample_sequential_p(&r.p[i * 256], u[i]);
        slow += r.slow[i];
        if (r.k_warp[i] != cpu || r.k_seq[i] != cpu) {
            if (bad < 5)
                std::printf("      case %zu: warp %d, gpu sequential %d, cpu sequential %d (u = %.9g)\n", i,
                            r.k_warp[i], r.k_seq[i], cpu, (double)u[i]);
            ++bad;
        }
    }
    report(bad == 0, std::string("sampler: ") + what,
           fmt("%zu cases, %ld differ, %ld took the sequential path", u.size(), bad, slow));
}

void test_sampler() {
    pwr_ref::Rng rng(11);
    const int n = 1 << 16;
    std::vector<float> logits((size_t)n * 256), u(n);
    const float scales[] = {0.1f, 1.0f, 4.0f, 30.0f, 300.0f};
    for (int i = 0; i < n; ++i) {
        const float sc = scales[i % 5];
        for (int k = 0; k < 256; ++k) logits[(size_t)i * 256 + k] = rng.symmetric(sc);
        u[i] = rng.uniform01();
    }
    check_sampler("random logits and draws", logits, u);

    /* Draws on and around class edges computed from the GPU's own p. */
    const int m = 1 << 12;
    std::vector<float> l2(logits.begin(), logits.begin() + (size_t)m * 256), u0(m, 0.5f);
    const SamplerRun base = run_sampler(l2, u0);
    std::vector<float> l3, u3;
    for (int i = 0; i < m; ++i) {
        const float *p = &base.p[(size_t)i * 256];
        float total = 0.0f;
        for (int k = 0; k < 256; ++k) total += p[k];
        const int k = (int)(rng.next() % 256);
        float s = 0.0f;
        for (int j = 0; j <= k; ++j) s += p[j];
        float uc = s / total;
        for (int step = 0; step < 3; ++step) uc = std::nextafter(uc, 0.0f);
        for (int step = 0; step < 7; ++step, uc = std::nextafter(uc, 1.0f)) {
            if (!(uc >= 0.0f && uc < 1.0f)) continue;
            l3.insert(l3.end(), l2.begin() + (size_t)i * 256, l2.begin() + (size_t)(i + 1) * 256);
            u3.push_back(uc);
        }
    }
    check_sampler("draws within 3 ulps of a class edge", l3, u3);

    /* Special inputs. */
    std::vector<float> l4, u4;
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const float draws[] = {0.0f, 1e-30f, 0.25f, 0.5f, 0.999f, 0.99999994f};
    for (int kind = 0; kind < 8; ++kind)
        for (float d : draws) {
            std::vector<float> l(256);
            for (int k = 0; k < 256; ++k) {
                switch (kind) {
                case 0: l[k] = 0.0f; break;                            /* all tied: p = 1, exact sums */
                case 1: l[k] = k == 77 ? 50.0f : 0.0f; break;          /* one-hot */
                case 2: l[k] = -(float)k; break;                       /* p underflows to 0 at the end */
                case 3: l[k] = -0.4f * (float)k; break;                /* subnormal p near the end */
                case 4: l[k] = (k % 3 == 0) ? -inf : 1.0f; break;      /* exact zeros between */
                case 5: l[k] = k == 200 ? nan : 0.0f; break;           /* NaN: rule answers 255 */
                case 6: l[k] = k == 9 ? inf : 0.0f; break;             /* +inf: NaN total */
                default: l[k] = (k < 128) ? -inf : 2.0f; break;        /* mass only in the upper half */
                }
            }
            l4.insert(l4.end(), l.begin(), l.end());
            u4.push_back(d);
        }
    check_sampler("special inputs (ties, 0, subnormal, inf, NaN)", l4, u4);
}

/* ---- 3. end to end ---- */
struct Config {
    const char *name;
    int H, K, F, hop, batch, cluster;
};

struct Run {
    std::vector<int16_t> out;
    std::vector<float> th, tl;
    int status = 0;
};

Run generate(pwr_cuda_sampler *s, const pwr_ref::Model &m, const std::vector<float> &g, int F, int hop,
             const std::vector<float> &u, int batch, int poison) {
    const size_t T = (size_t)F * hop;
    Run r;
    r.out.assign((size_t)batch * T, 0x1234);
    r.th.assign((size_t)batch * T * m.H, -7.0f);
    r.tl.assign((size_t)batch * T * 512, -7.0f);
    pwr_cuda_debug_set(s, poison, 0);
    r.status = pwr_cuda_generate_trace(s, g.data(), F, hop, u.data(), r.out.data(), batch, r.th.data(), r.tl.data());
    return r;
}

bool any_nan(const std::vector<float> &v) {
    for (float x : v)
        if (std::isnan(x)) return true;
    return false;
}

/* Teacher-forced parity and free-running comparison of utterance b. Returns true if it passes. */
bool compare_utterance(const Config &c, const pwr_ref::Model &m, const float *g, const float *u, const int16_t *out,
                       const float *th, const float *tl, std::string &detail) {
    const int H = m.H, T = c.F * c.hop;
    double err_h = 0.0, err_l = 0.0;
    int ties = 0, bad = 0, self_bad = 0, self_ties = 0;
    std::vector<float> zero(H, 0.0f);
    pwr_ref::Step st;
    for (int t = 0; t < T; ++t) {
        int cp = 128, fp = 0, cg = 0, fg = 0;
        if (t > 0) pwr_ref::split(out[t - 1], &cp, &fp);
        pwr_ref::split(out[t], &cg, &fg);
        const float *hprev = t > 0 ? th + (size_t)(t - 1) * H : zero.data();
        pwr_ref::step(m, g, c.F, c.hop, t, hprev, cp, fp, u[2 * t], u[2 * t + 1], cg, st);
        for (int j = 0; j < H; ++j) err_h = std::fmax(err_h, std::fabs((double)st.h[j] - th[(size_t)t * H + j]));
        const float *lc = tl + (size_t)t * 512, *lf = lc + 256;
        for (int k = 0; k < 256; ++k) {
            err_l = std::fmax(err_l, std::fabs((double)st.logits_c[k] - lc[k]));
            err_l = std::fmax(err_l, std::fabs((double)st.logits_f[k] - lf[k]));
        }
        const int pairs[2][3] = {{st.c, cg, 0}, {st.f, fg, 1}};
        for (const auto &pr : pairs) {
            if (pr[0] == pr[1]) continue;
            const double mg = pr[2] == 0 ? st.margin_c : st.margin_f;
            if (mg < 1e-5) {
                ++ties;
                std::printf("      note: step %d %s: cpu %d gpu %d at a near tie (margin %.2e)\n", t,
                            pr[2] ? "fine" : "coarse", pr[0], pr[1], mg);
            } else if (bad++ < 5) {
                std::printf("      step %d %s: cpu %d gpu %d (margin %.2e)\n", t, pr[2] ? "fine" : "coarse", pr[0],
                            pr[1], mg);
            }
        }
        double m1 = 0, m2 = 0; /* the GPU's draw from its own logits */
        const int kc = pwr_ref::sample(lc, u[2 * t], &m1), kf = pwr_ref::sample(lf, u[2 * t + 1], &m2);
        if (kc != cg) (m1 < 1e-6 ? self_ties : self_bad)++;
        if (kf != fg) (m2 < 1e-6 ? self_ties : self_bad)++;
    }
    /* Free-running from scratch. */
    std::vector<float> h(H, 0.0f);
    int cp = 128, fp = 0, first_diff = -1;
    double diff_margin = 1.0;
    for (int t = 0; t < T; ++t) {
        pwr_ref::step(m, g, c.F, c.hop, t, h.data(), cp, fp, u[2 * t], u[2 * t + 1], -1, st);
        if (pwr_ref::join(st.c, st.f) != out[t]) {
            first_diff = t;
            diff_margin = std::fmin(st.margin_c, st.margin_f);
            break;
        }
        h = st.h;
        cp = st.c;
        fp = st.f;
    }
    const bool free_ok = first_diff < 0 || diff_margin < 1e-4;
    const bool ok = err_h <= 1e-5 && err_l <= 1e-4 && bad == 0 && ties <= 2 && self_bad == 0 && free_ok;
    detail = fmt("T=%d |dh|=%.1e |dlogit|=%.1e draws: %d bad %d ties, own-logit %d bad %d ties; free-run %s", T,
                 err_h, err_l, bad, ties, self_bad, self_ties,
                 first_diff < 0 ? "identical" : fmt("diverges at %d (margin %.1e)", first_diff, diff_margin).c_str());
    return ok;
}

void test_config(const Config &c, uint64_t seed) {
    const pwr_ref::Model m = pwr_ref::random_model(c.H, c.K, seed);
    const pwr_cuda_model_desc d = describe(m, c.cluster, 0);
    pwr_cuda_sampler *s = nullptr;
    const int st = pwr_cuda_create(&d, &s);
    if (st != PWR_CUDA_OK) {
        report(false, fmt("%s: create", c.name), fmt("%s: %s", pwr_cuda_status_string(st), pwr_cuda_last_error()));
        return;
    }
    pwr_cuda_sampler_info info;
    pwr_cuda_sampler_get_info(s, &info);
    const size_t T = (size_t)c.F * c.hop, H = (size_t)c.H;
    std::vector<float> g, u;
    for (int b = 0; b < c.batch; ++b) {
        const std::vector<float> gb = pwr_ref::random_conditioning(c.F, c.H, seed * 100 + b);
        const std::vector<float> ub = pwr_ref::random_uniforms(T, seed * 100 + 50 + b);
        g.insert(g.end(), gb.begin(), gb.end());
        u.insert(u.end(), ub.begin(), ub.end());
    }
    const Run r1 = generate(s, m, g, c.F, c.hop, u, c.batch, 0xFF);
    const Run r2 = generate(s, m, g, c.F, c.hop, u, c.batch, 0x5A);
    if (r1.status != PWR_CUDA_OK || r2.status != PWR_CUDA_OK) {
        report(false, fmt("%s: generate", c.name), fmt("%s: %s", pwr_cuda_status_string(r1.status ? r1.status : r2.status),
                                                       pwr_cuda_last_error()));
        pwr_cuda_destroy(s);
        return;
    }
    const bool same = r1.out == r2.out && std::memcmp(r1.th.data(), r2.th.data(), r1.th.size() * 4) == 0 &&
                      std::memcmp(r1.tl.data(), r2.tl.data(), r1.tl.size() * 4) == 0;
    report(same && !any_nan(r1.th) && !any_nan(r1.tl), fmt("%s: all written, deterministic", c.name),
           fmt("cluster %d x %d, %d workers, coop %d, smem %d B", info.cluster_size, info.n_clusters,
               info.n_worker_blocks, info.cooperative, info.smem_bytes[0]));
    for (int b = 0; b < c.batch; ++b) {
        std::string detail;
        const bool ok = compare_utterance(c, m, &g[(size_t)b * c.F * 3 * H], &u[(size_t)b * T * 2], &r1.out[b * T],
                                          &r1.th[(size_t)b * T * H], &r1.tl[(size_t)b * T * 512], detail);
        report(ok, fmt("%s: utterance %d vs CPU reference", c.name, b), detail);
        if (c.batch > 1) {
            const std::vector<float> gb(g.begin() + (size_t)b * c.F * 3 * H, g.begin() + (size_t)(b + 1) * c.F * 3 * H);
            const std::vector<float> ub(u.begin() + (size_t)b * T * 2, u.begin() + (size_t)(b + 1) * T * 2);
            const Run alone = generate(s, m, gb, c.F, c.hop, ub, 1, 0x33);
            const bool eq = alone.status == PWR_CUDA_OK &&
                            std::memcmp(alone.out.data(), &r1.out[b * T], T * 2) == 0 &&
                            std::memcmp(alone.th.data(), &r1.th[(size_t)b * T * H], T * H * 4) == 0 &&
                            std::memcmp(alone.tl.data(), &r1.tl[(size_t)b * T * 512], T * 512 * 4) == 0;
            report(eq, fmt("%s: utterance %d batched == alone", c.name, b), "bitwise");
        }
    }
    pwr_cuda_destroy(s);
}

/* ---- 4. watchdog ---- */
void test_watchdog() {
    const pwr_ref::Model m = pwr_ref::random_model(128, 64, 5);
    const pwr_cuda_model_desc d = describe(m, 0, 300);
    pwr_cuda_sampler *s = nullptr;
    if (pwr_cuda_create(&d, &s) != PWR_CUDA_OK) {
        report(false, "watchdog: create", pwr_cuda_last_error());
        return;
    }
    const int F = 2, hop = 50;
    const std::vector<float> g = pwr_ref::random_conditioning(F, 128, 1), u = pwr_ref::random_uniforms(F * hop, 2);
    std::vector<int16_t> out(F * hop);
    pwr_cuda_debug_set(s, -1, 1);
    const int st = pwr_cuda_generate(s, g.data(), F, hop, u.data(), out.data(), 1);
    const std::string why = pwr_cuda_last_error();
    pwr_cuda_debug_set(s, -1, 0);
    const int st2 = pwr_cuda_generate(s, g.data(), F, hop, u.data(), out.data(), 1);
    report(st == PWR_CUDA_ERR_TIMEOUT && st2 == PWR_CUDA_OK, "watchdog: stalled worker -> timeout, then ok",
           fmt("got %s (%s), then %s", pwr_cuda_status_string(st), why.c_str(), pwr_cuda_status_string(st2)));
    pwr_cuda_destroy(s);
}

}  // namespace

int main(int argc, char **argv) {
    bool quick = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0) quick = true;
        else {
            std::fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            return 1;
        }
    }
    pwr_cuda_limits_info lim;
    pwr_cuda_limits(&lim);
    std::printf("pywavernn CUDA self-test: library ABI %d built for %s, H <= %d, batch/launch %d, fp32 weights\n",
                lim.abi_version, lim.compiled_arch, lim.max_hidden, lim.max_batch_per_launch);
    int n_dev = 0;
    if (pwr_cuda_device_count(&n_dev) != PWR_CUDA_OK) {
        std::printf("FAIL  cannot run: %s\n", pwr_cuda_last_error());
        return 1;
    }
    cudaDeviceProp prop;
    CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    std::printf("device 0: %s, sm_%d%d, %d SMs\n\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);

    test_api_errors();
    test_sampler();
    const int main_frames = quick ? 2 : 8; /* 8 frames x 300 = 2400 steps */
    const Config configs[] = {
        {"H896 K256 (WaveRNN-896)", 896, 256, main_frames, 300, 1, 0},
        {"H1024 K256", 1024, 256, 2, 300, 1, 0},
        {"H384 K128 batch 4", 384, 128, 2, 300, 4, 0},
        {"H96 K40 hop 7 batch 3", 96, 40, 40, 7, 3, 0},
        {"H32 K16 batch 2", 32, 16, 4, 300, 2, 0},
        {"H512 K256 cluster 8", 512, 256, 2, 300, 1, 8},
        {"H896 K256 batch 2", 896, 256, 1, 300, 2, 0},
    };
    uint64_t seed = 1000;
    for (const Config &c : configs) test_config(c, seed++);
    test_watchdog();

    std::printf("\n%s: %d passed, %d failed\n", g_failed == 0 ? "ALL PASSED" : "FAILED", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
