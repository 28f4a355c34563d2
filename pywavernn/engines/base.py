"""The engine interface: what `pywavernn.Vocoder` and the stream talk to, and what every backend implements.

What it is: `Engine`, the protocol (an abstract base class) met by the NumPy reference (plain, subscale and fused,
pywavernn/engines/reference.py), the C engines (pywavernn/engines/cpu.py, subscale.py, fused.py) and the CUDA
engine (pywavernn/engines/cuda.py). An engine is one model prepared for one backend: immutable after construction
and shareable between threads, with everything that belongs to one utterance in the state object `new_state()`
returns. The frame-rate conditioning g (F, 3H) is computed once, by the caller
(pywavernn.conditioning.conditioning), and handed in; randomness is an input, uniforms (T, C) float32 with C =
`engine.uniform_columns` (2: coarse and fine, docs/format.md §4; 4: the fused model's nibbles, §12), so every
backend can be compared with every other sample for sample.

    state = engine.new_state()                       # a fresh utterance; state.t = samples returned so far
    samples = engine.generate(g, uniforms)           # int16 (T,), the whole utterance (progress=callback optional)
    bits = engine.nll(g, audio_int16)                # teacher-forced bits per 16-bit sample (docs/format.md §5)
    # streaming (engine.streams): hand over g as it becomes final, get back the samples it determines
    out = engine.advance(state, g_window, g_first, n_frames=None, draw=draw)   # n_frames: the total, once known

What it is not: pre- and de-emphasis (ModelConfig.preemphasis, docs/format.md §10): an engine computes the
network's samples; `Vocoder` and the stream, which every backend goes through, filter them. Nor the mel checks
(pywavernn.features.check_mel, done by Vocoder and the stream before the conditioning).

Tests: `python -m pytest tests/test_engines.py -q` (the conformance suite over every backend present), plus each
engine's own tests (tests/test_engine.py, tests/test_subscale_engine.py, tests/test_fused_engine.py,
tests/test_cuda.py).
Letters: H hidden units, F frames, hop samples per frame, T samples.
"""

from __future__ import annotations

import abc
from typing import Any, Callable

import numpy as np

from pywavernn.config import ModelConfig

Progress = Callable[[int], None]
Draw = Callable[[int], np.ndarray]


class Engine(abc.ABC):
    """One model prepared for one backend. Subclasses set `backend`, `model_config` and `hop`, and implement
    new_state, generate and nll; those that can stream set `streams` and implement advance."""

    backend: str = ""  # "reference", "cpu" or "cuda": what Vocoder(backend=...) names
    streams: bool = False  # whether advance() is implemented (Vocoder.stream needs it)
    uniform_columns: int = 2  # uniforms per sample: 2 (coarse, fine), 4 for the fused model's nibbles (§12)
    model_config: ModelConfig
    hop: int  # samples per frame of g

    @abc.abstractmethod
    def new_state(self) -> Any:
        """A fresh utterance: h = 0, the previous sample s = 0, nothing generated. Its `t` is the number of samples
        returned so far (by advance, or by generate on engines that continue a state)."""

    @abc.abstractmethod
    def generate(self, cond: np.ndarray, uniforms: np.ndarray, state: Any = None, *,
                 progress: Progress | None = None) -> np.ndarray:
        """Samples of the utterance whose conditioning is cond (F, 3H) float32, drawn with uniforms (T, C) float32
        in [0, 1) (C = uniform_columns: coarse, fine per sample; a fused model's four nibbles): int16 (T,).

        state None (the usual) generates samples 0 .. T - 1 of a fresh utterance, T = F * hop for the whole of it.
        Plain engines also continue a state from new_state() (samples state.t .. state.t + T - 1, advancing it;
        successive calls give the samples of one call); engines whose loop runs whole utterances (subscale, fused, CUDA)
        take only a fresh state and T = F * hop, and say so. progress(n_done) is called as samples are done, at
        least once, after the last.
        """

    @abc.abstractmethod
    def nll(self, cond: np.ndarray, audio_int16: np.ndarray) -> float:
        """Teacher-forced negative log-likelihood (docs/format.md §5) of audio_int16 (F * hop,) given its
        conditioning cond (F, 3H), in bits per 16-bit sample: the mean of -log2 P(c_t) - log2 P(f_t | c_t) (of
        the four nibbles' -log2 P for a fused model)."""

    def advance(self, state: Any, cond: np.ndarray, cond_first: int, n_frames: int | None,
                draw: Draw) -> np.ndarray:
        """Streaming: generate what the conditioning handed over so far determines; return the int16 samples that
        are now final, from sample state.t on (advancing state.t by their number).

        cond (rows, 3H): the final conditioning of frames cond_first .. cond_first + rows - 1, from at least frame
        state.t // hop (earlier frames may be dropped between calls). n_frames: the utterance's length in frames
        once known (then cond reaches its last frame), else None. draw(n) -> float32 (n, C): the uniforms of the
        next n samples in true time, each drawn once, in order (an engine may draw ahead of what it returns).
        Over any sequence of calls ending with n_frames given, the samples returned are those of one generate().
        """
        raise ValueError(f"streaming is not available on the {self.backend!r} backend for this model (its loop "
                         "runs whole utterances); use backend 'cpu'")


class SequentialEngine(Engine):
    """An engine whose samples come out in time order, each final once generated, continuing a state (the plain
    WaveRNN on any backend that carries its state): advance is generate over the frames whose next frame is
    final. Subclasses implement generate(cond, uniforms, state, *, cond_first=0, progress=None), where cond holds
    the frames from cond_first on."""

    streams = True

    @abc.abstractmethod
    def generate(self, cond: np.ndarray, uniforms: np.ndarray, state: Any = None, *, cond_first: int = 0,
                 progress: Progress | None = None) -> np.ndarray:
        """Engine.generate, with cond holding frames cond_first, cond_first + 1, ... of the utterance (samples
        state.t .. state.t + T - 1 must lie in them; sample t reads frames t // hop and the next, the last one
        repeated past cond's end, the utterance's edge rule once cond reaches the end)."""

    def advance(self, state: Any, cond: np.ndarray, cond_first: int, n_frames: int | None,
                draw: Draw) -> np.ndarray:
        # Samples of frame j interpolate g[j] and g[j + 1], so frame j is ready once g[j + 1] is final, and at
        # the true end the last frame uses its own g twice (the edge rule, as cond then ends at the last frame).
        stop_frame = n_frames if n_frames is not None else cond_first + cond.shape[0] - 1
        n = stop_frame * self.hop - state.t
        if n <= 0:
            return np.empty(0, np.int16)
        return self.generate(cond, draw(n), state, cond_first=cond_first)


class WholeUtterance:
    """The state of an engine that generates whole utterances (no streaming): t = samples returned, 0 or T."""

    def __init__(self) -> None:
        self.t = 0


def check_whole_utterance(state: Any, engine: Engine) -> WholeUtterance:
    """state for generate() on a whole-utterance engine: None or a fresh WholeUtterance."""
    if state is None:
        return WholeUtterance()
    if not isinstance(state, WholeUtterance) or state.t != 0:
        raise ValueError(f"state: the {engine.backend!r} engine generates whole utterances from a fresh state "
                         f"(None or new_state()), found {state!r}")
    return state


def report(progress: Progress | None, n_done: int) -> None:
    """Call progress(n_done) if there is a callback (the one call of an engine that runs in one piece)."""
    if progress is not None:
        progress(n_done)
