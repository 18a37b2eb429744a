"""casc compare: permutations, grouping, JSON, plots."""

from __future__ import annotations

import builtins
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from casc_cli.cli import app
from casc_cli.compare import assign_groups, z_two_sided
from casc_cli.errors import UsageError
from casc_cli.spec.loader import load_hypothesis
from casc_cli.spec.transform import permutations

TRUE = Path("hypotheses/sum4/true.yaml")
runner = CliRunner()


def test_permutations_count_names_and_substitution():
    variants = list(permutations(load_hypothesis(TRUE), ["x0", "x1", "x2", "x3"]))
    assert len(variants) == 24
    assert len({v.label for v in variants}) == 24
    assert variants[0].label == "x0 x1 x2 x3"
    assert variants[0].loaded.spec == load_hypothesis(TRUE).spec  # identity unchanged
    by_label = {v.label: v.loaded.spec for v in variants}
    spec = by_label["x2 x1 x0 x3"]
    assert list(spec.nodes) == ["out", "b", "a", "x2", "x1", "x0", "x3"]
    assert spec.nodes["a"].value == "x2 + x1"
    assert spec.nodes["b"].value == "a + x0"
    assert spec.nodes["x2"].value == "x2"


def test_permutation_substitutes_explicit_claims():
    variants = list(permutations(load_hypothesis(Path("hypotheses/xor/second_bit.yaml")),
                                 ["bit", "out"]))
    assert [v.label for v in variants] == ["bit out", "out bit"]
    swapped = variants[1].loaded.spec
    assert list(swapped.nodes) == ["bit", "out"]
    assert swapped.nodes["bit"].value == "out"
    assert swapped.nodes["out"].claims == "x"


@pytest.mark.parametrize("symbols, message", [
    (["x0"], "at least two"),
    (["x0", "x0"], "twice"),
    (["x0", "nope"], "does not appear"),
])
def test_permutation_usage_errors(symbols, message):
    with pytest.raises(UsageError, match=message):
        list(permutations(load_hypothesis(TRUE), symbols))


def test_groups_identical_together_and_different_apart():
    assert assign_groups([1.0, 1.0, 1.0], [0.1, 0.1, 0.1]) == [1, 1, 1]
    assert assign_groups([0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 0.1, 0.1]) == [1, 1, 2, 2]
    # 1.0 apart with SE 0.1 is ~7 standard errors of the difference: distinct.
    assert assign_groups([0.0, 1.0, 2.0], [0.1, 0.1, 0.1]) == [1, 2, 3]


def test_groups_do_not_chain():
    # Each neighbour is within reach of the previous one, but the drift from the
    # group's first member is not: a new group starts.
    z = z_two_sided(1 - 0.05 / 4)
    step = 0.9 * z * math.sqrt(2) * 0.1
    means = [i * step for i in range(5)]
    groups = assign_groups(means, [0.1] * 5)
    assert groups[0] == groups[1]
    assert groups[-1] > groups[0]


def test_compare_sum4_permutations_ranked_and_grouped():
    result = runner.invoke(app, ["compare", str(TRUE), "--permute", "x0,x1,x2,x3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    rows = {r["label"]: r for r in data["results"]}
    assert len(rows) == 24
    assert [r["rank"] for r in data["results"]] == list(range(1, 25))
    losses = [r["scrubbed_loss"] for r in data["results"]]
    assert losses == sorted(losses)
    # the two orders that differ only inside the first addition: one group, at the top
    assert rows["x0 x1 x2 x3"]["group"] == rows["x1 x0 x2 x3"]["group"] == 1
    assert rows["x0 x1 x2 x3"]["scrubbed_loss"] == 0
    # reversed sits with the random baseline
    assert rows["x3 x2 x1 x0"]["group"] == data["comparison"]["random_group"]
    for item in data["results"]:
        assert item["ci_low"] <= item["scrubbed_loss"] <= item["ci_high"]
        assert {"hypothesis", "model_loss", "scrubbed_loss_se", "random_loss", "recovered_pct",
                "samples", "seed", "warnings", "group"} <= set(item)


def test_compare_shares_random_numbers_across_hypotheses():
    # common random numbers: different hypotheses whose recipes coincide (every claim below
    # the root vacuous) get identical figures, not merely close ones
    result = runner.invoke(app, ["compare", str(TRUE), "--permute", "x0,x1,x2,x3", "--json",
                                 "-n", "3000"])
    rows = {r["label"]: r for r in json.loads(result.stdout)["results"]}
    a, b = rows["x2 x3 x0 x1"], rows["x3 x2 x1 x0"]
    assert a["scrubbed_loss"] == b["scrubbed_loss"] and a["scrubbed_loss_se"] > 0


def test_compare_table_lists_every_hypothesis_and_the_baseline():
    result = runner.invoke(app, ["compare", "hypotheses/xor/first_bit.yaml",
                                 "hypotheses/xor/second_bit.yaml"])
    assert result.exit_code == 0, result.output
    assert "first_bit" in result.stdout and "second_bit" in result.stdout
    assert "random baseline" in result.stdout


def test_compare_rejects_mixed_tasks():
    result = runner.invoke(app, ["compare", str(TRUE), "hypotheses/xor/first_bit.yaml"])
    assert result.exit_code == 2
    assert "one task and model" in result.output


def test_plot_written(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "sum4.svg"
    result = runner.invoke(app, ["compare", str(TRUE), "--permute", "x0,x1", "--plot",
                                 str(target), "-n", "500"])
    assert result.exit_code == 0, result.output
    assert target.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_plot_without_matplotlib_says_how_and_still_prints(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    target = tmp_path / "out.png"
    result = runner.invoke(app, ["compare", str(TRUE), "--permute", "x0,x1", "--plot",
                                 str(target), "-n", "500"])
    assert result.exit_code == 0
    assert "pip install" in result.output and "matplotlib" in result.output
    assert "x1 x0" in result.stdout
    assert not target.exists()


def test_plot_bad_suffix_is_usage_error(tmp_path):
    result = runner.invoke(app, ["compare", str(TRUE), "--plot", str(tmp_path / "x.txt")])
    assert result.exit_code == 2
