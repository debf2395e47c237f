"""``opsintel eval recurring`` end to end on the shipped slices."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from opsintel.cli import main
from opsintel.problems import decode_problem

DATA = Path(__file__).parent / "data"


def test_bpi_replay_writes_outputs_and_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    # labels: every incident of the slice on the same CI is one group (what the detector should find)
    import gzip

    with gzip.open(DATA / "bpic2014_Detail_Incident.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["incident_id", "group_id"])
        for row in rows:
            w.writerow([row["Incident ID"], row["CI Name (aff)"]])
    rc = main(["eval", "recurring", "--format", "bpic2014-incident",
               "--events", str(DATA / "bpic2014_Detail_Incident.csv.gz"),
               "--changes", str(DATA / "bpic2014_Detail_Change.csv.gz"),
               "--labels", str(labels), "--out", str(out), "--window-hours", str(24 * 365 * 3),
               # the slice is too short for history: no warm-up, no chance test (not what is tested)
               "--min-count", "2", "--warmup-hours", "0", "--alpha", "1"])  # fmt: skip
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out)
    with (out / "assignments.csv").open() as f:
        assignments = list(csv.DictReader(f))
    problems = [decode_problem(line) for line in (out / "problems.jsonl").read_bytes().splitlines()]
    assert metrics["problems"] == len(problems) > 0
    assert metrics["linked_incidents"] == len(assignments) == len({a["incident_id"] for a in assignments})
    assert {a["problem_id"] for a in assignments} == {p.problem_id for p in problems}
    assert all(a["linked_at"] >= a["raised_at"] for a in assignments)
    assert metrics["pairwise_precision"] == 1.0  # grouping by CI never mixes two CIs
    assert 0 < metrics["pairwise_recall"] <= 1 and 0 < metrics["coverage"] <= 1


def test_servicenow_replay_without_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["eval", "recurring", "--format", "servicenow-csv",
               "--events", str(DATA / "servicenow_incident_event_log.csv.gz"), "--out", str(tmp_path)])  # fmt: skip
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert "pairwise_f1" not in result and result["incidents"] > 0
    assert (tmp_path / "assignments.csv").read_text().startswith("incident_id,problem_id,raised_at,linked_at")


def test_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "recurring", "--format", "servicenow-csv", "--events", str(tmp_path / "missing.csv"),
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    bad = tmp_path / "labels.csv"
    bad.write_text("id,grp\n1,2\n")
    assert main(["eval", "recurring", "--format", "servicenow-csv",
                 "--events", str(DATA / "servicenow_incident_event_log.csv.gz"), "--labels", str(bad),
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    assert "incident_id,group_id" in capsys.readouterr().err
