"""pywavernn: the WaveRNN neural vocoder of "Efficient Neural Audio Synthesis" (Kalchbrenner et al., 2018).

Mel spectrogram in, 24 kHz 16-bit audio out, on ordinary CPUs. Public API:

    import pywavernn
    vocoder = pywavernn.Vocoder("model.safetensors")        # or Vocoder() for the bundled model
    audio = vocoder.vocode(mel, seed=0)                      # int16, 24 kHz

Layout: pywavernn/*.py is the public API (validation, then calls down); pywavernn/reference.py the NumPy
reference; pywavernn/_kernels/ the compiled kernels. See README.md.
"""

from pywavernn._native import openmp_enabled, selected_isa
from pywavernn.config import FeatureConfig, ModelConfig

__version__ = "0.1.0"

__all__ = ["FeatureConfig", "ModelConfig", "openmp_enabled", "selected_isa", "__version__"]
