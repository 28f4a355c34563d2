/* subscale_sampler.c: the Subscale WaveRNN generation loop (see subscale_sampler.h). Compiled once; every matrix
 * product goes through the ISA's kernel table (gemm over the active streams), and so does each stream's gate input
 * (gru_input_t); the rest is plain C.
 *
 * Streams. Sub-tensor s is stream s: row s of every (B, .) buffer. At step n it is at position i = n - s(F + 1)
 * and is active while 0 <= i <= last_i[s] (its last real position, t = i B + s < T). The active streams always
 * form one contiguous range [lo, hi] (streams start in order during the warm-up and finish in order at the end,
 * since last_i[s] + s(F + 1) increases with s), so each product runs on rows lo..hi of its buffers and inactive
 * rows are never read or written. The gemm kernels compute every right-hand side with its own accumulators in
 * the same order whatever their number or position, so a stream's values do not depend on the active set.
 *
 * Threads. Thread t of nt owns streams [t B / nt, (t + 1) B / nt) (nt <= B) and does everything for them: the
 * active range above is taken within its own streams, its products run on its own rows, and its context rounds
 * use its own compact buffers. Within a step no stream reads what another stream writes in that step (step 5
 * below), so one barrier a step (after the step's samples are written) gives every thread the samples of earlier
 * steps. A stream's arithmetic is that of the one-thread loop, so the samples do not depend on the thread count.
 * When the team's barriers keep sleeping (pwr_barrier.h), thread 0 names a step; after that step's barrier thread 0
 * takes over all streams for a stretch of steps while the others sleep, then hands their streams back (a step
 * number, not a flag: a thread late to read it cannot take it for the barrier before). All per-stream state lives
 * in the shared scratch, so a stream continues on its own thread exactly where thread 0 left it.
 *
 * One step (docs/format.md §3, §9), for the active range:
 *   1 context: advance each active stream's context chain to position i + F (one position a step once running;
 *     F + 1 positions on a stream's first step), batched over the streams that need a position, then
 *     pq = proj a_D (one gemm over the active rows; with linear estimates proj carries their E columns too and
 *     each stream's row is [a_D, est(i, s)], linear_step); ctx = pq + proj.bias[s]
 *   2 rh = R h + b_R (gemm); coarse rows of gi = ((x0 w0 + x1 w1) + q), q = cond(t) + ctx (one kernel, gru_input_t,
 *     computes q where it is needed); coarse gate update
 *     (x0, x1: the stream's own previous sample, or with prev_time and s >= 1 sample (i, s - 1) from the folded
 *     sequence, written at step n - (F + 1))
 *   3 hid_c = relu(O1 y_c + b1), logits_c = O2 hid_c + b2 (gemm), plus the prior's terms when the model has one
 *     (prior_step: centred on est_0 in top[s], scale from hid_c); c_t = sample(logits_c, uniforms[t].coarse),
 *     one draw per active stream, all in one call (sample_softmax_rows: the streams' serial running sums side by
 *     side in vector lanes)
 *   4 fine rows of gi with c_t; fine gate update; hid_f, logits_f (gemm) (plus the prior's terms, bins given c_t);
 *     f_t = sample(logits_f, uniforms[t].fine)
 *   5 the step's samples enter the folded sequence. The context chains read only positions generated at earlier
 *     steps (stream s reads sub-tensors z < s at positions up to n - s(F + 1) + F, while stream z writes position
 *     n - z(F + 1) >= n - s(F + 1) + F + 1; pywavernn/fold.py), so the lockstep of §9 holds whatever order,
 *     or thread, the streams of a step run in.
 *
 * Context chain of stream s (§9): per layer l = 1..D a ring of d_l + 1 slots (d_l = 2^(l-1)) of the activations
 * a_{l-1} that layer reads; position k lives in slot k mod (d_l + 1), so at position k the ring holds a_{l-1}[k]
 * (just written by layer l - 1, or the embedding) and a_{l-1}[k - d_l] in slot (k + 1) mod (d_l + 1), and the
 * slot that position k overwrote held k - d_l - 1, which no later position reads. Slots of positions before 0 are
 * never written and stay zero: the left zero padding of the definition. Layer l's gemms read both slots in place
 * (the gemm takes row pointers) and its ReLU writes a_l[k] straight into the next ring, or into top[s] (a_D at the
 * chain's latest position) for the last layer, so no activation is copied.
 */
