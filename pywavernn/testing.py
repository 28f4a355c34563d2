"""Random models and block-sparse matrices for tests and benchmarks.

What it is: `random_model` (a valid float32 `pywavernn.modelfile.Model`, optionally block-sparse) and
`random_block_sparse` (one random block-CSR matrix with its dense twin). Shipped with the package so that
tests, benchmarks and downstream projects build models the same way.
What it is not: public API with stability promises, nor a trained model (the audio it makes is noise).

Usage:
    from pywavernn.testing import random_model
    model = random_model(ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16), seed=1, density=0.25)

Letters: H hidden units, M x N a matrix shape, BH x BW a block shape.
"""

from __future__ import annotations

import numpy as np

from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.modelfile import (
    FUSED_SPARSE_CAPABLE, SPARSE_CAPABLE, BlockSparseMatrix, Model, coarse_rows_of_gates, expected_weight_shapes, pack_block_sparse,
    sparse_capable,
)
from pywavernn import fused
from pywavernn.fold import linear_estimate_mask


def _check_density(density: float) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 <= density <= 1.0:
        raise ValueError(f"density: expected a fraction in [0, 1], found {density!r}")
    return float(density)


def _nonzero_uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> np.ndarray:
    """Uniform in (-bound, bound) as float32, with no exact zeros (so a kept block always stays nonzero)."""
    values = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    values[values == 0] = np.float32(bound / 2)
    return values


def random_block_sparse(rng: np.random.Generator, m: int, n: int, bh: int, bw: int,
                        density: float) -> tuple[BlockSparseMatrix, np.ndarray]:
    """A random M x N block-CSR matrix keeping exactly round(density * n_blocks) blocks, and its dense twin.

    Values are uniform in (-1, 1), never exactly zero. Returns (matrix, dense float32 with pruned blocks zero).
    """
    density = _check_density(density)
    if m % bh or n % bw:
        raise ValueError(f"random_block_sparse: expected block {bh}x{bw} to divide shape {m}x{n}")
    dense = _nonzero_uniform(rng, (m, n), 1.0)
    dense = _prune_blocks(rng, dense, bh, bw, density)
    return pack_block_sparse(dense, bh, bw), dense


def _prune_blocks(rng: np.random.Generator, dense: np.ndarray, bh: int, bw: int, density: float) -> np.ndarray:
    """Zero all but round(density * n_blocks) randomly chosen BH x BW blocks of a matrix with no zero entries."""
    m, n = dense.shape
    mb, nb = m // bh, n // bw
    n_keep = int(round(density * mb * nb))
    keep = np.zeros(mb * nb, dtype=bool)
    keep[rng.choice(mb * nb, size=n_keep, replace=False)] = True
    mask = np.repeat(np.repeat(keep.reshape(mb, nb), bh, axis=0), bw, axis=1)
    return np.where(mask, dense, np.float32(0)).astype(np.float32)


def _fan_in(name: str, shapes: dict[str, tuple[int, ...]], hidden_size: int) -> int:
    """Fan-in of a tensor for PyTorch-style init; a bias takes its weight's; the GRU tensors use H (torch.nn.GRU)."""
    if name.startswith("gru."):
        return hidden_size
    weight_of_bias = {"cond.proj.bias": "cond.proj.weight", "out.b1": "out.O1", "out.b2": "out.O2",
                      "out.b3": "out.O3", "out.b4": "out.O4", "prior.bias": "prior.weight",
                      "fused.b1": "fused.O1", "fused.b2": "fused.O2"}
    if name.startswith("cond.conv") and name.endswith(".bias"):
        name = name[: -len("bias")] + "weight"
    shape = shapes[weight_of_bias.get(name, name)]
    if name == "linear.weight":  # (P,): the prediction weighs P samples
        return shape[0]
    if name == "subscale.linear.weight":  # [s, d, z, e]: an estimate weighs (F + 2) B samples
        return shape[1] * shape[2]
    return shape[1] * shape[2] if len(shape) == 3 else shape[1]


