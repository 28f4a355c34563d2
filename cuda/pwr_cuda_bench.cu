/* pwr_cuda_bench.cu: samples/s of the CUDA sampler (WaveRNN-896 by default), single utterance and batches.
 *
 *   make -C cuda bench && cuda/build/pwr_cuda_bench [--hidden 896] [--out-hidden 256] [--frames 80] [--hop 300]
 *                                                   [--repeats 7] [--batches 1,2,4,8] [--cluster 0] [--json FILE]
 *
 * What it measures: wall time of whole pwr_cuda_generate calls (synchronous: upload of g and the uniforms, the
 * launch(es), download), median of --repeats after one warm-up call, as samples/s = batch * T / time and as a
 * real-time factor at 24 kHz; also us/step = time / T (per launch of up to 4 utterances). Each batch size uses
 * its own fresh inputs; the first 300 steps of one utterance are checked against the CPU reference before any
 * timing (teacher forced: h within 1e-5, logits within 1e-4, same integers), so a broken build reports FAIL
 * rather than a speed. Exit code 0 if the check passed and every call succeeded.
 * Not a test of exactness (pwr_cuda_test does that) and not a kernel profile (use nsys / ncu on this binary).
 *
 * Letters: H hidden units, K output-head hidden units, F frames, hop samples per frame, T = F * hop.
 */
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pwr_reference.h"
#include "pywavernn_cuda.h"

namespace {

struct Options {
    int H = 896, K = 256, F = 80, hop = 300, repeats = 7, cluster = 0;
    std::vector<int> batches = {1, 2, 4, 8};
    const char *json = nullptr;
};

bool parse(int argc, char **argv, Options &o) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) return false;
        const char *v = argv[++i];
        if (a == "--hidden") o.H = std::atoi(v);
        else if (a == "--out-hidden") o.K = std::atoi(v);
        else if (a == "--frames") o.F = std::atoi(v);
        else if (a == "--hop") o.hop = std::atoi(v);
        else if (a == "--repeats") o.repeats = std::atoi(v);
        else if (a == "--cluster") o.cluster = std::atoi(v);
        else if (a == "--json") o.json = v;
        else if (a == "--batches") {
            o.batches.clear();
            for (const char *p = v; *p != '\0';) {
                o.batches.push_back(std::atoi(p));
                const char *c = std::strchr(p, ',');
                if (c == nullptr) break;
                p = c + 1;
            }
        } else return false;
    }
    for (int b : o.batches)
        if (b < 1) return false;
    return o.H > 0 && o.K > 0 && o.F > 0 && o.hop > 0 && o.repeats > 0 && !o.batches.empty();
}

pwr_cuda_model_desc describe(const pwr_ref::Model &m, int cluster) {
    pwr_cuda_model_desc d;
    std::memset(&d, 0, sizeof d);
    d.abi_version = PWR_CUDA_ABI_VERSION;
    d.hidden_size = m.H;
    d.out_hidden = m.K;
    d.device = -1;
    d.cluster_size = cluster;
    d.gru_R = m.R.data(); d.gru_b_R = m.bR.data(); d.gru_W_in = m.Win.data();
    d.out_O1 = m.O1.data(); d.out_b1 = m.b1.data(); d.out_O2 = m.O2.data(); d.out_b2 = m.b2.data();
    d.out_O3 = m.O3.data(); d.out_b3 = m.b3.data(); d.out_O4 = m.O4.data(); d.out_b4 = m.b4.data();
    return d;
}

