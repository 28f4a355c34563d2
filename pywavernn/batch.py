"""Vocoding many files: find the inputs, name the outputs, run several files at once, keep going past bad ones.

What it is: the engine of `pywavernn resynth|vocode IN... -o OUTDIR` (pywavernn/cli.py), usable from Python too.
`find_inputs` expands files and folders (searched recursively, hidden folders skipped) into jobs; `plan_outputs`
names each job's output under the output folder, mirroring the input folder's layout, and refuses, before any work,
two inputs that would write one file or an output that would overwrite an input; `run_jobs` runs the jobs on a
pool of threads sharing one `Vocoder` (immutable, thread-safe; the C sampling loop releases the GIL, so N threads
keep N cores busy), writes every output atomically, and returns one `JobResult` per job: a file that cannot be read
or vocoded is reported and skipped, the others are written.
What it is not: the sampling loop (pywavernn/engines/). It does not use `CpuEngine.generate_batch`, which needs every
utterance in memory at once and runs the cpu backend only: here each file is read, vocoded and written as a thread
gets to it, with the same parallelism on every backend that releases the GIL.

    from pywavernn import Vocoder
    from pywavernn.batch import find_inputs, plan_outputs, run_jobs
    jobs = plan_outputs(find_inputs(["speech/"], AUDIO_EXTENSIONS), "out/")
    results = run_jobs(Vocoder(), jobs, kind="resynth", workers=2)
    failed = [r for r in results if r.error]

Tests: `python -m pytest tests/test_cli.py -q`.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

# What a folder given to `resynth` is searched for (any case); a file named explicitly is tried whatever its name.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
MEL_EXTENSIONS = (".npy",)
KINDS = ("resynth", "vocode")


@dataclass
class Job:
    """One input file and, once planned, the output file it is written to. `missing` holds the reason when the
    input could not be found (reported as that job's failure, so the other jobs still run)."""

    source: Path
    relative: Path  # the output's path under the output folder, before its suffix is set
    output: Path | None = None
    missing: str | None = None


@dataclass
class JobResult:
    job: Job
    seconds_of_audio: float = 0.0
    error: str | None = None


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one, as in a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _walk(folder: Path, extensions: Sequence[str], skip: Path | None) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (skip is None or (here / d).resolve() != skip))
        found += [here / f for f in sorted(filenames)
                  if not f.startswith(".") and Path(f).suffix.lower() in extensions]
    return found


def find_inputs(paths: Sequence[str | os.PathLike], extensions: Sequence[str],
                skip_folder: str | os.PathLike | None = None) -> list[Job]:
    """A job per input file: each path given, or every file under a folder whose suffix is in `extensions`.

    skip_folder (the output folder) is not searched, so a second run into a folder inside the input folder does not
    vocode the first run's outputs. A path that does not exist, or a folder holding no such file, becomes a job whose
    `missing` says so."""
    skip = Path(skip_folder).resolve() if skip_folder is not None else None
    jobs: list[Job] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = _walk(path, extensions, skip)
            if not files:
                jobs.append(Job(path, Path(path.name), missing=f"no {'/'.join(extensions)} files in this folder"))
            jobs += [Job(f, f.relative_to(path)) for f in files]
        elif path.exists():
            jobs.append(Job(path, Path(path.name)))
        else:
            jobs.append(Job(path, Path(path.name), missing="no such file or folder"))
    return jobs


def plan_outputs(jobs: list[Job], out_dir: str | os.PathLike, suffix: str = ".wav") -> list[Job]:
    """Set each job's output to out_dir / its relative path with `suffix`. ValueError, before any work, if two
    jobs would write the same file or an output would replace one of the inputs."""
    out_dir = Path(out_dir)
    by_output: dict[Path, Job] = {}
    inputs = {j.source.resolve() for j in jobs if j.missing is None}
    for job in jobs:
        job.output = out_dir / job.relative.with_suffix(suffix)
        if job.missing is not None:
            continue
        key = job.output.resolve()
        if key in by_output:
            raise ValueError(f"{by_output[key].source} and {job.source} would both be written to {job.output}; "
                             f"expected inputs with distinct names (vocode them into separate folders)")
        if key in inputs:
            raise ValueError(f"{job.output}: the output would replace an input file; expected an output folder "
                             f"apart from the inputs")
        by_output[key] = job
    return jobs


