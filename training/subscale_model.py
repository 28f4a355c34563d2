"""The PyTorch twin of the Subscale WaveRNN (docs/format.md §9), laid out for training speed.

What it is: `SubscaleWaveRNN`, an nn.Module computing exactly the model of docs/format.md §9: teacher-forced
`forward` / `nll_bits` over folded windows (the B sub-tensors of every utterance run as a batch of B through one
fused `torch.nn.GRU`), a lockstep `generate` that follows pywavernn.subscale's schedule with all active sub-tensors
as one batch per step (for parity tests against pywavernn.reference.subscale), and conversions to and from
`pywavernn.modelfile.Model`.
What it is not: an inference engine, a data pipeline or a training loop (training.trainer drives every model).

Layout. As in training.model, the projections into the 3H gate space are fused into the GRU's input weights. The
GRU input of sample (i, s) is [x (3), cond_features(t) (C), ctx_features(i, s) (C_x), one_hot(s) (B)] and, with
subscale_linear E > 0, its E linear estimates est(i, s), so

    weight_ih = [gru.W_in | cond.proj.weight | subscale.proj.weight | subscale.proj.bias^T | subscale.linear.proj]
    bias_ih = cond.proj.bias    weight_hh = gru.R    bias_hh = gru.b_R      (torch gate order (r, u, e))

With subscale_prior "laplace" each byte's logits add the prior's terms (`prior_heads`; the arithmetic is
training/prior.py's, shared with the plain twin; §9).
ctx_features is the context network's last layer at position i + F. It depends on s through the input mask (only
sub-tensors z < s are seen) and the per-sub-tensor biases, so teacher forcing runs it once per (utterance, s): B
times the work of one unmasked pass, on inputs 2B wide. The input mask of W_in (c_t unseen by the coarse rows) is
enforced as in training.model: re-zeroed before every forward and its gradient masked.

Tests: `python -m pytest tests/test_subscale_parity.py -q`.
Letters: N batch, B subscale factor, F future horizon, T samples, P = ceil(T / B) positions, H hidden units,
C conditioning channels, C_x context channels, D context layers, R = 2**D receptive positions.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from pywavernn import fold
from pywavernn.audio import coarse_fine_join, scale_byte
from pywavernn.common import N_CLASSES, PREV_COARSE, PREV_FINE
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.modelfile import Model, coarse_rows_of_gates
from training.model import (WaveRNN, copy_shared_weights_, dual_softmax_bits, model_tensor,
                            sample_from_logits, swap_gates_ur)
from training.prior import PRIOR_INIT_LOG_SCALE, add_prior
from training.pruning import PruneTarget, subscale_conv_targets, subscale_proj_target


def sample_value(coarse, fine):
    """The 16-bit samples of bytes (coarse, fine) (tensors or arrays of ints) scaled to [-1, 1): (256 c + f - 32768)
    / 32768, the values the linear estimates weigh (docs/format.md §9)."""
    return ((coarse * 256 + fine) - 32768) / 32768.0


class SubscaleWaveRNN(nn.Module):
    """Subscale WaveRNN of docs/format.md §9; `model_config.subscale_factor` >= 2, `subscale_horizon` >= 1."""

    def __init__(self, model_config: ModelConfig, feature_config: FeatureConfig | None = None):
        super().__init__()
        if feature_config is None:
            feature_config = FeatureConfig(n_mels=model_config.n_mels)
        if model_config.n_mels != feature_config.n_mels:
            raise ValueError(f"n_mels: the model config expects {model_config.n_mels} mel bins but the feature "
                             f"config computes {feature_config.n_mels}")
        if model_config.kind == "fused":
            raise ValueError("model config: a fused model (subscale_fused, docs/format.md §12) has no context "
                             "network; use training.fused_model.FusedWaveRNN")
        self.factor, self.horizon = fold.check_model_config(model_config)
        self.model_config, self.feature_config = model_config, feature_config
        cfg, b = model_config, self.factor
        hidden, half, channels, cx = cfg.hidden_size, cfg.half, cfg.cond_channels, cfg.subscale_channels

        convs, c_in = [], cfg.n_mels
        for k in cfg.cond_kernels:
            convs.append(nn.Conv1d(c_in, channels, k, padding=(k - 1) // 2, padding_mode="replicate"))
            c_in = channels
        self.cond_convs = nn.ModuleList(convs)
        self.ctx_embed = nn.Linear(2 * b, cx, bias=False)
        self.ctx_convs = nn.ModuleList(nn.Conv1d(cx, cx, 2, dilation=2 ** i, bias=False)
                                       for i in range(cfg.subscale_layers))
        bound = 1.0 / math.sqrt(cx)
        self.ctx_biases = nn.Parameter(torch.empty(cfg.subscale_layers + 1, b, cx).uniform_(-bound, bound))
        # subscale_linear E > 0 (§9): E linear estimates of each sample (i, s) from the 16-bit values of the samples
        # fold.linear_estimate_mask lets through (positions i - 1 .. i + F), as E more GRU input columns.
        self.linear_estimates = cfg.subscale_linear
        if self.linear_estimates:
            n_in = (self.horizon + 2) * b
            self.lin_weight = nn.Parameter(torch.empty(b, self.horizon + 2, b, self.linear_estimates)
                                           .uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
            lin_mask = torch.from_numpy(fold.linear_estimate_mask(b, self.horizon)).float()[..., None]
            self.register_buffer("lin_mask", lin_mask, persistent=False)  # [s, d, z, 1]
        # subscale_prior "laplace" (§9): each byte's logits add a Laplace prior's log-mass per bin, centred on the
        # first estimate, log-scale prior_weight[byte] . hidden + prior_bias[byte, s]. It starts wide (b = e^6,
        # 400 16-bit steps) and estimate 0 starts as the sample just before in true time, so it is useful at once.
        self.prior = cfg.subscale_prior != "none"
        if self.prior:
            self.prior_weight = nn.Parameter(torch.zeros(2, cfg.out_hidden))
            self.prior_bias = nn.Parameter(torch.full((2, b), PRIOR_INIT_LOG_SCALE))
            with torch.no_grad():
                self.lin_weight[..., 0] = 0.0
                self.lin_weight[0, 0, 0, 0] = 1.0  # (i - 1, 0): the only earlier sample sub-tensor 0 sees
                for s in range(1, b):
                    self.lin_weight[s, 1, s - 1, 0] = 1.0  # (i, s - 1): true time t - 1
        self.gru = nn.GRU(3 + channels + cx + b + self.linear_estimates, hidden, batch_first=True)
        self.O1 = nn.Linear(half, cfg.out_hidden)
        self.O2 = nn.Linear(cfg.out_hidden, N_CLASSES)
        self.O3 = nn.Linear(half, cfg.out_hidden)
        self.O4 = nn.Linear(cfg.out_hidden, N_CLASSES)

        mask = torch.ones(3 * hidden, self.gru.input_size)
        mask[torch.from_numpy(coarse_rows_of_gates(hidden)), 2] = 0.0
        self.register_buffer("input_mask", mask, persistent=False)
        self.register_buffer("byte_input", torch.from_numpy(scale_byte(np.arange(N_CLASSES))), persistent=False)
        seen = torch.arange(b)[None, :] < torch.arange(b)[:, None]  # [s, z]: z < s
        self.register_buffer("ctx_mask", seen.repeat_interleave(2, dim=1).float(), persistent=False)  # (B, 2B)
        order = np.stack([fold.context_input_order(s, b, cfg.subscale_context_order) for s in range(b)])
        self.register_buffer("ctx_order", torch.from_numpy(order), persistent=False)  # (B, 2B): row s's entries
        self._hooked_weight = None
        self.register_forward_pre_hook(lambda module, args, kwargs: module.apply_input_mask(), with_kwargs=True)
        self.apply_input_mask()

    apply_input_mask = WaveRNN.apply_input_mask  # same mask rule and hook on gru.weight_ih_l0
    conditioning_features = WaveRNN.conditioning_features
    upsample = WaveRNN.upsample
    heads = WaveRNN.heads
    _check_inputs = WaveRNN._check_inputs
    _gru_update = staticmethod(WaveRNN._gru_update)

    @property
    def hop(self) -> int:
        return self.feature_config.hop_length

    # --- the context network (§9) -----------------------------------------------------------------------------

    @property
    def _column_slices(self) -> tuple[slice, slice, slice, slice, slice]:
        """Columns of weight_ih: W_in, cond.proj, subscale.proj, subscale.proj.bias^T, subscale.linear.proj."""
        c, cx, b = self.model_config.cond_channels, self.model_config.subscale_channels, self.factor
        o = 3 + c + cx + b
        return (slice(0, 3), slice(3, 3 + c), slice(3 + c, 3 + c + cx), slice(3 + c + cx, o),
                slice(o, o + self.linear_estimates))

    def proj_prune_target(self, sparsity: float) -> PruneTarget:
        """A training.pruning.PruneTarget for subscale.proj.weight (its columns of gru.weight_ih_l0), to hand to
        training.pruning.Pruner with the other targets; after training, `to_model().to_sparse([...,
        "subscale.proj.weight"])` stores it block-sparse (docs/format.md §9)."""
        return subscale_proj_target(self.model_config.hidden_size, self._column_slices[2], sparsity,
                                    self.model_config.block_shape)

    def conv_prune_targets(self, sparsity: float) -> list[PruneTarget]:
        """training.pruning.PruneTargets for both taps of every dilated context layer (C_x x C_x each, ranked on
        its own). The file keeps the layers dense (docs/format.md §9); the engine skips their all-zero blocks."""
        cfg = self.model_config
        return subscale_conv_targets(cfg.subscale_channels, cfg.subscale_layers, sparsity)

    def context_layers(self, x: torch.Tensor, subs: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding and dilated layers: x (M, P, 2B) masked inputs of sub-tensors subs (M,) -> (M, C_x, P).

        Each layer zero-pads on the left. `valid` (M, P) bool marks positions >= 0 of a window that starts before
        the sequence does; activations there are zeroed after every layer, as the sequence's own padding would be.
        """
        keep = None if valid is None else valid[:, None, :].to(x.dtype)
        a = torch.relu(self.ctx_embed(x) + self.ctx_biases[0, subs][:, None, :]).transpose(1, 2)
        a = a if keep is None else a * keep
        for layer, conv in enumerate(self.ctx_convs):
            a = torch.relu(conv(nnf.pad(a, (conv.dilation[0], 0))) + self.ctx_biases[layer + 1, subs][:, :, None])
            a = a if keep is None else a * keep
        return a

    # --- teacher forcing ----------------------------------------------------------------------------------------

    def _fold(self, x: torch.Tensor, n_pos: int) -> torch.Tensor:
        """(N, T, ...) -> (N, B, P, ...): sample i * B + s to [s, i]; the last position is padded with zeros."""
        pad = n_pos * self.factor - x.shape[1]
        x = torch.cat([x, x.new_zeros((x.shape[0], pad) + x.shape[2:])], dim=1)
        return x.view((x.shape[0], n_pos, self.factor) + x.shape[2:]).transpose(1, 2)

    def forward(self, mel: torch.Tensor, audio: torch.Tensor | None = None, *, coarse: torch.Tensor | None = None,
                fine: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits: mel (N, F, n_mels) and audio int16 (N, F * hop), or its coarse and fine bytes,
        -> (logits_c, logits_f), each (N, T, 256) in true time order. Every sub-tensor starts at h = 0."""
        coarse, fine = self._check_inputs(mel, audio, coarse, fine)
        n_batch, n_samples = coarse.shape[0], fold.check_length(coarse.shape[1], self.factor)
        n_pos = fold.n_positions(n_samples, self.factor)
        cond = self.upsample(self.conditioning_features(mel), n_samples)
        logits = self.folded_logits(cond, coarse, fine)
        logits = [lg.transpose(1, 2).reshape(n_batch, n_pos * self.factor, -1)[:, :n_samples] for lg in logits]
        return logits[0], logits[1]

    def folded_logits(self, cond: torch.Tensor, coarse: torch.Tensor,
                      fine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher-forced body of `forward` from the upsampled conditioning features cond (N, T, C) and the
        bytes (N, T) int64: (logits_c, logits_f), each (N, B, P, 256) in folded order ([:, s, i] is sample
        i * B + s; a padded last position has logits too). training.losses.SubscaleWindowedNLL calls it with the
        conditioning of its windows, so the two cannot drift apart."""
        n_batch, b = coarse.shape[0], self.factor
        n_pos = fold.n_positions(coarse.shape[1], b)
        values = self._fold(self.byte_input[torch.stack([coarse, fine], dim=2)], n_pos)  # (N, B, P, 2), pad 0
        by_position = values.transpose(1, 2).reshape(n_batch, 1, n_pos, 2 * b)  # row k: [c(k,0), f(k,0), ...]
        ctx_in = nnf.pad(by_position * self.ctx_mask[None, :, None, :], (0, 0, 0, self.horizon))  # (N, B, P+F, 2B)
        if self.model_config.subscale_context_order != "sub_tensor":  # each sub-tensor's row in its own order
            ctx_in = torch.gather(ctx_in, 3, self.ctx_order[None, :, None, :].expand_as(ctx_in))
        subs = torch.arange(b, device=coarse.device).repeat(n_batch)
        ctx = self.context_layers(ctx_in.reshape(n_batch * b, n_pos + self.horizon, 2 * b), subs)
        ctx = ctx[:, :, self.horizon:].transpose(1, 2).reshape(n_batch, b, n_pos, -1)  # position i + F

        folded_c, folded_f = self._fold(coarse, n_pos), self._fold(fine, n_pos)  # (N, B, P)
        prev_c = nnf.pad(folded_c[..., :-1], (1, 0), value=PREV_COARSE)  # (i - 1, s): the sub-tensor's own past
        prev_f = nnf.pad(folded_f[..., :-1], (1, 0), value=PREV_FINE)
        if self.model_config.subscale_previous == "time":  # s >= 1: (i, s - 1) (fold.previous_sample)
            prev_c = torch.cat([prev_c[:, :1], folded_c[:, :-1]], dim=1)
            prev_f = torch.cat([prev_f[:, :1], folded_f[:, :-1]], dim=1)
        x = self.byte_input[torch.stack([prev_c, prev_f, folded_c], dim=3)]
        one_hot = torch.eye(b, device=coarse.device)[None, :, None, :].expand(n_batch, b, n_pos, b)
        parts = [x, self._fold(cond, n_pos), ctx, one_hot]
        if self.linear_estimates:
            parts.append(self._linear_estimates(coarse, fine, n_pos))
        inputs = torch.cat(parts, dim=3)
        states, _ = self.gru(inputs.reshape(n_batch * b, n_pos, -1))
        if not self.prior:
            logits_c, logits_f = self.heads(states)
            return logits_c.view(n_batch, b, n_pos, -1), logits_f.view(n_batch, b, n_pos, -1)
        states = states.view(n_batch, b, n_pos, -1)
        subs = torch.arange(b, device=coarse.device)[None, :, None]
        return self.prior_heads(states, parts[-1][..., 0], folded_c, subs)

    def prior_heads(self, states: torch.Tensor, est0: torch.Tensor, coarse: torch.Tensor,
                    subs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output heads with the prior's terms (§9): states (..., H), est0 (...) the first linear estimate,
        coarse (...) the coarse bytes the fine logits are conditioned on, subs (...) the sub-tensors (broadcast)
        -> (logits_c, logits_f), each (..., 256)."""
        half = self.model_config.half
        mu = est0 * 32768.0 + 32768.0
        hid_c, hid_f = torch.relu(self.O1(states[..., :half])), torch.relu(self.O3(states[..., half:]))
        return (self._add_prior(0, hid_c, self.O2(hid_c), mu, subs),
                self._add_prior(1, hid_f, self.O4(hid_f), mu, subs, coarse))

    def _add_prior(self, byte: int, hid: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, subs: torch.Tensor,
                   coarse: torch.Tensor | None = None) -> torch.Tensor:
        """logits (..., 256) of byte 0 (coarse) or 1 (fine, given the coarse bytes) plus the prior's term; hid
        (..., K) the byte's head hidden layer, mu (...) the centre in unsigned 16-bit units."""
        return add_prior(logits, byte, hid, self.prior_weight[byte], self.prior_bias[byte][subs], mu, coarse)

    def _linear_estimates(self, coarse: torch.Tensor, fine: torch.Tensor, n_pos: int) -> torch.Tensor:
        """(N, B, P, E): the linear estimates (§9) of every sample (i, s) from the bytes (N, T): the masked 16-bit
        values at positions i - 1 .. i + F, zero outside the sequence (and its padded last position)."""
        v = self._fold(sample_value(coarse, fine).to(self.lin_weight.dtype), n_pos)  # (N, B, P), padding 0
        rows = nnf.pad(v.transpose(1, 2), (0, 0, 1, self.horizon))  # (N, 1 + P + F, B): row k + 1 is position k
        shifted = torch.stack([rows[:, d:d + n_pos] for d in range(self.horizon + 2)], dim=2)  # [n, i, d, z]
        return torch.einsum("nidz,sdze->nsie", shifted, self.lin_weight * self.lin_mask)

    def nll_bits(self, mel: torch.Tensor, audio: torch.Tensor | None = None, *, coarse: torch.Tensor | None = None,
                 fine: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced NLL in bits per 16-bit sample, averaged over batch and time; differentiable."""
        coarse, fine = self._check_inputs(mel, audio, coarse, fine)
        return dual_softmax_bits(*self(mel, coarse=coarse, fine=fine), coarse, fine)

    # --- lockstep generation ----------------------------------------------------------------------------------

    def _file_order(self) -> dict[str, torch.Tensor]:
        hidden, ih = self.model_config.hidden_size, swap_gates_ur(self.gru.weight_ih_l0, self.model_config.hidden_size)
        cols = self._column_slices
        return {"W_in": ih[:, cols[0]], "cond.proj.weight": ih[:, cols[1]], "subscale.proj.weight": ih[:, cols[2]],
                "subscale.proj.bias": ih[:, cols[3]].T, "subscale.linear.proj": ih[:, cols[4]],
                "subscale.linear.weight": self.lin_weight * self.lin_mask if self.linear_estimates else None,
                "cond.proj.bias": swap_gates_ur(self.gru.bias_ih_l0, hidden),
                "R": swap_gates_ur(self.gru.weight_hh_l0, hidden), "b_R": swap_gates_ur(self.gru.bias_hh_l0, hidden)}

    def _context_step(self, values: torch.Tensor, v16: torch.Tensor, real: torch.Tensor, pos: torch.Tensor,
                      subs: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """ctx(i, s) (M, 3H) for active streams subs at positions pos, over windows i + F - R + 1 .. i + F, plus
        the linear estimates' columns (v16 (N, B): the samples' 16-bit values); and the estimates (M, E) or None."""
        n_pos, b = real.shape
        r = fold.context_receptive_field(self.model_config)
        k = pos[:, None] + self.horizon - r + 1 + torch.arange(r, device=pos.device)[None, :]  # (M, R)
        inside = (k >= 0) & (k < n_pos)
        kc = k.clamp(0, n_pos - 1)
        seen = real[kc] & inside[:, :, None] & (torch.arange(b, device=pos.device)[None, None, :] < subs[:, None, None])
        x = torch.where(seen[..., None], values[kc], torch.zeros((), device=pos.device)).reshape(k.shape[0], r, 2 * b)
        x = torch.gather(x, 2, self.ctx_order[subs][:, None, :].expand_as(x))  # subscale_context_order
        a = self.context_layers(x, subs, valid=k >= 0)[:, :, -1]
        out = a @ w["subscale.proj.weight"].T + w["subscale.proj.bias"][subs]
        est = None
        if self.linear_estimates:  # positions i - 1 .. i + F, the samples that are real (the mask is in the weight)
            k = pos[:, None] - 1 + torch.arange(self.horizon + 2, device=pos.device)[None, :]  # (M, F + 2)
            kc = k.clamp(0, n_pos - 1)
            inside = ((k >= 0) & (k < n_pos))[:, :, None]
            x = torch.where(real[kc] & inside, v16[kc], torch.zeros((), device=pos.device))
            est = torch.einsum("mdz,mdze->me", x, w["subscale.linear.weight"][subs])
            out = out + est @ w["subscale.linear.proj"].T
        return out, est

    def _prior_step(self, byte: int, y: torch.Tensor, logits: torch.Tensor, est: torch.Tensor, subs: torch.Tensor,
                    c_t: torch.Tensor | None = None) -> torch.Tensor:
        """One byte's logits (M, 256) of the active streams plus the prior's term (§9); y (M, H/2) the half state
        the head read, est (M, E) the linear estimates, c_t (M,) the coarse bytes (fine byte only)."""
        hid = torch.relu((self.O1 if byte == 0 else self.O3)(y))
        return self._add_prior(byte, hid, logits, est[:, 0] * 32768.0 + 32768.0, subs, c_t)

    @torch.no_grad()
    def generate(self, mel, uniforms: np.ndarray, trace: bool = False):
        """Free-running float32 generation, one batched step per schedule step (all active sub-tensors together).

        mel (F, n_mels); uniforms (F * hop, 2) float32 in [0, 1), indexed by true time. Returns int16 (F * hop,);
        with trace=True also {"h": (T, H), "logits_c", "logits_f": (T, 256)} indexed by true time.
        """
        self.apply_input_mask()
        device = self.gru.weight_ih_l0.device
        mel = torch.as_tensor(np.asarray(mel, dtype=np.float32), device=device)
        n_frames, hop, b, half = mel.shape[0], self.hop, self.factor, self.model_config.half
        n_samples = fold.check_length(n_frames * hop, b)
        uniforms = np.asarray(uniforms)
        if uniforms.dtype != np.float32 or uniforms.shape != (n_samples, 2):
            raise ValueError(f"uniforms: expected float32 of shape ({n_samples}, 2), found {uniforms.dtype} "
                             f"{uniforms.shape}")
        w = self._file_order()
        g = (w["cond.proj.weight"] @ self.conditioning_features(mel[None])[0] + w["cond.proj.bias"][:, None]).T
        n_pos = fold.n_positions(n_samples, b)
        real = torch.from_numpy(fold.sample_time(np.arange(n_pos)[:, None], np.arange(b), b) < n_samples)
        values, v16 = torch.zeros(n_pos, b, 2, device=device), torch.zeros(n_pos, b, device=device)
        coarse, fine = np.zeros((n_pos, b), np.int64), np.zeros((n_pos, b), np.int64)
        h = torch.zeros(b, self.model_config.hidden_size, device=device)
        steps = {"h": torch.zeros(n_samples, h.shape[1]), "logits_c": torch.zeros(n_samples, N_CLASSES),
                 "logits_f": torch.zeros(n_samples, N_CLASSES)}
        w_ct = w["W_in"][:, 2].view(3, 2, half)[:, 1]

        for positions in fold.schedule(n_samples, b, self.horizon):
            subs_np = np.flatnonzero(positions >= 0)
            if subs_np.size == 0:  # the last steps of a padded sequence
                continue
            pos_np = positions[subs_np]
            t_np = fold.sample_time(pos_np, subs_np, b)
            subs, pos = torch.from_numpy(subs_np).to(device), torch.from_numpy(pos_np).to(device)
            j = torch.from_numpy(t_np // hop).to(device)
            a = torch.from_numpy((t_np % hop).astype(np.float32) / np.float32(hop)).to(device)[:, None]
            g0, g1 = g[j], g[(j + 1).clamp(max=n_frames - 1)]
            ctx, est = self._context_step(values, v16, real, pos, subs, w)
            q = ((g0 + a * (g1 - g0)) + ctx).view(-1, 3, 2, half)

            k, z = fold.previous_sample(pos_np, subs_np, b, self.model_config.subscale_previous)
            c_prev = np.where(k >= 0, coarse[np.maximum(k, 0), z], PREV_COARSE)
            f_prev = np.where(k >= 0, fine[np.maximum(k, 0), z], PREV_FINE)
            x0, x1 = self.byte_input[torch.from_numpy(c_prev)], self.byte_input[torch.from_numpy(f_prev)]
            x01 = (x0[:, None] * w["W_in"][:, 0] + x1[:, None] * w["W_in"][:, 1]).view(-1, 3, 2, half)
            hs = h[subs]
            rh = (hs @ w["R"].T + w["b_R"]).view(-1, 3, 2, half)
            gate = lambda v: v.permute(1, 0, 2)  # (M, 3, n) -> (3, M, n) for _gru_update  # noqa: E731
            h_coarse = self._gru_update(hs[:, :half], gate(x01[:, :, 0] + q[:, :, 0]), gate(rh[:, :, 0]))
            logits_c = self.O2(torch.relu(self.O1(h_coarse)))
            if self.prior:
                logits_c = self._prior_step(0, h_coarse, logits_c, est, subs)
            c_t = np.array([sample_from_logits(l, u) for l, u in zip(logits_c.numpy(), uniforms[t_np, 0])])
            gi_fine = (x01[:, :, 1] + self.byte_input[torch.from_numpy(c_t)][:, None, None] * w_ct) + q[:, :, 1]
            h_fine = self._gru_update(hs[:, half:], gate(gi_fine), gate(rh[:, :, 1]))
            logits_f = self.O4(torch.relu(self.O3(h_fine)))
            if self.prior:
                logits_f = self._prior_step(1, h_fine, logits_f, est, subs, torch.from_numpy(c_t).to(device))
            f_t = np.array([sample_from_logits(l, u) for l, u in zip(logits_f.numpy(), uniforms[t_np, 1])])

            h[subs] = torch.cat([h_coarse, h_fine], dim=1)  # lockstep: the step's samples land together
            coarse[pos_np, subs_np], fine[pos_np, subs_np] = c_t, f_t
            v16[pos, subs] = sample_value(torch.from_numpy(c_t), torch.from_numpy(f_t)).to(v16.dtype)
            values[pos, subs] = torch.stack([self.byte_input[torch.from_numpy(c_t)],
                                             self.byte_input[torch.from_numpy(f_t)]], dim=1)
            t = torch.from_numpy(t_np)
            steps["h"][t], steps["logits_c"][t], steps["logits_f"][t] = h[subs].cpu(), logits_c.cpu(), logits_f.cpu()
        samples = coarse_fine_join(fold.unfold(coarse, n_samples), fold.unfold(fine, n_samples))
        return (samples, {k: v.numpy() for k, v in steps.items()}) if trace else samples

    # --- conversions to and from the model file's layout (§6, §9) ---------------------------------------------

    def to_model(self, feature_config: FeatureConfig | None = None, provenance: dict | None = None) -> Model:
        """The weights as a dense pywavernn Model (names and gate order of §6 and §9), validated."""
        self.apply_input_mask()

        def a(tensor):
            return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)

        w = self._file_order()
        weights = {}
        for i, conv in enumerate(self.cond_convs):
            weights[f"cond.conv{i}.weight"], weights[f"cond.conv{i}.bias"] = a(conv.weight), a(conv.bias)
        weights.update({"cond.proj.weight": a(w["cond.proj.weight"]), "cond.proj.bias": a(w["cond.proj.bias"]),
                        "gru.W_in": a(w["W_in"]), "gru.R": a(w["R"]), "gru.b_R": a(w["b_R"])})
        for i, layer in enumerate((self.O1, self.O2, self.O3, self.O4), start=1):
            weights[f"out.O{i}"], weights[f"out.b{i}"] = a(layer.weight), a(layer.bias)
        weights["subscale.embed.weight"] = a(self.ctx_embed.weight)
        weights["subscale.embed.bias"] = a(self.ctx_biases[0])
        for i, conv in enumerate(self.ctx_convs):
            weights[f"subscale.conv{i}.weight"] = a(conv.weight)
            weights[f"subscale.conv{i}.bias"] = a(self.ctx_biases[i + 1])
        weights["subscale.proj.weight"] = a(w["subscale.proj.weight"])
        weights["subscale.proj.bias"] = a(w["subscale.proj.bias"])
        if self.linear_estimates:
            weights["subscale.linear.weight"] = a(w["subscale.linear.weight"])
            weights["subscale.linear.proj"] = a(w["subscale.linear.proj"])
        if self.prior:
            weights["subscale.prior.weight"], weights["subscale.prior.bias"] = a(self.prior_weight), a(self.prior_bias)
        model = Model(self.model_config, feature_config or self.feature_config, weights, dict(provenance or {}))
        model.validate()
        return model

    @classmethod
    def from_model(cls, model: Model) -> "SubscaleWaveRNN":
        """A SubscaleWaveRNN holding a subscale Model's weights (block-sparse matrices are unpacked)."""
        model.validate()
        net = cls(model.model_config, model.feature_config)
        t = functools.partial(model_tensor, model)
        linear = (t("subscale.linear.proj"),) if net.linear_estimates else ()
        copy_shared_weights_(net, model, (t("subscale.proj.weight"), t("subscale.proj.bias").T, *linear))
        with torch.no_grad():
            net.ctx_embed.weight.copy_(t("subscale.embed.weight"))
            net.ctx_biases[0].copy_(t("subscale.embed.bias"))
            for i, conv in enumerate(net.ctx_convs):
                conv.weight.copy_(t(f"subscale.conv{i}.weight"))
                net.ctx_biases[i + 1].copy_(t(f"subscale.conv{i}.bias"))
            if net.linear_estimates:
                net.lin_weight.copy_(t("subscale.linear.weight"))
            if net.prior:
                net.prior_weight.copy_(t("subscale.prior.weight"))
                net.prior_bias.copy_(t("subscale.prior.bias"))
        return net
