"""CUDA benchmark: samples/s of pywavernn's CUDA sampler (pywavernn.engines.cuda.CudaEngine) against plain
PyTorch-on-GPU per-sample loops of the same model, in the same interleaved rounds, for WaveRNN-896 dense and
sparse-1024 (95 %, 16x1, densified: the kernel is dense), one utterance and batches.

What it is: the measuring script for the CUDA issue's targets (WaveRNN-896, one utterance >= 192,000 samples/s;
>= 20x the plain PyTorch GPU loop; batched >= 2,000,000 samples/s). Before anything is timed, every candidate is
validated against pywavernn.reference.plain.generate_ref on the first 600 samples (two frames), with uniforms moved off
class edges (pywavernn.testing.uniforms_clear_of_class_edges, margin 1e-4 of the cdf total) so that two correct
float32 implementations must pick the same classes: the CUDA engine's samples must equal the reference's and its
per-step h and logits lie within 1e-4 (tests/test_cuda.py's tolerance); its batch rows must equal single calls;
the PyTorch loops' samples must equal the reference's and their logits lie within 1e-3 relative.
What it is not: a test (nothing asserts a speed; missed targets are reported, not raised), nor a measure of the
conditioning network (frame rate, host side: every candidate is handed g) or of trained weights (random weights
of the right shapes and sparsity: speed does not depend on training).

Candidates, per model, timed in alternating rounds (benchmarks/harness.py), medians reported:
  cuda B=b          CudaEngine.generate: g (b, F, 3H) + uniforms -> int16 (b, T), host to host, 1 s utterances
  torch loop B=b    the way popular PyTorch WaveRNN code generates (benchmarks/torch_gpu_loop.py: per sample one
                    nn.Linear R h, the gate equations on slices, the heads, inverse-CDF sampling with the given
                    uniforms, no host sync per sample), torch.cuda.synchronize at the end. B = 1 is the
                    single-utterance baseline; B > 1 puts N utterances in the batch dimension.
  torch graph B=b   the same step, one CUDA graph per frame (hop steps captured), replayed per frame

    python -m benchmarks.bench_cuda                    # on a GPU -> benchmarks/results/bench_cuda.{json,md}
    python -m benchmarks.bench_cuda --cpu-dry-run      # no GPU: the PyTorch loop on the CPU, a CPU stand-in for
                                                       # the CUDA engine, a few hundred samples; report to a tmp dir
    python -m benchmarks.bench_cuda --quick            # a smoke run (CI): on a GPU 0.1 s utterances, B 1 and 2,
                                                       # 2 rounds; without one, the dry run on a dense H = 128 model
Without a CUDA device (and without --cpu-dry-run or --quick) it prints "no CUDA device: ..." and exits 0.
Exit status 1 if a validation failed (the report is still written, failed rows marked).

Letters: H hidden units, K output-head hidden units (256), B/b batch, F frames, hop samples per frame, T samples.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

import numpy as np

try:  # pywavernn.audio imports soundfile at module level; this script reads and writes no audio
    import soundfile  # noqa: F401
    SOUNDFILE_STUBBED = False
except ImportError:  # the GPU image lacks it: a stub lets pywavernn.reference.plain import (audio I/O would fail)
    sys.modules["soundfile"] = types.ModuleType("soundfile")
    SOUNDFILE_STUBBED = True

from benchmarks.harness import (
    OUT_ENV,
    Candidate,
    format_table,
    interleaved_medians,
    machine_description,
    write_report,
)
from benchmarks.torch_gpu_loop import TorchLoop
from pywavernn.common import STEP_MATRICES
from pywavernn.config import ModelConfig
from pywavernn.modelfile import BlockSparseMatrix, Model, unpack_block_sparse
from pywavernn.conditioning import cond_at, conditioning_ref
from pywavernn.reference.plain import generate_ref
from pywavernn.testing import random_model, uniforms_clear_of_class_edges

SAMPLE_RATE = 24000
OUT_HIDDEN = 256
MATRICES = STEP_MATRICES  # the matrices a model may store block-sparse
VALIDATE_FRAMES = 2  # 600 samples: two frames, so frame-to-frame carry (graph rows) is checked too
EDGE_MARGIN = 1e-4
CUDA_ATOL = 1e-4  # h and logits vs the reference, absolute (tests/test_cuda.py)
TORCH_RTOL = 1e-3  # logits vs the reference, relative to 1 + |value| (bench_e2e's torch check)
TARGET_SINGLE = 192_000
TARGET_RATIO = 20.0
TARGET_BATCHED = 2_000_000


@dataclasses.dataclass(frozen=True)
class Config:
    hidden: int
    density: float | None  # None: dense
    block: tuple[int, int] = (1, 1)

    @property
    def label(self) -> str:
        if self.density is None:
            return f"dense-{self.hidden}"
        return f"sparse-{self.hidden} {100 * (1 - self.density):.0f}% {self.block[0]}x{self.block[1]}"


CONFIGS = {"dense-896": Config(896, None), "sparse-1024": Config(1024, 0.05, (16, 1)),
           "dense-128": Config(128, None)}  # the smoke run's model on the CPU (--quick without a GPU)


# --- models and inputs (bench_e2e's construction where it imports) ------------------------------------------------

def build_model(cfg: Config) -> Model:
    try:
        from benchmarks import bench_e2e

        return bench_e2e.build_model(bench_e2e.Config(cfg.hidden, cfg.density, cfg.block, "all"))
    except ImportError:  # the same construction, in case bench_e2e's imports fail on this machine
        mcfg = ModelConfig(hidden_size=cfg.hidden, out_hidden=OUT_HIDDEN, cond_channels=16, block_shape=cfg.block)
        return random_model(mcfg, seed=0, density=cfg.density)


def as_dense(model: Model) -> Model:
    """The same model with every matrix dense (the reference's BLAS path and the PyTorch loops use this)."""
    weights = dict(model.weights)
    for name in MATRICES:
        w = weights[name]
        weights[name] = unpack_block_sparse(w) if isinstance(w, BlockSparseMatrix) else w
    return Model(model.model_config, model.feature_config, weights, dict(model.provenance))


def utterances(model: Model, batch: int, n_frames: int, seed: int):
    """(g (batch, F, 3H), uniforms (batch, T, 2)): distinct random mels through the conditioning network."""
    rng = np.random.default_rng(seed)
    hop = model.feature_config.hop_length
    gs, us = [], []
    for _ in range(batch):
        mel = rng.normal(-4.0, 1.5, size=(n_frames, model.model_config.n_mels)).astype(np.float32)
        gs.append(conditioning_ref(model, mel))
        us.append(rng.random((n_frames * hop, 2), dtype=np.float32))
    return np.stack(gs), np.stack(us)


# --- a CPU stand-in for CudaEngine (--cpu-dry-run only: exercises this script's CUDA-engine code paths) ----------

class CpuStandIn:
    """CudaEngine's generate/generate_trace/info on the NumPy reference (exact), for the dry run."""

    def __init__(self, model: Model):
        self.model, self.hop = as_dense(model), model.feature_config.hop_length

    def _one(self, g, u, trace):
        from pywavernn.reference import plain as ref

        h = np.zeros(self.model.model_config.hidden_size, np.float32)
        c, f = 128, 0
        out, steps = [], {"h": [], "logits_c": [], "logits_f": []}
        for t in range(u.shape[0]):
            h, c, f, lc, lf = ref.generate_step_ref(self.model, h, c, f, cond_at(g, t, self.hop), u[t, 0], u[t, 1])
            out.append((c << 8 | f) - 32768)
            for k, v in (("h", h), ("logits_c", lc), ("logits_f", lf)):
                steps[k].append(v)
        samples = np.asarray(out, np.int16)
        return (samples, {k: np.asarray(v) for k, v in steps.items()}) if trace else samples

    def generate(self, g, uniforms):
        if g.ndim == 2:
            return self._one(g, uniforms, False)
        return np.stack([self._one(g[b], uniforms[b], False) for b in range(g.shape[0])])

    def generate_trace(self, g, uniforms):
        return self._one(g, uniforms, True)

    @property
    def info(self) -> dict:
        return {"device_name": "CPU stand-in (dry run: NumPy reference)"}

    def close(self):
        pass


# --- validation ----------------------------------------------------------------------------------------------------

def validation_inputs(model: Model, dense: Model, log):
    """One frame: (mel, g (F, 3H), uniforms cleared of class edges, reference samples, reference trace)."""
    rng = np.random.default_rng(11)
    mel = rng.normal(-4.0, 1.5, size=(VALIDATE_FRAMES, model.model_config.n_mels)).astype(np.float32)
    u0 = rng.random((VALIDATE_FRAMES * model.feature_config.hop_length, 2), dtype=np.float32)
    t0 = time.perf_counter()
    u = uniforms_clear_of_class_edges(lambda uu: generate_ref(dense, mel, uu, trace=True), u0, margin=EDGE_MARGIN)
    want, trace = generate_ref(dense, mel, u, trace=True)
    log(f"    reference: {len(want)} samples, {int(np.sum(u != u0))} draws moved off class edges "
        f"({time.perf_counter() - t0:.1f} s)")
    return mel, conditioning_ref(dense, mel), u, want, trace


def first_diff(a, b) -> int | None:
    d = np.flatnonzero(np.asarray(a) != np.asarray(b))
    return int(d[0]) if d.size else None


def validate_cuda(engine, vin, g_time, u_time, batches) -> dict:
    _, g, u, want, trace = vin
    got, steps = engine.generate_trace(g, u)
    out = {"samples_checked": len(want)}
    d = first_diff(got, want)
    upto = len(want) if d is None else d
    for key in ("h", "logits_c", "logits_f"):
        out[f"max_abs_{key}"] = float(np.abs(np.asarray(steps[key])[:upto] - trace[key][:upto]).max()) if upto else None
    errs = []
    if d is not None:
        errs.append(f"samples differ from the reference from sample {d} (draws are >= {EDGE_MARGIN} of the cdf "
                    f"total from class edges)")
    if any(v is not None and v > CUDA_ATOL for k, v in out.items() if k.startswith("max_abs")):
        errs.append(f"h/logits off by more than {CUDA_ATOL}: " +
                    ", ".join(f"{k}={v:.3g}" for k, v in out.items() if k.startswith("max_abs") and v is not None))
    single = engine.generate(g, u)  # the plain entry point agrees with the traced one
    if first_diff(single, got) is not None:
        errs.append(f"generate() differs from generate_trace() from sample {first_diff(single, got)}")
    bmax = max(batches)
    if bmax > 1:  # batch rows equal single calls, on the timed inputs
        batch = engine.generate(g_time[:bmax], u_time[:bmax])
        for b in range(bmax):
            d = first_diff(batch[b], engine.generate(g_time[b], u_time[b]))
            if d is not None:
                errs.append(f"batch {bmax}: row {b} differs from the single call from sample {d}")
                break
        out["batch_rows_checked"] = bmax
    out["ok"], out["errors"] = not errs, errs
    return out


def validate_torch(loop: TorchLoop, vin, graphs: bool, n_validate: int) -> dict:
    _, g, u, want, trace = vin
    n = min(n_validate, len(want))
    record: list = []
    got = loop.run(g[None], u[None], n, record)[0]
    lc = np.stack([r[0][0] for r in record])
    lf = np.stack([r[1][0] for r in record])
    d = first_diff(got, want[:n])
    upto = n if d is None else d
    err = max(float((np.abs(lc[:upto] - trace["logits_c"][:upto]) / (1 + np.abs(trace["logits_c"][:upto]))).max()),
              float((np.abs(lf[:upto] - trace["logits_f"][:upto]) / (1 + np.abs(trace["logits_f"][:upto]))).max()))
    out = {"samples_checked": n, "logits_rel_err": err}
    errs = []
    if d is not None:
        errs.append(f"torch loop: samples differ from the reference from sample {d}")
    if err > TORCH_RTOL:
        errs.append(f"torch loop: logits off by {err:.3g} (> {TORCH_RTOL})")
    pair = loop.run(np.stack([g, g]), np.stack([u, u]), n)  # the batch dimension is independent
    if first_diff(pair[0], got) is not None or first_diff(pair[1], got) is not None:
        errs.append("torch loop B=2: rows differ from B=1")
    if graphs:
        gg = loop.run_graph(g[None], u[None], len(want))[0]
        d = first_diff(gg, want)
        if d is not None:
            errs.append(f"torch graph: samples differ from the reference from sample {d}")
        out["graph_samples_checked"] = len(want)
    out["ok"], out["errors"] = not errs, errs
    return out


# --- one model -----------------------------------------------------------------------------------------------------

def bench_model(key: str, args, device: str, dry: bool, log) -> tuple[list[dict], dict]:
    cfg = CONFIGS[key]
    t0 = time.perf_counter()
    model = build_model(cfg)
    dense = as_dense(model)
    hop = model.feature_config.hop_length
    log(f"  {cfg.label}: model built ({time.perf_counter() - t0:.1f} s)")
    vin = validation_inputs(model, dense, log)
    report: dict = {"config": cfg.label, "hidden": cfg.hidden, "density": cfg.density}
    cands: list[Candidate] = []
    bmax = max(args.batches + args.torch_batches)
    g_all, u_all = utterances(dense, bmax, args.frames, seed=5)
    T = args.frames * hop
    Tt = args.torch_frames * hop

    # (a) the CUDA engine (or the stand-in)
    engine = None
    if args.no_engine:
        report["cuda"] = {"skipped": "--no-engine"}
    else:
        try:
            if dry:
                engine = CpuStandIn(model)
            else:
                from pywavernn.engines import cuda

                engine = cuda.CudaEngine(model, cluster_size=args.cluster)
                report["cuda_info"] = engine.info
            report["cuda"] = validate_cuda(engine, vin, g_all, u_all, args.batches)
            log(f"    cuda validation: {'ok' if report['cuda']['ok'] else 'FAILED: ' + '; '.join(report['cuda']['errors'])}")
        except Exception as exc:  # CudaError (timeout, launch failure), RuntimeError: report and go on  # noqa: BLE001
            report["cuda"] = {"ok": False, "errors": [f"{type(exc).__name__}: {exc}"],
                              "traceback": traceback.format_exc()[-3000:]}
            log(f"    cuda engine FAILED: {type(exc).__name__}: {exc}")
            engine = None
    if engine is not None and "traceback" not in report["cuda"]:
        valid = report["cuda"]["ok"]
        for b in args.batches:
            if b == 1:
                run = (lambda e=engine, g=g_all[0], u=u_all[0]: e.generate(g, u))
            else:
                run = (lambda e=engine, g=g_all[:b], u=u_all[:b]: e.generate(g, u))
            cands.append(Candidate(f"cuda B={b}", run, float(b * T),
                                   {"impl": "pywavernn CUDA" if not dry else "CPU stand-in (dry run)", "batch": b,
                                    "samples": T, "valid": valid}))

    # (b), (c), (d) the PyTorch loops
    loop = None
    if args.no_torch:
        report["torch"] = {"skipped": "--no-torch"}
    else:
        try:
            loop = TorchLoop(dense, device)
            graphs = not args.no_graphs  # on the CPU (dry run): the graph's frame logic without capture
            report["torch"] = validate_torch(loop, vin, graphs, args.torch_validate)
            log(f"    torch validation: {'ok' if report['torch']['ok'] else 'FAILED: ' + '; '.join(report['torch']['errors'])}")
        except Exception as exc:  # noqa: BLE001
            report["torch"] = {"ok": False, "errors": [f"{type(exc).__name__}: {exc}"],
                               "traceback": traceback.format_exc()[-3000:]}
            log(f"    torch loop FAILED: {type(exc).__name__}: {exc}")
            loop = None
    if loop is not None:
        valid = report["torch"]["ok"]
        for b in args.torch_batches:
            cands.append(Candidate(f"torch loop B={b}",
                                   lambda lp=loop, g=g_all[:b], u=u_all[:b]: lp.run(g, u, Tt), float(b * Tt),
                                   {"impl": f"PyTorch loop ({device})", "batch": b, "samples": Tt, "valid": valid}))
        if not args.no_graphs:
            for b in sorted({1, max(args.torch_batches)}):
                try:
                    t1 = time.perf_counter()
                    loop.run_graph(g_all[:b], u_all[:b], hop)  # capture now, not inside the timing
                    log(f"    torch graph B={b}: captured ({time.perf_counter() - t1:.1f} s)")
                except Exception as exc:  # noqa: BLE001
                    report.setdefault("torch_graph_errors", []).append(f"B={b}: {type(exc).__name__}: {exc}")
                    log(f"    torch graph B={b} FAILED: {exc}")
                    continue
                cands.append(Candidate(f"torch graph B={b}",
                                       lambda lp=loop, g=g_all[:b], u=u_all[:b]: lp.run_graph(g, u, Tt),
                                       float(b * Tt), {"impl": "PyTorch loop, CUDA graph per frame" if device == "cuda" else
                                                       "PyTorch loop, graph frame uncaptured (dry run)", "batch": b,
                                                       "samples": Tt, "valid": valid}))
    report["validate_s"] = round(time.perf_counter() - t0, 1)
    if not cands:
        return [], report
    log(f"  {cfg.label}: validated in {report['validate_s']} s; timing {len(cands)} candidates")
    try:
        res = interleaved_medians(cands, rounds=args.rounds, min_seconds=args.min_seconds)
    except Exception as exc:  # noqa: BLE001 -- e.g. a CudaError mid-timing: keep the other models' results
        report["timing"] = {"ok": False, "errors": [f"{type(exc).__name__}: {exc}"],
                            "traceback": traceback.format_exc()[-3000:]}
        log(f"    timing FAILED: {type(exc).__name__}: {exc}")
        return [], report
    rows = []
    for c in cands:
        r = dict(res[c.name], name=c.name, config=cfg.label)
        r["samples_per_s"] = r["rate"]
        r["x_realtime"] = r["rate"] / SAMPLE_RATE
        r["us_per_step"] = r["median_s"] / r["samples"] * 1e6  # wall time per sample position of the call
        rows.append(r)
    annotate(rows)
    if engine is not None:
        engine.close()
    return rows, report


def annotate(rows: list[dict]) -> None:
    """x torch B=1 (the single-utterance plain loop) and x torch same B, within one model's rows."""
    loop = {r["batch"]: r["samples_per_s"] for r in rows if r["name"].startswith("torch loop")}
    for r in rows:
        if 1 in loop:
            r["x_torch_b1"] = r["samples_per_s"] / loop[1]
        if r["batch"] in loop:
            r["x_torch_same_b"] = r["samples_per_s"] / loop[r["batch"]]
        if not r.get("valid", True):
            r["name"] += " (INVALID)"


def targets(rows: list[dict], label: str = "dense-896") -> dict:
    """The issue's three targets, on WaveRNN-896 dense, from valid rows only."""
    mine = [r for r in rows if r["config"] == label and r.get("valid", True)]
    single = next((r for r in mine if r["name"].startswith("cuda B=1")), None)
    loop1 = next((r for r in mine if r["name"].startswith("torch loop B=1")), None)
    cuda_b = [r for r in mine if r["name"].startswith("cuda B=")]
    best = max(cuda_b, key=lambda r: r["samples_per_s"], default=None)
    out = {}
    out["single"] = {"target": TARGET_SINGLE, "value": single["samples_per_s"] if single else None}
    out["x_torch_loop"] = {"target": TARGET_RATIO,
                           "value": single["samples_per_s"] / loop1["samples_per_s"] if single and loop1 else None}
    out["batched"] = {"target": TARGET_BATCHED, "value": best["samples_per_s"] if best else None,
                      "batch": best["batch"] if best else None}
    for v in out.values():
        v["met"] = None if v["value"] is None else bool(v["value"] >= v["target"])
    return out


# --- machine -------------------------------------------------------------------------------------------------------

def driver_version() -> str | None:
    try:
        p = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30, check=False)
        if p.returncode == 0 and p.stdout.strip():
            return p.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:  # the CUDA driver API version, if nvidia-smi is missing
        v = ctypes.c_int(0)
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(v)) == 0:
            return f"CUDA driver API {v.value // 1000}.{v.value % 1000 // 10}"
    except OSError:
        pass
    return None


