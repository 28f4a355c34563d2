/* subscale_sampler.c: the Subscale WaveRNN generation loop (see subscale_sampler.h). Compiled once; every matrix
 * product goes through the ISA's kernel table (gemm over the active streams), the rest is plain C.
 *
 * Streams. Sub-tensor s is stream s: row s of every (B, .) buffer. At step n it is at position i = n - s(F + 1)
 * and is active while 0 <= i <= last_i[s] (its last real position, t = i B + s < T). The active streams always
 * form one contiguous range [lo, hi] (streams start in order during the warm-up and finish in order at the end,
 * since last_i[s] + s(F + 1) increases with s), so each product runs on rows lo..hi of its buffers and inactive
 * rows are never read or written. The gemm kernels compute every right-hand side with its own accumulators in
 * the same order whatever their number or position, so a stream's values do not depend on the active set.
 *
 * One step (docs/format.md §3, §9), for the active range:
 *   1 context: advance each active stream's context chain to position i + F (one position a step once running;
 *     F + 1 positions on a stream's first step), batched over the streams that need a position, then
 *     ctx = proj a_D (one gemm over the active rows) + proj.bias[s]
 *   2 rh = R h + b_R (gemm); coarse rows of gi = ((x0 w0 + x1 w1) + q), q = cond(t) + ctx; coarse gate update
 *   3 hid_c = relu(O1 y_c + b1), logits_c = O2 hid_c + b2 (gemm); c_t = sample(logits_c, uniforms[t].coarse)
 *   4 fine rows of gi with c_t; fine gate update; hid_f, logits_f (gemm); f_t = sample(logits_f, uniforms[t].fine)
 *   5 the step's samples enter the folded sequence. The context chains read only positions generated at earlier
 *     steps (the schedule guarantees it, pywavernn/subscale.py), and step 1 runs before any sample of this step
 *     is written, so the lockstep of §9 holds.
 *
 * Context chain of stream s (§9): per layer l = 1..D a ring of the last d_l = 2^(l-1) activations a_{l-1}
 * (zeros before position 0, which is the left zero padding of the definition); slot k mod d_l holds a_{l-1}[k - d_l]
 * until position k replaces it with a_{l-1}[k]. top[s] holds a_D at the chain's latest position.
 */
#include "subscale_sampler.h"

#include <stdlib.h>
#include <string.h>

#define N_CLASSES 256

static inline float scale_byte(int32_t v) { return (float)v / 127.5f - 1.0f; }

static inline float relu(float v) { return v > 0.0f ? v : 0.0f; }

static void relu_rows(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = relu(v[i]);
}

typedef struct {
    float *h, *rh, *gi, *q, *yc, *yf, *hid, *lc, *lf;   /* (B, .) per-stream step buffers */
    float *top, *ring;                                  /* context chains: (B, C_x), rings of all layers */
    float *xin, *cur, *prev, *y0, *y1;                  /* compact buffers of one context round */
    int32_t *chain_next, *last_i, *idx;                 /* (B) each */
    uint8_t *coarse, *fine;                             /* the folded sequence (N B) bytes */
    size_t ring_layer_offset[PWR_SUBSCALE_MAX_LAYERS];  /* offset of layer l's rings (B streams x d_l x C_x) */
    void *mem;
} scratch;

