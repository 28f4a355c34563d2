"""Sampling temperature folded into a plain model's weights: does a cooler draw make a campaign model sound better?

What it is: `python -m research.temperature MODEL -t 0.8 -o OUT.safetensors` writes a copy of a plain model file
(docs/format.md §1-§8, §10, §11) whose draws approximate softmax(logits / T). The two output heads' last layers
(out.O2, out.b2, out.O4, out.b4) are divided by T, which is exact for the heads' logits; with the Laplace prior of
§11 its scale b is multiplied by T (prior.bias += log T), which tempers the prior's distance term -d / b exactly and
leaves its per-side constant and its floor as they were (an approximation only where bins straddle the centre).
Evaluate the copies with `training.evaluate` (or training/configs/campaign/evaluate.sh's second half) and compare
free-running figures; LPCNet samples at a lowered temperature for the same reason (its sampling noise sits above
the speech in the spectrum's valleys). What it is not: an engine option; if a temperature wins, it belongs in the
engines' sampling step (the reference, C, streaming), where it is exact and per call.
Letters: T the temperature (0 < T; 1 leaves the draw as trained).
"""
from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np

from pywavernn.modelfile import BlockSparseMatrix, load_model, save_model


def temper(path: str, temperature: float, out: str) -> None:
    """Write `path` with its draws cooled to `temperature` (see the module docstring) to `out`."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number above 0, found {temperature}")
    model = load_model(path)
    cfg = model.model_config
    if cfg.subscale_factor != 1 or cfg.subscale_fused:
        raise ValueError(f"{path} is a subscale or fused model; this study tempers plain models only")
    scale = np.float32(1.0 / temperature)
    for name in ("out.O2", "out.b2", "out.O4", "out.b4"):
        w = model.weights[name]
        if isinstance(w, BlockSparseMatrix):
            model.weights[name] = dataclasses.replace(w, values=(w.values * scale).astype(np.float32))
        else:
            model.weights[name] = (w * scale).astype(np.float32)
    if cfg.prior == "laplace":
        model.weights["prior.bias"] = (model.weights["prior.bias"] + np.float32(math.log(temperature))).astype(
            np.float32)
    model.provenance = {**model.provenance, "sampling_temperature": f"{temperature:g} (research.temperature)"}
    save_model(model, out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m research.temperature", description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("-t", "--temperature", type=float, required=True)
    p.add_argument("-o", "--output", required=True)
    a = p.parse_args(argv)
    temper(a.model, a.temperature, a.output)
    print(f"wrote {a.output}: {a.model} at temperature {a.temperature:g}")


if __name__ == "__main__":
    main()
