"""Write the golden data the reference, kernel and CUDA tests compare against: tests/data/golden_small.npz
(and the same model as tests/data/golden_small.safetensors).

What it is: a small PyTorch WaveRNN (training.model, H=32, K=16, C=8, 80 mels, kernels (3, 3)) with seeded random
weights scaled up (x2 for the conditioning and GRU, x3 for the output heads) so the distributions are far from
uniform, an 8-frame plausible log-mel, 2,400 samples of harmonic audio, and what the PyTorch model computes on them.
What it is not: a trained model; the audio it generates is noise.

Regenerate (needs torch; deterministic on a given torch version; commit both outputs):

    python tests/data/make_golden.py            # from the repository root

Contents of golden_small.npz (T = 8 * 300 = 2,400 samples; all float32 unless said):
    model_config, feature_config    JSON strings (pywavernn.config)
    weights/<name>                  every weight of docs/format.md §6, dense, file layout (gate order u, r, e)
    mel (8, 80), audio int16 (T,)   the teacher-forcing input
    tf_steps int64 (S,)             steps whose teacher-forced logits are stored (the first 32, both sides of
                                    each frame boundary, the last 8 and 32 drawn at random; the npz must stay small)
    tf_logits_c, tf_logits_f (S, 256)   torch teacher-forced logits at tf_steps
    tf_bits (T,)                    per-step -log2 P(c_t) - log2 P(f_t | c_t), teacher forced (checks every step)
    nll float64                     torch's nll_bits: the mean of tf_bits
    uniforms (T, 2)                 the generation's randomness (see below)
    generated int16 (T,)            torch free-running samples from mel and uniforms
    gen_steps int64 (S,), gen_h (S, 32)   torch's hidden state after those generation steps
    min_margin float64              the smallest distance, as a fraction of the cdf total, between any u * cdf[255]
                                    and the edges of the interval of the class it picked

The uniforms are numpy.random.default_rng(SEED + 1).random((T, 2), float32), except that every draw landing
within MARGIN (1e-4 of the cdf total) of an edge of its class's interval is moved to the middle of that interval
(same class, same trajectory), or drawn again where the interval is narrower than 2 * MARGIN. So a backend whose
logits differ from torch's by float32 rounding (another BLAS, FMA, another expf: ~1e-6 of the total) picks the
same class at every step, and the golden samples can be compared exactly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # run from anywhere without installing

from pywavernn.config import FeatureConfig, ModelConfig  # noqa: E402
from training.export import export_model  # noqa: E402
from training.model import WaveRNN, sample_from_logits  # noqa: E402

SEED = 20261101
N_FRAMES = 8
MARGIN = 1e-4  # relative to cdf[255]; float32 rounding moves the cdf by ~1e-6 of it
MODEL_CONFIG = ModelConfig(hidden_size=32, out_hidden=16, cond_channels=8, cond_kernels=(3, 3), n_mels=80,
                           block_shape=(4, 4))
FEATURE_CONFIG = FeatureConfig()
GRU_SCALE, HEAD_SCALE = 2.0, 3.0


def build_model() -> WaveRNN:
    torch.manual_seed(SEED)
    net = WaveRNN(MODEL_CONFIG, FEATURE_CONFIG)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.mul_(HEAD_SCALE if name.startswith("O") else GRU_SCALE)
    return net.eval()


def plausible_mel(rng: np.random.Generator) -> np.ndarray:
    """A log-mel with a spectral tilt and slowly moving, frequency-smooth formant-like bumps, floored at log(1e-5)."""
    n_mels = MODEL_CONFIG.n_mels
    bins = np.arange(n_mels)
    walk = np.cumsum(rng.normal(0.0, 0.6, (N_FRAMES, 8)), axis=0)
    bumps = np.stack([np.interp(bins, np.linspace(0, n_mels - 1, 8), w) for w in walk])
    mel = -2.5 - 6.0 * bins / n_mels + bumps + rng.normal(0.0, 0.3, (N_FRAMES, n_mels))
    return np.clip(mel, np.log(FEATURE_CONFIG.log_floor), 2.0).astype(np.float32)


def plausible_audio(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """A gliding 110-150 Hz harmonic tone with a 3 Hz envelope and a little noise, peak 12000."""
    t = np.arange(n_samples) / FEATURE_CONFIG.sample_rate
    phase = 2 * np.pi * np.cumsum(110.0 + 40.0 * t / t[-1]) / FEATURE_CONFIG.sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 11)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x = x + rng.normal(0.0, 0.02, n_samples)
    return np.round(x / np.abs(x).max() * 12000).astype(np.int16)


def pick_interval(logits: np.ndarray, u: float) -> tuple[int, float, float, float]:
    """(class, lo, hi, total) of §4's rule: the class k has cdf[k-1] <= u * total < cdf[k] = hi."""
    cdf = np.cumsum(np.exp(logits - logits.max()), dtype=np.float32)
    k = sample_from_logits(logits, u)
    lo = float(cdf[k - 1]) if k > 0 else 0.0
    return k, lo, float(cdf[k]), float(cdf[-1])


