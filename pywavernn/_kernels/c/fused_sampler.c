/* fused_sampler.c: the Fused Subscale WaveRNN 2x loop (see fused_sampler.h). Compiled once; every matrix product,
 * gate input and gate update goes through the ISA's kernel table, the 16-way draws are plain C here.
 *
 * One step n (docs/format.md §12), per thread (B = spin barrier):
 *   A every thread builds the step's input columns 0..7 from the two previous samples (shared, written in the
 *     previous step's phase B) into its own copies of x, one per half, columns 8..13 zero; then its rows of
 *     rh = R h + b_R                                                                              B
 *   B half 0 on thread 0, half 1 on thread 1 (thread 0 alone with one thread), each active half its parts j = 0..3:
 *     gi of the part's rows (gru_input_cols over the 8 + j columns the part may see, left to right, then the
 *     conditioning at the half's sample time), the part's gate update in place, head p = 4 s + j (O1's rows
 *     [p K, (p + 1) K), ReLU, O2's rows [16 p, 16 p + 16)), nibble j drawn (or read, teacher forcing), then written
 *     into this half's x column 8 + j; the half's sample, NLL and logits recorded; the shared previous sample of
 *     this half set (SILENCE for an idle half, which keeps its state)                             B
 *     thread 0 then records the trace's h and step of the step's samples.
 * Every buffer written in a phase is read only after the next barrier and rewritten only after the following one,
 * so two barriers a step suffice. Each half's parts read only its own state units, its own rows of rh, gi, hid and
 * logits, and its own x.
 * The gate input. The spec sums all 14 columns of W_in in order; the columns a part may not see (the other half's
 * current nibbles, its own from nibble j on) are zero in its rows (the input mask, checked by the loader), so
 * their terms are exact zeros (x * 0 = +-0) and adding one leaves a nonzero partial sum unchanged, bit for bit.
 * Skipping them (a third of the input's multiply-adds) can only change the sign of a partial sum that is exactly
 * zero, which no later operation turns into a different nonzero value or sample.
 */
#define _DEFAULT_SOURCE /* syscall() under -std=c11 (pwr_barrier.h) */
#include "fused_sampler.h"

#include "pwr_barrier.h"
#include "fastmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if PWR_HAVE_OPENMP
#include <omp.h>
#endif

#define N_NIBBLES 4
#define NIBBLE_CLASSES 16
#define LAG 3            /* half 1 runs F + 1 = 3 steps behind half 0 */
#define PREVIOUS_COLUMNS 8 /* x[0..7]: the previous samples' nibbles; x[8 + j]: this half's nibble j */
#define LN2 0.69314718055994530942

typedef struct { int32_t lo, hi; } range;

/* Block rows of w for thread tid of nth, balanced by stored blocks (+1 per block row for its fixed cost), as in
 * sampler.c. */
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

/* pywavernn.fused.NIBBLE_INPUT: nibble v scaled to [-1, 1], the float32 operations of the spec. */
static inline float nibble_input(int32_t v) { return (float)v / 7.5f - 1.0f; }

int64_t pwr_fused_n_steps(int64_t T) { return (T + 1) / 2 + LAG; }

/* (i0, i1): the positions half 0 and half 1 generate at step n, -1 where idle (pywavernn.fused.step_positions);
 * T < 0: unknown, every position >= 0 is real. */
static void step_positions(int64_t n, int64_t T, int64_t pos[2]) {
    pos[0] = (T < 0 || n < (T + 1) / 2) ? n : -1;
    const int64_t i1 = n - LAG;
    pos[1] = (i1 >= 0 && (T < 0 || 2 * i1 + 1 < T)) ? i1 : -1;
}

/* §4's rule over 16 classes: p = exp(l - max l) (exact: pwr_exp_exact, docs/format.md §3a; or the table's fast exp), cdf the running sum in index
 * order, the first k with cdf[k] > u cdf[15] (15 if none). */
static int32_t sample_nibble(const pwr_kernel_table *tb, const float *l, float u, int exact) {
    float cdf[NIBBLE_CLASSES];
    float mx = l[0];
    for (int k = 1; k < NIBBLE_CLASSES; k++) mx = l[k] > mx ? l[k] : mx;
    for (int k = 0; k < NIBBLE_CLASSES; k++) cdf[k] = l[k] - mx;
    if (exact) {
        for (int k = 0; k < NIBBLE_CLASSES; k++) cdf[k] = pwr_exp_exact(cdf[k]);
    } else {
        tb->fast_exp(cdf, cdf, NIBBLE_CLASSES);
    }
    for (int k = 1; k < NIBBLE_CLASSES; k++) cdf[k] += cdf[k - 1];
    const float threshold = u * cdf[NIBBLE_CLASSES - 1];
    for (int k = 0; k < NIBBLE_CLASSES; k++)
        if (cdf[k] > threshold) return k;
    return NIBBLE_CLASSES - 1;
}

