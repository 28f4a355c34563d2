"""Streaming vocoding: push log-mel frames as they arrive, get back the samples they already determine.

What it is: the bookkeeping that makes `Vocoder.stream(seed)` give exactly the samples of the offline
`Vocoder.vocode(mel, seed)`, over any engine that streams (pywavernn/engines/base.py: `Engine.advance`), with
memory bounded by the conditioning network's receptive field, not by the utterance. The stream keeps the mel and
the conditioning windows, the random stream and the de-emphasis filter's state; the engine decides which samples
the conditioning handed over determines. What it is not: a second implementation of anything: the conditioning
network (pywavernn.conditioning), the sampling loops and the random stream are the offline ones, fed in pieces.

Why it is exact. The conditioning network looks L = ModelConfig.cond_lookahead frames each way, so g[j] computed
from mel frames [j - L, j + L] (or up to a true edge of the utterance) equals the offline g[j]. An engine only
generates samples whose frames' g is final (plain: frame j once g[j + 1] is; subscale: see
pywavernn/engines/subscale.py). The uniforms are drawn from one numpy Generator in order, which gives the same
numbers in chunks as in one call, and the de-emphasis filter (docs/format.md §10) carries its state across pushes.
Latency: (L + 1) frames of mel, (L + 1) * hop samples, before the first samples come out (plus about
(B - 1)(F + 1) B samples for a subscale model); finish() flushes the rest.

    stream = vocoder.stream(seed=0)
    for chunk in mel_chunks:                  # each (n, n_mels), any n >= 0
        play(stream.push(chunk))
    play(stream.finish())

Tests: `python -m pytest tests/test_vocoder.py tests/test_engines.py tests/test_preemphasis.py -q` (streaming ==
offline for any chunking, plain and subscale; memory bounded).
Letters: F frames, hop samples per frame, L lookahead frames, H hidden units; subscale models: B subscale factor,
F future horizon.
"""

from __future__ import annotations

import numpy as np

from pywavernn import features
from pywavernn.audio import deemphasis
from pywavernn.common import uniform_generator
from pywavernn.conditioning import conditioning, conditioning_width
from pywavernn.engines.base import Engine
from pywavernn.modelfile import Model


class Stream:
    """One streaming utterance (created by `Vocoder.stream`): push(mel_chunk) -> samples, then finish() -> samples.

    engine: an Engine with `streams` (ValueError otherwise, saying which backend); model: its model (the
    conditioning network's weights and configs); seed: as for Vocoder.vocode.
    """

    def __init__(self, engine: Engine, model: Model, seed: int | np.random.Generator | None = 0):
        if not engine.streams:
            raise ValueError(f"streaming is not available on the {engine.backend!r} backend for this model (its loop "
                             "runs whole utterances); use backend 'cpu'")
        self._engine, self._model = engine, model
        cfg = model.model_config
        self._n_mels, self._hop, self._lookahead = cfg.n_mels, engine.hop, cfg.cond_lookahead
        self._rng = uniform_generator(seed)
        self._mel = np.empty((0, cfg.n_mels), np.float32)  # mel frames [mel_start, n_frames)
        self._mel_start = 0
        self._g = np.empty((0, conditioning_width(cfg)), np.float32)  # conditioning of frames [g_start, g_end)
        self._g_start = 0
        self._n_frames = 0  # frames pushed so far
        self._finished = False
        self._preemphasis = cfg.preemphasis
        self._deemphasis_state = 0.0  # the last de-emphasised value, unrounded (pywavernn.audio.deemphasis)
        self._state = engine.new_state()  # its t: samples returned so far

    @property
    def samples_out(self) -> int:
        """Samples returned so far."""
        return self._state.t

    def push(self, mel_chunk: np.ndarray) -> np.ndarray:
        """Add frames (n, n_mels) and return the int16 samples that are now determined (possibly none)."""
        if self._finished:
            raise ValueError("push: this stream is finished; start a new one with Vocoder.stream()")
        chunk = np.asarray(mel_chunk)
        if not (chunk.ndim == 2 and chunk.shape[0] == 0 and chunk.shape[1] == self._n_mels):
            chunk = features.check_mel(chunk, self._n_mels)
            self._mel = np.concatenate([self._mel, chunk])
            self._n_frames += chunk.shape[0]
        return self._advance(g_ready=self._n_frames - self._lookahead, final=False)

    def finish(self) -> np.ndarray:
        """The remaining samples (the utterance ends with the last pushed frame)."""
        if self._finished:
            raise ValueError("finish: this stream is already finished")
        if self._n_frames == 0:
            raise ValueError("finish: no mel frames were pushed; expected at least one frame")
        self._finished = True
        return self._advance(g_ready=self._n_frames, final=True)

    def _extend_conditioning(self, g_ready: int) -> None:
        """Compute g for frames [g_end, g_ready) from a mel window reaching L frames past them."""
        g_end = self._g_start + self._g.shape[0]
        if g_ready <= g_end:
            return
        lo = max(0, g_end - self._lookahead)
        hi = min(self._n_frames, g_ready + self._lookahead)
        window = self._mel[lo - self._mel_start: hi - self._mel_start]
        g_new = conditioning(self._model, window)[g_end - lo: g_ready - lo]
        self._g = np.concatenate([self._g, g_new])

    def _draw(self, n: int) -> np.ndarray:
        return self._rng.random((n, self._engine.uniform_columns), dtype=np.float32)

    def _advance(self, g_ready: int, final: bool) -> np.ndarray:
        self._extend_conditioning(g_ready)
        out = self._engine.advance(self._state, self._g, self._g_start, self._n_frames if final else None,
                                   self._draw)
        if self._preemphasis and out.shape[0]:  # the network predicts the pre-emphasised signal (§10)
            out, self._deemphasis_state = deemphasis(out, self._preemphasis, self._deemphasis_state)
        self._trim()
        return out

    def _trim(self) -> None:
        """Drop conditioning before the frame of the first sample not yet returned, and mel no longer needed."""
        keep = self._state.t // self._hop
        if keep > self._g_start and not self._finished:
            self._g = self._g[keep - self._g_start:]
            self._g_start = keep
        g_end = self._g_start + self._g.shape[0]
        keep_from = max(0, g_end - self._lookahead)
        if keep_from > self._mel_start:
            self._mel = self._mel[keep_from - self._mel_start:]
            self._mel_start = keep_from
