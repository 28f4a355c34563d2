/* pwr_barrier.h: the spin-then-sleep barrier of the persistent OpenMP teams (sampler.c, subscale_sampler.c) and
 * the solo-stretch hand-over they share. Internal header (static inline functions), plain C11 atomics, no OpenMP.
 *
 * A waiter spins (the normal case: a phase takes microseconds and every thread has a core), then sleeps on a
 * futex, so on an oversubscribed machine (another process holding a core) a waiter stops keeping the thread it
 * waits for off the core. A team whose barriers keep sleeping (SERIAL_AFTER_SLEEPS sleeps within SERIAL_WINDOW
 * steps) is sharing its cores with other work: thread 0 then takes all the work for a stretch of steps while the
 * others sleep, and hands it back at the stretch's end (see `handover` below). A stretch doubles each time the
 * team falls back again, so a machine that stays oversubscribed costs a few short retries per call, and a passing
 * disturbance (a process that runs for a moment, a hypervisor pause) costs one stretch, not the rest of the call.
 *
 * Include it before any system header, after `#define _DEFAULT_SOURCE` (syscall() under -std=c11).
 */
#ifndef PWR_BARRIER_H
#define PWR_BARRIER_H

#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdatomic.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

typedef struct {
    atomic_int count;
    atomic_int sense;
    atomic_int sleepers; /* threads asleep (or about to sleep) on sense */
    atomic_long sleeps;  /* waits that ended in sleep, ever: the sign of an oversubscribed machine */
    int n;
} spin_barrier;

typedef struct {
    int sense;
} waiter; /* one thread's side of a barrier */

static inline void barrier_init(spin_barrier *b, int n) {
    atomic_init(&b->count, 0);
    atomic_init(&b->sense, 0);
    atomic_init(&b->sleepers, 0);
    atomic_init(&b->sleeps, 0);
    b->n = n;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Sleeping while *addr == val (Linux futex, 1 ms at most, so even a lost wake-up only costs time), elsewhere a
 * yield of the core. */
static inline void sleep_while_equal(atomic_int *addr, int val) {
#if defined(__linux__)
    const struct timespec limit = {0, 1000000};
    syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, val, &limit, NULL, 0);
#else
    (void)addr;
    (void)val;
    sched_yield();
#endif
}

static inline void wake_all(atomic_int *addr) {
#if defined(__linux__)
    syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

#define SPIN_LIMIT 2048 /* pause instructions before sleeping: ~50 us on a 2026 x86 core, longer than any phase */
/* A team whose barriers slept SERIAL_AFTER_SLEEPS times within SERIAL_WINDOW steps is sharing its cores with
 * other work; spinning teammates then only slow each other, so the rest of the call runs on thread 0. */
#define SERIAL_WINDOW 256
#define SERIAL_AFTER_SLEEPS 8

/* Sense-reversing barrier. A waiter spins, then sleeps on a futex (see above). The sleepers count and sense are
 * sequentially consistent (store, then load the other's), so either the releaser sees a sleeper and wakes it or
 * the sleeper sees the new sense. */
static inline void barrier_wait(spin_barrier *b, waiter *w) {
    if (b->n == 1) return;
    const int s = !w->sense;
    w->sense = s;
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == b->n - 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_store(&b->sense, s);
        if (atomic_load(&b->sleepers) > 0) wake_all(&b->sense);
        return;
    }
    for (int spins = 0; spins < SPIN_LIMIT; spins++) {
        if (atomic_load_explicit(&b->sense, memory_order_acquire) == s) return;
        cpu_relax();
    }
    atomic_fetch_add_explicit(&b->sleeps, 1, memory_order_relaxed);
    while (atomic_load(&b->sense) != s) {
        atomic_fetch_add(&b->sleepers, 1);
        if (atomic_load(&b->sense) != s) sleep_while_equal(&b->sense, !s);
        atomic_fetch_sub(&b->sleepers, 1);
    }
}

/* Forces the hand-over for tests (sampler.h: pwr_set_test_handover): when > 0, thread 0 requests a solo stretch of
 * that many steps every that many steps, whatever the barriers do. 0 in normal use. */
extern int pwr_test_handover_every;
/* Solo stretches begun in this process, all loops together (sampler.h: pwr_handover_count): a diagnostic for
 * benchmarks and tests. */
extern atomic_long pwr_handovers;

