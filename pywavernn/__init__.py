"""pywavernn: the WaveRNN neural vocoder of "Efficient Neural Audio Synthesis" (Kalchbrenner et al., 2018).

Mel spectrogram in, 24 kHz 16-bit audio out, on ordinary CPUs. Public API:

    import pywavernn
    vocoder = pywavernn.Vocoder("model.safetensors")        # or Vocoder() for the bundled model
    audio = vocoder.vocode(mel, seed=0)                      # int16, 24 kHz

Layout: pywavernn/*.py is the public API (validation, then calls down); pywavernn/reference.py the NumPy
reference; pywavernn/_kernels/ the compiled kernels. See README.md.
"""

__version__ = "0.1.0"

from pywavernn._native import openmp_enabled, selected_isa  # noqa: E402
from pywavernn.config import FeatureConfig, ModelConfig  # noqa: E402
from pywavernn.format import Model, load_model, save_model  # noqa: E402
from pywavernn.vocoder import Vocoder  # noqa: E402

__all__ = ["FeatureConfig", "Model", "ModelConfig", "Vocoder", "load_model", "openmp_enabled", "save_model",
           "selected_isa", "__version__"]