#define _DEFAULT_SOURCE /* syscall() under -std=c11 (pwr_barrier.h) */
#include "subscale_sampler.h"

#include "pwr_barrier.h"

#include <stdlib.h>
#include <string.h>
#if PWR_HAVE_OPENMP
#include <omp.h>
#endif

#define N_CLASSES 256

static inline float scale_byte(int32_t v) { return (float)v / 127.5f - 1.0f; }

static inline float relu(float v) { return v > 0.0f ? v : 0.0f; }

static void relu_rows(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = relu(v[i]);
}

/* Per-stream state, shared by the team (each thread writes only its own streams' rows). */
typedef struct {
    float *h, *rh, *gi, *pq, *hid, *lc, *lf;            /* (B, .) per-stream step buffers; pq = proj a_D */
    float *top, *ring;                                  /* (B, C_x + E): [a_D, est]; rings of all layers */
    int32_t *chain_next, *last_i, *pc, *pf, *ct;        /* (B) each: chain position, last position, c/f samples */
    uint8_t *coarse, *fine;                             /* the folded sequence, last W positions (W B) bytes */
    int64_t W;                                          /* position k lives in slot k mod W */
    size_t ring_layer_offset[PWR_SUBSCALE_MAX_LAYERS];  /* offset of layer l's rings (B x (d_l + 1) x C_x) */
    void *mem;
} scratch;

/* One thread's compact buffers of a context round, with room for all B streams (the serial fallback). */
typedef struct {
    float *xin, *y0, *y1;
    int32_t *idx;
} compact;

/* Positions of the folded sequence kept: at step n positions n - (B - 1)(F + 1) .. n are read or written, and
 * position p, written at step >= p, is read for the last time at step <= p - F + (B - 1)(F + 1) (the context of
 * stream B - 1), possibly by another thread in the step that writes position p + W; so W > (B - 1)(F + 1) - F
 * suffices. Twice that keeps it obviously safe. */
static int64_t folded_window(const pwr_subscale_net *net) { return 2 * ((int64_t)net->B + 1) * (net->F + 1); }

static int alloc_scratch(const pwr_subscale_net *net, scratch *sc) {
    const int64_t n_pos = folded_window(net);
    const size_t B = (size_t)net->B, H = (size_t)net->H, K = (size_t)net->K, Cx = (size_t)net->Cx;
    const size_t top = Cx + (size_t)net->E;
    size_t ring = 0;
    for (int32_t l = 0; l < net->D; l++) {
        sc->ring_layer_offset[l] = ring;
        ring += B * (((size_t)1 << l) + 1) * Cx;
    }
    const size_t n_f = B * (3 * H) * 3 + B * H + B * K + B * N_CLASSES * 2 + B * top + ring;
    const size_t bytes = n_f * sizeof(float) + 5 * B * sizeof(int32_t) + 2 * (size_t)n_pos * B;
    char *p = calloc(1, bytes); /* zeroed: h = 0 and every ring starts with zero activations */
    if (!p) return -1;
    sc->mem = p;
    float *f = (float *)p;
    sc->h = f; f += B * H;
    sc->rh = f; f += B * 3 * H;
    sc->gi = f; f += B * 3 * H;
    sc->pq = f; f += B * 3 * H;
    sc->hid = f; f += B * K;
    sc->lc = f; f += B * N_CLASSES;
    sc->lf = f; f += B * N_CLASSES;
    sc->top = f; f += B * top;
    sc->ring = f; f += ring;
    int32_t *ip = (int32_t *)f;
    sc->chain_next = ip; ip += B;
    sc->last_i = ip; ip += B;
    sc->pc = ip; ip += B;
    sc->pf = ip; ip += B;
    sc->ct = ip; ip += B;
    sc->coarse = (uint8_t *)ip;
    sc->fine = sc->coarse + (size_t)n_pos * B;
    sc->W = n_pos;
    return 0;
}

