"""Model-file benchmark: samples/s of trained model files through the public API (pywavernn.Vocoder), each on
1 and 2 threads, all timed in the same interleaved rounds.

What it is: the speed half of the studies in research/experiments.md (RQ3/RQ5: a Subscale WaveRNN against the plain
WaveRNN of the same size) and the bundled model's real-time factor in README and docs/quality.md. Every vocoder
generates from the same real log-mel (a speech file's, or a fixed random one when none is given), fast mode,
fp32 weights unless --weights says otherwise, the ISA pywavernn selects unless --isa says otherwise; the time
covers `Vocoder.vocode` whole: conditioning network, upsampling, the sampling loop (and a subscale model's
context network). Before timing, each vocoder is checked to give the same samples on 1 and
2 threads (samples never depend on the thread count). The report counts the threaded loops' hand-overs to one
thread during the timing (pwr_barrier.h: a team whose barriers keep sleeping, i.e. a core taken by other work,
runs on thread 0 alone for a stretch): a count above zero means the 2-thread figures met a busy machine.
What it is not: a test (nothing asserts a speed) and not a kernel benchmark (bench_kernels.py).

    python -m benchmarks.bench_models MODEL.safetensors [MODEL ...] [--audio FILE] [--threads 1 2] [--weights fp32]
                                      [--isa avx2 avx512] [--name NAME]
    python -m benchmarks.bench_models          # the bundled model on ../shared/data/asterisk-en/digits_1.flac
    python -m benchmarks.bench_models --like research/configs/rq2_sparse256.json [CFG ...]
    python -m benchmarks.bench_models PLAIN.safetensors SUBSCALE.safetensors --baseline PLAIN.safetensors

--weights fp32 fp16: time each model with each weight storage (Vocoder(weights=...)); fp16 halves the bytes a
product reads, which speeds up memory-bound products (the plain model's one-column products) but not compute-bound
ones (the subscale model's 16-column products), so a ratio should be read at both.

--isa NAME [NAME ...]: time each model with each of these kernel instruction sets (Vocoder(isa=...)) in the same
interleaved rounds; default: only the one pywavernn selects.

--baseline MODEL (one of the model files, or of the --like configs): every model's speed over MODEL's at the same
thread count, storage and ISA, as the median of the per-round ratios (both timed in the same round;
benchmarks.harness.paired_ratio) with their range, which says how firmly a ratio clears a target (the ratio of two medians hides that spread).

--like CFG: a random model shaped as the training config CFG exports (its ModelConfig, feature config and each
matrix's final sparsity, in its block shape), for speed figures of runs whose trained files are not at hand:
the engine's speed depends on the shapes and the nonzero blocks, not on the values. Needs the training extra
(torch), since it reads the config through training.config.

--linear-order P [--prior laplace]: every --like config is timed a second time with the linear prediction of order
P (and the prior) of docs/format.md §11 added to its model, as like_STEM+lpP (+prior), in the same rounds; with
--baseline like_STEM the ratio is that option's cost, e.g.
    python -m benchmarks.bench_models --like training/configs/bundled_cpu.json --linear-order 32 --prior laplace \
        --threads 1 --baseline like_bundled_cpu --name linear_prediction

--quick: a smoke run (CI's): 1 s of audio, 2 rounds of at least 0.05 s, results/bench_models_quick.{json,md}.

Writes results/bench_models[_NAME].json and .md (--out-dir DIR: there instead). Letters: T samples per call.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from benchmarks.harness import (Candidate, add_out_dir_option, format_table, interleaved_medians, machine_description,
                                paired_ratio, write_report)
from pywavernn import _native
from pywavernn import audio as pa
from pywavernn.vocoder import Vocoder, bundled_model_path

SAMPLE_RATE = 24000
DEFAULT_AUDIO = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "asterisk-en" / "digits_1.flac"


def _mel(voc: Vocoder, audio_path: Path | None, seconds: float) -> np.ndarray:
    if audio_path is not None and audio_path.is_file():
        wav = pa.load_audio(audio_path, voc.sample_rate)
        reps = int(np.ceil(seconds * voc.sample_rate / wav.shape[0]))
        return voc.mel(np.tile(wav, reps)[: int(seconds * voc.sample_rate)])
    rng = np.random.default_rng(0)
    n_frames = int(seconds * voc.sample_rate / voc.feature_config.hop_length)
    return (rng.standard_normal((n_frames, voc.model_config.n_mels)) - 6.0).astype(np.float32)


def model_like(config_path: Path, seed: int = 0, linear_order: int = 0, prior: str = "none"):
    """A random pywavernn Model with the shapes, block shape and final per-matrix sparsity of a training config,
    with the linear prediction of order linear_order and the prior (docs/format.md §11) added when asked."""
    import dataclasses

    from pywavernn.testing import random_model
    from training.config import TrainConfig

    cfg = TrainConfig.from_json_file(config_path)
    if linear_order:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, linear_order=linear_order, prior=prior))
    z = cfg.pruning.sparsities
    densities = {}
    gates = [z[n] for n in ("gru.R_u", "gru.R_r", "gru.R_e")]
    if any(gates):
        densities["gru.R"] = 1.0 - sum(gates) / 3.0
    densities.update({n: 1.0 - z[n] for n in ("out.O1", "out.O2", "out.O3", "out.O4") if z[n] > 0})
    if cfg.model.subscale_factor > 1 and cfg.pruning.subscale_proj > 0:
        densities["subscale.proj.weight"] = 1.0 - cfg.pruning.subscale_proj
    conv = cfg.model.subscale_factor > 1 and cfg.pruning.subscale_convs > 0
    return random_model(cfg.model, cfg.features, seed=seed, densities=densities,
                        conv_density=1.0 - cfg.pruning.subscale_convs if conv else None)


def _cand_name(label: str, threads: int, weights: str, isa: str | None) -> str:
    """A candidate's name: model stem, threads, and the storage and ISA when they are not the defaults."""
    return (f"{Path(label).stem} x{threads}" + ("" if weights == "fp32" else f" {weights}")
            + ("" if isa is None else f" {isa}"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help="model files (default: the bundled model)")
    ap.add_argument("--like", type=Path, nargs="*", default=[], metavar="CFG",
                    help="training configs: random models shaped like their exports (see above)")
    ap.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="speech whose mel is vocoded")
    ap.add_argument("--seconds", type=float, default=4.0, help="audio per call (default 4 s)")
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--weights", nargs="*", default=["fp32"], choices=["fp32", "fp16"],
                    help="weight storages to time (default fp32)")
    ap.add_argument("--isa", nargs="*", default=[None], help="kernel instruction sets to time (default: the selected)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--name", default="", help="suffix of the result files")
    ap.add_argument("--baseline", default=None, metavar="MODEL",
                    help="one of the model files: report every model's speed over its, per round (see above)")
    ap.add_argument("--linear-order", type=int, default=0, metavar="P",
                    help="also time each --like config with linear prediction of order P (docs/format.md §11)")
    ap.add_argument("--prior", default="none", choices=["none", "laplace"], help="with --linear-order: the prior")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 1 s of audio, 2 short rounds, report bench_models_quick unless --name")
    add_out_dir_option(ap)
    args = ap.parse_args(argv)
    min_seconds = 0.5
    if args.quick:
        args.seconds, args.rounds, min_seconds = min(args.seconds, 1.0), min(args.rounds, 2), 0.05
        args.name = args.name or "quick"
    if args.prior != "none" and not args.linear_order:
        ap.error("--prior needs --linear-order P >= 1 (the prior is centred on the linear prediction)")
    sources = [(Path(p).name, str(p)) for p in args.models]  # (label, what Vocoder is given)
    likes = [(f"like_{cfg.stem}", cfg, {}) for cfg in args.like]
    if args.linear_order:
        suffix = f"+lp{args.linear_order}" + ("+prior" if args.prior != "none" else "")
        likes += [(f"like_{cfg.stem}{suffix}", cfg, {"linear_order": args.linear_order, "prior": args.prior})
                  for cfg in args.like]
    base_label = None
    if args.baseline is not None:  # a model file, or a --like config (by its path or its label like_STEM)
        matches = [label for label, p in sources if p == args.baseline or label == Path(args.baseline).name]
        matches += [label for label, cfg, extra in likes if args.baseline in (str(cfg), label)
                    and (not extra or args.baseline == label)]
        if len(matches) != 1:
            ap.error(f"--baseline {args.baseline}: expected one of the model files or --like configs given "
                     f"({', '.join([p for _, p in sources] + [label for label, _, _ in likes]) or 'none'})")
        base_label = matches[0]
    sources += [(label, model_like(cfg, **extra)) for label, cfg, extra in likes]
    sources = sources or [(bundled_model_path().name, str(bundled_model_path()))]
    cands, meta = [], {}
    for label, source in sources:
        base = Vocoder(source)
        mel = _mel(base, args.audio, args.seconds)
        want = base.vocode(mel, seed=0)
        mc = base.model_config
        for wt, isa in itertools.product(args.weights, args.isa):
            one = want if (wt, isa) == ("fp32", None) else Vocoder(source, weights=wt, isa=isa).vocode(mel, seed=0)
            for t in args.threads:
                voc = Vocoder(source, threads=t, weights=wt, isa=isa)
                if not np.array_equal(voc.vocode(mel, seed=0), one):
                    raise RuntimeError(f"{label}: threads={t} gives other samples than threads=1 ({wt} weights, "
                                       f"ISA {voc.engine.isa})")
                name = _cand_name(label, t, wt, isa)
                cands.append(Candidate(name, (lambda v=voc, m=mel: v.vocode(m, seed=0)), work=want.shape[0]))
                meta[name] = {"model": label, "threads": t, "weights": wt, "isa": voc.engine.isa,
                              "isa_arg": isa, "hidden": mc.hidden_size, "subscale_factor": mc.subscale_factor,
                              "sparsity": base.model.sparsity(), "samples": int(want.shape[0])}
    count = _native.engine().handover_count if _native.available() else (lambda: 0)
    handovers = count()
    res = interleaved_medians(cands, rounds=args.rounds, min_seconds=min_seconds)
    handovers = count() - handovers
    rows = []
    for c in cands:
        m, rate = meta[c.name], res[c.name]["rate"]
        one = res[_cand_name(m["model"], 1, m["weights"], m["isa_arg"])]["rate"] if 1 in args.threads else None
        row = {**m, "samples_per_s": rate, "x_real_time": rate / SAMPLE_RATE,
               "x_one_thread": rate / one if one else None, "timings": res[c.name]}
        if base_label is not None:
            r = paired_ratio(res, _cand_name(base_label, m["threads"], m["weights"], m["isa_arg"]), c.name)
            row["x_baseline"] = r
            row["x_baseline_text"] = f"{r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f})"
        rows.append(row)
    columns = [("model", "model", ""), ("subscale_factor", "B", ""), ("weights", "weights", ""), ("isa", "ISA", ""),
               ("threads", "threads", ""),
               ("samples_per_s", "samples/s", ",.0f"), ("x_real_time", "x real time", ".2f"),
               ("x_one_thread", "x 1 thread", ".2f")]
    if base_label is not None:
        columns.append(("x_baseline_text", f"x {Path(base_label).stem} (per-round median, range)", ""))
    table = format_table(rows, columns)
    note = (f"\n\nVocoder.vocode of {args.seconds:g} s of speech ({args.audio.name if args.audio else 'random mel'}), "
            f"fast mode, {' and '.join(args.weights)} weights, selected ISA {_native.selected_isa()}, "
            f"medians of {args.rounds} interleaved rounds; conditioning network included. "
            f"Hand-overs to one thread during the timing (a busy machine): {handovers}.")
    path = write_report("bench_models" + (f"_{args.name}" if args.name else ""), machine_description(), rows,
                        table + note, args.out_dir,
                        extra={"handovers_during_timing": handovers, "baseline": base_label})
    print(table + note)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
