"""The plain PyTorch per-sample WaveRNN loop on a device: the baseline benchmarks/bench_cuda.py times pywavernn's
CUDA sampler against, written the way popular PyTorch WaveRNN code generates.

What it is: TorchLoop(model, device) runs a dense model sample by sample with the batch dimension first, under
torch.no_grad: one nn.Linear R h a sample, the gate equations of docs/format.md §3 on slices (the split GRU of
the original WaveRNN code), nn.Linear + ReLU + nn.Linear heads, softmax and inverse-CDF sampling with the caller's
uniforms (cumsum + searchsorted, no host sync per sample), the conditioning upsampled on the device up front.
run() is that loop; run_graph() replays the same step captured in one CUDA graph per frame (on the CPU, for
bench_cuda's dry run, the same static-buffer frame is called instead of replayed). float32 throughout (TF32 off).
What it is not: a benchmark or a test by itself (bench_cuda validates it against pywavernn.reference.plain and
times it), nor a training model (training/model.py is the twin).

    from benchmarks.torch_gpu_loop import TorchLoop
    loop = TorchLoop(dense_model, "cuda"); samples = loop.run(g, uniforms)   # g (B, F, 3H), uniforms (B, T, 2)

Letters: H hidden units, B batch, F frames, hop samples per frame, T samples.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # importing pywavernn here would need soundfile, which bench_cuda stubs on images without it
    from pywavernn.modelfile import Model


class TorchLoop:
    """Per-sample PyTorch generation of the (dense) model on `device`, batch dimension first."""

    def __init__(self, model: Model, device: str):
        import torch

        self.torch, self.device = torch, torch.device(device)
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 products, like every other backend
        torch.backends.cudnn.allow_tf32 = False
        cfg = model.model_config
        self.H, self.half, self.hop = cfg.hidden_size, cfg.hidden_size // 2, model.feature_config.hop_length

        def linear(w, b):
            w = np.asarray(model.dense(w), np.float32)
            layer = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(np.asarray(model.dense(b), np.float32)))
            return layer.to(self.device).eval()

        self.R = linear("gru.R", "gru.b_R")
        self.O1, self.O2 = linear("out.O1", "out.b1"), linear("out.O2", "out.b2")
        self.O3, self.O4 = linear("out.O3", "out.b3"), linear("out.O4", "out.b4")
        w_in = torch.from_numpy(np.asarray(model.dense("gru.W_in"), np.float32)).to(self.device)
        self.w0, self.w1 = w_in[:, 0].contiguous(), w_in[:, 1].contiguous()
        self.w2_fine = w_in[:, 2].view(3, 2, self.half)[:, 1].contiguous()  # (3, half); coarse rows are zero
        byte = np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1)
        self.byte = torch.from_numpy(byte).to(self.device)
        self.graphs: dict[int, tuple] = {}

    # one sample for the whole batch: all on the device, no host sync
    def _gates(self, h, gi, rh):  # §3 on (B, 3, n) slices, rows [u, r, e]
        torch = self.torch
        u = torch.sigmoid(gi[:, 0] + rh[:, 0])
        r = torch.sigmoid(gi[:, 1] + rh[:, 1])
        e = torch.tanh(gi[:, 2] + r * rh[:, 2])
        return u * h + (1 - u) * e

    def _sample(self, logits, u):  # §4 by inverse CDF: first k with cdf[k] > u * cdf[255]
        torch = self.torch
        cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)
        k = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
        return k.clamp_(max=255)

    def step(self, h, c_prev, f_prev, cond_t, u_t):
        torch, B, half = self.torch, h.shape[0], self.half
        rh = self.R(h).view(B, 3, 2, half)
        gi01 = (self.byte[c_prev].unsqueeze(1) * self.w0 + self.byte[f_prev].unsqueeze(1) * self.w1).view(B, 3, 2, half)
        cond = cond_t.view(B, 3, 2, half)
        h_c = self._gates(h[:, :half], gi01[:, :, 0] + cond[:, :, 0], rh[:, :, 0])
        logits_c = self.O2(torch.relu(self.O1(h_c)))
        c_t = self._sample(logits_c, u_t[:, 0])
        gi_f = (gi01[:, :, 1] + self.byte[c_t].view(B, 1, 1) * self.w2_fine) + cond[:, :, 1]
        h_f = self._gates(h[:, half:], gi_f, rh[:, :, 1])
        logits_f = self.O4(torch.relu(self.O3(h_f)))
        f_t = self._sample(logits_f, u_t[:, 1])
        return torch.cat([h_c, h_f], dim=1), c_t, f_t, logits_c, logits_f

    def _upload(self, g: np.ndarray, uniforms: np.ndarray, n: int):
        """cond (n, B, 3H) at sample rate (§2, computed on the device up front) and uniforms (n, B, 2)."""
        torch, hop = self.torch, self.hop
        g = torch.from_numpy(g).to(self.device)  # (B, F, 3H)
        u = torch.from_numpy(np.ascontiguousarray(uniforms[:, :n].transpose(1, 0, 2))).to(self.device)
        t = torch.arange(n, device=self.device)
        j = t // hop
        a = ((t % hop).to(torch.float32) / np.float32(hop)).view(n, 1, 1)
        padded = torch.cat([g, g[:, -1:]], dim=1).transpose(0, 1)  # (F + 1, B, 3H), g[F] := g[F - 1]
        g0, g1 = padded[j], padded[j + 1]
        return g0 + a * (g1 - g0), u

    def _join(self, coarse, fine) -> np.ndarray:
        s = (coarse * 256 + fine - 32768).to(self.torch.int16)  # (n, B)
        return s.t().contiguous().cpu().numpy()

    def run(self, g: np.ndarray, uniforms: np.ndarray, n: int | None = None, record: list | None = None):
        """int16 (B, n) from g (B, F, 3H) and uniforms (B, T, 2); record: append (logits_c, logits_f) per step."""
        torch = self.torch
        n = uniforms.shape[1] if n is None else n
        B = g.shape[0]
        with torch.no_grad():
            cond, u = self._upload(g, uniforms, n)
            h = torch.zeros(B, self.H, device=self.device)
            c = torch.full((B,), 128, dtype=torch.long, device=self.device)
            f = torch.zeros(B, dtype=torch.long, device=self.device)
            out_c = torch.empty(n, B, dtype=torch.long, device=self.device)
            out_f = torch.empty(n, B, dtype=torch.long, device=self.device)
            for t in range(n):
                h, c, f, lc, lf = self.step(h, c, f, cond[t], u[t])
                out_c[t], out_f[t] = c, f
                if record is not None:
                    record.append((lc.cpu().numpy(), lf.cpu().numpy()))
            samples = self._join(out_c, out_f)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return samples

    # --- the same step captured in CUDA graphs, one graph of `hop` steps replayed per frame ---------------------
    def _graph(self, B: int):
        if B in self.graphs:
            return self.graphs[B]
        torch, hop, dev = self.torch, self.hop, self.device
        st = {"cond": torch.zeros(hop, B, 3 * self.H, device=dev), "u": torch.zeros(hop, B, 2, device=dev),
              "h": torch.zeros(B, self.H, device=dev), "c": torch.full((B,), 128, dtype=torch.long, device=dev),
              "f": torch.zeros(B, dtype=torch.long, device=dev),
              "out_c": torch.zeros(hop, B, dtype=torch.long, device=dev),
              "out_f": torch.zeros(hop, B, dtype=torch.long, device=dev)}

        def frame():
            h, c, f = st["h"], st["c"], st["f"]
            for i in range(hop):
                h, c, f, _, _ = self.step(h, c, f, st["cond"][i], st["u"][i])
                st["out_c"][i].copy_(c)
                st["out_f"][i].copy_(f)
            st["h"].copy_(h)
            st["c"].copy_(c)
            st["f"].copy_(f)

        if dev.type != "cuda":  # the dry run: the same static-buffer frame, called instead of replayed
            self.graphs[B] = (types.SimpleNamespace(replay=frame), st)
            return self.graphs[B]
        with torch.no_grad():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside the capture (allocator, cuBLAS handles)
                frame()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                frame()
        torch.cuda.synchronize()
        self.graphs[B] = (graph, st)
        return self.graphs[B]

    def run_graph(self, g: np.ndarray, uniforms: np.ndarray, n: int | None = None) -> np.ndarray:
        torch, hop = self.torch, self.hop
        n = uniforms.shape[1] if n is None else n
        if n % hop:
            raise ValueError(f"run_graph: n = {n} must be a multiple of hop = {hop}")
        B = g.shape[0]
        graph, st = self._graph(B)
        with torch.no_grad():
            cond, u = self._upload(g, uniforms, n)
            out_c = torch.empty(n, B, dtype=torch.long, device=self.device)
            out_f = torch.empty(n, B, dtype=torch.long, device=self.device)
            st["h"].zero_()
            st["c"].fill_(128)
            st["f"].zero_()
            for k in range(0, n, hop):
                st["cond"].copy_(cond[k:k + hop])
                st["u"].copy_(u[k:k + hop])
                graph.replay()
                out_c[k:k + hop].copy_(st["out_c"])
                out_f[k:k + hop].copy_(st["out_f"])
            samples = self._join(out_c, out_f)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return samples
