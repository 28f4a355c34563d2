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


def prior_term(lo: torch.Tensor, width: float, mu: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """pywavernn.reference.prior.prior_term_ref, batched and differentiable: lo (..., 256) bin starts, mu and
    log_b (...) in unsigned 16-bit units -> (..., 256) max(PRIOR_FLOOR, log Laplace mass of [lo, lo + width))."""
    inv_b, mu = torch.exp(-log_b)[..., None], mu[..., None]
    d = torch.maximum(lo - mu, mu - (lo + width))  # > 0: the bin lies wholly on one side of mu
    side = torch.log(-torch.expm1(-width * inv_b)) - math.log(2.0)
    a = ((lo - mu) * inv_b).clamp(max=0.0)  # the bin holding mu (clamped so the other bins' branch stays finite)
    c = ((lo + width - mu) * inv_b).clamp(min=0.0)
    inside = torch.log((-0.5 * (torch.expm1(a) + torch.expm1(-c))).clamp(min=1e-30))
    return torch.where(d > 0, side - d * inv_b, inside).clamp(min=float(PRIOR_FLOOR))


def add_prior(logits: torch.Tensor, byte: int, hid: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              mu: torch.Tensor, coarse: torch.Tensor | None = None) -> torch.Tensor:
    """logits (..., 256) of byte 0 (coarse) or 1 (fine, given the coarse bytes `coarse` (...)) plus the prior's
    term, in float32: log b = hid . weight + bias clipped (hid (..., K) the byte's head hidden layer, weight (K,),
    bias broadcasting to (...)), centre mu (...) in unsigned 16-bit units."""
    with torch.autocast(hid.device.type, enabled=False):
        hid, logits = hid.float(), logits.float()
        log_b = (hid @ weight + bias).clamp(*map(float, PRIOR_LOG_SCALE_RANGE))
        bins = torch.arange(N_CLASSES, device=hid.device, dtype=torch.float32)
        lo, width = (bins * 256.0, 256.0) if byte == 0 else ((coarse * 256).float()[..., None] + bins, 1.0)
        return logits + prior_term(lo, width, mu.float(), log_b)