/* nt sets of compact buffers in one block (returned, to free), or NULL. */
static void *alloc_compact(const pwr_subscale_net *net, int nt, compact *cp) {
    const size_t B = (size_t)net->B, Cx = (size_t)net->Cx, per = B * 2 * B + 2 * B * Cx;
    float *f = malloc(((size_t)nt * per) * sizeof(float) + (size_t)nt * B * sizeof(int32_t));
    if (!f) return NULL;
    int32_t *ip = (int32_t *)(f + (size_t)nt * per);
    for (int k = 0; k < nt; k++) {
        float *p = f + (size_t)k * per;
        cp[k].xin = p; p += B * 2 * B;
        cp[k].y0 = p; p += B * Cx;
        cp[k].y1 = p;
        cp[k].idx = ip + (size_t)k * B;
    }
    return f;
}

/* p[r] = x + r stride for r < n: the row pointers of n rows of one array. */
static inline const float *const *rows_of(const float *x, size_t stride, int32_t n, const float **p) {
    for (int32_t r = 0; r < n; r++) p[r] = x + (size_t)r * stride;
    return p;
}

/* Y = W x[r] for the nr right-hand sides x[r], all rows, no bias (W of any shape and storage in the table). */
static inline void product(const pwr_kernel_table *tb, const pwr_matrix *w, const float *const *x, int32_t nr,
                           float *y) {
    tb->gemm[w->shape][w->storage](w, x, nr, NULL, y, 0, w->m / w->bh);
}

/* Where a_l[k] of stream s lives: layer l + 1's ring (l < D), or top[s] (l = D). */
static inline float *activation(const pwr_subscale_net *net, const scratch *sc, int32_t l, int32_t s, int64_t k) {
    const size_t Cx = (size_t)net->Cx;
    if (l == net->D) return sc->top + (size_t)s * (Cx + (size_t)net->E);
    const int64_t slots = ((int64_t)1 << l) + 1;
    return sc->ring + sc->ring_layer_offset[l] + ((size_t)s * (size_t)slots + (size_t)(k % slots)) * Cx;
}

