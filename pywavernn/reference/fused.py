"""The NumPy reference Fused Subscale WaveRNN 2x: docs/format.md §12, written to be read.

What it is: the definition-by-code of the fused model (ModelConfig.subscale_fused): one GRU whose state is split
in two halves, one per sub-tensor (even and odd samples), each half in four parts, one per 4-bit nibble of its
sample; one step emits two 16-bit samples as eight nibble draws. Teacher-forced logits and NLL, and free-running
generation from supplied uniforms (T, 4) indexed by each sample's true time t and nibble. It reuses
pywavernn.reference.plain for the GRU gate equations, the matrices and the sampling rule, pywavernn.conditioning
for the conditioning, and pywavernn.fused for the index arithmetic.
What it is not: fast. One step at a time, part by part, exactly in the order the spec states.

    from pywavernn.reference import fused as rf
    samples = rf.generate_fused_ref(model, mel, uniforms)     # int16 (F * hop,); uniforms (F * hop, 4)
    bits = rf.nll_fused_ref(model, mel, audio_int16)          # bits per 16-bit sample

Tests: `python -m pytest tests/test_fused.py -q`.
Letters: H hidden units, P = H / 8 units per part, K head hidden units, T samples, N = ceil(T / 2) positions,
hop samples per frame.
"""

from __future__ import annotations

import numpy as np

from pywavernn import fused
from pywavernn.common import F32, check_audio
from pywavernn.conditioning import cond_at, conditioning_ref
from pywavernn.fold import check_length, n_positions
from pywavernn.modelfile import BlockSparseMatrix, Model
from pywavernn.reference.ops import exp_ref, matvec_ref
from pywavernn.reference.plain import gru_update_ref

N_NIBBLES, NIBBLE_CLASSES, LAG = fused.N_NIBBLES, fused.NIBBLE_CLASSES, fused.LAG


def _check_fused_model(model: Model) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"model: expected a pywavernn.modelfile.Model, found {type(model).__name__}")
    if model.model_config.kind != "fused":
        raise ValueError(f"model: this reference implements the Fused Subscale WaveRNN 2x (subscale_fused), found a "
                         f"{model.model_config.kind} model")
    model.validate()


def check_fused_uniforms(uniforms, n_samples: int) -> np.ndarray:
    """uniforms: float32 (T, 4) in [0, 1), one per nibble of each sample by true time; ValueError otherwise."""
    u = np.asarray(uniforms)
    if u.dtype != np.float32:
        raise ValueError(f"uniforms: expected float32, found {u.dtype}")
    if u.shape != (n_samples, N_NIBBLES):
        raise ValueError(f"uniforms: expected shape ({n_samples}, {N_NIBBLES}) (one uniform per nibble of each of "
                         f"the {n_samples} samples), found {u.shape}")
    if not np.all((u >= 0) & (u < 1)):
        raise ValueError("uniforms: expected values in [0, 1)")
    return u


# --- pieces of a step -----------------------------------------------------------------------------------------------

