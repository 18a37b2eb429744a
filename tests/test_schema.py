"""The JSON Schemas: real reports validate against the report schema, real files against the
YAML schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from casc_cli.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def schema(kind):
    result = runner.invoke(app, ["schema", kind])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


@pytest.fixture(scope="module")
def report_validator():
    return schema("report")


@pytest.mark.parametrize("args", [
    ["run", "--json", "-n", "500", "hypotheses/xor/second_bit.yaml", "hypotheses/sum4/true.yaml"],
    ["compare", "--json", "-n", "500", "hypotheses/sum4/true.yaml", "--permute", "x0,x1,x2"],
    ["check", "--format", "json", "-n", "500", "hypotheses/xor"],
])
def test_reports_validate(report_validator, args, monkeypatch):
    monkeypatch.chdir(REPO)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    report_validator.validate(document)
    assert document["command"] == args[0]


def test_report_schema_rejects_a_wrong_report(report_validator):
    with pytest.raises(jsonschema.ValidationError):
        report_validator.validate({"schema_version": 2, "command": "run", "results": []})


def test_catalogue_files_validate_against_the_yaml_schema():
    validator = schema("any")
    files = sorted(REPO.glob("tasks/*.yaml")) + sorted(REPO.glob("hypotheses/*/*.yaml"))
    assert len(files) > 10
    for path in files:
        validator.validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("name", ["h_unknown_top_key.yaml", "t_unknown_input_key.yaml",
                                  "h_nodes_list.yaml", "t_size_string.yaml"])
def test_invalid_files_fail_the_yaml_schema(name):
    validator = schema("any")
    data = yaml.safe_load((REPO / "tests/invalid" / name).read_text())
    assert not validator.is_valid(data)
