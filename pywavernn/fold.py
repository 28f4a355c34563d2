"""Subscale WaveRNN bookkeeping (paper §4, docs/format.md §9): folding, the step schedule, the dependency mask.

What it is: the index arithmetic every subscale implementation shares. `fold` / `unfold` turn a sequence of T
samples into B sub-tensors of N = ceil(T / B) positions and back; `step_of` / `position_at` / `schedule` say which
sub-tensor is at which position at each generation step; `may_depend` / `dependency_mask` / `context_input_mask`
say which samples a sample may see, `previous_sample` which one its GRU input carries, `linear_estimate_mask`
which ones its linear estimates weigh; `context_macs_per_sample` /
`gru_macs_per_sample` size the two networks.
What it is not: any of the maths (pywavernn/reference/subscale.py, training/subscale_model.py). Plain Python + NumPy.

Definitions (docs/format.md §9). Sample t = i * B + s is position i of sub-tensor s (0 <= s < B, 0 <= i < N); the
last position is padded when B does not divide T, and padded samples (t >= T) are never generated or seen.
Sample (i, s) may depend on (k, z) with z < s and k <= i + F (the earlier sub-tensors up to the future horizon F),
and on its own past (k, s), k < i. Sub-tensor s runs s * (F + 1) steps behind sub-tensor 0: at step n it is at
position i = n - s * (F + 1). So (k, z) is generated at step k + z * (F + 1) < i + F + 1 + z * (F + 1)
<= i + s * (F + 1) = n for every allowed z <= s - 1, k <= i + F: everything a sample may see exists before its step.
After a warm-up of (B - 1)(F + 1) steps all B sub-tensors advance together, as a batch of B.

    from pywavernn import fold
    folded = fold.fold(audio, 16)                  # (N, 16); folded[i, s] = audio[i * 16 + s]
    audio == fold.unfold(folded, len(audio))       # True
    fold.schedule(len(audio), 16, 2)               # (N + 15 * 3, 16) positions, -1 where idle

Tests: `python -m pytest tests/test_subscale.py -q`.
Letters: B subscale factor (sub-tensors), F future horizon, T samples, N = ceil(T / B) positions, H hidden units,
K output-head hidden units, C_x context channels, D context layers.
"""

from __future__ import annotations

import numbers

import numpy as np

from pywavernn.config import SUBSCALE_CONTEXT_ORDER, SUBSCALE_PREVIOUS

# --- checks -------------------------------------------------------------------------------------------------------

def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_factor(factor) -> int:
    """B: a power of two >= 1 (1 is the plain WaveRNN). ValueError otherwise."""
    if not _is_int(factor) or factor < 1 or factor & (factor - 1):
        raise ValueError(f"subscale_factor: expected a power of two (1, 2, 4, 8, 16, ...), found {factor!r}")
    return int(factor)


def check_horizon(horizon) -> int:
    """F: an integer >= 1 (a subscale sub-tensor sees the earlier ones at least one position ahead)."""
    if not _is_int(horizon) or horizon < 1:
        raise ValueError(f"subscale_horizon: expected an integer >= 1 (the future horizon F), found {horizon!r}")
    return int(horizon)


def check_length(n_samples, factor: int) -> int:
    """T: at least one fold (T >= B), so every sub-tensor has at least one sample."""
    if not _is_int(n_samples) or n_samples < factor:
        raise ValueError(f"n_samples: expected at least one fold of B = {factor} samples (subscale factor larger "
                         f"than the sequence), found {n_samples!r}")
    return int(n_samples)


def check_model_config(model_config) -> tuple[int, int]:
    """(B, F) of a subscale model config (B >= 2 a power of two, F >= 1); ValueError naming the field otherwise."""
    factor = check_factor(model_config.subscale_factor)
    if factor < 2:
        raise ValueError(f"subscale_factor: expected a subscale model (B >= 2), found {factor} (the plain WaveRNN; "
                         "use pywavernn.reference.plain)")
    return factor, check_horizon(model_config.subscale_horizon)