static int alloc_scratch(const pwr_subscale_net *net, int64_t n_pos, scratch *sc) {
    const size_t B = (size_t)net->B, H = (size_t)net->H, K = (size_t)net->K, Cx = (size_t)net->Cx;
    size_t ring = 0;
    for (int32_t l = 0; l < net->D; l++) {
        sc->ring_layer_offset[l] = ring;
        ring += B * ((size_t)1 << l) * Cx;
    }
    const size_t n_f = B * (3 * H) * 3 + B * H * 2 + B * K + B * N_CLASSES * 2 + B * Cx + ring + B * 2 * B +
                       4 * B * Cx;
    const size_t bytes = n_f * sizeof(float) + 3 * B * sizeof(int32_t) + 2 * (size_t)n_pos * B;
    char *p = calloc(1, bytes); /* zeroed: h = 0 and every ring starts with zero activations */
    if (!p) return -1;
    sc->mem = p;
    float *f = (float *)p;
    sc->h = f; f += B * H;
    sc->rh = f; f += B * 3 * H;
    sc->gi = f; f += B * 3 * H;
    sc->q = f; f += B * 3 * H;
    sc->yc = f; f += B * H / 2;
    sc->yf = f; f += B * H / 2;
    sc->hid = f; f += B * K;
    sc->lc = f; f += B * N_CLASSES;
    sc->lf = f; f += B * N_CLASSES;
    sc->top = f; f += B * Cx;
    sc->ring = f; f += ring;
    sc->xin = f; f += B * 2 * B;
    sc->cur = f; f += B * Cx;
    sc->prev = f; f += B * Cx;
    sc->y0 = f; f += B * Cx;
    sc->y1 = f; f += B * Cx;
    int32_t *ip = (int32_t *)f;
    sc->chain_next = ip; ip += B;
    sc->last_i = ip; ip += B;
    sc->idx = ip; ip += B;
    sc->coarse = (uint8_t *)ip;
    sc->fine = sc->coarse + (size_t)n_pos * B;
    return 0;
}

/* Y = W X for nr right-hand sides, all rows, no bias (W of any shape and storage in the table). */
static inline void product(const pwr_kernel_table *tb, const pwr_matrix *w, const float *x, int32_t nr, float *y) {
    tb->gemm[w->shape][w->storage](w, x, nr, NULL, y, 0, w->m / w->bh);
}

/* One context position for each of the nr streams idx[r], at position chain_next[idx[r]]; advances each chain. */
static void context_round(const pwr_subscale_net *net, const pwr_kernel_table *tb, scratch *sc, int32_t nr,
                          int64_t n_pos, int64_t T) {
    const int32_t B = net->B, Cx = net->Cx;
    for (int32_t r = 0; r < nr; r++) { /* x_k^(s): [c, f] of sub-tensors z < s at position k, when real */
        const int32_t s = sc->idx[r];
        const int64_t k = sc->chain_next[s];
        float *x = sc->xin + (size_t)r * 2 * B;
        memset(x, 0, sizeof(float) * 2 * (size_t)B);
        if (k < n_pos)
            for (int32_t z = 0; z < s && k * B + z < T; z++) {
                x[2 * z] = scale_byte(sc->coarse[k * B + z]);
                x[2 * z + 1] = scale_byte(sc->fine[k * B + z]);
            }
    }
    product(tb, &net->embed, sc->xin, nr, sc->cur);
    for (int32_t r = 0; r < nr; r++) {
        const float *b = net->embed_bias + (size_t)sc->idx[r] * Cx;
        float *a = sc->cur + (size_t)r * Cx;
        for (int32_t c = 0; c < Cx; c++) a[c] = relu(a[c] + b[c]);
    }
    for (int32_t l = 0; l < net->D; l++) {
        const int64_t d = (int64_t)1 << l;
        for (int32_t r = 0; r < nr; r++) { /* a_l[k - d] out of the ring, a_l[k] into its slot */
            const int32_t s = sc->idx[r];
            float *slot = sc->ring + sc->ring_layer_offset[l] + ((size_t)s * d + (size_t)(sc->chain_next[s] % d)) * Cx;
            memcpy(sc->prev + (size_t)r * Cx, slot, sizeof(float) * (size_t)Cx);
            memcpy(slot, sc->cur + (size_t)r * Cx, sizeof(float) * (size_t)Cx);
        }
        product(tb, &net->conv_prev[l], sc->prev, nr, sc->y0);
        product(tb, &net->conv_cur[l], sc->cur, nr, sc->y1);
        for (int32_t r = 0; r < nr; r++) {
            const float *b = net->conv_bias + ((size_t)l * B + (size_t)sc->idx[r]) * Cx;
            const float *y0 = sc->y0 + (size_t)r * Cx, *y1 = sc->y1 + (size_t)r * Cx;
            float *a = sc->cur + (size_t)r * Cx;
            for (int32_t c = 0; c < Cx; c++) a[c] = relu((y0[c] + y1[c]) + b[c]);
        }
    }
    for (int32_t r = 0; r < nr; r++) {
        const int32_t s = sc->idx[r];
        memcpy(sc->top + (size_t)s * Cx, sc->cur + (size_t)r * Cx, sizeof(float) * (size_t)Cx);
        sc->chain_next[s]++;
    }
}