/* Teacher-forced check of the first steps of one utterance (see pwr_cuda_test.cu for the full test). */
bool validate(pwr_cuda_sampler *s, const pwr_ref::Model &m, int hop) {
    const int F = std::max(1, 300 / hop), T = F * hop, H = m.H;
    const std::vector<float> g = pwr_ref::random_conditioning(F, H, 77), u = pwr_ref::random_uniforms(T, 78);
    std::vector<int16_t> out(T);
    std::vector<float> th((size_t)T * H), tl((size_t)T * 512);
    if (pwr_cuda_generate_trace(s, g.data(), F, hop, u.data(), out.data(), 1, th.data(), tl.data()) != PWR_CUDA_OK) {
        std::printf("FAIL  validation run: %s\n", pwr_cuda_last_error());
        return false;
    }
    double eh = 0, el = 0;
    int bad = 0;
    std::vector<float> zero(H, 0.0f);
    pwr_ref::Step st;
    for (int t = 0; t < T; ++t) {
        int cp = 128, fp = 0, cg, fg;
        if (t > 0) pwr_ref::split(out[t - 1], &cp, &fp);
        pwr_ref::split(out[t], &cg, &fg);
        pwr_ref::step(m, g.data(), F, hop, t, t ? &th[(size_t)(t - 1) * H] : zero.data(), cp, fp, u[2 * t],
                      u[2 * t + 1], cg, st);
        for (int j = 0; j < H; ++j) eh = std::max(eh, (double)std::fabs(st.h[j] - th[(size_t)t * H + j]));
        for (int k = 0; k < 256; ++k) {
            el = std::max(el, (double)std::fabs(st.logits_c[k] - tl[(size_t)t * 512 + k]));
            el = std::max(el, (double)std::fabs(st.logits_f[k] - tl[(size_t)t * 512 + 256 + k]));
        }
        if ((st.c != cg && st.margin_c >= 1e-5) || (st.f != fg && st.margin_f >= 1e-5)) ++bad;
    }
    const bool ok = eh <= 1e-5 && el <= 1e-4 && bad == 0;
    std::printf("%s  validation: %d steps, max |dh| %.1e, max |dlogit| %.1e, %d wrong draws\n", ok ? "PASS" : "FAIL",
                T, eh, el, bad);
    return ok;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char **argv) {
    Options o;
    if (!parse(argc, argv, o)) {
        std::fprintf(stderr, "usage: %s [--hidden H] [--out-hidden K] [--frames F] [--hop HOP] [--repeats N] "
                             "[--batches 1,2,4,8] [--cluster 0|8|16] [--json FILE]\n", argv[0]);
        return 1;
    }
    int n_dev = 0;
    if (pwr_cuda_device_count(&n_dev) != PWR_CUDA_OK) {
        std::printf("FAIL  cannot run: %s\n", pwr_cuda_last_error());
        return 1;
    }
    const pwr_ref::Model m = pwr_ref::random_model(o.H, o.K, 2024);
    const pwr_cuda_model_desc d = describe(m, o.cluster);
    pwr_cuda_sampler *s = nullptr;
    if (pwr_cuda_create(&d, &s) != PWR_CUDA_OK) {
        std::printf("FAIL  create: %s\n", pwr_cuda_last_error());
        return 1;
    }
    bool ok = validate(s, m, o.hop);
    pwr_cuda_sampler_info info;
    pwr_cuda_sampler_get_info(s, &info);
    std::printf("device %s (sm_%d, %d SMs): cluster %d x %d clusters, %d worker blocks (<= %d rows of R each), "
                "smem/block %d/%d/%d B (batch 1/2/4) of %d, %d regs, %d B local, cooperative %d\n",
                info.device_name, info.compute_capability, info.multiprocessors, info.cluster_size, info.n_clusters,
                info.n_worker_blocks, info.worker_rows_max, info.smem_bytes[0], info.smem_bytes[1],
                info.smem_bytes[2], info.max_smem_per_block, info.registers_per_thread, info.local_bytes_per_thread,
                info.cooperative);
    const int T = o.F * o.hop;
    std::printf("H=%d K=%d T=%d samples per utterance (%.2f s at 24 kHz), median of %d\n\n", o.H, o.K, T,
                T / 24000.0, o.repeats);
    std::printf("%6s %12s %14s %10s %12s\n", "batch", "median ms", "samples/s", "x realtime", "us/step");
    std::string json = "[";
    for (size_t bi = 0; bi < o.batches.size() && ok; ++bi) {
        const int B = o.batches[bi];
        std::vector<float> g, u;
        for (int b = 0; b < B; ++b) {
            const std::vector<float> gb = pwr_ref::random_conditioning(o.F, o.H, 500 + b);
            const std::vector<float> ub = pwr_ref::random_uniforms((size_t)T, 900 + b);
            g.insert(g.end(), gb.begin(), gb.end());
            u.insert(u.end(), ub.begin(), ub.end());
        }
        std::vector<int16_t> out((size_t)B * T);
        std::vector<double> times;
        for (int r = 0; r <= o.repeats; ++r) { /* r = 0 is the warm-up */
            const auto t0 = std::chrono::steady_clock::now();
            const int st = pwr_cuda_generate(s, g.data(), o.F, o.hop, u.data(), out.data(), B);
            const auto t1 = std::chrono::steady_clock::now();
            if (st != PWR_CUDA_OK) {
                std::printf("FAIL  batch %d: %s\n", B, pwr_cuda_last_error());
                ok = false;
                break;
            }
            if (r > 0) times.push_back(std::chrono::duration<double>(t1 - t0).count());
        }
        if (!ok) break;
        const double sec = median(times), sps = (double)B * T / sec;
        const int launches = (B + info.max_batch_per_launch - 1) / info.max_batch_per_launch;
        const double us_step = sec * 1e6 / ((double)T * launches);
        std::printf("%6d %12.2f %14.0f %10.1f %12.2f\n", B, sec * 1e3, sps, sps / 24000.0, us_step);
        char buf[256];
        std::snprintf(buf, sizeof buf, "%s{\"batch\": %d, \"median_s\": %.6f, \"samples_per_s\": %.1f, "
                      "\"us_per_step\": %.3f}", bi ? ", " : "", B, sec, sps, us_step);
        json += buf;
    }
    json += "]";
    if (o.json != nullptr && ok) {
        FILE *f = std::fopen(o.json, "w");
        if (f != nullptr) {
            std::fprintf(f, "{\"device\": \"%s\", \"H\": %d, \"K\": %d, \"T\": %d, \"cluster_size\": %d, "
                         "\"n_worker_blocks\": %d, \"cooperative\": %d, \"results\": %s}\n", info.device_name, o.H,
                         o.K, T, info.cluster_size, info.n_worker_blocks, info.cooperative, json.c_str());
            std::fclose(f);
        }
    }
    pwr_cuda_destroy(s);
    return ok ? 0 : 1;
}
