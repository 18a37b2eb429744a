"""Worst-case scrubbing (casc_cli.adversary) against brute force and the catalogue.

The brute force shares nothing with the adversary's search or the engine's
recipe: it takes path ownership and equivalence classes from the naive
reference (tests/naive.py), enumerates every allowed assignment of data to the
interpretation nodes and "other inputs" for each reference, evaluates the
treeified model recursively on all of them at once and keeps the worst.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from casc_cli import engine
from casc_cli.adversary import (WorstCase, reference_rows, worst_case,
                                worst_case_file, worst_values)
from casc_cli.api import Session
from casc_cli.errors import UsageError
from casc_cli.metrics import metric_values

from naive import NaiveRunner

# --------------------------------------------------------------------------- brute force


def brute_force_worst(compiled, dataset, policy: str) -> np.ndarray:
    """The worst metric over every allowed assignment, for each row of D as the reference."""
    runner = NaiveRunner(compiled, dataset)
    n = dataset.size
    owners = runner._owner
    needed: set[str] = set()
    for node, _ in owners.values():
        while node is not None and node not in needed:
            needed.add(node)
            node = runner.nodes[node].parent
    order = [name for name in runner._preorder() if name in needed]
    members = {}  # node -> (class label per row, rows of each class)
    for name in order[1:]:
        keys = runner._keys(name)
        ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        labels = np.array([ids[k] for k in keys])
        members[name] = (labels, [np.flatnonzero(labels == c) for c in range(len(ids))])
    other_keys: list[object] = []
    for path, (node, unimportant) in owners.items():
        if unimportant:
            key = {"per_node": ("node", node), "shared": "shared"}.get(policy, ("path", path))
            if key not in other_keys:
                other_keys.append(key)
    metric = compiled.task.metric
    labels_d = compiled.task.label.evaluate(dataset.inputs, n)
    sign = -1.0 if metric.higher_is_better else 1.0
    worst = np.empty(n)
    for r in range(n):
        columns = {order[0]: np.array([r])}
        for name in order[1:]:  # expand every assignment by the rows of the node's class
            parent = columns[runner.nodes[name].parent]
            labels, classes = members[name]
            choices = [classes[labels[p]] for p in parent]
            counts = np.array([len(c) for c in choices])
            columns = {k: np.repeat(v, counts) for k, v in columns.items()}
            columns[name] = np.concatenate(choices)
        for key in other_keys:  # every row of D for each "other inputs" datum
            size = len(next(iter(columns.values())))
            columns = {k: np.repeat(v, n) for k, v in columns.items()}
            columns[key] = np.tile(np.arange(n), size)
        size = len(columns[order[0]])

        def rows_of(path):
            node, unimportant = owners[path]
            if not unimportant:
                return columns[node]
            key = {"per_node": ("node", node), "shared": "shared"}.get(policy, ("path", path))
            return columns[key]

        def value(node, suffix):
            if node in runner.input_names:
                return dataset.inputs[node][rows_of((node, *suffix))]
            env = {p: value(p, (node, *suffix)) for p in runner.model.reads[node]}
            return runner.model.formulas[node].evaluate(env, size)

        out = value(runner.model.output, ())
        ref = np.full(size, r)
        values = metric_values(metric, out, labels_d[ref],
                               {k: v[ref] for k, v in dataset.inputs.items()})
        worst[r] = sign * np.max(sign * values)
    return worst


# --------------------------------------------------------------------------- tiny tasks

TASK = """\
task: tiny
inputs:
  a: {int: [0, 2]}
  b: {int: [0, 1]}
  c: {int: [0, 1]}
dataset: {enumerate: true}
label: a + b * c
metric: mse
models:
  first:
    nodes: {p: a + b, q: b * c, out: p + q + a * c}
    output: out
  second:
    nodes: {s: a + b, out: s * c + a}
    output: out
  product:
    nodes: {ma: a, mb: b, out: ma * mb}
    output: out
