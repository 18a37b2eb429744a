"""The ``casc`` command line: help, version, option checks, table and JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from casc_cli import __version__
from cli_runner import invoke

REPO = Path(__file__).resolve().parent.parent
TRUE = "hypotheses/sum4/true.yaml"
SECOND_BIT = "hypotheses/xor/second_bit.yaml"
REVERSED = "hypotheses/sum4/reversed.yaml"
RESULT_KEYS = {
    "hypothesis", "model_loss", "scrubbed_loss", "scrubbed_loss_se", "random_loss",
    "recovered_pct", "samples", "seed", "warnings",
}


@pytest.fixture(autouse=True)
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(REPO)
    return REPO


def everything(result) -> str:
    return result.stdout + result.stderr


def assert_usage_error(result, *needles: str) -> None:
    text = everything(result)
    assert result.exit_code == 2, text
    assert "Traceback" not in text, text
    assert result.stdout == "", f"errors belong on stderr, stdout had {result.stdout!r}"
    for needle in needles:
        assert needle in result.stderr, f"expected {needle!r} in:\n{result.stderr}"


def run_json(*args: str) -> dict:
    result = invoke("run", "--json", *args)
    assert result.exit_code == 0, everything(result)
    return json.loads(result.stdout)  # stdout holds nothing but the JSON document


# --------------------------------------------------------------------------- help and version


def test_help() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for needle in ("Usage:", "--version", "--help", "run", "validate"):
        assert needle in result.stdout


def test_run_help() -> None:
    result = invoke("run", "--help")
    assert result.exit_code == 0
    for option in ("--samples", "-n", "--seed", "-s", "--policy", "per_node", "shared",
                   "independent", "--strict", "--json"):
        assert option in result.stdout, option


def test_validate_help() -> None:
    result = invoke("validate", "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout and "validate" in result.stdout
    assert "--help" in result.stdout


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"casc {__version__}"


def test_no_arguments_shows_help() -> None:
    result = invoke()
    # click >= 8.2 exits 2 (and prints to stderr) for no_args_is_help; older versions exit 0
    assert result.exit_code in (0, 2)
    text = everything(result)
    assert "Usage:" in text and "run" in text and "validate" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("args", [
    ("--bogus",),
    ("run", "--bogus", TRUE),
    ("validate", "--bogus", TRUE),
    ("run", "--policy", "nope", TRUE),
    ("run", "--samples", "many", TRUE),
    ("frobnicate",),
])
def test_bad_usage_exits_2(args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, everything(result)
    assert "Traceback" not in everything(result)
    assert "Usage:" in result.stderr


@pytest.mark.parametrize("command", ["run", "validate"])
def test_no_files_exits_2(command: str) -> None:
    result = invoke(command)
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


# --------------------------------------------------------------------------- option ranges


@pytest.mark.parametrize("args, needle", [
    (("--samples", "0"), "--samples must be at least 2"),
    (("--samples", "1"), "--samples must be at least 2"),
    (("-n", "-5"), "--samples must be at least 2"),
    (("--seed", "-1"), "--seed must be a non-negative integer"),
])
def test_out_of_range_options(args: tuple[str, ...], needle: str) -> None:
    assert_usage_error(invoke("run", *args, TRUE), "error:", needle)


def test_option_checked_before_files() -> None:
    """A bad option is reported even when the files are fine, and nothing runs."""
    result = invoke("run", "--samples", "1", TRUE, SECOND_BIT)
    assert_usage_error(result, "--samples")


# --------------------------------------------------------------------------- table


def test_table_has_one_row_per_file() -> None:
    result = invoke("run", "--samples", "200", TRUE, SECOND_BIT)
    assert result.exit_code == 0, everything(result)
    rows = [line for line in result.stdout.splitlines()
            if line.startswith("│") and "hypotheses/" in line]
    assert len(rows) == 2, result.stdout
    assert TRUE in rows[0] and SECOND_BIT in rows[1]


def test_run_stops_before_sampling_when_any_file_is_invalid(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hypothesis: x\ntask: nowhere.yaml\nnodes: {out: x0}\n", encoding="utf-8")
    result = invoke("run", "--samples", "200", TRUE, str(bad))
    assert_usage_error(result, "does not exist")


# --------------------------------------------------------------------------- JSON


def test_json_schema() -> None:
    data = run_json("--samples", "200", "--seed", "3", TRUE, SECOND_BIT, REVERSED)
    assert data["schema_version"] == 1
    results = data["results"]
    assert isinstance(results, list) and len(results) == 3
    for item, path in zip(results, (TRUE, SECOND_BIT, REVERSED)):
        assert RESULT_KEYS <= item.keys(), RESULT_KEYS - item.keys()
        assert item["hypothesis"] == path
        assert item["samples"] == 200
        assert item["seed"] == 3
        assert isinstance(item["warnings"], list)
        assert all(isinstance(w, str) for w in item["warnings"])
        for key in ("model_loss", "scrubbed_loss", "scrubbed_loss_se", "random_loss"):
            assert isinstance(item[key], (int, float)), (key, item[key])
    assert results[0]["scrubbed_loss"] == 0 and results[0]["recovered_pct"] == pytest.approx(100)
    assert any("vacuous" in w for w in results[2]["warnings"])


def test_same_seed_same_json() -> None:
    first = invoke("run", "--json", "--samples", "300", "--seed", "7", SECOND_BIT, REVERSED)
    second = invoke("run", "--json", "--samples", "300", "--seed", "7", SECOND_BIT, REVERSED)
    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout


def test_different_seed_different_scrubbed_figures() -> None:
    a = run_json("--samples", "300", "--seed", "1", SECOND_BIT)["results"][0]
    b = run_json("--samples", "300", "--seed", "2", SECOND_BIT)["results"][0]
    assert a["scrubbed_loss_se"] > 0
    assert (a["scrubbed_loss"], a["scrubbed_loss_se"]) != (b["scrubbed_loss"], b["scrubbed_loss_se"])
    assert a["model_loss"] == b["model_loss"]  # exact on D, not sampled


@pytest.mark.parametrize("given", [f"./{SECOND_BIT}", str(REPO / SECOND_BIT)],
                         ids=["dot-slash", "absolute"])
def test_json_hypothesis_is_the_path_as_given(given: str) -> None:
    assert run_json("--samples", "20", given)["results"][0]["hypothesis"] == given


# --------------------------------------------------------------------------- a real process


def _casc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from casc_cli.cli import main; main()", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )


def test_real_process_exit_codes() -> None:
    ok = _casc("run", "--json", "--samples", "50", TRUE)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["results"][0]["hypothesis"] == TRUE

    invalid = _casc("validate", "tests/invalid/h_unknown_top_key.yaml")
    assert invalid.returncode == 2
    assert "tests/invalid/h_unknown_top_key.yaml:5:1: unknown key `notes`" in invalid.stderr
    assert invalid.stdout == ""
    assert "Traceback" not in invalid.stderr

    usage = _casc("run", "--seed", "-1", TRUE)
    assert usage.returncode == 2
    assert "--seed" in usage.stderr and "Traceback" not in usage.stderr

    version = _casc("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"casc {__version__}"
