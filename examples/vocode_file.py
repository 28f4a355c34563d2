"""Vocode a speech file with the bundled model: audio -> log-mel -> WaveRNN -> audio, timed, with a figure.

What it teaches: the three calls of the public API (`Vocoder()`, `voc.mel`, `voc.vocode`), what the mel is (frames
of `hop` samples), that the seed fixes the samples, and how fast the compiled engine runs here. The figure puts the
log-mel of the input above the log-mel of the output: the bundled model (trained for 1.6 hours on 2 CPU cores)
follows the loudness and the spectral envelope but has no pitch harmonics, so it sounds like shaped noise.
What it is not: a quality evaluation (python -m training.evaluate does that; docs/quality.md has the bundled
model's figures).

    python examples/vocode_file.py [IN.wav|.flac] [--out examples/output]

Needs matplotlib for the figure (pip install matplotlib, or the [eval] extra). Writes OUT/vocoded.wav and
OUT/vocode_file.png. Runs in a few seconds.
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pywavernn  # noqa: E402
from pywavernn import audio  # noqa: E402

HERE = Path(__file__).resolve().parent
SPEECH = HERE.parent.parent / "shared" / "data" / "asterisk-en" / "demo-echodone.flac"  # real speech beside the checkout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", nargs="?", default=str(SPEECH), help="a speech file (default: %(default)s)")
    ap.add_argument("--out", default=str(HERE / "output"), help="output folder (default: %(default)s)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    voc = pywavernn.Vocoder()  # no path: the bundled model; backend "cpu" (the compiled kernels)
    print(voc, "| kernels:", pywavernn.selected_isa())

    # Any rate >= 8 kHz is read, mixed to mono and resampled to the model's 24 kHz.
    wav = audio.load_audio(args.input, voc.sample_rate)
    mel = voc.mel(wav)  # (frames, n_mels): one frame per hop of samples, the features the model was trained on
    print(f"{Path(args.input).name}: {wav.shape[0] / voc.sample_rate:.2f} s -> mel {mel.shape} "
          f"(hop {voc.hop_length} samples = {1000 * voc.hop_length / voc.sample_rate:.1f} ms per frame)")

    start = time.perf_counter()
    samples = voc.vocode(mel, seed=0)  # int16; the seed draws the sampling's uniforms: same seed, same samples
    took = time.perf_counter() - start
    seconds = samples.shape[0] / voc.sample_rate
    print(f"vocoded {seconds:.2f} s in {took:.2f} s: {seconds / took:.1f}x faster than real time on one thread")
    assert np.array_equal(samples, voc.vocode(mel, seed=0))

    audio.save_audio(out / "vocoded.wav", samples[: wav.shape[0]], voc.sample_rate)
    print(f"wrote {out / 'vocoded.wav'}")

    # The output's own log-mel, computed exactly as the input's, so the two panels compare like with like.
    mel_out = voc.mel(audio.int16_to_float(samples[: wav.shape[0]]))
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True, constrained_layout=True)
    frame_s = voc.hop_length / voc.sample_rate
    for ax, m, title in ((axes[0], mel, "input: log-mel"), (axes[1], mel_out, "bundled WaveRNN's output: log-mel")):
        ax.imshow(m.T, origin="lower", aspect="auto", extent=(0, m.shape[0] * frame_s, 0, m.shape[1]),
                  vmin=mel.min(), vmax=mel.max(), cmap="magma")
        ax.set_title(title)
        ax.set_ylabel("mel bin")
    axes[1].set_xlabel("time (s)")
    fig.savefig(out / "vocode_file.png", dpi=100)
    print(f"wrote {out / 'vocode_file.png'} (the envelope follows; the harmonics of the voice do not)")


if __name__ == "__main__":
    main()
