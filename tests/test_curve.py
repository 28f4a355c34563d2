"""training.curve: the campaign's learning-curve rows from a run folder and its two evaluation reports."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")

from training import curve  # noqa: E402


def _report(path, step, pesq):
    mean = {"nll_bits": {"mean": 8.5}}
    for who, scale in (("pywavernn", 1.0), ("griffin_lim", 2.0)):
        mean[who] = {m: {"mean": scale * pesq if m == "pesq" else 0.5} for m in curve.METRICS}
    mean["pywavernn"]["f0_cents"] = {"mean": None, "n": 0}
    path.mkdir(parents=True)
    (path / "report.json").write_text(json.dumps({"mean": mean, "model": {"provenance": {"training":
                                                                                       {"step": step}}}}))


def _run(tmp_path, name, step, elapsed):
    run = tmp_path / name
    run.mkdir()
    cfg = {"batch_size": 64, "window_frames": 4, "features": {"hop_length": 300}}
    torch.save({"config": cfg, "step": step, "world_size": 1, "runtime": {"threads": 1},
                "metrics": {"elapsed_s": elapsed, "valid_bits": 9.0}}, run / "checkpoint.pt")
    return run


def test_add_table_plot(tmp_path):
    csv_path = tmp_path / "curve.csv"
    for step, pesq in ((100, 1.1), (200, 1.3)):
        ev = tmp_path / f"eval{step}"
        for subset in curve.SUBSETS:
            _report(ev / subset, step, pesq)
        row = curve.add(_run(tmp_path, f"r{step}", step, 3600.0 * step / 100), ev, csv_path, label="c0")
        assert row["samples"] == step * 64 * 4 * 300 and row["core_hours"] == step / 100
    ev = tmp_path / "eval100"
    curve.add(tmp_path / "r100", ev, csv_path, label="c0 again")  # same run and step: replaced, not appended
    rows = curve.read_rows(csv_path)
    assert [(r["run"], r["step"], r["label"]) for r in rows] == [("r100", "100", "c0 again"), ("r200", "200", "c0")]
    # in the order added, not sorted by name
    text = curve.table(rows)
    assert "| c0 | 200 | 15M | 2.00 | 8.500 / 8.500 | 1.30 / 1.30 |" in text
    assert "| Griffin-Lim (floor) | | | | | 2.60 / 2.60 |" in text and "– / –" in text  # F0 of none voiced
    pytest.importorskip("matplotlib")
    curve.plot(rows, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_mismatched_report_and_missing_inputs(tmp_path):
    run = _run(tmp_path, "r", 300, 10.0)
    ev = tmp_path / "ev"
    for subset in curve.SUBSETS:
        _report(ev / subset, 299, 1.0)
    with pytest.raises(ValueError, match="report is of step 299"):
        curve.add(run, ev, tmp_path / "c.csv")
    with pytest.raises(ValueError, match="not found"):
        curve.add(run, tmp_path / "nothing", tmp_path / "c.csv")
    with pytest.raises(ValueError, match="no checkpoint.pt"):
        curve.add(tmp_path, ev, tmp_path / "c.csv")
    assert curve.main(["add", str(tmp_path), str(ev), "--csv", str(tmp_path / "c.csv")]) == 2


def test_samples_seen_counted_by_the_trainer_win_over_the_config(tmp_path):
    """A fork that changed its batch size counts its samples step by step (metrics["samples_seen"]); the row uses
    that count, not step x today's batch."""
    run = _run(tmp_path, "fork", 300, 3600.0)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["metrics"]["samples_seen"] = 12_345_600
    torch.save(ckpt, run / "checkpoint.pt")
    ev = tmp_path / "ev"
    for subset in curve.SUBSETS:
        _report(ev / subset, 300, 1.0)
    assert curve.add(run, ev, tmp_path / "c.csv")["samples"] == 12_345_600


def test_a_run_started_from_other_weights_counts_their_lineage(tmp_path):
    """A run begun with --init-from counts from step 0; --lineage-samples / --lineage-core-hours add what its source
    had seen, so its rows sit where the lineage is on the curve; the two go together and may not be negative."""
    run = _run(tmp_path, "restart", 100, 1800.0)
    ev = tmp_path / "ev"
    for subset in curve.SUBSETS:
        _report(ev / subset, 100, 1.0)
    row = curve.add(run, ev, tmp_path / "c.csv", lineage=(1_000_000, 7.5))
    assert row["samples"] == 100 * 64 * 4 * 300 + 1_000_000 and row["core_hours"] == 8.0
    assert curve.main(["add", str(run), str(ev), "--csv", str(tmp_path / "c.csv"), "--lineage-samples", "5"]) == 2
    with pytest.raises(ValueError, match="lineage"):
        curve.add(run, ev, tmp_path / "c.csv", lineage=(-1, 0.0))
