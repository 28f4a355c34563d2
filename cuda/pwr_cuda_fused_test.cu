/* pwr_cuda_fused_test.cu: self-test of the CUDA sampler's Fused Subscale WaveRNN 2x (docs/format.md §12;
 * wavernn_fused.cu) against the C++ reference (pwr_reference.h: pwr_ref::fused_step, itself checked against
 * pywavernn.reference.fused by tests/test_cuda.py on every machine). Needs a GPU.
 *
 *   make -C cuda test && cuda/build/pwr_cuda_fused_test [--quick]
 *
 * Checks, each printed as PASS/FAIL, exit code 0 only if all pass:
 *  1. API errors: a fused description with H not a multiple of 8, a broken §12 input mask, a missing fused_*
 *     pointer or an unknown model_kind gives PWR_CUDA_ERR_INVALID_ARGUMENT; a fused sampler refuses T < 2.
 *  2. Nibble sampler: warp_sample_nibble equals §4's rule over 16 classes (pwr::sample_sequential_n<16> on the
 *     CPU) for 2^16 random cases unless the CPU draw lies within 1e-6 of a class edge (std::exp and the GPU's
 *     expf may differ by an ulp), and exactly on special inputs (ties, one-hot, -inf, NaN, +inf).
 *  3. End to end, several shapes (H 8..1024, odd K, even and odd T, T = 2 and 3, batch 1..4, cluster 8 and 16):
 *     - every output element written, run to run identical (two runs, buffers poisoned with different bytes);
 *     - per step, teacher forced: from the GPU's h before step n and the nibbles the GPU drew, the CPU computes
 *       step n; h within 1e-5 and logits within 1e-4 absolute (as the plain test), the same draws unless the CPU
 *       draw lies within 1e-5 of a class edge (at most 2 such ties, each reported);
 *     - the GPU's draws equal §4's rule on the GPU's own logits (ties within 1e-6);
 *     - free-running from scratch the CPU produces the same samples, or the first difference sits on a near tie;
 *     - batch > 1: each utterance equals the same utterance generated alone, bit for bit.
 *  4. Watchdog: a stalled worker gives PWR_CUDA_ERR_TIMEOUT, then the sampler works again.
 *
 * Letters: H hidden units, K head hidden units, P = H/8, F frames, hop samples per frame, T samples, n a step.
 */
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
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
using pwr_test::report;

pwr_cuda_model_desc describe(const pwr_ref::FusedModel &m, int cluster, int timeout_ms) {
    pwr_cuda_model_desc d;
    std::memset(&d, 0, sizeof d);
    d.abi_version = PWR_CUDA_ABI_VERSION;
    d.model_kind = PWR_CUDA_MODEL_FUSED;
    d.hidden_size = m.H;
    d.out_hidden = m.K;
    d.device = -1;
    d.cluster_size = cluster;
    d.timeout_ms = timeout_ms;
    d.gru_R = m.R.data(); d.gru_b_R = m.bR.data(); d.gru_W_in = m.Win.data();
    d.fused_O1 = m.O1.data(); d.fused_b1 = m.b1.data(); d.fused_O2 = m.O2.data(); d.fused_b2 = m.b2.data();
    return d;
}

