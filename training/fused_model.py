"""The PyTorch twin of the Fused Subscale WaveRNN 2x (docs/format.md §12), laid out for training.

What it is: `FusedWaveRNN`, an nn.Module computing exactly the model of §12: teacher-forced logits and NLL over
whole utterances (`forward`, `nll_bits`) and over training windows (`window_nll_bits`, what
training.losses.FusedWindowedNLL calls), a free-running `generate` (one Python step per fused step, both halves
of a stage batched; for parity tests against pywavernn.reference.fused), prune targets for training.pruning, and
conversions to and from `pywavernn.modelfile.Model`.
What it is not: an inference engine (pywavernn's engines), a data pipeline or a training loop (training.trainer).

Teacher forcing. Every nibble is known, so the 14 GRU inputs of a step are known before it runs, and one GRU step
over the whole state computes all eight parts at once: part (s, j) reads W_in's masked columns, so the current
nibbles it may not see (m >= j of its own sample, any of the other half's) meet exact zeros, as the reference's
zero inputs do. Each half's conditioning rows come from its own sample's time (even samples for half 0, odd for
half 1, LAG = 3 steps later). An idle half keeps its state: `torch.where` on the state in the "torch" recurrence
(the definition), and in the fast recurrence (training.fast_gru.gru_scan, gru_impl "scan", "scan-bf16") an
update-gate pre-activation of IDLE_GATE, so u = sigmoid(.) = 1 exactly in float32 and h' = e + 1 (h - e): exactly
h while h = 0 (half 1's first LAG steps), within one rounding of h otherwise (half 0's last LAG steps, after its
last sample), and no gradient reaches the idle rows.

Layout. As in training.model, weight_ih = [gru.W_in (14) | cond.proj.weight (C)], bias_ih = cond.proj.bias,
weight_hh = gru.R, bias_hh = gru.b_R, in torch gate order (r, u, e) (swap_gates_ur to and from the file's
u, r, e); `self.gru` is an nn.GRU used only as the holder of these four parameters (the recurrence is written
out here, since nn.GRU cannot keep a half idle), so the pruner and the checkpoints see the plain model's names.
The input mask (fused.input_mask) is applied structurally: the recurrence multiplies W_in by it, so masked
weights get exactly zero gradient, and a forward pre-hook re-zeroes the stored weights (training.model's rule).
The heads are the file's stacked matrices: `O1` (8K, P), `b1`, `O2` (128, K), `b2`, head p = 4 s + j.

Training windows (docs/format.md §12 defines whole utterances; this is the trainer's choice). A window is
W * hop consecutive samples (an even count, checked by TrainConfig) run through the full schedule of §12 as if it
were an utterance: its even local samples are sub-tensor 0, h = 0 at the start, half 1 idle for the first LAG
steps, half 0 idle for the last LAG, every one of the T samples scored once. As the plain trainer gives the first
step its true previous sample, the inputs that name samples before the window carry the true ones
(Batch.prev, the HISTORY = 7 samples before the window; silence at an utterance start, as at inference); inputs
after the window's last sample carry silence (§12's rule after the last sample), so the last few odd samples are
trained without the even samples up to F ahead that the utterance has beyond the window. With the window at an
utterance's start and its conditioning the utterance's own, the window loss is the utterance's NLL of §12.

Tests: `python -m pytest tests/test_training_fused.py -q`.
Letters: N batch, T samples, M = ceil(T / 2) positions, S = M + LAG steps, H hidden units, P = H / 8 units per
part, K head hidden units, C conditioning channels, F frames, hop samples per frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from pywavernn import fused
from pywavernn.config import FUSED_PARTS, FeatureConfig, ModelConfig
from pywavernn.fold import check_length, n_positions
from pywavernn.modelfile import Model
from training.fast_gru import gru_scan
from training.model import WaveRNN, model_tensor, swap_gates_ur
from training.pruning import RECURRENT_NAMES, PruneTarget, fused_head_targets, wavernn_targets

N_NIBBLES, NIBBLE_CLASSES, LAG = fused.N_NIBBLES, fused.NIBBLE_CLASSES, fused.LAG
HISTORY = 2 * LAG + 1  # samples before a window its first steps' inputs name (local times -7, -5, -3, -2, -1)
IDLE_GATE = 1.0e4  # the fast recurrence's update-gate pre-activation of an idle half: sigmoid(1e4 + x) == 1.0f
RECURRENT_PARAMETER = "gru.weight_hh_l0"  # gru.R in torch gate order (training.pruning.gate_rows)
HEAD_PARAMETERS = {"fused.O1": "O1", "fused.O2": "O2"}  # the file's stacked head matrices -> parameter names
_NIBBLE_SHIFTS = (12, 8, 4, 0)


def nibbles_of(unsigned: torch.Tensor) -> torch.Tensor:
    """(...) unsigned 16-bit values (int64) -> (..., 4) nibbles, most significant first (fused.split_nibbles)."""
    shifts = torch.tensor(_NIBBLE_SHIFTS, device=unsigned.device)
    return (unsigned[..., None] >> shifts) & (NIBBLE_CLASSES - 1)


def sample_nibble(logits: np.ndarray, u: float) -> int:
    """§4's rule over 16 classes on float32 logits: first k with cdf[k] > u * cdf[15], else 15 (NumPy: the running
    sum must be float32 in index order)."""
    p = np.exp(logits - logits.max())
    cdf = np.cumsum(p, dtype=np.float32)
    above = np.flatnonzero(cdf > np.float32(u) * cdf[-1])
    return int(above[0]) if above.size else NIBBLE_CLASSES - 1


def nibble_bits(logits: torch.Tensor, nibbles: torch.Tensor) -> torch.Tensor:
    """Mean over samples of the four nibbles' summed -log2 P, from logits (..., 4, 16) and nibbles (..., 4)."""
    nats = nnf.cross_entropy(logits.reshape(-1, NIBBLE_CLASSES).float(), nibbles.reshape(-1))
    return nats * N_NIBBLES / math.log(2.0)


