"""The `pywavernn` command line: resynth, vocode, mel, info, doctor.

    pywavernn resynth IN.wav -o out.wav [--model MODEL] [--seed S]        # audio -> mel -> audio
    pywavernn resynth IN_DIR [MORE ...] -o OUT_DIR [--jobs N] [--quiet]   # every audio file, several at once
    pywavernn vocode MEL.npy -o out.wav                                   # mel (frames x n_mels) -> audio
    pywavernn vocode MEL_DIR -o OUT_DIR                                   # every .npy file
    pywavernn mel IN.wav -o mel.npy [--model MODEL]
    pywavernn info [MODEL]                 # a model's configs, parameters and sparsity; the bundled one by default
    pywavernn doctor [--seconds 2]         # ISA, OpenMP, threads, and a measured real-time factor (= info --system)

Several inputs, a folder, or an output ending in '/' (or an existing folder) make -o an output folder: it is
created if missing, each input is written to it as NAME.wav (a folder's layout is mirrored), and `--jobs` files
(default: the usable cores divided by --threads) are vocoded at once by threads sharing one Vocoder. A file that
cannot be read or vocoded is reported (`pywavernn: error: PATH: why`) and skipped; every other file is written,
and the exit status is 1 if any file failed. A progress bar shows on a terminal (stderr), never when it is not
one, nor with --quiet (which also drops the per-file lines; errors and failures are always printed).

Without --model the bundled model is used (pywavernn/data/default.safetensors: a Sparse WaveRNN trained on a
synthetic voice, for research and demonstration use only; its card is pywavernn/data/README.md).
Exit status: 0 on success; 2 for a usage error or, with one input file, an error in what the user passed (bad
file, wrong shape, NaN features), printed as one line `pywavernn: error: ...`; 1 when some files of several
failed; 130 when interrupted. Nothing half-written is ever left (outputs are written atomically).

Tests: `python -m pytest tests/test_cli.py -q`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from pywavernn import __version__


def _make_vocoder(args):
    from pywavernn.vocoder import Vocoder

    return Vocoder(args.model, backend=args.backend, weights=args.weights, threads=args.threads)


def cmd_info(args) -> int:
    from pywavernn import modelfile as fmt
    from pywavernn.vocoder import bundled_model_path

    if args.system:
        from pywavernn.doctor import report

        print(report(seconds=args.seconds))
        if args.model is None:
            return 0
        print()
    path = args.model if args.model is not None else bundled_model_path()
    what = "" if args.model is not None else " (the bundled model: research and demonstration use only; " \
                                             "its card is pywavernn/data/README.md)"
    print(f"file: {path}{what}")
    print(fmt.describe(fmt.load_model(path)))
    return 0


def cmd_doctor(args) -> int:
    from pywavernn.doctor import report

    print(report(seconds=args.seconds, threads=args.threads))
    return 0


def cmd_mel(args) -> int:
    from pywavernn import audio, features, modelfile as fmt
    from pywavernn.vocoder import bundled_model_path

    _check_output_path(args.output)
    model = fmt.load_model(args.model or bundled_model_path())
    wav = audio.load_audio(args.input, model.feature_config.sample_rate)
    mel = features.log_mel(wav, model.feature_config)
    _save_npy_atomic(args.output, mel)
    print(f"wrote {args.output}: {mel.shape[0]} frames x {mel.shape[1]} mel bins")
    return 0


def _is_output_folder(args) -> bool:
    out = args.output
    return (len(args.inputs) > 1 or any(Path(i).is_dir() for i in args.inputs)
            or out.endswith(("/", os.sep)) or Path(out).is_dir())


def _plan(args, kind: str) -> tuple[list, bool]:
    """The jobs of a resynth/vocode command and whether -o is a folder; ValueError before any work."""
    from pywavernn.batch import AUDIO_EXTENSIONS, MEL_EXTENSIONS, Job, find_inputs, plan_outputs

    if not _is_output_folder(args):
        _check_output_path(args.output)
        src = Path(args.inputs[0])
        return [Job(src, Path(src.name), output=Path(args.output))], False
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{args.output}: expected an output folder for several inputs or a folder, found a file")
    extensions = MEL_EXTENSIONS if kind == "vocode" else AUDIO_EXTENSIONS
    return plan_outputs(find_inputs(args.inputs, extensions, skip_folder=out_dir), out_dir), True


def _progress_bar(total: int, enabled: bool):
    """A tqdm bar over samples on stderr, or None."""
    if not enabled or total <= 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="sample", unit_scale=True, desc="vocoding", file=sys.stderr, leave=False,
                dynamic_ncols=True)


def _run(args, kind: str) -> int:
    from pywavernn.batch import expected_samples, run_jobs, summary, usable_cores

    jobs, to_folder = _plan(args, kind)
    voc = _make_vocoder(args)
    workers = args.jobs if args.jobs is not None else max(1, usable_cores() // args.threads)
    if args.backend == "cuda":  # one persistent kernel fills the GPU, and the CUDA library's error state is global
        workers = 1
    show_bar = not args.quiet and sys.stderr.isatty()
    total = sum(expected_samples(j, kind, voc.sample_rate, voc.hop_length) for j in jobs) if show_bar else 0
    bar = _progress_bar(total, show_bar)
    say = print if bar is None else (lambda line, file=sys.stdout: bar.write(line, file=file))
    counted = [0]

    def on_done(result) -> None:
        counted[0] += 1
        if bar is not None:
            bar.set_description(f"vocoding ({counted[0]}/{len(jobs)} files done)")
        if result.error is not None:
            error = result.error
            source = str(result.job.source)
            say(f"pywavernn: error: {error if source in error else f'{source}: {error}'}", file=sys.stderr)
        elif not args.quiet:
            say(f"wrote {result.job.output}: {result.seconds_of_audio:.2f} s at {voc.sample_rate} Hz")

    start = time.perf_counter()
    try:
        results = run_jobs(voc, jobs, kind, seed=args.seed, workers=workers,
                           on_progress=None if bar is None else bar.update, on_done=on_done)
    finally:
        if bar is not None:
            bar.close()
    failed = any(r.error is not None for r in results)
    if not to_folder:
        return 2 if failed else 0
    if failed or not args.quiet:
        print(summary(results, time.perf_counter() - start), file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def cmd_vocode(args) -> int:
    return _run(args, "vocode")


def cmd_resynth(args) -> int:
    return _run(args, "resynth")


def _check_output_path(path: str) -> None:
    """Refuse an unusable output path before any work is done, not after minutes of vocoding."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{path}: expected an output file name, found a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{path}: the output directory {parent} does not exist")


