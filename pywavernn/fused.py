"""Fused Subscale WaveRNN 2x bookkeeping (paper §4.4, docs/format.md §12): nibbles, the schedule, the masks.

What it is: the index arithmetic every implementation of the fused model shares. A 16-bit sample is four 4-bit
nibbles, most significant first (`split_nibbles` / `join_nibbles`); the sequence folds into B = 2 sub-tensors
(even and odd samples, `pywavernn.fold`); `step_positions` says which sample each half of the state generates
at each step, `previous_positions` which samples the step's GRU input carries; `part_rows` and `input_mask`
say which state rows belong to which (sample, nibble) part and which input columns each part may see;
`macs_per_step` sizes a step.
What it is not: any of the maths (pywavernn/reference/fused.py, training/fused_model.py). Plain Python + NumPy.

Definitions (docs/format.md §12). Sample t = 2 i + s is position i of sub-tensor s (fold with B = 2). Half s of the
state generates sub-tensor s; half 1 runs LAG = F + 1 = 3 steps behind half 0: at step n, half 0 generates (n, 0)
and half 1 generates (n - 3, 1). Everything generated at steps < n is in the past of step n: sample (i, 0) sees
(k, 0), k < i and (k, 1), k <= i - 4; sample (i, 1) sees (k, 1), k < i and (k, 0), k <= i + 2 = i + F. Within a
step, nibble j of a sample sees nibbles < j of that sample only.

    from pywavernn import fused
    fused.split_nibbles(np.array([0x1234]))        # [[1, 2, 3, 4]]
    fused.step_positions(n, 10)                    # (i0, i1): positions generated at step n, -1 where idle

Tests: `python -m pytest tests/test_fused.py -q`.
Letters: T samples, N = ceil(T / 2) positions, H hidden units, P = H / 8 units per part, K head hidden units.
"""

from __future__ import annotations

import numpy as np

from pywavernn.common import F32
from pywavernn.config import FUSED_FACTOR, FUSED_HORIZON, FUSED_PARTS
from pywavernn.fold import check_length, n_positions

N_NIBBLES = 4  # nibbles per 16-bit sample, most significant first
NIBBLE_CLASSES = 16  # classes of each nibble softmax
NIBBLE_BITS = 4
LAG = FUSED_HORIZON + 1  # half 1 runs this many steps behind half 0
SILENCE = 32768  # the unsigned 16-bit value of s = 0: what the GRU input carries where there is no sample
# gru.W_in columns: the two previous samples' nibbles [prev of half 0 (4), prev of half 1 (4)], then the current
# samples' first three nibbles [half 0 (3), half 1 (3)] (the last nibble is never an input).
PREVIOUS_COLUMNS = 2 * N_NIBBLES
CURRENT_COLUMNS = N_NIBBLES - 1
INPUT_COLUMNS = PREVIOUS_COLUMNS + FUSED_FACTOR * CURRENT_COLUMNS  # 14
NIBBLE_INPUT = np.arange(NIBBLE_CLASSES, dtype=F32) / F32(7.5) - F32(1)  # nibble v -> [-1, 1], looked up


def split_nibbles(unsigned) -> np.ndarray:
    """Unsigned 16-bit values u = s + 32768 (0..65535) -> (..., 4) int64 nibbles, most significant first."""
    u = np.asarray(unsigned, dtype=np.int64)
    shifts = NIBBLE_BITS * np.arange(N_NIBBLES - 1, -1, -1)
    return (u[..., None] >> shifts) & (NIBBLE_CLASSES - 1)


def join_nibbles(nibbles) -> np.ndarray:
    """The inverse of split_nibbles: (..., 4) nibbles -> unsigned 16-bit values (int64)."""
    n = np.asarray(nibbles, dtype=np.int64)
    shifts = NIBBLE_BITS * np.arange(N_NIBBLES - 1, -1, -1)
    return (n << shifts).sum(axis=-1)


SILENCE_NIBBLES = split_nibbles(SILENCE)  # (8, 0, 0, 0)


def n_steps(n_samples: int) -> int:
    """Steps of a generation: N + LAG (half 0 is idle in the last LAG steps, half 1 in the first LAG)."""
    return n_positions(check_length(n_samples, FUSED_FACTOR), FUSED_FACTOR) + LAG


def step_positions(step: int, n_samples: int) -> tuple[int, int]:
    """(i0, i1): the positions of sub-tensors 0 and 1 generated at `step`, -1 where that half is idle (before its
    start, after its end, or at the padded sample t = 2 i + 1 >= T when T is odd)."""
    n = n_positions(n_samples, FUSED_FACTOR)
    i0 = step if 0 <= step < n else -1
    i1 = step - LAG
    if not (0 <= i1 < n and 2 * i1 + 1 < n_samples):
        i1 = -1
    return i0, i1


def previous_positions(step: int, n_samples: int) -> tuple[int, int]:
    """(k0, k1): the samples whose nibbles the GRU input of `step` carries, the last ones generated: (step - 1, 0)
    and (step - 1 - LAG, 1); -1 where there is none (the input then carries SILENCE)."""
    n = n_positions(n_samples, FUSED_FACTOR)
    k0 = step - 1 if 0 <= step - 1 < n else -1
    k1 = step - 1 - LAG
    if not (0 <= k1 < n and 2 * k1 + 1 < n_samples):
        k1 = -1
    return k0, k1


def part_size(hidden_size: int) -> int:
    """P = H / 8: state units per (sample, nibble) part."""
    return hidden_size // FUSED_PARTS


def part_rows(hidden_size: int, half: int, nibble: int) -> np.ndarray:
    """Rows of gru.W_in / gru.R (3H) of part (half, nibble) in gate order u, r, e: g H + half H/2 + nibble P + [0, P).
    The state index of the part's units is the same without the g H term."""
    p = part_size(hidden_size)
    start = half * (hidden_size // 2) + nibble * p
    return (np.arange(3)[:, None] * hidden_size + start + np.arange(p)[None, :]).ravel()


def head_index(half: int, nibble: int) -> int:
    """The output head of part (half, nibble): 4 half + nibble (rows [head K, (head + 1) K) of fused.O1)."""
    return half * N_NIBBLES + nibble


def input_mask(hidden_size: int) -> np.ndarray:
    """(3H, 14) bool: True where gru.W_in may be nonzero. Every part sees the previous samples' 8 nibbles; part
    (s, j) sees current nibble m of its own half's sample (column 8 + 3 s + m) iff m < j, nothing of the other's."""
    mask = np.zeros((3 * hidden_size, INPUT_COLUMNS), dtype=bool)
    mask[:, :PREVIOUS_COLUMNS] = True
    for half in range(FUSED_FACTOR):
        for nibble in range(N_NIBBLES):
            rows = part_rows(hidden_size, half, nibble)
            for m in range(nibble):
                mask[rows, PREVIOUS_COLUMNS + half * CURRENT_COLUMNS + m] = True
    return mask


def macs_per_step(hidden_size: int, out_hidden: int, r_density: float = 1.0, head_density: float = 1.0) -> float:
    """Multiply-adds of one step (two samples): R (3H x H), the input columns, eight heads (K x P, 16 x K)."""
    h, k, p = hidden_size, out_hidden, part_size(hidden_size)
    return 3 * h * h * r_density + 3 * h * INPUT_COLUMNS + FUSED_PARTS * (k * p + NIBBLE_CLASSES * k) * head_density
