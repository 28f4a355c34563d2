"""End-to-end benchmark: samples/s and speed relative to real time (24 kHz) of the C sampling loop
(pywavernn.engines.cpu.CpuEngine.generate) over hidden size x sparsity x block shape x pruned matrices x threads x
weight storage, against the NumPy reference, plain per-sample PyTorch loops of the same dense model and, for
dense H = 896, the 'streaming bound' (the five matrix x vector products alone, same kernels) and B = 16 batching.

What it is: the measuring script. Before anything is timed, every configuration is validated: the engine in exact
mode gives the reference's very first 300 samples (the fp16 engine against the reference on the fp16-rounded
weights), the engine as timed (fast mode) reproduces the reference's per-step logits teacher-forced on those
samples (relative 1e-4), the PyTorch loops reproduce them too, and the bound's kernels match NumPy. All candidates
of one model are timed in alternating rounds (benchmarks/harness.py) and reported as medians.
What it is not: a test (nothing asserts a speed), nor a measure of trained models (random weights of the right
shape and sparsity: speed does not depend on training), nor of the conditioning network (frame rate, NumPy,
run once per utterance: the engine is handed g).

    python -m benchmarks.bench_e2e             # full grid -> results/bench_e2e.{json,md}
    python -m benchmarks.bench_e2e --quick     # the key rows, < 2 min -> results/bench_e2e_quick.{json,md}
    python -m benchmarks.bench_e2e --hidden 1024 --density 0.05 --block 16x1 --prune all --threads 1 2

Letters: H hidden units, K output-head hidden units (256 here), B right-hand sides, T samples.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import time

import numpy as np

try:  # the NumPy reference's BLAS gets one thread, like every other single-thread row
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

from benchmarks.harness import (Candidate, add_out_dir_option, format_table, interleaved_medians, machine_description,
                                write_report)
from pywavernn import _native
from pywavernn import kernels as K
from pywavernn.common import STEP_MATRICES
from pywavernn.config import ModelConfig
from pywavernn.engines.cpu import CpuEngine
from pywavernn.modelfile import BlockSparseMatrix, Model, unpack_block_sparse
from pywavernn.conditioning import conditioning_ref
from pywavernn.reference.plain import generate_ref
from pywavernn.testing import random_model

SAMPLE_RATE = 24000
OUT_HIDDEN = 256
MATRICES = STEP_MATRICES  # the matrices a model may store block-sparse
VALIDATE_STEPS = 300  # one frame
STEP_RTOL = 1e-4  # fast mode vs reference, relative to 1 + |value| (tests/test_engine.py states why)


@dataclasses.dataclass(frozen=True)
class Config:
    hidden: int
    density: float | None  # None: dense
    block: tuple[int, int] = (1, 1)
    prune: str = "all"  # "all": R and O1..O4 block-sparse; "gru": only R

    @property
    def label(self) -> str:
        if self.density is None:
            return f"dense-{self.hidden}"
        return (f"sparse-{self.hidden} {100 * (1 - self.density):.0f}% {self.block[0]}x{self.block[1]} "
                f"{'all' if self.prune == 'all' else 'GRU-only'}")


# --- models and validation ------------------------------------------------------------------------------------

def build_model(cfg: Config) -> Model:
    mcfg = ModelConfig(hidden_size=cfg.hidden, out_hidden=OUT_HIDDEN, cond_channels=16, block_shape=cfg.block)
    if cfg.density is None:
        return random_model(mcfg, seed=0)
    sparse = random_model(mcfg, seed=0, density=cfg.density)
    if cfg.prune == "all":
        return sparse
    dense = random_model(mcfg, seed=0)
    weights = dict(dense.weights, **{"gru.R": sparse.weights["gru.R"]})
    return Model(mcfg, dense.feature_config, weights, {"source": "bench_e2e", "prune": "gru"})


def as_dense(model: Model, fp16: bool) -> Model:
    """The same model with every matrix dense (the reference's BLAS path is fast), optionally fp16-rounded."""
    weights = dict(model.weights)
    for name in MATRICES:
        w = weights[name]
        w = unpack_block_sparse(w) if isinstance(w, BlockSparseMatrix) else w
        weights[name] = w.astype(np.float16).astype(np.float32) if fp16 else w
    return Model(model.model_config, model.feature_config, weights, {})


def inputs(model: Model, n_frames: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    mel = rng.standard_normal((n_frames, model.model_config.n_mels)).astype(np.float32)
    uniforms = rng.random((n_frames * model.feature_config.hop_length, 2), dtype=np.float32)
    return mel, conditioning_ref(model, mel), uniforms


def steps_close(got: dict, want: dict, n: int) -> float:
    """Largest relative difference of the per-step logits (and h, when present) over the first n steps."""
    worst = 0.0
    for key in ("h", "logits_c", "logits_f"):
        if key in got:
            a, b = np.asarray(got[key])[:n], want[key][:n]
            worst = max(worst, float((np.abs(a - b) / (1 + np.abs(b))).max()))
    return worst


def validate_engines(cfg: Config, model: Model, storages, threads) -> None:
    mel, g, uniforms = inputs(model, 1)
    for storage in storages:
        samples, trace = generate_ref(as_dense(model, storage == "fp16"), mel, uniforms, trace=True)
        for th in threads:
            exact = CpuEngine(model, weights=storage, threads=th, exact=True).generate(g, uniforms)
            if not np.array_equal(exact, samples):
                raise AssertionError(f"{cfg.label} {storage} t={th}: exact-mode samples differ from the reference "
                                     f"from sample {int(np.flatnonzero(exact != samples)[0])}")
            fast = CpuEngine(model, weights=storage, threads=th).trace(g, samples, VALIDATE_STEPS)
            err = steps_close(fast, trace, VALIDATE_STEPS)
            if err > STEP_RTOL:
                raise AssertionError(f"{cfg.label} {storage} t={th}: fast-mode steps off by {err:.3g}")


# --- PyTorch loops ----------------------------------------------------------------------------------------------

class TorchLoops:
    """Per-sample PyTorch generation of the same dense model, one thread, under no_grad, sampling with softmax +
    torch.multinomial (its own RNG: the uniforms of §4 are not used, so samples are not compared; the logits are).

    gru_cell: the way popular PyTorch WaveRNN code generates -- nn.GRUCell on [x_t, conditioning features] and
    nn.Linear heads. With the coarse/fine split the cell runs twice a sample (c_t is an input of the fine half
    and an output of the coarse half), so R h is computed twice.
    split:    one nn.Linear R h a sample and the gate equations on slices (the split-GRU of the original
    WaveRNN code): the same arithmetic as the C loop, so the fair baseline.
    """

    def __init__(self, model: Model):
        import torch

        from training.model import WaveRNN

        torch.set_num_threads(1)
        self.torch = torch
        self.net = WaveRNN.from_model(model).eval()
        H, C = model.model_config.hidden_size, model.model_config.cond_channels
        self.H, self.half, self.hop = H, H // 2, model.feature_config.hop_length
        self.cell = torch.nn.GRUCell(3 + C, H)
        with torch.no_grad():
            for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.cell, p).copy_(getattr(self.net.gru, p + "_l0"))
            self.R = torch.nn.Linear(H, 3 * H)
            self.R.weight.copy_(torch.from_numpy(model.dense("gru.R")))
            self.R.bias.copy_(torch.from_numpy(model.dense("gru.b_R")))
        self.w_in = torch.from_numpy(model.dense("gru.W_in"))
        self.byte = self.net.byte_input

    def _heads(self, y, first: bool):
        n = self.net
        torch = self.torch
        return (n.O2(torch.relu(n.O1(y))) if first else n.O4(torch.relu(n.O3(y))))

    def _pick(self, logits, forced, t, k, record):
        if forced is None:
            return int(self.torch.multinomial(self.torch.softmax(logits, -1), 1))
        record[k].append(logits.numpy().copy())
        return int(forced[k][t])

    def run_gru_cell(self, mel, n, forced=None, record=None):
        torch, half = self.torch, self.half
        with torch.no_grad():
            z = self.net.upsample(self.net.conditioning_features(torch.from_numpy(mel)[None]), n)[0]  # (T, C)
            h = torch.zeros(1, self.H)
            c_prev, f_prev = 128, 0
            for t in range(n):
                x = torch.cat([torch.stack([self.byte[c_prev], self.byte[f_prev], self.byte.new_zeros(())]), z[t]])
                h_c = self.cell(x[None], h)[0, :half]  # coarse rows ignore c_t (the input mask)
                c_t = self._pick(self._heads(h_c, True), forced, t, 0, record)
                x[2] = self.byte[c_t]
                h = self.cell(x[None], h)
                f_prev = self._pick(self._heads(h[0, half:], False), forced, t, 1, record)
                c_prev = c_t

    def run_split(self, g, n, forced=None, record=None):
        torch, H, half, hop = self.torch, self.H, self.half, self.hop
        with torch.no_grad():
            g = torch.from_numpy(g)
            w_in = self.w_in
            h = torch.zeros(H)
            c_prev, f_prev = 128, 0
            for t in range(n):
                j, a = t // hop, float(np.float32(t % hop) / np.float32(hop))
                cond = torch.lerp(g[j], g[min(j + 1, g.shape[0] - 1)], a).view(3, 2, half)
                rh = self.R(h).view(3, 2, half)
                gi = (self.byte[c_prev] * w_in[:, 0] + self.byte[f_prev] * w_in[:, 1]).view(3, 2, half) + cond
                h_c = _gates_torch(torch, h[:half], gi[:, 0], rh[:, 0])
                c_t = self._pick(self._heads(h_c, True), forced, t, 0, record)
                gi_f = gi[:, 1] + self.byte[c_t] * w_in[:, 2].view(3, 2, half)[:, 1]
                h_f = _gates_torch(torch, h[half:], gi_f, rh[:, 1])
                f_prev = self._pick(self._heads(h_f, False), forced, t, 1, record)
                h = torch.cat([h_c, h_f])
                c_prev = c_t

    def validate(self, model: Model, n: int = 100) -> None:
        mel, g, uniforms = inputs(model, 1)
        samples, trace = generate_ref(model, mel, uniforms, trace=True)
        forced = ((samples.astype(np.int32) + 32768) >> 8, (samples.astype(np.int32) + 32768) & 255)
        for name, run, arg in (("gru_cell", self.run_gru_cell, mel), ("split", self.run_split, g)):
            record = ([], [])
            run(arg, n, forced, record)
            err = steps_close({"logits_c": record[0], "logits_f": record[1]}, trace, n)
            if err > 1e-3:
                raise AssertionError(f"torch {name} loop: logits off by {err:.3g} from the reference")


def _gates_torch(torch, h, gi, rh):  # §3 on (3, n) slices
    u = torch.sigmoid(gi[0] + rh[0])
    r = torch.sigmoid(gi[1] + rh[1])
    e = torch.tanh(gi[2] + r * rh[2])
    return u * h + (1 - u) * e


# --- the streaming bound and B = 16 ------------------------------------------------------------------------------

def raw_call_overhead_s(isa: int) -> float:
    """Seconds of one raw _engine.gemv call on a 1 x 8 matrix: the Python cost inside each bound call."""
    eng = _native.engine()
    km = K.KernelMatrix(np.ones((1, 8), np.float32))
    x, y = np.ones(8, np.float32), np.zeros(1, np.float32)
    res = interleaved_medians([Candidate("call", lambda: eng.gemv(isa, km.native, x, None, y, 0, 1))], 3, 0.1)
    return res["call"]["median_s"]


def bound_candidates(engine: CpuEngine, storage: str, overhead_s: float, rng, batched: bool) -> list[Candidate]:
    """R h, O1 y_c, O2, O3 y_f, O4 (B = 1, gemv) and, if batched, the same with B = 16 right-hand sides (gemm),
    each product checked against NumPy first."""
    eng, isa, H = _native.engine(), _native.selected_isa_id(), engine.hidden
    out = []
    for nrhs in ((1, 16) if batched else (1,)):
        rhs = tuple(range(nrhs))  # the raw gemm takes the rows of x to multiply (pywavernn.kernels.gemm's rhs)
        h = rng.standard_normal((nrhs, H)).astype(np.float32)
        hid = np.abs(rng.standard_normal((nrhs, OUT_HIDDEN))).astype(np.float32)
        xs = (h, np.ascontiguousarray(h[:, :H // 2]), hid, np.ascontiguousarray(h[:, H // 2:]), hid)
        calls = []
        for m, x in zip(engine.matrices, xs):
            y = np.zeros((nrhs, m.shape[0]), np.float32)
            x = x[0] if nrhs == 1 else x
            y = y[0] if nrhs == 1 else y
            calls.append((m.native, x, y, m.n_block_rows))
            if nrhs == 1:
                eng.gemv(isa, m.native, x, None, y, 0, m.n_block_rows)
            else:
                eng.gemm(isa, m.native, x, rhs, None, y, 0, m.n_block_rows)
            w = m.weights_f32().astype(np.float64)
            want, scale = x.astype(np.float64) @ w.T, np.abs(x).astype(np.float64) @ np.abs(w).T
            if not np.all(np.abs(y - want) <= 1e-5 * scale + 1e-30):
                raise AssertionError(f"bound B={nrhs} {storage}: {m!r} differs from NumPy")
        if nrhs == 1:
            def run(calls=calls):
                for c, x, y, rows in calls:
                    eng.gemv(isa, c, x, None, y, 0, rows)
        else:
            def run(calls=calls, rhs=rhs):
                for c, x, y, rows in calls:
                    eng.gemm(isa, c, x, rhs, None, y, 0, rows)
        out.append(Candidate(f"bound B={nrhs} {storage}", run, float(nrhs), {
            "impl": "matvec bound, B=1" if nrhs == 1 else "matmul bound, B=16 (per column)",
            "weights": storage, "threads": 1, "raw_overhead_s": 5 * overhead_s}))
    return out


def weight_bytes(engine: CpuEngine) -> int:
    """Bytes of R and O1..O4 (values and block indices) read per sample."""
    return sum(m.values.nbytes + (m.row_ptr.nbytes + m.col_idx.nbytes if not m.dense else 0) for m in engine.matrices)


# --- one model: all its candidates in interleaved rounds ---------------------------------------------------------

def bench_model(cfg: Config, storages, threads, n_samples, rounds, min_s, with_ref, with_torch, with_batched_bound,
                with_batch, log) -> list[dict]:
    model = build_model(cfg)
    t0 = time.perf_counter()
    validate_engines(cfg, model, storages, threads)
    n_frames = max(1, n_samples // model.feature_config.hop_length)
    mel, g, uniforms = inputs(model, n_frames)
    n = uniforms.shape[0]
    cands = []
    base = {"config": cfg.label, "hidden": cfg.hidden, "density": cfg.density, "block": f"{cfg.block[0]}x{cfg.block[1]}"
            if cfg.density is not None else "dense", "prune": cfg.prune if cfg.density is not None else "-"}
    for storage in storages:
        kib = weight_bytes(CpuEngine(model, weights=storage)) / 1024
        for th in threads:
            eng = CpuEngine(model, weights=storage, threads=th)
            cands.append(Candidate(f"engine {storage} t={th}", lambda e=eng: e.generate(g, uniforms), n,
                                   {"impl": "pywavernn C loop", "weights": storage, "threads": th,
                                    "weight_kib": kib}))
        if with_batch and max(threads) > 1:
            th = max(threads)
            eng = CpuEngine(model, weights=storage, threads=1)
            gs, us = [g] * th, [uniforms] * th
            got = eng.generate_batch(gs, us, threads=th)
            if not all(np.array_equal(x, got[0]) for x in got):
                raise AssertionError(f"{cfg.label}: batch items differ")
            cands.append(Candidate(f"batch {storage} t={th}",
                                   lambda e=eng, gs=gs, us=us, th=th: e.generate_batch(gs, us, threads=th),
                                   th * n, {"impl": f"generate_batch, {th} utterances", "weights": storage,
                                            "threads": th}))
    if with_ref:
        ref_mel, _, ref_u = inputs(model, 1)
        cands.append(Candidate("reference", lambda: generate_ref(model, ref_mel, ref_u), ref_u.shape[0],
                               {"impl": "NumPy reference", "weights": "fp32", "threads": 1}))
    if with_torch and cfg.density is None:
        loops = TorchLoops(model)
        loops.validate(model)
        tn = 200
        cands.append(Candidate("torch split", lambda: loops.run_split(g, tn), tn,
                               {"impl": "PyTorch loop, split GRU (1 R h/sample)", "weights": "fp32", "threads": 1}))
        cands.append(Candidate("torch gru_cell", lambda: loops.run_gru_cell(mel[:1], tn), tn,
                               {"impl": "PyTorch loop, GRUCell x2/sample", "weights": "fp32", "threads": 1}))
    overhead, rng = raw_call_overhead_s(_native.selected_isa_id()), np.random.default_rng(3)
    for storage in storages:
        cands += bound_candidates(CpuEngine(model, weights=storage), storage, overhead, rng, with_batched_bound)
    log(f"  {cfg.label}: validated in {time.perf_counter() - t0:.1f} s; timing {len(cands)} candidates")
    res = interleaved_medians(cands, rounds=rounds, min_seconds=min_s)
    rows = []
    for c in cands:
        r = dict(res[c.name], **base)
        us = r["median_s"] / c.work * 1e6
        if "raw_overhead_s" in r:  # the bound without the 5 Python calls' own cost
            us = (r["median_s"] - r["raw_overhead_s"]) / c.work * 1e6
        rows.append(dict(r, name=c.name, us_per_sample=us, samples_per_s=1e6 / us, x_realtime=1e6 / us / SAMPLE_RATE))
    annotate(rows)
    return rows


def annotate(rows: list[dict]) -> None:
    """Ratios within one model's rows: vs the torch split loop, and the fraction of the B = 1 bound."""
    torch_us = next((r["us_per_sample"] for r in rows if r["name"] == "torch split"), None)
    bounds = {r["weights"]: r["us_per_sample"] for r in rows if r["name"].startswith("bound B=1 ")}
    for r in rows:
        if torch_us:
            r["x_torch"] = torch_us / r["us_per_sample"]
        if r["name"].startswith("engine") and r["weights"] in bounds and r["threads"] == 1:
            r["of_bound"] = bounds[r["weights"]] / r["us_per_sample"]


# --- grid and report ---------------------------------------------------------------------------------------------

KEY_SPARSE = Config(1024, 0.05, (16, 1), "all")  # the 48,000 samples/s target


def grid(args) -> list[Config]:
    if args.quick:
        return [KEY_SPARSE, Config(896, None)]
    configs = [Config(h, None) for h in args.hidden]
    for d in args.density:
        for b in args.block:
            for p in args.prune:
                configs.append(Config(args.sparse_hidden, d, b, p))
    return configs


def parse_block(s: str) -> tuple[int, int]:
    bh, bw = s.lower().split("x")
    return int(bh), int(bw)


def run_grid(args, rounds: int, min_s: float, n_samples: int) -> list[dict]:
    rows = []
    for cfg in grid(args):
        big = cfg.density is None and cfg.hidden >= 896
        rows += bench_model(cfg, args.weights, args.threads, n_samples // 2 if big else n_samples, rounds, min_s,
                            with_ref=not args.no_reference and (cfg.density is None or cfg == KEY_SPARSE),
                            with_torch=not args.no_torch, with_batched_bound=big, with_batch=not args.no_batch,
                            log=lambda s: print(s, flush=True))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="sparse-1024 95%% 16x1 and dense-896 only, short runs")
    ap.add_argument("--hidden", type=int, nargs="*", default=[384, 512, 896], help="dense hidden sizes")
    ap.add_argument("--sparse-hidden", type=int, default=1024)
    ap.add_argument("--density", type=float, nargs="*", default=[0.10, 0.05, 0.03], help="kept fraction")
    ap.add_argument("--block", type=parse_block, nargs="*", default=[(16, 1), (4, 4)])
    ap.add_argument("--prune", nargs="*", choices=["all", "gru"], default=["all", "gru"])
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--weights", nargs="*", choices=["fp32", "fp16"], default=["fp32", "fp16"])
    ap.add_argument("--samples", type=int, default=None, help="samples per timed engine call")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-batch", action="store_true", help="skip generate_batch rows")
    ap.add_argument("--name", default=None, help="report name (default bench_e2e, or bench_e2e_quick)")
    add_out_dir_option(ap)
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    min_s = 0.05 if args.quick else 0.2
    n_samples = args.samples or (1200 if args.quick else 2400)
    name = args.name or ("bench_e2e_quick" if args.quick else "bench_e2e")
    machine = machine_description()
    machine["omp_num_threads_env"] = os.environ.get("OMP_NUM_THREADS")
    machine["numpy_blas_threads"] = 1 if threadpool_limits else "library default (threadpoolctl not installed)"
    blas = threadpool_limits(limits=1, user_api="blas") if threadpool_limits else contextlib.nullcontext()
    t_start = time.perf_counter()
    with blas:
        rows = run_grid(args, rounds, min_s, n_samples)
    with open("/proc/loadavg") as fh:
        machine["loadavg_at_end"] = fh.read().split()[:3]
    machine["wall_s"] = round(time.perf_counter() - t_start, 1)
    table = format_table(rows, [("config", "model", ""), ("impl", "implementation", ""), ("weights", "weights", ""),
                                ("threads", "threads", "d"), ("weight_kib", "weights KiB/sample", ",.0f"),
                                ("samples_per_s", "samples/s", ",.0f"),
                                ("x_realtime", "x real time", ".2f"), ("us_per_sample", "us/sample", ".2f"),
                                ("x_torch", "x torch loop", ".1f"), ("of_bound", "of bound", ".0%")])
    notes = ("samples/s: medians over interleaved rounds; 'x real time' = samples/s / 24,000. 'of bound' = time of "
             "the five matrix x vector products alone (same kernels, B = 1, minus the raw call overhead) / time of "
             "the whole loop, single thread. 'x torch loop' is against the PyTorch split-GRU loop (same arithmetic, "
             "1 thread). Random weights; K = 256; the conditioning network is not timed.")
    path = write_report(name, machine, rows, table + "\n\n" + notes, args.out_dir)
    print(table)
    print(f"\n{notes}\nReport: {path} ({machine['wall_s']} s)")


if __name__ == "__main__":
    main()