def random_model(model_config: ModelConfig | None = None, feature_config: FeatureConfig | None = None,
                 seed: int = 0, density: float | None = None, scale: float | None = None,
                 proj_density: float | None = None, densities: dict[str, float] | None = None,
                 conv_density: float | None = None) -> Model:
    """A random, valid float32 model (the W_in mask applied), the same for the same arguments.

    model_config    default ModelConfig(); feature_config default FeatureConfig(n_mels=model_config.n_mels).
    density         None: all weights dense. Otherwise a fraction in [0, 1]: each SPARSE_CAPABLE matrix (a fused
                    model's FUSED_SPARSE_CAPABLE: R and the heads, docs/format.md §12) keeps
                    exactly round(density * n_blocks) randomly chosen model_config.block_shape blocks and is
                    stored as a BlockSparseMatrix.
    proj_density    None: subscale.proj.weight dense. A fraction in [0, 1] (subscale models only): it is pruned
                    and stored block-sparse like `density` (docs/format.md §9), after the SPARSE_CAPABLE matrices,
                    so the other weights are those of the same call without it.
    densities       per-matrix kept fractions {name: fraction} for SPARSE_CAPABLE names (and
                    subscale.proj.weight), overriding `density` / `proj_density` for those names; a matrix named
                    in neither stays dense. For shaping a random model like a trained one (benchmarks).
    conv_density    None: the subscale context layers dense. A fraction in [0, 1] (subscale models only): each
                    tap (C_x x C_x) of every subscale.conv{l}.weight keeps round(conv_density * n_blocks) random
                    blocks, drawn after everything above; the file keeps the layers dense (docs/format.md §9),
                    with the pruned blocks zero, as training.pruning leaves them.
    scale           None: each tensor uniform in +-1/sqrt(fan_in) (PyTorch default init; 1/sqrt(H) for the
                    GRU tensors). A number: every tensor uniform in +-scale.
    """
    model_config = model_config if model_config is not None else ModelConfig()
    feature_config = feature_config if feature_config is not None else FeatureConfig(n_mels=model_config.n_mels)
    if density is not None:
        density = _check_density(density)
    if proj_density is not None:
        proj_density = _check_density(proj_density)
        if model_config.subscale_factor <= 1:
            raise ValueError("proj_density: only a subscale model (subscale_factor > 1) has subscale.proj.weight")
    if conv_density is not None:
        conv_density = _check_density(conv_density)
        if model_config.subscale_factor <= 1:
            raise ValueError("conv_density: only a subscale model (subscale_factor > 1) has context layers")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
        raise ValueError(f"scale: expected a positive number, found {scale!r}")
    rng = np.random.default_rng(seed)
    shapes = expected_weight_shapes(model_config)
    weights = {}
    for name, shape in shapes.items():
        bound = float(scale) if scale is not None else 1.0 / np.sqrt(_fan_in(name, shapes, model_config.hidden_size))
        weights[name] = _nonzero_uniform(rng, shape, bound)
    if model_config.kind == "fused":  # zero where a part may not see a current nibble (docs/format.md §12)
        weights["gru.W_in"] *= fused.input_mask(model_config.hidden_size)
    else:
        weights["gru.W_in"][coarse_rows_of_gates(model_config.hidden_size), 2] = 0.0
    if model_config.subscale_linear:  # zero where fold.linear_estimate_mask says a sample is not seen
        mask = linear_estimate_mask(model_config.subscale_factor, model_config.subscale_horizon)
        weights["subscale.linear.weight"] *= mask[..., None]
    if model_config.subscale_prior != "none":  # log-scales from 0.4 to 3,000 16-bit steps: sharp and wide priors
        weights["subscale.prior.bias"] = np.random.default_rng([seed, 1]).uniform(
            -1.0, 8.0, weights["subscale.prior.bias"].shape).astype(np.float32)
    if model_config.prior != "none":  # the plain model's prior (docs/format.md §11): the same range of scales
        weights["prior.bias"] = np.random.default_rng([seed, 2]).uniform(
            -1.0, 8.0, weights["prior.bias"].shape).astype(np.float32)
    capable = sparse_capable(model_config)
    step_matrices = FUSED_SPARSE_CAPABLE if model_config.kind == "fused" else SPARSE_CAPABLE
    per_matrix = dict.fromkeys(step_matrices, density) if density is not None else {}
    if proj_density is not None:
        per_matrix["subscale.proj.weight"] = proj_density
    for name, value in (densities or {}).items():
        if name not in capable:
            raise ValueError(f"densities: {name!r} is not a block-sparse-capable matrix of this model; expected "
                             f"one of {list(capable)}")
        per_matrix[name] = _check_density(value)
    bh, bw = model_config.block_shape
    for name in capable:  # SPARSE_CAPABLE first, then the context projection: the draws of `density` alone
        if name in per_matrix:
            weights[name] = pack_block_sparse(_prune_blocks(rng, weights[name], bh, bw, per_matrix[name]), bh, bw)
    if conv_density is not None:
        for layer in range(model_config.subscale_layers):
            w = weights[f"subscale.conv{layer}.weight"]
            for tap in range(w.shape[2]):
                w[:, :, tap] = _prune_blocks(rng, w[:, :, tap], bh, bw, conv_density)
    provenance = {"source": "pywavernn.testing.random_model", "seed": seed, "density": density}
    if proj_density is not None:
        provenance["proj_density"] = proj_density
    if conv_density is not None:
        provenance["conv_density"] = conv_density
    if densities:
        provenance["densities"] = {k: float(v) for k, v in densities.items()}
    model = Model(model_config, feature_config, weights, provenance)
    model.validate()
    return model