/* Step 1: context chains of streams lo..hi up to position (their i) + F, then q = cond(t) + ctx per stream. */
static void context_step(const pwr_subscale_net *net, const pwr_kernel_table *tb, scratch *sc, int64_t n,
                         int32_t lo, int32_t hi, const float *g, int32_t n_frames, int64_t n_pos, int64_t T) {
    const int32_t F = net->F, H3 = 3 * net->H;
    for (;;) {
        int32_t nr = 0;
        for (int32_t s = lo; s <= hi; s++)
            if (sc->chain_next[s] <= n - (int64_t)s * (F + 1) + F) sc->idx[nr++] = s;
        if (!nr) break;
        context_round(net, tb, sc, nr, n_pos, T);
    }
    product(tb, &net->proj, sc->top + (size_t)lo * net->Cx, hi - lo + 1, sc->q + (size_t)lo * H3);
    for (int32_t s = lo; s <= hi; s++) {
        const int64_t t = (n - (int64_t)s * (F + 1)) * net->B + s;
        const int32_t j = (int32_t)(t / net->hop);
        const float a = (float)(int32_t)(t % net->hop) / (float)net->hop;
        const float *g0 = g + (size_t)j * H3, *g1 = g + (size_t)(j + 1 < n_frames ? j + 1 : n_frames - 1) * H3;
        const float *pb = net->proj_bias + (size_t)s * H3;
        float *q = sc->q + (size_t)s * H3;
        for (int32_t r = 0; r < H3; r++) q[r] = (g0[r] + a * (g1[r] - g0[r])) + (q[r] + pb[r]);
    }
}

/* Rows g H + j (g = 0, 1, 2; j in [j0, j1)) of gi = ((x0 w0 + x1 w1) + x2 w2) + q; the x2 term only when
 * with_x2 (the coarse rows' c_t weight is zero by the mask, and the spec skips it). */
static void input_rows(const pwr_subscale_net *net, const float *q, const float x[3], int with_x2, float *gi,
                       int32_t j0, int32_t j1) {
    const int32_t H = net->H;
    for (int32_t gate = 0; gate < 3; gate++)
        for (int32_t j = j0; j < j1; j++) {
            const int32_t r = gate * H + j;
            float v = x[0] * net->w_in_t[r] + x[1] * net->w_in_t[3 * H + r];
            if (with_x2) v = v + x[2] * net->w_in_t[6 * H + r];
            gi[r] = v + q[r];
        }
}

/* hid = relu(Oa y + ba), logits = Ob hid + bb over rows lo..hi (y is (B, H/2)). */
static void head(const pwr_kernel_table *tb, const pwr_matrix *oa, const float *ba, const pwr_matrix *ob,
                 const float *bb, const float *y, float *hid, float *logits, int32_t K, int32_t half, int32_t lo,
                 int32_t na) {
    tb->gemm[oa->shape][oa->storage](oa, y + (size_t)lo * half, na, ba, hid + (size_t)lo * K, 0, oa->m / oa->bh);
    relu_rows(hid + (size_t)lo * K, (size_t)na * K);
    tb->gemm[ob->shape][ob->storage](ob, hid + (size_t)lo * K, na, bb, logits + (size_t)lo * N_CLASSES, 0,
                                     ob->m / ob->bh);
}