/* One context position for each of the nr streams idx[r], at position chain_next[idx[r]]; advances each chain. */
static void context_round(const pwr_subscale_net *net, const pwr_kernel_table *tb, scratch *sc, const compact *cp,
                          int32_t nr, int64_t T) {
    const int32_t B = net->B, Cx = net->Cx;
    for (int32_t r = 0; r < nr; r++) { /* x_k^(s): [c, f] of sub-tensors z < s at position k, when real */
        const int32_t s = cp->idx[r];
        const int64_t k = sc->chain_next[s];
        float *x = cp->xin + (size_t)r * 2 * B;
        memset(x, 0, sizeof(float) * 2 * (size_t)B);
        const size_t slot = (size_t)(k % sc->W) * (size_t)B;
        for (int32_t z = 0; z < s && (T < 0 || k * B + z < T); z++) { /* T < 0: every position read is real */
            const int32_t e = net->context_lag ? s - 1 - z : z; /* subscale_context_order "lag": pair s - 1 - z */
            x[2 * e] = scale_byte(sc->coarse[slot + z]);
            x[2 * e + 1] = scale_byte(sc->fine[slot + z]);
        }
    }
    const float *rows[PWR_MAX_RHS] = {0}, *prev[PWR_MAX_RHS] = {0};
    product(tb, &net->embed, rows_of(cp->xin, 2 * (size_t)B, nr, rows), nr, cp->y0);
    for (int32_t r = 0; r < nr; r++) { /* a_0[k] = relu(embed x_k + b), into layer 1's ring (or top) */
        const int32_t s = cp->idx[r];
        const float *b = net->embed_bias + (size_t)s * Cx, *y = cp->y0 + (size_t)r * Cx;
        float *a = activation(net, sc, 0, s, sc->chain_next[s]);
        for (int32_t c = 0; c < Cx; c++) a[c] = relu(y[c] + b[c]);
    }
    for (int32_t l = 0; l < net->D; l++) {
        for (int32_t r = 0; r < nr; r++) { /* a_l[k - 2^l] and a_l[k], in place in the ring */
            const int32_t s = cp->idx[r];
            const int64_t k = sc->chain_next[s];
            prev[r] = activation(net, sc, l, s, k + 1); /* slot (k + 1) mod (2^l + 1): position k - 2^l */
            rows[r] = activation(net, sc, l, s, k);
        }
        product(tb, &net->conv_prev[l], prev, nr, cp->y0);
        product(tb, &net->conv_cur[l], rows, nr, cp->y1);
        for (int32_t r = 0; r < nr; r++) {
            const int32_t s = cp->idx[r];
            const float *b = net->conv_bias + ((size_t)l * B + (size_t)s) * Cx;
            const float *y0 = cp->y0 + (size_t)r * Cx, *y1 = cp->y1 + (size_t)r * Cx;
            float *a = activation(net, sc, l + 1, s, sc->chain_next[s]);
            for (int32_t c = 0; c < Cx; c++) a[c] = relu((y0[c] + y1[c]) + b[c]);
        }
    }
    for (int32_t r = 0; r < nr; r++) sc->chain_next[cp->idx[r]]++;
}

/* est(i, s) into top[s][C_x ..] for streams lo..hi (net->E > 0): the linear estimates of §9 from the folded
 * sequence's samples at positions i - 1 .. i + F (z <= s at i - 1, z < s after), where real; proj's last E columns
 * turn them into gate inputs in the same gemm as a_D. Every sample read was written at an earlier step (as for the
 * context chains) and is still in the window (W > (B - 1)(F + 1) + 1). The sums run over d, then z, in float32,
 * as pywavernn.reference.subscale.linear_estimates_ref does. */
static void linear_step(const pwr_subscale_net *net, scratch *sc, int64_t n, int32_t lo, int32_t hi, int64_t T) {
    const int32_t B = net->B, F = net->F, E = net->E, Cx = net->Cx;
    for (int32_t s = lo; s <= hi; s++) {
        const int64_t i = n - (int64_t)s * (F + 1);
        float *est = sc->top + (size_t)s * (size_t)(Cx + E) + Cx;
        for (int32_t e = 0; e < E; e++) est[e] = 0.0f;
        for (int32_t d = 0; d < F + 2; d++) {
            const int64_t k = i - 1 + d;
            if (k < 0) continue;
            const int32_t z_end = d == 0 ? s + 1 : s;
            const size_t slot = (size_t)(k % sc->W) * (size_t)B;
            for (int32_t z = 0; z < z_end && (T < 0 || k * B + z < T); z++) {
                const int32_t u = ((int32_t)sc->coarse[slot + z] << 8) | (int32_t)sc->fine[slot + z];
                const float v = (float)(u - 32768) / 32768.0f;
                const float *w = net->lin_w + (((size_t)s * (size_t)(F + 2) + (size_t)d) * (size_t)B + (size_t)z) * E;
                for (int32_t e = 0; e < E; e++) est[e] += w[e] * v;
            }
        }
    }
}

/* Step 1: context chains of streams lo..hi up to position (their i) + F, then pq = proj a_D per stream (plus the
 * linear estimates' columns, when the model has them). */
