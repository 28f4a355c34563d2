"""Per-kernel benchmark: GFLOP/s on stored weights (2 flops per stored weight per right-hand side) of
pywavernn's gemv/gemm kernels per ISA, block shape, density and storage, against NumPy dense (W @ x on the
masked matrix), scipy.sparse BSR / CSR and torch.sparse CSR / BSR (when torch is installed) on the same matrix,
all single-threaded; each row also gives its fraction of the machine's dense SGEMM peak measured in the same run
(NumPy float32 1024^3 matmul, one thread), and B-column rows their speed-up per output over B separate products.

What it is: the measuring script; every kernel's result is checked against NumPy before it is timed, all
candidates of one configuration are timed in alternating rounds (benchmarks/harness.py) and reported as medians.
What it is not: a test (nothing asserts a speed) nor end-to-end (samples/s is benchmarks/bench_vocoder-style work).
Timings include the Python wrapper's validation (~1-2 us per call); `wrapper_us` in the report measures it on a
1-row matrix so it can be subtracted.

    python -m benchmarks.bench_kernels            # full grid, results/bench_kernels.{json,md}
    python -m benchmarks.bench_kernels --quick    # one matrix, fewer rounds, results/bench_kernels_quick.{json,md}
    python -m benchmarks.bench_kernels --h256     # the WaveRNN-256 models' matrices (RQ3/RQ5), B = 1 and 16:
                                                  # results/bench_kernels_h256.{json,md}

Letters: M x N matrix shape, BH x BW block shape, B right-hand sides.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse

from benchmarks.harness import (Candidate, add_out_dir_option, format_table, interleaved_medians, machine_description,
                                write_report)
from pywavernn import kernels as K
from pywavernn.modelfile import pack_block_sparse


def masked_matrix(rng, m: int, n: int, block: tuple[int, int] | None, density: float) -> np.ndarray:
    w = rng.standard_normal((m, n)).astype(np.float32)
    if block is None:
        return w
    bh, bw = block
    keep = rng.random((m // bh, n // bw)) < density
    return w * np.kron(keep, np.ones((bh, bw), np.float32))


def wrapper_overhead_us() -> float:
    km = K.KernelMatrix(np.ones((1, 8), np.float32))
    x, y = np.ones(8, np.float32), np.zeros(1, np.float32)
    res = interleaved_medians([Candidate("wrapper", lambda: K.gemv(km, x, out=y))], rounds=3, min_seconds=0.1)
    return res["wrapper"]["median_s"] * 1e6


def sgemm_peak_gflops(rounds: int) -> float:
    """The machine's dense single-thread SGEMM rate: the ceiling each kernel's GFLOP/s is compared with."""
    a = np.random.default_rng(1).standard_normal((1024, 1024)).astype(np.float32)
    res = interleaved_medians([Candidate("sgemm", lambda: a @ a, 2.0 * 1024**3)], rounds=rounds, min_seconds=0.3)
    return res["sgemm"]["rate"] / 1e9


def torch_baselines(w: np.ndarray, x: np.ndarray, block):
    """torch.sparse CSR (and BSR for blocked matrices) products, if torch is installed: (name, fn) pairs."""
    try:
        import torch
    except ImportError:
        return []
    import warnings

    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.set_num_threads(1)
    wt, xt = torch.from_numpy(w), torch.from_numpy(np.ascontiguousarray(x.T))
    out = [("torch csr", wt.to_sparse_csr())]
    if block is not None:
        try:
            out.append(("torch bsr", wt.to_sparse_bsr(block)))
        except (RuntimeError, TypeError):  # some block shapes/builds lack BSR
            pass
    pairs = []
    for name, mat in out:
        try:
            (mat @ xt).numpy()
        except (RuntimeError, NotImplementedError):
            continue
        pairs.append((name, lambda mat=mat: (mat @ xt)))
    return pairs


def bench_config(rng, m, n, block, density, nrhs, rounds, min_seconds) -> list[dict]:
    w = masked_matrix(rng, m, n, block, density)
    x = rng.standard_normal((nrhs, n)).astype(np.float32)
    src = w if block is None else pack_block_sparse(w, *block)
    ref = (w.astype(np.float64) @ x.T.astype(np.float64)).T
    bsr = scipy.sparse.bsr_matrix(w, blocksize=block or (1, n))
    csr = scipy.sparse.csr_matrix(w)
    xt = np.ascontiguousarray(x.T)
    cands, base = [], {"shape": f"{m}x{n}", "block": "dense" if block is None else f"{block[0]}x{block[1]}",
                       "density": density, "B": nrhs}
    for storage in ("fp32", "fp16"):
        km = K.KernelMatrix(src, storage)
        flops = 2.0 * km.nnz * nrhs
        wq = km.weights_f32().astype(np.float64)
        for isa in K.available_isas():
            if nrhs == 1:
                out = np.zeros(m, np.float32)
                got = K.gemv(km, x[0], out=out, isa=isa)
                run = (lambda km=km, out=out, isa=isa: K.gemv(km, x[0], out=out, isa=isa))
            else:
                out = np.zeros((nrhs, m), np.float32)
                got = K.gemm(km, x, out=out, isa=isa)
                run = (lambda km=km, out=out, isa=isa: K.gemm(km, x, out=out, isa=isa))
            want = (wq @ x.T.astype(np.float64)).T.reshape(got.shape)
            tol = 1e-5 * (np.abs(wq) @ np.abs(x.T.astype(np.float64))).T.reshape(got.shape) + 1e-30
            if not np.all(np.abs(got - want) <= tol):
                raise AssertionError(f"{isa} {storage} kernel result differs from NumPy before timing")
            kname = ("sgemv" if nrhs == 1 else "sgemm") + ("_dense" if block is None else "")
            cands.append(Candidate(f"{isa}/{storage}", run, flops,
                                   {**base, "impl": f"pywavernn {isa}", "kernel": kname, "storage": storage}))
    nnz_flops = 2.0 * np.count_nonzero(w) * nrhs
    baselines = [("numpy dense", lambda: w @ xt), ("scipy bsr", lambda: bsr @ xt), ("scipy csr", lambda: csr @ xt)]
    for name, fn in baselines + torch_baselines(w, x, block):
        got = np.asarray(fn()).T.reshape(ref.shape)
        if not np.allclose(got, ref, rtol=1e-3, atol=1e-3):
            raise AssertionError(f"{name} result differs from float64 NumPy before timing")
        cands.append(Candidate(name, fn, nnz_flops, {**base, "impl": name, "kernel": "-", "storage": "fp32"}))
    res = interleaved_medians(cands, rounds=rounds, min_seconds=min_seconds)
    dense_s = res["numpy dense"]["median_s"]
    best_sparse = min(v["median_s"] for k, v in res.items() if k.startswith(("scipy", "torch")))
    rows = []
    for c in cands:
        r = res[c.name]
        rows.append({**r, "us": r["median_s"] * 1e6, "gflops": r["rate"] / 1e9, "vs_numpy_dense": dense_s / r["median_s"],
                     "vs_best_sparse_lib": best_sparse / r["median_s"]})
    return rows


def per_output_speedups(rows: list[dict]) -> None:
    """For each B-column row, 16 separate products' time over one B-column product's (same matrix, kernel)."""
    single = {(r["shape"], r["block"], r["density"], r["impl"], r["storage"]): r["median_s"]
              for r in rows if r["B"] == 1}
    for r in rows:
        key = (r["shape"], r["block"], r["density"], r["impl"], r["storage"])
        if r["B"] > 1 and key in single:
            r["per_output_speedup"] = r["B"] * single[key] / r["median_s"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one matrix shape, fewer rounds")
    ap.add_argument("--h256", action="store_true",
                    help="the matrices of research/experiments.md's H = 256 models instead of the grid (see above)")
    ap.add_argument("--rounds", type=int, default=None)
    add_out_dir_option(ap)
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    min_s = 0.05 if args.quick else 0.2
    rng = np.random.default_rng(0)
    machine = machine_description()
    grid = [((3072, 1024), (16, 1), 0.05, 1)]
    if args.h256:  # R (75 % pruned in 16x1 blocks), O1/O3 (50 %), O2/O4 dense as the plain loop stores them and
        # as all-kept 16x1 blocks as the subscale loop does (pywavernn/engines/subscale.py), one and 16 columns
        grid = [(shape, block, d, b) for shape, block, d in (((768, 256), (16, 1), 0.25), ((128, 128), (16, 1), 0.5),
                                                             ((256, 128), None, 1.0), ((256, 128), (16, 1), 1.0))
                for b in (1, 16)]
    elif not args.quick:
        grid += [((3072, 1024), b, d, 1) for b in ((16, 1), (4, 4), (1, 1)) for d in (0.05, 0.1, 0.2)
                 if (b, d) != ((16, 1), 0.05)]
        grid += [((3072, 1024), None, 1.0, 1), ((256, 512), None, 1.0, 1), ((3072, 1024), (16, 1), 0.05, 16),
                 ((3072, 1024), (4, 4), 0.05, 16), ((3072, 1024), (1, 1), 0.05, 16)]
    machine["sgemm_peak_gflops_1thread"] = peak = sgemm_peak_gflops(rounds)
    rows = []
    for (m, n), block, density, nrhs in grid:
        rows += bench_config(rng, m, n, block, density, nrhs, rounds, min_s)
    per_output_speedups(rows)
    machine["wrapper_us"] = wrapper_us = wrapper_overhead_us()
    for r in rows:
        r["fraction_of_peak"] = r["gflops"] / peak
        # the kernel alone: less the wrapper's per-call cost (matters for the small H = 256 matrices)
        r["us_net"] = max(r["us"] - wrapper_us, 1e-3) if r["impl"].startswith("pywavernn") else r["us"]
        r["gflops_net"] = r["gflops"] * r["us"] / r["us_net"]
    columns = [("shape", "M x N", ""), ("block", "block", ""), ("density", "density", ".2f"), ("B", "B", "d"),
               ("impl", "implementation", ""), ("storage", "weights", ""), ("us", "us/call (median)", ".1f")]
    if args.h256:
        columns += [("us_net", "us less wrapper", ".2f"), ("gflops_net", "GFLOP/s less wrapper", ".1f")]
    columns += [("gflops", "GFLOP/s", ".2f"), ("fraction_of_peak", "of SGEMM peak", ".2f"),
                ("vs_numpy_dense", "x numpy dense", ".1f"), ("vs_best_sparse_lib", "x best scipy/torch sparse", ".1f"),
                ("per_output_speedup", "B-col speed-up per output", ".2f")]
    table = format_table(rows, columns)
    name = "bench_kernels" + ("_h256" if args.h256 else "_quick" if args.quick else "")
    path = write_report(name, machine, rows, table, args.out_dir)
    print(table)
    print(f"\nSGEMM peak (NumPy, 1 thread): {peak:.1f} GFLOP/s. Python wrapper overhead per call "
          f"~{machine['wrapper_us']:.2f} us (included above). Report: {path}")


if __name__ == "__main__":
    main()
