/* subscale_sampler.h: the Subscale WaveRNN generation loop in C (docs/format.md §9): all B sub-tensors in
 * lockstep, one network step per schedule step, every matrix product taken over the active streams at once with
 * the B-right-hand-side kernels of pwr_kernels.h (gemm: X (B, N), Y (B, M)).
 *
 * Plain C, no Python.h; runs without the GIL and never calls back into Python. Weights (pwr_subscale_net)
 * are immutable and shareable between calls; all per-stream state lives in a run (pwr_subscale_run): one call of
 * pwr_generate_subscale generates a whole utterance, or a caller streams by advancing a run over schedule steps
 * as the conditioning arrives (pwr_subscale_advance), which gives the same samples.
 *
 * Threads: one OpenMP parallel region per call (a persistent team); the threads partition the B streams into
 * contiguous ranges and meet at one spin barrier per schedule step (pwr_barrier.h). Each stream's arithmetic is
 * the same whatever the thread count, so the samples do not depend on it; a team whose barriers keep sleeping
 * (other work holds its cores) hands the rest of the call to its first thread. Without OpenMP one thread.
 *
 * Letters: H hidden units, K output-head hidden units, B subscale factor (streams), F future horizon, C_x context
 * channels, D context layers, T samples, N = ceil(T / B) positions, hop samples per frame.
 */
#ifndef PWR_SUBSCALE_SAMPLER_H
#define PWR_SUBSCALE_SAMPLER_H

#include <stdint.h>

#include "pwr_kernels.h"

#define PWR_SUBSCALE_MAX_LAYERS 16
#define PWR_SUBSCALE_MAX_LINEAR 64 /* pywavernn.config.SUBSCALE_MAX_LINEAR */

typedef struct {
    int32_t H, K, hop;
    int32_t B, F, Cx, D;
    int32_t prev_time;            /* 1: x_t of (i, s), s >= 1, carries (i, s - 1) (subscale_previous "time") */
    int32_t context_lag;          /* 1: context input pair j of stream s holds sub-tensor s - 1 - j ("lag" order) */
    int32_t E;                    /* linear estimates per sample (subscale_linear), 0..PWR_SUBSCALE_MAX_LINEAR */
    /* The WaveRNN step (docs/format.md §3, §6): any shape/storage with a kernel table entry. */
    pwr_matrix R;                 /* (3H, H), rows [u | r | e] */
    pwr_matrix O1, O2, O3, O4;    /* (K, H/2), (256, K), (K, H/2), (256, K) */
    const float *w_in_t;          /* W_in transposed, (3, 3H): row 2 (c_t) zero in the coarse columns */
    const float *b_R;             /* (3H) */
    const float *b1, *b2, *b3, *b4;
    /* The context network (§9): fp32 matrices of any shape with a kernel (dense or block-CSR). */
    pwr_matrix embed;                                   /* (C_x, 2B) */
    pwr_matrix conv_prev[PWR_SUBSCALE_MAX_LAYERS];      /* W_l[:, :, 0] (C_x, C_x): taps a_{l-1}[k - 2^(l-1)] */
    pwr_matrix conv_cur[PWR_SUBSCALE_MAX_LAYERS];       /* W_l[:, :, 1] (C_x, C_x): taps a_{l-1}[k] */
    pwr_matrix proj;              /* (3H, C_x + E): subscale.proj.weight, then subscale.linear.proj's E columns */
    const float *embed_bias;      /* (B, C_x): one row per sub-tensor */
    const float *conv_bias;       /* (D, B, C_x) */
    const float *proj_bias;       /* (B, 3H) */
    /* The linear estimates (§9), when E > 0: weights [s, d, z, e] of sample (i - 1 + d, z), zero outside the mask
     * (z <= s at d = 0, z < s for d = 1..F + 1); their GRU input columns are the last E columns of proj. */
    const float *lin_w;           /* (B, F + 2, B, E) */
    /* The prior (subscale_prior "laplace", §9), when prior = 1 (needs E >= 1): each byte's logits add the floored
     * log-mass of Laplace(mu, b) over its bins, mu = 32768 est_0 + 32768, log b = prior_w[byte] . hid + prior_b[byte,
     * s] clipped (hid: the byte's output head hidden layer). */
    int32_t prior;
    const float *prior_w;         /* (2, K): coarse, fine */
    const float *prior_b;         /* (2, B) */
} pwr_subscale_net;