def expected_samples(job: Job, kind: str, sample_rate: int, hop: int) -> int:
    """The samples a job will produce, read from the file's header only (0 if unreadable: the job then fails
    and its error is reported; the estimate only sizes the progress bar)."""
    try:
        if kind == "vocode":
            return int(np.load(job.source, mmap_mode="r", allow_pickle=False).shape[0]) * hop
        import soundfile as sf

        info = sf.info(str(job.source))
        return round(info.frames * sample_rate / info.samplerate)
    except Exception:  # noqa: BLE001 - any unreadable file: the job itself reports why
        return 0


def vocode_one(voc, job: Job, kind: str, seed: int, progress: Callable[[int], None] | None) -> float:
    """Read, vocode and write one job's file; returns the seconds of audio written. Errors propagate."""
    from pywavernn import audio

    if kind == "vocode":
        try:
            mel = np.load(job.source, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"not a readable .npy array ({exc})") from None
        samples = voc.vocode(mel, seed=seed, progress=progress)
    else:
        wav = audio.load_audio(job.source, voc.sample_rate)
        samples = voc.vocode(voc.mel(wav), seed=seed, progress=progress)[: wav.shape[0]]
    job.output.parent.mkdir(parents=True, exist_ok=True)
    audio.save_audio(job.output, samples, voc.sample_rate)
    return samples.shape[0] / voc.sample_rate


def describe_error(exc: BaseException) -> str:
    """One line: the message, with the exception's type where it is not one of the expected input errors."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, (ValueError, TypeError, OSError)):
        return message
    return f"{type(exc).__name__}: {message}"


class Interrupted(Exception):
    """Raised inside a job's progress callback once the batch is told to stop (Ctrl-C)."""


def run_jobs(voc, jobs: list[Job], kind: str, *, seed: int = 0, workers: int = 1,
             on_progress: Callable[[int], None] | None = None,
             on_done: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Run every job (planned outputs) on `workers` threads; one JobResult per job, in the jobs' order.

    on_progress(n) is called with the samples newly done and on_done(result) as each job ends; both from the worker
    threads, never two at once. A failing job never stops the others. On KeyboardInterrupt the jobs not started
    are dropped, the running ones stop at their next progress report (about a second of audio; nothing is written
    for them) and the KeyboardInterrupt is raised again."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, found {kind!r}")
    lock, stop = threading.Lock(), threading.Event()

    def run(job: Job) -> JobResult:
        done = [0]

        def progress(n_done: int) -> None:  # always given: it is also where a running job learns to stop
            if stop.is_set():
                raise Interrupted("interrupted")
            with lock:
                if on_progress is not None:
                    on_progress(n_done - done[0])
                done[0] = n_done

        if job.missing is not None:
            result = JobResult(job, error=job.missing)
        else:
            try:
                result = JobResult(job, vocode_one(voc, job, kind, seed, progress))
            except MemoryError:
                result = JobResult(job, error="out of memory")
            except Exception as exc:  # noqa: BLE001 - a bad file is reported and skipped, the batch goes on
                result = JobResult(job, error=describe_error(exc))
        with lock:
            if on_done is not None and not stop.is_set():
                on_done(result)
        return result

    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs) or 1)))
    try:
        futures = [pool.submit(run, job) for job in jobs]
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def summary(results: list[JobResult], wall_seconds: float) -> str:
    ok = [r for r in results if r.error is None]
    audio_s = sum(r.seconds_of_audio for r in ok)
    speed = f", {audio_s / wall_seconds:.1f}x real time" if wall_seconds > 0 and audio_s > 0 else ""
    line = f"vocoded {len(ok)} of {len(results)} files ({audio_s:.1f} s of audio in {wall_seconds:.1f} s{speed})"
    failed = [r for r in results if r.error is not None]
    if failed:
        line += f"; {len(failed)} failed: " + ", ".join(str(r.job.source) for r in failed)
    return line
