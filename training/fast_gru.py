"""A GRU recurrence with a hand-written backward, for training on CPU.

What it is: `gru_scan(gi, h0, w_hh, b_hh)`, the recurrence of torch.nn.GRU (gate order r, z, n) as one
torch.autograd.Function whose input projections `gi` are computed outside (so the caller can form them cheaply,
e.g. at frame rate), time-major. Forward runs one (N, H) x (H, 3H) product and a few elementwise ops per step
and keeps only what the backward needs (r, z, n, the n-gate's recurrent term and the states). Backward keeps
only dh in its time loop (one (N, 3H) x (3H, H) product per step) and forms the weight gradients after it as
single large products over all steps: dW_hh = dgh^T h_prev, db_hh = sum dgh. Autograd through torch.nn.GRU on
CPU instead records a graph of small ops per step and forms the weight gradients step by step.
What it is not: a model (training/model.py owns the parameters; this takes them as tensors) or an inference
path (pywavernn's engines are).

Equations, per step t, with gi_t = W_ih x_t + b_ih split as (gi_r, gi_z, gi_n) and gh = W_hh h + b_hh:

    r = sigmoid(gi_r + gh_r)   z = sigmoid(gi_z + gh_z)   n = tanh(gi_n + r * gh_n)   h' = n + z * (h - n)

which is torch.nn.GRU's h' = (1 - z) * n + z * h. Backward of one step, given dh' (from the output and from
step t + 1):

    dn~ = dh' (1 - z)(1 - n^2)            (the n-gate pre-activation)
    dz~ = dh' (h - n) z (1 - z)           dr~ = dn~ gh_n r (1 - r)
    dgi = [dr~, dz~, dn~]                 dgh = [dr~, dz~, dn~ r]
    dh  = dh' z + dgh W_hh

Precision: float32 throughout; `matmul_dtype=torch.bfloat16` runs every product of the recurrence (forward
h W_hh^T, backward dgh W_hh, and the weight gradient after the loop) with bf16 operands and results, on the
CPU's bf16 units where it has them (AVX512-BF16, AMX: 3-4x the fp32 rate on this project's machines; without
them it is slower than fp32), with float32 accumulation inside each product, float32 state, elementwise work
and master weights.

Two implementations of the time loops, same equations: csrc/gru_scan.cpp (each step's elementwise work fused
into one pass, built on first use for this CPU) and the Python loops below (readable; the fallback where no
compiler is found).

Tests: tests/test_fast_gru.py (outputs and every gradient against torch.nn.GRU).

Letters: T steps, N batch, H hidden units.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).resolve().parent / "csrc" / "gru_scan.cpp"
_ext_state: dict = {}


def _cpu_tag() -> str:
    """A short hash of this CPU's model and flags: the extension is built with -march=native, so a build cache
    shared between machines must never hand one CPU's binary to another."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        key = "\n".join(sorted(set(lines)))
    except OSError:
        import platform
        key = platform.processor() + platform.machine()
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 natively (x86: AVX512-BF16 or AMX-BF16; Arm: the BF16 extension), so
    that bf16 products beat float32 ones (3-4x on this project's AVX512-BF16 machines); without them torch
    emulates bf16 and it is slower than float32."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def _has_libmvec() -> bool:
    """glibc's vector maths library (what -ffast-math vectorises expf into on x86-64 Linux)."""
    import ctypes.util
    return os.uname().machine == "x86_64" and ctypes.util.find_library("mvec") is not None


def extension():
    """The compiled loops of csrc/gru_scan.cpp, built on first use (about a minute), or None when they cannot be
    built here (no compiler, PYWAVERNN_NO_EXTENSION=1): then the Python loops run, with one warning."""
    if "module" in _ext_state:
        return _ext_state["module"]
    module = None
    if os.environ.get("PYWAVERNN_NO_EXTENSION") != "1":
        try:
            from torch.utils import cpp_extension

            flags = ["-O3", "-ffast-math"] + (["-march=native"] if os.uname().machine in ("x86_64", "AMD64")
                                              else ["-mcpu=native"])
            module = cpp_extension.load(name=f"pywavernn_gru_scan_{_cpu_tag()}", sources=[str(_SOURCE)],
                                        extra_cflags=flags, extra_ldflags=["-lmvec"] if _has_libmvec() else [],
                                        verbose=False)
        except Exception as exc:  # no compiler, no headers, a build error: the Python loops still train
            warnings.warn(f"training.fast_gru: the C++ loops could not be built ({type(exc).__name__}: "
                          f"{str(exc)[:300]}); using the Python loops (slower, same results)", stacklevel=2)
    _ext_state["module"] = module
    return module


def _py_forward(gi, h0, w_t, b_hh):
    """forward loop in torch ops; returns (states, states in the product dtype, rz, n, ghn) as the C++ one."""
    n_steps, batch, three_h = gi.shape
    hidden = three_h // 3
    two_h = 2 * hidden
    mm_dtype = w_t.dtype
    states = gi.new_empty(n_steps + 1, batch, hidden)  # states[0] = h0, states[t + 1] = h after step t
    hmm = states if mm_dtype == torch.float32 else gi.new_empty(n_steps + 1, batch, hidden, dtype=mm_dtype)
    rz = gi.new_empty(n_steps, batch, two_h)
    n = gi.new_empty(n_steps, batch, hidden)
    ghn = gi.new_empty(n_steps, batch, hidden)
    states[0] = h0
    hmm[0] = h0
    for t in range(n_steps):
        gh = torch.mm(hmm[t], w_t).float() + b_hh
        torch.add(gi[t, :, :two_h], gh[:, :two_h], out=rz[t])
        rz[t].sigmoid_()
        ghn[t].copy_(gh[:, two_h:])
        torch.addcmul(gi[t, :, two_h:], rz[t, :, :hidden], ghn[t], out=n[t])
        n[t].tanh_()
        torch.sub(states[t], n[t], out=states[t + 1])  # h' = n + z * (h - n)
        states[t + 1].mul_(rz[t, :, hidden:]).add_(n[t])
        if hmm is not states:
            hmm[t + 1] = states[t + 1]
    return states, hmm, rz, n, ghn


def _py_backward(d_out, d_last, w, states, rz, n, ghn):
    """backward loop in torch ops; returns (dgi, dgh, dgh in the product dtype, dh0) as the C++ one."""
    n_steps, batch, hidden = n.shape
    two_h = 2 * hidden
    dgi_all = n.new_empty(n_steps, batch, 3 * hidden)
    dgh_all = n.new_empty(n_steps, batch, 3 * hidden)
    dgh_mm = dgh_all if w.dtype == torch.float32 else n.new_empty(n_steps, batch, 3 * hidden, dtype=w.dtype)
    dh = d_last.clone()
    for t in range(n_steps - 1, -1, -1):
        dh.add_(d_out[t])
        r, z = rz[t, :, :hidden], rz[t, :, hidden:]
        nt, h = n[t], states[t]
        dgi = dgi_all[t]
        dn_pre, dz_pre, dr_pre = dgi[:, two_h:], dgi[:, hidden:two_h], dgi[:, :hidden]
        torch.mul(dh, 1.0 - z, out=dn_pre)  # dn~ = dh (1 - z)(1 - n^2)
        dn_pre.mul_(1.0 - nt * nt)
        torch.sub(h, nt, out=dz_pre)  # dz~ = dh (h - n) z (1 - z)
        dz_pre.mul_(dh).mul_(z).mul_(1.0 - z)
        torch.mul(dn_pre, ghn[t], out=dr_pre)  # dr~ = dn~ gh_n r (1 - r)
        dr_pre.mul_(r).mul_(1.0 - r)
        dgh_all[t, :, :two_h] = dgi[:, :two_h]
        torch.mul(dn_pre, r, out=dgh_all[t, :, two_h:])
        if dgh_mm is not dgh_all:
            dgh_mm[t] = dgh_all[t]
        dh.mul_(z).add_(torch.mm(dgh_mm[t], w).float())  # dh_prev = dh z + dgh W_hh
    return dgi_all, dgh_all, dgh_mm, dh


class _GRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gi, h0, w_hh, b_hh, matmul_dtype, use_extension):
        ext = extension() if use_extension else None
        w_t = w_hh.detach().t().contiguous().to(matmul_dtype)
        states, hmm, rz, n, ghn = (ext.forward if ext is not None else _py_forward)(gi, h0, w_t, b_hh.detach())
        ctx.save_for_backward(w_hh, states, hmm, rz, n, ghn)
        ctx.matmul_dtype, ctx.ext = matmul_dtype, ext
        return states[1:], states[-1].clone()

    @staticmethod
    def backward(ctx, d_out, d_last):
        w_hh, states, hmm, rz, n, ghn = ctx.saved_tensors
        n_steps, batch, hidden = n.shape
        w = w_hh.detach().to(ctx.matmul_dtype).contiguous()
        d_out = torch.zeros_like(n) if d_out is None else d_out.contiguous()
        d_last = n.new_zeros(batch, hidden) if d_last is None else d_last.contiguous()
        loop = ctx.ext.backward if ctx.ext is not None else _py_backward
        dgi, dgh, dgh_mm, dh0 = loop(d_out, d_last, w, states, rz, n, ghn)
        d_w = d_b = None
        if ctx.needs_input_grad[2]:  # one large product over all steps, in the product dtype
            d_w = torch.mm(dgh_mm.view(-1, 3 * hidden).t(), hmm[:-1].reshape(-1, hidden)).float()
        if ctx.needs_input_grad[3]:
            d_b = dgh.view(-1, 3 * hidden).sum(0)
        return dgi, dh0, d_w, d_b, None, None