/* -log2 softmax(l)[k] in float64 from 16 float32 logits (a metric, not part of the sample-exact path). */
static double neg_log2_softmax16(const float *l, int32_t k) {
    double mx = l[0];
    for (int i = 1; i < NIBBLE_CLASSES; i++) mx = l[i] > mx ? l[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < NIBBLE_CLASSES; i++) sum += exp((double)l[i] - mx);
    return (mx + log(sum) - (double)l[k]) / LN2;
}

typedef struct {
    float *rh, *gi;    /* (3H) each: each half writes its own rows of gi */
    float *hid;        /* (8K): head p's rows [p K, (p + 1) K) */
    float *logits;     /* (128): head p's rows [16 p, 16 p + 16) */
    int32_t prev[2];   /* the samples the next step's input carries (see pwr_fused_stream) */
} buffers;

/* The fixed arguments of one call, shared by the team. */
typedef struct {
    const pwr_fused_net *net;
    const pwr_kernel_table *tb;
    int exact;
    const float *g;
    int64_t g_first;
    int32_t g_rows;
    int64_t T, t_first;
    const pwr_fused_io *io;
} call;

/* Half `half`'s four parts at one step, generating its sample of time t; x is this half's input (columns 0..7 set,
 * 8..10 written as the nibbles are drawn). Writes the state units of the half, its rows of gi / hid / logits and the io rows of t; returns the
 * sample's unsigned value. */
static int32_t run_half(const call *c, const buffers *bf, float *h, int half, float *x, int64_t t) {
    const pwr_fused_net *net = c->net;
    const pwr_kernel_table *tb = c->tb;
    const pwr_fused_io *io = c->io;
    const int32_t H = net->H, P = H / 8, K = net->K, hop = net->hop;
    const pwr_gemv_fn mv_1 = tb->gemv[net->O1.shape][net->O1.storage], mv_2 = tb->gemv[net->O2.shape][net->O2.storage];
    const int64_t row = t - c->t_first, frame = t / hop;
    const float a = (float)(int32_t)(t % hop) / (float)hop;
    const int64_t f1 = frame + 1 - c->g_first < c->g_rows ? frame + 1 - c->g_first : c->g_rows - 1;
    const float *g0 = c->g + (size_t)(frame - c->g_first) * 3 * (size_t)H, *g1 = c->g + (size_t)f1 * 3 * (size_t)H;
    const float *u = io->uniforms ? io->uniforms + (size_t)row * N_NIBBLES : NULL;
    const int32_t u_true = io->audio ? (int32_t)io->audio[row] + PWR_FUSED_SILENCE : 0;
    float *trace_logits = io->trace && io->trace->logits
                              ? io->trace->logits + (size_t)row * N_NIBBLES * NIBBLE_CLASSES : NULL;
    int32_t value = 0;
    double bits = 0.0;
    for (int j = 0; j < N_NIBBLES; j++) {
        const int p = N_NIBBLES * half + j;
        const int32_t unit = half * (H / 2) + j * P;
        tb->gru_input_cols(net->w_in_t, PREVIOUS_COLUMNS + j, x, g0, g1, a, bf->gi, H, unit, unit + P);
        tb->gru_gates(bf->rh, bf->gi, h, H, unit, unit + P, c->exact);
        mv_1(&net->O1, h + unit, net->b1, bf->hid, p * K / net->O1.bh, (p + 1) * K / net->O1.bh);
        float *hid = bf->hid + (size_t)p * K;
        for (int32_t k = 0; k < K; k++) hid[k] = hid[k] > 0.0f ? hid[k] : 0.0f;
        mv_2(&net->O2, hid, net->b2, bf->logits, p * NIBBLE_CLASSES / net->O2.bh,
             (p + 1) * NIBBLE_CLASSES / net->O2.bh);
        const float *l = bf->logits + (size_t)p * NIBBLE_CLASSES;
        const int32_t nib = u ? sample_nibble(tb, l, u[j], c->exact) : (u_true >> (4 * (N_NIBBLES - 1 - j))) & 15;
        if (io->nll) bits += neg_log2_softmax16(l, nib);
        if (trace_logits) memcpy(trace_logits + j * NIBBLE_CLASSES, l, sizeof(float) * NIBBLE_CLASSES);
        if (j < N_NIBBLES - 1) x[PREVIOUS_COLUMNS + j] = nibble_input(nib);
        value = (value << 4) | nib;
    }
    if (io->out) io->out[row] = (int16_t)(value - PWR_FUSED_SILENCE);
    if (io->nll) io->nll[row] = bits;
    return value;
}

