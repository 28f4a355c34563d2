"""Stream a mel spectrogram in chunks, as a TTS system hands it over, and measure latency and real-time factor.

What it teaches: `Vocoder.stream(seed)` takes mel chunks of any size and returns the samples they already
determine; the first samples wait for the conditioning network's lookahead ((L + 1) frames: the algorithmic
latency, the same on every machine), every later chunk costs its compute time (the machine's part); the streamed
samples equal the offline `vocode(mel)` exactly. The real-time factor is compute time / audio time: below 1, a
chunk is vocoded before the previous one has finished playing. The figure shows each chunk's compute time
against its real-time budget (the duration of the audio it carries).
What it is not: a benchmark (benchmarks/bench_models.py), nor audio playback.

    python examples/stream_latency.py [IN.wav|.flac] [--chunk-frames 10] [--threads 1] [--out examples/output]

Needs matplotlib for the figure. Writes OUT/stream_latency.png. Runs in a few seconds.
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pywavernn  # noqa: E402
from pywavernn import audio  # noqa: E402

HERE = Path(__file__).resolve().parent
SPEECH = HERE.parent.parent / "shared" / "data" / "asterisk-en" / "demo-echodone.flac"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", nargs="?", default=str(SPEECH), help="a speech file (default: %(default)s)")
    ap.add_argument("--chunk-frames", type=int, default=10, help="mel frames per chunk (default 10 = 125 ms)")
    ap.add_argument("--threads", type=int, default=1, help="threads of the cpu engine (default 1)")
    ap.add_argument("--out", default=str(HERE / "output"), help="output folder (default: %(default)s)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    voc = pywavernn.Vocoder(threads=args.threads)
    mel = voc.mel(audio.load_audio(args.input, voc.sample_rate))  # stands in for a TTS model's output
    frame_ms = 1000 * voc.hop_length / voc.sample_rate
    n = args.chunk_frames
    mel_chunks = [mel[i: i + n] for i in range(0, mel.shape[0], n)]
    lookahead = voc.model_config.cond_lookahead
    print(f"{mel.shape[0]} frames in {len(mel_chunks)} chunks of {n} frames ({n * frame_ms:.0f} ms of audio each); "
          f"algorithmic latency: (L + 1) = {lookahead + 1} frames = {(lookahead + 1) * frame_ms:.1f} ms")

    voc.vocode(mel[:4], seed=0)  # warm-up: first-call costs are not the steady state
    stream = voc.stream(seed=0)
    pieces, compute_s = [], []
    first = None  # (chunk index, samples, compute so far) of the first push that returns audio
    start = time.perf_counter()
    for i, chunk in enumerate(mel_chunks):
        t0 = time.perf_counter()
        piece = stream.push(chunk)  # the samples this chunk completes (none until the lookahead is covered)
        compute_s.append(time.perf_counter() - t0)
        pieces.append(piece)
        if first is None and piece.size:
            first = (i, piece.size, time.perf_counter() - start)
    t0 = time.perf_counter()
    pieces.append(stream.finish())  # the utterance ends: the last frames need no lookahead
    compute_s.append(time.perf_counter() - t0)
    total_s = time.perf_counter() - start

    streamed = np.concatenate(pieces)
    assert np.array_equal(streamed, voc.vocode(mel, seed=0)), "streaming must give the offline samples"
    seconds = streamed.shape[0] / voc.sample_rate
    budget_s = n * voc.hop_length / voc.sample_rate
    print(f"streamed == offline vocode(mel, seed=0): True ({streamed.shape[0]} samples)")
    print(f"first audio: chunk {first[0] + 1} returns {first[1]} samples ({1000 * first[1] / voc.sample_rate:.0f} ms) "
          f"after {1000 * first[2]:.1f} ms of compute; the last {(first[0] + 1) * n - first[1] // voc.hop_length} "
          f"of the {(first[0] + 1) * n} frames pushed wait for the next chunk's lookahead")
    print(f"compute per chunk: median {1000 * np.median(compute_s):.1f} ms, max {1000 * max(compute_s):.1f} ms, "
          f"against {1000 * budget_s:.0f} ms of audio per chunk")
    print(f"real-time factor {total_s / seconds:.3f} ({seconds / total_s:.1f}x faster than real time) on "
          f"{args.threads} thread(s), {pywavernn.selected_isa()} kernels")

    fig, ax = plt.subplots(figsize=(8, 3.5), constrained_layout=True)
    ax.bar(np.arange(1, len(compute_s) + 1), 1000 * np.array(compute_s), color="tab:blue", label="compute of the chunk")
    ax.axhline(1000 * budget_s, color="tab:red", linestyle="--", label=f"real-time budget ({1000 * budget_s:.0f} ms)")
    ax.set_xlabel("chunk (the last bar: finish())")
    ax.set_ylabel("ms")
    ax.set_title(f"streaming {n}-frame mel chunks: real-time factor {total_s / seconds:.2f}")
    ax.set_ylim(0, 1.35 * max(1000 * budget_s, 1000 * max(compute_s)))
    ax.legend(loc="upper right", ncols=2)
    fig.savefig(out / "stream_latency.png", dpi=100)
    print(f"wrote {out / 'stream_latency.png'}")


if __name__ == "__main__":
    main()