/* ---- 1. API errors ---- */
void test_api_errors() {
    const pwr_ref::FusedModel m = pwr_ref::random_fused_model(64, 32, 7);
    pwr_cuda_sampler *s = nullptr;
    pwr_cuda_model_desc d = describe(m, 0, 0);
    d.hidden_size = 60; /* even, not a multiple of 8 */
    bool ok = pwr_cuda_create(&d, &s) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    d = describe(m, 0, 0);
    d.model_kind = 7;
    ok = ok && pwr_cuda_create(&d, &s) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    d = describe(m, 0, 0);
    d.fused_O2 = nullptr;
    ok = ok && pwr_cuda_create(&d, &s) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    std::vector<float> bad = m.Win;
    bad[(size_t)(64 + 8) * 14 + 8] = 0.5f; /* gate r, part (0, 1) row 0, nibble 0 of its own sample: allowed */
    d = describe(m, 0, 0);
    d.gru_W_in = bad.data();
    const int allowed = pwr_cuda_create(&d, &s);
    pwr_cuda_destroy(s);
    s = nullptr;
    bad[(size_t)(64 + 8) * 14 + 9] = 0.5f; /* ... and its nibble 1, which part (0, 1) may not see */
    const int refused = pwr_cuda_create(&d, &s);
    const std::string why = pwr_cuda_last_error();
    ok = ok && allowed == PWR_CUDA_OK && refused == PWR_CUDA_ERR_INVALID_ARGUMENT && s == nullptr;
    bad = m.Win;
    bad[(size_t)(2 * 64 + 32) * 14 + 8] = 0.5f; /* gate e, half 1 part 0: half 0's nibble 0 */
    d.gru_W_in = bad.data();
    ok = ok && pwr_cuda_create(&d, &s) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    d = describe(m, 0, 0);
    ok = ok && pwr_cuda_create(&d, &s) == PWR_CUDA_OK;
    if (s != nullptr) {
        std::vector<float> g(3 * 64), u(4);
        std::vector<int16_t> out(1);
        ok = ok && pwr_cuda_generate(s, g.data(), 1, 1, u.data(), out.data(), 1) == PWR_CUDA_ERR_INVALID_ARGUMENT;
    }
    pwr_cuda_destroy(s);
    report(ok, "fused api: status codes for bad input", ok ? why : pwr_cuda_last_error());
}

/* ---- 2. the nibble sampler ---- */
__global__ void nibble_kernel(const float *logits, const float *u, int n, int *k_out) {
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * 4 + w;
    if (i >= n) return; /* whole warps only */
    const int k = pwr::warp_sample_nibble(logits + (size_t)i * 16, u[i], lane);
    if (lane == 0) k_out[i] = k;
}

