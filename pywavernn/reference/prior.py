"""The Laplace prior on a byte's logits, in NumPy: docs/format.md §9 ("Prior") and §11, written to be read.

What it is: the one definition of the prior's arithmetic that both models share: the subscale model centres it on
its first linear estimate (pywavernn/reference/subscale.py, `subscale_prior`), the plain model on its linear
prediction from the past (pywavernn/reference/plain.py, `prior`). Each byte's logits add, per bin, the log of the
mass a Laplace distribution with centre mu and scale b gives the bin, floored at PRIOR_FLOOR:

    mu      = 32768 est + 32768                      (unsigned 16-bit units; est in the 16-bit values' scale)
    log b   = clip(weight . hidden + bias, -3, 12)   (hidden: the byte's output head's hidden layer, (K,))
    bins    coarse (byte 0): c covers [256 c, 256 c + 256); fine (byte 1): f covers [256 c_t + f, 256 c_t + f + 1)

What it is not: where est, weight and bias come from (the models' modules), nor fast (pywavernn/_kernels/c/gru_isa.c,
`laplace_prior`, is the C copy; training/prior.py the differentiable PyTorch one). Float32 throughout, NumPy only.

Tests: `python -m pytest tests/test_subscale.py -q -k prior` (prior_term_ref against the Laplace CDF in float64),
and the models' tests (tests/test_linear_prediction.py, tests/test_subscale_engine.py).
Letters: K output-head hidden units.
"""

from __future__ import annotations

import numpy as np

from pywavernn.common import F32, N_CLASSES

PRIOR_FLOOR = F32(-16.0)  # the prior's term never goes below this (a bounded cost for a wrong estimate)
PRIOR_LOG_SCALE_RANGE = (F32(-3.0), F32(12.0))  # log b is clipped to this (b from 0.05 to 1.6e5 16-bit steps)
COARSE_BIN_LO = np.arange(N_CLASSES, dtype=F32) * F32(256)  # coarse byte c covers [256 c, 256 c + 256)


def prior_location_ref(est: np.float32) -> np.float32:
    """The prior's centre in unsigned 16-bit units (0 .. 65536) from an estimate in 16-bit values / 32768."""
    return F32(est) * F32(32768) + F32(32768)


def prior_log_scale_ref(weight: np.ndarray, hidden: np.ndarray, bias: np.float32) -> np.float32:
    """log b = weight . hidden + bias, clipped to PRIOR_LOG_SCALE_RANGE; weight and hidden (K,) float32."""
    z = F32(weight @ hidden) + F32(bias)
    return F32(np.clip(z, *PRIOR_LOG_SCALE_RANGE))


def prior_bins_ref(byte: int, c_t: int | None) -> tuple[np.ndarray, int]:
    """(bin starts (256,) float32, bin width) of byte 0 (coarse) or byte 1 (fine, given the coarse byte c_t)."""
    if byte == 0:
        return COARSE_BIN_LO, 256
    return F32(256 * int(c_t)) + np.arange(N_CLASSES, dtype=F32), 1


def prior_term_ref(lo: np.ndarray, width: float, mu: np.float32, log_b: np.float32) -> np.ndarray:
    """max(PRIOR_FLOOR, log of the mass a Laplace(mu, b = exp(log b)) distribution gives each bin [lo, lo + width)),
    float32, in the order of operations the engines use. A bin wholly on one side of mu at distance d (to its
    nearer edge) has log mass side - d / b with side = log((1 - exp(-width / b)) / 2); the bin holding mu has
    log(1 - (exp(-(mu - lo) / b) + exp(-(hi - mu) / b)) / 2), written with expm1 so a wide b loses nothing."""
    lo = np.asarray(lo, dtype=F32)
    width, mu = F32(width), F32(mu)
    inv_b = F32(np.exp(-F32(log_b)))
    hi = lo + width
    d = np.maximum(lo - mu, mu - hi)  # > 0: the bin lies wholly on one side of mu
    side = F32(np.log(-np.expm1(-(width * inv_b)))) - F32(np.log(2.0))
    term = side - d * inv_b
    inside = np.flatnonzero(d <= 0)
    for k in inside:  # at most one bin holds mu (two when mu is on their shared edge: both get this formula)
        a, c = (lo[k] - mu) * inv_b, (hi[k] - mu) * inv_b
        term[k] = np.log(F32(-0.5) * (np.expm1(a) + np.expm1(-c)))
    return np.maximum(term, PRIOR_FLOOR).astype(F32)


def add_prior_ref(logits: np.ndarray, byte: int, hidden: np.ndarray, c_t: int | None, est: np.float32,
                  weight: np.ndarray, bias: np.float32) -> np.ndarray:
    """A byte's logits (256,) plus the prior's term: centred on est, log-scale from the byte's head hidden layer
    hidden (K,) with weight (K,) and bias; c_t the coarse byte (fine byte only)."""
    lo, width = prior_bins_ref(byte, c_t)
    return logits + prior_term_ref(lo, width, prior_location_ref(est), prior_log_scale_ref(weight, hidden, bias))
