"""Write the compatibility fixtures that tests/test_compat.py holds every committed model file to:
tiny model files tests/data/compat/*.safetensors, the mels they are vocoded from (tests/data/compat/mels.npz) and
the pins (tests/data/compat/pins.json).

What it is: one tiny model (H = 32, a few KB) per model kind and option set the repository ships or trains with,
each made the way a user makes a model file: a seeded, randomly initialised PyTorch twin (training/nets.py) under
a TrainConfig with the recipe's model options, pruned to its final sparsity by the trainer's own Pruner, saved as a
training checkpoint and written by `python -m training export`'s export_checkpoint. Then, for every committed
`*.safetensors` (these, the bundled model and tests/data/golden_small.safetensors): the file's SHA-256, and what
it vocodes from the log-mel of a fixed chirp (computed with the file's own feature config, stored in mels.npz so
the pins do not depend on FFT rounding) with seed 0: the SHA-256 and count of the int16 samples in exact mode
(which the NumPy reference must also give), the same of the mel's first REFERENCE_FRAMES frames (the test's short
reference run), of exact mode with fp16 weight storage, and the teacher-forced NLL of the chirp itself.
What it is not: a trained model (the audio is noise), or golden data against PyTorch (tests/data/make_golden.py).
There is no fp16 model file: the format stores float32 only (docs/format.md §6), and fp16 is a storage choice made
at load time (Vocoder(weights="fp16")), pinned for every file instead.

The pins are the meaning of the committed files. A change to the engines, the loader, the conditioning or the
sampling rule that alters what an existing file vocodes fails tests/test_compat.py; that is the point. Rerun this
script only as a deliberate format decision: when a model file is added to the repository (the test names it),
replaced (the bundled model retrained) or removed, or when the project decides that old files may vocode
differently (then say so in docs/format.md's version history, since users' files change meaning too). Rerunning it
to make a failing test pass after an engine change hides exactly what the test is for.

    python tests/data/make_compat.py            # from the repository root; needs torch; commit what it writes
    python tests/data/make_compat.py --pins     # the pins only, keeping the tiny model files as they are

The model files are deterministic for a given torch version, and a rerun that would write the same tensors and
metadata keeps the file as it is (the safetensors writer orders its header differently at each write). Their
provenance names the torch and pywavernn versions that wrote them, so a rerun under others rewrites them (new file
hashes) with the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))  # run from anywhere without installing

from pywavernn import Vocoder, features  # noqa: E402
from pywavernn.audio import float_to_int16  # noqa: E402
from pywavernn.config import FeatureConfig  # noqa: E402

COMPAT = HERE / "compat"
PINS = COMPAT / "pins.json"
MELS = COMPAT / "mels.npz"
SEED = 0  # the vocoding seed of every pin
N_FRAMES = 8  # 2,400 samples at hop 300: a multiple of B = 16
REFERENCE_FRAMES = 4  # the test runs the (slow) NumPy reference on the mel's first frames only
WEIGHT_SEED = 20261208

# The tiny models. Each is a TrainConfig's model and pruning sections: the recipe's model options at H = 32, and
# its pruning at the final sparsity. cond_kernels (5, 3) and the default features are every shipped recipe's.
# K = 8 keeps the files small; a model whose heads are pruned in 16x1 blocks needs 16 | K (O1 is K x H/2).
TINY = {"hidden_size": 32, "out_hidden": 8, "cond_channels": 4, "cond_kernels": [5, 3], "n_mels": 80}
TINY_K16 = {**TINY, "out_hidden": 16}
BLOCK_16X1 = {"t0": 0, "S": 10, "prune_every": 5, "block": [16, 1]}
MODELS = {
    # the plain paper model, unpruned (campaign c0 before its pruning ramp)
    "plain_dense": {"model": TINY, "pruning": {}},
    # plain, 16x1 blocks, recurrent 90 %, heads 80/70 % (plain_small.json, sparse_default.json)
    "plain_16x1": {"model": TINY_K16, "pruning": {**BLOCK_16X1, "target_sparsity": 0.9, "prune_outputs": True,
                                              "per_matrix": {"out.O1": 0.8, "out.O3": 0.8, "out.O2": 0.7,
                                                             "out.O4": 0.7}}},
    # the campaign's recipe (training/configs/campaign/c2..c4): pre-emphasis 0.85, 32-tap linear prediction and
    # its Laplace prior (docs/format.md §10-§11), recurrent gates 90 % in 16x1 blocks
    "plain_preemph_lp_laplace": {"model": {**TINY, "preemphasis": 0.85, "linear_order": 32, "prior": "laplace"},
                                 "pruning": {**BLOCK_16X1, "target_sparsity": 0.9}},
    # the shipped subscale recipe (training/configs/subscale_small.json's model options and pruning, C_x 16)
    "subscale_b16": {"model": {**TINY_K16, "subscale_factor": 16, "subscale_horizon": 2, "subscale_channels": 16,
                               "subscale_layers": 4, "subscale_previous": "time", "subscale_context_order": "lag",
                               "subscale_linear": 4, "subscale_prior": "laplace"},
                     "pruning": {**BLOCK_16X1, "target_sparsity": 0.9, "prune_outputs": True,
                                 "per_matrix": {"out.O1": 0.8, "out.O3": 0.8, "out.O2": 0.7, "out.O4": 0.7},
                                 "subscale_proj": 0.9, "subscale_convs": 0.75}},
    # the Fused Subscale WaveRNN 2x (docs/format.md §12; training/configs/fused_small.json); K = 16 rather than
    # the recipe's H / 8 = 4, for its 16x1 head pruning
    "fused_2x": {"model": {**TINY_K16, "subscale_factor": 2, "subscale_horizon": 2, "subscale_fused": True},
                 "pruning": {**BLOCK_16X1, "target_sparsity": 0.9, "prune_outputs": True,
                             "per_matrix": {"fused.O1": 0.8, "fused.O2": 0.7}}},
}


def chirp_audio(n_samples: int, sample_rate: int) -> np.ndarray:
    """Float64 audio in [-0.5, 0.5]: a 100 -> 3,000 Hz exponential chirp with 6 harmonics and a rising envelope,
    so its log-mel moves across the bins from frame to frame. Plain NumPy, no randomness."""
    t = np.arange(n_samples) / sample_rate
    duration = n_samples / sample_rate
    f0, f1 = 100.0, 3000.0
    phase = 2 * np.pi * f0 * duration / np.log(f1 / f0) * (np.exp(t / duration * np.log(f1 / f0)) - 1.0)
    x = sum(np.sin(k * phase) / k for k in range(1, 7))
    x *= 0.3 + 0.7 * t / duration
    return 0.5 * x / np.abs(x).max()


def chirp_mel(fc: FeatureConfig, n_frames: int = N_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel (n_frames, n_mels) float32, int16 audio of n_frames * hop samples) of the chirp."""
    n = n_frames * fc.hop_length
    audio = chirp_audio(n, fc.sample_rate)
    return features.log_mel(audio, fc)[:n_frames], float_to_int16(audio)


