"""pywavernn.engines.cuda: the optional CUDA backend, a ctypes loader of the nvcc-built persistent-kernel sampler.

What it is: input validation (ValueError naming the array, expected vs found, before any call into C), the
conversion of a `pywavernn.modelfile.Model` into the library's descriptor, and `CudaEngine.generate(g, uniforms)`,
which returns exactly the samples of docs/format.md §1-4 (same upsampling, same sampling rule) computed on a GPU,
for the plain WaveRNN and for the Fused Subscale WaveRNN 2x (§12: ModelConfig.kind "fused", uniforms (T, 4), one
per nibble of each sample by true time; `uniform_columns` says which). The subscale model of §9 and linear
prediction (§11) are refused with a ValueError that says so.
`CudaEngine` meets the engine interface of pywavernn/engines/base.py for whole utterances (no streaming: the kernel
carries no state between calls; `nll` runs the NumPy reference on the host: the sampler has no teacher forcing).
What it is not: the conditioning network (run `pywavernn.conditioning.conditioning` on the host to get g), or a
requirement: only `Vocoder(backend="cuda")` imports it, and `available()` says why it cannot run without raising.

The library is `cuda/build/libpywavernn_cuda.so` (build: `make -C cuda lib`), or the path in PYWAVERNN_CUDA_LIB.

    from pywavernn.conditioning import conditioning
    from pywavernn.engines import cuda
    ok, why = cuda.available(model)
    if ok:
        engine = cuda.CudaEngine(model)
        g = conditioning(model, mel)                                   # (F, 3H) float32
        samples = engine.generate(g, uniforms)                         # int16 (F * hop,); uniforms (T, 2) or,
                                                                       # fused, (T, 4): engine.uniform_columns

Tests: `python -m pytest tests/test_cuda.py -q` (skipped without a GPU and the built library).

Letters: H hidden units, K output-head hidden units, F frames, hop samples per frame, T = F * hop, B batch,
P = H / 8 units per part of a fused model.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import numpy as np

from pywavernn import fused
from pywavernn.common import N_CLASSES
from pywavernn.config import FUSED_FACTOR, FUSED_PARTS
from pywavernn.engines.base import Engine, Progress, WholeUtterance, check_whole_utterance, report

ENV_LIB = "PYWAVERNN_CUDA_LIB"
DEFAULT_LIB = Path(__file__).resolve().parents[2] / "cuda" / "build" / "libpywavernn_cuda.so"  # the checkout's cuda/
ABI_VERSION = 2
MAX_HIDDEN = 1024  # the build's limit (pwr_cuda_limits); checked again against the loaded library
MODEL_PLAIN, MODEL_FUSED = 0, 1  # pwr_cuda_model_desc.model_kind
KINDS = {"plain": MODEL_PLAIN, "fused": MODEL_FUSED}  # ModelConfig.kind -> model_kind; "subscale" (§9) has none

OK, ERR_INVALID_ARGUMENT, ERR_UNSUPPORTED, ERR_NO_DEVICE, ERR_OUT_OF_MEMORY, ERR_CUDA, ERR_TIMEOUT = range(7)

_F32P = ctypes.POINTER(ctypes.c_float)

# The weights the sampler takes, in descriptor order (docs/format.md §6 and §12 names); a model kind fills its own
# and leaves the other kind's fields NULL.
_WEIGHT_FIELDS = (
    ("gru_R", "gru.R"), ("gru_b_R", "gru.b_R"), ("gru_W_in", "gru.W_in"),
    ("out_O1", "out.O1"), ("out_b1", "out.b1"), ("out_O2", "out.O2"), ("out_b2", "out.b2"),
    ("out_O3", "out.O3"), ("out_b3", "out.b3"), ("out_O4", "out.O4"), ("out_b4", "out.b4"),
    ("fused_O1", "fused.O1"), ("fused_b1", "fused.b1"), ("fused_O2", "fused.O2"), ("fused_b2", "fused.b2"),
)


class _ModelDesc(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_int), ("hidden_size", ctypes.c_int), ("out_hidden", ctypes.c_int),
                ("device", ctypes.c_int), ("cluster_size", ctypes.c_int), ("timeout_ms", ctypes.c_int),
                ("model_kind", ctypes.c_int)] + \
               [(field, _F32P) for field, _ in _WEIGHT_FIELDS]


class _Limits(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_int), ("max_hidden", ctypes.c_int), ("hidden_multiple", ctypes.c_int),
                ("n_classes", ctypes.c_int), ("max_batch_per_launch", ctypes.c_int),
                ("threads_per_block", ctypes.c_int), ("max_cluster_size", ctypes.c_int),
                ("weight_bytes", ctypes.c_int), ("n_block_shapes", ctypes.c_int),
                ("block_shapes", (ctypes.c_int * 2) * 4), ("min_compute_capability", ctypes.c_int),
                ("compiled_arch", ctypes.c_char * 16), ("model_kinds", ctypes.c_int),
                ("fused_hidden_multiple", ctypes.c_int)]


class _Info(ctypes.Structure):
    _fields_ = [("device_name", ctypes.c_char * 128), ("compute_capability", ctypes.c_int),
                ("multiprocessors", ctypes.c_int), ("cluster_size", ctypes.c_int), ("n_clusters", ctypes.c_int),
                ("n_worker_blocks", ctypes.c_int), ("worker_rows_max", ctypes.c_int),
                ("smem_bytes", ctypes.c_int * 3), ("max_smem_per_block", ctypes.c_int),
                ("max_batch_per_launch", ctypes.c_int), ("registers_per_thread", ctypes.c_int),
                ("local_bytes_per_thread", ctypes.c_int), ("cooperative", ctypes.c_int),
                ("model_kind", ctypes.c_int)]


class CudaError(RuntimeError):
    """A status other than OK from the library; `status` is the code, the message holds the library's detail."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# --- loading -------------------------------------------------------------------------------------------------------