/* x's columns 0..3 (half 0's previous sample) and 4..7 (half 1's), most significant nibble first; 8..10 zero. */
static void step_input(const int32_t prev[2], float *x) {
    for (int s = 0; s < 2; s++)
        for (int j = 0; j < N_NIBBLES; j++)
            x[N_NIBBLES * s + j] = nibble_input((prev[s] >> (4 * (N_NIBBLES - 1 - j))) & 15);
    for (int k = PREVIOUS_COLUMNS; k < PWR_FUSED_INPUTS; k++) x[k] = 0.0f;
}

/* Thread 0's records after a step's last barrier: the full state after the step, for each sample it generated. */
static void record_step(const call *c, const float *h, const int64_t pos[2], int64_t n) {
    const pwr_fused_trace *tr = c->io->trace;
    if (!tr) return;
    const int32_t H = c->net->H;
    for (int s = 0; s < 2; s++) {
        if (pos[s] < 0) continue;
        const size_t row = (size_t)(2 * pos[s] + s - c->t_first);
        if (tr->h) memcpy(tr->h + row * (size_t)H, h, sizeof(float) * (size_t)H);
        if (tr->step) tr->step[row] = n;
    }
}

static void run_loop(const call *c, pwr_fused_stream *s, int64_t n_end, buffers *bf, spin_barrier *bar,
                     handover *ho, int tid, int nth) {
    const pwr_fused_net *net = c->net;
    const pwr_gemv_fn mv_r = c->tb->gemv[net->R.shape][net->R.storage];
    range rr = split_rows(&net->R, tid, nth);
    float *h = s->h;
    float x[2][PWR_FUSED_INPUTS];
    waiter w = {0};
    spin_barrier solo, *team = bar; /* thread 0 alone: a barrier of one */
    barrier_init(&solo, 1);
    long window_sleeps = 0;
    int64_t solo_end = -1; /* thread 0, while alone: the step at which the team re-forms */
    for (int64_t n = s->step; n < n_end; n++) {
        if (n == solo_end) { /* back to the team: every shared value the others read is in place */
            handover_resume(ho, n, team, &window_sleeps);
            bar = team;
            rr = split_rows(&net->R, tid, nth);
            solo_end = -1;
        }
        int64_t pos[2];
        step_positions(n, c->T, pos);
        step_input(bf->prev, x[0]);
        memcpy(x[1], x[0], sizeof x[0]);
        mv_r(&net->R, h, net->b_R, bf->rh, rr.lo, rr.hi);
        barrier_wait(bar, &w);
        for (int half = 0; half < 2; half++) {
            if (tid != (bar->n > 1 ? half : 0)) continue; /* half 1 is thread 1's in a team, else thread 0's */
            bf->prev[half] = pos[half] < 0 ? PWR_FUSED_SILENCE
                                           : run_half(c, bf, h, half, x[half], 2 * pos[half] + half);
        }
        if (tid == 0 && bar->n > 1 && team_oversubscribed(bar, n, &window_sleeps)) handover_request(ho, n);
        barrier_wait(bar, &w);
        if (bar->n > 1 && handover_requested(ho, n)) {
            if (tid != 0) { /* thread 0 runs every row and both halves for a while (same kernels, same samples) */
                const int64_t rejoin = handover_wait(ho, n);
                if (rejoin < 0) return;
                n = rejoin - 1;
                continue;
            }
            bar = &solo;
            rr = split_rows(&net->R, 0, 1);
            solo_end = handover_stretch_end(ho, n, n_end);
        }
        if (tid == 0) record_step(c, h, pos, n);
    }
    if (bar == &solo) handover_finish(ho); /* thread 0 ended the call alone: release the others */
}

int pwr_fused_run(const pwr_fused_net *net, const pwr_kernel_table *table, int exact, int nthreads, const float *g,
                  int64_t g_first, int32_t g_rows, int64_t T, int64_t t_first, const pwr_fused_io *io,
                  pwr_fused_stream *s, int64_t n_end) {
    if (n_end <= s->step) return 0;
    const size_t H = (size_t)net->H, K = (size_t)net->K;
    float *mem = malloc(sizeof(float) * (6 * H + 8 * K + N_NIBBLES * 2 * NIBBLE_CLASSES));
    if (!mem) return -1;
    buffers bf = {mem, mem + 3 * H, mem + 6 * H, mem + 6 * H + 8 * K, {s->prev[0], s->prev[1]}};
    pwr_kernel_table mode; /* exact mode: the ordered products (docs/format.md §3a) */
    const call c = {net, pwr_table_for_mode(table, exact, &mode), exact, g, g_first, g_rows, T, t_first, io};
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
            run_loop(&c, s, n_end, &bf, &bar, &ho, omp_get_thread_num(), bar.n);
        }
    } else
#endif
    {
        (void)nthreads;
        run_loop(&c, s, n_end, &bf, &bar, &ho, 0, 1);
    }
    s->prev[0] = bf.prev[0];
    s->prev[1] = bf.prev[1];
    s->step = n_end;
    free(mem);
    return 0;
}
