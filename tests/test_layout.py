"""The package stands alone: nothing under pywavernn/ imports the research studies, the training code, the
benchmarks or the tests, and the research folder holds no module the package needs.

What it is: a static check (the ast of every pywavernn/*.py and *.pyx import statement), fast and without
importing anything. What it is not: a check of the layering inside the package (README's Layout table).

Run: python -m pytest tests/test_layout.py -q
"""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTSIDE = ("research", "training", "benchmarks", "tests", "examples")


def imported_roots(path: Path) -> set[str]:
    """Top-level package names a Python (or, by line, a Cython) file imports."""
    text = path.read_text()
    if path.suffix == ".pyx":
        return {m.group(1) for m in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", text, re.M)}
    roots = set()
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_package_imports_nothing_outside_it():
    files = sorted(REPO.glob("pywavernn/**/*.py")) + sorted(REPO.glob("pywavernn/**/*.pyx"))
    assert len(files) > 20
    bad = {str(p.relative_to(REPO)): sorted(imported_roots(p) & set(OUTSIDE)) for p in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_checker_sees_an_import_of_research(tmp_path):
    """The check above could fail: it sees both spellings of an import from research/."""
    mod = tmp_path / "m.py"
    mod.write_text("import os\nfrom research import compare\nimport research.linear_headroom as lh\n")
    assert imported_roots(mod) == {"os", "research"}


def test_research_sits_outside_the_package_and_its_wheel():
    assert (REPO / "research" / "experiments.md").is_file() and not (REPO / "pywavernn" / "research").exists()
    assert not (REPO / "docs" / "experiments.md").exists() and (REPO / "docs" / "research.md").is_file()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'include = ["pywavernn", "pywavernn.*"]' in pyproject  # the wheel's packages: research is not one
