"""Subscale WaveRNN in five printouts: folding, the step schedule, the dependency mask, lockstep generation, cost.

    python examples/subscale_walkthrough.py

What it is: a guided tour of pywavernn.fold (paper §4, docs/format.md §9) on small numbers you can read, then
a random Subscale-16 model vocoded by the NumPy reference and by the compiled lockstep engine, which give the same
samples. What it is not: a trained model (the audio is noise) or a benchmark (benchmarks/bench_models.py).
Needs only the package (NumPy and the compiled kernels); runs in well under a minute (the reference is slow).

Letters: B subscale factor, F future horizon, N positions per sub-tensor, T samples, H hidden units.
"""

import numpy as np

from pywavernn import Vocoder
from pywavernn import fold as ss
from pywavernn.config import ModelConfig
from pywavernn.testing import random_model


def show_fold(T: int = 10, B: int = 4) -> None:
    x = np.arange(T)
    folded = ss.fold(x, B, pad_value=-1)
    print(f"1. fold: T = {T} samples into B = {B} sub-tensors of N = {ss.n_positions(T, B)} positions "
          f"(sample t = i B + s goes to row i, column s; -1 is padding):")
    print(folded)
    assert np.array_equal(ss.unfold(folded, T), x)
    print("   unfold(fold(x)) == x\n")


def show_schedule(T: int = 48, B: int = 4, F: int = 1) -> None:
    sched = ss.schedule(T, B, F)
    warm = ss.warmup_steps(B, F)
    print(f"2. schedule: T = {T}, B = {B}, F = {F}. Row n is step n; column s the position sub-tensor s generates "
          f"('.' idle). Sub-tensor s starts s (F + 1) steps after sub-tensor 0, so after (B - 1)(F + 1) = {warm} "
          f"warm-up steps all B run together (until sub-tensor 0 runs out):")
    for n, row in enumerate(sched):
        cells = " ".join(f"{i:2d}" if i >= 0 else " ." for i in row)
        print(f"   step {n:2d}: {cells}   {int((row >= 0).sum())} samples")
    print(f"   {T} samples in {len(sched)} steps (N + warm-up = {ss.n_positions(T, B)} + {warm})\n")


def show_mask(i: int = 2, s: int = 2, T: int = 24, B: int = 4, F: int = 1) -> None:
    mask = ss.dependency_mask(i, s, T, B, F)
    print(f"3. dependency mask of sample (i = {i}, s = {s}), F = {F}: 'x' marks the samples (k, z) it may depend on "
          f"(earlier sub-tensors up to position i + F, its own sub-tensor before i); every one of them is generated "
          f"at an earlier step of the schedule:")
    for k, row in enumerate(mask):
        print(f"   position {k}: " + " ".join("x" if m else ("*" if (k, z) == (i, s) else ".")
                                            for z, m in enumerate(row)))
    n_here = ss.step_of(i, s, F)
    assert all(ss.step_of(k, z, F) < n_here for k, z in zip(*np.nonzero(mask)))
    print(f"   ('*' is the sample itself, generated at step {n_here})\n")


def show_generation(seconds: float = 0.1) -> None:
    cfg = ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, subscale_factor=16, subscale_horizon=2,
                      subscale_channels=16, subscale_layers=3, subscale_previous="time",
                      subscale_context_order="lag", subscale_linear=2)
    model = random_model(cfg, seed=1, density=0.25, proj_density=0.5)
    ref = Vocoder(model, backend="reference")
    rng = np.random.default_rng(0)
    mel = ref.mel((0.1 * rng.standard_normal(int(seconds * ref.sample_rate))).astype(np.float32))
    want = ref.vocode(mel, seed=3)
    got = Vocoder(model, exact=True).vocode(mel, seed=3)  # the C engine; exact: libm exp/tanh, as the reference
    T, B, F = len(want), cfg.subscale_factor, cfg.subscale_horizon
    steps = ss.n_steps(T, B, F)
    print(f"4. a random Subscale-16 model (H = {cfg.hidden_size}, F = {F}): {T} samples in {steps} network steps, "
          f"{B} samples a step after the {ss.warmup_steps(B, F)}-step warm-up ({T / steps:.1f} on average here; "
          f"the warm-up's share shrinks as T grows)")
    print(f"   reference and C engine give the same samples: {np.array_equal(want, got)} "
          f"({int((want != got).sum())} of {T} differ)\n")
    if not np.array_equal(want, got):
        raise SystemExit("the engine and the reference disagree: please report this")


def show_cost() -> None:
    print("5. multiply-adds a sample: the WaveRNN step against the context network that subscale adds "
          "(an oversized context network eats the speed-up); its dilated layers kept at 25 %:")
    # the two shipped recipes: the H = 256 CPU experiment (rq3_subscale256_prev_c64s_lag_lin4*) and subscale_small.json
    for h, density, proj_density in ((256, 0.25, 0.125), (512, 0.10, 0.10)):
        cfg = ModelConfig(hidden_size=h, out_hidden=h // 2, subscale_factor=16, subscale_horizon=2,
                          subscale_channels=64, subscale_layers=4, subscale_linear=4)
        gru = ss.gru_macs_per_sample(cfg, density)
        ctx = ss.context_macs_per_sample(cfg, layer_density=0.25, proj_density=proj_density)
        print(f"   H = {h}, {density:.0%} of R kept (and of the heads here), C_x = 64, projection {proj_density:.1%} "
              f"kept: GRU step {gru['total']:,}, context {ctx['total']:,} (+{ctx['total'] / gru['total']:.0%}); "
              f"context parts {ctx}")


if __name__ == "__main__":
    show_fold()
    show_schedule()
    show_mask()
    show_generation()
    show_cost()
