"""The public vocoder: `Vocoder(model, backend=...)` turns log-mel spectrograms into 24 kHz 16-bit audio.

What it is: input validation and normalisation, then a call into one backend:
- `reference`: pywavernn/reference.py, NumPy, slow and clear;
- `cpu`: the compiled engine (Cython + C kernels), the default;
- `cuda`: the nvcc-built persistent-kernel sampler (cuda/), when built and a GPU is present.
What it is not: the maths (see docs/format.md and reference.py) or the kernels (pywavernn/_kernels/).

A Vocoder holds immutable weights and may be shared between threads; every call draws its own randomness from
`numpy.random.default_rng(seed)` as (T, 2) float32 uniforms (docs/format.md §4), so backends can be compared
sample for sample.

    from pywavernn import Vocoder
    voc = Vocoder("model.safetensors")
    audio = voc.vocode(mel, seed=0)          # int16 at voc.sample_rate
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

import numpy as np

from pywavernn import features, format as fmt
from pywavernn.audio import deemphasis, preemphasis

BACKENDS = ("cpu", "reference", "cuda")
WEIGHT_DTYPES = ("fp32", "fp16")
PROGRESS_CHUNK = 24000  # samples between progress callbacks on the cpu backend
BUNDLED_MODEL = Path(__file__).resolve().parent / "data" / "default.safetensors"

ModelLike = Union[str, os.PathLike, fmt.Model, None]


def bundled_model_path() -> Path:
    """Path of the model shipped in the package (see README: research and demonstration use only)."""
    if not BUNDLED_MODEL.is_file():
        raise FileNotFoundError(
            f"no bundled model in this installation ({BUNDLED_MODEL}); pass a model file with --model / Vocoder(path)"
        )
    return BUNDLED_MODEL


def _as_model(model: ModelLike) -> fmt.Model:
    if model is None:
        return fmt.load_model(bundled_model_path())
    if isinstance(model, fmt.Model):
        model.validate()
        return model
    if isinstance(model, (str, os.PathLike)):
        return fmt.load_model(model)
    raise TypeError(f"model: expected a path, a pywavernn.format.Model or None, found {type(model).__name__}")


def conditioning(model: fmt.Model, mel: np.ndarray) -> np.ndarray:
    """The frame-rate conditioning g (F, 3H) of a checked mel, computed once per utterance; finite or a clear
    error (finite but huge mel values can overflow the conditioning network). The products run in the compiled
    kernel when it is built (pywavernn.kernels.frame_matmul: the reference's bits, ~10x faster)."""
    from pywavernn import _native, kernels, reference

    matmul = kernels.frame_matmul if _native.available() else None
    with np.errstate(over="ignore", invalid="ignore"):
        g = reference.conditioning_ref(model, mel, matmul)
    if not np.isfinite(g).all():
        raise ValueError(f"mel: values up to |{float(np.abs(mel).max()):.3g}| overflow the conditioning network; "
                         "expected a log-mel spectrogram (typically within [-12, 5])")
    return g


def _with_progress(samples: np.ndarray, progress: Callable[[int], None] | None) -> np.ndarray:
    if progress is not None:
        progress(samples.shape[0])
    return samples


def draw_uniforms(n_samples: int, seed: int | np.random.Generator | None) -> np.ndarray:
    """The (T, 2) float32 uniforms every backend consumes (coarse, fine per sample)."""
    if not (seed is None or isinstance(seed, np.random.Generator)
            or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0)):
        raise ValueError(f"seed: expected a non-negative integer, a numpy Generator or None, found {seed!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.random((n_samples, 2), dtype=np.float32)


class Vocoder:
    """A WaveRNN vocoder bound to one model and one backend.

    model:   path to a .safetensors model file, a loaded `pywavernn.format.Model`, or None for the bundled model.
    backend: "cpu" (compiled kernels, default), "reference" (NumPy) or "cuda" (GPU; ValueError saying why if
             it is not available here).
    weights: storage precision of the matrices on the cpu backend, "fp32" or "fp16" (arithmetic stays fp32).
    threads: threads for one utterance on the cpu backend (plain models: each product's rows split over a team;
             subscale models: the B sub-tensor streams split over a team, at most B used). Samples never depend on
             it.
    exact:   cpu backend only: use libm expf/tanhf instead of the fast approximations (bit-comparable to reference).
    isa:     cpu backend only: the sampling loop's instruction set ("generic", "avx2", "avx512", "neon": one that is
             built and that this CPU runs, pywavernn.kernels.available_isas()); None (default) takes
             pywavernn.selected_isa(), the best one. For comparisons: avx512 gives the avx2 samples bit for bit.
             (The conditioning network's products give the same bits on every ISA and run on the selected one.)
    """

    def __init__(self, model: ModelLike = None, backend: str = "cpu", *, weights: str = "fp32",
                 threads: int = 1, exact: bool = False, isa: str | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, found {backend!r}")
        if weights not in WEIGHT_DTYPES:
            raise ValueError(f"weights: expected one of {WEIGHT_DTYPES}, found {weights!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads: expected a positive integer, found {threads!r}")
        if backend != "cpu" and (weights != "fp32" or threads != 1 or exact or isa is not None):
            raise ValueError(f"weights, threads, exact and isa apply to the 'cpu' backend only; backend {backend!r} "
                             f"found weights={weights!r}, threads={threads}, exact={exact}, isa={isa!r}")
        self.model = _as_model(model)
        self.backend = backend
        self.weights = weights
        self.threads = threads
        self.exact = bool(exact)
        self._engine = None
        self._subscale = self.model.model_config.subscale_factor > 1
        if backend == "cpu" and self._subscale:
            from pywavernn.subscale_engine import SubscaleEngine  # compiled; imported only when asked for

            self._engine = SubscaleEngine(self.model, weights=weights, exact=exact, threads=threads, isa=isa)
        elif backend == "cpu":
            from pywavernn.engine import CpuEngine

            self._engine = CpuEngine(self.model, weights=weights, threads=threads, exact=exact, isa=isa)
        elif backend == "cuda":
            from pywavernn import cuda

            ok, why = cuda.available(self.model)
            if not ok:
                raise ValueError(f"backend 'cuda' is not available: {why}")
            self._engine = cuda.CudaEngine(self.model)

    @property
    def model_config(self):
        return self.model.model_config

    @property
    def feature_config(self):
        return self.model.feature_config

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.feature_config.hop_length

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel of float audio at 24 kHz with this model's feature config, shape (F, n_mels)."""
        return features.log_mel(audio, self.feature_config)

    def vocode(self, mel: np.ndarray, seed: int | np.random.Generator | None = 0, *,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Generate int16 audio of F * hop samples from a log-mel of shape (F, n_mels)."""
        samples = self._generate(mel, seed, progress)
        coef = self.model_config.preemphasis
        return samples if not coef else deemphasis(samples, coef)[0]

    def _generate(self, mel, seed, progress) -> np.ndarray:
        """The network's samples (before any de-emphasis)."""
        from pywavernn import reference

        mel = features.check_mel(mel, self.model_config.n_mels)
        uniforms = draw_uniforms(mel.shape[0] * self.hop_length, seed)
        g = conditioning(self.model, mel)  # frame rate, once per utterance (the reference recomputes its own)
        if self._engine is None and self._subscale:
            from pywavernn.reference_subscale import generate_subscale_ref

            return _with_progress(generate_subscale_ref(self.model, mel, uniforms), progress)
        if self._engine is None:
            return reference.generate_ref(self.model, mel, uniforms, progress=progress)
        if progress is None or self.backend == "cuda" or self._subscale:  # one call for the whole utterance
            return _with_progress(self._engine.generate(g, uniforms), progress)
        state, pieces = self._engine.new_state(), []
        for start in range(0, uniforms.shape[0], PROGRESS_CHUNK):  # same samples as one call (state carries on)
            pieces.append(self._engine.generate(g, uniforms[start:start + PROGRESS_CHUNK], state))
            progress(state.t)
        return np.concatenate(pieces)

    def stream(self, seed: int | np.random.Generator | None = 0):
        """A streaming utterance: `push(mel_chunk) -> samples`, then `finish() -> samples` (cpu backend).

        The samples equal `vocode(whole_mel, seed)`; latency is (cond_lookahead + 1) frames, plus about
        (B - 1)(F + 1) B samples for a subscale model (pywavernn/stream.py).
        """
        from pywavernn.stream import open_stream

        return open_stream(self, seed)

    def resynthesize(self, audio: np.ndarray, seed: int | np.random.Generator | None = 0, *,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Audio (float, 24 kHz) -> mel -> audio (int16), trimmed to the input's length."""
        audio = np.asarray(audio)
        out = self.vocode(self.mel(audio), seed, progress=progress)
        return out[: audio.shape[0]]

    def nll(self, mel: np.ndarray, audio_int16: np.ndarray) -> float:
        """Teacher-forced negative log-likelihood of the audio, in bits per 16-bit sample.

        A pre-emphasis model scores the pre-emphasised audio (what its network predicts; docs/format.md §10).
        Plain models on the cpu backend run it in C (within 1e-4 bits of the reference with exact=True, 0.01
        with the fast nonlinearities; tests/test_engine.py); otherwise the NumPy reference computes it.
        """
        from pywavernn import reference

        mel = features.check_mel(mel, self.model_config.n_mels)
        audio_int16 = np.asarray(audio_int16)
        if audio_int16.shape != (mel.shape[0] * self.hop_length,):
            raise ValueError(f"audio_int16: expected shape ({mel.shape[0] * self.hop_length},) = frames x hop, "
                             f"found {audio_int16.shape}")
        if self.model_config.preemphasis:  # the network models the pre-emphasised samples
            audio_int16 = preemphasis(audio_int16, self.model_config.preemphasis)
        if self._subscale:
            from pywavernn.reference_subscale import nll_subscale_ref

            return nll_subscale_ref(self.model, mel, audio_int16)
        if self.backend == "cpu":
            return self._engine.nll(conditioning(self.model, mel), audio_int16)
        return reference.nll_ref(self.model, mel, audio_int16)

    def __repr__(self) -> str:
        c = self.model_config
        return (f"Vocoder(H={c.hidden_size}, block={c.block_shape}, backend={self.backend!r}, "
                f"weights={self.weights!r}, threads={self.threads})")
