/* sampler.c: the sampling loop (see sampler.h). Compiled once; all arithmetic goes through the ISA's kernel table.
 * One loop serves generation (c_t, f_t sampled from uniforms) and teacher forcing (c_t, f_t read from the true
 * audio; per-sample NLL), both optionally recording per-step traces.
 *
 * One step, per thread (every phase touches only the thread's rows; B = spin barrier):
 *   0 with linear prediction (P >= 1), est(t) from the thread's own copy of the past samples (every thread,
 *     redundantly, like the draws: same data, same code, same answer; P multiply-adds)
 *   1 rh = R h + b_R (own R block rows); gi for own coarse units          B
 *   2 coarse gate update (own coarse units)                                B
 *   3 hid_c = relu(O1 y_c + b1) (own O1 rows)                              B
 *   4 logits_c = O2 hid_c + b2 (own O2 rows)                               B
 *   5 c_t = sample(logits_c) (every thread, redundantly: same data, same code, same answer; or the true c_t), with
 *     a prior first added to the thread's own copy of logits_c; gi for own fine units with c_t; fine gate update
 *     (own fine units)                                                     B
 *   6 hid_f = relu(O3 y_f + b3)                                            B
 *   7 logits_f = O4 hid_f + b4                                             B
 *   8 f_t = sample(logits_f) (every thread; a prior added to its own copy first); thread 0 writes the sample, the
 *     NLL and the trace (of the logits with the prior); every thread shifts v(t) into its copy of the past
 * Every buffer written in a phase is read only after the next barrier and rewritten only after the next step's
 * barriers, so 7 barriers a step suffice. With one thread the barriers return at once.
 */
#define _DEFAULT_SOURCE /* syscall() under -std=c11 */
#include "sampler.h"

#include "pwr_barrier.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if PWR_HAVE_OPENMP
#include <omp.h>
#endif

#define N_CLASSES 256
#define LN2 0.69314718055994530942
#define UNIT_ALIGN 8 /* hidden units are split in multiples of 8 (one AVX2 vector) */

typedef struct { int32_t lo, hi; } range;

/* Block rows of w for thread tid of nth, balanced by stored blocks (+1 per block row for its fixed cost). */
static range split_rows(const pwr_matrix *w, int tid, int nth) {
    const int32_t mb = w->m / w->bh;
    if (nth == 1) return (range){0, mb};
    const int64_t total = (w->row_ptr ? (int64_t)w->row_ptr[mb] : 0) + mb;
    int32_t bounds[2];
    for (int e = 0; e < 2; e++) {
        const int64_t target = total * (tid + e) / nth;
        int32_t i = 0;
        if (tid + e == nth) i = mb;
        else if (w->row_ptr) while (i < mb && (int64_t)w->row_ptr[i] + i < target) i++;
        else i = (int32_t)target;
        bounds[e] = i;
    }
    return (range){bounds[0], bounds[1]};
}

/* Units [base, base + count) split evenly in multiples of UNIT_ALIGN. */
static range split_units(int32_t base, int32_t count, int tid, int nth) {
    const int32_t chunks = (count + UNIT_ALIGN - 1) / UNIT_ALIGN;
    int32_t lo = (int32_t)((int64_t)chunks * tid / nth) * UNIT_ALIGN;
    int32_t hi = (int32_t)((int64_t)chunks * (tid + 1) / nth) * UNIT_ALIGN;
    lo = lo > count ? count : lo;
    hi = hi > count ? count : hi;
    return (range){base + lo, base + hi};
}

static inline float scale_byte(int32_t v) { return (float)v / 127.5f - 1.0f; }

static void relu_rows(float *v, int32_t lo, int32_t hi) {
    for (int32_t i = lo; i < hi; i++) v[i] = v[i] > 0.0f ? v[i] : 0.0f;
}

typedef struct {
    float *rh, *gi, *hid_c, *hid_f, *logits_c, *logits_f;
} buffers;

/* What one call reads and writes besides the stream: either uniforms to sample from (out receives the samples)
 * or the true audio (teacher forcing; nll receives per-sample bits when non-NULL); trace may be NULL. */
typedef struct {
    const float *uniforms;
    const int16_t *audio;
    int16_t *out;
    double *nll;
    const pwr_trace *trace;
} loop_io;

/* -log2 softmax(l)[k] in float64 from float32 logits (a metric, not part of the bit-exact path). */
static double neg_log2_softmax_at(const float *l, int k) {
    double mx = l[0];
    for (int i = 1; i < N_CLASSES; i++) mx = l[i] > mx ? l[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < N_CLASSES; i++) sum += exp((double)l[i] - mx);
    return (mx + log(sum) - (double)l[k]) / LN2;
}

