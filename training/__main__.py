"""`python -m training train|export ...`: the training command line (see training/train.py)."""
import sys

from training.train import main

sys.exit(main())