_cache: dict[str, tuple[Any, str]] = {}


def library_path() -> Path:
    """Where the library is looked for: $PYWAVERNN_CUDA_LIB, else cuda/build/ of this checkout."""
    env = os.environ.get(ENV_LIB, "").strip()
    return Path(env) if env else DEFAULT_LIB


def _declare(lib) -> None:
    c_int, vp = ctypes.c_int, ctypes.c_void_p
    lib.pwr_cuda_limits.argtypes, lib.pwr_cuda_limits.restype = [ctypes.POINTER(_Limits)], c_int
    lib.pwr_cuda_device_count.argtypes, lib.pwr_cuda_device_count.restype = [ctypes.POINTER(c_int)], c_int
    lib.pwr_cuda_status_string.argtypes, lib.pwr_cuda_status_string.restype = [c_int], ctypes.c_char_p
    lib.pwr_cuda_last_error.argtypes, lib.pwr_cuda_last_error.restype = [], ctypes.c_char_p
    lib.pwr_cuda_create.argtypes, lib.pwr_cuda_create.restype = [ctypes.POINTER(_ModelDesc), ctypes.POINTER(vp)], c_int
    lib.pwr_cuda_destroy.argtypes, lib.pwr_cuda_destroy.restype = [vp], None
    lib.pwr_cuda_sampler_get_info.argtypes = [vp, ctypes.POINTER(_Info)]
    lib.pwr_cuda_sampler_get_info.restype = c_int
    i16p = ctypes.POINTER(ctypes.c_int16)
    lib.pwr_cuda_generate_trace.argtypes = [vp, _F32P, c_int, c_int, _F32P, i16p, c_int, _F32P, _F32P]
    lib.pwr_cuda_generate_trace.restype = c_int


def _load():
    """(library or None, reason). Cached per path; never raises."""
    path = library_path()
    key = str(path)
    if key in _cache:
        return _cache[key]
    if not path.is_file():
        result = (None, f"CUDA library not built: {path} not found (build it with `make -C cuda lib`, "
                        f"or set {ENV_LIB})")
    else:
        try:
            lib = ctypes.CDLL(str(path))
            _declare(lib)
            limits = _Limits()
            lib.pwr_cuda_limits(ctypes.byref(limits))
            if limits.abi_version != ABI_VERSION:
                result = (None, f"{path} has ABI version {limits.abi_version}, this pywavernn expects "
                                f"{ABI_VERSION}: rebuild it with `make -C cuda lib`")
            else:
                result = (lib, str(path))
        except (OSError, AttributeError) as exc:  # a missing libcudart/libcuda, or not our library
            result = (None, f"cannot load the CUDA library {path}: {exc}")
    _cache[key] = result
    return result


