"""The training losses: teacher-forced NLL in bits per 16-bit sample on a batch of windows.

What it is: `WindowedNLL` (the plain WaveRNN through torch.nn.GRU, the readable form), `ScanWindowedNLL` (the same
loss computed for CPU speed: the conditioning projected at frame rate, the recurrence in training.fast_gru with its
hand-written backward, time-major throughout), `SubscaleWindowedNLL`, `FusedWindowedNLL`, and `loss_module`, which
picks one for a net and the config's `gru_impl` (`resolve_gru_impl`: what "auto" runs on the net's device). Each
is an nn.Module taking (mel, crop, length, audio, prev) as `batch_inputs` makes them from a training.data.Batch, so
DistributedDataParallel can wrap any of them.
What it is not: the model (training/model.py) or the loop (training/trainer.py).

Linear prediction (docs/format.md §11): for a net with linear_order P the plain losses compute est(t) from the
window's past samples, the P before the window (`prev` (N, P), training/data.py) and the window's own, the same
samples (noisy ones with input_noise) whose bytes are the GRU's c_{t-1}, f_{t-1}; with a prior the heads add its
terms.

Tests: tests/test_training.py (WindowedNLL), tests/test_fast_gru.py (ScanWindowedNLL against WindowedNLL: loss and
every parameter's gradient), tests/test_linear_prediction.py (both with linear prediction).

Letters: N batch, W window frames, T = W * hop samples per window, C conditioning channels, H hidden units,
B subscale factor, P = T / B positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from torch import nn

from pywavernn.config import N_CLASSES
from training.config import GRU_IMPLS
from training.data import Batch
from training.fast_gru import gru_scan, has_bf16_units
from training.fused_model import HISTORY as FUSED_HISTORY
from training.fused_model import FusedWaveRNN
from training.model import WaveRNN, linear_prediction, mel_frame_taps, sample_taps, sample_values
from training.subscale_model import SubscaleWaveRNN

LN2 = math.log(2.0)
MATMUL_DTYPES = {"scan": torch.float32, "scan-bf16": torch.bfloat16}  # training.config.GRU_IMPLS but "torch"


def _bytes(audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u = audio.to(torch.int32) + 32768
    return (u >> 8).long(), (u & 255).long()


def batch_inputs(batch: Batch, device: torch.device) -> tuple:
    """A data.Batch as the loss modules' arguments (mel, crop, length, audio, prev) on `device`."""
    return (torch.from_numpy(batch.mel).to(device), batch.crop.tolist(), batch.length.tolist(),
            torch.from_numpy(batch.audio).to(device), torch.from_numpy(batch.prev).to(device))