static void context_step(const pwr_subscale_net *net, const pwr_kernel_table *tb, scratch *sc, const compact *cp,
                         int64_t n, int32_t lo, int32_t hi, int64_t T) {
    const int32_t F = net->F, H3 = 3 * net->H;
    for (;;) {
        int32_t nr = 0;
        for (int32_t s = lo; s <= hi; s++)
            if (sc->chain_next[s] <= n - (int64_t)s * (F + 1) + F) cp->idx[nr++] = s;
        if (!nr) break;
        context_round(net, tb, sc, cp, nr, T);
    }
    if (net->E > 0) linear_step(net, sc, n, lo, hi, T);
    const size_t top = (size_t)(net->Cx + net->E);
    const float *rows[PWR_MAX_RHS] = {0};
    product(tb, &net->proj, rows_of(sc->top + (size_t)lo * top, top, hi - lo + 1, rows), hi - lo + 1,
            sc->pq + (size_t)lo * H3);
}

/* hid = relu(Oa y + ba), logits = Ob hid + bb over streams lo..hi; y is the coarse (y0 = 0) or fine (y0 = H/2)
 * half of each stream's state, read in place: stream s's at h + s H + y0. */
static void head(const pwr_kernel_table *tb, const pwr_matrix *oa, const float *ba, const pwr_matrix *ob,
                 const float *bb, const float *h, int32_t H, int32_t y0, float *hid, float *logits, int32_t K,
                 int32_t lo, int32_t na) {
    const float *rows[PWR_MAX_RHS] = {0};
    tb->gemm[oa->shape][oa->storage](oa, rows_of(h + (size_t)lo * H + y0, (size_t)H, na, rows), na, ba,
                                     hid + (size_t)lo * K, 0, oa->m / oa->bh);
    relu_rows(hid + (size_t)lo * K, (size_t)na * K);
    tb->gemm[ob->shape][ob->storage](ob, rows_of(hid + (size_t)lo * K, (size_t)K, na, rows), na, bb,
                                     logits + (size_t)lo * N_CLASSES, 0, ob->m / ob->bh);
}

/* The prior's terms for one byte of streams lo..hi (net->prior): byte 0 coarse (bins of 256), byte 1 fine given
 * each stream's coarse byte ct[s] (bins of 1 from 256 ct[s]); mu from est_0 in top[s], hid the byte's head layer. */
static void prior_step(const pwr_subscale_net *net, const pwr_kernel_table *tb, const scratch *sc, int byte,
                       float *logits, int32_t lo, int32_t hi) {
    const size_t top = (size_t)(net->Cx + net->E);
    for (int32_t s = lo; s <= hi; s++) {
        const float mu = sc->top[(size_t)s * top + (size_t)net->Cx] * 32768.0f + 32768.0f;
        const float lo0 = byte == 0 ? 0.0f : (float)(sc->ct[s] * 256);
        tb->laplace_prior(logits + (size_t)s * N_CLASSES, lo0, byte == 0 ? 256.0f : 1.0f, mu,
                  net->prior_w + (size_t)byte * (size_t)net->K, net->prior_b[(size_t)byte * (size_t)net->B + (size_t)s],
                  sc->hid + (size_t)s * (size_t)net->K, net->K);
    }
}

/* What every thread of a call shares (read-only but for the per-stream rows of sc and the samples). Arrays indexed
 * by frame or true time hold a window: g row 0 is frame g_first, uniforms row 0, out[0] and trace row 0 are
 * sample t_first. */
typedef struct {
    const pwr_subscale_net *net;
    const pwr_kernel_table *tb;
    int exact;
    const float *g;
    int64_t g_first, g_end;
    const float *uniforms;
    int16_t *out;
    int64_t t_first;
    const pwr_subscale_trace *trace;
    int64_t T, n_first, n_end;
    scratch *sc;
    handover ho; /* thread 0 alone for a stretch of steps (pwr_barrier.h) */
} call;

