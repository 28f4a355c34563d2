"""The examples run as a user runs them (a fresh interpreter, the public API), so they cannot rot."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_subscale_walkthrough_runs_and_engine_matches_reference():
    out = subprocess.run([sys.executable, str(EXAMPLES / "subscale_walkthrough.py")], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "unfold(fold(x)) == x" in out.stdout
    assert "48 samples in 18 steps" in out.stdout
    assert "reference and C engine give the same samples: True" in out.stdout
    assert "context 19,580" in out.stdout  # the H = 256 recipe's figure in docs/experiments.md (RQ5)
