"""Export a randomly initialised PyTorch WaveRNN to a model file, to try the plumbing (its output is noise).

    python examples/export_random_model.py random.safetensors [--hidden 128]
    pywavernn info random.safetensors
    pywavernn resynth IN.wav -o noise.wav --model random.safetensors

Needs the training extra (torch): pip install -e ".[train]".
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # training/ runs from a checkout, not installed

from pywavernn.config import FeatureConfig, ModelConfig
from training.export import export_model
from training.model import WaveRNN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    cfg = ModelConfig(hidden_size=args.hidden, out_hidden=args.hidden // 2)
    export_model(WaveRNN(cfg), FeatureConfig(), args.output,
                 provenance={"note": "random initialisation, output is noise"})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