def describe_machine(device: str) -> dict:
    m = machine_description()
    try:
        import torch

        m["torch"] = torch.__version__
        m["torch_cuda"] = torch.version.cuda
        if device == "cuda":
            m["gpu"] = torch.cuda.get_device_name(0)
            p = torch.cuda.get_device_properties(0)
            m["gpu_sms"] = p.multi_processor_count
            m["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
    except Exception as exc:  # noqa: BLE001
        m["torch_error"] = str(exc)
    if device == "cuda":
        m["driver_version"] = driver_version()
        try:
            from pywavernn.engines import cuda

            m["pywavernn_cuda_library"] = str(cuda.library_path())
            m["pywavernn_cuda_limits"] = cuda.limits()
        except Exception as exc:  # noqa: BLE001
            m["pywavernn_cuda_error"] = str(exc)
    return m


def cuda_device_reason() -> tuple[bool, str]:
    """(True, '') when a CUDA device is usable by torch or by the pywavernn library; else (False, why)."""
    reasons = []
    try:
        import torch

        if torch.cuda.is_available():
            return True, ""
        reasons.append(f"torch {torch.__version__} sees no CUDA device")
    except ImportError as exc:
        reasons.append(f"torch not importable ({exc})")
    try:
        from pywavernn.engines import cuda

        ok, why = cuda.available()
        if ok:
            return True, ""
        reasons.append(f"pywavernn.engines.cuda: {why}")
    except Exception as exc:  # noqa: BLE001
        reasons.append(f"pywavernn.engines.cuda: {exc}")
    return False, "; ".join(reasons)


# --- main ----------------------------------------------------------------------------------------------------------

def parse_ints(s: str) -> list[int]:
    v = [int(x) for x in s.split(",") if x.strip()]
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, found {s!r}")
    return v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="no GPU needed: the PyTorch loop on the CPU and a CPU stand-in for the CUDA engine, a few "
                         "hundred samples, report to a temporary folder (checks this script, measures nothing)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: short utterances, batches 1 and 2, 2 rounds; without a CUDA device the dry run "
                         "on a small model (checks this script in about a minute, measures nothing)")
    ap.add_argument("--models", nargs="*", choices=sorted(CONFIGS), default=None,
                    help="default dense-896 sparse-1024 (the --quick dry run: dense-128)")
    ap.add_argument("--frames", type=int, default=None, help="frames per CUDA utterance (default 80 = 1 s)")
    ap.add_argument("--torch-frames", type=int, default=None, help="frames per PyTorch loop call (default 10)")
    ap.add_argument("--batches", type=parse_ints, default=None, help="CUDA batch sizes (default 1,2,4,8)")
    ap.add_argument("--torch-batches", type=parse_ints, default=None, help="PyTorch loop batches (default 1,8)")
    ap.add_argument("--torch-validate", type=int, default=300, help="steps of the torch loop checked (<= 300)")
    ap.add_argument("--cluster", type=int, default=0, choices=[0, 8, 16], help="CudaEngine cluster_size")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--min-seconds", type=float, default=None)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-graphs", action="store_true", help="skip the CUDA-graph PyTorch rows")
    ap.add_argument("--no-engine", action="store_true", help="skip the pywavernn CUDA engine rows")
    ap.add_argument("--name", default=None, help="report name (default bench_cuda, or bench_cuda_cpu_dryrun)")
    ap.add_argument("--out-dir", type=Path, default=None,
                    help="report folder (default $PYWAVERNN_BENCH_OUT, else benchmarks/results, or for a dry run a "
                         "new temporary folder)")
    args = ap.parse_args(argv)
    dry = args.cpu_dry_run

    def log(s):
        print(s, flush=True)

    if not dry:
        ok, why = cuda_device_reason()
        if not ok and args.quick:
            log(f"no CUDA device: {why}. --quick runs the CPU dry run instead (checks this script, measures nothing).")
            dry = True
        elif not ok:
            print(f"no CUDA device: {why}. Nothing measured (run on a GPU machine, or --cpu-dry-run to check the "
                  f"script).")
            return 0
    args.models = args.models or (["dense-128"] if dry and args.quick else ["dense-896", "sparse-1024"])
    device = "cpu" if dry else "cuda"
    if not dry:
        try:
            import torch

            if not torch.cuda.is_available():
                args.no_torch = True
                log("torch sees no CUDA device: PyTorch rows skipped")
        except ImportError:
            args.no_torch = True
            log("torch not importable: PyTorch rows skipped")
    if dry:
        import torch

        torch.set_num_threads(1)  # it measures nothing; spinning OpenMP threads only slow it on a busy machine
    short = dry or args.quick
    args.frames = args.frames or (1 if dry else 8 if args.quick else 80)
    args.torch_frames = args.torch_frames or (1 if short else 10)
    args.batches = args.batches or ([1, 2] if short else [1, 2, 4, 8])
    args.torch_batches = args.torch_batches or ([1, 2] if short else [1, 8])
    args.rounds = args.rounds or (2 if short else 5)
    args.min_seconds = args.min_seconds if args.min_seconds is not None else (0.0 if short else 0.3)
    name = args.name or ("bench_cuda_cpu_dryrun" if dry else "bench_cuda_quick" if args.quick else "bench_cuda")
    out_dir = args.out_dir  # None: $PYWAVERNN_BENCH_OUT or benchmarks/results, but a dry run's never the latter
    if out_dir is None and dry and not os.environ.get(OUT_ENV):
        out_dir = Path(tempfile.mkdtemp(prefix="bench_cuda_"))

    machine = describe_machine(device)
    machine["soundfile"] = "stubbed (not installed; no audio I/O here)" if SOUNDFILE_STUBBED else "installed"
    machine["mode"] = "cpu dry run (nothing here measures a GPU)" if dry else "cuda"
    t_start = time.perf_counter()
    rows, reports = [], {}
    for key in args.models:
        r, rep = bench_model(key, args, device, dry, log)
        rows += r
        reports[CONFIGS[key].label] = rep
    machine["wall_s"] = round(time.perf_counter() - t_start, 1)
    tg = targets(rows)
    results = {"rows": rows, "validation": reports, "targets": tg,
               "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    table = format_table(rows, [("config", "model", ""), ("name", "candidate", ""), ("batch", "batch", "d"),
                                ("samples", "samples/utt.", ",d"), ("samples_per_s", "samples/s", ",.0f"),
                                ("x_realtime", "x real time", ".2f"), ("us_per_step", "us/step", ".2f"),
                                ("x_torch_b1", "x torch loop B=1", ".1f"),
                                ("x_torch_same_b", "x torch loop same B", ".1f")])
    fmt = {"single": "{:,.0f} samples/s", "x_torch_loop": "{:.1f}x", "batched": "{:,.0f} samples/s"}
    lines = ["| target (WaveRNN-896 dense) | required | measured | met |", "|---|---|---|---|"]
    for k, v in tg.items():
        val = "not measured" if v["value"] is None else fmt[k].format(v["value"])
        if k == "batched" and v["batch"]:
            val += f" (B={v['batch']})"
        met = "n/a" if v["met"] is None else ("MET" if v["met"] else "MISSED")
        lines.append(f"| {k} | {fmt[k].format(v['target'])} | {val} | {met} |")
    failures = [f"{m}: {part}: {e}" for m, rep in reports.items() for part in ("cuda", "torch", "timing")
                for e in rep.get(part, {}).get("errors", [])]
    notes = ("samples/s: medians over interleaved rounds (all candidates of a model alternate); 'x real time' = "
             "samples/s / 24,000; us/step = wall time of one call / samples per utterance (a batch generates B "
             "samples per step). cuda rows: host-to-host CudaEngine.generate, 1 s utterances (g given; the "
             "conditioning network is not timed). torch rows: plain PyTorch split-GRU loop on the same "
             f"(densified) model, {args.torch_frames * 300} samples per call, cond upsampled on the device in the "
             "call, inverse-CDF sampling with the same uniforms, synchronize at the end; 'graph' rows replay one "
             "CUDA graph per frame. Targets use the dense-896 rows: single = cuda B=1, x_torch_loop = cuda B=1 / "
             "torch loop B=1, batched = best cuda B. Random weights; K = 256. Validation (before timing): first "
             "samples equal to pywavernn.reference on edge-cleared uniforms (cuda and torch graph: 600, torch loop: "
             "300), h/logits within 1e-4 (cuda), logits within 1e-3 (torch loop); batch rows equal single calls.")
    if dry:
        notes = "**CPU DRY RUN: the 'cuda' rows are a NumPy stand-in; nothing here is a GPU figure.**\n\n" + notes
    body = table + "\n\n" + "\n".join(lines) + "\n\n" + notes
    if failures:
        body += "\n\nValidation failures:\n" + "\n".join(f"- {f}" for f in failures)
    path = write_report(name, machine, results, body, out_dir)
    print(table)
    print()
    print("\n".join(lines))
    if failures:
        print("\nValidation failures:\n" + "\n".join(f"- {f}" for f in failures))
    print(f"\nReport: {path} and {path.with_suffix('.md')} ({machine['wall_s']} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
