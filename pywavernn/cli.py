"""The `pywavernn` command line: info, mel, vocode, resynth.

    pywavernn info MODEL
    pywavernn mel IN.wav -o mel.npy [--model MODEL]
    pywavernn vocode MEL.npy -o out.wav [--model MODEL] [--seed S] [--backend cpu|reference]
    pywavernn resynth IN.wav -o out.wav [--model MODEL] [--seed S]

Without --model the bundled model is used (pywavernn/data/default.safetensors: a Sparse WaveRNN trained on a
synthetic voice, for research and demonstration use only; its card is pywavernn/data/README.md).
Errors in what the user passed (bad files, wrong shapes, NaN
features) are printed as one line, `pywavernn: error: ...`, with exit status 2; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pywavernn import __version__


def _progress_bar(total: int, enabled: bool):
    """A tqdm bar over samples and the callback that advances it (None when disabled)."""
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="sample", unit_scale=True, desc="vocoding", file=sys.stderr, leave=False)
    done = [0]

    def advance(n_done: int) -> None:
        bar.update(n_done - done[0])
        done[0] = n_done

    return bar, advance


def _make_vocoder(args):
    from pywavernn.vocoder import Vocoder

    return Vocoder(args.model, backend=args.backend, weights=args.weights, threads=args.threads)


def _vocode_with_progress(voc, mel: np.ndarray, seed: int, quiet: bool) -> np.ndarray:
    total = mel.shape[0] * voc.hop_length
    bar, advance = _progress_bar(total, enabled=not quiet and sys.stderr.isatty())
    try:
        return voc.vocode(mel, seed=seed, progress=advance)
    finally:
        if bar is not None:
            bar.close()


def cmd_info(args) -> int:
    from pywavernn import modelfile as fmt

    print(fmt.describe(fmt.load_model(args.model)))
    return 0


def cmd_mel(args) -> int:
    from pywavernn import audio, features, modelfile as fmt
    from pywavernn.vocoder import bundled_model_path

    model = fmt.load_model(args.model or bundled_model_path())
    wav = audio.load_audio(args.input, model.feature_config.sample_rate)
    mel = features.log_mel(wav, model.feature_config)
    _save_npy_atomic(args.output, mel)
    print(f"wrote {args.output}: {mel.shape[0]} frames x {mel.shape[1]} mel bins")
    return 0


def cmd_vocode(args) -> int:
    from pywavernn import audio

    try:
        mel = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{args.input}: not a readable .npy array ({exc})") from None
    voc = _make_vocoder(args)
    samples = _vocode_with_progress(voc, mel, args.seed, args.quiet)
    audio.save_audio(args.output, samples, voc.sample_rate)
    print(f"wrote {args.output}: {samples.shape[0] / voc.sample_rate:.2f} s at {voc.sample_rate} Hz")
    return 0


def cmd_resynth(args) -> int:
    from pywavernn import audio

    voc = _make_vocoder(args)
    wav = audio.load_audio(args.input, voc.sample_rate)
    mel = voc.mel(wav)
    samples = _vocode_with_progress(voc, mel, args.seed, args.quiet)[: wav.shape[0]]
    audio.save_audio(args.output, samples, voc.sample_rate)
    print(f"wrote {args.output}: {samples.shape[0] / voc.sample_rate:.2f} s at {voc.sample_rate} Hz")
    return 0


def _check_output_path(path: str) -> None:
    """Refuse an unusable output path before any work is done, not after minutes of vocoding."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{path}: expected an output file name, found a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{path}: the output directory {parent} does not exist")


def _save_npy_atomic(path: str, array: np.ndarray) -> None:
    from pywavernn._atomic import atomic_write

    with atomic_write(path) as fh:
        np.save(fh, array, allow_pickle=False)


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model file (.safetensors); default: the bundled model")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default 0)")
    p.add_argument("--backend", choices=("cpu", "reference", "cuda"), default="cpu", help="default: cpu")
    p.add_argument("--weights", choices=("fp32", "fp16"), default="fp32", help="cpu backend weight storage")
    p.add_argument("--threads", type=int, default=1, help="threads for the cpu backend (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pywavernn", description="WaveRNN neural vocoder (24 kHz, 16-bit).")
    parser.add_argument("--version", action="version", version=f"pywavernn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print a model file's configs, parameters and sparsity")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("mel", help="compute the model's log-mel features of an audio file")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output .npy, shape (frames, n_mels)")
    p.add_argument("--model", help="model whose feature config to use; default: the bundled model")
    p.set_defaults(func=cmd_mel)

    p = sub.add_parser("vocode", help="mel (.npy, frames x n_mels) -> audio")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output audio file (.wav, .flac)")
    _add_engine_args(p)
    p.set_defaults(func=cmd_vocode)

    p = sub.add_parser("resynth", help="audio -> mel -> audio")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output audio file (.wav, .flac)")
    _add_engine_args(p)
    p.set_defaults(func=cmd_resynth)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "output", None) is not None:
            _check_output_path(args.output)
        return args.func(args)
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
