"""Streaming vocoding: push log-mel frames as they arrive, get back the samples they already determine.

What it is: the bookkeeping that makes `Vocoder.stream(seed)` give exactly the samples of the offline
`Vocoder.vocode(mel, seed)`, with memory bounded by the conditioning network's receptive field, not by the
utterance. What it is not: a second implementation of anything: the conditioning network, the sampling loop and
the random stream are the offline ones, fed in pieces.

Why it is exact. The conditioning network looks L = ModelConfig.cond_lookahead frames each way, so g[j] computed
from mel frames [j - L, j + L] (or up to a true edge of the utterance) equals the offline g[j]. Samples of frame j
interpolate g[j] and g[j + 1], so they can be generated once g[j + 1] is known. The uniforms are drawn from one
numpy Generator in order, which gives the same numbers in chunks as in one call. Latency: (L + 1) frames of mel
(L + 1) * hop samples, before the first samples come out; finish() flushes the rest.

    stream = vocoder.stream(seed=0)
    for chunk in mel_chunks:                  # each (n, n_mels), any n >= 0
        play(stream.push(chunk))
    play(stream.finish())

Letters: F frames, hop samples per frame, L lookahead frames, H hidden units.
"""

from __future__ import annotations

import numpy as np

from pywavernn import features
from pywavernn.vocoder import conditioning


class Stream:
    """One streaming utterance on the cpu backend (created by `Vocoder.stream`)."""

    def __init__(self, vocoder, seed: int | np.random.Generator | None = 0):
        if vocoder.backend != "cpu":
            raise ValueError(f"streaming needs the 'cpu' backend; this Vocoder uses {vocoder.backend!r}")
        if vocoder.model_config.subscale_factor > 1:
            raise ValueError("streaming is not implemented for subscale models yet; use Vocoder.vocode")
        self._model = vocoder.model
        self._engine = vocoder._engine
        cfg = vocoder.model_config
        self._n_mels, self._hop, self._lookahead = cfg.n_mels, vocoder.hop_length, cfg.cond_lookahead
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._mel = np.empty((0, cfg.n_mels), np.float32)  # mel frames [mel_start, n_frames)
        self._mel_start = 0
        self._g = np.empty((0, 3 * cfg.hidden_size), np.float32)  # conditioning of frames [g_start, g_end)
        self._g_start = 0
        self._n_frames = 0  # frames pushed so far
        self._next_frame = 0  # first frame whose samples are not yet generated
        self._state = self._engine.new_state()  # its t counts from frame g_start (rebased as g is trimmed)
        self._finished = False

    @property
    def samples_out(self) -> int:
        """Samples returned so far."""
        return self._next_frame * self._hop

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

    def _advance(self, g_ready: int, final: bool) -> np.ndarray:
        self._extend_conditioning(g_ready)
        g_end = self._g_start + self._g.shape[0]
        # Frame j needs g[j + 1]; at the true end the last frame uses g[F - 1] twice (the engine's edge rule,
        # which applies because the window handed over then ends at the utterance's last frame).
        gen_end = self._n_frames if final else g_end - 1
        out = np.empty(0, np.int16)
        if gen_end > self._next_frame:
            n = (gen_end - self._next_frame) * self._hop
            uniforms = self._rng.random((n, 2), dtype=np.float32)
            out = self._engine.generate(self._g, uniforms, self._state)
            self._next_frame = gen_end
        self._trim()
        return out

    def _trim(self) -> None:
        """Drop conditioning and mel no longer needed, keeping memory bounded."""
        drop = self._next_frame - self._g_start
        if drop > 0 and not self._finished:
            self._g = self._g[drop:]
            self._g_start += drop
            self._state._st[2] -= drop * self._hop  # the engine indexes g from its first row
        g_end = self._g_start + self._g.shape[0]
        keep_from = max(0, g_end - self._lookahead)
        if keep_from > self._mel_start:
            self._mel = self._mel[keep_from - self._mel_start:]
            self._mel_start = keep_from
