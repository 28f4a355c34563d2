"""Fused benchmark: generation samples/s on one thread of the Fused Subscale WaveRNN 2x (docs/format.md §12,
pywavernn.engines.fused.FusedEngine) against its siblings at equal hidden size and sparsity: the plain WaveRNN
(pywavernn.engines.cpu.CpuEngine) and the Subscale WaveRNN with B = 2 and B = 16 (pywavernn.engines.subscale), each
model's speed over the plain model's (issue 27's goal: fused 2x >= 1.8x plain at H = 512 and 1024, dense and 95 %
sparse).

What it is: the measuring script. Before anything is timed, every model is validated on one frame (300 samples):
its engine in exact mode gives the very samples of its NumPy reference (uniforms moved off class edges, where two
correct implementations whose products round differently may draw different classes), and the engine as timed
(fast mode) reproduces exact mode's teacher-forced logits (relative 1e-4) on those samples. The four engines of a
configuration are timed in one run of alternating rounds (benchmarks/harness.py: A B C D D C B A ...), reported as
medians, and each ratio to plain is the median of the per-round ratios (harness.paired_ratio) with its range.
What it is not: a test (nothing asserts a speed), nor a measure of trained models (random weights of the right
shape and sparsity), nor of the conditioning network (frame rate, run once per utterance: every engine is handed g).

The models: H hidden units everywhere; the fused heads have K = H / 8 hidden units (a head sees the P = H / 8 units
of its part and predicts 16 classes), the plain and subscale models the plain default K = 256 (two 256-way heads
on H / 2 units each). Sparse rows: 95 % of the 16x1 blocks pruned in R and every output head (out.O1..O4;
fused.O1, fused.O2); the subscale context network (C_x = 32 channels, D = 4 layers, F = 2) stays dense and runs in
the timed loop.

    python -m benchmarks.bench_fused            # H 512, 1024 x dense, 95 % 16x1 -> results/bench_fused.{json,md}
    python -m benchmarks.bench_fused --quick    # H 512 only, short calls, 3 rounds (CI) -> results/bench_fused_quick.*

Letters: H hidden units, K head hidden units, P = H / 8 units per fused part, B subscale factor, F future horizon,
T samples.
"""

from __future__ import annotations

import argparse
import contextlib

import numpy as np

try:  # the NumPy references' BLAS gets one thread, like the engines
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

from benchmarks.harness import (Candidate, add_out_dir_option, format_table, interleaved_medians, machine_description,
                                paired_ratio, write_report)
from pywavernn import fused
from pywavernn.conditioning import conditioning_ref
from pywavernn.config import ModelConfig
from pywavernn.engines import make_engine
from pywavernn.reference.fused import generate_fused_cond_ref
from pywavernn.reference.plain import generate_ref
from pywavernn.reference.subscale import generate_subscale_ref
from pywavernn.testing import random_model, uniforms_clear_of_class_edges

SAMPLE_RATE = 24000
PLAIN_K = ModelConfig().out_hidden  # 256: the plain default, also used by the subscale models
HORIZON, CHANNELS, LAYERS = 2, 32, 4  # the subscale models' context network (as benchmarks/bench_subscale.py)
STEP_RTOL = 1e-4
KINDS = ("plain", "fused 2x", "subscale 2x", "subscale 16x")


def build_models(hidden: int, density: float | None) -> dict:
    """The four random models of one configuration: equal H, 16x1 blocks, every block-sparse-capable step matrix
    (R and the heads) at `density` kept (None: dense)."""
    base = dict(hidden_size=hidden, cond_channels=16, block_shape=(16, 1))
    subscale = dict(subscale_horizon=HORIZON, subscale_channels=CHANNELS, subscale_layers=LAYERS)
    configs = {"plain": ModelConfig(**base, out_hidden=PLAIN_K),
               "fused 2x": ModelConfig(**base, out_hidden=hidden // 8, subscale_factor=2,
                                       subscale_horizon=fused.FUSED_HORIZON, subscale_fused=True),
               "subscale 2x": ModelConfig(**base, out_hidden=PLAIN_K, subscale_factor=2, **subscale),
               "subscale 16x": ModelConfig(**base, out_hidden=PLAIN_K, subscale_factor=16, **subscale)}
    return {kind: random_model(cfg, seed=0, density=density) for kind, cfg in configs.items()}


def inputs(model, n_frames: int, seed: int = 1):
    """(g, uniforms) of n_frames random mel frames: uniforms (T, engine's uniform_columns)."""
    rng = np.random.default_rng(seed)
    mel = rng.standard_normal((n_frames, model.model_config.n_mels)).astype(np.float32)
    columns = make_engine(model, "reference").uniform_columns
    return conditioning_ref(model, mel), rng.random((n_frames * model.feature_config.hop_length, columns),
                                                    dtype=np.float32)