def rows_matvec_ref(w: np.ndarray | BlockSparseMatrix, r0: int, r1: int, x: np.ndarray,
                    bias: np.ndarray) -> np.ndarray:
    """(bias + w x)[r0:r1] in the order of matvec_ref, computed from rows r0..r1 alone (a head's rows of the stacked
    fused.O1 / fused.O2); for a block-sparse w the rows are whole block rows (the loader checks the block height
    divides them)."""
    if not isinstance(w, BlockSparseMatrix):
        return matvec_ref(w[r0:r1], x, bias[r0:r1])
    bh = w.block[0]
    lo, hi = int(w.row_ptr[r0 // bh]), int(w.row_ptr[r1 // bh])
    rows = BlockSparseMatrix(shape=(r1 - r0, w.shape[1]), block=w.block, row_ptr=w.row_ptr[r0 // bh:r1 // bh + 1] - lo,
                             col_idx=w.col_idx[lo:hi], values=w.values[lo:hi])
    return matvec_ref(rows, x, bias[r0:r1])


def head_logits_ref(model: Model, half: int, nibble: int, y: np.ndarray) -> np.ndarray:
    """The 16 logits of head p = 4 half + nibble from its part's state y (P,): O2_p relu(O1_p y + b1_p) + b2_p."""
    k, w = model.model_config.out_hidden, model.weights
    p = fused.head_index(half, nibble)
    hidden = np.maximum(rows_matvec_ref(w["fused.O1"], p * k, (p + 1) * k, y, w["fused.b1"]), F32(0))
    c = NIBBLE_CLASSES
    return rows_matvec_ref(w["fused.O2"], p * c, (p + 1) * c, hidden, w["fused.b2"])


def sample_nibble_ref(logits: np.ndarray, u: float) -> int:
    """§4's rule over 16 classes: p = exp(l - max l); cdf = float32 running sum; first k with cdf[k] > u cdf[15]."""
    p = exp_ref(logits - logits.max())
    cdf = np.cumsum(p, dtype=F32)
    above = np.flatnonzero(cdf > F32(u) * cdf[-1])
    return int(above[0]) if above.size else NIBBLE_CLASSES - 1


def step_input_ref(previous: np.ndarray) -> np.ndarray:
    """The GRU input of a step before any draw: (14,) float32 with the previous samples' nibbles (2, 4) scaled
    (columns 0..7) and the current nibbles' columns (8..13) still 0."""
    x = np.zeros(fused.INPUT_COLUMNS, dtype=F32)
    x[:fused.PREVIOUS_COLUMNS] = fused.NIBBLE_INPUT[np.asarray(previous).ravel()]
    return x


def part_input_projection_ref(w_in: np.ndarray, rows: np.ndarray, x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """gi of a part's rows: (x_0 w_0 + x_1 w_1 + ... + x_13 w_13) summed left to right, then + q. Columns a part may
    not see are zero in W_in (the mask) and still 0 in x when the part runs, so they add exact zeros."""
    gi = x[0] * w_in[rows, 0]
    for c in range(1, fused.INPUT_COLUMNS):
        gi = gi + x[c] * w_in[rows, c]
    return gi + q


def fused_step_ref(model: Model, h: np.ndarray, previous: np.ndarray, q: np.ndarray, active: tuple[bool, bool],
                   choose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of §12: h (H,) -> (h', nibbles (2, 4) int64, logits (2, 4, 16) float32).

    previous (2, 4): nibbles of the samples the input carries (fused.previous_positions; SILENCE where none);
    q (3H,): each half's rows of the conditioning at its own sample's time; active: which halves generate;
    choose(half, nibble, logits) -> the nibble (a draw from a uniform, or the true nibble under teacher forcing).
    Order: rh once; then for nibble j = 0..3, for half s = 0, 1: the part's gates, its head, its nibble. An idle
    half keeps its state; its nibbles and logits are left 0.
    """
    hidden = model.model_config.hidden_size
    w = model.weights
    rh = matvec_ref(w["gru.R"], h, w["gru.b_R"])
    x = step_input_ref(previous)
    h_new = h.copy()
    nibbles = np.zeros((2, N_NIBBLES), np.int64)
    logits = np.zeros((2, N_NIBBLES, NIBBLE_CLASSES), F32)
    w_in = w["gru.W_in"]
    p = fused.part_size(hidden)
    for j in range(N_NIBBLES):
        for s in range(2):
            if not active[s]:
                continue
            rows = fused.part_rows(hidden, s, j)
            gi = part_input_projection_ref(w_in, rows, x, q[rows])
            units = rows[:p]  # the part's state units (gate u's rows)
            h_new[units] = gru_update_ref(h[units], gi.reshape(3, p), rh[rows].reshape(3, p))
            logits[s, j] = head_logits_ref(model, s, j, h_new[units])
            nibbles[s, j] = choose(s, j, logits[s, j])
        for s in range(2):  # nibble j of both samples becomes an input once both parts ran it
            if active[s] and j < fused.CURRENT_COLUMNS:
                x[fused.PREVIOUS_COLUMNS + s * fused.CURRENT_COLUMNS + j] = fused.NIBBLE_INPUT[nibbles[s, j]]
    return h_new, nibbles, logits


def step_conditioning_ref(g: np.ndarray, hop: int, hidden: int, positions: tuple[int, int]) -> np.ndarray:
    """q (3H,) of a step: half s's rows (every gate) from cond(t) at its sample's time t = 2 i_s + s (§2's
    interpolation); an idle half's rows 0."""
    q = np.zeros(3 * hidden, dtype=F32)
    for s, i in enumerate(positions):
        if i < 0:
            continue
        c = cond_at(g, 2 * i + s, hop)
        for j in range(N_NIBBLES):
            rows = fused.part_rows(hidden, s, j)
            q[rows] = c[rows]
    return q


def _previous_nibbles(unsigned: np.ndarray, step: int, n_samples: int) -> np.ndarray:
    """(2, 4): the nibbles of the samples fused.previous_positions names (SILENCE where none); unsigned (N, 2)."""
    out = np.empty((2, N_NIBBLES), np.int64)
    for s, k in enumerate(fused.previous_positions(step, n_samples)):
        out[s] = fused.split_nibbles(unsigned[k, s] if k >= 0 else fused.SILENCE)
    return out


# --- generation -----------------------------------------------------------------------------------------------------

def generate_fused_ref(model: Model, mel: np.ndarray, uniforms: np.ndarray, trace: bool = False):
    """Free-running generation: log-mel (F, n_mels), uniforms (F * hop, 4) float32 -> int16 samples (F * hop,).

    Sample t = 2 i + s uses uniforms[t, j] for its nibble j. With trace=True returns (samples, trace): float32
    "h" (T, H) (the state after the step that generated sample t), "logits" (T, 4, 16), int64 "step" (T,).
    """
    _check_fused_model(model)
    return generate_fused_cond_ref(model, conditioning_ref(model, mel), uniforms, trace)


def generate_fused_cond_ref(model: Model, g: np.ndarray, uniforms: np.ndarray, trace: bool = False):
    """generate_fused_ref from the conditioning g (F, 3H) (pywavernn.conditioning); model: a validated fused model."""
    hop, hidden = model.feature_config.hop_length, model.model_config.hidden_size
    n_samples = check_length(g.shape[0] * hop, 2)
    uniforms = check_fused_uniforms(uniforms, n_samples)
    unsigned = np.full((n_positions(n_samples, 2), 2), -1, np.int64)  # -1: not generated yet
    h = np.zeros(hidden, dtype=F32)
    steps = {"h": np.empty((n_samples, hidden), F32), "logits": np.empty((n_samples, N_NIBBLES, NIBBLE_CLASSES), F32),
             "step": np.empty(n_samples, np.int64)}
    for step in range(fused.n_steps(n_samples)):
        positions = fused.step_positions(step, n_samples)
        previous = _previous_nibbles(unsigned, step, n_samples)
        if np.any(previous < 0):  # a schedule error: the input read a sample not generated yet
            raise RuntimeError(f"step {step} reads a sample before it was generated")
        times = [2 * i + s for s, i in enumerate(positions)]
        q = step_conditioning_ref(g, hop, hidden, positions)
        h, nibbles, logits = fused_step_ref(model, h, previous, q, (positions[0] >= 0, positions[1] >= 0),
                                            lambda s, j, lg: sample_nibble_ref(lg, uniforms[times[s], j]))
        for s, i in enumerate(positions):
            if i >= 0:
                unsigned[i, s] = fused.join_nibbles(nibbles[s])
                steps["h"][times[s]], steps["logits"][times[s]], steps["step"][times[s]] = h, logits[s], step
    samples = (unsigned.reshape(-1)[:n_samples] - fused.SILENCE).astype(np.int16)
    return (samples, steps) if trace else samples


# --- teacher forcing and likelihood ---------------------------------------------------------------------------------

def teacher_forced_logits_fused_ref(model: Model, mel: np.ndarray, audio_int16: np.ndarray) -> np.ndarray:
    """Teacher-forced logits (T, 4, 16) by true time t and nibble: the steps of generation with the true nibbles."""
    _check_fused_model(model)
    return teacher_forced_logits_fused_cond_ref(model, conditioning_ref(model, mel), audio_int16)


def teacher_forced_logits_fused_cond_ref(model: Model, g: np.ndarray, audio_int16: np.ndarray) -> np.ndarray:
    """teacher_forced_logits_fused_ref from the conditioning g (F, 3H); model: a validated fused model."""
    hop, hidden = model.feature_config.hop_length, model.model_config.hidden_size
    audio_int16 = check_audio(audio_int16, g.shape[0], hop)
    n_samples = check_length(audio_int16.shape[0], 2)
    unsigned = np.full(n_positions(n_samples, 2) * 2, fused.SILENCE, np.int64)
    unsigned[:n_samples] = audio_int16.astype(np.int64) + fused.SILENCE
    unsigned = unsigned.reshape(-1, 2)
    true = fused.split_nibbles(unsigned)  # (N, 2, 4)
    out = np.empty((n_samples, N_NIBBLES, NIBBLE_CLASSES), F32)
    h = np.zeros(hidden, dtype=F32)
    for step in range(fused.n_steps(n_samples)):
        positions = fused.step_positions(step, n_samples)
        q = step_conditioning_ref(g, hop, hidden, positions)
        h, _, logits = fused_step_ref(model, h, _previous_nibbles(unsigned, step, n_samples), q,
                                      (positions[0] >= 0, positions[1] >= 0),
                                      lambda s, j, lg: true[positions[s], s, j])
        for s, i in enumerate(positions):
            if i >= 0:
                out[2 * i + s] = logits[s]
    return out


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def nll_fused_ref(model: Model, mel: np.ndarray, audio_int16: np.ndarray) -> float:
    """Teacher-forced negative log-likelihood in bits per 16-bit sample (the four nibbles' sum, mean over T)."""
    _check_fused_model(model)
    return nll_fused_cond_ref(model, conditioning_ref(model, mel), audio_int16)


def nll_fused_cond_ref(model: Model, g: np.ndarray, audio_int16: np.ndarray) -> float:
    """nll_fused_ref from the conditioning g (F, 3H); model: a validated fused model."""
    logits = teacher_forced_logits_fused_cond_ref(model, g, audio_int16)
    true = fused.split_nibbles(np.asarray(audio_int16).astype(np.int64) + fused.SILENCE)  # (T, 4)
    logp = np.take_along_axis(log_softmax_rows(logits.astype(np.float64)), true[..., None], axis=-1)
    return float(-logp.sum() / audio_int16.shape[0] / np.log(2.0))