/* Thread 0's per-step bookkeeping after the step's last barrier: every buffer it reads (h; the step's logits lc, lf:
 * the shared buffers, or thread 0's own copies with the prior added) is complete and is not rewritten before the
 * next step's barriers (which thread 0 has not yet reached). */
static void record_step(const loop_io *io, const float *lc, const float *lf, const float *h, int32_t H, int64_t i,
                        int32_t c_t, int32_t f_t) {
    if (io->out) io->out[i] = (int16_t)(((c_t << 8) | f_t) - 32768);
    if (io->nll) io->nll[i] = neg_log2_softmax_at(lc, c_t) + neg_log2_softmax_at(lf, f_t);
    const pwr_trace *tr = io->trace;
    if (tr && i >= tr->lo && i < tr->hi) {
        const size_t k = (size_t)(i - tr->lo);
        if (tr->h) memcpy(tr->h + k * (size_t)H, h, sizeof(float) * (size_t)H);
        if (tr->logits_c) memcpy(tr->logits_c + k * N_CLASSES, lc, sizeof(float) * N_CLASSES);
        if (tr->logits_f) memcpy(tr->logits_f + k * N_CLASSES, lf, sizeof(float) * N_CLASSES);
    }
}

/* est = sum over p = 1..P of w[p - 1] * past[p - 1] (docs/format.md §11), in that order from 0, each product and
 * each sum rounded to float32: the product is a statement of its own, so no compiler contracts it into the add. */
static float linear_prediction(const float *w, const float *past, int32_t P) {
    float est = 0.0f;
    for (int32_t p = 0; p < P; p++) {
        const float term = w[p] * past[p];
        est = est + term;
    }
    return est;
}

/* A byte's logits with the prior (net->prior): a copy of the shared logits in the thread's own buffer `mine`, plus
 * the Laplace prior's terms centred on est (byte 0 coarse: bins of 256; byte 1 fine given c_t: bins of 1 from
 * 256 c_t), its scale from hid, the byte's head hidden layer. Returns mine. */
static const float *with_prior(const pwr_wavernn *net, const pwr_kernel_table *tb, int byte, const float *logits,
                               const float *hid, float est, int32_t c_t, float *mine) {
    memcpy(mine, logits, sizeof(float) * N_CLASSES);
    const float mu = est * 32768.0f + 32768.0f;
    tb->laplace_prior(mine, byte == 0 ? 0.0f : (float)(c_t * 256), byte == 0 ? 256.0f : 1.0f, mu,
                      net->prior_w + (size_t)byte * (size_t)net->K, net->prior_b[byte], hid, net->K);
    return mine;
}

/* past = [v(t), past[0], ..., past[P - 2]]: sample t becomes v(t' - 1) of the next sample t' = t + 1. */
static void push_past(float *past, int32_t P, int32_t c_t, int32_t f_t) {
    if (P == 0) return;
    memmove(past + 1, past, sizeof(float) * (size_t)(P - 1));
    past[0] = (float)(((c_t << 8) | f_t) - 32768) / 32768.0f;
}

/* The rows and units one thread owns. */
typedef struct {
    range r, o1, o2, o3, o4, uc, uf;
} shares;

static shares split_work(const pwr_wavernn *net, int tid, int nth) {
    const int32_t half = net->H / 2;
    return (shares){split_rows(&net->R, tid, nth),  split_rows(&net->O1, tid, nth),
                    split_rows(&net->O2, tid, nth), split_rows(&net->O3, tid, nth),
                    split_rows(&net->O4, tid, nth), split_units(0, half, tid, nth),
                    split_units(half, half, tid, nth)};
}

