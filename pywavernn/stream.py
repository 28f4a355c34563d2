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

Subscale models (SubscaleStream; docs/format.md §9). The C loop keeps its state in a run between calls and runs the
schedule steps n whose samples have their conditioning: stream 0 leads, drawing sample t = n B at step n, which
interpolates frames floor(n B / hop) and + 1, so step n runs once g of that next frame is final, i.e. once
n B < (g_end - 1) hop; the last steps (and the utterance-end clamp) wait for finish(). A sample is final once its
own stream has produced it, and the samples come out in true-time order, so output lags the leading stream by the
schedule's skew: stream s runs s (F_h + 1) steps behind stream 0, so sample t is out about (B - 1)(F_h + 1) B
samples after stream 0 passed it. Latency: (L + 1) frames of mel plus about (B - 1)(F_h + 1) B samples
(B = 16, F_h = 2: 720 samples, 2.4 frames of hop 300). Memory is bounded likewise: the run (per stream: state and
context chains, and the last 2 (B + 1)(F_h + 1) positions of the folded sequence), the generated-but-not-final
samples, and g and mel from the first pending sample's frame on.

Letters: F frames, hop samples per frame, L lookahead frames, H hidden units; subscale models: B subscale factor,
F_h future horizon (subscale_horizon: the F of docs/format.md §9).
"""

from __future__ import annotations

import numpy as np

from pywavernn import features
from pywavernn.audio import deemphasis
from pywavernn.vocoder import conditioning


def open_stream(vocoder, seed: int | np.random.Generator | None = 0) -> "Stream":
    """The stream for this Vocoder's model: Stream (plain) or SubscaleStream (subscale_factor > 1)."""
    cls = SubscaleStream if vocoder.model_config.subscale_factor > 1 else Stream
    return cls(vocoder, seed)


class Stream:
    """One streaming utterance of a plain model on the cpu backend (created by `Vocoder.stream`)."""

    def __init__(self, vocoder, seed: int | np.random.Generator | None = 0):
        if vocoder.backend != "cpu":
            raise ValueError(f"streaming needs the 'cpu' backend; this Vocoder uses {vocoder.backend!r}")
        if (vocoder.model_config.subscale_factor > 1) != isinstance(self, SubscaleStream):
            raise ValueError(f"{type(self).__name__}: expected a "
                             f"{'subscale' if isinstance(self, SubscaleStream) else 'plain'} model, found "
                             f"subscale_factor {vocoder.model_config.subscale_factor} (use Vocoder.stream)")
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
        self._finished = False
        self._preemphasis = cfg.preemphasis
        self._deemphasis_state = 0.0  # the last de-emphasised value, unrounded (pywavernn.audio.deemphasis)
        self._start()

    def _start(self) -> None:
        self._state = self._engine.new_state()  # its t counts from frame g_start (rebased as g is trimmed)

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
            if self._preemphasis:
                out, self._deemphasis_state = deemphasis(out, self._preemphasis, self._deemphasis_state)
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


class SubscaleStream(Stream):
    """One streaming utterance of a subscale model on the cpu backend (created by `Vocoder.stream`); see the
    module docstring for when samples come out."""

    def _start(self) -> None:
        self._run = self._engine.new_run()
        self._t_out = 0  # samples returned; the first not yet final
        self._pending = np.empty(0, np.int16)  # generated samples [t_out, t_out + len)
        self._u = np.empty((0, 2), np.float32)  # uniforms of samples [t_out, t_out + len), drawn in order

    @property
    def samples_out(self) -> int:
        """Samples returned so far."""
        return self._t_out

    def _advance(self, g_ready: int, final: bool) -> np.ndarray:
        self._extend_conditioning(g_ready)
        engine, hop, factor = self._engine, self._hop, self._engine.factor
        g_end = self._g_start + self._g.shape[0]
        if final:
            total = self._n_frames * hop
            if total < factor:
                raise ValueError(f"finish: expected at least B = {factor} samples, found {self._n_frames} frames x "
                                 f"hop {hop} = {total}")
            n_end, last = engine.n_steps(total), total - 1
        else:
            total = None
            n_end = max(0, -(-(g_end - 1) * hop // factor))  # steps n with n B < (g_end - 1) hop
            last = (n_end - 1) * factor
        if n_end <= self._run.next_step:
            return np.empty(0, np.int16)
        have = self._t_out + self._u.shape[0]
        if last + 1 > have:
            self._u = np.concatenate([self._u, self._rng.random((last + 1 - have, 2), dtype=np.float32)])
        out = np.empty(last + 1 - self._t_out, np.int16)
        out[:self._pending.shape[0]] = self._pending
        engine.advance(self._run, self._g, self._g_start, total, self._u, self._t_out, out, n_end)
        done = min(engine.first_pending(n_end), last + 1) - self._t_out
        ready, self._pending = out[:done], out[done:]
        self._u = self._u[done:]
        self._t_out += done
        self._trim()
        return ready

    def _trim(self) -> None:
        """Drop conditioning and mel no longer needed: g before the first pending sample's frame, mel as Stream."""
        keep = self._t_out // self._hop
        if keep > self._g_start and not self._finished:
            self._g = self._g[keep - self._g_start:]
            self._g_start = keep
        g_end = self._g_start + self._g.shape[0]
        keep_from = max(0, g_end - self._lookahead)
        if keep_from > self._mel_start:
            self._mel = self._mel[keep_from - self._mel_start:]
            self._mel_start = keep_from
