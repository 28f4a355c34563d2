/* pwr_reference_check.cpp: runs the C++ fused reference (pwr_reference.h, docs/format.md §12) on a model and
 * inputs written by tests/test_cuda.py, so the reference that judges the GPU is itself checked against
 * pywavernn.reference.fused on every machine (host C++ only: no CUDA, no GPU).
 *
 *   g++ -std=c++17 -O2 -ffp-contract=off -I cuda cuda/pwr_reference_check.cpp -o check && ./check DIR
 *
 * DIR holds dims.txt ("H K F hop") and float32 little-endian files R, bR, Win, O1, b1, O2, b2, g (F, 3H) and
 * uniforms (T, 4); writes DIR/samples (int16, T) and DIR/logits (float32, T x 4 x 16, by true time).
 * Letters: H hidden units, K head hidden units, F frames, hop samples per frame, T = F * hop.
 */
#include <cstdio>
#include <string>
#include <vector>

#include "pwr_reference.h"

namespace {

bool read_floats(const std::string &path, std::vector<float> &v, size_t n) {
    std::FILE *f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return false;
    v.resize(n);
    const size_t got = std::fread(v.data(), sizeof(float), n, f);
    std::fclose(f);
    return got == n;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    int H = 0, K = 0, F = 0, hop = 0;
    std::FILE *dims = std::fopen((dir + "/dims.txt").c_str(), "r");
    if (dims == nullptr || std::fscanf(dims, "%d %d %d %d", &H, &K, &F, &hop) != 4) {
        std::fprintf(stderr, "cannot read %s/dims.txt\n", dir.c_str());
        return 2;
    }
    std::fclose(dims);
    const int P = H / 8, T = F * hop;
    pwr_ref::FusedModel m;
    m.H = H;
    m.K = K;
    std::vector<float> g, u;
    const bool ok = read_floats(dir + "/R", m.R, (size_t)3 * H * H) && read_floats(dir + "/bR", m.bR, (size_t)3 * H) &&
                    read_floats(dir + "/Win", m.Win, (size_t)3 * H * 14) &&
                    read_floats(dir + "/O1", m.O1, (size_t)8 * K * P) && read_floats(dir + "/b1", m.b1, (size_t)8 * K) &&
                    read_floats(dir + "/O2", m.O2, (size_t)128 * K) && read_floats(dir + "/b2", m.b2, 128) &&
                    read_floats(dir + "/g", g, (size_t)F * 3 * H) && read_floats(dir + "/uniforms", u, (size_t)T * 4);
    if (!ok) {
        std::fprintf(stderr, "cannot read the model or inputs in %s\n", dir.c_str());
        return 2;
    }
    /* The generation of pwr_ref::fused_generate, step by step, keeping the logits by true time. */
    std::vector<int16_t> out((size_t)T, 0);
    std::vector<float> logits((size_t)T * 64, 0.0f), h((size_t)H, 0.0f);
    int prev[2][4] = {{8, 0, 0, 0}, {8, 0, 0, 0}};
    pwr_ref::FusedStep st;
    for (int n = 0; n < pwr_ref::fused_steps(T); ++n) {
        int t[2];
        const float *us[2];
        for (int s = 0; s < 2; ++s) {
            const int i = pwr_ref::fused_position(s, n, T);
            t[s] = i >= 0 ? 2 * i + s : -1;
            us[s] = u.data() + (size_t)(t[s] >= 0 ? t[s] : 0) * 4;
        }
        pwr_ref::fused_step(m, g.data(), F, hop, h.data(), prev, t, us, nullptr, st);
        h = st.h;
        for (int s = 0; s < 2; ++s) {
            for (int j = 0; j < 4; ++j) prev[s][j] = t[s] >= 0 ? st.nib[s][j] : (j == 0 ? 8 : 0);
            if (t[s] < 0) continue;
            out[t[s]] = pwr_ref::join_nibbles(st.nib[s]);
            for (int j = 0; j < 4; ++j)
                for (int k = 0; k < 16; ++k) logits[(size_t)t[s] * 64 + j * 16 + k] = st.logits[s][j][k];
        }
    }
    std::FILE *fs = std::fopen((dir + "/samples").c_str(), "wb");
    std::FILE *fl = std::fopen((dir + "/logits").c_str(), "wb");
    if (fs == nullptr || fl == nullptr) return 2;
    std::fwrite(out.data(), sizeof(int16_t), out.size(), fs);
    std::fwrite(logits.data(), sizeof(float), logits.size(), fl);
    std::fclose(fs);
    std::fclose(fl);
    return 0;
}
