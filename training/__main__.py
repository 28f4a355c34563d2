"""`python -m training train|export ...`: the training command line (see training/cli.py)."""
import sys

from training.cli import main

sys.exit(main())
