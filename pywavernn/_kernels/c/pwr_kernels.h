/* pwr_kernels.h: pywavernn's CPU kernels (plain C, no Python.h): dense and block-sparse (block-CSR)
 * matrix x vector and matrix x B vectors, the fused GRU gate update, fast nonlinearities and softmax sampling.
 *
 * Not thread-aware: every kernel takes a row range and touches only those output rows, so a caller may split
 * rows over threads; no reduction is ever split, so results do not depend on how rows are split.
 * Not validating: pywavernn/kernels.py (and the model loader) check everything below before calling in.
 *
 * Letters: M x N matrix shape, BH x BW block shape, B number of right-hand sides (1..16), H hidden units.
 *
 * Each kernel exists once per ISA (suffix _generic, _avx2, _avx512, _neon), compiled from one source body per ISA
 * (see *_isa.c and setup.py). The generic copy is the definition of correct; pwr_kernel_table(isa) returns the
 * table of one ISA, which callers resolve once and then call through.
 *
 * Layouts
 *   matrix  pwr_matrix below: dense row-major (M, N), or block-CSR per docs/format.md §7 with values
 *           (nnzb, BH, BW) row-major; values stored as fp32 or IEEE fp16 (PWR_F16), arithmetic always fp32.
 *   gemv    y[M] = W x (+ bias), x[N].
 *   gemm    B right-hand sides, each N contiguous floats at x[b] (an array of B row pointers: rows of one
 *           (B, N) array, or rows gathered from anywhere, e.g. a GRU state read in place); Y is (B, M) row-major.
 *           A weight (or a 16-row weight vector, a 4x4 block) is loaded and converted once and multiplied by up
 *           to 6 right-hand sides held in registers (16 AVX2 registers cannot hold more accumulators: a 16x1
 *           block row with B = 16 needs 32), so weights are streamed ceil(B/6) times from L1, once from memory;
 *           the avx512 copy's 16x1 products hold a block in one register and take 8 right-hand sides a tile.
 *           In the generic copy, column b of Y is bit-identical to gemv on x[b].
 *
 * Row ranges are in *block rows* [r0, r1) (rows r0*BH .. r1*BH-1 of y); for dense matrices BH = 1.
 *
 * Common preconditions (checked by the Python wrapper / the model loader, never here):
 *   - 0 <= r0 <= r1 <= M / BH; M % BH == 0 and N % BW == 0;
 *   - block-CSR: row_ptr has M/BH + 1 entries, row_ptr[0] = 0, non-decreasing; every col_idx in [0, N/BW);
 *     values has row_ptr[M/BH] * BH * BW entries of the declared storage type;
 *   - x has N floats (gemm: each x[b] does), y has M floats (gemm: B * M), bias is NULL or has M floats;
 *   - x and y do not overlap; 1 <= B <= PWR_MAX_RHS for gemm;
 *   - all pointers aligned to their element type only (no stronger alignment is assumed).
 */
#ifndef PWR_KERNELS_H
#define PWR_KERNELS_H

#include <stdint.h>

#define PWR_MAX_RHS 16

typedef enum { PWR_F32 = 0, PWR_F16 = 1 } pwr_storage;

/* Block shapes with kernels of their own; PWR_SHAPE_DENSE is a plain row-major matrix. */
typedef enum { PWR_SHAPE_DENSE = 0, PWR_SHAPE_16X1 = 1, PWR_SHAPE_4X4 = 2, PWR_SHAPE_1X1 = 3, PWR_N_SHAPES = 4 } pwr_shape;

typedef struct {
    int32_t m, n;             /* element shape */
    int32_t bh, bw;           /* block shape; 1 x N for dense */
    int32_t shape;            /* pwr_shape */
    int32_t storage;          /* pwr_storage */
    const int32_t *row_ptr;   /* block-CSR only (NULL for dense) */
    const int32_t *col_idx;   /* block-CSR only (NULL for dense) */
    const void *values;       /* float or uint16_t (fp16 bits) */
} pwr_matrix;

/* y[r0*BH : r1*BH] = W[rows] x (+ bias[rows] when bias != NULL). */
typedef void (*pwr_gemv_fn)(const pwr_matrix *w, const float *x, const float *bias, float *y, int32_t r0, int32_t r1);
/* Y[b, r0*BH : r1*BH] = W[rows] X[b] (+ bias[rows]) for b < nrhs; X (nrhs, N), Y (nrhs, M) row-major. */
typedef void (*pwr_gemm_fn)(const pwr_matrix *w, const float *const *x, int32_t nrhs, const float *bias, float *y,
                            int32_t r0, int32_t r1);