def n_positions(n_samples: int, factor: int) -> int:
    """N = ceil(T / B): positions per sub-tensor."""
    return -(-n_samples // factor)


# --- folding ------------------------------------------------------------------------------------------------------

def fold(x, factor: int, pad_value=0) -> np.ndarray:
    """(T, ...) -> (N, B, ...) with out[i, s] = x[i * B + s]; the last position is padded with `pad_value`.

    ValueError if B is not a power of two or the sequence is shorter than one fold (T < B).
    """
    x = np.asarray(x)
    factor = check_factor(factor)
    if x.ndim < 1:
        raise ValueError(f"fold: expected a sequence (T, ...), found a scalar of shape {x.shape}")
    n_samples = check_length(x.shape[0], factor)
    n = n_positions(n_samples, factor)
    padded = np.full((n * factor,) + x.shape[1:], pad_value, dtype=x.dtype)
    padded[:n_samples] = x
    return padded.reshape((n, factor) + x.shape[1:])


def unfold(folded, n_samples: int) -> np.ndarray:
    """The inverse of fold: (N, B, ...) -> (T, ...), dropping the padding. N must equal ceil(T / B)."""
    folded = np.asarray(folded)
    if folded.ndim < 2:
        raise ValueError(f"unfold: expected a folded array (N, B, ...), found shape {folded.shape}")
    factor = check_factor(folded.shape[1])
    n_samples = check_length(n_samples, factor)
    if folded.shape[0] != n_positions(n_samples, factor):
        raise ValueError(f"unfold: {n_samples} samples fold into {n_positions(n_samples, factor)} positions of "
                         f"B = {factor}, found {folded.shape[0]} positions")
    return folded.reshape((-1,) + folded.shape[2:])[:n_samples]


def sample_time(i, s, factor: int):
    """t = i * B + s: the true time of position i of sub-tensor s (works on arrays)."""
    return i * factor + s


# --- the schedule -------------------------------------------------------------------------------------------------

def step_of(i, s, horizon: int):
    """The step at which position i of sub-tensor s is generated: n = i + s * (F + 1) (works on arrays)."""
    return i + s * (horizon + 1)


def position_at(n, s, horizon: int):
    """The position sub-tensor s is at on step n: i = n - s * (F + 1); valid where 0 <= i < N and t < T."""
    return n - s * (horizon + 1)


def warmup_steps(factor: int, horizon: int) -> int:
    """(B - 1)(F + 1): steps before the last sub-tensor starts and all B advance together."""
    return (factor - 1) * (horizon + 1)


def n_steps(n_samples: int, factor: int, horizon: int) -> int:
    """Steps to generate T samples: N + (B - 1)(F + 1) (the last sub-tensor starts after the warm-up)."""
    return n_positions(n_samples, factor) + warmup_steps(factor, horizon)


def schedule(n_samples: int, factor: int, horizon: int) -> np.ndarray:
    """int64 (n_steps, B): the position sub-tensor s generates on step n, or -1 where it is idle (not started, done,
    or at a padded sample t >= T). Every real sample appears exactly once."""
    factor, horizon = check_factor(factor), check_horizon(horizon)
    n_samples = check_length(n_samples, factor)
    steps = np.arange(n_steps(n_samples, factor, horizon))[:, None]
    subs = np.arange(factor)[None, :]
    i = position_at(steps, subs, horizon)
    real = (i >= 0) & (sample_time(i, subs, factor) < n_samples)
    return np.where(real, i, -1)


# --- the dependency mask ------------------------------------------------------------------------------------------

def may_depend(i, s, k, z, horizon: int):
    """Whether sample (i, s) may depend on sample (k, z): z < s and k <= i + F, or z == s and k < i (its own past).

    Only the fine byte of (i, s) also sees (i, s)'s own coarse byte (docs/format.md §3); that is not listed here.
    """
    return ((z < s) & (k <= i + horizon)) | ((z == s) & (k < i))


def dependency_mask(i: int, s: int, n_samples: int, factor: int, horizon: int) -> np.ndarray:
    """bool (N, B): entry [k, z] is True where sample (i, s) may depend on the real sample (k, z) (t < T)."""
    n = n_positions(n_samples, factor)
    k, z = np.arange(n)[:, None], np.arange(factor)[None, :]
    return may_depend(i, s, k, z, horizon) & (sample_time(k, z, factor) < n_samples)


def previous_sample(i, s, factor: int, previous: str = "sub_tensor"):
    """(k, z): the earlier sample whose bytes the GRU input x_t of sample (i, s) carries (docs/format.md §9), or
    (-1, s) before sub-tensor s's first sample (the constants c = 128, f = 0 then). previous is the model config's
    `subscale_previous`: "sub_tensor", its own past (i - 1, s); "time", the sample just before it in true time,
    (i, s - 1), for s >= 1 (a dependency z < s, k <= i + F that the schedule makes F + 1 steps old), and (i - 1, 0)
    for s = 0, whose true-time predecessor (i - 1, B - 1) comes later. Works on arrays."""
    if previous not in SUBSCALE_PREVIOUS:
        raise ValueError(f"previous: expected 'sub_tensor' or 'time', found {previous!r}")
    i, s = np.asarray(i), np.asarray(s)
    if previous == "sub_tensor":
        return i - 1, s
    return np.where(s > 0, i, i - 1), np.where(s > 0, s - 1, s)


def context_input_mask(s: int, factor: int) -> np.ndarray:
    """bool (2B,): which inputs of a context-network position sub-tensor s sees: [c(z), f(z)] pairs for z < s."""
    return np.repeat(np.arange(factor) < s, 2)


def context_input_order(s: int, factor: int, order: str = "sub_tensor") -> np.ndarray:
    """int (2B,): entry e of sub-tensor s's context input row holds entry [e] of the row in sub-tensor order
    [c(0), f(0), c(1), f(1), ...] (docs/format.md §9). order is the model config's `subscale_context_order`:
    "sub_tensor", the identity; "lag", pair j < s holds sub-tensor s - 1 - j (true time t - 1 - j at the same
    position), so an embedding column weighs the same lag for every s; pairs j >= s (unseen, zero) stay in place."""
    if order not in SUBSCALE_CONTEXT_ORDER:
        raise ValueError(f"order: expected 'sub_tensor' or 'lag', found {order!r}")
    z = np.arange(factor)
    if order == "lag":
        z = np.where(z < s, s - 1 - z, z)
    return np.stack([2 * z, 2 * z + 1], axis=1).reshape(-1)


def linear_estimate_mask(factor: int, horizon: int) -> np.ndarray:
    """bool (B, F + 2, B): [s, d, z] is True where the linear estimates of a sample (i, s) (ModelConfig.
    subscale_linear, docs/format.md §9) weigh sample (i - 1 + d, z): z <= s at position i - 1 (d = 0), z < s at
    positions i .. i + F (d = 1 .. F + 1). Every such sample is one that may_depend allows and that the schedule
    generates at an earlier step."""
    s, z = np.arange(factor)[:, None, None], np.arange(factor)[None, None, :]
    d = np.arange(horizon + 2)[None, :, None]
    return np.where(d == 0, z <= s, z < s)


def linear_estimate_taps(s: int, factor: int, horizon: int) -> np.ndarray:
    """int: the true-time offsets (sample - t) of the samples the linear estimates of sub-tensor s weigh, in the
    order of linear_estimate_mask's entries [s, d, z] that are True."""
    d, z = np.nonzero(linear_estimate_mask(factor, horizon)[s])
    return (d - 1) * factor + z - s


# --- cost -------------------------------------------------------------------------------------------------------------

def context_receptive_field(model_config) -> int:
    """Positions the context network sees, ending at i + F: 2 ** D (D kernel-2 layers with dilations 1, 2, 4, ...)."""
    return 2 ** model_config.subscale_layers


def context_macs_per_sample(model_config, layer_density: float = 1.0, proj_density: float = 1.0) -> dict[str, int]:
    """Multiply-accumulates per generated sample of the context network, computed incrementally (each stream keeps
    its last 2 ** l activations of layer l, so one new position per step): embedding, dilated layers, projection,
    the layers and the projection at the given fractions of kept weights (block-pruned ones cost nothing)."""
    b, cx, h = model_config.subscale_factor, model_config.subscale_channels, model_config.hidden_size
    parts = {"embed": 2 * b * cx, "layers": int(round(model_config.subscale_layers * 2 * cx * cx * layer_density)),
             "proj": int(round(3 * h * cx * proj_density))}
    e = getattr(model_config, "subscale_linear", 0)
    if e:  # the linear estimates: their taps (mean over s) and their E GRU input columns
        taps = linear_estimate_mask(b, model_config.subscale_horizon).sum() / b
        parts["linear"] = int(round(e * taps + 3 * h * e))
    parts["total"] = sum(parts.values())
    return parts


def gru_macs_per_sample(model_config, density: float = 1.0) -> dict[str, int]:
    """Multiply-accumulates per sample of the WaveRNN step (R at the given density, W_in, the two output heads)."""
    h, k = model_config.hidden_size, model_config.out_hidden
    parts = {"R": int(round(3 * h * h * density)), "W_in": 3 * h * 3,
             "heads": int(round(2 * (k * (h // 2) + 256 * k) * density))}
    parts["total"] = sum(parts.values())
    return parts
