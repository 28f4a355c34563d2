/* pwr_barrier.h: the spin-then-sleep barrier of the persistent OpenMP teams (sampler.c, subscale_sampler.c) and
 * the serial-fallback rule they share. Internal header (static inline functions), plain C11 atomics, no OpenMP.
 *
 * A waiter spins (the normal case: a phase takes microseconds and every thread has a core), then sleeps on a
 * futex, so on an oversubscribed machine (another process holding a core) a waiter stops keeping the thread it
 * waits for off the core. A team whose barriers keep sleeping (SERIAL_AFTER_SLEEPS sleeps within SERIAL_WINDOW
 * steps) is sharing its cores with other work: the caller then hands the rest of the call to thread 0 (the
 * `serial` / `done` fields are for that hand-over; how and when is the caller's protocol).
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
    atomic_int serial;   /* set by thread 0: the team hands the rest of the call to thread 0 */
    atomic_int done;     /* set by thread 0 when a serial finish is over */
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
    atomic_init(&b->serial, 0);
    atomic_init(&b->done, 0);
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

/* Whether the team's barriers slept SERIAL_AFTER_SLEEPS times since the start of the current window of
 * SERIAL_WINDOW steps (step i; *window_sleeps is the caller's window start count). Thread 0 calls it once a
 * step. */
static inline int team_oversubscribed(spin_barrier *bar, int64_t i, long *window_sleeps) {
    const long sleeps = atomic_load_explicit(&bar->sleeps, memory_order_relaxed);
    if (i % SERIAL_WINDOW == 0) {
        *window_sleeps = sleeps;
        return 0;
    }
    return sleeps - *window_sleeps >= SERIAL_AFTER_SLEEPS;
}

#endif
