"""One-step resynthesis: each sample drawn from the model's distribution given the TRUE past, scored like vocoding.

    python -m research.onestep MODEL.safetensors FILE.flac [FILE ...] [--seed 0] [--json out.json]

What it is: a diagnostic that splits what a free-running vocoder gets wrong in two. The plain model is run
teacher-forced over each file (the PyTorch twin, training.model.WaveRNN, one pass); every sample is then drawn
from its coarse and fine distributions (the fine one given the true coarse byte, as in training), de-emphasised
for a pre-emphasis model, and the result is scored against the original with training.metrics (PESQ-WB, STOI,
MCD), beside the share of coarse bytes drawn right and the size of the drawn samples' errors in int16 steps (of
the samples the network predicts: pre-emphasised ones for a pre-emphasis model). Read it against
training.evaluate's free-running figures for the same files: if the one-step output is clean and the free-running
one is not, the model cannot stay on track when fed its own samples (exposure bias; input noise is the lever);
if the one-step output is noisy too, its distributions themselves are wide (it needs to learn more).
What it is not: a vocoder (it needs the original audio) or a quality measure of a model on its own. Plain
models only. A research script, run from the checkout's root; nothing in the package imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def one_step(model_path: Path, wav_path: Path, seed: int = 0) -> dict:
    """The one-step resynthesis of one file and its scores (a dict of floats)."""
    import torch

    from pywavernn import Vocoder, load_model
    from pywavernn.audio import deemphasis, float_to_int16, int16_to_float, load_audio, preemphasis
    from training import metrics
    from training.model import WaveRNN

    model = load_model(model_path)
    if model.model_config.kind != "plain":
        raise ValueError(f"{model_path}: one-step resynthesis is implemented for plain models, found "
                         f"{model.model_config.kind}")
    voc = Vocoder(model)
    net = WaveRNN.from_model(model).eval()
    audio = load_audio(wav_path, voc.sample_rate)
    mel = voc.mel(audio)
    coef = model.model_config.preemphasis
    target = float_to_int16(audio)
    if coef:
        target = preemphasis(target, coef)
    n = target.shape[0]
    padded = np.zeros(mel.shape[0] * voc.hop_length, np.int16)
    padded[:n] = target[:padded.shape[0]]
    u = torch.from_numpy(padded.astype(np.int32) + 32768)[None]
    coarse, fine = u >> 8, u & 255
    with torch.no_grad():
        logits_c, logits_f = net(torch.from_numpy(np.ascontiguousarray(mel))[None], coarse=coarse, fine=fine)
    gen = torch.Generator().manual_seed(seed)
    c = torch.multinomial(torch.softmax(logits_c[0].double(), -1), 1, generator=gen)[:, 0]
    f = torch.multinomial(torch.softmax(logits_f[0].double(), -1), 1, generator=gen)[:, 0]
    drawn = (c * 256 + f - 32768).numpy().astype(np.int16)[:n]
    err = np.abs(drawn.astype(np.int64) - target[:n].astype(np.int64))
    out = deemphasis(drawn, coef)[0] if coef else drawn
    resyn = int16_to_float(out)
    return {"file": wav_path.name, "coarse_right": float((c[:n] == coarse[0, :n]).double().mean()),
            "err_median": float(np.median(err)), "err_p90": float(np.percentile(err, 90)),
            "pesq": metrics.pesq_wb(audio, resyn), "stoi": metrics.stoi(audio, resyn),
            "mcd": metrics.mel_cepstral_distortion(audio, resyn)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.onestep", description=__doc__.split("\n\n")[1])
    ap.add_argument("model", type=Path)
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    try:
        rows = [one_step(args.model, f, args.seed) for f in args.files]
    except (OSError, ValueError) as exc:
        print(f"research.onestep: error: {exc}", file=sys.stderr)
        return 2
    for r in rows:
        print(f"{r['file']}: coarse right {r['coarse_right']:.3f}, |error| median {r['err_median']:.0f} / "
              f"p90 {r['err_p90']:.0f} int16 steps; PESQ {r['pesq']:.2f}, STOI {r['stoi']:.3f}, MCD {r['mcd']:.2f} dB")
    means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "file"}
    print("mean: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    if args.json:
        from pywavernn.atomic import atomic_write

        with atomic_write(args.json) as fh:
            fh.write(json.dumps({"model": str(args.model), "seed": args.seed, "files": rows, "mean": means},
                                indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