/* Whether the team's barriers slept SERIAL_AFTER_SLEEPS times since the start of the current window of
 * SERIAL_WINDOW steps (step i; *window_sleeps is the caller's window start count). Thread 0 calls it once a
 * step. */
static inline int team_oversubscribed(spin_barrier *bar, int64_t i, long *window_sleeps) {
    const long sleeps = atomic_load_explicit(&bar->sleeps, memory_order_relaxed);
    const int every = pwr_test_handover_every;
    if (every > 0) return i > 0 && i % every == 0;
    if (i % SERIAL_WINDOW == 0) {
        *window_sleeps = sleeps;
        return 0;
    }
    return sleeps - *window_sleeps >= SERIAL_AFTER_SLEEPS;
}

/* The solo-stretch hand-over of a loop over steps n, which every thread of the team runs:
 *   thread 0, before step n's last barrier:  if (team_oversubscribed(...)) handover_request(ho, n);
 *   every thread, after that barrier:        if (handover_requested(ho, n)) ...
 *     thread 0 goes on alone (all rows or streams, a barrier of one) until step handover_stretch_end(ho, n, end);
 *     the others call handover_wait(ho, n): it returns the step at which they rejoin, or -1 when thread 0
 *     finished the call alone; they continue at that step with their own share, as if never gone.
 *   thread 0, at the start of that step: handover_resume(ho, n, bar, &window_sleeps) after publishing whatever
 *     per-thread state the others must re-read, then back to its own share and the team barrier;
 *   thread 0, after the loop, if still alone: handover_finish(ho).
 * The rejoin step is stored after everything thread 0 wrote while alone and read before anything the others
 * read (sequentially consistent atomics), so they see the state of every step before it. The team barrier's
 * sense is untouched while thread 0 is alone (a barrier of one returns before touching its waiter), so it is
 * consistent again when the team re-forms. */
typedef struct {
    atomic_llong solo_step;   /* the step after whose last barrier thread 0 goes on alone; -1: none yet */
    atomic_llong rejoin_step; /* where the others rejoin: <= the solo step while none is set; INT64_MAX: over */
    atomic_int phase;         /* bumped whenever rejoin_step is set: what the others sleep on */
    int64_t stretch;          /* thread 0's: the length of the next solo stretch */
} handover;

static inline void handover_init(handover *h) {
    atomic_init(&h->solo_step, -1);
    atomic_init(&h->rejoin_step, -1);
    atomic_init(&h->phase, 0);
    h->stretch = pwr_test_handover_every > 0 ? pwr_test_handover_every : SERIAL_WINDOW;
}

static inline void handover_request(handover *h, int64_t n) {
    atomic_store_explicit(&h->solo_step, n, memory_order_relaxed); /* ordered by the barrier that follows */
}

static inline int handover_requested(handover *h, int64_t n) {
    return atomic_load_explicit(&h->solo_step, memory_order_relaxed) == n;
}

/* Thread 0: the first step after the solo stretch that starts after step n (the team re-forms there), or end;
 * each stretch is twice the last (outside tests). */
static inline int64_t handover_stretch_end(handover *h, int64_t n, int64_t end) {
    atomic_fetch_add_explicit(&pwr_handovers, 1, memory_order_relaxed);
    const int64_t stop = n + 1 + h->stretch;
    if (pwr_test_handover_every <= 0 && h->stretch < ((int64_t)1 << 40)) h->stretch *= 2;
    return stop < end ? stop : end;
}

static inline int64_t handover_wait(handover *h, int64_t n) {
    for (;;) {
        const int phase = atomic_load(&h->phase);
        const int64_t r = atomic_load(&h->rejoin_step);
        if (r > n) return r == INT64_MAX ? -1 : r;
        sleep_while_equal(&h->phase, phase);
    }
}

static inline void handover_publish(handover *h, int64_t r) {
    atomic_store(&h->rejoin_step, r);
    atomic_fetch_add(&h->phase, 1);
    wake_all(&h->phase);
}

static inline void handover_resume(handover *h, int64_t n, spin_barrier *team, long *window_sleeps) {
    *window_sleeps = atomic_load_explicit(&team->sleeps, memory_order_relaxed); /* a fresh window from here */
    handover_publish(h, n);
}

static inline void handover_finish(handover *h) { handover_publish(h, INT64_MAX); }

#endif
