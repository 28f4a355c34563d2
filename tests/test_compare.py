"""research.compare (a research script, research/compare.py): the paired difference, its standard error and the
count, against NumPy on made-up reports."""

import json

import numpy as np
import pytest

from research import compare as cmp


def _report(names, nll, pesq=None, key="nll_bits"):
    files = []
    for i, n in enumerate(names):
        rec = {"file": n, key: float(nll[i])}
        if pesq is not None:
            rec["pywavernn"] = {"pesq": float(pesq[i])}
        files.append(rec)
    return {"files": files}


def test_paired_difference_matches_numpy():
    rng = np.random.default_rng(0)
    names = [f"f{i:02d}.flac" for i in range(41)]
    a = rng.normal(9.0, 0.8, 41)
    b = a + rng.normal(-0.3, 0.05, 41)
    pa, pb = rng.uniform(1, 2, 41), rng.uniform(1, 2, 41)
    # B lists its files in another order: matching is by name.
    order = rng.permutation(41)
    rb = _report([names[i] for i in order], b[order], pb[order])
    r = cmp.compare(_report(names, a, pa), rb)
    d = b - a
    assert r["nll_bits"]["n"] == 41
    assert r["nll_bits"]["diff"] == pytest.approx(d.mean(), abs=1e-12)
    assert r["nll_bits"]["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(41), rel=1e-9)
    assert r["nll_bits"]["b_lower"] == int((d < 0).sum())
    assert r["nll_bits"]["mean_a"] == pytest.approx(a.mean())
    assert r["pesq"]["diff"] == pytest.approx((pb - pa).mean())
    assert "stoi" not in r and "coarse" not in r  # absent from both: not reported


def test_metric_missing_or_nan_in_one_file_pairs_the_rest():
    names = ["a", "b", "c"]
    ra = _report(names, [1.0, 2.0, float("nan")])
    rb = _report(names, [1.5, 2.5, 3.0])
    r = cmp.compare(ra, rb)
    assert r["nll_bits"]["n"] == 2 and r["nll_bits"]["diff"] == pytest.approx(0.5)


def test_different_files_is_an_error():
    with pytest.raises(ValueError, match=r"same files: only in A: \['c'\].*only in B: \['d'\]"):
        cmp.compare(_report(["a", "b", "c"], [1, 2, 3]), _report(["a", "b", "d"], [1, 2, 3]))


@pytest.mark.parametrize("bad, match", [
    ({}, "non-empty 'files' list"),
    ({"files": []}, "non-empty 'files' list"),
    ({"files": [{"nll_bits": 1.0}]}, "'file' name"),
    ({"files": [{"file": "a", "nll_bits": 1.0}, {"file": "a", "nll_bits": 2.0}]}, "appears twice"),
    ({"files": [{"file": "a", "other": 1.0}]}, "share no per-file metric"),
])
def test_foreign_reports_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        cmp.compare(_report(["a"], [1.0]), bad)


def test_cli_writes_json_and_table(tmp_path, capsys):
    pa, pb, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "sub" / "cmp.json"
    pa.write_text(json.dumps(_report(["x", "y"], [8.0, 9.0])))
    pb.write_text(json.dumps(_report(["x", "y"], [7.5, 9.1])))
    assert cmp.main([str(pa), str(pb), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| nll_bits | 2 | 8.5000 | 8.3000 | -0.2000 (0.3000) | 1 |" in text
    assert json.loads(out.read_text())["metrics"]["nll_bits"]["b_lower"] == 1
    pb.write_text("{not json")
    assert cmp.main([str(pa), str(pb)]) == 2
    assert "invalid JSON" in capsys.readouterr().err
