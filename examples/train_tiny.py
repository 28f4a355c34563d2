"""Train a tiny WaveRNN on a handful of speech files for half a minute, plot its loss, export it and vocode with it.

Say it plainly first: a minute of training gives noise. This model has 16 hidden units and sees a few thousand
samples; its output is hiss shaped by the mel. (The bundled model, H = 256, took 1.6 hours on 2 CPU cores and
still has no pitch harmonics; the paper's models train for days on GPUs.) What the example teaches is the
workflow, the same at every scale: a folder of audio -> `python -m training train` (a config, a time budget,
a run folder with log.csv and an atomic checkpoint) -> the loss curve -> `python -m training export` -> a model
file that `pywavernn.Vocoder` loads like the bundled one. The loss is the negative log-likelihood in bits per
16-bit sample: 16 bits means a uniform guess over 65,536 values, and every bit below that has been learned.
What it is not: a recipe for a usable model (README's Train section and training/configs/ are).

    python examples/train_tiny.py [--data FOLDER] [--files 8] [--minutes 0.5 | --steps N] [--out examples/output]

Needs the training extra (torch) and matplotlib, and runs from a checkout (training/ is not installed with the
wheel). The config is training/configs/tiny.json with more steps than the time allows (--max-minutes ends the run
cleanly) and larger batches; it is written beside the run. Writes OUT/train_tiny/ (the run, the model
tiny.safetensors, resynth.wav) and OUT/train_tiny_loss.png. About 45 s with the default half minute of training.
--steps N trains exactly N steps instead of for a time (the tests use it: a busy machine fits fewer steps in a
time budget, and the run must log some).
"""

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import pywavernn  # noqa: E402
from pywavernn import audio  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "piper-joe"


def tiny_config(path: Path, steps: int | None = None) -> None:
    """training/configs/tiny.json, changed only where a timed demo needs it (or with exactly `steps` steps)."""
    cfg = json.loads((REPO / "training" / "configs" / "tiny.json").read_text())
    cfg["comment"] = "examples/train_tiny.py: tiny.json with steps beyond the time budget and batches of 8 windows"
    cfg.update(steps=steps or 100_000, batch_size=8, window_frames=8, log_every=10, eval_every=50,
               checkpoint_every=10_000)
    path.write_text(json.dumps(cfg, indent=2))


def run(*args: str) -> None:
    """A `python -m training ...` command from the checkout; its output goes straight to this terminal."""
    print("$ python -m training", " ".join(args[2:]), flush=True)
    subprocess.run([sys.executable, *args], cwd=REPO, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA), help="a folder of speech files (default: %(default)s)")
    ap.add_argument("--files", type=int, default=8, help="how many of its files to use (default 8)")
    ap.add_argument("--minutes", type=float, default=0.5, help="training time budget (default 0.5)")
    ap.add_argument("--steps", type=int, default=None, help="train exactly this many steps instead (no time budget)")
    ap.add_argument("--out", default=str(HERE / "output"), help="output folder (default: %(default)s)")
    args = ap.parse_args()
    work = Path(args.out).resolve() / "train_tiny"
    shutil.rmtree(work, ignore_errors=True)  # this example's own folder: a fresh run each time
    (work / "data").mkdir(parents=True)

    # A handful of files, linked into a folder of their own (no train/valid lists there: training holds out
    # a quarter of them, tiny.json's valid_fraction, to measure the held-out loss).
    files = sorted(Path(args.data).glob("*.flac"))[: args.files]
    if len(files) < 4:
        raise SystemExit(f"--data {args.data}: expected at least 4 .flac files, found {len(files)}")
    for f in files:
        (work / "data" / f.name).symlink_to(f.resolve())
    tiny_config(work / "config.json", args.steps)
    budget = ["--max-minutes", str(args.minutes)] if args.steps is None else []
    spent = f"{args.minutes:g} min" if args.steps is None else f"{args.steps} steps"

    run("-m", "training", "train", "--config", str(work / "config.json"), "--data", str(work / "data"),
        "--out", str(work / "run"), "--cache-dir", str(work / "cache"), *budget,
        "--threads", "1")  # 16 units gain nothing from more threads, and a busy machine's cores then fight
    run("-m", "training", "export", str(work / "run" / "checkpoint.pt"), "-o", str(work / "tiny.safetensors"),
        "--note", f"note=examples/train_tiny.py: {spent} of training on {len(files)} files; noise")

    with open(work / "run" / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    train = [(int(r["step"]), float(r["train_bits"])) for r in rows if r["train_bits"]]
    valid = [(int(r["step"]), float(r["valid_bits"])) for r in rows if r["valid_bits"]]
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    ax.plot(*zip(*train), label="training batches")
    if valid:
        ax.plot(*zip(*valid), "o-", label="held-out files")
    ax.axhline(16, color="grey", linestyle=":", label="16 bits: a uniform guess")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL, bits per 16-bit sample")
    ax.set_title(f"a 16-unit WaveRNN, {spent} on {len(files)} files (its output is noise)")
    ax.legend()
    fig.savefig(Path(args.out) / "train_tiny_loss.png", dpi=100)
    last = valid[-1] if valid else train[-1]
    print(f"loss: {train[0][1]:.2f} -> {train[-1][1]:.2f} bits/sample on training batches after {train[-1][0]} "
          f"steps; held-out {last[1]:.2f} at step {last[0]}; wrote {Path(args.out) / 'train_tiny_loss.png'}")

    # The exported file is a model like the bundled one: same API, its own feature config (20 mels, hop 100).
    voc = pywavernn.Vocoder(work / "tiny.safetensors")
    wav = audio.load_audio(files[0], voc.sample_rate)
    audio.save_audio(work / "resynth.wav", voc.resynthesize(wav, seed=0), voc.sample_rate)
    print(f"{voc}: wrote {work / 'resynth.wav'}, noise, as promised")


if __name__ == "__main__":
    main()
