"""Teacher-forced NLL of a training checkpoint or a model file on a list of audio files, split by byte.

    python -m training.score runs/NAME/checkpoint.pt --data DIR [--list ids.txt] [--limit N] [--out report.json]

What it is: the held-out likelihood side of training.evaluate without the engine and without an export step (a
checkpoint is scored as it is, mid-run too), split by byte for plain models as well. For each file the
PyTorch twin (training.model.WaveRNN, training.subscale_model.SubscaleWaveRNN or training.fused_model.FusedWaveRNN,
float32, one utterance from h = 0) gives -log2 P(c_t) and -log2 P(f_t | c_t) per sample (the fused model's
nibbles 0 + 1 and 2 + 3: the same bytes); the report has the mean over files of each file's mean bits per sample
(total, coarse byte, fine byte: training.evaluate's "NLL" is the total), and for a subscale or fused model the
bits by sub-tensor s = t mod B pooled over all files. The audio is zero-padded to whole frames and only
its real samples are scored, as in training.evaluate.
What it is not: a speech-quality evaluation (no vocoding, PESQ, STOI or MOS: training.evaluate).

Letters: B subscale factor, F frames, T samples.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from pywavernn import features
from pywavernn import modelfile as fmt
from pywavernn.audio import float_to_int16, load_audio
from training.evaluate import find_audio, teacher_forced_bits
from training.fused_model import FusedWaveRNN
from training.model import WaveRNN
from training.subscale_model import SubscaleWaveRNN


def load_net(path: str | os.PathLike) -> tuple[WaveRNN | SubscaleWaveRNN | FusedWaveRNN, str]:
    """(the PyTorch model of a checkpoint (.pt) or model file, a line saying what it is), in eval mode."""
    from training.checkpoint import load_checkpoint
    from training.config import TrainConfig
    from training.nets import NETS, build_net

    path = Path(path)
    if path.suffix == ".pt":
        ckpt = load_checkpoint(path)
        net = build_net(TrainConfig.from_dict(ckpt["config"]))
        net.load_state_dict(ckpt["model"])
        what = f"checkpoint at step {int(ckpt['step'])}"
    else:
        model = fmt.load_model(path)
        net = NETS[model.model_config.kind].from_model(model)
        what = "model file"
    return net.eval(), what


def score(path, data, id_list=None, limit=None, log=print) -> dict:
    """The report (module docstring) of the model or checkpoint at path on the files of data / id_list."""
    net, what = load_net(path)
    factor = getattr(net, "factor", 1)
    paths = find_audio(Path(data), Path(id_list) if id_list else None, limit)
    per_file, by_sub, count = [], np.zeros((2, factor)), np.zeros(factor)
    for i, p in enumerate(paths):
        audio = load_audio(p, net.feature_config.sample_rate)
        bits = teacher_forced_bits(net, features.log_mel(audio, net.feature_config), float_to_int16(audio))
        s = np.arange(bits.shape[1]) % factor
        by_sub += [np.bincount(s, weights=b, minlength=factor) for b in bits]
        count += np.bincount(s, minlength=factor)
        per_file.append({"file": p.name, "coarse": float(bits[0].mean()), "fine": float(bits[1].mean()),
                         "nll_bits": float(bits.sum(0).mean())})
        log(f"[{i + 1}/{len(paths)}] {p.name}: {per_file[-1]['nll_bits']:.4f} bits/sample")
    report = {"tool": "training.score", "model": str(path), "what": what, "data": str(data),
              "list": str(id_list) if id_list else None, "n_files": len(paths),
              "mean": {k: float(np.mean([r[k] for r in per_file])) for k in ("nll_bits", "coarse", "fine")},
              "files": per_file}
    if factor > 1:
        c, f = by_sub / np.maximum(count, 1)
        report["by_subtensor"] = {"coarse": c.tolist(), "fine": f.tolist(), "total": (c + f).tolist()}
    return report


def _write_json(path: Path, report: dict) -> None:
    """Write through a temporary file in the same folder and rename it: never a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.score", description=__doc__.split("\n\n")[1])
    p.add_argument("model", help="a training checkpoint (.pt) or a pywavernn model file")
    p.add_argument("--data", required=True, help="folder of audio files")
    p.add_argument("--list", dest="id_list", help="file of ids (names without extension), one per line")
    p.add_argument("--limit", type=int, help="score only the first N files")
    p.add_argument("--out", help="write the report as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    try:
        report = score(args.model, args.data, args.id_list, args.limit, log=lambda m: print(m, file=sys.stderr))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        _write_json(Path(args.out), report)
    m = report["mean"]
    print(f"{args.model} ({report['what']}), {report['n_files']} files: {m['nll_bits']:.4f} bits/sample "
          f"(coarse {m['coarse']:.4f}, fine {m['fine']:.4f})")
    if "by_subtensor" in report:
        print("s: " + " ".join(f"{s}:{t:.3f}" for s, t in enumerate(report["by_subtensor"]["total"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
