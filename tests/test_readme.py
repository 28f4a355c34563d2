"""README.md as a newcomer follows it: its Python block runs verbatim from the checkout, and what the set-up
command writes lands where git ignores it.

The Python block is extracted and run in a fresh interpreter from the repository root, exactly as a reader pastes
it (it reads a speech file from ../shared/data, so it skips without that). What it is not: a test of the set-up
command itself (.ci/run runs that line in a fresh virtual environment).

Run: pytest tests/test_readme.py
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def test_readme_python_block_runs_verbatim_from_the_checkout(shared_data):
    (code,) = blocks("python")  # one block: the one a newcomer pastes
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert (REPO / "out" / "demo-echodone-python.wav").is_file()


def test_setup_command_writes_where_git_ignores_it():
    setup = next(b for b in blocks("sh") if "pip install -e ." in b and "pywavernn resynth" in b)
    target = re.search(r"pywavernn resynth (\S+) -o (\S+)", setup)
    assert target, "the set-up command should resynthesise a file with -o"
    src, out = target.groups()
    written = Path(out) / Path(src).with_suffix(".wav").name if out.endswith("/") else Path(out)
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    check = subprocess.run(["git", "check-ignore", "-q", str(written)], cwd=REPO)
    assert check.returncode == 0, f"{written} (written by README's set-up command) is not ignored by git"