def mel_key(fc: FeatureConfig) -> str:
    """mels.npz's name of the mel for this feature config."""
    return hashlib.sha256(fc.to_json().encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256_samples(samples: np.ndarray) -> str:
    """SHA-256 of int16 samples as little-endian bytes (the same on every platform)."""
    return hashlib.sha256(np.ascontiguousarray(samples, dtype="<i2").tobytes()).hexdigest()


def committed_models() -> list[str]:
    """Every `*.safetensors` git tracks in the repository, as paths relative to its root."""
    out = subprocess.run(["git", "ls-files", "-z", "--", "*.safetensors"], cwd=REPO, check=True,
                         capture_output=True).stdout.decode()
    return sorted(p for p in out.split("\0") if p)


# ---------------------------------------------------------------------------------------------------- models

def perturb(net, seed: int) -> None:
    """Move the twin's initialisation away from a near-uniform softmax, so its samples depend on every weight:
    the conditioning, GRU and head weights x2 (heads x3, as tests/data/make_golden.py does); the linear prediction
    taps (initially est = the previous sample) and the prior's weights (initially zero: a scale of e^6 whatever the
    state) given seeded noise, so that §11's and §9's estimates and prior scales take part."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(("linear_weight", "lin_weight")):
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
            elif name.startswith("prior_weight"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.startswith("prior_bias"):
                continue
            elif name.startswith(("O", "b1", "b2")):
                p.mul_(3.0)
            else:
                p.mul_(2.0)


def write_model(name: str, spec: dict, seed: int) -> Path:
    """The tiny model `name`: a seeded twin, perturbed, pruned to its final sparsity, checkpointed and exported."""
    import torch

    from training.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, save_checkpoint
    from training.config import TrainConfig
    from training.export import export_checkpoint
    from training.nets import build_net, make_pruner

    cfg = TrainConfig.from_dict({"model": spec["model"], "pruning": spec["pruning"], "features": {}, "seed": seed,
                                 "steps": 10, "window_frames": 8, "comment": f"tests/data/make_compat.py: {name}"})
    torch.manual_seed(seed)
    net = build_net(cfg)
    perturb(net, seed + 1)
    step = cfg.pruning.t0 + cfg.pruning.S
    if cfg.pruning.enabled_for(cfg.model.kind):
        pruner = make_pruner(net, cfg)
        pruner.update(step)  # the end of the ramp: every target at its final sparsity
    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": step, "config": cfg.to_dict(),
             "model": net.state_dict(), "data": {"note": "none: random weights"}, "metrics": {}}
    out = COMPAT / f"{name}.safetensors"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, new = Path(tmp) / "checkpoint.pt", Path(tmp) / out.name
        save_checkpoint(ckpt, state)
        export_checkpoint(ckpt, new, notes={"source": "tests/data/make_compat.py", "model": name,
                                            "weights": "random (seeded), output is noise"})
        if not (out.is_file() and same_content(out, new)):
            shutil.copyfile(new, out)
    return out


def same_content(a: Path, b: Path) -> bool:
    """Whether two safetensors files hold the same tensors and metadata. Not their bytes: the safetensors writer
    orders the header's metadata keys differently from one write to the next, so an unchanged model would
    otherwise get a new file (and file hash) at every run."""
    def parse(path: Path) -> tuple[dict, dict]:
        raw = path.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        data = {k: raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
                for k, v in header.items() if k != "__metadata__"}
        return header, data

    def layout(header: dict) -> dict:  # names, dtypes, shapes and metadata; not where the bytes lie
        return {k: (v if k == "__metadata__" else {**v, "data_offsets": None}) for k, v in header.items()}

    (ha, da), (hb, db) = parse(a), parse(b)
    return layout(ha) == layout(hb) and da == db


# ---------------------------------------------------------------------------------------------------- pins

def pin(path: Path, mels: dict[str, np.ndarray]) -> dict:
    """What the file at `path` means: its hash, and what it vocodes from the chirp's mel (adding that to `mels`)."""
    exact = Vocoder(path, exact=True)
    fc = exact.feature_config
    mel, audio = chirp_mel(fc)
    key = mel_key(fc)
    if key in mels and not np.array_equal(mels[key], mel):
        raise RuntimeError(f"{path}: the chirp's mel under its feature config differs from the one stored")
    mels[key] = mel
    samples = exact.vocode(mel, seed=SEED)
    reference = Vocoder(path, backend="reference").vocode(mel, seed=SEED)
    if not np.array_equal(samples, reference):
        first = int(np.flatnonzero(samples != reference)[0])
        raise RuntimeError(f"{path}: exact mode leaves the NumPy reference at sample {first}; not pinning it")
    short = exact.vocode(mel[:REFERENCE_FRAMES], seed=SEED)
    if not np.array_equal(short, Vocoder(path, backend="reference").vocode(mel[:REFERENCE_FRAMES], seed=SEED)):
        raise RuntimeError(f"{path}: exact mode leaves the NumPy reference on the first {REFERENCE_FRAMES} frames")
    fp16 = Vocoder(path, exact=True, weights="fp16").vocode(mel, seed=SEED)
    return {"file_sha256": sha256_file(path), "kind": exact.model_config.kind, "mel": key, "seed": SEED,
            "samples": int(samples.shape[0]), "exact_sha256": sha256_samples(samples),
            "reference_frames": REFERENCE_FRAMES, "reference_sha256": sha256_samples(short),
            "fp16_exact_sha256": sha256_samples(fp16), "nll_bits": round(float(exact.nll(mel, audio)), 6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pins", action="store_true", help="write only mels.npz and pins.json")
    args = ap.parse_args()
    COMPAT.mkdir(exist_ok=True)
    if not args.pins:
        import torch

        torch.set_num_threads(1)
        for i, (name, spec) in enumerate(MODELS.items()):
            out = write_model(name, spec, WEIGHT_SEED + 10 * i)
            print(f"wrote {out.relative_to(REPO)} ({out.stat().st_size / 1024:.1f} KiB)")
    files = committed_models()
    written = sorted(str(p.relative_to(REPO)) for p in COMPAT.glob("*.safetensors"))
    missing = sorted(set(written) - set(files))
    if missing:
        print(f"note: {', '.join(missing)} not committed yet (git add them): pinned as well", file=sys.stderr)
    mels: dict[str, np.ndarray] = {}
    pins = {}
    for rel in sorted(set(files) | set(written)):
        pins[rel] = pin(REPO / rel, mels)
        print(f"pinned {rel}: {pins[rel]['kind']}, {pins[rel]['samples']} samples, nll {pins[rel]['nll_bits']}")
    np.savez_compressed(MELS, **mels)
    doc = {"comment": "Written by tests/data/make_compat.py (its docstring says when to rerun it: a deliberate "
                      "format decision). Per committed model file: its SHA-256; what it vocodes in exact mode (and "
                      "the NumPy reference) from mels.npz[mel] with the seed, as the SHA-256 of the little-endian "
                      "int16 samples; the same of the mel's first reference_frames frames (the test's reference "
                      "run); the same with fp16 weight storage; the teacher-forced NLL (bits/sample) of the chirp "
                      "the mel was computed from.",
           "files": pins}
    PINS.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINS.relative_to(REPO)} and {MELS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