void check_nibbles(const char *what, const std::vector<float> &logits, const std::vector<float> &u, bool exact) {
    const int n = (int)u.size();
    float *d_l, *d_u;
    int *d_k;
    CHECK_CUDA(cudaMalloc(&d_l, logits.size() * 4));
    CHECK_CUDA(cudaMalloc(&d_u, u.size() * 4));
    CHECK_CUDA(cudaMalloc(&d_k, n * 4));
    CHECK_CUDA(cudaMemcpy(d_l, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(d_u, u.data(), u.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemset(d_k, 0xFF, n * 4));
    nibble_kernel<<<(n + 3) / 4, 128>>>(d_l, d_u, n, d_k);
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaDeviceSynchronize());
    std::vector<int> k(n);
    CHECK_CUDA(cudaMemcpy(k.data(), d_k, n * 4, cudaMemcpyDeviceToHost));
    for (void *b : {(void *)d_l, (void *)d_u, (void *)d_k}) CHECK_CUDA(cudaFree(b));
    long bad = 0, ties = 0;
    for (int i = 0; i < n; ++i) {
        double margin = 1.0;
        const int cpu = pwr_ref::sample_n<16>(&logits[(size_t)i * 16], u[i], &margin);
        if (k[i] == cpu) continue;
        if (!exact && margin < 1e-6) { ++ties; continue; }
        if (bad++ < 5) std::printf("      case %d: gpu %d cpu %d (u = %.9g, margin %.1e)\n", i, k[i], cpu, (double)u[i], margin);
    }
    report(bad == 0, std::string("nibble sampler: ") + what, fmt("%d cases, %ld differ, %ld near ties", n, bad, ties));
}

void test_nibble_sampler() {
    pwr_ref::Rng rng(21);
    const int n = 1 << 16;
    std::vector<float> logits((size_t)n * 16), u(n);
    const float scales[] = {0.1f, 1.0f, 4.0f, 30.0f, 300.0f};
    for (int i = 0; i < n; ++i) {
        for (int k = 0; k < 16; ++k) logits[(size_t)i * 16 + k] = rng.symmetric(scales[i % 5]);
        u[i] = rng.uniform01();
    }
    check_nibbles("random logits and draws", logits, u, false);
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> l2, u2;
    const float draws[] = {0.0f, 0.25f, 0.5f, 0.999f, 0.99999994f};
    for (int kind = 0; kind < 5; ++kind)
        for (float d : draws) {
            for (int k = 0; k < 16; ++k) {
                switch (kind) {
                case 0: l2.push_back(0.0f); break;                          /* all tied: exact sums */
                case 1: l2.push_back(k == 7 ? 50.0f : 0.0f); break;          /* one-hot */
                case 2: l2.push_back((k % 3 == 0) ? -inf : 1.0f); break;     /* exact zeros between */
                case 3: l2.push_back(k == 5 ? nan : 0.0f); break;            /* NaN: the rule answers 15 */
                default: l2.push_back(k == 9 ? inf : 0.0f); break;           /* +inf: NaN total, 15 */
                }
            }
            u2.push_back(d);
        }
    check_nibbles("special inputs (ties, one-hot, -inf, NaN, inf)", l2, u2, true);
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

Run generate(pwr_cuda_sampler *s, int H, const std::vector<float> &g, int F, int hop, const std::vector<float> &u,
             int batch, int poison) {
    const size_t T = (size_t)F * hop;
    Run r;
    r.out.assign((size_t)batch * T, 0x1234);
    r.th.assign((size_t)batch * T * H, -7.0f);
    r.tl.assign((size_t)batch * T * 64, -7.0f);
    pwr_cuda_debug_set(s, poison, 0);
    r.status = pwr_cuda_generate_trace(s, g.data(), F, hop, u.data(), r.out.data(), batch, r.th.data(), r.tl.data());
    return r;
}

/* Teacher-forced parity, draws on own logits, and free-running comparison of one utterance. */
bool compare_utterance(const Config &c, const pwr_ref::FusedModel &m, const float *g, const float *u,
                       const int16_t *out, const float *th, const float *tl, std::string &detail) {
    const int H = m.H, T = c.F * c.hop;
    double err_h = 0.0, err_l = 0.0;
    int ties = 0, bad = 0, self_bad = 0, self_ties = 0;
    std::vector<float> h_before((size_t)H, 0.0f);  /* h after the last step that generated something */
    int prev[2][4] = {{8, 0, 0, 0}, {8, 0, 0, 0}};
    pwr_ref::FusedStep st;
    for (int n = 0; n < pwr_ref::fused_steps(T); ++n) {
        int t[2], force[2][4] = {};
        const float *us[2];
        for (int s = 0; s < 2; ++s) {
            const int i = pwr_ref::fused_position(s, n, T);
            t[s] = i >= 0 ? 2 * i + s : -1;
            us[s] = u + (size_t)(t[s] >= 0 ? t[s] : 0) * 4;
            if (t[s] >= 0) pwr_ref::split_nibbles(out[t[s]], force[s]);
        }
        pwr_ref::fused_step(m, g, c.F, c.hop, h_before.data(), prev, t, us, force, st);
        const int t_any = t[0] >= 0 ? t[0] : t[1];
        if (t_any >= 0) {
            const float *hg = th + (size_t)t_any * H;
            for (int j = 0; j < H; ++j) err_h = std::fmax(err_h, std::fabs((double)st.h[j] - hg[j]));
            h_before.assign(hg, hg + H);  /* the next step starts from the GPU's state */
        }
        for (int s = 0; s < 2; ++s) {
            for (int j = 0; j < 4; ++j) prev[s][j] = t[s] >= 0 ? force[s][j] : (j == 0 ? 8 : 0);
            if (t[s] < 0) continue;
            for (int j = 0; j < 4; ++j) {
                const float *lg = tl + ((size_t)t[s] * 4 + j) * 16;
                for (int k = 0; k < 16; ++k) err_l = std::fmax(err_l, std::fabs((double)st.logits[s][j][k] - lg[k]));
                if (st.nib[s][j] != force[s][j]) {
                    if (st.margin[s][j] < 1e-5) {
                        ++ties;
                        std::printf("      note: step %d half %d nibble %d: cpu %d gpu %d at a near tie (margin %.2e)\n",
                                    n, s, j, st.nib[s][j], force[s][j], st.margin[s][j]);
                    } else if (bad++ < 5) {
                        std::printf("      step %d half %d nibble %d: cpu %d gpu %d (margin %.2e)\n", n, s, j,
                                    st.nib[s][j], force[s][j], st.margin[s][j]);
                    }
                }
                double mg = 1.0;
                if (pwr_ref::sample_n<16>(lg, us[s][j], &mg) != force[s][j]) (mg < 1e-6 ? self_ties : self_bad)++;
            }
        }
    }
    std::vector<int16_t> cpu;
    double diff_margin = 1.0;
    const int first_diff = pwr_ref::fused_generate(m, g, c.F, c.hop, u, cpu, out, &diff_margin);
    const bool free_ok = first_diff < 0 || diff_margin < 1e-4;
    const bool ok = err_h <= 1e-5 && err_l <= 1e-4 && bad == 0 && ties <= 2 && self_bad == 0 && free_ok;
    detail = fmt("T=%d |dh|=%.1e |dlogit|=%.1e draws: %d bad %d ties, own-logit %d bad %d ties; free-run %s", T,
                 err_h, err_l, bad, ties, self_bad, self_ties,
                 first_diff < 0 ? "identical" : fmt("diverges at %d (margin %.1e)", first_diff, diff_margin).c_str());
    return ok;
}

bool any_nan(const std::vector<float> &v) {
    for (float x : v)
        if (std::isnan(x)) return true;
    return false;
}

void test_config(const Config &c, uint64_t seed) {
    const pwr_ref::FusedModel m = pwr_ref::random_fused_model(c.H, c.K, seed);
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
        const std::vector<float> ub = pwr_ref::random_uniforms(T, seed * 100 + 50 + b, 4);
        g.insert(g.end(), gb.begin(), gb.end());
        u.insert(u.end(), ub.begin(), ub.end());
    }
    const Run r1 = generate(s, c.H, g, c.F, c.hop, u, c.batch, 0xFF);
    const Run r2 = generate(s, c.H, g, c.F, c.hop, u, c.batch, 0x5A);
    if (r1.status != PWR_CUDA_OK || r2.status != PWR_CUDA_OK) {
        report(false, fmt("%s: generate", c.name),
               fmt("%s: %s", pwr_cuda_status_string(r1.status ? r1.status : r2.status), pwr_cuda_last_error()));
        pwr_cuda_destroy(s);
        return;
    }
    const bool same = r1.out == r2.out && std::memcmp(r1.th.data(), r2.th.data(), r1.th.size() * 4) == 0 &&
                      std::memcmp(r1.tl.data(), r2.tl.data(), r1.tl.size() * 4) == 0;
    report(same && !any_nan(r1.th) && !any_nan(r1.tl), fmt("%s: all written, deterministic", c.name),
           fmt("kind %d, cluster %d x %d, %d workers, coop %d, smem %d B, %d regs", info.model_kind,
               info.cluster_size, info.n_clusters, info.n_worker_blocks, info.cooperative, info.smem_bytes[0],
               info.registers_per_thread));
    for (int b = 0; b < c.batch; ++b) {
        std::string detail;
        const bool ok = compare_utterance(c, m, &g[(size_t)b * c.F * 3 * H], &u[(size_t)b * T * 4], &r1.out[b * T],
                                          &r1.th[(size_t)b * T * H], &r1.tl[(size_t)b * T * 64], detail);
        report(ok, fmt("%s: utterance %d vs CPU reference", c.name, b), detail);
        if (c.batch > 1) {
            const std::vector<float> gb(g.begin() + (size_t)b * c.F * 3 * H, g.begin() + (size_t)(b + 1) * c.F * 3 * H);
            const std::vector<float> ub(u.begin() + (size_t)b * T * 4, u.begin() + (size_t)(b + 1) * T * 4);
            const Run alone = generate(s, c.H, gb, c.F, c.hop, ub, 1, 0x33);
            const bool eq = alone.status == PWR_CUDA_OK && std::memcmp(alone.out.data(), &r1.out[b * T], T * 2) == 0 &&
                            std::memcmp(alone.th.data(), &r1.th[(size_t)b * T * H], T * H * 4) == 0 &&
                            std::memcmp(alone.tl.data(), &r1.tl[(size_t)b * T * 64], T * 64 * 4) == 0;
            report(eq, fmt("%s: utterance %d batched == alone", c.name, b), "bitwise");
        }
    }
    pwr_cuda_destroy(s);
}

/* ---- 4. watchdog ---- */
void test_watchdog() {
    const pwr_ref::FusedModel m = pwr_ref::random_fused_model(128, 32, 5);
    const pwr_cuda_model_desc d = describe(m, 0, 300);
    pwr_cuda_sampler *s = nullptr;
    if (pwr_cuda_create(&d, &s) != PWR_CUDA_OK) {
        report(false, "fused watchdog: create", pwr_cuda_last_error());
        return;
    }
    const int F = 2, hop = 50;
    const std::vector<float> g = pwr_ref::random_conditioning(F, 128, 1), u = pwr_ref::random_uniforms(F * hop, 2, 4);
    std::vector<int16_t> out(F * hop);
    pwr_cuda_debug_set(s, -1, 1);
    const int st = pwr_cuda_generate(s, g.data(), F, hop, u.data(), out.data(), 1);
    const std::string why = pwr_cuda_last_error();
    pwr_cuda_debug_set(s, -1, 0);
    const int st2 = pwr_cuda_generate(s, g.data(), F, hop, u.data(), out.data(), 1);
    report(st == PWR_CUDA_ERR_TIMEOUT && st2 == PWR_CUDA_OK, "fused watchdog: stalled worker -> timeout, then ok",
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
    std::printf("pywavernn CUDA fused self-test: library ABI %d built for %s, model kinds 0x%x, H multiple of %d\n",
                lim.abi_version, lim.compiled_arch, lim.model_kinds, lim.fused_hidden_multiple);
    int n_dev = 0;
    if (pwr_cuda_device_count(&n_dev) != PWR_CUDA_OK) {
        std::printf("FAIL  cannot run: %s\n", pwr_cuda_last_error());
        return 1;
    }
    cudaDeviceProp prop;
    CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    std::printf("device 0: %s, sm_%d%d, %d SMs\n\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);

    test_api_errors();
    test_nibble_sampler();
    const int main_frames = quick ? 2 : 8; /* 8 frames x 300 = 2400 samples, 1203 steps */
    const Config configs[] = {
        {"fused H1024 K64", 1024, 64, main_frames, 300, 1, 0},
        {"fused H512 K256 cluster 8", 512, 256, 2, 300, 1, 8},
        {"fused H256 K64 batch 4", 256, 64, 2, 300, 4, 0},
        {"fused H64 K33 hop 7 odd T batch 3", 64, 33, 5, 7, 3, 0},
        {"fused H8 K16 T=2", 8, 16, 1, 2, 1, 0},
        {"fused H16 K8 T=3 batch 2", 16, 8, 1, 3, 2, 0},
        {"fused H1024 K256 batch 2", 1024, 256, 1, 300, 2, 0},
    };
    uint64_t seed = 2000;
    for (const Config &c : configs) test_config(c, seed++);
    test_watchdog();

    std::printf("\n%s: %d passed, %d failed\n", pwr_test::g_failed == 0 ? "ALL PASSED" : "FAILED", pwr_test::g_passed,
                pwr_test::g_failed);
    return pwr_test::g_failed == 0 ? 0 : 1;
}