/* Schedule step n for the active streams lo..hi (all of them owned by the calling thread). */
static void run_step(call *c, const compact *cp, int64_t n, int32_t lo, int32_t hi, float *cdf) {
    const pwr_subscale_net *net = c->net;
    const pwr_kernel_table *tb = c->tb;
    scratch *sc = c->sc;
    const int32_t B = net->B, F = net->F, H = net->H, half = H / 2, K = net->K, H3 = 3 * H;
    const int exact = c->exact;
    const int32_t na = hi - lo + 1;
    const pwr_subscale_trace *trace = c->trace;
    context_step(net, tb, sc, cp, n, lo, hi, c->T);
    const float *rows[PWR_MAX_RHS] = {0};
    tb->gemm[net->R.shape][net->R.storage](&net->R, rows_of(sc->h + (size_t)lo * H, (size_t)H, na, rows), na,
                                           net->b_R, sc->rh + (size_t)lo * H3, 0, net->R.m / net->R.bh);
    int32_t pc[PWR_MAX_RHS], pf[PWR_MAX_RHS]; /* the previous sample x_t carries, per active stream */
    const float *g0[PWR_MAX_RHS], *g1[PWR_MAX_RHS]; /* cond(t) = g0 + a (g1 - g0): frames j, j + 1 (§2) */
    float a[PWR_MAX_RHS];
    for (int32_t s = lo; s <= hi; s++) {
        const int64_t i = n - (int64_t)s * (F + 1), t = i * B + s, j = t / net->hop;
        a[s - lo] = (float)(int32_t)(t % net->hop) / (float)net->hop;
        g0[s - lo] = c->g + (size_t)(j - c->g_first) * H3;
        g1[s - lo] = c->g + (size_t)((j + 1 < c->g_end ? j + 1 : c->g_end - 1) - c->g_first) * H3;
        if (net->prev_time && s > 0) { /* (i, s - 1), written F + 1 steps ago; still in the window (W > F + 1) */
            const size_t slot = (size_t)(i % sc->W) * (size_t)B + (size_t)(s - 1);
            pc[s - lo] = sc->coarse[slot];
            pf[s - lo] = sc->fine[slot];
        } else { /* the stream's own previous sample (i - 1, s), or the constants before its first */
            pc[s - lo] = sc->pc[s];
            pf[s - lo] = sc->pf[s];
        }
    }
    for (int32_t s = lo; s <= hi; s++) {
        const float x[3] = {scale_byte(pc[s - lo]), scale_byte(pf[s - lo]), 0.0f};
        float *gi = sc->gi + (size_t)s * H3, *h = sc->h + (size_t)s * H;
        tb->gru_input_t(net->w_in_t, x, 0, g0[s - lo], g1[s - lo], a[s - lo], sc->pq + (size_t)s * H3,
                        net->proj_bias + (size_t)s * H3, gi, H, 0, half);
        tb->gru_gates(sc->rh + (size_t)s * H3, gi, h, H, 0, half, exact);
    }
    head(tb, &net->O1, net->b1, &net->O2, net->b2, sc->h, H, 0, sc->hid, sc->lc, K, lo, na);
    if (net->prior) prior_step(net, tb, sc, 0, sc->lc, lo, hi);
    float u[PWR_MAX_RHS];
    for (int32_t s = lo; s <= hi; s++) { /* the streams' coarse uniforms, then all their draws at once */
        const int64_t t = (n - (int64_t)s * (F + 1)) * B + s;
        u[s - lo] = c->uniforms[2 * (t - c->t_first)];
    }
    tb->sample_softmax_rows(sc->lc + (size_t)lo * N_CLASSES, na, u, 1, sc->ct + lo, cdf, exact);
    for (int32_t s = lo; s <= hi; s++) {
        const float x[3] = {scale_byte(pc[s - lo]), scale_byte(pf[s - lo]), scale_byte(sc->ct[s])};
        float *gi = sc->gi + (size_t)s * H3, *h = sc->h + (size_t)s * H;
        tb->gru_input_t(net->w_in_t, x, 1, g0[s - lo], g1[s - lo], a[s - lo], sc->pq + (size_t)s * H3,
                        net->proj_bias + (size_t)s * H3, gi, H, half, H);
        tb->gru_gates(sc->rh + (size_t)s * H3, gi, h, H, half, H, exact);
    }
    head(tb, &net->O3, net->b3, &net->O4, net->b4, sc->h, H, half, sc->hid, sc->lf, K, lo, na);
    if (net->prior) prior_step(net, tb, sc, 1, sc->lf, lo, hi);
    int32_t ft[PWR_MAX_RHS];
    for (int32_t s = lo; s <= hi; s++) {
        const int64_t t = (n - (int64_t)s * (F + 1)) * B + s;
        u[s - lo] = c->uniforms[2 * (t - c->t_first) + 1];
    }
    tb->sample_softmax_rows(sc->lf + (size_t)lo * N_CLASSES, na, u, 1, ft, cdf, exact);
    for (int32_t s = lo; s <= hi; s++) {
        const int64_t i = n - (int64_t)s * (F + 1), t = i * B + s;
        const int32_t c_t = sc->ct[s], f_t = ft[s - lo];
        const size_t slot = (size_t)(i % sc->W) * (size_t)B + (size_t)s; /* folded index i B + s is true time t */
        sc->coarse[slot] = (uint8_t)c_t;
        sc->fine[slot] = (uint8_t)f_t;
        sc->pc[s] = c_t;
        sc->pf[s] = f_t;
        c->out[t - c->t_first] = (int16_t)(((c_t << 8) | f_t) - 32768);
        if (trace) {
            const size_t k = (size_t)(t - c->t_first);
            if (trace->h) memcpy(trace->h + k * H, sc->h + (size_t)s * H, sizeof(float) * (size_t)H);
            if (trace->logits_c)
                memcpy(trace->logits_c + k * N_CLASSES, sc->lc + (size_t)s * N_CLASSES,
                       sizeof(float) * N_CLASSES);
            if (trace->logits_f)
                memcpy(trace->logits_f + k * N_CLASSES, sc->lf + (size_t)s * N_CLASSES,
                       sizeof(float) * N_CLASSES);
            if (trace->step) trace->step[k] = n;
        }
    }
}

