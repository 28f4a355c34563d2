"""`pywavernn doctor`: what this installation runs on, and how fast it vocodes here.

What it is: a report of the build and the machine (pywavernn's version and location, Python, NumPy, the CPU, the
usable cores and OpenMP's thread settings, the kernel ISAs built, supported and selected, OpenMP, the CUDA backend's
availability, the bundled model) and a measured speed: the bundled model vocodes `seconds` of audio (mel of a
synthetic voiced sound) on the cpu backend, on one thread and on every usable core, timed end to end (mel ->
conditioning network -> sampling loop -> int16), reported as the real-time factor (processing time / audio time,
below 1 is faster than real time) and its inverse. What it is not: a benchmark (benchmarks/ has those, over grids of
model sizes and settings, with JSON results); one short run says whether this machine is in the expected range.

    pywavernn doctor [--seconds 2] [--threads N]      # or: pywavernn info --system
    python -c "from pywavernn.doctor import report; print(report())"

Tests: `python -m pytest tests/test_cli.py -q -k doctor`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import pywavernn
from pywavernn.batch import usable_cores


def cpu_name() -> str:
    """The CPU's model name where the OS says it (Linux /proc/cpuinfo, macOS sysctl), else platform's guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        import subprocess

        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def _kernel_lines() -> list[str]:
    from pywavernn import _native

    try:
        eng = _native.engine()
    except ImportError as exc:
        return [f"kernels:        NOT BUILT ({exc})"]
    from pywavernn.kernels import available_isas

    built = [name for name, i in sorted(eng.ISA_IDS.items(), key=lambda kv: kv[1]) if eng.isa_built(i)]
    forced = os.environ.get("PYWAVERNN_ISA", "").strip()
    return [f"kernels:        {pywavernn.selected_isa()} selected"
            + (f" (forced by PYWAVERNN_ISA={forced})" if forced else " (the best this CPU runs)"),
            f"                built: {', '.join(built)}; this CPU runs: {', '.join(available_isas())}",
            f"openmp:         {'enabled' if pywavernn.openmp_enabled() else 'not built in (single-threaded loops)'}"]


def _cuda_line() -> str:
    from pywavernn.engines import cuda

    ok, why = cuda.available()
    return f"cuda backend:   {'available: ' if ok else 'not available: '}{why}"


def _bundled_line() -> str:
    from pywavernn.vocoder import bundled_model_path

    try:
        path = bundled_model_path()
    except FileNotFoundError as exc:
        return f"bundled model:  missing ({exc})"
    model = pywavernn.load_model(path)
    cfg = model.model_config
    sparsity = model.sparsity().get("gru.R", 0.0)
    return (f"bundled model:  {path} ({path.stat().st_size / 1e6:.1f} MB): H = {cfg.hidden_size}, "
            f"R {sparsity:.0%} sparse in {cfg.block_shape[0]}x{cfg.block_shape[1]} blocks")


def synthetic_voice(seconds: float, sample_rate: int) -> np.ndarray:
    """A voiced sound (harmonics of a gliding 110-150 Hz pitch with a 1/k spectrum), float32 in [-0.5, 0.5]."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 130.0 + 20.0 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 30))
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def measure_speed(seconds: float = 2.0, threads: int = 1) -> tuple[float, float]:
    """(audio seconds, wall seconds) of vocoding `seconds` of audio with the bundled model on the cpu backend."""
    voc = pywavernn.Vocoder(threads=threads)
    mel = voc.mel(synthetic_voice(seconds, voc.sample_rate))
    voc.vocode(mel[:4], seed=0)  # first-call costs (thread team, page faults) are not the steady speed
    start = time.perf_counter()
    samples = voc.vocode(mel, seed=0)
    wall = time.perf_counter() - start
    return samples.shape[0] / voc.sample_rate, wall


def _speed_lines(seconds: float, threads: int | None) -> list[str]:
    cores = usable_cores()
    counts = sorted({1, threads or cores}) if pywavernn.openmp_enabled() else [1]
    lines = [f"speed:          bundled model, cpu backend, fp32 weights, {seconds:g} s of audio "
             f"(real-time factor = time / audio time; below 1 is faster than real time)"]
    for n in counts:
        audio_s, wall = measure_speed(seconds, n)
        rtf = wall / audio_s
        pace = f"{1 / rtf:.1f}x faster than real time" if rtf <= 1 else f"{rtf:.1f}x slower than real time"
        lines.append(f"                {n} thread{'s' if n > 1 else ' '}: {wall:.2f} s -> real-time factor {rtf:.3f} "
                     f"({pace})")
    return lines


def report(seconds: float = 2.0, threads: int | None = None, speed: bool = True) -> str:
    """The whole report as text. seconds: audio vocoded per speed measurement; threads: the second measurement's
    thread count (default: every usable core); speed=False skips the measurement."""
    if not seconds > 0:
        raise ValueError(f"seconds: expected a positive duration, found {seconds}")
    omp = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_PROC_BIND") if k in os.environ}
    lines = [f"pywavernn:      {pywavernn.__version__} at {Path(pywavernn.__file__).resolve().parent}",
             f"python:         {platform.python_version()} ({sys.executable}); numpy {np.__version__}",
             f"platform:       {platform.platform()}",
             f"cpu:            {cpu_name()}; {usable_cores()} usable cores of {os.cpu_count()}"
             + (f"; {', '.join(f'{k}={v}' for k, v in omp.items())}" if omp else ""),
             *_kernel_lines(), _cuda_line(), _bundled_line()]
    from pywavernn import _native

    if speed and _native.available():
        lines += _speed_lines(seconds, threads)
    return "\n".join(lines)