def edge_margin(logits: np.ndarray, u: float) -> tuple[float, float]:
    """(margin, best): how far u * cdf[255] lies from the edges of its class's interval, and the most it could
    (half the interval), both as fractions of cdf[255]."""
    k, lo, hi, total = pick_interval(logits, u)
    x = float(np.float32(u) * np.float32(total))
    return min(x - lo, hi - x) / total, (hi - lo) / 2 / total


def safe_generation(net: WaveRNN, mel: np.ndarray, uniforms: np.ndarray, rng: np.random.Generator):
    """Generate, moving every draw closer than MARGIN to a cdf edge to its interval's middle (same class, same
    trajectory) or, where the class's interval is too narrow for that, drawing it again and starting over.

    Returns (uniforms, samples, trace, smallest margin)."""
    uniforms = uniforms.copy()
    for attempt in range(500):
        samples, trace = net.generate(mel, uniforms, trace=True)
        worst, redrawn = 1.0, False
        for t in range(uniforms.shape[0]):
            for col, logits in ((0, trace["logits_c"][t]), (1, trace["logits_f"][t])):
                margin, best = edge_margin(logits, uniforms[t, col])
                if margin >= MARGIN:
                    worst = min(worst, margin)
                    continue
                if best < 2 * MARGIN:  # a class of probability < 2 * MARGIN was picked: pick again
                    uniforms[t, col] = rng.random(dtype=np.float32)
                    redrawn = True
                    break
                k, lo, hi, total = pick_interval(logits, uniforms[t, col])
                uniforms[t, col] = np.float32((lo + hi) / 2 / total)
                assert sample_from_logits(logits, uniforms[t, col]) == k, "the middle of the interval changed class"
                worst = min(worst, edge_margin(logits, uniforms[t, col])[0])
            if redrawn:
                break
        if not redrawn:
            again = net.generate(mel, uniforms)
            assert np.array_equal(samples, again), "moving uniforms within their intervals changed the samples"
            print(f"safe_generation: {attempt} redraws")
            return uniforms, samples, trace, worst
    raise RuntimeError("safe_generation: no safe set of uniforms after 500 attempts")


def stored_steps(rng: np.random.Generator, n_samples: int, hop: int) -> np.ndarray:
    boundaries = [s for j in range(1, N_FRAMES) for s in (j * hop - 1, j * hop)]
    chosen = set(range(32)) | set(boundaries) | set(range(n_samples - 8, n_samples))
    chosen |= set(rng.choice(n_samples, size=32, replace=False).tolist())
    return np.array(sorted(chosen), dtype=np.int64)


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    net = build_model()
    hop = FEATURE_CONFIG.hop_length
    n_samples = N_FRAMES * hop
    mel = plausible_mel(rng)
    audio = plausible_audio(rng, n_samples)

    with torch.no_grad():
        mel_t, audio_t = torch.from_numpy(mel)[None], torch.from_numpy(audio)[None]
        logits_c, logits_f = (x[0] for x in net(mel_t, audio_t))
        nll = float(net.nll_bits(mel_t, audio_t))
        u = (torch.from_numpy(audio.astype(np.int32)) + 32768)
        bits = -(torch.log_softmax(logits_c, -1).gather(1, (u >> 8)[:, None].long())[:, 0]
                 + torch.log_softmax(logits_f, -1).gather(1, (u & 255)[:, None].long())[:, 0]) / np.log(2.0)

    uniforms = np.random.default_rng(SEED + 1).random((n_samples, 2), dtype=np.float32)
    uniforms, generated, trace, min_margin = safe_generation(net, mel, uniforms, np.random.default_rng(SEED + 2))

    tf_steps = stored_steps(rng, n_samples, hop)
    model = net.to_model()
    arrays = {
        "model_config": np.array(MODEL_CONFIG.to_json()), "feature_config": np.array(FEATURE_CONFIG.to_json()),
        **{f"weights/{name}": w for name, w in model.weights.items()},
        "mel": mel, "audio": audio, "tf_steps": tf_steps,
        "tf_logits_c": logits_c.numpy()[tf_steps], "tf_logits_f": logits_f.numpy()[tf_steps],
        "tf_bits": bits.numpy().astype(np.float32), "nll": np.float64(nll),
        "uniforms": uniforms, "generated": generated,
        "gen_steps": tf_steps, "gen_h": trace["h"][tf_steps], "min_margin": np.float64(min_margin),
    }
    np.savez_compressed(HERE / "golden_small.npz", **arrays)
    export_model(net, FEATURE_CONFIG, HERE / "golden_small.safetensors",
                 provenance={"source": "tests/data/make_golden.py", "seed": SEED, "note": "random weights"})
    size = (HERE / "golden_small.npz").stat().st_size
    print(f"wrote {HERE / 'golden_small.npz'} ({size / 1024:.0f} KiB): nll {nll:.4f} bits/sample, "
          f"{len(tf_steps)} logit steps, min margin {min_margin:.2e}; and golden_small.safetensors")
    print("config:", json.loads(MODEL_CONFIG.to_json()))


if __name__ == "__main__":
    main()