"""

REWARD_TASK = TASK.replace("metric: mse", "metric: {formula: 'where(out == label, 1, "
                                          "-abs(out - label))', higher_is_better: true}")

HYPOTHESES = {
    # every node below the root has children or is a leaf; unimportant a -> out, c -> out
    "deep": ("first", """\
        out: {value: p + q}
        p: {value: pa + pb}
        q: {value: bq * cq}
        pa: {value: a, claims: a}
        pb: {value: b, claims: b}
        bq: {value: b, claims: b}
        cq: {value: c, claims: c}
    """),
    # one leaf standing for s, the rest unimportant
    "leaf_and_other": ("second", """\
        out: {value: s}
        s: {value: a + b}
    """),
    # a coarse leaf (a only) for s, a and c claimed: one free slot, exact
    "coarse_leaf": ("second", """\
        out: {value: s2 * c + xa}
        s2: {value: a, claims: s}
        xa: {value: a, claims: a}
        c: {value: c}
    """),
    # s claimed exactly (3a + b separates every (a, b)): the only freedom is unimportant
    "rigid_then_other": ("second", """\
        out: {value: s}
        s: {value: 2 * a + b}
    """),
    # an internal node whose children vary below it
    "nested": ("second", """\
        out: {value: s + c}
        s: {value: xa}
        xa: {value: a, claims: a}
        c: {value: c}
    """),
    # two constant leaves: each swap alone changes nothing, both together do
    "product": ("product", """\
        out: {value: ka + kb}
        ka: {value: 0, claims: ma}
        kb: {value: 0, claims: mb}
    """),
}


def write(tmp_path, key: str, task_text: str = TASK):
    (tmp_path / "task.yaml").write_text(task_text)
    model, nodes = HYPOTHESES[key]
    path = tmp_path / f"{key}.yaml"
    path.write_text(f"hypothesis: {key}\ntask: task.yaml\nmodel: {model}\nnodes:\n"
                    + textwrap.indent(textwrap.dedent(nodes), "  "))
    return path


def prepared_for(path, policy="per_node"):
    session = Session()
    compiled = session.compile(path, policy)
    return compiled, session.prepare(compiled)


@pytest.mark.parametrize("policy", ["per_node", "shared", "independent"])
@pytest.mark.parametrize("key", sorted(HYPOTHESES))
def test_against_brute_force(tmp_path, key, policy):
    compiled, prepared = prepared_for(write(tmp_path, key), policy)
    rows = np.arange(prepared.dataset.size)
    found = worst_values(prepared, rows)
    brute = brute_force_worst(compiled, prepared.dataset, policy)
    assert (found.metric >= prepared.model_metric).all()  # never better than the model
    assert (found.metric <= brute + 1e-12).all()  # every figure is reached by an allowed swap
    np.testing.assert_array_equal(found.metric[found.exact], brute[found.exact])


@pytest.mark.parametrize("key", ["coarse_leaf", "rigid_then_other", "deep"])
def test_reward_metric_takes_the_smallest_reward(tmp_path, key):
    compiled, prepared = prepared_for(write(tmp_path, key, REWARD_TASK))
    found = worst_values(prepared, np.arange(prepared.dataset.size))
    brute = brute_force_worst(compiled, prepared.dataset, "per_node")
    assert (found.metric <= prepared.model_metric).all()
    assert (found.metric >= brute - 1e-12).all()
    np.testing.assert_array_equal(found.metric[found.exact], brute[found.exact])


@pytest.mark.parametrize("key, exact", [("coarse_leaf", True), ("rigid_then_other", True),
                                        ("leaf_and_other", False), ("product", False)])
def test_exact_flag(tmp_path, key, exact):
    _, prepared = prepared_for(write(tmp_path, key))
    assert worst_values(prepared, np.arange(prepared.dataset.size)).exact.all() == exact


def test_greedy_is_a_lower_bound_when_swaps_only_matter_together(tmp_path):
    # out = ma * mb, both claimed by constant leaves: on a reference with a = b = 0,
    # swapping a or b alone leaves the output at 0; swapping both can make it 2
    compiled, prepared = prepared_for(write(tmp_path, "product"))
    found = worst_values(prepared, np.arange(prepared.dataset.size))
    brute = brute_force_worst(compiled, prepared.dataset, "per_node")
    zero = (prepared.dataset.inputs["a"] == 0) & (prepared.dataset.inputs["b"] == 0)
    assert (found.metric[zero] < brute[zero]).all()
    assert not found.exact[zero].any()


def test_capped_candidates_are_a_lower_bound(tmp_path):
    _, prepared = prepared_for(write(tmp_path, "leaf_and_other"))
    rows = np.arange(prepared.dataset.size)
    full = worst_values(prepared, rows)
    capped = worst_values(prepared, rows, max_candidates=2)
    assert capped.capped.any() and not full.capped.any()
    assert not capped.exact[capped.capped].any()
    assert (capped.metric <= full.metric + 1e-12).all()


def test_evaluate_plan_with_every_slot_on_the_reference_is_the_model(tmp_path):
    _, prepared = prepared_for(write(tmp_path, "deep"))
    rows = np.arange(prepared.dataset.size)
    out = engine.evaluate_plan(prepared, [rows] * len(prepared.hypothesis.plan.slots))
    np.testing.assert_array_equal(out, prepared.model_outputs)


# --------------------------------------------------------------------------- references


def test_sampled_references_are_the_engines():
    session = Session()
    prepared = session.prepare(session.compile("hypotheses/sum4/true.yaml"))
    references, every_row = reference_rows(prepared, 1000, seed=5)
    assert not every_row and len(references) == 1000
    engine_refs, _ = engine.scrubbed_outputs(prepared, 5, 0, 1000)
    np.testing.assert_array_equal(references, engine_refs)
    result = worst_case(prepared, 1000, 5)
    assert not result.every_row and result.references == 1000 and result.worst_loss_se == 0


def test_small_dataset_uses_every_row_once():
    session = Session()
    prepared = session.prepare(session.compile("hypotheses/xor/second_bit.yaml"))
    references, every_row = reference_rows(prepared, 10, seed=0)
    assert every_row and references.tolist() == [0, 1, 2, 3]


def test_sampled_figure_has_a_standard_error():
    r = worst_case_file("hypotheses/sum_offset/first_three.yaml", samples=2000, seed=1)
    assert not r.every_row and r.references == 2000
    assert r.exact and abs(r.worst_loss - 3.0) < 4 * r.worst_loss_se
    assert r.excess_se > 0


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError):
        worst_case_file("hypotheses/xor/second_bit.yaml", samples=1)


# --------------------------------------------------------------------------- catalogue


@pytest.fixture(scope="module")
def session():
    return Session()


def catalogue(session, name) -> WorstCase:
    return worst_case_file(f"hypotheses/{name}.yaml", session=session)


def test_xor_second_bit_worst_case_is_one(session):
    r = catalogue(session, "xor/second_bit")
    assert r.model_loss == 0.5 and r.worst_loss == 1.0
    assert r.exact and r.every_row and r.worst_loss_se == 0


def test_sum_offset_first_three_worst_case(session):
    # error 2 + x3' - x3 with x3' free: 4 where x3 = -1, 2 where x3 = 1 (3.0 in expectation;
    # exactly 2 + 2 P(x3 = -1) over this D)
    r = catalogue(session, "sum_offset/first_three")
    x3 = Session().dataset(Session().compile(
        "hypotheses/sum_offset/first_three.yaml").loaded.task).inputs["x3"]
    assert r.exact and r.every_row
    assert r.worst_loss == pytest.approx(2 + 2 * np.mean(x3 == -1), abs=1e-12)
    assert r.worst_loss > 2.9


@pytest.mark.parametrize("name", ["xor/first_bit", "sum_offset/all", "sum4/true",
                                  "sum4/swap_first_pair", "reciprocal/exact",
                                  "reciprocal/greater"])
def test_true_hypotheses_keep_the_model_loss(session, name):
    r = catalogue(session, name)
    assert r.worst_loss == r.model_loss and r.excess == 0
    assert r.every_row


def test_dropout_worst_case(session):
    # m2 resampled freely: the adversary picks v' = -3 or 3 against the reference's v
    r = catalogue(session, "dropout/m2_unimportant")
    assert r.exact and r.worst_loss > 7.5
