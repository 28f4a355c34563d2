"""Export a randomly initialised PyTorch WaveRNN to a model file, to try the plumbing (its output is noise).

    python examples/export_random_model.py random.safetensors [--hidden 128] [--fused]
    pywavernn info random.safetensors
    pywavernn resynth IN.wav -o noise.wav --model random.safetensors

--fused writes a Fused Subscale WaveRNN 2x (docs/format.md §12: two samples per GRU step, eight 4-bit softmaxes)
instead of the plain model; its heads get K = H / 8 hidden units.
Needs the training extra (torch): pip install -e ".[train]".
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # training/ runs from a checkout, not installed

from pywavernn.config import FeatureConfig, ModelConfig
from training.export import export_model
from training.fused_model import FusedWaveRNN
from training.model import WaveRNN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fused", action="store_true", help="a Fused Subscale WaveRNN 2x (docs/format.md §12)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    if args.fused:
        cfg = ModelConfig(hidden_size=args.hidden, out_hidden=args.hidden // 8, subscale_factor=2, subscale_horizon=2,
                          subscale_fused=True)
        net = FusedWaveRNN(cfg)
    else:
        cfg = ModelConfig(hidden_size=args.hidden, out_hidden=args.hidden // 2)
        net = WaveRNN(cfg)
    export_model(net, FeatureConfig(), args.output,
                 provenance={"note": "random initialisation, output is noise"})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
