// The time loops of training/fast_gru.py in C++: the same recurrence and hand-written backward, with each step's
// elementwise work fused into one pass over the N x H state instead of a dozen torch ops.
//
// Built on first use by torch.utils.cpp_extension.load (training/fast_gru.py, `_extension`), for the CPU it runs
// on; training/fast_gru.py keeps the same loops in Python (the readable form, and the fallback when no compiler
// is found). tests/test_fast_gru.py holds both to torch.nn.GRU.
//
// Layouts (all contiguous, time-major; gates in torch order r, z, n):
//   gi      (T, N, 3H) float32   W_ih x_t + b_ih
//   w_t     (H, 3H)    float32 or bfloat16   W_hh^T, the forward product's right operand
//   w       (3H, H)    same dtype as w_t     W_hh, the backward product's right operand
//   b_hh    (3H,)      float32
//   states  (T + 1, N, H) float32, states[0] = h0; hmm (T + 1, N, H) in the product dtype (a copy of states
//           for the products; the same tensor as states in float32)
//   rz      (T, N, 2H), n (T, N, H), ghn (T, N, H) float32: saved for the backward (ghn = (W_hh h)_n + b_hn)
// Preconditions (checked by the Python caller, gru_scan): shapes as above, N >= 1, T >= 1.
// Arithmetic: float32 elementwise; products as torch.mm in the operand dtype (bf16 operands accumulate in
// float32 inside oneDNN, their result is rounded to bf16 before the elementwise pass reads it).
#include <torch/extension.h>

#include <cmath>
#include <vector>

