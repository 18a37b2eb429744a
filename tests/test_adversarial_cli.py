"""The adversarial commands end to end: run/compare --adversary, join, adversary, check."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from casc_cli.api import Session
from cli_runner import invoke

REPO = Path(__file__).resolve().parents[1]


def test_run_adversary_reports_worst_case_in_json_and_table(monkeypatch):
    monkeypatch.chdir(REPO)
    result = invoke("run", "--adversary", "--json", "hypotheses/xor/second_bit.yaml",
                    "hypotheses/xor/first_bit.yaml")
    second, first = json.loads(result.stdout)["results"]
    assert second["worst_case_loss"] == 1.0 and second["worst_case_exact"] is True
    assert first["worst_case_loss"] == 0.5
    table = invoke("run", "--adversary", "hypotheses/xor/second_bit.yaml").stdout
    assert "worst case" in table and "1 (exact)" in table


def test_run_without_adversary_has_no_worst_case(monkeypatch):
    monkeypatch.chdir(REPO)
    item = json.loads(invoke("run", "--json", "-n", "200",
                             "hypotheses/xor/second_bit.yaml").stdout)["results"][0]
    assert item["worst_case_loss"] is None


def test_compare_adversary_column(monkeypatch):
    monkeypatch.chdir(REPO)
    data = json.loads(invoke("compare", "--adversary", "--json", "hypotheses/xor/first_bit.yaml",
                             "hypotheses/xor/second_bit.yaml").stdout)
    worst = {Path(r["hypothesis"]).stem: r["worst_case_loss"] for r in data["results"]}
    assert worst == {"first_bit": 0.5, "second_bit": 1.0}


def test_join_writes_a_runnable_file(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "joined.yaml"
    result = invoke("join", "hypotheses/xor/second_bit.yaml", "hypotheses/xor/first_bit.yaml",
                    "-o", str(out))
    assert result.exit_code == 0, result.output
    joined = Session().run(out, samples=2000, seed=1)
    # both bits kept: every allowed swap keeps the whole datum, so nothing changes per sample
    assert joined.per_sample_gap == 0


def test_join_of_different_tasks_is_an_error(monkeypatch):
    monkeypatch.chdir(REPO)
    result = invoke("join", "hypotheses/xor/second_bit.yaml", "hypotheses/sum4/true.yaml")
    assert result.exit_code == 2


def test_adversary_finds_the_xor_refinement_and_it_reproduces(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "refined.yaml"
    result = invoke("adversary", "--json", "-o", str(out), "hypotheses/xor/second_bit.yaml")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["significant"] is True
    best = data["ranking"][0]
    assert abs(best["scrubbed_loss"] - 0.25) < 0.02
    assert yaml.safe_load(out.read_text())["nodes"]
    rerun = Session().run(out, samples=data["samples"], seed=data["seed"])
    assert rerun.scrubbed_loss == best["scrubbed_loss"]


def test_adversary_finds_nothing_for_sum_offset(monkeypatch):
    monkeypatch.chdir(REPO)
    data = json.loads(invoke("adversary", "--json",
                             "hypotheses/sum_offset/first_three.yaml").stdout)
    assert data["significant"] is False and data["refinement"] is None


def test_check_worst_case_expectation(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    result = invoke("check", "--format", "json", "hypotheses/xor/second_bit.yaml")
    checks = {c["figure"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["worst_case_loss"]["passed"] and checks["worst_case_loss"]["value"] == 1.0