def uniforms_clear_of_class_edges(trace_fn, uniforms: np.ndarray, margin: float = 1e-5,
                                  seed: int = 99) -> np.ndarray:
    """Uniforms for tests that compare two implementations sample for sample.

    A draw u picks class k when cdf[k-1] <= u * cdf[255] < cdf[k] (docs/format.md §4); if u lands within
    rounding distance of an edge, two correct implementations may pick different classes. This moves every draw
    lying within `margin` (of the cdf total) of an edge to the middle of the class it picks, which keeps the
    trajectory, or draws it again where the class is too narrow (the trajectory is then recomputed).
    trace_fn(u) -> (samples, trace) must run the reference, trace holding per-sample "logits_c", "logits_f"
    (or, for the fused model, "logits" (T, 4, 16), one row per nibble and uniform column) and, for schedules
    that do not run in time order, "step" (the order samples are generated in).
    """
    rng = np.random.default_rng(seed)
    u = uniforms.copy()
    for _ in range(100):
        _, trace = trace_fn(u)
        order = np.argsort(trace["step"], kind="stable") if "step" in trace else range(u.shape[0])
        if not _clear_in_order(trace, u, order, margin, rng):
            return u
    raise RuntimeError("uniforms_clear_of_class_edges: gave up after 100 redraws")


def _clear_in_order(trace, u: np.ndarray, order, margin: float, rng: np.random.Generator) -> bool:
    """Move draws off class edges in generation order; True if one was redrawn (the trace is then stale)."""
    for t in order:
        rows = enumerate(trace["logits"][t]) if "logits" in trace else \
            ((0, trace["logits_c"][t]), (1, trace["logits_f"][t]))
        for col, logits in rows:
            cdf = np.cumsum(np.exp(logits - logits.max()), dtype=np.float32).astype(np.float64)
            x = float(np.float32(u[t, col]) * np.float32(cdf[-1]))
            above = np.flatnonzero(cdf > x)
            k = int(above[0]) if above.size else cdf.size - 1
            lo, hi = (cdf[k - 1] if k else 0.0), cdf[k]
            if min(x - lo, hi - x) >= margin * cdf[-1]:
                continue
            if hi - lo >= 4 * margin * cdf[-1]:
                u[t, col] = np.float32((lo + hi) / 2 / cdf[-1])
            else:
                u[t, col] = rng.random(dtype=np.float32)
                return True
    return False