namespace {

template <typename M>
inline float as_float(M v) { return static_cast<float>(v); }

// sigmoid and tanh through expf, in forms the compiler vectorises (with -ffast-math, glibc's libmvec); the
// clamps keep expf finite (tanh(+-15) and sigmoid(+-80) are +-1 / 0, 1 in float32 already).
inline float sigmoid(float x) {
    x = x < -80.0f ? -80.0f : (x > 80.0f ? 80.0f : x);
    return 1.0f / (1.0f + std::exp(-x));
}
inline float tanh_(float x) {
    x = x < -15.0f ? -15.0f : (x > 15.0f ? 15.0f : x);
    return 1.0f - 2.0f / (1.0f + std::exp(2.0f * x));
}

// One forward step's elementwise pass: gh = the product h W_hh^T (N, 3H) in its dtype. Loops are kept simple
// (one store stream each, no branches) so that they vectorise.
template <typename M>
void forward_pass(const float* __restrict gi, const M* __restrict gh, const float* __restrict b,
                  const float* __restrict h, float* __restrict rz, float* __restrict n, float* __restrict ghn,
                  float* __restrict h_out, M* __restrict hmm_out, int64_t batch, int64_t hidden) {
    const int64_t h3 = 3 * hidden, h2 = 2 * hidden;
    for (int64_t i = 0; i < batch; ++i) {
        const float* __restrict gi_i = gi + i * h3;
        const M* __restrict gh_i = gh + i * h3;
        float* __restrict rz_i = rz + i * h2;
        float* __restrict ghn_i = ghn + i * hidden;
        float* __restrict n_i = n + i * hidden;
        const float* __restrict h_i = h + i * hidden;
        float* __restrict ho_i = h_out + i * hidden;
        for (int64_t j = 0; j < h2; ++j) rz_i[j] = sigmoid(gi_i[j] + as_float(gh_i[j]) + b[j]);
        for (int64_t j = 0; j < hidden; ++j) ghn_i[j] = as_float(gh_i[h2 + j]) + b[h2 + j];
        for (int64_t j = 0; j < hidden; ++j) n_i[j] = tanh_(gi_i[h2 + j] + rz_i[j] * ghn_i[j]);
        for (int64_t j = 0; j < hidden; ++j) ho_i[j] = n_i[j] + rz_i[hidden + j] * (h_i[j] - n_i[j]);
        if (hmm_out != nullptr) {
            M* __restrict hm_i = hmm_out + i * hidden;
            for (int64_t j = 0; j < hidden; ++j) hm_i[j] = static_cast<M>(ho_i[j]);
        }
    }
}

// One backward step's elementwise pass. dh' = d_out[t] + dhz (dh'(t + 1) z(t + 1) from the step after) + prod
// (the product dgh(t + 1) W_hh, in its dtype; null at the last step). Writes dgi, dgh (float32, and dgh_mm in the
// product dtype when that differs) and dhz_out = dh' z for the step before.
template <typename M>
void backward_pass(const float* __restrict d_out, const float* __restrict dhz, const M* __restrict prod,
                   const float* __restrict rz, const float* __restrict n, const float* __restrict ghn,
                   const float* __restrict h, float* __restrict dgi, float* __restrict dgh, M* __restrict dgh_mm,
                   float* __restrict dhz_out, float* __restrict dh, int64_t batch, int64_t hidden) {
    const int64_t h3 = 3 * hidden, h2 = 2 * hidden;
    for (int64_t i = 0; i < batch; ++i) {
        const int64_t o = i * hidden;
        const float* __restrict r = rz + i * h2;
        const float* __restrict z = r + hidden;
        float* __restrict dgi_i = dgi + i * h3;
        float* __restrict dgh_i = dgh + i * h3;
        if (prod != nullptr) {
            for (int64_t j = 0; j < hidden; ++j) dh[j] = d_out[o + j] + dhz[o + j] + as_float(prod[o + j]);
        } else {
            for (int64_t j = 0; j < hidden; ++j) dh[j] = d_out[o + j] + dhz[o + j];
        }
        for (int64_t j = 0; j < hidden; ++j) {
            const float nv = n[o + j];
            const float dn = dh[j] * (1.0f - z[j]) * (1.0f - nv * nv);
            const float dz = dh[j] * (h[o + j] - nv) * z[j] * (1.0f - z[j]);
            const float dr = dn * ghn[o + j] * r[j] * (1.0f - r[j]);
            dgi_i[j] = dr;
            dgi_i[hidden + j] = dz;
            dgi_i[h2 + j] = dn;
            dhz_out[o + j] = dh[j] * z[j];
        }
        for (int64_t j = 0; j < h2; ++j) dgh_i[j] = dgi_i[j];
        for (int64_t j = 0; j < hidden; ++j) dgh_i[h2 + j] = dgi_i[h2 + j] * r[j];
        if (dgh_mm != nullptr) {
            M* __restrict dm_i = dgh_mm + i * h3;
            for (int64_t j = 0; j < h3; ++j) dm_i[j] = static_cast<M>(dgh_i[j]);
        }
    }
}

template <typename M>
std::vector<torch::Tensor> forward_loop(torch::Tensor gi, torch::Tensor h0, torch::Tensor w_t, torch::Tensor b_hh) {
    const int64_t steps = gi.size(0), batch = gi.size(1), hidden = gi.size(2) / 3;
    const bool same = std::is_same<M, float>::value;
    auto f32 = gi.options();
    auto states = torch::empty({steps + 1, batch, hidden}, f32);
    auto hmm = same ? states : torch::empty({steps + 1, batch, hidden}, w_t.options());
    auto rz = torch::empty({steps, batch, 2 * hidden}, f32);
    auto n = torch::empty({steps, batch, hidden}, f32);
    auto ghn = torch::empty({steps, batch, hidden}, f32);
    auto gh = torch::empty({batch, 3 * hidden}, w_t.options());
    states[0].copy_(h0);
    if (!same) hmm[0].copy_(h0);
    const float* b = b_hh.data_ptr<float>();
    for (int64_t t = 0; t < steps; ++t) {
        torch::mm_out(gh, hmm[t], w_t);
        forward_pass<M>(gi[t].data_ptr<float>(), gh.data_ptr<M>(), b, states[t].data_ptr<float>(),
                        rz[t].data_ptr<float>(), n[t].data_ptr<float>(), ghn[t].data_ptr<float>(),
                        states[t + 1].data_ptr<float>(), same ? nullptr : hmm[t + 1].data_ptr<M>(), batch, hidden);
    }
    return {states, hmm, rz, n, ghn};
}

template <typename M>
std::vector<torch::Tensor> backward_loop(torch::Tensor d_out, torch::Tensor d_last, torch::Tensor w,
                                         torch::Tensor states, torch::Tensor rz, torch::Tensor n, torch::Tensor ghn) {
    const int64_t steps = n.size(0), batch = n.size(1), hidden = n.size(2);
    const bool same = std::is_same<M, float>::value;
    auto f32 = n.options();
    auto dgi = torch::empty({steps, batch, 3 * hidden}, f32);
    auto dgh = torch::empty({steps, batch, 3 * hidden}, f32);
    auto dgh_mm = same ? dgh : torch::empty({steps, batch, 3 * hidden}, w.options());
    auto prod = torch::empty({batch, hidden}, w.options());
    auto dhz = d_last.clone();  // the first pass (t = T - 1) adds d_out[T - 1] and no product
    auto dhz_next = torch::empty({batch, hidden}, f32);
    std::vector<float> dh_row(hidden);
    for (int64_t t = steps - 1; t >= 0; --t) {
        backward_pass<M>(d_out[t].data_ptr<float>(), dhz.data_ptr<float>(),
                         t == steps - 1 ? nullptr : prod.data_ptr<M>(), rz[t].data_ptr<float>(),
                         n[t].data_ptr<float>(), ghn[t].data_ptr<float>(), states[t].data_ptr<float>(),
                         dgi[t].data_ptr<float>(), dgh[t].data_ptr<float>(),
                         same ? nullptr : dgh_mm[t].data_ptr<M>(), dhz_next.data_ptr<float>(), dh_row.data(),
                         batch, hidden);
        std::swap(dhz, dhz_next);
        torch::mm_out(prod, dgh_mm[t], w);
    }
    // dh0 = dhz + the last product
    auto dh0 = dhz + prod.to(torch::kFloat32);
    return {dgi, dgh, dgh_mm, dh0};
}

std::vector<torch::Tensor> forward(torch::Tensor gi, torch::Tensor h0, torch::Tensor w_t, torch::Tensor b_hh) {
    if (w_t.scalar_type() == torch::kBFloat16) return forward_loop<c10::BFloat16>(gi, h0, w_t, b_hh);
    return forward_loop<float>(gi, h0, w_t, b_hh);
}

std::vector<torch::Tensor> backward(torch::Tensor d_out, torch::Tensor d_last, torch::Tensor w, torch::Tensor states,
                                    torch::Tensor rz, torch::Tensor n, torch::Tensor ghn) {
    if (w.scalar_type() == torch::kBFloat16) return backward_loop<c10::BFloat16>(d_out, d_last, w, states, rz, n, ghn);
    return backward_loop<float>(d_out, d_last, w, states, rz, n, ghn);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("forward", &forward, "GRU scan forward: (states, states in the product dtype, rz, n, ghn)");
    m.def("backward", &backward, "GRU scan backward: (dgi, dgh, dgh in the product dtype, dh0)");
}
