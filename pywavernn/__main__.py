"""`python -m pywavernn ...` is the same as the `pywavernn` console script."""
import sys

from pywavernn.cli import main

sys.exit(main())
