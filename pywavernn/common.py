"""What every path of pywavernn shares: the sample format's constants, the random stream, and input checks.

What it is: the lowest module of the package (it imports only NumPy), so that the reference, the engines, the
model file, the stream and training/ all read one definition:
- constants of docs/format.md §1-6: N_CLASSES, PREV_COARSE / PREV_FINE (the sample before the first), F32, and
  the weight names of one WaveRNN step (STEP_MATRICES, the ones a file may store block-sparse; STEP_VECTORS);
- the randomness every backend consumes (docs/format.md §4): `uniform_generator(seed)` and `draw_uniforms`, the
  (T, 2) float32 uniforms (coarse, fine; (T, 4) for the fused model's nibbles, §12) drawn in order from
  `numpy.random.default_rng(seed)`;
- checks of arrays handed across the API (`describe`, `check_f32`, `check_uniforms`, `check_audio`), each a
  TypeError (wrong type or dtype) or ValueError (wrong shape or values) saying what was expected and what was found.
What it is not: the model file (pywavernn/modelfile.py), the mel checks (pywavernn.features.check_mel) or any of
the maths (pywavernn/reference/).

Tests: exercised by every test module that feeds bad input, e.g. `python -m pytest tests/test_reference.py
tests/test_vocoder.py -q`.
Letters: T samples, F frames, hop samples per frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

F32 = np.float32
N_CLASSES = 256  # coarse and fine are 8 bits each (docs/format.md §1)
PREV_COARSE, PREV_FINE = 128, 0  # the sample before the first is s = 0: u = 32768, c = 128, f = 0 (docs/format.md §1)
# One WaveRNN step's weights (docs/format.md §6): the matrices (block-CSR capable) and the vectors.
STEP_MATRICES = ("gru.R", "out.O1", "out.O2", "out.O3", "out.O4")
STEP_VECTORS = ("gru.W_in", "gru.b_R", "out.b1", "out.b2", "out.b3", "out.b4")


# --- randomness (docs/format.md §4) ------------------------------------------------------------------------------

def uniform_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """The generator an utterance draws its uniforms from: `numpy.random.default_rng(seed)`, or `seed` itself when
    it is a Generator. ValueError for anything but a non-negative integer, a Generator or None."""
    if not (seed is None or isinstance(seed, np.random.Generator)
            or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0)):
        raise ValueError(f"seed: expected a non-negative integer, a numpy Generator or None, found {seed!r}")
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def draw_uniforms(n_samples: int, seed: int | np.random.Generator | None, columns: int = 2) -> np.ndarray:
    """The (T, columns) float32 uniforms every backend consumes: 2 a sample (coarse, fine; docs/format.md §4), or
    an engine's `uniform_columns` (4 for the fused model's nibbles, §12). Drawn in order, row by row, so the same
    generator gives the same numbers in chunks as in one call (what streaming relies on)."""
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns: expected a positive integer, found {columns!r}")
    return uniform_generator(seed).random((n_samples, int(columns)), dtype=F32)


# --- input checks ----------------------------------------------------------------------------------------------

def describe(arr: Any) -> str:
    """What an argument is, for error messages: dtype, shape and contiguity of an array, else its type."""
    if isinstance(arr, np.ndarray):
        return f"{arr.dtype} array of shape {arr.shape}" + ("" if arr.flags.c_contiguous else " (not C-contiguous)")
    return type(arr).__name__


def check_f32(name: str, arr: Any, shape: tuple[int, ...], writable: bool = False) -> np.ndarray:
    """arr must be a C-contiguous float32 ndarray of exactly `shape` (and writable if asked): what compiled code
    may read without copying."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
        raise TypeError(f"{name}: expected a float32 numpy array of shape {shape}, found {describe(arr)}")
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, found {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array, found a strided view (use np.ascontiguousarray)")
    if writable and not arr.flags.writeable:
        raise ValueError(f"{name}: expected a writable array, found a read-only one")
    return arr


def check_uniforms(uniforms: Any, n_samples: int) -> np.ndarray:
    """uniforms: float32 (n_samples, 2) with every value in [0, 1) (coarse and fine per sample)."""
    if not isinstance(uniforms, np.ndarray) or uniforms.dtype != F32:
        found = uniforms.dtype if isinstance(uniforms, np.ndarray) else type(uniforms).__name__
        raise TypeError(f"uniforms: expected a float32 numpy array, found {found}")
    if uniforms.shape != (n_samples, 2):
        raise ValueError(
            f"uniforms: expected shape ({n_samples}, 2) (F * hop samples, coarse and fine), found {uniforms.shape}"
        )
    if not (np.all(uniforms >= 0) and np.all(uniforms < 1)):  # also rejects NaN
        raise ValueError("uniforms: expected values in [0, 1)")
    return uniforms


def check_audio(audio: Any, n_frames: int, hop: int) -> np.ndarray:
    """audio_int16: int16 of shape (F * hop,), the samples of a mel or conditioning of F frames."""
    if not isinstance(audio, np.ndarray) or audio.dtype != np.int16:
        found = audio.dtype if isinstance(audio, np.ndarray) else type(audio).__name__
        raise TypeError(f"audio_int16: expected an int16 numpy array, found {found}")
    if audio.shape != (n_frames * hop,):
        raise ValueError(
            f"audio_int16: expected shape ({n_frames * hop},): audio length must be F * hop = {n_frames} * {hop} "
            f"for a mel of {n_frames} frames, found {audio.shape}"
        )
    return audio
