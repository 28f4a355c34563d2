/* sampler.c: the sampling loop (see sampler.h). Compiled once; all arithmetic goes through the ISA's kernel table.
 *
 * One step, per thread (every phase touches only the thread's rows; B = spin barrier):
 *   1 rh = R h + b_R (own R block rows); gi for own coarse units          B
 *   2 coarse gate update (own coarse units)                                B
 *   3 hid_c = relu(O1 y_c + b1) (own O1 rows)                              B
 *   4 logits_c = O2 hid_c + b2 (own O2 rows)                               B
 *   5 c_t = sample(logits_c) (every thread, redundantly: same data, same code, same answer);
 *     gi for own fine units with c_t; fine gate update (own fine units)    B
 *   6 hid_f = relu(O3 y_f + b3)                                            B
 *   7 logits_f = O4 hid_f + b4                                             B
 *   8 f_t = sample(logits_f) (every thread); thread 0 writes the sample
 * Every buffer written in a phase is read only after the next barrier and rewritten only after the next step's
 * barriers, so 7 barriers a step suffice.
 */
#include "sampler.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if PWR_HAVE_OPENMP
#include <omp.h>
#endif

#define N_CLASSES 256
#define UNIT_ALIGN 8 /* hidden units are split in multiples of 8 (one AVX2 vector) */

typedef struct {
    atomic_int count;
    atomic_int sense;
    int n;
} spin_barrier;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Sense-reversing barrier; spins, then yields the core (so an oversubscribed machine still makes progress). */
static void barrier_wait(spin_barrier *b, int *local_sense) {
    if (b->n == 1) return;
    const int s = !*local_sense;
    *local_sense = s;
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_store_explicit(&b->sense, s, memory_order_release);
        return;
    }
    for (long spins = 0; atomic_load_explicit(&b->sense, memory_order_acquire) != s; spins++) {
        if (spins < 2000) cpu_relax(); /* ~100 us, then give the core away */
        else sched_yield();
    }
}

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

static void run_loop(const pwr_wavernn *net, const pwr_kernel_table *tb, int exact, const float *g,
                     int32_t n_frames, const float *uniforms, int64_t n, pwr_stream *s, int16_t *out,
                     const buffers *bf, spin_barrier *bar, int tid, int nth) {
    const int32_t H = net->H, half = H / 2, hop = net->hop;
    const range rr = split_rows(&net->R, tid, nth), r1 = split_rows(&net->O1, tid, nth),
                r2 = split_rows(&net->O2, tid, nth), r3 = split_rows(&net->O3, tid, nth),
                r4 = split_rows(&net->O4, tid, nth);
    const range uc = split_units(0, half, tid, nth), uf = split_units(half, half, tid, nth);
    const pwr_gemv_fn mv_r = tb->gemv[net->R.shape][net->R.storage], mv_1 = tb->gemv[net->O1.shape][net->O1.storage],
                      mv_2 = tb->gemv[net->O2.shape][net->O2.storage], mv_3 = tb->gemv[net->O3.shape][net->O3.storage],
                      mv_4 = tb->gemv[net->O4.shape][net->O4.storage];
    float cdf[N_CLASSES];
    float *h = s->h;
    int sense = 0;
    int32_t c_prev = s->prev_c, f_prev = s->prev_f;
    const int64_t t0 = s->t; /* read once: thread 0 updates *s after the loop */
    for (int64_t i = 0; i < n; i++) {
        const int64_t t = t0 + i;
        const int32_t j = (int32_t)(t / hop);
        const float a = (float)(int32_t)(t % hop) / (float)hop;
        const float *g0 = g + (size_t)j * 3 * H;
        const float *g1 = g + (size_t)(j + 1 < n_frames ? j + 1 : n_frames - 1) * 3 * H;
        float x3[3] = {scale_byte(c_prev), scale_byte(f_prev), 0.0f}; /* c_t's weight is 0 in coarse rows */

        mv_r(&net->R, h, net->b_R, bf->rh, rr.lo, rr.hi);
        tb->gru_input(net->w_in, x3, g0, g1, a, bf->gi, H, uc.lo, uc.hi);
        barrier_wait(bar, &sense);
        tb->gru_gates(bf->rh, bf->gi, h, H, uc.lo, uc.hi, exact);
        barrier_wait(bar, &sense);
        mv_1(&net->O1, h, net->b1, bf->hid_c, r1.lo, r1.hi);
        relu_rows(bf->hid_c, r1.lo * net->O1.bh, r1.hi * net->O1.bh);
        barrier_wait(bar, &sense);
        mv_2(&net->O2, bf->hid_c, net->b2, bf->logits_c, r2.lo, r2.hi);
        barrier_wait(bar, &sense);
        const int32_t c_t = tb->sample_softmax(bf->logits_c, uniforms[2 * i], cdf, exact);
        x3[2] = scale_byte(c_t);
        tb->gru_input(net->w_in, x3, g0, g1, a, bf->gi, H, uf.lo, uf.hi);
        tb->gru_gates(bf->rh, bf->gi, h, H, uf.lo, uf.hi, exact);
        barrier_wait(bar, &sense);
        mv_3(&net->O3, h + half, net->b3, bf->hid_f, r3.lo, r3.hi);
        relu_rows(bf->hid_f, r3.lo * net->O3.bh, r3.hi * net->O3.bh);
        barrier_wait(bar, &sense);
        mv_4(&net->O4, bf->hid_f, net->b4, bf->logits_f, r4.lo, r4.hi);
        barrier_wait(bar, &sense);
        const int32_t f_t = tb->sample_softmax(bf->logits_f, uniforms[2 * i + 1], cdf, exact);
        if (tid == 0) out[i] = (int16_t)(((c_t << 8) | f_t) - 32768);
        c_prev = c_t;
        f_prev = f_t;
    }
    if (tid == 0) {
        s->prev_c = c_prev;
        s->prev_f = f_prev;
        s->t += n;
    }
}

int pwr_generate(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads, const float *g,
                 int32_t n_frames, const float *uniforms, int64_t n, pwr_stream *s, int16_t *out) {
    const size_t H = (size_t)net->H, K = (size_t)net->K;
    float *mem = malloc(sizeof(float) * (6 * H + 2 * K + 2 * N_CLASSES));
    if (!mem) return -1;
    const buffers bf = {mem, mem + 3 * H, mem + 6 * H, mem + 6 * H + K, mem + 6 * H + 2 * K,
                        mem + 6 * H + 2 * K + N_CLASSES};
    if (n > 0) {
#if PWR_HAVE_OPENMP
        if (nthreads > 1) {
            spin_barrier bar;
            atomic_init(&bar.count, 0);
            atomic_init(&bar.sense, 0);
            bar.n = 0;
#pragma omp parallel num_threads(nthreads)
            {
#pragma omp single
                bar.n = omp_get_num_threads(); /* the team may be smaller than asked; implicit barrier follows */
                run_loop(net, table, exact, g, n_frames, uniforms, n, s, out, &bf, &bar, omp_get_thread_num(),
                         bar.n);
            }
        } else
#endif
        {
            spin_barrier bar;
            atomic_init(&bar.count, 0);
            atomic_init(&bar.sense, 0);
            bar.n = 1;
            (void)nthreads;
            run_loop(net, table, exact, g, n_frames, uniforms, n, s, out, &bf, &bar, 0, 1);
        }
    }
    free(mem);
    return 0;
}