def validate(kind: str, model) -> None:
    """Exact mode gives the reference's samples on one frame; fast mode its teacher-forced logits (relative 1e-4)."""
    limit = threadpool_limits(1) if threadpool_limits else contextlib.nullcontext()
    with limit:
        rng = np.random.default_rng(2)
        mel = rng.standard_normal((1, model.model_config.n_mels)).astype(np.float32)
        g = conditioning_ref(model, mel)
        columns = make_engine(model, "reference").uniform_columns
        reference = {"plain": lambda u: generate_ref(model, mel, u, trace=True),
                     "subscale": lambda u: generate_subscale_ref(model, mel, u, trace=True),
                     "fused": lambda u: generate_fused_cond_ref(model, g, u, trace=True)}[model.model_config.kind]
        u = uniforms_clear_of_class_edges(reference, rng.random((g.shape[0] * model.feature_config.hop_length,
                                                                 columns), dtype=np.float32))
        want = reference(u)[0]
        exact, fast = make_engine(model, "cpu", exact=True), make_engine(model, "cpu")
        if not np.array_equal(exact.generate(g, u), want):
            raise RuntimeError(f"{kind}: the C engine in exact mode differs from its NumPy reference")
        if kind == "fused 2x":  # teacher forcing on the reference's samples
            ex, fa = exact.trace(g, want)["logits"], fast.trace(g, want)["logits"]
        elif kind == "plain":
            ex, fa = (np.stack([e.trace(g, want, n_steps=want.shape[0])[k] for k in ("logits_c", "logits_f")])
                      for e in (exact, fast))
        else:  # no teacher forcing in the subscale loop: free-running logits up to the first differing draw
            te, tf = exact.trace(g, u), fast.trace(g, u)
            order = np.argsort(te["step"], kind="stable")
            bad = np.flatnonzero(tf["samples"][order] != te["samples"][order])
            keep = order[: bad[0]] if bad.size else order
            ex, fa = (np.stack([t[k][keep] for k in ("logits_c", "logits_f")]) for t in (te, tf))
        err = float(np.max(np.abs(fa - ex) / (1 + np.abs(ex)), initial=0.0))
        if err > STEP_RTOL:
            raise RuntimeError(f"{kind}: fast mode's logits differ from exact mode's by {err:.3g} (relative)")


def bench(hidden: int, density: float | None, n_frames: int, rounds: int, min_s: float) -> list[dict]:
    models = build_models(hidden, density)
    label = f"dense-{hidden}" if density is None else f"sparse-{hidden} {100 * (1 - density):.0f}% 16x1"
    cands = []
    for kind in KINDS:
        validate(kind, models[kind])
        engine = make_engine(models[kind], "cpu", threads=1)
        g, u = inputs(models[kind], n_frames)
        cands.append(Candidate(kind, (lambda e=engine, g=g, u=u: e.generate(g, u)), work=u.shape[0],
                               info={"K": models[kind].model_config.out_hidden, "isa": engine.isa}))
    res = interleaved_medians(cands, rounds=rounds, min_seconds=min_s)
    rows = []
    for kind in KINDS:
        ratio = paired_ratio(res, "plain", kind)
        r = res[kind]
        rows.append({"model": label, "kind": kind, "hidden": hidden, "density": density, "K": r["K"],
                     "samples": r["work"], "threads": 1, "isa": r["isa"], "sps": r["rate"],
                     "x_plain": ratio["median"], "x_plain_min": ratio["min"], "x_plain_max": ratio["max"],
                     "x_plain_range": f"{ratio['min']:.2f}-{ratio['max']:.2f}", "rt": r["rate"] / SAMPLE_RATE,
                     "timing": r})
        print(f"{label} {kind} (K {r['K']}): {r['rate']:,.0f} samples/s, x{ratio['median']:.2f} plain "
              f"({ratio['min']:.2f}-{ratio['max']:.2f})", flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="H = 512 only, 1,200 samples a call, 3 rounds (CI)")
    ap.add_argument("--hidden", type=int, nargs="*", default=None, help="hidden sizes (default 512 1024)")
    ap.add_argument("--density", type=float, nargs="*", default=[None, 0.05], help="kept fraction (None: dense)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 7, --quick 3)")
    add_out_dir_option(ap)
    args = ap.parse_args(argv)
    hiddens = args.hidden or ([512] if args.quick else [512, 1024])
    n_frames, rounds, min_s = (4, 3, 0.05) if args.quick else (40, 7, 0.5)
    rounds = args.rounds or rounds
    rows = []
    for hidden in hiddens:
        for density in args.density:
            rows += bench(hidden, density, n_frames, rounds, min_s)
    table = format_table(rows, [("model", "model", ""), ("kind", "kind", ""), ("K", "K", "d"),
                                ("sps", "samples/s", ",.0f"), ("x_plain", "x plain", ".2f"),
                                ("x_plain_range", "x plain, range", ""), ("rt", "x real time", ".2f")])
    note = (f"\n\nOne thread each, fast mode, fp32, T = {n_frames * 300} samples per call; the four models of a row "
            f"group timed in one run of {rounds} alternating rounds (medians); 'x plain' is the median of the "
            f"per-round ratios to the plain model's samples/s, with their range. Equal H within a group; K: the fused "
            f"heads' hidden units are H / 8 (each head sees P = H / 8 state units and predicts 16 classes), the "
            f"plain and subscale models' are the plain default {PLAIN_K}. Sparse: 95 % of the 16x1 blocks pruned in R "
            f"and every output head; the subscale models' context network (C_x = {CHANNELS}, D = {LAYERS}, F = "
            f"{HORIZON}) dense, in the timed loop. Issue 27's goal: fused 2x >= 1.8x plain.")
    path = write_report("bench_fused_quick" if args.quick else "bench_fused", machine_description(), rows,
                        table + note, args.out_dir)
    print(table + note)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
