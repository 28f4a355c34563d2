"""The Laplace prior on a byte's logits in PyTorch: batched and differentiable, for both twins.

What it is: `prior_term` (pywavernn.reference.prior.prior_term_ref on tensors) and `add_prior`, a byte's logits
plus the prior's terms, shared by the plain twin (training/model.py, ModelConfig.prior, docs/format.md §11) and the
subscale twin (training/subscale_model.py, subscale_prior, §9); and the prior's starting log-scale.
What it is not: where the centre (a linear prediction) or the scale's weights come from: the models own those.
Always float32, even under bf16 autocast: mu is in 16-bit steps (up to 65,536), which bf16's 8-bit mantissa
cannot place within a step.

Tests: tests/test_linear_prediction.py and tests/test_subscale_parity.py (against the NumPy reference).
Letters: K output-head hidden units.
"""

from __future__ import annotations

import math

import torch

from pywavernn.common import N_CLASSES
from pywavernn.reference.prior import PRIOR_FLOOR, PRIOR_LOG_SCALE_RANGE

# The prior's starting log-scale, b = e^6 = 403 16-bit steps: about the mean absolute difference of consecutive
# 24 kHz speech samples (359-399 steps on piper-joe and kokoro-5v, docs/format.md §11), the maximum-likelihood
# Laplace scale of the residual of the starting estimate (the previous sample), so the prior starts right in scale.
PRIOR_INIT_LOG_SCALE = 6.0


class _OneSidedTerm(torch.autograd.Function):
    """max(PRIOR_FLOOR, side - d / b) for every bin, d = |mid - mu| - width / 2 the distance from mu to the bin's
    nearer edge (mid: the bin's middle), with the backward written out: the terms are (..., 256) per byte and
    sample, and autograd through the elementwise formula (maximum, clamp: their masks and selections) cost three
    times as much in training. Inputs lo (..., 256), width (float), mu, inv_b = 1 / b, side (...)."""

    @staticmethod
    def forward(ctx, lo, width, mu, inv_b, side):
        x = (lo + width / 2) - mu[..., None]  # signed distance from mu to the bin's middle
        term = x.abs().sub_(width / 2).mul_(-inv_b[..., None]).add_(side[..., None])
        live = term > float(PRIOR_FLOOR)
        ctx.save_for_backward(x, live, inv_b)
        ctx.width = width
        return term.clamp_(min=float(PRIOR_FLOOR))

    @staticmethod
    def backward(ctx, grad):
        x, live, inv_b = ctx.saved_tensors
        grad = grad * live  # the floor passes no gradient
        d = x.abs().sub_(ctx.width / 2)
        # d term / d mu = sign(x) / b, d term / d inv_b = -d, d term / d side = 1
        return (None, None, (grad * x.sign()).sum(-1) * inv_b, -(grad * d).sum(-1), grad.sum(-1))


def prior_term(lo: torch.Tensor, width: float, mu: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """pywavernn.reference.prior.prior_term_ref, batched and differentiable: lo (..., 256) bin starts (consecutive
    bins of `width`), mu and log_b (...) in unsigned 16-bit units -> (..., 256) max(PRIOR_FLOOR, log Laplace mass of
    [lo, lo + width)), equal to the reference's to float32 rounding.

    Every bin gets the one-sided formula side - d / b (_OneSidedTerm); then the one bin whose [lo, hi) holds mu,
    k = floor((mu - lo[0]) / width), gets the formula of the bin holding mu, computed for that bin alone and
    scattered in. (A bin with mu on its edge has d = 0, where the two formulas agree, so which of two neighbours
    gets it does not matter.) Evaluating that formula for every bin and selecting, as the reference does, gives
    the same values at several times the cost in training, where this runs on every (sample, bin)."""
    inv_b = torch.exp(-log_b)
    side = torch.log(-torch.expm1(-width * inv_b)) - math.log(2.0)
    term = _OneSidedTerm.apply(lo, width, mu, inv_b, side)
    n_bins, lo0 = lo.shape[-1], lo[..., 0]
    k = torch.floor((mu - lo0) / width)
    held = (k >= 0) & (k < n_bins)  # mu inside the 256 bins
    k = k.clamp(0, n_bins - 1).long()
    lo_k = lo0 + k * width
    a = ((lo_k - mu) * inv_b).clamp(max=0.0)
    c = ((lo_k + width - mu) * inv_b).clamp(min=0.0)
    inside = torch.log((-0.5 * (torch.expm1(a) + torch.expm1(-c))).clamp(min=1e-30)).clamp(min=float(PRIOR_FLOOR))
    kept = term.gather(-1, k[..., None])[..., 0]
    return term.scatter(-1, k[..., None], torch.where(held, inside, kept)[..., None])


def add_prior(logits: torch.Tensor, byte: int, hid: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              mu: torch.Tensor, coarse: torch.Tensor | None = None) -> torch.Tensor:
    """logits (..., 256) of byte 0 (coarse) or 1 (fine, given the coarse bytes `coarse` (...)) plus the prior's
    term, in float32: log b = hid . weight + bias clipped (hid (..., K) the byte's head hidden layer, weight (K,),
    bias broadcasting to (...)), centre mu (...) in unsigned 16-bit units."""
    with torch.autocast(hid.device.type, enabled=False):
        hid, logits = hid.float(), logits.float()
        log_b = (hid @ weight + bias).clamp(*map(float, PRIOR_LOG_SCALE_RANGE))
        bins = torch.arange(N_CLASSES, device=hid.device, dtype=torch.float32)
        if byte == 0:
            return logits + prior_term(bins * 256.0, 256.0, mu.float(), log_b)
        # the fine bins [256 c + f, 256 c + f + 1) seen from 256 c: for |mu| < 2^17 (float32 steps of 2^-7 or
        # finer) mu - 256 c is exact, so the terms are those of lo = 256 c + f, without a (..., 256) tensor of lo
        return logits + prior_term(bins, 1.0, mu.float() - (coarse * 256).float(), log_b)