/* Fused GRU gate update for hidden units j in [j0, j1) (docs/format.md §3):
 *   u = sigmoid(gi[j] + rh[j]);  r = sigmoid(gi[H+j] + rh[H+j]);  e = tanh(gi[2H+j] + r * rh[2H+j]);
 *   h[j] = u * h[j] + (1 - u) * e.
 * rh = R h + b_R and gi = W_in x + cond, both (3H); h (H) is updated in place (rh was computed from the old h).
 * exact != 0: the sigmoid and tanh of docs/format.md §3a (fastmath.h: the bits of pywavernn/reference/ops.py);
 * exact == 0: the fast approximations (errors stated in fastmath.h).
 * Preconditions: 0 <= j0 <= j1 <= H; rh, gi have 3H floats; h has H floats; no overlap. */
typedef void (*pwr_gru_gates_fn)(const float *rh, const float *gi, float *h, int32_t H, int32_t j0, int32_t j1,
                                 int exact);
/* gi[r] = W_in[r, 0:n_in] . x[0:n_in] + cond[r] for rows r = g*H + j, g = 0,1,2 and j in [j0, j1), where
 * cond = g0 + a * (g1 - g0) (docs/format.md §2; float32), summed as ((w0 x0 + w1 x1) + w2 x2) + cond, or with
 * n_in = 4 (the linear prediction's column, §11) (((w0 x0 + w1 x1) + w2 x2) + w3 x3) + cond, each product and sum
 * rounded to float32 (no contraction). W_in is (3H, n_in) row-major, n_in 3 or 4; g0, g1, gi have 3H floats. */
typedef void (*pwr_gru_input_fn)(const float *w_in, int32_t n_in, const float *x, const float *g0, const float *g1,
                                 float a, float *gi, int32_t H, int32_t j0, int32_t j1);
/* Subscale (docs/format.md §9), one stream's gate input from W_in transposed (3, 3H) row-major, the frame-rate
 * conditioning rows g0, g1 (frames j, j + 1 of the sample's true time, weight a), pq = proj a_D and bias =
 * proj.bias[s]: for g = 0,1,2 and j in [j0, j1), r = g*H + j,
 *   q = (g0[r] + a * (g1[r] - g0[r])) + (pq[r] + bias[r]);
 *   v = x3[0] * w_in_t[r] + x3[1] * w_in_t[3H + r];  if with_x2: v = v + x3[2] * w_in_t[6H + r];  gi[r] = v + q
 * in exactly that float32 order (no contraction; the coarse rows skip the c_t term, as the spec does), so every ISA
 * gives the same bits. g0, g1, pq, bias, gi have 3H floats. */
typedef void (*pwr_gru_input_t_fn)(const float *w_in_t, const float *x3, int with_x2, const float *g0, const float *g1,
                                   float a, const float *pq, const float *bias, float *gi, int32_t H, int32_t j0,
                                   int32_t j1);
/* Fused subscale (docs/format.md §12), a part's gate input from W_in transposed (n_in, 3H) row-major and the
 * conditioning rows g0, g1 (frames j, j + 1 of the sample's time, weight a): for g = 0,1,2 and j in [j0, j1),
 * r = g*H + j,
 *   v = x[0] * w_t[r];  v = v + x[c] * w_t[c 3H + r] for c = 1, ..., n_in - 1;  gi[r] = v + (g0[r] + a (g1[r] - g0[r]))
 * in exactly that float32 order (no contraction), so every ISA gives the same bits. n_in >= 1; x has n_in floats;
 * g0, g1, gi have 3H floats. */
typedef void (*pwr_gru_input_cols_fn)(const float *w_t, int32_t n_in, const float *x, const float *g0,
                                      const float *g1, float a, float *gi, int32_t H, int32_t j0, int32_t j1);
/* y[i] = f(x[i]) for i < n (fast approximations; x and y may be the same array). */
typedef void (*pwr_map_fn)(const float *x, float *y, int32_t n);
/* The conditioning network's frame-independent product (docs/format.md §2): y (M, Fr) row-major,
 *   y[m, f] = sum over c = 0, 1, ..., C - 1 of w[m, c] * z[c, f]
 * accumulated from +0 in that order, each term a rounded float32 multiply then a rounded add (no contraction), so
 * every ISA gives the bits of pywavernn.conditioning.frame_independent_matmul and frame f's value does not depend on
 * the other frames. w (M, C) row-major; row c of z starts at z + c * ldz (ldz >= Fr); y does not overlap w or z. */
