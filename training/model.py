"""The PyTorch twin of the pywavernn WaveRNN (docs/format.md §1-5, and §11's linear prediction and prior), laid
out for training speed.

What it is: `WaveRNN`, an nn.Module computing exactly the model of docs/format.md, with teacher-forced
`forward` / `nll_bits` for training, a free-running `generate` (a slow Python loop, kept for parity tests
against pywavernn.reference) and conversions to and from `pywavernn.modelfile.Model`.
What it is not: an inference engine (use pywavernn.Vocoder), a data pipeline or a training loop.

Layout. The recurrence runs in one fused `torch.nn.GRU` (cuDNN on GPU) whose input at sample t is
[x_t (3), cond_features(t) (C)], where cond_features are the conditioning network's last-layer outputs z_L
interpolated to sample rate by §2's rule. So

    weight_ih = [gru.W_in | cond.proj.weight]   bias_ih = cond.proj.bias   weight_hh = gru.R   bias_hh = gru.b_R

with rows in torch's gate order (r, z, n) = our (r, u, e); the file's order is (u, r, e), so the first two gate
blocks swap on import and export. Projecting then interpolating (the spec) equals interpolating then projecting
(here): both are linear, and the interpolation weights sum to one, so the bias passes through unchanged.
torch's n gate is tanh(W_in x + b_in + r * (W_hn h + b_hn)), which is §3's e with b_R inside r * (...).

Linear prediction (ModelConfig.linear_order P >= 1, §11): x_t gains a 4th entry est(t) (`linear_prediction`, summed
in the spec's order, so it has the reference's bits) and W_in a 4th column, weight_ih = [gru.W_in (4) | cond.proj];
`linear_weight` holds the taps. With prior "laplace" the heads add the prior's terms (`heads`; training/prior.py),
from `prior_weight` (2, K) and `prior_bias` (2,). Starting values: est(t) = v(t - 1), the previous sample, and
a prior of scale e^6 = 403 steps (docs/format.md §11 says why).

The input mask (c_t, column 2 of weight_ih, is zero in the coarse rows of every gate) is enforced in training:
a forward pre-hook re-zeroes those weights and a gradient hook zeroes their gradients, so an optimizer step
never moves them and the coarse half never sees the sample it predicts.

Tests: `python -m pytest tests/test_parity_torch.py -q` (logits and sampled integers against pywavernn.reference).

Letters: N batch, H hidden units (H/2 coarse + H/2 fine), C conditioning channels, K output-head hidden units,
F frames, hop samples per frame, T = F * hop samples.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from pywavernn import lpc
from pywavernn.audio import coarse_fine_join, scale_byte
from pywavernn.common import N_CLASSES, PREV_COARSE, PREV_FINE
from pywavernn.config import FeatureConfig, ModelConfig
from pywavernn.modelfile import Model, coarse_rows_of_gates, gru_input_columns
from training.prior import PRIOR_INIT_LOG_SCALE, add_prior

# Parameters holding the sparse-capable matrices of docs/format.md §6 (for training.pruning.wavernn_targets).
# The recurrent one is in torch gate order (r, z, n).
RECURRENT_PARAMETER = "gru.weight_hh_l0"
OUTPUT_PARAMETERS = {"out.O1": "O1.weight", "out.O2": "O2.weight", "out.O3": "O3.weight", "out.O4": "O4.weight"}


def swap_gates_ur(w, hidden: int):
    """Reorder the gate blocks of a (3H, ...) array between file order (u, r, e) and torch order (r, u, e).

    The same swap goes both ways. Works on NumPy arrays and torch tensors.
    """
    return w[np.r_[hidden:2 * hidden, 0:hidden, 2 * hidden:3 * hidden]]


def sample_values(samples: torch.Tensor) -> torch.Tensor:
    """v = s / 32768 in float32 (exact) of integer samples s: what the linear prediction weighs (§11)."""
    return samples.float() / 32768.0


def linear_prediction(weight: torch.Tensor, past: torch.Tensor, n: int) -> torch.Tensor:
    """est (..., n) of docs/format.md §11 for n consecutive samples from their past: past (..., L - 1 + n) holds the
    16-bit values v of the L >= P samples before the first and of all but the last (column L - 1 + t is
    v(t - 1)); est[..., t] = sum over p = 1..P of weight[p - 1] * v(t - p), added in that order from zero, in
    float32: the reference's bits (each product and sum rounded; a float32 tensor times a 0-d one is). weight
    (P,), or per sample (..., n, P) (§13: each sample's frame taps)."""
    history = past.shape[-1] - n + 1
    est = torch.zeros(past.shape[:-1] + (n,), dtype=past.dtype, device=past.device)
    for p in range(1, weight.shape[-1] + 1):
        w = weight[p - 1] if weight.dim() == 1 else weight[..., p - 1]
        est = est + w * past[..., history - p:history - p + n]
    return est


def mel_frame_taps(mel: torch.Tensor, model_config: ModelConfig, feature_config: FeatureConfig) -> torch.Tensor:
    """§13's LPC taps A (N, F, P) of each frame of mel (N, F, n_mels), computed by pywavernn.lpc (NumPy, float64,
    rounded to float32: the engines' bits); constants of the mel, so no gradient flows through them."""
    frames = mel.detach().cpu().numpy()
    taps = np.stack([lpc.mel_lpc_taps(m, feature_config, model_config.linear_order, model_config.preemphasis)
                     for m in frames])
    return torch.from_numpy(taps).to(mel.device)


def sample_taps(frame_taps: torch.Tensor, weight: torch.Tensor, first_frame, n_frames, n: int,
                hop: int) -> torch.Tensor:
    """Each of n samples' taps (N, n, P) under §13: float32(A_j + linear.weight) of frame j = the frame nearest the
    sample (pywavernn.lpc.frame_of_sample), at most the last frame. frame_taps (N, F', P); sample 0 of window i is
    frame first_frame[i] of its row's frames, which hold n_frames[i] valid frames (ints or lists of N)."""
    rows = []
    for i in range(frame_taps.shape[0]):
        first = first_frame if isinstance(first_frame, int) else first_frame[i]
        last = (n_frames if isinstance(n_frames, int) else n_frames[i]) - 1
        j = torch.from_numpy(np.minimum(first + lpc.frame_of_sample(np.arange(n), hop, 1 << 62), last))
        rows.append(frame_taps[i, j.to(frame_taps.device)])
    return torch.stack(rows) + weight


def sample_from_logits(logits: np.ndarray, u: float) -> int:
    """§4's rule on float32 logits (256,): first k with cdf[k] > u * cdf[255], else 255.

    In NumPy because the cumulative sum must be float32 in index order, and torch.cumsum on CPU accumulates
    float32 in double.
    """
    p = np.exp(logits - logits.max())
    cdf = np.cumsum(p, dtype=np.float32)
    above = np.flatnonzero(cdf > np.float32(u) * cdf[-1])
    return int(above[0]) if above.size else N_CLASSES - 1


class WaveRNN(nn.Module):
    """WaveRNN of docs/format.md. `model_config` gives the sizes; `feature_config` (default: the standard one with
    the model's n_mels) gives the hop, used to upsample the conditioning, and travels into exported files."""

    def __init__(self, model_config: ModelConfig, feature_config: FeatureConfig | None = None):
        super().__init__()
        if feature_config is None:
            feature_config = FeatureConfig(n_mels=model_config.n_mels)
        if model_config.n_mels != feature_config.n_mels:
            raise ValueError(f"n_mels: the model config expects {model_config.n_mels} mel bins but the feature "
                             f"config computes {feature_config.n_mels}")
        if model_config.subscale_factor != 1:
            raise ValueError(f"subscale_factor: WaveRNN implements the plain model (1), "
                             f"found {model_config.subscale_factor}")
        self.model_config = model_config
        self.feature_config = feature_config
        hidden, half, channels = model_config.hidden_size, model_config.half, model_config.cond_channels

        convs, c_in = [], model_config.n_mels
        for k in model_config.cond_kernels:
            convs.append(nn.Conv1d(c_in, channels, k, padding=(k - 1) // 2, padding_mode="replicate"))
            c_in = channels
        self.cond_convs = nn.ModuleList(convs)
        self.n_inputs = gru_input_columns(model_config)  # columns of gru.W_in: 3, or 4 with est(t) (§11)
        self.gru = nn.GRU(self.n_inputs + channels, hidden, batch_first=True)
        self.O1 = nn.Linear(half, model_config.out_hidden)
        self.O2 = nn.Linear(model_config.out_hidden, N_CLASSES)
        self.O3 = nn.Linear(half, model_config.out_hidden)
        self.O4 = nn.Linear(model_config.out_hidden, N_CLASSES)
        self.linear_order = model_config.linear_order
        if self.linear_order:  # est(t) starts as v(t - 1), the previous sample; with taps from the mel (§13) as
            self.linear_weight = nn.Parameter(torch.zeros(self.linear_order))  # those taps alone
            if not model_config.mel_lpc:
                with torch.no_grad():
                    self.linear_weight[0] = 1.0
        if model_config.prior != "none":  # log b = prior_weight[byte] . hid + prior_bias[byte]: e^6 at the start
            self.prior_weight = nn.Parameter(torch.zeros(2, model_config.out_hidden))
            self.prior_bias = nn.Parameter(torch.full((2,), PRIOR_INIT_LOG_SCALE))

        mask = torch.ones(3 * hidden, self.n_inputs + channels)
        mask[torch.from_numpy(coarse_rows_of_gates(hidden)), 2] = 0.0  # same rows in either gate order
        self.register_buffer("input_mask", mask, persistent=False)
        self.register_buffer("byte_input", torch.from_numpy(scale_byte(np.arange(N_CLASSES))), persistent=False)
        self._hooked_weight = None
        self.register_forward_pre_hook(lambda module, args, kwargs: module.apply_input_mask(), with_kwargs=True)
        self.apply_input_mask()

    # --- the input mask ---------------------------------------------------------------------------------------

    def apply_input_mask(self) -> None:
        """Zero c_t's weights in the coarse rows and make sure their gradient is masked too.

        Writes through .data so autograd's version counter is untouched: the entries are already zero unless set
        from outside (load_state_dict, a manual edit), so no saved graph can depend on the values changed here.
        The gradient hook is (re)attached whenever the parameter object changes (deepcopy, module surgery).
        """
        weight = self.gru.weight_ih_l0
        weight.data.mul_(self.input_mask)
        hooked = self._hooked_weight() if self._hooked_weight is not None else None
        if hooked is not weight:
            weight.register_hook(lambda grad: grad * self.input_mask)
            self._hooked_weight = weakref.ref(weight)

    # --- conditioning (§2) ------------------------------------------------------------------------------------

    @property
    def hop(self) -> int:
        return self.feature_config.hop_length

    def conditioning_features(self, mel: torch.Tensor) -> torch.Tensor:
        """The conditioning network before its projection: mel (N, F, n_mels) -> z_L (N, C, F)."""
        z = mel.transpose(1, 2)
        for conv in self.cond_convs:
            z = torch.relu(conv(z))
        return z

    def upsample(self, z: torch.Tensor, n_samples: int) -> torch.Tensor:
        """§2's interpolation at sample rate: z (N, C, F) -> (N, T, C); frame j applies at sample j * hop."""
        t = torch.arange(n_samples, device=z.device)
        j = t // self.hop
        a = (t % self.hop).to(torch.float32) / self.hop  # float32 division, as float32(t % hop) / float32(hop)
        padded = torch.cat([z, z[:, :, -1:]], dim=2)  # g[F] := g[F - 1]
        z0, z1 = padded[:, :, j], padded[:, :, j + 1]
        return (z0 + a * (z1 - z0)).transpose(1, 2)

    def frame_conditioning(self, mel: torch.Tensor) -> torch.Tensor:
        """g of §2 for one utterance, in file gate order: mel (F, n_mels) -> (F, 3H)."""
        hidden, ih = self.model_config.hidden_size, self.gru.weight_ih_l0
        proj_w = swap_gates_ur(ih[:, self.n_inputs:], hidden)
        proj_b = swap_gates_ur(self.gru.bias_ih_l0, hidden)
        z = self.conditioning_features(mel[None])[0]
        return (proj_w @ z + proj_b[:, None]).T

    # --- teacher forcing (§3, §5) -----------------------------------------------------------------------------

    def _check_inputs(self, mel, audio, coarse, fine) -> tuple[torch.Tensor, torch.Tensor]:
        if mel.dim() != 3 or mel.shape[2] != self.model_config.n_mels:
            raise ValueError(f"mel: expected shape (N, F, {self.model_config.n_mels}), found {tuple(mel.shape)}")
        if (audio is None) == (coarse is None or fine is None):
            raise ValueError("pass either audio (int16) or both coarse and fine (bytes)")
        if audio is not None:
            if audio.dtype != torch.int16:
                raise TypeError(f"audio: expected an int16 tensor, found {audio.dtype}")
            u = audio.to(torch.int32) + 32768
            coarse, fine = u >> 8, u & 255
        expected = (mel.shape[0], mel.shape[1] * self.hop)
        for name, v in (("coarse", coarse), ("fine", fine)):
            if tuple(v.shape) != expected:
                raise ValueError(f"{name}: expected shape (N, F * hop) = {expected} for a mel of {mel.shape[1]} "
                                 f"frames (audio length must be F * hop), found {tuple(v.shape)}")
        return coarse.long(), fine.long()

    def gru_inputs(self, coarse: torch.Tensor, fine: torch.Tensor,
                   frame_taps: torch.Tensor | None = None) -> torch.Tensor:
        """x_t = [c_{t-1}, f_{t-1}, c_t] scaled to [-1, 1], and est(t) with linear prediction, (N, T, 3 or 4), from
        true bytes (N, T) of an utterance (silence before it); with mel_lpc (§13) frame_taps (N, F, P) are the
        utterance's frames' taps from the mel (mel_frame_taps)."""
        coarse_prev = nnf.pad(coarse[:, :-1], (1, 0), value=PREV_COARSE)
        fine_prev = nnf.pad(fine[:, :-1], (1, 0), value=PREV_FINE)
        x = self.byte_input[torch.stack([coarse_prev, fine_prev, coarse], dim=2)]
        if not self.linear_order:
            return x
        past = nnf.pad(sample_values(coarse * 256 + fine - 32768)[:, :-1], (self.linear_order, 0))
        weight = self.linear_weight
        if self.model_config.mel_lpc:
            weight = sample_taps(frame_taps, weight, 0, frame_taps.shape[1], coarse.shape[1], self.hop)
        return torch.cat([x, linear_prediction(weight, past, coarse.shape[1])[..., None]], dim=2)

    def heads(self, states: torch.Tensor, est: torch.Tensor | None = None,
              coarse: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., H) GRU states -> (logits_c, logits_f), each (..., 256); with a prior (§11) plus its terms, centred
        on est (...), the fine byte's bins given the coarse bytes (...)."""
        half = self.model_config.half
        hid_c, hid_f = torch.relu(self.O1(states[..., :half])), torch.relu(self.O3(states[..., half:]))
        logits_c, logits_f = self.O2(hid_c), self.O4(hid_f)
        if self.model_config.prior == "none":  # (SubscaleWaveRNN shares this method: its own prior is §9's)
            return logits_c, logits_f
        if est is None or coarse is None:
            raise ValueError("heads: a model with a prior needs est and the coarse bytes")
        mu = est * 32768.0 + 32768.0
        return (add_prior(logits_c, 0, hid_c, self.prior_weight[0], self.prior_bias[0], mu),
                add_prior(logits_f, 1, hid_f, self.prior_weight[1], self.prior_bias[1], mu, coarse))

    def forward(self, mel: torch.Tensor, audio: torch.Tensor | None = None, *, coarse: torch.Tensor | None = None,
                fine: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits: mel (N, F, n_mels) and audio int16 (N, F * hop), or its coarse and fine bytes,
        -> (logits_c, logits_f), each (N, T, 256). The state starts at h = 0."""
        coarse, fine = self._check_inputs(mel, audio, coarse, fine)
        cond = self.upsample(self.conditioning_features(mel), coarse.shape[1])
        taps = mel_frame_taps(mel, self.model_config, self.feature_config) if self.model_config.mel_lpc else None
        x = self.gru_inputs(coarse, fine, taps)
        states, _ = self.gru(torch.cat([x, cond], dim=2))
        return self.heads(states, x[..., 3] if self.linear_order else None, coarse)

    def nll_bits(self, mel: torch.Tensor, audio: torch.Tensor | None = None, *, coarse: torch.Tensor | None = None,
                 fine: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced NLL in bits per 16-bit sample (§5), averaged over batch and time; differentiable."""
        coarse, fine = self._check_inputs(mel, audio, coarse, fine)
        return dual_softmax_bits(*self(mel, coarse=coarse, fine=fine), coarse, fine)

    # --- free-running generation (§3, §4) ---------------------------------------------------------------------

    def _file_order_gru(self) -> dict[str, torch.Tensor]:
        hidden, ih = self.model_config.hidden_size, self.gru.weight_ih_l0
        return {"W_in": swap_gates_ur(ih[:, :self.n_inputs], hidden), "R": swap_gates_ur(self.gru.weight_hh_l0, hidden),
                "b_R": swap_gates_ur(self.gru.bias_hh_l0, hidden)}

    @staticmethod
    def _gru_update(h, gi, rh):
        """§3's gate equations on matching slices: h (n,), gi and rh (3, n) with rows [u, r, e]."""
        u = torch.sigmoid(gi[0] + rh[0])
        r = torch.sigmoid(gi[1] + rh[1])
        e = torch.tanh(gi[2] + r * rh[2])
        return u * h + (1 - u) * e

    def sample_step(self, gru: dict[str, torch.Tensor], h: torch.Tensor, c_prev: int, f_prev: int,
                    cond: torch.Tensor, u_coarse: float, u_fine: float, est: torch.Tensor | None = None):
        """One sample in §3's order; returns (h', c_t, f_t, logits_c, logits_f). `gru` from _file_order_gru.

        The input projection is summed as ((x0 w0 + x1 w1) + x2 w2) + cond, where the coarse rows' x2 term is
        zero by the mask, with est(t) w3 added before cond when there is linear prediction (est given, §11) --
        the same order as pywavernn.reference, so both give the same float32 values. With a prior each byte's
        logits add its terms before the draw.
        """
        half = self.model_config.half
        w_in = gru["W_in"]
        rh = (gru["R"] @ h + gru["b_R"]).view(3, 2, half)
        x01 = (self.byte_input[c_prev] * w_in[:, 0] + self.byte_input[f_prev] * w_in[:, 1]).view(3, 2, half)
        x_est = None if est is None else (est * w_in[:, 3]).view(3, 2, half)
        cond = cond.view(3, 2, half)

        gi_coarse = x01[:, 0] if x_est is None else x01[:, 0] + x_est[:, 0]
        h_coarse = self._gru_update(h[:half], gi_coarse + cond[:, 0], rh[:, 0])
        logits_c = self._byte_logits(0, h_coarse, est)
        c_t = sample_from_logits(logits_c.cpu().numpy(), u_coarse)
        w_ct = w_in[:, 2].view(3, 2, half)[:, 1]
        gi_fine = x01[:, 1] + self.byte_input[c_t] * w_ct
        if x_est is not None:
            gi_fine = gi_fine + x_est[:, 1]
        h_fine = self._gru_update(h[half:], gi_fine + cond[:, 1], rh[:, 1])
        logits_f = self._byte_logits(1, h_fine, est, c_t)
        f_t = sample_from_logits(logits_f.cpu().numpy(), u_fine)
        return torch.cat([h_coarse, h_fine]), c_t, f_t, logits_c, logits_f

    def _byte_logits(self, byte: int, y: torch.Tensor, est: torch.Tensor | None, c_t: int = 0) -> torch.Tensor:
        """One byte's logits (256,) from its half state y (H/2,), plus the prior's terms when there is a prior."""
        first, second = (self.O1, self.O2) if byte == 0 else (self.O3, self.O4)
        hid = torch.relu(first(y))
        logits = second(hid)
        if self.model_config.prior == "none":
            return logits
        return add_prior(logits, byte, hid, self.prior_weight[byte], self.prior_bias[byte], est * 32768.0 + 32768.0,
                         torch.tensor(c_t, device=y.device))

    @torch.no_grad()
    def generate(self, mel, uniforms: np.ndarray, trace: bool = False):
        """Free-running float32 generation, one Python step per sample (slow; for parity tests).

        mel (F, n_mels) array or tensor; uniforms (F * hop, 2) float32 in [0, 1) (§4). Returns int16 samples
        (F * hop,) as a NumPy array; with trace=True also a dict of per-step "h" (T, H), "logits_c", "logits_f".
        """
        self.apply_input_mask()
        device = self.gru.weight_ih_l0.device
        mel = torch.as_tensor(np.asarray(mel, dtype=np.float32), device=device)
        n_frames, hop = mel.shape[0], self.hop
        n_samples = n_frames * hop
        uniforms = np.asarray(uniforms)
        if uniforms.dtype != np.float32 or uniforms.shape != (n_samples, 2):
            raise ValueError(f"uniforms: expected float32 of shape ({n_samples}, 2), found {uniforms.dtype} "
                             f"{uniforms.shape}")
        g = self.frame_conditioning(mel)
        gru = self._file_order_gru()
        a = torch.from_numpy((np.arange(n_samples) % hop).astype(np.float32) / np.float32(hop)).to(device)

        h = torch.zeros(self.model_config.hidden_size, device=device)
        c_prev, f_prev = PREV_COARSE, PREV_FINE
        coarse, fine = np.empty(n_samples, np.int64), np.empty(n_samples, np.int64)
        history = torch.zeros(self.linear_order, device=device)  # v(t - P) .. v(t - 1), oldest first (§11)
        taps = None
        if self.model_config.mel_lpc:  # §13: each sample's taps, float32(A_j + linear.weight)
            taps = sample_taps(mel_frame_taps(mel[None], self.model_config, self.feature_config),
                               self.linear_weight, 0, n_frames, n_samples, hop)[0]
        steps = {"h": [], "logits_c": [], "logits_f": []}
        for t in range(n_samples):
            j = t // hop
            g0, g1 = g[j], g[min(j + 1, n_frames - 1)]
            cond = g0 + a[t] * (g1 - g0)
            est = None
            if self.linear_order:
                est = linear_prediction(self.linear_weight if taps is None else taps[t], history, 1)[0]
            h, c_prev, f_prev, logits_c, logits_f = self.sample_step(
                gru, h, c_prev, f_prev, cond, uniforms[t, 0], uniforms[t, 1], est)
            coarse[t], fine[t] = c_prev, f_prev
            if self.linear_order:
                now = sample_values(torch.tensor([c_prev * 256 + f_prev - 32768], device=device))
                history = torch.cat([history[1:], now])
            if trace:
                steps["h"].append(h)
                steps["logits_c"].append(logits_c)
                steps["logits_f"].append(logits_f)
        samples = coarse_fine_join(coarse, fine)
        if not trace:
            return samples
        return samples, {k: torch.stack(v).cpu().numpy() for k, v in steps.items()}

    # --- conversions to and from the model file's layout (§6) -------------------------------------------------

    @classmethod
    def from_model(cls, model: Model) -> "WaveRNN":
        """A WaveRNN holding a pywavernn Model's weights (block-sparse matrices are unpacked)."""
        model.validate()
        net = cls(model.model_config, model.feature_config)
        copy_shared_weights_(net, model)  # W_in with est's column when there is linear prediction
        with torch.no_grad():
            for name, param in net.linear_prediction_parameters().items():
                param.copy_(model_tensor(model, name))
        return net

    def linear_prediction_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters of §11 by their file names: linear.weight, and prior.weight and prior.bias with a prior;
        empty without linear prediction."""
        out = {"linear.weight": self.linear_weight} if self.linear_order else {}
        if self.model_config.prior != "none":
            out.update({"prior.weight": self.prior_weight, "prior.bias": self.prior_bias})
        return out

    def to_model(self, feature_config: FeatureConfig | None = None, provenance: dict | None = None) -> Model:
        """The weights as a dense pywavernn Model (names and gate order of §6), validated."""
        self.apply_input_mask()
        feature_config = feature_config if feature_config is not None else self.feature_config
        hidden = self.model_config.hidden_size

        def a(tensor):
            return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)

        ih = swap_gates_ur(self.gru.weight_ih_l0, hidden)
        weights = {}
        for i, conv in enumerate(self.cond_convs):
            weights[f"cond.conv{i}.weight"], weights[f"cond.conv{i}.bias"] = a(conv.weight), a(conv.bias)
        weights.update({
            "cond.proj.weight": a(ih[:, self.n_inputs:]),
            "cond.proj.bias": a(swap_gates_ur(self.gru.bias_ih_l0, hidden)),
            "gru.W_in": a(ih[:, :self.n_inputs]), "gru.R": a(swap_gates_ur(self.gru.weight_hh_l0, hidden)),
            "gru.b_R": a(swap_gates_ur(self.gru.bias_hh_l0, hidden)),
        })
        for i, layer in enumerate((self.O1, self.O2, self.O3, self.O4), start=1):
            weights[f"out.O{i}"], weights[f"out.b{i}"] = a(layer.weight), a(layer.bias)
        weights.update({name: a(param) for name, param in self.linear_prediction_parameters().items()})
        model = Model(self.model_config, feature_config, weights, dict(provenance or {}))
        model.validate()
        return model


def model_tensor(model: Model, name: str) -> torch.Tensor:
    """A model file weight as a float32 torch tensor (block-sparse matrices unpacked)."""
    return torch.from_numpy(np.array(model.dense(name), dtype=np.float32))


def copy_shared_weights_(net: nn.Module, model: Model, extra_input_columns: tuple = ()) -> None:
    """Copy what every WaveRNN variant shares (conditioning convs, the GRU, the output heads) from a Model into a
    twin, in torch's layout: weight_ih = [W_in | cond.proj | *extra_input_columns], gates permuted to r, z, n."""
    hidden = model.model_config.hidden_size
    with torch.no_grad():
        for i, conv in enumerate(net.cond_convs):
            conv.weight.copy_(model_tensor(model, f"cond.conv{i}.weight"))
            conv.bias.copy_(model_tensor(model, f"cond.conv{i}.bias"))
        ih = torch.cat([model_tensor(model, "gru.W_in"), model_tensor(model, "cond.proj.weight"),
                        *extra_input_columns], 1)
        net.gru.weight_ih_l0.copy_(swap_gates_ur(ih, hidden))
        net.gru.bias_ih_l0.copy_(swap_gates_ur(model_tensor(model, "cond.proj.bias"), hidden))
        net.gru.weight_hh_l0.copy_(swap_gates_ur(model_tensor(model, "gru.R"), hidden))
        net.gru.bias_hh_l0.copy_(swap_gates_ur(model_tensor(model, "gru.b_R"), hidden))
        for i, layer in enumerate((net.O1, net.O2, net.O3, net.O4), start=1):
            layer.weight.copy_(model_tensor(model, f"out.O{i}"))
            layer.bias.copy_(model_tensor(model, f"out.b{i}"))


def dual_softmax_bits(logits_c: torch.Tensor, logits_f: torch.Tensor, coarse: torch.Tensor,
                      fine: torch.Tensor) -> torch.Tensor:
    """Mean -log2 P(c_t) - log2 P(f_t | c_t) over batch and time (docs/format.md §5); differentiable."""
    nats = (nnf.cross_entropy(logits_c.reshape(-1, N_CLASSES), coarse.reshape(-1))
            + nnf.cross_entropy(logits_f.reshape(-1, N_CLASSES), fine.reshape(-1)))
    return nats / math.log(2.0)