class WindowedNLL(nn.Module):
    """Teacher-forced NLL in bits per 16-bit sample of a WaveRNN on a batch of windows (what DDP wraps).

    Differs from WaveRNN.nll_bits only in its inputs: the conditioning network runs on the window's frames plus
    their context (training/data.py) and is cropped to frames j0 .. j0 + W, so every sample is conditioned as at
    inference; and the first step sees the true previous sample instead of silence.
    """

    def __init__(self, net: WaveRNN, input_noise: float = 0.0):
        super().__init__()
        self.net = net
        self.input_noise = float(input_noise)

    def past_samples(self, audio: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """The samples the window's steps see as their past, (N, L - 1 + T) int16: the L samples before the window
        (prev (N,) for L = 1, or (N, L), oldest first), then the window's samples but its last, so column L - 1 + t
        is s_{t-1}. With input_noise > 0 and gradients enabled (training, not validation), Gaussian noise of that
        standard deviation (int16 steps) is added to every one of them, so the network learns to stay on track
        when the samples it is fed are off, as they are once it is fed its own (LPCNet's remedy for free-running
        drift); the targets and the current coarse input stay exact. (L = 1 draws the very noise it drew before
        linear prediction existed.)"""
        prev = prev[:, None] if prev.dim() == 1 else prev
        order = self.net.model_config.linear_order
        if prev.shape[1] < order:
            raise ValueError(f"prev: a model with linear_order {order} needs the {order} samples before each window, "
                             f"(N, {order}); found {tuple(prev.shape)} (training.data.WindowSet(history=...))")
        past = torch.cat([prev[:, prev.shape[1] - max(order, 1):], audio[:, :-1]], dim=1)
        if self.input_noise > 0 and torch.is_grad_enabled():
            noisy = past.float() + self.input_noise * torch.randn(past.shape, device=past.device)
            past = noisy.round_().clamp_(-32768, 32767).to(torch.int16)
        return past

    def past_bytes(self, audio: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bytes of s_{t-1} for every t of the window, (N, T) each (past_samples, noise and all)."""
        return _bytes(self.past_samples(audio, prev)[:, -audio.shape[1]:])

    def sample_inputs(self, audio: torch.Tensor, prev: torch.Tensor, mel: torch.Tensor | None = None,
                      crop: list[int] | None = None,
                      length: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x (N, T, 3): the scaled bytes [c_{t-1}, f_{t-1}, c_t], est (N, T) or None): the GRU's sample inputs,
        est(t) (docs/format.md §11) computed from the same past samples as c_{t-1} and f_{t-1}; with mel_lpc (§13)
        by the taps of the window's frames j0 .. j0 + W (mel, crop, length as forward takes them)."""
        past = self.past_samples(audio, prev)
        c_past, f_past = _bytes(past[:, -audio.shape[1]:])
        byte = self.net.byte_input
        x = torch.stack([byte[c_past], byte[f_past], byte[_bytes(audio)[0]]], dim=2)
        if not self.net.model_config.linear_order:
            return x, None
        weight = self.net.linear_weight
        if self.net.model_config.mel_lpc:
            weight = self.window_taps(mel, crop, length, audio.shape[1])
        return x, linear_prediction(weight, sample_values(past), audio.shape[1])

    def window_taps(self, mel: torch.Tensor, crop: list[int], length: list[int], n_samples: int) -> torch.Tensor:
        """§13: each window sample's taps (N, T, P), float32(A_j + linear.weight), A_j from frame j of the window's
        frames j0 .. j0 + W (the last valid frame past the utterance's end, as at inference)."""
        net = self.net
        frames = n_samples // net.hop + 1
        rows = [[min(c + k, n - 1) for k in range(frames)] for c, n in zip(crop, length)]
        window = mel[torch.arange(mel.shape[0])[:, None], torch.tensor(rows)]  # (N, W + 1, n_mels)
        taps = mel_frame_taps(window, net.model_config, net.feature_config)
        return sample_taps(taps, net.linear_weight, 0, frames, n_samples, net.hop)

    def conditioning(self, mel: torch.Tensor, crop: list[int], length: list[int], frames: int) -> torch.Tensor:
        """z_L (N, C, frames) for frames j0 .. j0 + frames - 1 of each window. Windows with the same (crop, length)
        (all interior windows) share one convolution call."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, key in enumerate(zip(crop, length)):
            groups.setdefault(key, []).append(i)
        parts, order = [], []
        for (c, n_frames), idx in groups.items():
            z = self.net.conditioning_features(mel[idx, :n_frames])
            parts.append(z[:, :, c:c + frames])
            order += idx
        z = torch.cat(parts) if len(parts) > 1 else parts[0]
        if order != sorted(order):
            z = z[torch.argsort(torch.tensor(order, device=z.device))]
        return z

    def forward(self, mel: torch.Tensor, crop: list[int], length: list[int], audio: torch.Tensor,
                prev: torch.Tensor) -> torch.Tensor:
        net = self.net
        net.apply_input_mask()  # the forward pre-hook of WaveRNN only runs when net itself is called
        n_samples = audio.shape[1]
        cond = net.upsample(self.conditioning(mel, crop, length, n_samples // net.hop + 1), n_samples)
        coarse, fine = _bytes(audio)
        x, est = self.sample_inputs(audio, prev, mel, crop, length)  # x_t = [c_{t-1}, f_{t-1}, c_t], est(t)
        if est is not None:
            x = torch.cat([x, est[..., None]], dim=2)
        states, _ = net.gru(torch.cat([x, cond], dim=2))
        logits_c, logits_f = net.heads(states, est, coarse)
        nats = (nnf.cross_entropy(logits_c.reshape(-1, N_CLASSES), coarse.reshape(-1))
                + nnf.cross_entropy(logits_f.reshape(-1, N_CLASSES), fine.reshape(-1)))
        return nats / LN2


class ScanWindowedNLL(WindowedNLL):
    """WindowedNLL's loss, computed for CPU training speed; equal to it up to float32 summation order.

    Differences in the computation only: the conditioning is projected to the 3H gate inputs at frame rate and
    then interpolated (both linear, the interpolation weights sum to one, so this equals interpolating then
    projecting, as training/model.py notes), straight into time-major (T, N, 3H) without a concatenation; the
    three sample inputs (four with est(t)) add their columns of W_ih; the recurrence is training.fast_gru.gru_scan (its
    products in `matmul_dtype`); the heads run on all T * N states at once (under bf16 autocast when
    matmul_dtype is bfloat16; the prior's terms, with a prior, in float32) and the cross-entropy in float32.
    """

    def __init__(self, net: WaveRNN, matmul_dtype: torch.dtype = torch.float32, input_noise: float = 0.0):
        super().__init__(net, input_noise)
        self.matmul_dtype = matmul_dtype

    def forward(self, mel: torch.Tensor, crop: list[int], length: list[int], audio: torch.Tensor,
                prev: torch.Tensor) -> torch.Tensor:
        net = self.net
        net.apply_input_mask()
        batch, n_samples = audio.shape
        hop, hidden = net.hop, net.model_config.hidden_size
        frames = n_samples // hop  # W; the window needs frames j0 .. j0 + W
        z = self.conditioning(mel, crop, length, frames + 1)  # (N, C, W + 1)
        w_ih, b_ih, n_in = net.gru.weight_ih_l0, net.gru.bias_ih_l0, net.n_inputs
        g = torch.addmm(b_ih, z.permute(2, 0, 1).reshape(-1, z.shape[1]), w_ih[:, n_in:].t())
        g = g.view(frames + 1, batch, 3 * hidden)  # frame-rate gate inputs, time-major
        a = torch.arange(hop, device=g.device, dtype=torch.float32) / hop  # as WaveRNN.upsample
        gi = torch.addcmul(g[:-1, None], a[None, :, None, None], (g[1:] - g[:-1])[:, None])  # (W, hop, N, 3H)
        gi = gi.view(n_samples, batch, 3 * hidden)

        coarse, fine = _bytes(audio)  # (N, T)
        coarse_t, fine_t = coarse.t(), fine.t()  # (T, N)
        x, est = self.sample_inputs(audio, prev, mel, crop, length)
        if est is not None:
            x = torch.cat([x, est[..., None]], dim=2)
        x = x.transpose(0, 1).reshape(-1, n_in)  # (T N, 3 or 4), time-major
        gi = torch.addmm(gi.view(-1, 3 * hidden), x, w_ih[:, :n_in].t()).view(n_samples, batch, -1)

        h0 = gi.new_zeros(batch, hidden)
        states, _ = gru_scan(gi, h0, net.gru.weight_hh_l0, net.gru.bias_hh_l0, self.matmul_dtype)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.matmul_dtype == torch.bfloat16):
            logits_c, logits_f = net.heads(states.view(-1, hidden), None if est is None else est.t().reshape(-1),
                                           coarse_t.reshape(-1))
        nats = (nnf.cross_entropy(logits_c.float(), coarse_t.reshape(-1))
                + nnf.cross_entropy(logits_f.float(), fine_t.reshape(-1)))
        return nats / LN2


class SubscaleWindowedNLL(WindowedNLL):
    """Teacher-forced NLL in bits per 16-bit sample of a SubscaleWaveRNN on a batch of windows.

    SubscaleWaveRNN.folded_logits (the body of its forward) with the conditioning of WindowedNLL (cropped from the
    window's context frames); the window is folded and teacher-forced as a whole utterance of T samples (h = 0 and the silent previous sample at
    every sub-tensor's start, zero context outside the window), so `prev` is unused.
    """

    def __init__(self, net: SubscaleWaveRNN):
        super().__init__(net)

    def forward(self, mel: torch.Tensor, crop: list[int], length: list[int], audio: torch.Tensor,
                prev: torch.Tensor) -> torch.Tensor:
        net = self.net
        net.apply_input_mask()
        n_samples = audio.shape[1]
        n_pos = n_samples // net.factor  # TrainConfig makes T a multiple of B
        cond = net.upsample(self.conditioning(mel, crop, length, n_samples // net.hop + 1), n_samples)
        u = audio.to(torch.int32) + 32768
        coarse, fine = (u >> 8).long(), (u & 255).long()
        logits_c, logits_f = net.folded_logits(cond, coarse, fine)  # (N, B, P, 256)
        # scored in folded order (the loss is a mean, so the order of the samples does not matter)
        folded_c, folded_f = net._fold(coarse, n_pos), net._fold(fine, n_pos)
        nats = (nnf.cross_entropy(logits_c.reshape(-1, N_CLASSES), folded_c.reshape(-1))
                + nnf.cross_entropy(logits_f.reshape(-1, N_CLASSES), folded_f.reshape(-1)))
        return nats / LN2


class FusedWindowedNLL(WindowedNLL):
    """Teacher-forced NLL in bits per 16-bit sample of a FusedWaveRNN on a batch of windows.

    FusedWaveRNN.window_nll_bits (training/fused_model.py says what a fused window is) with the conditioning of
    WindowedNLL (cropped from the window's context frames) and `prev` the FUSED_HISTORY = 7 samples before each
    window (training.data.WindowSet(history=7)), which the first steps' inputs carry. The recurrence is the
    twin's torch loop (matmul_dtype None, gru_impl "torch") or training.fast_gru.gru_scan (float32 or bfloat16
    products, gru_impl "scan" / "scan-bf16").
    """

    def __init__(self, net: FusedWaveRNN, matmul_dtype: torch.dtype | None = None):
        super().__init__(net)
        self.matmul_dtype = matmul_dtype

    def forward(self, mel: torch.Tensor, crop: list[int], length: list[int], audio: torch.Tensor,
                prev: torch.Tensor) -> torch.Tensor:
        net = self.net
        net.apply_input_mask()
        if prev.dim() != 2 or prev.shape[1] < FUSED_HISTORY:
            raise ValueError(f"prev: a fused model needs the {FUSED_HISTORY} samples before each window, (N, "
                             f"{FUSED_HISTORY}); found {tuple(prev.shape)} (training.data.WindowSet(history=...))")
        n_samples = audio.shape[1]
        feats = net.upsample(self.conditioning(mel, crop, length, n_samples // net.hop + 1), n_samples)
        history = prev[:, prev.shape[1] - FUSED_HISTORY:].long() + 32768
        return net.window_nll_bits(feats, audio.long() + 32768, history, self.matmul_dtype)


def resolve_gru_impl(gru_impl: str, device: torch.device | str = "cpu") -> str:
    """A config's gru_impl as run on `device` of this machine: "auto" becomes "torch" on a CUDA device (the scan
    is a CPU path: training.fast_gru's C++ loop takes CPU tensors only), and on a CPU "scan-bf16" where it has
    bf16 units, "scan" elsewhere; the others are returned as they are. ValueError for an unknown name."""
    if gru_impl not in GRU_IMPLS:
        raise ValueError(f"gru_impl: expected one of {list(GRU_IMPLS)}, found {gru_impl!r}")
    if gru_impl == "auto":
        if torch.device(device).type == "cuda":
            return "torch"
        return "scan-bf16" if has_bf16_units() else "scan"
    return gru_impl


def loss_module(net: WaveRNN | SubscaleWaveRNN | FusedWaveRNN, gru_impl: str = "torch",
                input_noise: float = 0.0) -> WindowedNLL:
    """The loss module of a net: SubscaleWindowedNLL for a subscale net, FusedWindowedNLL for a fused one (its
    recurrence by gru_impl), else WindowedNLL (gru_impl "torch") or ScanWindowedNLL ("scan": float32,
    "scan-bf16": bf16 products; "auto": see resolve_gru_impl, on the device of the net's parameters), with
    input_noise (WindowedNLL.past_bytes) for the plain model."""
    gru_impl = resolve_gru_impl(gru_impl, next(net.parameters()).device)
    if isinstance(net, FusedWaveRNN):
        if input_noise:
            raise ValueError(f"input_noise {input_noise}: implemented for the plain model only")
        return FusedWindowedNLL(net, None if gru_impl == "torch" else MATMUL_DTYPES[gru_impl])
    if isinstance(net, SubscaleWaveRNN):
        if gru_impl != "torch" or input_noise:
            raise ValueError(f"gru_impl {gru_impl!r}, input_noise {input_noise}: the subscale model trains through "
                             f"torch.nn.GRU without input noise only")
        return SubscaleWindowedNLL(net)
    if gru_impl == "torch":
        return WindowedNLL(net, input_noise)
    return ScanWindowedNLL(net, MATMUL_DTYPES[gru_impl], input_noise)
