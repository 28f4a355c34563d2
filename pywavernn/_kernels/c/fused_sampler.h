/* fused_sampler.h: the Fused Subscale WaveRNN 2x loop in C (docs/format.md §12): one GRU step per two samples,
 * generation from supplied uniforms and teacher forcing (per-sample NLL), resumable step by step for streaming.
 *
 * Plain C, no Python.h; the loop runs without the GIL and never calls back into Python. Weights (pwr_fused_net) are
 * immutable and shareable; everything one utterance needs to go on is its pwr_fused_stream (h, the next step, the
 * two samples the next step's input carries), so running steps [0, n1) then [n1, n2) gives exactly the samples of
 * one call for [0, n2).
 *
 * Threads: one OpenMP parallel region per call (a persistent team) and two spin barriers a step: every thread
 * computes its rows of rh = R h + b_R (rows split by prefix sums of nonzero blocks, as sampler.c does); then half 0
 * runs on thread 0 and half 1 on thread 1 (thread 0 with one thread), each its four parts in order. The halves
 * never read each other's values within a step (a part sees only its own half's current nibbles, §12's input
 * mask), so they need no barrier between their parts. Every row and unit is computed by one kernel whatever the
 * team, so samples do not depend on the thread count; a team whose barriers keep sleeping hands the rest to
 * thread 0 (pwr_barrier.h), which changes no sample either. Without OpenMP the loop runs on one thread.
 *
 * Letters: H hidden units (a multiple of 8), P = H / 8 units per part, K head hidden units, T samples,
 * N = ceil(T / 2) positions, hop samples per frame.
 */
#ifndef PWR_FUSED_SAMPLER_H
#define PWR_FUSED_SAMPLER_H

#include <stdint.h>

#include "pwr_kernels.h"

#define PWR_FUSED_INPUTS 11 /* a half's inputs: the 8 previous nibbles, its own sample's nibbles 0..2 */
#define PWR_FUSED_SILENCE 32768 /* pywavernn.fused.SILENCE: the input where there is no sample */

typedef struct {
    int32_t H, K, hop;
    pwr_matrix R;            /* (3H, H): gates u, r, e; in each gate half 0 then half 1, each four parts of P rows */
    pwr_matrix O1;           /* (8K, P): head p = 4 s + j in rows [p K, (p + 1) K); block height divides K */
    pwr_matrix O2;           /* (128, K): head p's logits in rows [16 p, 16 p + 16); block height divides 16 */
    const float *w_in_t;     /* (11, 3H): gru.W_in's columns 0..7 and, in the rows of half s, its own current
                              * nibbles' columns 8 + 3 s .. 10 + 3 s, transposed (the other half's three columns
                              * are zero in these rows: §12's input mask, checked by the loader) */
    const float *b_R;        /* (3H) */
    const float *b1, *b2;    /* (8K), (128) */
} pwr_fused_net;

typedef struct {
    float *h;                /* (H) the state, updated in place */
    int64_t step;            /* the next step n */
    int32_t prev[2];         /* unsigned 16-bit values of the samples half 0 and half 1 generated at step n - 1
                              * (PWR_FUSED_SILENCE where that half was idle): the next step's input columns 0..7 */
} pwr_fused_stream;

/* Per-sample records by true time, rows from the call's t_first: the state after the step that generated the
 * sample (h, (., H)), its four nibbles' logits ((., 4, 16)) and that step (., int64); any pointer may be NULL. */
typedef struct {
    float *h, *logits;
    int64_t *step;
} pwr_fused_trace;

/* What one call reads and writes: uniforms (rows from t_first, (., 4): column j for nibble j) to draw from, or the
 * true audio (rows from t_first; teacher forcing) with nll (rows from t_first; per sample the sum over its four
 * nibbles of -log2 softmax(logits_j)[n_j], float64 from the float32 logits) or NULL; out (rows from t_first)
 * receives every sample generated (the true ones under teacher forcing), or NULL; trace may be NULL. */
typedef struct {
    const float *uniforms;
    const int16_t *audio;
    int16_t *out;
    double *nll;
    const pwr_fused_trace *trace;
} pwr_fused_io;

/* The number of steps of an utterance of T samples: ceil(T / 2) + 3. */
int64_t pwr_fused_n_steps(int64_t T);

/* Runs steps [s->step, n_end) of one utterance (docs/format.md §12), advancing *s.
 * g: conditioning of frames [g_first, g_first + g_rows), (g_rows, 3H); sample t interpolates frames t / hop and
 * t / hop + 1, the latter clamped to the window's last frame (the utterance's edge rule once the window reaches its
 * end). T: the utterance's length, or -1 while unknown (then every position >= 0 counts as real: half 0 generates
 * (n, 0) and half 1 (n - 3, 1) whenever that is >= 0).
 * exact: docs/format.md §3a's products and exp/tanh (the samples of pywavernn.reference.fused) or the fast approximations.
 * Preconditions (checked by pywavernn/engines/fused.py): net valid for table (matrix shapes as above, H a multiple
 * of 8, K a multiple of O1's block height, 16 of O2's); s->step <= n_end; with T >= 2 known, n_end <=
 * pwr_fused_n_steps(T) and g reaches frame T / hop ... the last; with T = -1, 2 (n_end - 1) < (g_first + g_rows - 1)
 * hop; every sample t the steps generate lies in the io buffers' rows (t >= t_first) and reads frames from
 * g_first on; uniforms in [0, 1); prev values in [0, 65535]; nthreads >= 1; table non-NULL.
 * Returns 0, or -1 if scratch memory could not be allocated (s unchanged). */
int pwr_fused_run(const pwr_fused_net *net, const pwr_kernel_table *table, int exact, int nthreads, const float *g,
                  int64_t g_first, int32_t g_rows, int64_t T, int64_t t_first, const pwr_fused_io *io,
                  pwr_fused_stream *s, int64_t n_end);

#endif
