"""research.extrapolate (issue 24's extrapolation of the learning curve): the frontier keeps the best value so far
along samples seen, the fit recovers a known gain per doubling, the crossings land where that trend reaches
Griffin-Lim and the goal, a target already passed is reported as reached, and a flat or backwards trend (which a
frontier cannot give, but a caller's own points can) as never reaching it."""

import csv
import math

import pytest

from research import extrapolate as ex


def _write(path, rows):
    cols = ["label", "run", "step", "samples", "core_hours"] + [
        f"{s}_{w}_{m}" for s in ex.SUBSETS for w in ("wavernn", "gl") for m in ex.MEASURES]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _row(n, pesq, mcd=3.0, core_hours=None):
    r = {"label": "x", "run": "x", "step": 1, "samples": int(n), "core_hours": core_hours or n / 1e8}
    for s in ex.SUBSETS:
        r.update({f"{s}_wavernn_pesq": pesq, f"{s}_wavernn_stoi": 0.7, f"{s}_wavernn_mos": "",
                  f"{s}_wavernn_mcd": mcd, f"{s}_gl_pesq": 2.9, f"{s}_gl_stoi": 0.95, f"{s}_gl_mos": 3.0,
                  f"{s}_gl_mcd": 1.0})
    return r


def test_frontier_keeps_the_best_so_far_in_either_direction():
    pts = [(4, 1.2), (1, 1.0), (2, 1.3), (3, 1.1), (2, 1.25)]
    assert ex.frontier(pts, +1) == [(1, 1.0), (2, 1.3)]
    assert ex.frontier(pts, -1) == [(1, 1.0)]
    assert ex.frontier([(1, 5.0), (2, 4.0), (3, 4.5), (4, 3.0)], -1) == [(1, 5.0), (2, 4.0), (4, 3.0)]


def test_fit_and_crossings_recover_a_known_log_linear_trend(tmp_path):
    # PESQ = 1 + 0.25 per doubling from 1e8 samples; a worse fork at 6e8 is left off the frontier
    rows = [_row(1e8 * 2 ** k, 1.0 + 0.25 * k, mcd=4.0 - 0.5 * k) for k in range(5)]
    rows.insert(3, _row(6e8, 1.1))
    path = tmp_path / "curve.csv"
    _write(path, rows)
    res = {(r["subset"], r["measure"]): r for r in ex.extrapolate(ex.read_rows(path), from_samples=1e8)}
    joe = res[("piper-joe", "pesq")]
    assert joe["points"] == 5 and joe["per_doubling"] == pytest.approx(0.25)
    assert joe["best"] == pytest.approx(2.0) and joe["griffin_lim"] == pytest.approx(2.9)
    assert joe["to_griffin_lim"] == pytest.approx(1e8 * 2 ** (1.9 / 0.25), rel=1e-9)  # 2.9 = 1 + 0.25 k
    assert joe["to_goal"] == pytest.approx(1e8 * 2 ** (2.5 / 0.25), rel=1e-9)
    assert res[("asterisk-en", "pesq")]["to_goal"] == pytest.approx(1e8 * 2 ** 8.0, rel=1e-9)
    mcd = res[("piper-joe", "mcd")]  # lower is better: 4 - 0.5 k reaches 1.0 at k = 6
    assert mcd["per_doubling"] == pytest.approx(-0.5) and mcd["to_griffin_lim"] == pytest.approx(1e8 * 64)
    assert joe["rate"] == pytest.approx(1e8)  # the newest row's samples per core-hour
    assert res[("piper-joe", "mos")]["points"] == 0 and res[("piper-joe", "mos")]["per_doubling"] is None


def test_a_target_already_passed_or_never_reached(tmp_path):
    rows = [_row(1e8, 3.0), _row(2e8, 3.1)]  # already above Griffin-Lim's 2.9
    path = tmp_path / "curve.csv"
    _write(path, rows)
    res = {(r["subset"], r["measure"]): r for r in ex.extrapolate(ex.read_rows(path), 1e8, rate=5e7)}
    assert res[("piper-joe", "pesq")]["to_griffin_lim"] == 0.0 and res[("piper-joe", "pesq")]["rate"] == 5e7
    assert ex.crossing(1.0, 0.0, 2.9, +1) is None and ex.crossing(1.0, -0.1, 2.9, +1) is None
    assert ex.crossing(1.0, 0.1, 2.9, +1) == pytest.approx(2 ** 19)
    assert math.isfinite(ex.crossing(4.0, -0.5, 1.0, -1))


def test_command_prints_the_table_and_refuses_a_bad_csv(tmp_path, capsys):
    path = tmp_path / "curve.csv"
    _write(path, [_row(1e8 * 2 ** k, 1.0 + 0.25 * k) for k in range(3)])
    ex.main(["--csv", str(path), "--from-samples", "1e8"])
    out = capsys.readouterr().out
    assert "| piper-joe | pesq | 1.500 (4e+08) | 3 | +0.250 | 2.900 | 1.9e+10 samples (1.9e+02 core-h) | 3.5 |" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit):
        ex.main(["--csv", str(bad)])
    assert "expected a column 'samples'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ex.main(["--csv", str(path), "--rate", "-1"])