class FusedWaveRNN(nn.Module):
    """Fused Subscale WaveRNN 2x of docs/format.md §12; `model_config.subscale_fused` must be true."""

    factor = fused.FUSED_FACTOR  # samples per step, one per half (training.score reports by half)

    def __init__(self, model_config: ModelConfig, feature_config: FeatureConfig | None = None):
        super().__init__()
        if feature_config is None:
            feature_config = FeatureConfig(n_mels=model_config.n_mels)
        if model_config.n_mels != feature_config.n_mels:
            raise ValueError(f"n_mels: the model config expects {model_config.n_mels} mel bins but the feature "
                             f"config computes {feature_config.n_mels}")
        if model_config.kind != "fused":
            raise ValueError(f"model config: FusedWaveRNN implements the fused model (subscale_fused), found a "
                             f"{model_config.kind} model (training.model.WaveRNN / training.subscale_model)")
        self.model_config, self.feature_config = model_config, feature_config
        hidden, channels, k = model_config.hidden_size, model_config.cond_channels, model_config.out_hidden
        self.part = fused.part_size(hidden)

        convs, c_in = [], model_config.n_mels
        for kernel in model_config.cond_kernels:
            convs.append(nn.Conv1d(c_in, channels, kernel, padding=(kernel - 1) // 2, padding_mode="replicate"))
            c_in = channels
        self.cond_convs = nn.ModuleList(convs)
        self.n_inputs = fused.INPUT_COLUMNS
        self.gru = nn.GRU(self.n_inputs + channels, hidden, batch_first=True)  # the parameters' holder only
        b1, b2 = 1.0 / math.sqrt(self.part), 1.0 / math.sqrt(k)  # nn.Linear's default init, per head
        self.O1 = nn.Parameter(torch.empty(FUSED_PARTS * k, self.part).uniform_(-b1, b1))
        self.b1 = nn.Parameter(torch.empty(FUSED_PARTS * k).uniform_(-b1, b1))
        self.O2 = nn.Parameter(torch.empty(FUSED_PARTS * NIBBLE_CLASSES, k).uniform_(-b2, b2))
        self.b2 = nn.Parameter(torch.empty(FUSED_PARTS * NIBBLE_CLASSES).uniform_(-b2, b2))

        mask = torch.ones(3 * hidden, self.n_inputs + channels)
        mask[:, :self.n_inputs] = torch.from_numpy(swap_gates_ur(fused.input_mask(hidden), hidden).astype(np.float32))
        self.register_buffer("input_mask", mask, persistent=False)
        self.register_buffer("nibble_input", torch.from_numpy(fused.NIBBLE_INPUT.copy()), persistent=False)
        self.register_buffer("unit_half", (torch.arange(hidden) >= hidden // 2).long(), persistent=False)
        self._hooked_weight = None
        self.register_forward_pre_hook(lambda module, args, kwargs: module.apply_input_mask(), with_kwargs=True)
        self.apply_input_mask()

    apply_input_mask = WaveRNN.apply_input_mask  # re-zero the masked W_in entries, mask their gradient
    conditioning_features = WaveRNN.conditioning_features
    upsample = WaveRNN.upsample
    _gru_update = staticmethod(WaveRNN._gru_update)

    @property
    def hop(self) -> int:
        return self.feature_config.hop_length

    # --- one teacher-forced pass (§12 with the true nibbles) ----------------------------------------------------

    def step_inputs(self, unsigned: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (S, N, 14) scaled nibbles, active (S, 2) bool) of every step from the window's unsigned samples
        (N, T) int64 and the HISTORY before it (N, 7) int64 (silence, 32768, for an utterance).

        Step n's inputs: the previous samples (n - 1, 0) and (n - 1 - LAG, 1), silence after the last sample; the
        first three nibbles of the samples (n, 0) and (n - LAG, 1) it generates, 0 for an idle half."""
        batch, n_samples = unsigned.shape
        n_pos = n_positions(n_samples, 2)
        steps = torch.arange(n_pos + LAG, device=unsigned.device)
        tail = unsigned.new_full((batch, 2 * LAG + 2), fused.SILENCE)  # past the last sample (and odd T's pad)
        nib = self.nibble_input[nibbles_of(torch.cat([history, unsigned, tail], dim=1))]  # index HISTORY + t
        active = torch.stack([steps < n_pos, (steps >= LAG) & (2 * (steps - LAG) + 1 < n_samples)], dim=1)
        at = lambda t: nib[:, HISTORY + t]  # noqa: E731  (N, S, 4): the nibbles of local times t (S,)
        cur0 = at(2 * steps)[..., :N_NIBBLES - 1] * active[None, :, 0, None]
        cur1 = at(2 * (steps - LAG) + 1)[..., :N_NIBBLES - 1] * active[None, :, 1, None]
        x = torch.cat([at(2 * (steps - 1)), at(2 * (steps - 1 - LAG) + 1), cur0, cur1], dim=2)
        return x.transpose(0, 1), active

    def step_conditioning(self, feats: torch.Tensor) -> torch.Tensor:
        """q (S, N, 3H), torch gate order: the projected conditioning of each half's sample in its rows, half 0's
        at step i for sample 2 i, half 1's at step i + LAG for sample 2 i + 1 (zeros where a half is idle);
        feats (N, T, C) the conditioning features at sample rate (self.upsample)."""
        batch, n_samples, channels = feats.shape
        hidden, half = self.model_config.hidden_size, self.model_config.half
        n_pos, n_odd = n_positions(n_samples, 2), n_samples // 2
        w = self.gru.weight_ih_l0[:, self.n_inputs:].reshape(3, 2, half, channels)
        b = self.gru.bias_ih_l0.reshape(3, 2, half)
        parts = []
        for s, (count, before) in enumerate(((n_pos, 0), (n_odd, LAG))):
            q = feats[:, s::2] @ w[:, s].reshape(3 * half, channels).t()  # (N, count, 3 H/2)
            q = q.view(batch, count, 3, half) + b[:, s]
            q = nnf.pad(q, (0, 0, 0, 0, before, n_pos + LAG - before - count))
            parts.append(q.transpose(0, 1))  # (S, N, 3, H/2)
        return torch.stack(parts, dim=3).reshape(n_pos + LAG, batch, 3 * hidden)

    def recurrence(self, gi: torch.Tensor, active: torch.Tensor,
                   matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
        """The states (S, N, H) after each step from h = 0; gi (S, N, 3H) the input gate terms in torch order.
        matmul_dtype None: torch ops, an idle half's state kept by torch.where (the definition); float32 or
        bfloat16: training.fast_gru.gru_scan, an idle half held by IDLE_GATE (module docstring)."""
        hidden = self.model_config.hidden_size
        w_hh, b_hh = self.gru.weight_hh_l0, self.gru.bias_hh_l0
        units = active[:, self.unit_half]  # (S, H): the units of the halves that run at each step
        if matmul_dtype is not None:
            z = torch.where(units[:, None, :], gi[..., hidden:2 * hidden], torch.full((), IDLE_GATE, device=gi.device))
            gi = torch.cat([gi[..., :hidden], z, gi[..., 2 * hidden:]], dim=2)
            states, _ = gru_scan(gi, gi.new_zeros(gi.shape[1], hidden), w_hh, b_hh, matmul_dtype)
            return states
        h, out = gi.new_zeros(gi.shape[1], hidden), []
        for n in range(gi.shape[0]):
            gh = torch.addmm(b_hh, h, w_hh.t())
            r = torch.sigmoid(gi[n, :, :hidden] + gh[:, :hidden])
            u = torch.sigmoid(gi[n, :, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
            e = torch.tanh(gi[n, :, 2 * hidden:] + r * gh[:, 2 * hidden:])
            h = torch.where(units[n], u * h + (1 - u) * e, h)
            out.append(h)
        return torch.stack(out)

    def head_logits(self, y: torch.Tensor, half: int) -> torch.Tensor:
        """The logits (..., 4, 16) of half `half`'s four heads from its four parts' states y (..., 4, P)."""
        k, heads = self.model_config.out_hidden, slice(N_NIBBLES * half, N_NIBBLES * (half + 1))
        o1, b1 = self.O1.view(FUSED_PARTS, k, self.part)[heads], self.b1.view(FUSED_PARTS, k)[heads]
        o2, b2 = self.O2.view(FUSED_PARTS, NIBBLE_CLASSES, k)[heads], self.b2.view(FUSED_PARTS, NIBBLE_CLASSES)[heads]
        hid = torch.relu(torch.einsum("...jp,jkp->...jk", y, o1) + b1)
        return torch.einsum("...jk,jck->...jc", hid, o2) + b2

    def part_logits(self, y: torch.Tensor, heads: list[int]) -> torch.Tensor:
        """The logits (A, 16) of heads `heads` (A,) from their parts' states y (A, P) (generation)."""
        k = self.model_config.out_hidden
        o1, b1 = self.O1.view(FUSED_PARTS, k, self.part)[heads], self.b1.view(FUSED_PARTS, k)[heads]
        o2, b2 = self.O2.view(FUSED_PARTS, NIBBLE_CLASSES, k)[heads], self.b2.view(FUSED_PARTS, NIBBLE_CLASSES)[heads]
        hid = torch.relu(torch.einsum("ap,akp->ak", y, o1) + b1)
        return torch.einsum("ak,ack->ac", hid, o2) + b2

    def folded_logits(self, feats: torch.Tensor, unsigned: torch.Tensor, history: torch.Tensor,
                      matmul_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher-forced body: (logits of the even samples (N, M, 4, 16), of the odd ones (N, T // 2, 4,
        16)), from the conditioning features feats (N, T, C), the samples unsigned (N, T) int64 and the HISTORY
        samples before them (N, 7) int64."""
        hidden, half = self.model_config.hidden_size, self.model_config.half
        x, active = self.step_inputs(unsigned, history)
        w_x = self.gru.weight_ih_l0[:, :self.n_inputs] * self.input_mask[:, :self.n_inputs]  # structural mask
        gi = torch.addmm(self.step_conditioning(feats).view(-1, 3 * hidden), x.reshape(-1, self.n_inputs),
                         w_x.t()).view(x.shape[0], x.shape[1], 3 * hidden)
        states = self.recurrence(gi, active, matmul_dtype)  # (S, N, H)
        n_pos, n_odd, batch = n_positions(unsigned.shape[1], 2), unsigned.shape[1] // 2, unsigned.shape[0]
        y0 = states[:n_pos, :, :half].reshape(n_pos, batch, N_NIBBLES, self.part)
        y1 = states[LAG:LAG + n_odd, :, half:].reshape(n_odd, batch, N_NIBBLES, self.part)
        return self.head_logits(y0, 0).transpose(0, 1), self.head_logits(y1, 1).transpose(0, 1)

    def window_nll_bits(self, feats: torch.Tensor, unsigned: torch.Tensor, history: torch.Tensor,
                        matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Teacher-forced NLL in bits per 16-bit sample of windows (folded_logits' arguments); differentiable."""
        even, odd = self.folded_logits(feats, unsigned, history, matmul_dtype)
        nib = nibbles_of(unsigned)
        count = even.shape[1] + odd.shape[1]
        return (nibble_bits(even, nib[:, 0::2]) * even.shape[1] + nibble_bits(odd, nib[:, 1::2]) * odd.shape[1]) / count

    def _check_inputs(self, mel: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[2] != self.model_config.n_mels:
            raise ValueError(f"mel: expected shape (N, F, {self.model_config.n_mels}), found {tuple(mel.shape)}")
        if audio.dtype != torch.int16:
            raise TypeError(f"audio: expected an int16 tensor, found {audio.dtype}")
        expected = (mel.shape[0], mel.shape[1] * self.hop)
        if tuple(audio.shape) != expected:
            raise ValueError(f"audio: expected shape (N, F * hop) = {expected} for a mel of {mel.shape[1]} frames, "
                             f"found {tuple(audio.shape)}")
        check_length(audio.shape[1], 2)
        return audio.long() + fused.SILENCE

    def forward(self, mel: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of whole utterances: mel (N, F, n_mels), audio int16 (N, F * hop) -> (N, T, 4, 16)
        by true time and nibble (pywavernn.reference.fused.teacher_forced_logits_fused_ref's layout)."""
        unsigned = self._check_inputs(mel, audio)
        batch, n_samples = unsigned.shape
        feats = self.upsample(self.conditioning_features(mel), n_samples)
        even, odd = self.folded_logits(feats, unsigned, unsigned.new_full((batch, HISTORY), fused.SILENCE))
        odd = nnf.pad(odd, (0, 0, 0, 0, 0, even.shape[1] - odd.shape[1]))
        return torch.stack([even, odd], dim=2).reshape(batch, -1, N_NIBBLES, NIBBLE_CLASSES)[:, :n_samples]

    def nll_bits(self, mel: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Teacher-forced NLL in bits per 16-bit sample of whole utterances (§12), mean over batch and time."""
        unsigned = self._check_inputs(mel, audio)
        return nibble_bits(self(mel, audio), nibbles_of(unsigned))

    # --- free-running generation (§12's order) ------------------------------------------------------------------

    def _file_order(self) -> dict[str, torch.Tensor]:
        hidden = self.model_config.hidden_size
        ih = swap_gates_ur(self.gru.weight_ih_l0 * self.input_mask, hidden)
        return {"gru.W_in": ih[:, :self.n_inputs], "cond.proj.weight": ih[:, self.n_inputs:],
                "cond.proj.bias": swap_gates_ur(self.gru.bias_ih_l0, hidden),
                "gru.R": swap_gates_ur(self.gru.weight_hh_l0, hidden),
                "gru.b_R": swap_gates_ur(self.gru.bias_hh_l0, hidden)}

    @torch.no_grad()
    def generate(self, mel, uniforms: np.ndarray, trace: bool = False):
        """Free-running float32 generation: mel (F, n_mels), uniforms (F * hop, 4) float32 in [0, 1) (row t for
        sample t, column j for its nibble j) -> int16 (F * hop,); with trace=True also {"h" (T, H), "logits"
        (T, 4, 16), "step" (T,)} as pywavernn.reference.fused.generate_fused_ref's. One Python step per fused
        step; in each of its four stages the active halves' parts run as one batch of at most two."""
        self.apply_input_mask()
        device = self.gru.weight_ih_l0.device
        mel = torch.as_tensor(np.asarray(mel, dtype=np.float32), device=device)
        n_frames, hop, hidden, p = mel.shape[0], self.hop, self.model_config.hidden_size, self.part
        n_samples = check_length(n_frames * hop, 2)
        uniforms = np.asarray(uniforms)
        if uniforms.dtype != np.float32 or uniforms.shape != (n_samples, N_NIBBLES):
            raise ValueError(f"uniforms: expected float32 of shape ({n_samples}, {N_NIBBLES}), found "
                             f"{uniforms.dtype} {uniforms.shape}")
        w = self._file_order()
        g = (w["cond.proj.weight"] @ self.conditioning_features(mel[None])[0] + w["cond.proj.bias"][:, None]).T
        w_in = w["gru.W_in"].view(3, 2, N_NIBBLES, p, self.n_inputs)  # [gate, half, nibble, unit, column]
        unsigned = np.full((n_positions(n_samples, 2), 2), fused.SILENCE, np.int64)
        h = torch.zeros(hidden, device=device)
        out = {"h": torch.zeros(n_samples, hidden), "logits": torch.zeros(n_samples, N_NIBBLES, NIBBLE_CLASSES),
               "step": np.zeros(n_samples, np.int64)}
        for step in range(fused.n_steps(n_samples)):
            positions = fused.step_positions(step, n_samples)
            halves = [s for s in range(2) if positions[s] >= 0]
            if not halves:  # odd T: the last step generates nothing
                continue
            times = [2 * positions[s] + s for s in halves]
            previous = [unsigned[k, s] if k >= 0 else fused.SILENCE
                        for s, k in enumerate(fused.previous_positions(step, n_samples))]
            x = torch.zeros(self.n_inputs, device=device)
            x[:fused.PREVIOUS_COLUMNS] = self.nibble_input[nibbles_of(torch.tensor(previous)).reshape(-1)]
            j0 = torch.tensor([t // hop for t in times], device=device)
            a = torch.tensor([np.float32(t % hop) / np.float32(hop) for t in times], device=device)[:, None]
            g0, g1 = g[j0], g[(j0 + 1).clamp(max=n_frames - 1)]
            q = (g0 + a * (g1 - g0)).view(-1, 3, 2, N_NIBBLES, p)  # [active half, gate, half, nibble, unit]
            rh = (w["gru.R"] @ h + w["gru.b_R"]).view(3, 2, N_NIBBLES, p)
            h_new = h.clone().view(2, N_NIBBLES, p)
            nibbles = np.zeros((2, N_NIBBLES), np.int64)
            for j in range(N_NIBBLES):
                gi = torch.stack([w_in[:, s, j] @ x + q[i, :, s, j] for i, s in enumerate(halves)], dim=1)
                y = self._gru_update(h.view(2, N_NIBBLES, p)[halves, j], gi, rh[:, halves, j])  # (A, P)
                logits = self.part_logits(y, [fused.head_index(s, j) for s in halves])
                for i, s in enumerate(halves):
                    h_new[s, j] = y[i]
                    nibbles[s, j] = sample_nibble(logits[i].cpu().numpy(), uniforms[times[i], j])
                    out["logits"][times[i], j] = logits[i].cpu()
                    if j < N_NIBBLES - 1:  # an input of the later stages once both halves drew it
                        x[fused.PREVIOUS_COLUMNS + s * (N_NIBBLES - 1) + j] = self.nibble_input[nibbles[s, j]]
            h = h_new.reshape(hidden)
            for i, s in enumerate(halves):
                unsigned[positions[s], s] = int(fused.join_nibbles(nibbles[s]))
                out["h"][times[i]], out["step"][times[i]] = h.cpu(), step
        samples = (unsigned.reshape(-1)[:n_samples] - fused.SILENCE).astype(np.int16)
        if not trace:
            return samples
        return samples, {"h": out["h"].numpy(), "logits": out["logits"].numpy(), "step": out["step"]}

    # --- pruning ------------------------------------------------------------------------------------------------

    def prune_targets(self, sparsities: Mapping[str, float], block: tuple[int, int]) -> list[PruneTarget]:
        """training.pruning.PruneTargets of the matrices with a nonzero target: the gates of gru.R (gru.R_u,
        gru.R_r, gru.R_e, each ranked on its own) and each of the eight heads' rows of fused.O1 and fused.O2
        (ranked per head, so a head cannot take another's share and no block straddles two heads).
        sparsities: training.pruning.resolve_targets(..., kind="fused")."""
        params = dict(self.named_parameters())
        gates = {n: z for n, z in sparsities.items() if n in RECURRENT_NAMES}
        targets = wavernn_targets(params, self.model_config.hidden_size, gates, RECURRENT_PARAMETER, {})
        return targets + fused_head_targets(self.model_config.out_hidden, sparsities, block, HEAD_PARAMETERS)

    # --- conversions to and from the model file's layout (§6, §12) ----------------------------------------------

    def to_model(self, feature_config: FeatureConfig | None = None, provenance: dict | None = None) -> Model:
        """The weights as a dense pywavernn Model (the names and gate order of §12), validated."""
        self.apply_input_mask()

        def a(tensor):
            return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)

        weights = {}
        for i, conv in enumerate(self.cond_convs):
            weights[f"cond.conv{i}.weight"], weights[f"cond.conv{i}.bias"] = a(conv.weight), a(conv.bias)
        weights.update({name: a(t) for name, t in self._file_order().items()})
        weights.update({"fused.O1": a(self.O1), "fused.b1": a(self.b1), "fused.O2": a(self.O2),
                        "fused.b2": a(self.b2)})
        model = Model(self.model_config, feature_config or self.feature_config, weights, dict(provenance or {}))
        model.validate()
        return model

    @classmethod
    def from_model(cls, model: Model) -> "FusedWaveRNN":
        """A FusedWaveRNN holding a fused Model's weights (block-sparse matrices are unpacked)."""
        model.validate()
        net = cls(model.model_config, model.feature_config)
        hidden = model.model_config.hidden_size
        t = lambda name: model_tensor(model, name)  # noqa: E731
        with torch.no_grad():
            for i, conv in enumerate(net.cond_convs):
                conv.weight.copy_(t(f"cond.conv{i}.weight"))
                conv.bias.copy_(t(f"cond.conv{i}.bias"))
            net.gru.weight_ih_l0.copy_(swap_gates_ur(torch.cat([t("gru.W_in"), t("cond.proj.weight")], 1), hidden))
            net.gru.bias_ih_l0.copy_(swap_gates_ur(t("cond.proj.bias"), hidden))
            net.gru.weight_hh_l0.copy_(swap_gates_ur(t("gru.R"), hidden))
            net.gru.bias_hh_l0.copy_(swap_gates_ur(t("gru.b_R"), hidden))
            for name in ("O1", "b1", "O2", "b2"):
                getattr(net, name).copy_(t(f"fused.{name}"))
        return net