/* Thread tid of nth: every schedule step for its own streams, one barrier a step (none alone). */
static void run_loop(call *c, const compact *cp, spin_barrier *bar, int tid, int nth) {
    const int32_t B = c->net->B, F = c->net->F;
    const int32_t own0 = (int32_t)((int64_t)B * tid / nth), own1 = (int32_t)((int64_t)B * (tid + 1) / nth);
    int32_t s0 = own0, s1 = own1;
    float cdf[8 * N_CLASSES]; /* sample_softmax_rows' scratch */
    waiter w = {0};
    spin_barrier solo, *team = bar; /* thread 0 alone: a barrier of one */
    barrier_init(&solo, 1);
    long window_sleeps = 0;
    int64_t solo_end = -1; /* thread 0, while alone: the step at which the team re-forms */
    for (int64_t n = c->n_first; n < c->n_end; n++) {
        if (n == solo_end) { /* back to the team: each thread's own streams, as before the stretch */
            handover_resume(&c->ho, n, team, &window_sleeps);
            bar = team;
            s0 = own0;
            s1 = own1;
            solo_end = -1;
        }
        int32_t lo = -1, hi = -1;
        for (int32_t s = s0; s < s1; s++) {
            const int64_t i = n - (int64_t)s * (F + 1);
            if (i >= 0 && i <= c->sc->last_i[s]) {
                if (lo < 0) lo = s;
                hi = s;
            }
        }
        if (lo >= 0) run_step(c, cp, n, lo, hi, cdf);
        if (bar->n == 1) continue;
        if (tid == 0 && team_oversubscribed(bar, n - c->n_first, &window_sleeps)) handover_request(&c->ho, n);
        barrier_wait(bar, &w);
        if (handover_requested(&c->ho, n)) {
            if (tid != 0) { /* thread 0 runs every stream for a while (same kernels per stream, same samples) */
                const int64_t rejoin = handover_wait(&c->ho, n);
                if (rejoin < 0) return;
                n = rejoin - 1;
                continue;
            }
            bar = &solo;
            s0 = 0;
            s1 = B;
            solo_end = handover_stretch_end(&c->ho, n, c->n_end);
        }
    }
    if (bar == &solo) handover_finish(&c->ho); /* thread 0 ended the call alone: release the others */
}

