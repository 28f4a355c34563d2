"""The NumPy reference as engines: the `reference` backend of `pywavernn.Vocoder`.

What it is: thin adapters that give the readable models of pywavernn/reference/ the engine interface
(pywavernn/engines/base.py): `ReferenceEngine` (plain WaveRNN, pywavernn.reference.plain; it streams, as its state
carries on), `SubscaleReferenceEngine` (pywavernn.reference.subscale; whole utterances only) and
`FusedReferenceEngine` (pywavernn.reference.fused; whole utterances only, four uniforms a sample). They validate the
model once and pass the conditioning they are given straight to the reference, which never recomputes it.
What it is not: any of the maths (that is pywavernn/reference/), nor fast.

    from pywavernn.engines.reference import ReferenceEngine
    engine = ReferenceEngine(model)
    samples = engine.generate(pywavernn.conditioning.conditioning(model, mel), uniforms)

Tests: `python -m pytest tests/test_engines.py -q` (conformance, against the C engine too); the reference itself in
tests/test_reference.py and tests/test_subscale.py.
Letters: H hidden units, F frames, hop samples per frame, T samples.
"""

from __future__ import annotations

import numpy as np

from pywavernn import fold, fused
from pywavernn.common import describe
from pywavernn.engines.base import (Engine, Progress, SequentialEngine, WholeUtterance, check_whole_utterance,
                                    report)
from pywavernn.modelfile import Model
from pywavernn.reference import fused as fused_ref
from pywavernn.reference import plain, subscale


def _checked(model: Model, subscale_model: bool) -> Model:
    if not isinstance(model, Model):
        raise TypeError(f"model: expected a pywavernn.modelfile.Model, found {type(model).__name__}")
    factor = model.model_config.subscale_factor
    if model.model_config.kind == "fused":
        raise ValueError("model: a fused model (subscale_fused) runs on FusedReferenceEngine")
    if subscale_model:
        fold.check_model_config(model.model_config)
    elif factor != 1:
        raise ValueError(f"model: the reference implements the plain WaveRNN (subscale_factor 1), found "
                         f"subscale_factor {factor}")
    model.validate()  # once, here: the reference functions called below trust it
    return model


class ReferenceEngine(SequentialEngine):
    """The plain WaveRNN in NumPy (pywavernn.reference.plain). State: a plain.GenerationState."""

    backend = "reference"

    def __init__(self, model: Model):
        self.model = _checked(model, subscale_model=False)
        self.model_config, self.hop = model.model_config, model.feature_config.hop_length

    def new_state(self) -> plain.GenerationState:
        return plain.GenerationState.fresh(self.model)

    def generate(self, cond: np.ndarray, uniforms: np.ndarray, state: plain.GenerationState | None = None, *,
                 cond_first: int = 0, progress: Progress | None = None) -> np.ndarray:
        """Samples state.t .. state.t + T - 1 (progress once per frame); see SequentialEngine.generate."""
        if state is not None and not isinstance(state, plain.GenerationState):
            raise TypeError(f"state: expected a GenerationState from this engine's new_state(), found "
                            f"{type(state).__name__}")
        return plain.generate_cond_ref(self.model, cond, uniforms, state, g_first=cond_first, progress=progress)

    def nll(self, cond: np.ndarray, audio_int16: np.ndarray) -> float:
        return plain.nll_cond_ref(self.model, cond, audio_int16)


class SubscaleReferenceEngine(Engine):
    """The Subscale WaveRNN in NumPy (pywavernn.reference.subscale): whole utterances, progress once at the end."""

    backend = "reference"

    def __init__(self, model: Model):
        self.model = _checked(model, subscale_model=True)
        self.model_config, self.hop = model.model_config, model.feature_config.hop_length

    def new_state(self) -> WholeUtterance:
        return WholeUtterance()

    def generate(self, cond: np.ndarray, uniforms: np.ndarray, state: WholeUtterance | None = None, *,
                 progress: Progress | None = None) -> np.ndarray:
        state = check_whole_utterance(state, self)
        samples = subscale.generate_subscale_cond_ref(self.model, cond, uniforms)
        state.t = samples.shape[0]
        report(progress, samples.shape[0])
        return samples

    def nll(self, cond: np.ndarray, audio_int16: np.ndarray) -> float:
        return subscale.nll_subscale_cond_ref(self.model, cond, audio_int16)


class FusedReferenceEngine(Engine):
    """The Fused Subscale WaveRNN 2x in NumPy (pywavernn.reference.fused): whole utterances, four uniforms a sample
    (one per nibble), progress once at the end."""

    backend = "reference"
    uniform_columns = fused.N_NIBBLES

    def __init__(self, model: Model):
        if not isinstance(model, Model):
            raise TypeError(f"model: expected a pywavernn.modelfile.Model, found {type(model).__name__}")
        if model.model_config.kind != "fused":
            raise ValueError(f"model: FusedReferenceEngine runs the fused model (subscale_fused), found a "
                             f"{model.model_config.kind} model")
        model.validate()
        self.model = model
        self.model_config, self.hop = model.model_config, model.feature_config.hop_length

    def new_state(self) -> WholeUtterance:
        return WholeUtterance()

    def generate(self, cond: np.ndarray, uniforms: np.ndarray, state: WholeUtterance | None = None, *,
                 progress: Progress | None = None) -> np.ndarray:
        state = check_whole_utterance(state, self)
        if not isinstance(uniforms, np.ndarray) or uniforms.dtype != np.float32:  # the engines' TypeError
            raise TypeError(f"uniforms: expected a float32 numpy array (T, {fused.N_NIBBLES}), found "
                            f"{describe(uniforms)}")
        samples = fused_ref.generate_fused_cond_ref(self.model, cond, uniforms)
        state.t = samples.shape[0]
        report(progress, samples.shape[0])
        return samples

    def nll(self, cond: np.ndarray, audio_int16: np.ndarray) -> float:
        return fused_ref.nll_fused_cond_ref(self.model, cond, audio_int16)