typedef void (*pwr_frame_matmul_fn)(const float *w, const float *z, int64_t ldz, float *y, int32_t M, int32_t C,
                                    int32_t Fr);
/* Softmax sampling per docs/format.md §4 from 256 logits and a uniform u in [0, 1): returns k in [0, 255].
 * exact != 0: p = exp(l - max l) with the exp of docs/format.md §3a; exact == 0: the fast exp (fastmath.h).
 * scratch has 256 floats (the cdf). */
typedef int (*pwr_sample_fn)(const float *logits, float u, float *scratch, int exact);
/* The same draw for each of n rows of logits (n, 256) row-major: k[r] = sample(logits + 256 r, u[r * u_stride])
 * for r < n, the class pwr_sample_fn returns for that row (bit-identical arithmetic; the AVX2 copy runs 8 rows in
 * parallel lanes). scratch has 8 * 256 floats. */
typedef void (*pwr_sample_rows_fn)(const float *logits, int32_t n, const float *u, int32_t u_stride, int32_t *k,
                                   float *scratch, int exact);

/* The Laplace prior (docs/format.md §9 subscale_prior, §11 prior "laplace"): logits[k] += max(-16, log of the mass
 * Laplace(mu, b) gives [lo0 + k width, lo0 + (k + 1) width)) for k < 256, log b = w . hid + bias (K terms) clipped to
 * [-3, 12]; the float32 formulas of pywavernn.reference.prior.prior_term_ref (libm expf, logf, expm1f in every
 * mode). */
typedef void (*pwr_prior_fn)(float *logits, float lo0, float width, float mu, const float *w, float bias,
                             const float *hid, int32_t K);

typedef struct {
    const char *isa;
    pwr_gemv_fn gemv[PWR_N_SHAPES][2];  /* [shape][storage] */
    pwr_gemm_fn gemm[PWR_N_SHAPES][2];
    /* The products of exact mode, in the one order of docs/format.md §3a: each row from its bias (or +0), then its
     * terms in increasing column order over the kept columns, a rounded multiply then a rounded add per term (the
     * generic copy's gemv above; gemm: column b is that gemv on x[b]). In the generic copy these are gemv and gemm
     * themselves; the AVX2 copies run them across rows in vector lanes, with the same operations per row. */
    pwr_gemv_fn gemv_ordered[PWR_N_SHAPES][2];
    pwr_gemm_fn gemm_ordered[PWR_N_SHAPES][2];
    pwr_gru_gates_fn gru_gates;
    pwr_gru_input_fn gru_input;
    pwr_gru_input_t_fn gru_input_t;
    pwr_gru_input_cols_fn gru_input_cols;
    pwr_map_fn fast_sigmoid, fast_tanh, fast_exp;
    pwr_sample_fn sample_softmax;
    pwr_sample_rows_fn sample_softmax_rows;
    pwr_frame_matmul_fn frame_matmul;
    pwr_prior_fn laplace_prior;
} pwr_kernel_table;

/* The kernel table of `isa` (a pwr_isa_id), or NULL when that ISA was not built. Does not check CPU support:
 * pywavernn/_native.py only ever passes an ISA that is built and supported. */
const pwr_kernel_table *pwr_kernel_table_for(int isa);

/* The table a loop runs through in the given mode: `table` itself when exact == 0; when exact != 0, a copy in *buf
 * with gemv and gemm replaced by gemv_ordered and gemm_ordered, so a loop written once calls the products of the
 * mode it runs in. Returns table or buf. */
const pwr_kernel_table *pwr_table_for_mode(const pwr_kernel_table *table, int exact, pwr_kernel_table *buf);

/* Shape id of a block shape (PWR_SHAPE_*), or -1 when no kernel exists for it. Dense is bh = 1, bw = n. */
int pwr_shape_of(int32_t bh, int32_t bw, int is_dense);

/* Per-ISA tables, defined in the ISA sources. */
#define PWR_DECLARE_TABLE(isa) extern const pwr_kernel_table pwr_kernels_##isa;
PWR_DECLARE_TABLE(generic)
PWR_DECLARE_TABLE(avx2)
PWR_DECLARE_TABLE(avx512)
PWR_DECLARE_TABLE(neon)

#endif