def _save_npy_atomic(path: str, array: np.ndarray) -> None:
    from pywavernn.atomic import atomic_write

    with atomic_write(path) as fh:
        np.save(fh, array, allow_pickle=False)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, found {text!r}")
    return value


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model file (.safetensors); default: the bundled model")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default 0)")
    p.add_argument("--backend", choices=("cpu", "reference", "cuda"), default="cpu", help="default: cpu")
    p.add_argument("--weights", choices=("fp32", "fp16"), default="fp32", help="cpu backend weight storage")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="threads per file on the cpu backend (default 1)")
    p.add_argument("--jobs", type=_positive_int, metavar="N",
                   help="files vocoded at once (default: usable cores / --threads; cuda: 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no per-file lines (errors stay)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pywavernn", description="WaveRNN neural vocoder (24 kHz, 16-bit).")
    parser.add_argument("--version", action="version", version=f"pywavernn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("resynth", help="audio -> mel -> audio, for files or folders")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders of them")
    p.add_argument("-o", "--output", required=True,
                   help="output audio file (.wav, .flac) for one input file; else an output folder")
    _add_engine_args(p)
    p.set_defaults(func=cmd_resynth)

    p = sub.add_parser("vocode", help="mel (.npy, frames x n_mels) -> audio, for files or folders")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".npy files or folders of them")
    p.add_argument("-o", "--output", required=True,
                   help="output audio file (.wav, .flac) for one input file; else an output folder")
    _add_engine_args(p)
    p.set_defaults(func=cmd_vocode)

    p = sub.add_parser("mel", help="compute the model's log-mel features of an audio file")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output .npy, shape (frames, n_mels)")
    p.add_argument("--model", help="model whose feature config to use; default: the bundled model")
    p.set_defaults(func=cmd_mel)

    p = sub.add_parser("info", help="print a model file's configs, parameters and sparsity (default: the bundled "
                                    "model); --system: the doctor's report")
    p.add_argument("model", nargs="?", help="model file (.safetensors); default: the bundled model")
    p.add_argument("--system", action="store_true", help="print the build, the machine and a measured speed")
    p.add_argument("--seconds", type=_positive_float, default=2.0, help="with --system: audio seconds timed")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("doctor", help="the build (ISA, OpenMP), the machine (cores, threads) and a measured "
                                      "real-time factor of the bundled model")
    p.add_argument("--seconds", type=_positive_float, default=2.0, help="audio seconds vocoded per timing (default 2)")
    p.add_argument("--threads", type=_positive_int,
                   help="threads of the second timing (default: every usable core)")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `pywavernn info | head`: the reader left; say nothing more on the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError, ImportError) as exc:  # OSError: FileNotFoundError, permissions, ...
        print(f"pywavernn: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("pywavernn: error: out of memory (is the input or the model's feature config unusually large?)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pywavernn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