static void run_loop(const pwr_wavernn *net, const pwr_kernel_table *tb, int exact, const float *g,
                     int32_t n_frames, int64_t n, pwr_stream *s, const loop_io *io, const buffers *bf,
                     spin_barrier *bar, handover *ho, int tid, int nth) {
    const int32_t H = net->H, half = H / 2, hop = net->hop;
    shares sh = split_work(net, tid, nth);
    const pwr_gemv_fn mv_r = tb->gemv[net->R.shape][net->R.storage], mv_1 = tb->gemv[net->O1.shape][net->O1.storage],
                      mv_2 = tb->gemv[net->O2.shape][net->O2.storage], mv_3 = tb->gemv[net->O3.shape][net->O3.storage],
                      mv_4 = tb->gemv[net->O4.shape][net->O4.storage];
    const float *uniforms = io->uniforms;
    const int16_t *audio = io->audio;
    const int bookkeeping = tid == 0 && (io->out || io->nll || io->trace);
    float cdf[N_CLASSES];
    float lc_mine[N_CLASSES], lf_mine[N_CLASSES]; /* with a prior: this thread's logits plus the prior's terms */
    const int32_t P = net->P, n_in = P ? 4 : 3;
    const size_t G = (size_t)3 * H + (net->lpc ? (size_t)P : 0); /* floats per row of g */
    float past[PWR_MAX_LINEAR_ORDER]; /* this thread's copy of s->past (every thread keeps one alike) */
    if (P) memcpy(past, s->past, sizeof(float) * (size_t)P);
    float *h = s->h;
    waiter w = {0};
    spin_barrier solo, *team = bar; /* thread 0 alone: a barrier of one */
    barrier_init(&solo, 1);
    long window_sleeps = 0;
    int64_t solo_end = -1; /* thread 0, while alone: the step at which the team re-forms */
    int32_t c_prev = s->prev_c, f_prev = s->prev_f;
    const int64_t t0 = s->t; /* read once: thread 0 updates *s after the loop */
    for (int64_t i = 0; i < n; i++) {
        if (i == solo_end) { /* back to the team: the others re-read the previous samples, then own rows again */
            s->prev_c = c_prev;
            s->prev_f = f_prev;
            if (P) memcpy(s->past, past, sizeof(float) * (size_t)P);
            handover_resume(ho, i, team, &window_sleeps);
            bar = team;
            sh = split_work(net, tid, nth);
            solo_end = -1;
        }
        const int64_t t = t0 + i;
        const int32_t j = (int32_t)(t / hop);
        const float a = (float)(int32_t)(t % hop) / (float)hop;
        const float *g0 = g + (size_t)j * G;
        const float *g1 = g + (size_t)(j + 1 < n_frames ? j + 1 : n_frames - 1) * G;
        /* taps: linear.weight, or with lpc those of the frame nearest t (§13), after its 3H conditioning values */
        const int64_t jr = (t + hop / 2) / hop;
        const float *taps = net->lpc ? g + (size_t)(jr < n_frames ? jr : n_frames - 1) * G + 3 * (size_t)H : net->lin_w;
        /* x_t = [c_{t-1}, f_{t-1}, c_t (0 until known: its weight is 0 in the coarse rows), est(t) when P >= 1] */
        const float est = P ? linear_prediction(taps, past, P) : 0.0f;
        float x[4] = {scale_byte(c_prev), scale_byte(f_prev), 0.0f, est};
        const int32_t u_true = audio ? (int32_t)audio[i] + 32768 : 0;

        mv_r(&net->R, h, net->b_R, bf->rh, sh.r.lo, sh.r.hi);
        tb->gru_input(net->w_in, n_in, x, g0, g1, a, bf->gi, H, sh.uc.lo, sh.uc.hi);
        barrier_wait(bar, &w);
        tb->gru_gates(bf->rh, bf->gi, h, H, sh.uc.lo, sh.uc.hi, exact);
        barrier_wait(bar, &w);
        mv_1(&net->O1, h, net->b1, bf->hid_c, sh.o1.lo, sh.o1.hi);
        relu_rows(bf->hid_c, sh.o1.lo * net->O1.bh, sh.o1.hi * net->O1.bh);
        barrier_wait(bar, &w);
        mv_2(&net->O2, bf->hid_c, net->b2, bf->logits_c, sh.o2.lo, sh.o2.hi);
        barrier_wait(bar, &w);
        const float *lc = net->prior ? with_prior(net, tb, 0, bf->logits_c, bf->hid_c, est, 0, lc_mine)
                                     : bf->logits_c;
        const int32_t c_t = audio ? u_true >> 8 : tb->sample_softmax(lc, uniforms[2 * i], cdf, exact);
        x[2] = scale_byte(c_t);
        tb->gru_input(net->w_in, n_in, x, g0, g1, a, bf->gi, H, sh.uf.lo, sh.uf.hi);
        tb->gru_gates(bf->rh, bf->gi, h, H, sh.uf.lo, sh.uf.hi, exact);
        barrier_wait(bar, &w);
        mv_3(&net->O3, h + half, net->b3, bf->hid_f, sh.o3.lo, sh.o3.hi);
        relu_rows(bf->hid_f, sh.o3.lo * net->O3.bh, sh.o3.hi * net->O3.bh);
        barrier_wait(bar, &w);
        mv_4(&net->O4, bf->hid_f, net->b4, bf->logits_f, sh.o4.lo, sh.o4.hi);
        if (tid == 0 && bar->n > 1 && team_oversubscribed(bar, i, &window_sleeps)) handover_request(ho, i);
        barrier_wait(bar, &w);
        if (bar->n > 1 && handover_requested(ho, i)) {
            if (tid != 0) { /* thread 0 runs every row for a while (same kernels per row, same samples) */
                const int64_t rejoin = handover_wait(ho, i);
                if (rejoin < 0) return;
                c_prev = s->prev_c; /* the samples of step rejoin - 1, published by thread 0 */
                f_prev = s->prev_f;
                if (P) memcpy(past, s->past, sizeof(float) * (size_t)P);
                i = rejoin - 1;
                continue;
            }
            bar = &solo;
            sh = split_work(net, 0, 1);
            solo_end = handover_stretch_end(ho, i, n);
        }
        const float *lf = net->prior ? with_prior(net, tb, 1, bf->logits_f, bf->hid_f, est, c_t, lf_mine)
                                     : bf->logits_f;
        const int32_t f_t = audio ? u_true & 255 : tb->sample_softmax(lf, uniforms[2 * i + 1], cdf, exact);
        if (bookkeeping) record_step(io, lc, lf, h, H, i, c_t, f_t);
        push_past(past, P, c_t, f_t);
        c_prev = c_t;
        f_prev = f_t;
    }
    if (tid == 0) {
        s->prev_c = c_prev;
        s->prev_f = f_prev;
        if (P) memcpy(s->past, past, sizeof(float) * (size_t)P);
        s->t += n;
    }
    if (bar == &solo) handover_finish(ho); /* thread 0 ended the call alone: release the others */
}