def gru_scan(gi: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor,
             matmul_dtype: torch.dtype = torch.float32, use_extension: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The GRU recurrence over precomputed input projections.

    gi (T, N, 3H) float32 = W_ih x_t + b_ih in gate order (r, z, n), time-major; h0 (N, H); w_hh (3H, H);
    b_hh (3H,). Returns (states (T, N, H), the last state (N, H)); differentiable in gi, h0, w_hh and b_hh.
    matmul_dtype float32 (torch.nn.GRU's arithmetic up to summation order) or bfloat16 (see the module
    docstring). use_extension=False runs the Python loops even where the C++ ones are built.
    """
    if gi.dim() != 3 or gi.shape[2] % 3 or gi.shape[0] < 1 or gi.shape[1] < 1:
        raise ValueError(f"gi: expected shape (T, N, 3H) with T, N >= 1, found {tuple(gi.shape)}")
    n_steps, batch, three_h = gi.shape
    hidden = three_h // 3
    for name, v, shape in (("h0", h0, (batch, hidden)), ("w_hh", w_hh, (three_h, hidden)),
                           ("b_hh", b_hh, (three_h,))):
        if tuple(v.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape} for gi of shape {tuple(gi.shape)}, "
                             f"found {tuple(v.shape)}")
    for name, v in (("gi", gi), ("h0", h0), ("w_hh", w_hh), ("b_hh", b_hh)):
        if v.dtype != torch.float32 or v.device.type != "cpu":
            raise ValueError(f"{name}: expected a float32 CPU tensor, found {v.dtype} on {v.device}")
    if matmul_dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"matmul_dtype: expected torch.float32 or torch.bfloat16, found {matmul_dtype}")
    return _GRUScan.apply(gi.contiguous(), h0.contiguous(), w_hh, b_hh, matmul_dtype, use_extension)
