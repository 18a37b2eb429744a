"""casc check: expectations, baselines, report formats and exit codes."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from casc_cli.check import judge_bound
from casc_cli.spec.models import Bound
from cli_runner import invoke

REPO = Path(__file__).resolve().parents[1]


def test_catalogue_expectations_hold(monkeypatch):
    """The project's own CI gate: every claim in the catalogue stays where the seeds put it."""
    monkeypatch.chdir(REPO)
    result = invoke("check", "hypotheses/")
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.stdout


@pytest.fixture
def broken(tmp_path):
    """A copy of xor/second_bit whose scrubbed-loss expectation is wrong, on a known line."""
    (tmp_path / "tasks").mkdir()
    shutil.copy(REPO / "tasks/xor.yaml", tmp_path / "tasks/xor.yaml")
    folder = tmp_path / "hypotheses"
    folder.mkdir()
    text = (REPO / "hypotheses/xor/second_bit.yaml").read_text().split("expect:")[0]
    text = text.replace("../../tasks", "../tasks")
    lines = text.rstrip("\n").splitlines() + ["expect:", "  cancellation: true",
                                              "  scrubbed_loss: {max: 0.1}"]
    path = folder / "second_bit.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, len(lines)


def test_broken_expectation_exits_1_with_annotation_on_its_line(broken):
    path, line = broken
    result = invoke("check", "--format", "github", str(path))
    assert result.exit_code == 1
    errors = [l for l in result.stdout.splitlines() if l.startswith("::error ")]
    assert len(errors) == 1
    assert f"file={path}".replace(":", "%3A") in errors[0]
    assert f",line={line}," in errors[0]
    assert "scrubbed_loss" in errors[0]
    assert any(l.startswith("ok ") and "cancellation" in l for l in result.stdout.splitlines())


def test_github_is_the_default_under_github_actions(broken):
    path, _ = broken
    result = invoke("check", str(path), env={"GITHUB_ACTIONS": "true"})
    assert result.exit_code == 1
    assert "::error " in result.stdout


def test_junit_report(broken, tmp_path):
    path, _ = broken
    out = tmp_path / "report.xml"
    result = invoke("check", "--format", "junit", "-o", str(out), str(path))
    assert result.exit_code == 1
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    failures = root.findall(".//failure")
    assert len(failures) == 1 and "scrubbed_loss" in failures[0].get("message")


def test_json_report(broken):
    path, _ = broken
    data = json.loads(invoke("check", "--format", "json", str(path)).stdout)
    assert data["schema_version"] == 1 and data["command"] == "check"
    assert data["summary"] == {"checks": 2, "passed": 1, "failed": 1}


def test_files_without_expectations_are_skipped(tmp_path):
    result = invoke("check", "--format", "json", str(REPO / "tests/invalid/tasks_ok"))
    assert result.exit_code == 0
    assert json.loads(result.stdout)["summary"]["checks"] == 0


def test_missing_path_is_usage_error():
    result = invoke("check", "no/such/folder")
    assert result.exit_code == 2
    assert "no such file" in result.output


@pytest.mark.parametrize("value, se, bound, passed, words", [
    (0.5, 0.01, Bound(max=0.52), True, "<="),
    (0.53, 0.01, Bound(max=0.52), True, "within 3 SE"),     # 1 SE over: noise
    (0.56, 0.01, Bound(max=0.52), False, "4.0 SE"),         # 4 SE over: fails
    (0.0, 0.0, Bound(max=0.0), True, "<="),
    (1e-6, 0.0, Bound(max=0.0), False, "above"),            # no sampling error: exact
    (95.0, 2.0, Bound(min=100), True, "within"),
    (None, None, Bound(min=0), False, "undefined"),
])
def test_judge_bound(value, se, bound, passed, words):
    ok, message = judge_bound(value, se, bound, k=3)
    assert ok is passed
    assert words in message


def test_baseline_round_trip_and_drift(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    baseline = tmp_path / "baseline.json"
    run = invoke("run", "--json", "-n", "4000", "hypotheses/xor/second_bit.yaml",
                 "hypotheses/sum4/reversed.yaml")
    baseline.write_text(run.stdout)
    same = invoke("check", "--baseline", str(baseline), "--format", "json")
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout)["summary"]["failed"] == 0
    data = json.loads(run.stdout)
    data["results"][1]["scrubbed_loss"] -= 20  # the model moved
    baseline.write_text(json.dumps(data))
    moved = invoke("check", "--baseline", str(baseline), "--format", "json")
    assert moved.exit_code == 1
    failed = [c for c in json.loads(moved.stdout)["checks"] if not c["passed"]]
    assert [c["figure"] for c in failed] == ["scrubbed_loss"]


def test_bad_baseline_is_invalid_input(tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text("{not json")
    assert invoke("check", "--baseline", str(bad)).exit_code == 2