def _detail(lib, status: int) -> str:
    name = lib.pwr_cuda_status_string(status).decode("utf-8", "replace")
    detail = lib.pwr_cuda_last_error().decode("utf-8", "replace")
    return f"{name}: {detail}" if detail else name


def limits() -> dict[str, Any]:
    """The loaded library's compiled limits; RuntimeError if it cannot be loaded."""
    lib, reason = _load()
    if lib is None:
        raise RuntimeError(reason)
    lim = _Limits()
    lib.pwr_cuda_limits(ctypes.byref(lim))
    return {"max_hidden": lim.max_hidden, "hidden_multiple": lim.hidden_multiple,
            "max_batch_per_launch": lim.max_batch_per_launch, "threads_per_block": lim.threads_per_block,
            "max_cluster_size": lim.max_cluster_size, "weight_bytes": lim.weight_bytes,
            "block_shapes": [tuple(lim.block_shapes[i]) for i in range(lim.n_block_shapes)],
            "min_compute_capability": lim.min_compute_capability,
            "compiled_arch": lim.compiled_arch.decode("ascii", "replace"),
            "model_kinds": [kind for kind, bit in KINDS.items() if lim.model_kinds >> bit & 1],
            "fused_hidden_multiple": lim.fused_hidden_multiple}


def available(model=None) -> tuple[bool, str]:
    """(True, description) if the CUDA backend can run (the model too, if given); else (False, why). Never raises."""
    if model is not None:
        try:
            _check_model_config(model)
        except (ValueError, AttributeError) as exc:
            return False, f"unsupported model: {exc}"
    lib, reason = _load()
    if lib is None:
        return False, reason
    count = ctypes.c_int(0)
    status = lib.pwr_cuda_device_count(ctypes.byref(count))
    if status != OK:
        detail = lib.pwr_cuda_last_error().decode("utf-8", "replace")
        return False, detail if "no cuda device" in detail.lower() else f"no CUDA device: {detail}"
    return True, f"{count.value} CUDA device(s); library {reason}"


# --- validation (pure NumPy; runs before any ctypes call) ---------------------------------------------------------

def _check_model_config(model) -> tuple[int, int]:
    cfg = model.model_config
    hidden, out_hidden = int(cfg.hidden_size), int(cfg.out_hidden)
    kind = _kind(cfg)
    if kind == "subscale":
        raise ValueError(f"model: the CUDA sampler implements the plain WaveRNN and the Fused Subscale WaveRNN 2x "
                         f"(docs/format.md §12), not the subscale model of §9 (subscale_factor "
                         f"{cfg.subscale_factor}); use backend 'cpu'")
    if getattr(cfg, "linear_order", 0):
        raise ValueError(f"model: the CUDA sampler does not implement linear prediction (linear_order "
                         f"{cfg.linear_order}, docs/format.md §11); use backend 'cpu'")
    if hidden < 2 or hidden % 2:
        raise ValueError(f"model: hidden_size must be even and >= 2, found {hidden}")
    if kind == "fused" and hidden % FUSED_PARTS:
        raise ValueError(f"model: a fused model's hidden_size must be a multiple of {FUSED_PARTS} (2 halves x "
                         f"4 nibble parts, docs/format.md §12), found {hidden}")
    if hidden > MAX_HIDDEN:
        raise ValueError(f"model: hidden_size {hidden} exceeds the CUDA sampler's limit of {MAX_HIDDEN}")
    if out_hidden < 1:
        raise ValueError(f"model: out_hidden must be >= 1, found {out_hidden}")
    return hidden, out_hidden


def _kind(cfg) -> str:
    """ModelConfig.kind ("plain", "subscale" or "fused"), also for config-like objects without the property."""
    kind = getattr(cfg, "kind", None)
    if isinstance(kind, str):
        return kind
    if getattr(cfg, "subscale_fused", False):
        return "fused"
    return "plain" if getattr(cfg, "subscale_factor", 1) == 1 else "subscale"