/* Optional per-sample records, indexed by true time t (NULL pointers: not recorded): the state after sample t
 * (T, H), its logits (T, 256) each, and the schedule step that generated it (T). */
typedef struct {
    float *h, *logits_c, *logits_f;
    int64_t *step;
} pwr_subscale_trace;

/* Generate T = n_frames * hop samples of one utterance: out[t] (int16) for every t, sample t drawing
 * uniforms[2t] (coarse) and uniforms[2t + 1] (fine); g (n_frames, 3H) is the frame-rate conditioning, upsampled
 * per docs/format.md §2. exact != 0: docs/format.md §3a's products, exp and tanh (the arithmetic of pywavernn.reference.subscale); 0: the fast
 * approximations. nthreads: threads of the call's team (values below 1 mean 1; at most B are used, and fewer
 * when OpenMP gives a smaller team or was not built). trace may be NULL.
 * Preconditions (checked by pywavernn/engines/subscale.py): every matrix valid for its kernel table entry with
 * the shapes above; H even; B a power of two, 2 <= B <= PWR_MAX_RHS; F >= 1; 0 <= D <= PWR_SUBSCALE_MAX_LAYERS;
 * C_x >= 1; T >= B; uniforms in [0, 1); table non-NULL; out has T entries and trace buffers room for T samples.
 * Returns 0, or -1 if scratch memory could not be allocated (nothing written). */
int pwr_generate_subscale(const pwr_subscale_net *net, const pwr_kernel_table *table, int exact, int nthreads,
                          const float *g, int32_t n_frames, const float *uniforms, int16_t *out,
                          const pwr_subscale_trace *trace);

/* Streaming. A run holds everything the loop carries from one schedule step to the next (every stream's state,
 * context chains and the last positions of the folded sequence, O(B (H + 2^D C_x) + B^2 F) memory, not O(T)).
 * pwr_subscale_run_new returns NULL when out of memory; nthreads as for pwr_generate_subscale. */
typedef struct pwr_subscale_run pwr_subscale_run;
pwr_subscale_run *pwr_subscale_run_new(const pwr_subscale_net *net, int nthreads);
void pwr_subscale_run_free(pwr_subscale_run *run);
/* The first schedule step not yet run (0 for a new run). */
int64_t pwr_subscale_run_next_step(const pwr_subscale_run *run);
/* The schedule steps of an utterance of T samples: ceil(T / B) + (B - 1)(F + 1). */
int64_t pwr_subscale_n_steps(const pwr_subscale_net *net, int64_t T);

/* Run schedule steps [next_step, n_end) (nothing when n_end <= next_step), as pwr_generate_subscale would.
 * Windows: g row 0 is frame g_first and frames [g_first, g_end) are present; uniforms row 0, out[0] and trace
 * row 0 are sample t_first. Sample t interpolates frames floor(t / hop) and floor(t / hop) + 1, the latter
 * clamped to g_end - 1.
 * T: the utterance's sample count once known (then g_end must be its frame count: the clamp is the utterance
 * end), or -1 while unknown; then the caller guarantees every step n < n_end has n B < (g_end - 1) hop (stream 0,
 * the leading one, samples t = n B at step n, so no sample of these steps reaches the clamp or the end).
 * Preconditions as pwr_generate_subscale's, and: every sample t generated by these steps (t = (n - s(F + 1)) B + s
 * for 0 <= n - s(F + 1), t < T) has g_first <= floor(t / hop), t_first <= t, and room in uniforms, out, trace;
 * the same net for every call on a run; calls on one run never overlap. */
void pwr_subscale_advance(pwr_subscale_run *run, const pwr_subscale_net *net, const pwr_kernel_table *table,
                          int exact, const float *g, int64_t g_first, int64_t g_end, int64_t T,
                          const float *uniforms, int16_t *out, int64_t t_first, const pwr_subscale_trace *trace,
                          int64_t n_end);

#endif
