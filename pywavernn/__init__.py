"""pywavernn: the WaveRNN neural vocoder of "Efficient Neural Audio Synthesis" (Kalchbrenner et al., 2018).

Mel spectrogram in, 24 kHz 16-bit audio out, on ordinary CPUs. Public API:

    import pywavernn
    vocoder = pywavernn.Vocoder("model.safetensors")        # or Vocoder() for the bundled model
    audio = vocoder.vocode(mel, seed=0)                      # int16, 24 kHz

Layout (README.md has the table): pywavernn/*.py is the public API (vocoder.py, cli.py) and what every path
shares (common.py, conditioning.py, modelfile.py, config.py, features.py, audio.py, fold.py, kernels.py);
pywavernn/reference/ the readable NumPy models; pywavernn/engines/ every backend behind one interface
(engines/base.py) and the stream; pywavernn/_kernels/ the compiled kernels.
"""

__version__ = "0.1.0"

from pywavernn._native import openmp_enabled, selected_isa  # noqa: E402
from pywavernn.config import FeatureConfig, ModelConfig  # noqa: E402
from pywavernn.modelfile import Model, load_model, save_model  # noqa: E402
from pywavernn.vocoder import Vocoder  # noqa: E402

__all__ = ["FeatureConfig", "Model", "ModelConfig", "Vocoder", "load_model", "openmp_enabled", "save_model",
           "selected_isa", "__version__"]