def _expected_shapes(hidden: int, out_hidden: int, kind: str = "plain") -> dict[str, tuple[int, ...]]:
    h, k, half = hidden, out_hidden, hidden // 2
    if kind == "fused":
        heads, p, c = FUSED_PARTS, fused.part_size(hidden), fused.NIBBLE_CLASSES
        return {"gru.R": (3 * h, h), "gru.b_R": (3 * h,), "gru.W_in": (3 * h, fused.INPUT_COLUMNS),
                "fused.O1": (heads * k, p), "fused.b1": (heads * k,), "fused.O2": (heads * c, k),
                "fused.b2": (heads * c,)}
    return {"gru.R": (3 * h, h), "gru.b_R": (3 * h,), "gru.W_in": (3 * h, 3),
            "out.O1": (k, half), "out.b1": (k,), "out.O2": (N_CLASSES, k), "out.b2": (N_CLASSES,),
            "out.O3": (k, half), "out.b3": (k,), "out.O4": (N_CLASSES, k), "out.b4": (N_CLASSES,)}


def model_arrays(model) -> dict[str, np.ndarray]:
    """The dense float32 C-contiguous weights the sampler takes, checked: ValueError on any problem."""
    hidden, out_hidden = _check_model_config(model)
    kind = _kind(model.model_config)
    arrays = {}
    for name, shape in _expected_shapes(hidden, out_hidden, kind).items():
        arr = model.dense(name)  # a block-sparse matrix comes back unpacked: the kernel is dense
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"weight {name}: expected a numpy array, found {type(arr).__name__}")
        if arr.dtype != np.float32:
            raise ValueError(f"weight {name}: expected dtype float32, found {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(f"weight {name}: expected shape {shape}, found {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"weight {name}: expected finite values, found NaN or inf")
        arrays[name] = np.ascontiguousarray(arr)
    if kind == "fused":
        outside = (arrays["gru.W_in"] != 0) & ~fused.input_mask(hidden)
        if np.any(outside):
            row, col = map(int, np.argwhere(outside)[0])
            raise ValueError(f"weight gru.W_in: [{row}, {col}] is nonzero where the fused input mask "
                             f"(pywavernn.fused.input_mask, docs/format.md §12) says a part may not see that "
                             f"current nibble")
        return arrays
    coarse_c_t = arrays["gru.W_in"].reshape(3, 2, hidden // 2, 3)[:, 0, :, 2]
    if np.any(coarse_c_t != 0):
        raise ValueError("weight gru.W_in: column 2 (c_t) must be zero in the coarse rows of every gate "
                         "(docs/format.md §3)")
    return arrays


def check_generate_inputs(g: Any, uniforms: Any, hidden: int, hop: int,
                          columns: int = 2) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate and normalise generate()'s inputs: (g (B, F, 3H), uniforms (B, T, C), batched?). ValueError.
    columns C: uniforms per sample, 2 (coarse, fine) for the plain model, 4 (nibbles) for the fused one, which
    also needs T >= 2 (one fold of B = 2, docs/format.md §12)."""
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1:
        raise ValueError(f"hop: expected a positive integer, found {hop!r}")
    if not isinstance(g, np.ndarray) or g.dtype != np.float32:
        found = g.dtype if isinstance(g, np.ndarray) else type(g).__name__
        raise ValueError(f"g: expected a float32 numpy array (F, 3H) or (B, F, 3H), found {found}")
    if not isinstance(uniforms, np.ndarray) or uniforms.dtype != np.float32:
        found = uniforms.dtype if isinstance(uniforms, np.ndarray) else type(uniforms).__name__
        raise ValueError(f"uniforms: expected a float32 numpy array (T, {columns}) or (B, T, {columns}), "
                         f"found {found}")
    batched = g.ndim == 3
    if g.ndim not in (2, 3) or g.shape[-1] != 3 * hidden or g.shape[-2] < 1 or (batched and g.shape[0] < 1):
        raise ValueError(f"g: expected shape (F, {3 * hidden}) or (B, F, {3 * hidden}) with F, B >= 1, "
                         f"found {g.shape}")
    g3 = g if batched else g[None]
    batch, n_frames = g3.shape[0], g3.shape[1]
    n_samples = n_frames * int(hop)
    want = (batch, n_samples, columns) if batched else (n_samples, columns)
    what = "coarse and fine" if columns == 2 else f"{columns} nibbles each"
    if uniforms.shape != want:
        raise ValueError(f"uniforms: expected shape {want} (F * hop = {n_frames} * {hop} samples, {what}), "
                         f"found {uniforms.shape}")
    if columns == fused.N_NIBBLES and n_samples < FUSED_FACTOR:
        raise ValueError(f"g: a fused model needs at least {FUSED_FACTOR} samples (one fold, docs/format.md "
                         f"§12), found F * hop = {n_samples}")
    if n_samples > 2**31 - 16:
        raise ValueError(f"g: {n_frames} frames * hop {hop} = {n_samples} samples is too many for one call")
    if not np.all(np.isfinite(g3)):
        raise ValueError("g: expected finite values, found NaN or inf")
    if not (np.all(uniforms >= 0) and np.all(uniforms < 1)):  # also rejects NaN
        raise ValueError("uniforms: expected values in [0, 1)")
    u3 = uniforms if batched else uniforms[None]
    return np.ascontiguousarray(g3), np.ascontiguousarray(u3), batched


# --- the engine ----------------------------------------------------------------------------------------------------

class CudaEngine(Engine):
    """The CUDA sampler bound to one model on one device.

    model:        a pywavernn.modelfile.Model (anything with .model_config and .dense(name)); block-sparse matrices
                  are densified (the kernel is dense). A plain model (§1-4) or a fused one (§12; then uniforms are
                  (T, 4) and the trace holds "logits" (T, 4, 16) by true time, as pywavernn.reference.fused's).
    device:       CUDA device ordinal, -1 for the current one.
    cluster_size: 0 (automatic), 8 or 16 blocks per thread-block cluster.
    timeout_ms:   the kernel's watchdog per wait (0: the library default, 2 s).
    Raises ValueError for a model the sampler cannot take, RuntimeError if the library or a device is missing,
    CudaError if the library refuses (status and detail in the message).
    """

    backend = "cuda"

    def __init__(self, model, *, device: int = -1, cluster_size: int = 0, timeout_ms: int = 0):
        for name, value in (("device", device), ("cluster_size", cluster_size), ("timeout_ms", timeout_ms)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name}: expected an integer, found {value!r}")
        if cluster_size not in (0, 8, 16):
            raise ValueError(f"cluster_size: expected 0 (automatic), 8 or 16, found {cluster_size}")
        if device < -1 or timeout_ms < 0:
            raise ValueError(f"device >= -1 and timeout_ms >= 0 expected, found {device}, {timeout_ms}")
        arrays = model_arrays(model)  # every ValueError happens here, before the library is touched
        self.hidden_size, self.out_hidden = _check_model_config(model)
        self.kind = _kind(model.model_config)
        self.uniform_columns = fused.N_NIBBLES if self.kind == "fused" else 2
        feature_config = getattr(model, "feature_config", None)
        self.hop_length = getattr(feature_config, "hop_length", None)
        self.model, self.model_config, self.hop = model, model.model_config, self.hop_length
        self._handle = ctypes.c_void_p()
        lib, reason = _load()
        if lib is None:
            raise RuntimeError(f"CUDA backend unavailable: {reason}")
        self._lib = lib
        desc = _ModelDesc(abi_version=ABI_VERSION, hidden_size=self.hidden_size, out_hidden=self.out_hidden,
                          device=int(device), cluster_size=int(cluster_size), timeout_ms=int(timeout_ms),
                          model_kind=KINDS[self.kind])
        for field, name in _WEIGHT_FIELDS:
            if name in arrays:  # the other kind's fields stay NULL
                setattr(desc, field, arrays[name].ctypes.data_as(_F32P))
        status = lib.pwr_cuda_create(ctypes.byref(desc), ctypes.byref(self._handle))
        if status != OK:
            self._handle = ctypes.c_void_p()
            raise CudaError(status, f"pwr_cuda_create: {_detail(lib, status)}")

    @property
    def info(self) -> dict[str, Any]:
        """How the sampler was laid out on its device (cluster size, worker blocks, shared memory, ...)."""
        info = _Info()
        self._call(self._lib.pwr_cuda_sampler_get_info(self._live(), ctypes.byref(info)), "get_info")
        out = {name: getattr(info, name) for name, _ in _Info._fields_}
        out["device_name"] = info.device_name.decode("utf-8", "replace")
        out["smem_bytes"] = list(info.smem_bytes)
        return out

    def new_state(self) -> WholeUtterance:
        return WholeUtterance()

    def generate(self, g: np.ndarray, uniforms: np.ndarray, state: WholeUtterance | None = None, *,
                 hop: int | None = None, progress: Progress | None = None) -> np.ndarray:
        """int16 samples (T,) for g (F, 3H), or (B, T) for g (B, F, 3H); uniforms (T, C) or (B, T, C) float32 with
        C = uniform_columns (2; 4 for a fused model). state: None or a fresh one (one utterance per call);
        progress(T) once, after the call."""
        state = check_whole_utterance(state, self)
        samples = self._generate(g, uniforms, hop, trace=False)
        state.t = samples.shape[-1]
        report(progress, samples.shape[-1])
        return samples

    def nll(self, g: np.ndarray, audio_int16: np.ndarray) -> float:
        """Teacher-forced bits per 16-bit sample, by the NumPy reference on the host (the sampler has no teacher
        forcing): pywavernn.reference.plain.nll_cond_ref (fused: reference.fused.nll_fused_cond_ref) on this g.
        model must be a validated Model."""
        if self.kind == "fused":  # only here: the rest of this module runs without audio I/O modules
            from pywavernn.reference import fused as fused_ref

            return fused_ref.nll_fused_cond_ref(self.model, g, audio_int16)
        from pywavernn.reference import plain

        return plain.nll_cond_ref(self.model, g, audio_int16)

    def generate_trace(self, g: np.ndarray, uniforms: np.ndarray, hop: int | None = None):
        """(samples, trace): trace holds float32 "h" (.., T, H) (h after the step that generated sample t) and
        "logits_c", "logits_f" (.., T, 256); for a fused model "logits" (.., T, 4, 16) and int64 "step" (T,), the
        step that generated sample t, as pywavernn.reference.fused.generate_fused_ref(trace=True) gives them."""
        return self._generate(g, uniforms, hop, trace=True)

    def _generate(self, g, uniforms, hop, trace: bool):
        hop = self.hop_length if hop is None else hop
        if hop is None:
            raise ValueError("hop: the model has no feature_config.hop_length; pass hop explicitly")
        g3, u3, batched = check_generate_inputs(g, uniforms, self.hidden_size, hop, self.uniform_columns)
        batch, n_frames = g3.shape[0], g3.shape[1]
        n_samples = n_frames * int(hop)
        out = np.empty((batch, n_samples), dtype=np.int16)
        logits_shape = (fused.N_NIBBLES, fused.NIBBLE_CLASSES) if self.kind == "fused" else (2, N_CLASSES)
        th = np.empty((batch, n_samples, self.hidden_size), np.float32) if trace else None
        tl = np.empty((batch, n_samples) + logits_shape, np.float32) if trace else None
        null = ctypes.cast(None, _F32P)
        status = self._lib.pwr_cuda_generate_trace(
            self._live(), g3.ctypes.data_as(_F32P), n_frames, int(hop), u3.ctypes.data_as(_F32P),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)), batch,
            th.ctypes.data_as(_F32P) if trace else null, tl.ctypes.data_as(_F32P) if trace else null)
        self._call(status, "generate")
        samples = out if batched else out[0]
        if not trace:
            return samples
        if self.kind == "fused":  # sample t = 2 i + s is generated at step i + LAG s (pywavernn.fused)
            t = np.arange(n_samples)
            step = np.repeat((t // 2 + fused.LAG * (t % 2))[None], batch, axis=0)
            steps = {"h": th, "logits": tl, "step": step}
        else:
            steps = {"h": th, "logits_c": tl[:, :, 0], "logits_f": tl[:, :, 1]}
        if not batched:
            steps = {k: v[0] for k, v in steps.items()}
        return samples, steps

    def _live(self):
        if not self._handle:
            raise RuntimeError("CudaEngine: closed")
        return self._handle

    def _call(self, status: int, what: str) -> None:
        if status != OK:
            raise CudaError(status, f"pwr_cuda_{what}: {_detail(self._lib, status)}")

    def close(self) -> None:
        """Free the device memory now (also done when the engine is garbage-collected)."""
        handle = getattr(self, "_handle", None)
        if handle:
            self._lib.pwr_cuda_destroy(handle)
            self._handle = ctypes.c_void_p()

    def __enter__(self) -> "CudaEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"CudaEngine({getattr(self, 'kind', '?')}, H={self.hidden_size}, K={self.out_hidden}, "
                f"open={bool(getattr(self, '_handle', None))})")
