"""`python -m training.evaluate`: score a model on a folder of audio and write a JSON report, a table and a figure.

    python -m training.evaluate MODEL --data DIR [--list ids.txt] [--limit N] [--out DIR] [--seed S]
                                [--no-mos] [--no-nll] [--backend cpu|reference|cuda] [--figures N] [--save-audio]

For every audio file (any rate soundfile reads; load_audio resamples it to 24 kHz, and the 24 kHz signal is the
original everything is compared against): the held-out teacher-forced NLL in bits per 16-bit sample; resynthesis
(wav -> log-mel -> pywavernn -> wav) and the Griffin-Lim floor from the same mel; PESQ-WB, STOI and MCD of each
against the original; and a no-reference MOS (DistillMOS) of the original, the resynthesis and Griffin-Lim.
Writes OUT/report.json (atomically: per-file values, means, timings, machine, model and settings), OUT/report.md
(the same as tables) and OUT/spectrograms.png (original vs pywavernn vs Griffin-Lim for the first files).
What it is not: no training, no speed benchmark (benchmarks/ measures samples/s), no DTW (resynthesis is
sample-aligned). The metric definitions and their exact settings live in training/metrics.py.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import pywavernn
from pywavernn import modelfile as fmt
from pywavernn.atomic import atomic_write
from pywavernn.audio import float_to_int16, int16_to_float, load_audio, preemphasis, save_audio
from pywavernn.vocoder import Vocoder
from training import metrics

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
SYSTEMS = ("original", "pywavernn", "griffin_lim")
METRICS = ("pesq", "stoi", "mcd", "f0_cents", "vuv")
TIMED = ("load", "mel", "nll", "vocode", "griffin_lim", "pesq", "stoi", "mcd", "f0", "mos")


# -------------------------------------------------------------------------------------------------- inputs

def find_audio(data: Path, id_list: Path | None = None, limit: int | None = None) -> list[Path]:
    """Audio files of `data` (sorted by name), or the ids listed in `id_list` (one per line, no extension)."""
    if not data.is_dir():
        raise ValueError(f"--data: expected a directory, found {data}")
    if id_list is None:
        paths = sorted(p for p in data.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    else:
        paths = []
        for line in id_list.read_text().splitlines():
            name = line.strip()
            if not name:
                continue
            found = [data / (name + s) for s in AUDIO_SUFFIXES if (data / (name + s)).is_file()]
            if not found:
                raise ValueError(f"--list: no audio file for id {name!r} in {data} (tried {AUDIO_SUFFIXES})")
            paths.append(found[0])
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise ValueError(f"--data: no audio files ({', '.join(AUDIO_SUFFIXES)}) found in {data}")
    return paths


def machine_info() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "pywavernn": pywavernn.__version__}
    try:
        info["isa"], info["openmp"] = pywavernn.selected_isa(), pywavernn.openmp_enabled()
    except Exception as exc:  # noqa: BLE001 - the compiled extension is absent: the reference backend still works
        info["isa"] = f"unavailable ({exc})"
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    return info


def model_info(path: Path, model: fmt.Model) -> dict:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path.resolve()), "sha256": digest, "model_config": _jsonable(model.model_config.__dict__),
            "feature_config": _jsonable(model.feature_config.__dict__), "provenance": _jsonable(model.provenance),
            "sparsity": model.sparsity()}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


# ------------------------------------------------------------------------------------------------ one file

class _Timer:
    def __init__(self):
        self.seconds = {name: 0.0 for name in TIMED}

    def __call__(self, name, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[name] += time.perf_counter() - t0


def _guarded(timer: _Timer, name: str, errors: list, label: str, fn, *args):
    """fn(*args) timed under `name`; None (and the reason appended to errors) if it raises."""
    try:
        return timer(name, fn, *args)
    except Exception as exc:  # noqa: BLE001 - a metric failing on one file (e.g. PESQ finds no utterance) must not end the run
        errors.append(f"{label}: {type(exc).__name__}: {exc}")
        return None


def _nll(engine, model, mel, audio):
    """bits per sample, or for a subscale model (bits, its per-sub-tensor sums: _TorchSubscaleNLL.nll)."""
    if isinstance(engine, _TorchSubscaleNLL):
        return engine.nll(mel, float_to_int16(audio))
    from pywavernn.conditioning import conditioning_ref

    audio = float_to_int16(audio)
    if model.model_config.preemphasis:  # the network models the pre-emphasised samples (docs/format.md §10)
        audio = preemphasis(audio, model.model_config.preemphasis)
    return engine.nll(conditioning_ref(model, mel), audio)


class _TorchSubscaleNLL:
    """The teacher-forced NLL of a subscale model (the C engine only generates): the PyTorch twin's logits, which
    match pywavernn.reference.subscale's within 4e-6 (tests/test_subscale_model.py), in float32; for a fused
    model (docs/format.md §12) training.fused_model.FusedWaveRNN's (within 1e-4 of pywavernn.reference.fused's,
    tests/test_training_fused.py), its sub-tensors the even and odd samples.

    A subscale model folds whole frames (F * hop samples), so the audio is zero-padded to that length and the
    bits are averaged over its first n (real) samples. Near the end a sample's logits see up to F positions of
    earlier sub-tensors ahead of it (docs/format.md §9), some of them in the padding: the last ~F * B samples
    are conditioned on zeros there, as they would be at the end of any generated utterance."""

    def __init__(self, model: fmt.Model):
        from training.fused_model import FusedWaveRNN
        from training.subscale_model import SubscaleWaveRNN

        twin = FusedWaveRNN if model.model_config.kind == "fused" else SubscaleWaveRNN
        self.net = twin.from_model(model).eval()

    def nll(self, mel: np.ndarray, audio_int16: np.ndarray) -> tuple[float, dict]:
        """(bits per sample, {"coarse", "fine": bits summed by sub-tensor s = t mod B, "count": samples of each})."""
        bits = teacher_forced_bits(self.net, mel, audio_int16)
        s = np.arange(bits.shape[1]) % self.net.factor
        parts = {name: np.bincount(s, weights=b, minlength=self.net.factor).tolist()
                 for name, b in zip(("coarse", "fine"), bits)}
        parts["count"] = np.bincount(s, minlength=self.net.factor).tolist()
        return float(bits.sum(0).mean()), parts


def teacher_forced_bits(net, mel: np.ndarray, audio_int16: np.ndarray) -> np.ndarray:
    """(2, n) float64: -log2 P(c_t) and -log2 P(f_t | c_t) of each of the n real samples under the PyTorch model
    net (training.model.WaveRNN, training.subscale_model.SubscaleWaveRNN or training.fused_model.FusedWaveRNN,
    whose nibbles 0 + 1 and 2 + 3 are the coarse and fine bytes), teacher-forced from h = 0 over the
    audio zero-padded to the mel's F * hop samples (the padding is not scored). A pre-emphasis model scores the
    pre-emphasised samples (docs/format.md §10)."""
    import torch

    coef = getattr(net.model_config, "preemphasis", 0.0)
    if coef:
        audio_int16 = preemphasis(np.asarray(audio_int16, np.int16), coef)

    n, total = audio_int16.shape[0], mel.shape[0] * net.hop
    padded = np.zeros(total, np.int16)
    padded[:min(n, total)] = audio_int16[:total]
    u = torch.from_numpy(padded.astype(np.int32) + 32768)[None]
    coarse, fine = u >> 8, u & 255
    if getattr(net.model_config, "subscale_fused", False):
        from training.fused_model import nibbles_of

        with torch.no_grad():
            logits = net(torch.from_numpy(np.ascontiguousarray(mel))[None], torch.from_numpy(padded)[None])
            nib = -torch.log_softmax(logits[0, :min(n, total)].double(), -1).gather(
                -1, nibbles_of(u[0, :min(n, total)].long())[..., None])[..., 0]  # (n, 4)
        return torch.stack([nib[:, :2].sum(1), nib[:, 2:].sum(1)]).numpy() / np.log(2.0)
    with torch.no_grad():
        logits = net(torch.from_numpy(np.ascontiguousarray(mel))[None], coarse=coarse, fine=fine)
        bits = [-torch.log_softmax(lg.double(), -1).gather(-1, byte[..., None].long())[0, :min(n, total), 0]
                for lg, byte in zip(logits, (coarse, fine))]
    return torch.stack(bits).numpy() / np.log(2.0)


def evaluate_file(path: Path, voc: Vocoder, nll_engine, mos, seed: int, timer: _Timer) -> tuple[dict, dict]:
    """(the file's record, its three signals) for one audio file."""
    cfg = voc.feature_config
    audio = timer("load", load_audio, path, cfg.sample_rate)
    n = audio.shape[0]
    mel = timer("mel", voc.mel, audio)
    errors: list[str] = []
    rec = {"file": path.name, "seconds": n / cfg.sample_rate, "nll_bits": None}
    if nll_engine is not None:
        rec["nll_bits"] = _guarded(timer, "nll", errors, "nll", _nll, nll_engine, voc.model, mel, audio)
        if isinstance(rec["nll_bits"], tuple):  # a subscale model: also its bits by sub-tensor
            rec["nll_bits"], rec["nll_by_subtensor"] = rec["nll_bits"]
    resyn = int16_to_float(timer("vocode", voc.vocode, mel, seed)[:n])
    gl = timer("griffin_lim", metrics.griffin_lim_from_mel, mel, cfg, n, metrics.GRIFFIN_LIM_ITERS,
               metrics.GRIFFIN_LIM_MOMENTUM, seed)
    signals = {"original": audio, "pywavernn": resyn, "griffin_lim": gl}
    funcs = {"pesq": metrics.pesq_wb, "stoi": metrics.stoi, "mcd": metrics.mel_cepstral_distortion}
    ref_f0 = _guarded(timer, "f0", errors, "original f0", metrics.f0_track, audio)
    for system in SYSTEMS:
        rec[system] = {}
        if system != "original":
            for name in funcs:
                rec[system][name] = _guarded(timer, name, errors, f"{system} {name}", funcs[name], audio,
                                             signals[system])
            track = _guarded(timer, "f0", errors, f"{system} f0", metrics.f0_track, signals[system]) \
                if ref_f0 is not None else None
            f0 = metrics.f0_errors(ref_f0, track) if track is not None else {}
            rec[system].update({"f0_cents": f0.get("f0_cents"), "vuv": f0.get("vuv")})
        if mos is not None:
            rec[system]["mos"] = _guarded(timer, "mos", errors, f"{system} mos", mos, signals[system])
    rec["errors"] = errors
    return rec, signals


# ----------------------------------------------------------------------------------------------- summaries

def _mean(values) -> dict:
    vals = [v for v in values if v is not None]
    return {"mean": float(np.mean(vals)) if vals else None, "n": len(vals)}


def _by_subtensor(records: list[dict]) -> dict | None:
    """A subscale model's teacher-forced bits per sample by sub-tensor s, pooled over every sample of every file:
    where its NLL comes from (sub-tensor 0 sees no earlier sub-tensor; the others see their context)."""
    parts = [r["nll_by_subtensor"] for r in records if r.get("nll_by_subtensor")]
    if not parts:
        return None
    count = np.sum([p["count"] for p in parts], axis=0)
    coarse, fine = (np.sum([p[k] for p in parts], axis=0) / np.maximum(count, 1) for k in ("coarse", "fine"))
    return {"coarse": coarse.tolist(), "fine": fine.tolist(), "total": (coarse + fine).tolist(),
            "count": count.tolist()}


def summarise(records: list[dict]) -> dict:
    out = {"nll_bits": _mean(r["nll_bits"] for r in records)}
    by_sub = _by_subtensor(records)
    if by_sub is not None:
        out["nll_by_subtensor"] = by_sub
    for system in SYSTEMS:
        names = ("mos",) if system == "original" else METRICS + ("mos",)
        out[system] = {name: _mean(r[system].get(name) for r in records) for name in names}
    return out


def _fmt(v, digits=3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def markdown(report: dict) -> str:
    mean, m = report["mean"], report["model"]
    lines = [f"# pywavernn evaluation: {Path(m['path']).name}", "",
             f"Data: `{report['data']['dir']}`" + (f", list `{report['data']['list']}`" if report['data']['list']
                                                    else "") +
             f"; {report['data']['n_files']} files, {report['data']['seconds']:.1f} s. Seed {report['seed']}, "
             f"backend {report['backend']}. Model sha256 `{m['sha256'][:16]}`.", "",
             f"NLL (teacher-forced, bits per 16-bit sample): {_fmt(mean['nll_bits']['mean'], 4)}", "",
             "| system | PESQ-WB ↑ | STOI ↑ | MCD dB ↓ | F0 RMSE cents ↓ | V/UV error ↓ | MOS (DistillMOS) ↑ |",
             "|---|---|---|---|---|---|---|"]
    labels = {"original": "original (24 kHz)", "pywavernn": "pywavernn", "griffin_lim": "Griffin-Lim (floor)"}
    for system in SYSTEMS:
        s = mean[system]
        cells = [_fmt(s[k]["mean"]) if k in s else "–" for k in METRICS + ("mos",)]
        lines.append(f"| {labels[system]} | " + " | ".join(cells) + " |")
    by_sub = mean.get("nll_by_subtensor")
    if by_sub:
        lines += ["", "NLL by sub-tensor s = t mod B (teacher-forced, bits per sample, all files pooled):", "",
                  "| s | coarse | fine | total |", "|---|---|---|---|"]
        lines += [f"| {s} | {c:.3f} | {f:.3f} | {t:.3f} |"
                  for s, (c, f, t) in enumerate(zip(by_sub["coarse"], by_sub["fine"], by_sub["total"]))]
    mos = report["mos"]
    lines += ["", f"MOS: {'DistillMOS ' + mos['version'] if mos['available'] else 'not computed: ' + mos['reason']}",
              "", "## Per file", "",
              "| file | s | NLL | PESQ wavernn / GL | STOI wavernn / GL | MCD wavernn / GL | F0 cents wavernn / GL "
              "| V/UV wavernn / GL | MOS orig / wavernn / GL |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["files"]:
        pair = {k: f"{_fmt(r['pywavernn'].get(k))} / {_fmt(r['griffin_lim'].get(k))}" for k in METRICS}
        mos_cells = " / ".join(_fmt(r[s].get("mos"), 2) for s in SYSTEMS)
        lines.append(f"| {r['file']} | {r['seconds']:.2f} | {_fmt(r['nll_bits'], 3)} | {pair['pesq']} | "
                     f"{pair['stoi']} | {pair['mcd']} | {pair['f0_cents']} | {pair['vuv']} | {mos_cells} |")
    lines += ["", "## Time per second of audio", "", "| step | s per audio s |", "|---|---|"]
    lines += [f"| {k} | {v['per_audio_second']:.4f} |" for k, v in report["timing"].items() if v["seconds"] > 0]
    return "\n".join(lines) + "\n"


def write_figure(path: Path, examples: list[tuple[str, dict]], cfg) -> None:
    """Log-mel spectrograms (dB), one row per file: original | pywavernn | Griffin-Lim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pywavernn import features

    rows = len(examples)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 3.2 * rows), squeeze=False, constrained_layout=True)
    for i, (name, signals) in enumerate(examples):
        specs = {k: 20.0 / np.log(10.0) * features.log_mel(v.astype(np.float32), cfg) for k, v in signals.items()}
        vmax = float(specs["original"].max())
        for j, system in enumerate(SYSTEMS):
            s = specs[system]
            im = axes[i, j].imshow(s.T, origin="lower", aspect="auto", vmin=vmax - 80.0, vmax=vmax, cmap="magma",
                                   extent=(0, s.shape[0] * cfg.hop_length / cfg.sample_rate, 0, cfg.n_mels))
            axes[i, j].set_title(f"{name}: {system}", fontsize=9)
            axes[i, j].set_xlabel("s")
            axes[i, j].set_ylabel("mel bin")
        fig.colorbar(im, ax=axes[i, :].tolist(), label="dB")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


# -------------------------------------------------------------------------------------------------- driver

def _load_mos(enabled: bool):
    if not enabled:
        return None, {"available": False, "reason": "disabled (--no-mos)"}
    try:
        predictor = metrics.MosPredictor()
    except metrics.MosUnavailable as exc:
        return None, {"available": False, "reason": str(exc)}
    return predictor, {"available": True, "predictor": predictor.name, "version": predictor.version}


def _nll_engine(voc: Vocoder, enabled: bool):
    if not enabled:
        return None, "disabled (--no-nll)"
    if voc.model.model_config.subscale_factor > 1:
        try:
            engine = _TorchSubscaleNLL(voc.model)
            return engine, f"{type(engine.net).__module__}.{type(engine.net).__name__} logits (torch, float32)"
        except Exception as exc:  # noqa: BLE001 - torch absent: report why
            return None, f"unavailable: {type(exc).__name__}: {exc}"
    try:
        from pywavernn.engines.cpu import CpuEngine

        # exact=True: libm exp/tanh, so the NLL equals the NumPy reference's (Vocoder.nll) at C speed.
        return CpuEngine(voc.model, exact=True), "pywavernn.engines.cpu.CpuEngine(exact=True).nll"
    except Exception as exc:  # noqa: BLE001 - no compiled engine, or a model it cannot run: report why
        return None, f"unavailable: {type(exc).__name__}: {exc}"


def evaluate(model_path, data, id_list=None, limit=None, out="eval_out", seed=0, mos=True, nll=True,
             backend="cpu", figures=3, save_audio_files=False, log=print) -> dict:
    """Run the evaluation and write OUT/report.json, OUT/report.md and OUT/spectrograms.png; return the report."""
    model_path, data, out = Path(model_path), Path(data), Path(out)
    paths = find_audio(data, Path(id_list) if id_list else None, limit)
    out.mkdir(parents=True, exist_ok=True)
    voc = Vocoder(model_path, backend=backend)
    nll_engine, nll_how = _nll_engine(voc, nll)
    predictor, mos_status = _load_mos(mos)
    timer, records, examples = _Timer(), [], []
    for i, path in enumerate(paths):
        rec, signals = evaluate_file(path, voc, nll_engine, predictor, seed, timer)
        records.append(rec)
        if i < figures:
            examples.append((path.stem, signals))
        if save_audio_files:
            (out / "audio").mkdir(exist_ok=True)
            for system in ("pywavernn", "griffin_lim"):
                save_audio(out / "audio" / f"{path.stem}.{system}.wav", signals[system], voc.sample_rate)
        log(f"[{i + 1}/{len(paths)}] {path.name}: nll {_fmt(rec['nll_bits'])} pesq {_fmt(rec['pywavernn']['pesq'])} "
            f"(GL {_fmt(rec['griffin_lim']['pesq'])}) stoi {_fmt(rec['pywavernn']['stoi'])} "
            f"mcd {_fmt(rec['pywavernn']['mcd'])}" + (f"; {len(rec['errors'])} error(s)" if rec["errors"] else ""))
    seconds = float(sum(r["seconds"] for r in records))
    report = {
        "tool": "training.evaluate", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": sys.argv, "machine": machine_info(), "model": model_info(model_path, voc.model),
        "data": {"dir": str(data.resolve()), "list": str(id_list) if id_list else None, "n_files": len(records),
                 "seconds": seconds, "compared_at_hz": voc.sample_rate},
        "seed": seed, "backend": backend, "nll": nll_how, "mos": mos_status, "settings": metrics.settings(),
        "mean": summarise(records), "files": records,
        "timing": {k: {"seconds": v, "per_audio_second": v / seconds if seconds else None}
                   for k, v in timer.seconds.items()},
    }
    report = _jsonable(report)
    with atomic_write(out / "report.json") as fh:
        fh.write((json.dumps(report, indent=1, allow_nan=False) + "\n").encode())
    with atomic_write(out / "report.md") as fh:
        fh.write(markdown(report).encode())
    if examples:
        write_figure(out / "spectrograms.png", examples, voc.feature_config)
    return report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model file (.safetensors)")
    p.add_argument("--data", required=True, help="folder of audio files (wav/flac/ogg, any rate >= 8 kHz)")
    p.add_argument("--list", dest="id_list", help="file of ids (names without extension), one per line")
    p.add_argument("--limit", type=int, help="only the first N files")
    p.add_argument("--out", default="eval_out", help="output folder (default: eval_out)")
    p.add_argument("--seed", type=int, default=0, help="sampling and Griffin-Lim seed (default 0)")
    p.add_argument("--backend", default="cpu", choices=("cpu", "reference", "cuda"))
    p.add_argument("--no-mos", action="store_true", help="skip the MOS predictor")
    p.add_argument("--no-nll", action="store_true", help="skip the teacher-forced NLL pass")
    p.add_argument("--figures", type=int, default=3, help="files shown in spectrograms.png (default 3)")
    p.add_argument("--save-audio", action="store_true", help="also write OUT/audio/*.wav")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit: expected a positive integer, found {args.limit}")
        report = evaluate(args.model, args.data, args.id_list, args.limit, args.out, args.seed,
                          mos=not args.no_mos, nll=not args.no_nll, backend=args.backend, figures=args.figures,
                          save_audio_files=args.save_audio)
    except ValueError as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(report).split("\n## Per file")[0])
    print(f"wrote {Path(args.out) / 'report.json'}, report.md, spectrograms.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