struct pwr_subscale_run {
    scratch sc;
    compact cp[PWR_MAX_RHS];
    void *cmem;
    int nt;
    int64_t next_step;
};

pwr_subscale_run *pwr_subscale_run_new(const pwr_subscale_net *net, int nthreads) {
    pwr_subscale_run *run = calloc(1, sizeof *run);
    if (!run) return NULL;
    run->nt = nthreads < 1 ? 1 : nthreads > net->B ? net->B : nthreads; /* a thread owns at least one stream */
    if (alloc_scratch(net, &run->sc) != 0) {
        free(run);
        return NULL;
    }
    run->cmem = alloc_compact(net, run->nt, run->cp);
    if (!run->cmem) {
        free(run->sc.mem);
        free(run);
        return NULL;
    }
    for (int32_t s = 0; s < net->B; s++) run->sc.pc[s] = 128, run->sc.pf[s] = 0;
    return run;
}

void pwr_subscale_run_free(pwr_subscale_run *run) {
    if (!run) return;
    free(run->cmem);
    free(run->sc.mem);
    free(run);
}

int64_t pwr_subscale_run_next_step(const pwr_subscale_run *run) { return run->next_step; }

void pwr_subscale_advance(pwr_subscale_run *run, const pwr_subscale_net *net, const pwr_kernel_table *tb, int exact,
                          const float *g, int64_t g_first, int64_t g_end, int64_t T, const float *uniforms,
                          int16_t *out, int64_t t_first, const pwr_subscale_trace *trace, int64_t n_end) {
    scratch *sc = &run->sc;
    for (int32_t s = 0; s < net->B; s++) /* last real position; while T is unknown every position is real */
        sc->last_i[s] = T < 0 ? INT32_MAX : (int32_t)((T - 1 - s) / net->B);
    if (n_end <= run->next_step) return;
    pwr_kernel_table mode; /* exact mode: the ordered products (docs/format.md §3a) */
    tb = pwr_table_for_mode(tb, exact, &mode);
    call c = {net, tb, exact, g, g_first, g_end, uniforms, out, t_first, trace, T, run->next_step, n_end, sc};
    handover_init(&c.ho);
    spin_barrier bar;
    barrier_init(&bar, 1);
#if PWR_HAVE_OPENMP
    if (run->nt > 1) {
        bar.n = 0;
#pragma omp parallel num_threads(run->nt)
        {
#pragma omp single
            bar.n = omp_get_num_threads(); /* the team may be smaller than asked; implicit barrier follows */
            run_loop(&c, &run->cp[omp_get_thread_num()], &bar, omp_get_thread_num(), bar.n);
        }
    } else
#endif
        run_loop(&c, &run->cp[0], &bar, 0, 1);
    run->next_step = n_end;
}

int64_t pwr_subscale_n_steps(const pwr_subscale_net *net, int64_t T) {
    return (T + net->B - 1) / net->B + (int64_t)(net->B - 1) * (net->F + 1);
}

int pwr_generate_subscale(const pwr_subscale_net *net, const pwr_kernel_table *tb, int exact, int nthreads,
                          const float *g, int32_t n_frames, const float *uniforms, int16_t *out,
                          const pwr_subscale_trace *trace) {
    const int64_t T = (int64_t)n_frames * net->hop;
    pwr_subscale_run *run = pwr_subscale_run_new(net, nthreads);
    if (!run) return -1;
    pwr_subscale_advance(run, net, tb, exact, g, 0, n_frames, T, uniforms, out, 0, trace,
                         pwr_subscale_n_steps(net, T));
    pwr_subscale_run_free(run);
    return 0;
}