/* Scratch of one stream (6H + 2K + 512 floats), or NULL. */
static float *alloc_scratch(const pwr_wavernn *net, buffers *bf) {
    const size_t H = (size_t)net->H, K = (size_t)net->K;
    float *mem = malloc(sizeof(float) * (6 * H + 2 * K + 2 * N_CLASSES));
    if (mem) *bf = (buffers){mem, mem + 3 * H, mem + 6 * H, mem + 6 * H + K, mem + 6 * H + 2 * K,
                             mem + 6 * H + 2 * K + N_CLASSES};
    return mem;
}

int pwr_test_handover_every = 0;
atomic_long pwr_handovers = 0;

void pwr_set_test_handover(int every) { pwr_test_handover_every = every > 0 ? every : 0; }

long pwr_handover_count(void) { return atomic_load(&pwr_handovers); }

static int run_stream(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                      const float *g, int32_t n_frames, int64_t n, pwr_stream *s, const loop_io *io) {
    pwr_kernel_table mode; /* exact mode: the ordered products (docs/format.md §3a) */
    table = pwr_table_for_mode(table, exact, &mode);
    buffers bf;
    float *mem = alloc_scratch(net, &bf);
    if (!mem) return -1;
    if (n > 0) {
        spin_barrier bar;
        barrier_init(&bar, 1);
        handover ho;
        handover_init(&ho);
#if PWR_HAVE_OPENMP
        if (nthreads > 1) {
            bar.n = 0;
#pragma omp parallel num_threads(nthreads)
            {
#pragma omp single
                bar.n = omp_get_num_threads(); /* the team may be smaller than asked; implicit barrier follows */
                run_loop(net, table, exact, g, n_frames, n, s, io, &bf, &bar, &ho, omp_get_thread_num(), bar.n);
            }
        } else
#endif
        {
            (void)nthreads;
            run_loop(net, table, exact, g, n_frames, n, s, io, &bf, &bar, &ho, 0, 1);
        }
    }
    free(mem);
    return 0;
}

int pwr_generate(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads, const float *g,
                 int32_t n_frames, const float *uniforms, int64_t n, pwr_stream *s, int16_t *out) {
    return pwr_generate_traced(net, table, exact, nthreads, g, n_frames, uniforms, n, s, out, NULL);
}

int pwr_generate_traced(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                        const float *g, int32_t n_frames, const float *uniforms, int64_t n, pwr_stream *s,
                        int16_t *out, const pwr_trace *trace) {
    const loop_io io = {uniforms, NULL, out, NULL, trace};
    return run_stream(net, table, exact, nthreads, g, n_frames, n, s, &io);
}

int pwr_teacher_forced(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                       const float *g, int32_t n_frames, const int16_t *audio, int64_t n, pwr_stream *s,
                       double *nll_bits, const pwr_trace *trace) {
    const loop_io io = {NULL, audio, NULL, nll_bits, trace};
    return run_stream(net, table, exact, nthreads, g, n_frames, n, s, &io);
}

int pwr_generate_batch(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                       const pwr_utterance *items, int32_t n_items) {
    atomic_int failed;
    atomic_init(&failed, 0);
#if PWR_HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (nthreads > 1 && n_items > 1)
#endif
    for (int32_t k = 0; k < n_items; k++) {
        const pwr_utterance *it = &items[k];
        const loop_io io = {it->uniforms, NULL, it->out, NULL, NULL};
        if (run_stream(net, table, exact, 1, it->g, it->n_frames, it->n, it->s, &io) != 0)
            atomic_store(&failed, 1);
    }
    (void)nthreads;
    return atomic_load(&failed) ? -1 : 0;
}
