"""The Laplace prior on a byte's logits, in NumPy: docs/format.md §9 ("Prior") and §11, written to be read.

What it is: the one definition of the prior's arithmetic that both models share: the subscale model centres it on
its first linear estimate (pywavernn/reference/subscale.py, `subscale_prior`), the plain model on its linear
prediction from the past (pywavernn/reference/plain.py, `prior`). Each byte's logits add, per bin, the log of the
mass a Laplace distribution with centre mu and scale b gives the bin, floored at PRIOR_FLOOR:

    mu      = 32768 est + 32768                      (unsigned 16-bit units; est in the 16-bit values' scale)
    log b   = clip(weight . hidden + bias, -3, 12)   (hidden: the byte's output head's hidden layer, (K,))
    bins    coarse (byte 0): c covers [256 c, 256 c + 256); fine (byte 1): f covers [256 c_t + f, 256 c_t + f + 1)

What it is not: where est, weight and bias come from (the models' modules), nor fast (pywavernn/_kernels/c/prior_isa.c,
`laplace_prior`, is the C copy; training/prior.py the differentiable PyTorch one). Float32 throughout, NumPy and
the C library's expf, logf and expm1f (through ctypes, so that the reference and exact mode agree bit for bit).

Tests: `python -m pytest tests/test_subscale.py -q -k prior` (prior_term_ref against the Laplace CDF in float64),
and the models' tests (tests/test_linear_prediction.py, tests/test_subscale_engine.py).
Letters: K output-head hidden units.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from pywavernn.common import F32, N_CLASSES

PRIOR_FLOOR = F32(-16.0)  # the prior's term never goes below this (a bounded cost for a wrong estimate)
PRIOR_LOG_SCALE_RANGE = (F32(-3.0), F32(12.0))  # log b is clipped to this (b from 0.05 to 1.6e5 16-bit steps)
COARSE_BIN_LO = np.arange(N_CLASSES, dtype=F32) * F32(256)  # coarse byte c covers [256 c, 256 c + 256)
PRIOR_DOT_LANES = 8  # the running sums of log b's dot product (prior_log_scale_ref)
LOG_2 = F32(0.693147182)  # float32(log 2)


def _c_math_library() -> ctypes.CDLL | None:
    """The C math library the compiled engine calls (libm; the UCRT on Windows), or None where none is found."""
    for name in (ctypes.util.find_library("m"), ctypes.util.find_library("c"), "ucrtbase", "msvcrt"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            for fn in ("expf", "logf", "expm1f"):
                getattr(lib, fn)
            return lib
        except (OSError, AttributeError):
            continue
    return None


def _c_function(lib: ctypes.CDLL | None, name: str, fallback):
    """float32 -> float32 `name` of the C math library; without one, NumPy's (which may differ in the last bit)."""
    if lib is None:
        return lambda x: F32(fallback(F32(x)))
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = [ctypes.c_float], ctypes.c_float
    return lambda x: F32(fn(F32(x)))


# The prior's three transcendental functions are the C library's float32 ones, called one value at a time: the
# compiled engine (pywavernn/_kernels/c/prior_isa.c) calls the same functions of the same library, so the two give
# the same bits. NumPy's own float32 exp, log and expm1 (SIMD code chosen by CPU) may differ from them in the last
# bit, which is enough for a trained model's exact-mode samples to leave the reference's after a few seconds.
_LIBM = _c_math_library()
expf = _c_function(_LIBM, "expf", np.exp)
logf = _c_function(_LIBM, "logf", np.log)
expm1f = _c_function(_LIBM, "expm1f", np.expm1)


def prior_location_ref(est: np.float32) -> np.float32:
    """The prior's centre in unsigned 16-bit units (0 .. 65536) from an estimate in 16-bit values / 32768."""
    return F32(est) * F32(32768) + F32(32768)


def prior_log_scale_ref(weight: np.ndarray, hidden: np.ndarray, bias: np.float32) -> np.float32:
    """log b = weight . hidden + bias, clipped to PRIOR_LOG_SCALE_RANGE; weight and hidden (K,) float32.

    The dot product in the engines' order (docs/format.md §9, "Prior"): term k goes to running sum k mod 8 (eight
    sums side by side, as vector lanes hold them), the eight are added in order from +0, then the bias."""
    terms = np.asarray(weight, dtype=F32) * np.asarray(hidden, dtype=F32)
    lanes = np.zeros(PRIOR_DOT_LANES, dtype=F32)
    for start in range(0, terms.shape[0], PRIOR_DOT_LANES):  # terms start .. start + 7 into sums 0 .. 7
        part = terms[start:start + PRIOR_DOT_LANES]
        lanes[:part.shape[0]] = lanes[:part.shape[0]] + part
    z = F32(0)
    for lane in lanes:
        z = F32(z + lane)
    z = F32(z + F32(bias))
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
    inv_b = expf(-F32(log_b))
    hi = lo + width
    d = np.maximum(lo - mu, mu - hi)  # > 0: the bin lies wholly on one side of mu
    side = F32(logf(-expm1f(-(width * inv_b))) - LOG_2)
    term = side - d * inv_b
    inside = np.flatnonzero(d <= 0)
    for k in inside:  # at most one bin holds mu (two when mu is on their shared edge: both get this formula)
        a, c = (lo[k] - mu) * inv_b, (hi[k] - mu) * inv_b
        term[k] = logf(F32(-0.5) * F32(expm1f(a) + expm1f(-c)))
    return np.maximum(term, PRIOR_FLOOR).astype(F32)


def add_prior_ref(logits: np.ndarray, byte: int, hidden: np.ndarray, c_t: int | None, est: np.float32,
                  weight: np.ndarray, bias: np.float32) -> np.ndarray:
    """A byte's logits (256,) plus the prior's term: centred on est, log-scale from the byte's head hidden layer
    hidden (K,) with weight (K,) and bias; c_t the coarse byte (fine byte only)."""
    lo, width = prior_bins_ref(byte, c_t)
    return logits + prior_term_ref(lo, width, prior_location_ref(est), prior_log_scale_ref(weight, hidden, bias))
