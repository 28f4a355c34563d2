"""The public vocoder: `Vocoder(model, backend=...)` turns log-mel spectrograms into 24 kHz 16-bit audio.

What it is: input validation and normalisation, the conditioning network run once per utterance
(pywavernn.conditioning), the uniforms drawn from the seed, and a call into one engine (pywavernn/engines/: the
`Engine` interface of engines/base.py, chosen once, in the constructor, by pywavernn.engines.make_engine):
- `reference`: pywavernn/reference/, NumPy, slow and clear;
- `cpu`: the compiled engines (Cython + C kernels), the default;
- `cuda`: the nvcc-built persistent-kernel sampler (cuda/), when built and a GPU is present.
The methods below never branch on the backend or the model kind. What is done here for every backend: a
pre-emphasis model's output is de-emphasised, and its NLL scores the pre-emphasised audio (docs/format.md §10).
What it is not: the maths (see docs/format.md and pywavernn/reference/) or the kernels (pywavernn/_kernels/).

A Vocoder holds immutable weights and may be shared between threads; every call draws its own randomness from
`numpy.random.default_rng(seed)` as (T, C) float32 uniforms, C the engine's `uniform_columns` (2: coarse and fine,
docs/format.md §4; 4 for a fused model's nibbles, §12), so backends can be compared sample for sample.

    from pywavernn import Vocoder
    voc = Vocoder("model.safetensors")
    audio = voc.vocode(mel, seed=0)          # int16 at voc.sample_rate

Tests: `python -m pytest tests/test_vocoder.py tests/test_preemphasis.py tests/test_engines.py -q`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

import numpy as np

from pywavernn import features
from pywavernn import modelfile as fmt
from pywavernn.audio import deemphasis, preemphasis
from pywavernn.common import draw_uniforms
from pywavernn.conditioning import conditioning
from pywavernn.engines import BACKENDS, Engine, make_engine
from pywavernn.engines.stream import Stream

WEIGHT_DTYPES = ("fp32", "fp16")
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
    raise TypeError(f"model: expected a path, a pywavernn.modelfile.Model or None, found {type(model).__name__}")


class Vocoder:
    """A WaveRNN vocoder bound to one model and one backend.

    model:   path to a .safetensors model file, a loaded `pywavernn.modelfile.Model`, or None for the bundled model.
    backend: "cpu" (compiled kernels, default), "reference" (NumPy) or "cuda" (GPU; ValueError saying why if
             it is not available here).
    weights: storage precision of the matrices on the cpu backend, "fp32" or "fp16" (arithmetic stays fp32).
    threads: threads for one utterance on the cpu backend (plain models: each product's rows split over a team;
             subscale models: the B sub-tensor streams split over a team, at most B used; fused models: R's rows
             split over a team, the two halves of the state on threads 0 and 1). Samples never depend on it.
    exact:   cpu backend only: the float32 operations of docs/format.md §3a instead of the fast approximations and FMA
             kernels: the reference backend's samples (tests/test_exactness.py; about 2/3 of the fast speed).
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
        self._engine = make_engine(self.model, backend, weights=weights, threads=threads, exact=exact, isa=isa)

    @property
    def engine(self) -> Engine:
        """The engine this Vocoder runs (pywavernn/engines/base.py), e.g. for its `isa` on the cpu backend."""
        return self._engine

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
        """Generate int16 audio of F * hop samples from a log-mel of shape (F, n_mels).

        progress(n_done), when given, is called as samples are done (the cpu engine reports every 24,000 samples,
        the plain reference every frame, the others once at the end)."""
        mel = features.check_mel(mel, self.model_config.n_mels)
        uniforms = draw_uniforms(mel.shape[0] * self.hop_length, seed, self._engine.uniform_columns)
        g = conditioning(self.model, mel)  # frame rate, once per utterance
        samples = self._engine.generate(g, uniforms, progress=progress)
        coef = self.model_config.preemphasis
        return samples if not coef else deemphasis(samples, coef)[0]

    def stream(self, seed: int | np.random.Generator | None = 0) -> Stream:
        """A streaming utterance (pywavernn/engines/stream.py): `push(mel_chunk) -> samples`, then `finish()`.

        The samples equal `vocode(whole_mel, seed)`; latency is (cond_lookahead + 1) frames, plus about
        (B - 1)(F + 1) B samples for a subscale model (5 for a fused one). Backends whose loop runs whole utterances (CUDA, the
        subscale and fused references) cannot stream: ValueError saying so.
        """
        return Stream(self._engine, self.model, seed)

    def resynthesize(self, audio: np.ndarray, seed: int | np.random.Generator | None = 0, *,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Audio (float, 24 kHz) -> mel -> audio (int16), trimmed to the input's length."""
        audio = np.asarray(audio)
        out = self.vocode(self.mel(audio), seed, progress=progress)
        return out[: audio.shape[0]]

    def nll(self, mel: np.ndarray, audio_int16: np.ndarray) -> float:
        """Teacher-forced negative log-likelihood of the audio, in bits per 16-bit sample.

        A pre-emphasis model scores the pre-emphasised audio (what its network predicts; docs/format.md §10).
        The engine computes it: in C for plain and fused models on the cpu backend (within 1e-4 bits of the
        reference with exact=True, 0.01 with the fast nonlinearities; tests/test_engine.py,
        tests/test_fused_engine.py); the NumPy reference otherwise (the subscale C loop and the CUDA sampler have no
        teacher forcing).
        """
        mel = features.check_mel(mel, self.model_config.n_mels)
        audio_int16 = np.asarray(audio_int16)
        if audio_int16.shape != (mel.shape[0] * self.hop_length,):
            raise ValueError(f"audio_int16: expected shape ({mel.shape[0] * self.hop_length},) = frames x hop, "
                             f"found {audio_int16.shape}")
        if self.model_config.preemphasis:  # the network models the pre-emphasised samples
            audio_int16 = preemphasis(audio_int16, self.model_config.preemphasis)
        return self._engine.nll(conditioning(self.model, mel), audio_int16)

    def __repr__(self) -> str:
        c = self.model_config
        kind = "" if c.kind == "plain" else f"kind={c.kind!r}, "
        return (f"Vocoder({kind}H={c.hidden_size}, block={c.block_shape}, backend={self.backend!r}, "
                f"weights={self.weights!r}, threads={self.threads})")
