"""Subscale benchmark: samples/s of the C Subscale WaveRNN loop (pywavernn.engines.subscale.SubscaleEngine, B = 16,
all sub-tensors in lockstep, B-column products) against the plain C loop (pywavernn.engines.cpu.CpuEngine) of the same
hidden size, sparsity and storage, one thread each, over hidden size x sparsity.

What it is: the measuring script. Before anything is timed, every configuration is validated on one frame
(300 samples): the subscale engine in exact mode gives the very samples of
pywavernn.reference.subscale.generate_subscale_ref, the plain engine in exact mode those of
pywavernn.reference.plain.generate_ref, and each engine as timed (fast mode) reproduces its exact-mode per-sample logits
(relative 1e-4) up to its first differing draw. The two engines of a configuration are timed in alternating rounds
(benchmarks/harness.py) and reported as medians; the ratio is taken within the same rounds.
What it is not: a test (nothing asserts a speed), nor a measure of trained models (random weights of the right
shape and sparsity), nor of the conditioning network (frame rate, run once per utterance: both engines are handed
g). The subscale context network (embedding, dilated layers, projection) runs inside the timed loop.

    python -m benchmarks.bench_subscale            # H 512, 1024 x dense, 95% 16x1; fp32 and fp16 -> results/bench_subscale.*
                                                   # each sparse row again with the context projection
                                                   # (subscale.proj.weight) pruned at the same sparsity as R
                                                   # ("+ ctx proj", docs/format.md §9); --no-sparse-proj skips those
    python -m benchmarks.bench_subscale --quick    # fp32 only, short runs -> results/bench_subscale_quick.*

Letters: H hidden units, K output-head hidden units (256 here), B subscale factor, F future horizon, C_x context
channels, D context layers, T samples.
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
                                write_report)
from pywavernn.reference import subscale as rs
from pywavernn.config import ModelConfig
from pywavernn.engines.cpu import CpuEngine
from pywavernn.conditioning import conditioning_ref
from pywavernn.reference.plain import generate_ref
from pywavernn.engines.subscale import SubscaleEngine
from pywavernn.testing import random_model

SAMPLE_RATE = 24000
OUT_HIDDEN = 256
FACTOR, HORIZON, CHANNELS, LAYERS = 16, 2, 32, 4
STEP_RTOL = 1e-4


def build_models(hidden: int, density: float | None, proj_density: float | None = None):
    """(plain, subscale) random models of the same H, K, sparsity (16x1 blocks); proj_density (subscale only):
    subscale.proj.weight block-sparse at that kept fraction (the other weights are those without it)."""
    base = dict(hidden_size=hidden, out_hidden=OUT_HIDDEN, cond_channels=16, block_shape=(16, 1))
    plain = random_model(ModelConfig(**base), seed=0, density=density)
    sub = random_model(ModelConfig(**base, subscale_factor=FACTOR, subscale_horizon=HORIZON,
                                   subscale_channels=CHANNELS, subscale_layers=LAYERS), seed=0, density=density,
                      proj_density=proj_density)
    return plain, sub


def inputs(model, n_frames: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    mel = rng.standard_normal((n_frames, model.model_config.n_mels)).astype(np.float32)
    uniforms = rng.random((n_frames * model.feature_config.hop_length, 2), dtype=np.float32)
    return mel, conditioning_ref(model, mel), uniforms


def _first_logit_error(fast: dict, exact: dict, samples_fast, samples_exact, order) -> float:
    """Largest relative logit difference over the samples before the first differing draw (in `order`)."""
    bad = np.flatnonzero(samples_fast[order] != samples_exact[order])
    keep = order[: bad[0]] if bad.size else order
    return max(float(np.max(np.abs(fast[k][keep] - exact[k][keep]) / (1 + np.abs(exact[k][keep])), initial=0.0))
               for k in ("logits_c", "logits_f"))


def validate(plain, sub, storage: str) -> None:
    limit = threadpool_limits(1) if threadpool_limits else contextlib.nullcontext()
    with limit:
        mel, g, u = inputs(sub, 1)
        want = rs.generate_subscale_ref(sub, mel, u)
        exact = SubscaleEngine(sub, storage, exact=True)
        if storage == "fp32" and not np.array_equal(exact.generate(g, u), want):
            raise RuntimeError("subscale engine (exact) differs from generate_subscale_ref")
        ex, fa = exact.trace(g, u), SubscaleEngine(sub, storage).trace(g, u)
        err = _first_logit_error(fa, ex, fa["samples"], ex["samples"], np.argsort(ex["step"], kind="stable"))
        if err > STEP_RTOL:
            raise RuntimeError(f"subscale engine fast mode: logits differ by {err:.3g} (relative)")
        mel, g, u = inputs(plain, 1)
        want = generate_ref(plain, mel, u)
        if storage == "fp32" and not np.array_equal(CpuEngine(plain, storage, exact=True).generate(g, u), want):
            raise RuntimeError("plain engine (exact) differs from generate_ref")
        ex = CpuEngine(plain, storage, exact=True).trace(g, u, n_steps=u.shape[0])
        fa = CpuEngine(plain, storage).trace(g, u, n_steps=u.shape[0])
        err = _first_logit_error(fa, ex, fa["samples"], ex["samples"], np.arange(u.shape[0]))
        if err > STEP_RTOL:
            raise RuntimeError(f"plain engine fast mode: logits differ by {err:.3g} (relative)")


def bench(hidden: int, density: float | None, storages, n_frames: int, rounds: int, min_s: float,
          proj_density: float | None = None) -> list[dict]:
    plain, sub = build_models(hidden, density, proj_density)
    label = f"dense-{hidden}" if density is None else f"sparse-{hidden} {100 * (1 - density):.0f}% 16x1"
    if proj_density is not None:
        label += f" + ctx proj {100 * (1 - proj_density):.0f}%"
    rows = []
    for storage in storages:
        validate(plain, sub, storage)
        _, g_p, u_p = inputs(plain, n_frames)
        _, g_s, u_s = inputs(sub, n_frames)
        plain_eng, sub_eng = CpuEngine(plain, storage, threads=1), SubscaleEngine(sub, storage)
        n = u_p.shape[0]
        cands = [Candidate("plain", lambda: plain_eng.generate(g_p, u_p), work=n),
                 Candidate("subscale", lambda: sub_eng.generate(g_s, u_s), work=n)]
        res = interleaved_medians(cands, rounds=rounds, min_seconds=min_s)
        p, s = res["plain"]["rate"], res["subscale"]["rate"]
        rows.append({"model": label, "hidden": hidden, "density": density, "proj_density": proj_density,
                     "weights": storage, "samples": n,
                     "B": FACTOR, "F": HORIZON, "C_x": CHANNELS, "D": LAYERS, "isa": sub_eng.isa, "threads": 1,
                     "plain_sps": p, "subscale_sps": s, "speedup": s / p, "plain_rt": p / SAMPLE_RATE,
                     "subscale_rt": s / SAMPLE_RATE, "timings": res})
        print(f"{label} {storage}: plain {p:,.0f} samples/s, subscale {s:,.0f} samples/s, x{s / p:.2f}", flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fp32 only, 4,800 samples a call, 3 rounds")
    ap.add_argument("--hidden", type=int, nargs="*", default=[512, 1024])
    ap.add_argument("--density", type=float, nargs="*", default=[None, 0.05], help="kept fraction (None: dense)")
    ap.add_argument("--weights", nargs="*", choices=["fp32", "fp16"], default=None)
    ap.add_argument("--no-sparse-proj", dest="sparse_proj", action="store_false",
                    help="skip the rows with the context projection pruned like R")
    add_out_dir_option(ap)
    args = ap.parse_args(argv)
    storages = args.weights or (["fp32"] if args.quick else ["fp32", "fp16"])
    n_frames, rounds, min_s = (16, 3, 0.2) if args.quick else (80, 7, 0.5)
    rows = []
    for hidden in args.hidden:
        for density in args.density:
            rows += bench(hidden, density, storages, n_frames, rounds, min_s)
            if density is not None and args.sparse_proj:
                rows += bench(hidden, density, storages, n_frames, rounds, min_s, proj_density=density)
    table = format_table(rows, [("model", "model", ""), ("weights", "weights", ""), ("plain_sps", "plain samples/s", ",.0f"),
                                ("subscale_sps", "subscale B=16 samples/s", ",.0f"), ("speedup", "x plain", ".2f"),
                                ("plain_rt", "plain x real time", ".2f"), ("subscale_rt", "subscale x real time", ".2f")])
    note = (f"\n\nOne thread, fast mode, T = {n_frames * 300} samples per call, medians of {rounds} interleaved rounds; "
            f"subscale B = {FACTOR}, F = {HORIZON}, C_x = {CHANNELS}, D = {LAYERS}, context network included; "
            f"'+ ctx proj': subscale.proj.weight (3H x C_x) also 16x1 block-sparse at the sparsity of R (the "
            f"plain engine has no context network: its column is the same model as the row above).")
    path = write_report("bench_subscale_quick" if args.quick else "bench_subscale", machine_description(), rows,
                        table + note, args.out_dir)
    print(table + note)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