int pwr_generate_subscale(const pwr_subscale_net *net, const pwr_kernel_table *tb, int exact, const float *g,
                          int32_t n_frames, const float *uniforms, int16_t *out, const pwr_subscale_trace *trace) {
    const int32_t B = net->B, F = net->F, H = net->H, half = H / 2, K = net->K, H3 = 3 * H;
    const int64_t T = (int64_t)n_frames * net->hop, n_pos = (T + B - 1) / B;
    const int64_t n_steps = n_pos + (int64_t)(B - 1) * (F + 1);
    scratch sc;
    if (alloc_scratch(net, n_pos, &sc) != 0) return -1;
    for (int32_t s = 0; s < B; s++) sc.last_i[s] = (int32_t)((T - 1 - s) / B);
    int32_t pc[PWR_MAX_RHS], pf[PWR_MAX_RHS], ct[PWR_MAX_RHS];
    for (int32_t s = 0; s < B; s++) pc[s] = 128, pf[s] = 0;
    const pwr_gemm_fn mm_r = tb->gemm[net->R.shape][net->R.storage];
    float cdf[N_CLASSES];

    for (int64_t n = 0; n < n_steps; n++) {
        int32_t lo = -1, hi = -1;
        for (int32_t s = 0; s < B; s++) {
            const int64_t i = n - (int64_t)s * (F + 1);
            if (i >= 0 && i <= sc.last_i[s]) {
                if (lo < 0) lo = s;
                hi = s;
            }
        }
        if (lo < 0) continue; /* an idle step (padded tail) */
        const int32_t na = hi - lo + 1;
        context_step(net, tb, &sc, n, lo, hi, g, n_frames, n_pos, T);
        mm_r(&net->R, sc.h + (size_t)lo * H, na, net->b_R, sc.rh + (size_t)lo * H3, 0, net->R.m / net->R.bh);
        for (int32_t s = lo; s <= hi; s++) {
            const float x[3] = {scale_byte(pc[s]), scale_byte(pf[s]), 0.0f};
            float *gi = sc.gi + (size_t)s * H3, *h = sc.h + (size_t)s * H;
            input_rows(net, sc.q + (size_t)s * H3, x, 0, gi, 0, half);
            tb->gru_gates(sc.rh + (size_t)s * H3, gi, h, H, 0, half, exact);
            memcpy(sc.yc + (size_t)s * half, h, sizeof(float) * (size_t)half);
        }
        head(tb, &net->O1, net->b1, &net->O2, net->b2, sc.yc, sc.hid, sc.lc, K, half, lo, na);
        for (int32_t s = lo; s <= hi; s++) {
            const int64_t t = (n - (int64_t)s * (F + 1)) * B + s;
            ct[s] = tb->sample_softmax(sc.lc + (size_t)s * N_CLASSES, uniforms[2 * t], cdf, exact);
            const float x[3] = {scale_byte(pc[s]), scale_byte(pf[s]), scale_byte(ct[s])};
            float *gi = sc.gi + (size_t)s * H3, *h = sc.h + (size_t)s * H;
            input_rows(net, sc.q + (size_t)s * H3, x, 1, gi, half, H);
            tb->gru_gates(sc.rh + (size_t)s * H3, gi, h, H, half, H, exact);
            memcpy(sc.yf + (size_t)s * half, h + half, sizeof(float) * (size_t)half);
        }
        head(tb, &net->O3, net->b3, &net->O4, net->b4, sc.yf, sc.hid, sc.lf, K, half, lo, na);
        for (int32_t s = lo; s <= hi; s++) {
            const int64_t i = n - (int64_t)s * (F + 1), t = i * B + s;
            const int32_t f_t = tb->sample_softmax(sc.lf + (size_t)s * N_CLASSES, uniforms[2 * t + 1], cdf, exact);
            sc.coarse[t] = (uint8_t)ct[s]; /* folded index i B + s is the true time t */
            sc.fine[t] = (uint8_t)f_t;
            pc[s] = ct[s];
            pf[s] = f_t;
            out[t] = (int16_t)(((ct[s] << 8) | f_t) - 32768);
            if (trace) {
                if (trace->h) memcpy(trace->h + (size_t)t * H, sc.h + (size_t)s * H, sizeof(float) * (size_t)H);
                if (trace->logits_c)
                    memcpy(trace->logits_c + (size_t)t * N_CLASSES, sc.lc + (size_t)s * N_CLASSES,
                           sizeof(float) * N_CLASSES);
                if (trace->logits_f)
                    memcpy(trace->logits_f + (size_t)t * N_CLASSES, sc.lf + (size_t)s * N_CLASSES,
                           sizeof(float) * N_CLASSES);
                if (trace->step) trace->step[t] = n;
            }
        }
    }
    free(sc.mem);
    return 0;
}
