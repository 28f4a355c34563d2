/* sampler.h: the WaveRNN sampling loop in C (docs/format.md §1-5, with the linear prediction and prior of §11):
 * generation, teacher forcing (NLL, per-step traces) and batches of independent utterances; one stream optionally
 * multi-threaded.
 *
 * Plain C, no Python.h; the loop runs without the GIL and never calls back into Python. Weights (pwr_wavernn)
 * are immutable and shareable; the per-stream state (pwr_stream) is all a stream needs to continue, so
 * generating [0, T1) then [T1, T2) gives exactly the samples of one call for [0, T2).
 *
 * Threads: one OpenMP parallel region per call (a persistent team for the whole loop) with spin barriers between
 * the dependent phases of a step; every output row and hidden unit is computed by exactly one thread with the
 * same kernel, rows split by prefix sums of nonzero blocks, so samples do not depend on the thread count.
 * A waiter spins, then sleeps (futex); a team whose barriers keep sleeping (other work holds its cores) hands the
 * rest of the call to its first thread, which again changes no sample. Without OpenMP the loop runs on one thread.
 *
 * Batches (pwr_generate_batch) instead run independent utterances in parallel, one thread each.
 *
 * Letters: H hidden units, K output-head hidden units, F frames, hop samples per frame, T samples.
 */
#ifndef PWR_SAMPLER_H
#define PWR_SAMPLER_H

#include <stdint.h>

#include "pwr_kernels.h"

#define PWR_MAX_LINEAR_ORDER 64 /* pywavernn.config.MAX_LINEAR_ORDER */

typedef struct {
    int32_t H, K, hop;
    pwr_matrix R;            /* (3H, H), rows [u | r | e] */
    pwr_matrix O1, O2;       /* (K, H/2), (256, K): coarse head */
    pwr_matrix O3, O4;       /* (K, H/2), (256, K): fine head */
    const float *w_in;       /* (3H, 3), or (3H, 4) when P >= 1 (column 3: est); column 2 zero in the coarse rows */
    const float *b_R;        /* (3H) */
    const float *b1, *b2, *b3, *b4; /* (K), (256), (K), (256) */
    /* Linear prediction (docs/format.md §11): est(t) = sum over p = 1..P of lin_w[p - 1] v(t - p), in that order,
     * the 4th GRU input; P = 0: none. With prior = 1 (needs P >= 1) each byte's logits add the Laplace prior centred
     * on 32768 est + 32768, log b = prior_w[byte] . hid + prior_b[byte] (hid: the byte's head hidden layer). */
    int32_t P;               /* 0 .. PWR_MAX_LINEAR_ORDER */
    const float *lin_w;      /* (P) */
    /* Taps by frame (docs/format.md §13; needs P >= 1): 1 when each row of g is (3H + P), the frame's taps in its
     * last P columns; sample t (counted from g's first row) uses the taps of row min((t + hop / 2) / hop, F - 1)
     * in place of lin_w. 0: rows of 3H, lin_w for every sample. */
    int32_t lpc;
    int32_t prior;
    const float *prior_w;    /* (2, K): coarse, fine */
    const float *prior_b;    /* (2) */
} pwr_wavernn;

typedef struct {
    float *h;                /* (H) hidden state, updated in place */
    int32_t prev_c, prev_f;  /* previous sample's bytes (128, 0 before the first sample) */
    int64_t t;               /* index of the next sample (selects the conditioning frame) */
    float *past;             /* (P) v(t - 1), v(t - 2), ..., v(t - P), v = s / 32768 (0 before the first sample),
                              * updated in place; unread when P = 0 */
} pwr_stream;

/* Steps [lo, hi) of one call (0 = the call's first sample) are recorded into caller buffers: the state after the
 * step (h, (hi - lo, H)) and the step's logits ((hi - lo, 256) each); any of the three pointers may be NULL. */
typedef struct {
    int64_t lo, hi;
    float *h, *logits_c, *logits_f;
} pwr_trace;

/* Generate n samples from s->t on: out[i] for sample s->t + i, using uniforms[2i], uniforms[2i+1] (coarse,
 * fine) and conditioning g (n_frames, 3H, or 3H + P with lpc) upsampled per docs/format.md §2; updates *s.
 * exact: the products, exp and tanh of docs/format.md §3a (the NumPy reference's bits, so its samples) or the fast approximations.
 * Preconditions (checked by pywavernn/engines/cpu.py): every matrix valid for its kernel table entry with the shapes
 * above, H even; s->t + n <= n_frames * hop; uniforms in [0, 1); 0 <= prev_c, prev_f <= 255; 0 <= P <=
 * PWR_MAX_LINEAR_ORDER, prior only with P >= 1, s->past with P finite floats; nthreads >= 1; table non-NULL.
 * Returns 0, or -1 if scratch memory could not be allocated (s unchanged). */
int pwr_generate(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads, const float *g,
                 int32_t n_frames, const float *uniforms, int64_t n, pwr_stream *s, int16_t *out);

/* pwr_generate, also recording the steps of *trace (NULL: none). Extra precondition: 0 <= lo <= hi <= n and
 * every non-NULL trace buffer has room for hi - lo steps. */
int pwr_generate_traced(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                        const float *g, int32_t n_frames, const float *uniforms, int64_t n, pwr_stream *s,
                        int16_t *out, const pwr_trace *trace);

/* Teacher forcing (docs/format.md §5): the steps of pwr_generate with the true bytes of audio[i] (sample
 * s->t + i) in place of the sampled ones. nll_bits (n doubles, or NULL) receives per sample
 * -log2 softmax(logits_c)[c_t] - log2 softmax(logits_f)[f_t], the log-softmax taken in float64 from the float32
 * logits; trace as in pwr_generate_traced (NULL: none). Updates *s as if audio had been generated.
 * Preconditions: those of pwr_generate_traced, with audio (n) in place of uniforms. Returns 0, or -1 (no memory). */
int pwr_teacher_forced(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                       const float *g, int32_t n_frames, const int16_t *audio, int64_t n, pwr_stream *s,
                       double *nll_bits, const pwr_trace *trace);

/* One utterance of a batch: the arguments of one pwr_generate call. */
typedef struct {
    const float *g;
    int32_t n_frames;
    const float *uniforms;
    int64_t n;
    pwr_stream *s;
    int16_t *out;
} pwr_utterance;

/* Independent utterances in parallel: an OpenMP `parallel for schedule(dynamic, 1)` over items, each generated
 * by one thread with its own scratch exactly as pwr_generate(..., nthreads = 1, ...) would (so as any thread
 * count would). Without OpenMP, or nthreads == 1, the items run one after another. Preconditions: those of
 * pwr_generate for every item; no two items share a pwr_stream, its h, or an out buffer. Returns 0, or -1 if
 * scratch memory could not be allocated for some item (that item's stream is unchanged; the others ran). */
int pwr_generate_batch(const pwr_wavernn *net, const pwr_kernel_table *table, int exact, int nthreads,
                       const pwr_utterance *items, int32_t n_items);

/* Tests only: every > 0 makes every threaded loop (this one and subscale_sampler.c) hand all its work to thread 0
 * for `every` steps every `every` steps, as it does on its own when its barriers keep sleeping (pwr_barrier.h), so
 * the hand-over and the team's return can be checked to leave every sample unchanged; 0 (the default) turns it
 * off. Process-wide: set it only while no loop runs. */
void pwr_set_test_handover(int every);

/* Solo stretches begun in this process so far, by every threaded loop (each time a team's barriers kept sleeping,
 * or the test setting above asked for one): how often the machine made a team fall back to one thread. */
long pwr_handover_count(void);

#endif
