"""Specificity: what each interpretation node stands for, and the scrubbed inputs' entropy.

The exact entropy (a dynamic programme over the slot tree) is checked against
a brute-force enumeration of the scrubbing distribution on small enumerated
tasks, and against the appendix's Fun Fact 3 on the catalogue.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict

import numpy as np
import pytest

from casc_cli import specificity as spec_mod
from casc_cli.api import Session
from casc_cli.specificity import (
    NodeReport,
    Specificity,
    max_input_entropy,
    node_reports,
    relation,
    scrubbed_input_entropy,
    specificity,
    stands_for,
)

TINY_TASK = """\
task: tiny
inputs:
  x0: {int: [0, 1]}
  x1: {int: [0, 2]}
  x2: {int: [0, 1]}
dataset: {enumerate: true}
label: x0 + x1
metric: mae
models:
  m:
    nodes: {u: x0 + x1, v: u * x2, out: u + v}   # u is read twice: 5 treeified paths
    output: out
"""

DIGITS_TASK = """\
task: digits
inputs:
  x0: {int: [0, 2]}
  x1: {int: [0, 2]}
  x2: {int: [0, 1]}
  x3: {int: [0, 1]}
dataset: {enumerate: true}
label: x0 + x1 + x2 + x3
metric: mse
models:
  left_fold:
    nodes: {a: x0 + x1, b: a + x2, out: b + x3}
    output: out
"""

# The same model on a small correlated, non-uniform dataset (rows repeat, inputs are
# dependent), where the policies and the tree's conditional draws make a difference.
CORRELATED_TASK = TINY_TASK.replace("task: tiny", "task: tiny_correlated").replace(
    "{int: [0, 1]}", "{}").replace("{int: [0, 2]}", "{}").replace(
    "dataset: {enumerate: true}", "dataset: {file: correlated.csv}")
CORRELATED_CSV = "x0,x1,x2\n0,0,0\n0,0,0\n0,1,1\n1,1,0\n1,2,1\n1,2,1\n1,0,1\n0,2,0\n"

HYPOTHESES = {
    # Leaves everywhere; u's two uses are claimed by two different nodes (u and w).
    "leaves": """\
        out: {value: u + v}
        u: {value: a0 + a1}
        a0: {value: x0, claims: x0}
        a1: {value: x1, claims: x1}
        v: {value: w * c2}
        w: {value: b0 + b1, claims: u}
        b0: {value: x0, claims: x0}
        b1: {value: x1, claims: x1}
        c2: {value: x2, claims: x2}
    """,
    # Non-leaves with unimportant paths: x1's paths under u, x2's path under out.
    "partial": """\
        out: {value: u * 2}
        u: {value: a0 + x1}
        a0: {value: x0, claims: x0}
    """,
    # Unimportant paths under the root and under a non-root non-leaf.
    "nested": """\
        out: {value: vv + 1}
        vv: {value: uu * x2, claims: v}
        uu: {value: x0 + x1, claims: u}
    """,
    # A leaf whose value is finer than the model node it claims.
    "finer": """\
        out: {value: fine}
        fine: {value: 3 * x0 + x1, claims: u}
    """,
}

DIGITS_TRUE = """\
    out: {value: b + x3}
    b: {value: a + x2}
    a: {value: x0 + x1}
    x0: {value: x0}
    x1: {value: x1}
    x2: {value: x2}
    x3: {value: x3}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("specificity")
    (root / "tiny.yaml").write_text(TINY_TASK)
    (root / "digits.yaml").write_text(DIGITS_TASK)
    (root / "correlated.yaml").write_text(CORRELATED_TASK)
    (root / "correlated.csv").write_text(CORRELATED_CSV)
    paths = {}
    for name, nodes in HYPOTHESES.items():
        for task, suffix in (("tiny", ""), ("correlated", "@corr")):
            path = root / f"{name}{suffix}.yaml"
            path.write_text(f"hypothesis: {name}\ntask: {task}.yaml\nnodes:\n"
                            + textwrap.indent(textwrap.dedent(nodes), "  "))
            paths[name + suffix] = path
    path = root / "digits_true.yaml"
    path.write_text("hypothesis: digits\ntask: digits.yaml\nnodes:\n"
                    + textwrap.indent(textwrap.dedent(DIGITS_TRUE), "  "))
    paths["digits_true"] = path
    return paths


@pytest.fixture(scope="module")
def session():
    return Session()


def prepared(session, path, policy="per_node"):
    return session.prepare(session.compile(path, policy))


def entropy_bits(masses) -> float:
    p = np.array([m for m in masses if m > 0], dtype=float)
    return float(-(p * np.log2(p)).sum())


def brute_force_entropy(prep) -> float:
    """Enumerate the scrubbing distribution: every reference row, every node slot's
    choice within its parent's class, every other slot over D.

    Slots are assigned in plan order (parents first). A partial outcome is the
    rows of the slots assigned so far and the input values of the paths they
    feed; a slot's row is forgotten once no later slot is drawn from it, and
    identical partial outcomes are merged (an exact forward enumeration; the
    merging only keeps it small).
    """
    plan = prep.hypothesis.plan
    n = prep.dataset.size
    inputs = prep.dataset.inputs
    paths = sorted(plan.path_slots)
    reads = defaultdict(list)
    for i, path in enumerate(paths):
        reads[plan.path_slots[path]].append(i)
    last_use = {i: max([j for j, s in enumerate(plan.slots) if s.parent == i], default=-1)
                for i in range(len(plan.slots))}
    states: dict[tuple, float] = {((), ()): 1.0}  # (((slot, row), ...), ((path index, value), ...))
    for i, slot in enumerate(plan.slots):
        new: dict[tuple, float] = defaultdict(float)
        for (rows, values), mass in states.items():
            known = dict(rows)
            if slot.kind == "node":
                labels = prep.classes[slot.node].labels
                choices = np.flatnonzero(labels == labels[known[slot.parent]]).tolist()
            else:  # the reference, or an "other inputs" datum: uniform over D
                choices = range(n)
            for row in choices:
                vals = values + tuple((k, inputs[paths[k][0]][row].tobytes()) for k in reads[i])
                kept = tuple((s, r) for s, r in rows + ((i, row),) if last_use[s] > i)
                new[(kept, tuple(sorted(vals)))] += mass / len(choices)
        states = new
    outcome: dict[tuple, float] = defaultdict(float)
    for (rows, values), mass in states.items():
        assert not rows and len(values) == len(paths)
        outcome[values] += mass
    assert math.isclose(sum(outcome.values()), 1.0)
    return entropy_bits(outcome.values())


BRUTE_CASES = [
    ("hypotheses/xor/first_bit.yaml", "per_node"),
    ("hypotheses/xor/second_bit.yaml", "per_node"),
    ("leaves", "per_node"),
    ("partial", "per_node"),
    ("partial", "shared"),
    ("partial", "independent"),
    ("nested", "per_node"),
    ("nested", "shared"),
    ("nested", "independent"),
    ("finer", "per_node"),
    ("digits_true", "per_node"),
    ("leaves@corr", "per_node"),
    ("partial@corr", "per_node"),
    ("partial@corr", "shared"),
    ("partial@corr", "independent"),
    ("nested@corr", "per_node"),
    ("nested@corr", "shared"),
    ("nested@corr", "independent"),
    ("finer@corr", "per_node"),
]


@pytest.mark.parametrize("name,policy", BRUTE_CASES)
def test_entropy_matches_brute_force(session, files, name, policy):
    prep = prepared(session, files.get(name, name), policy)
    exact = scrubbed_input_entropy(prep)
    assert exact is not None
    assert exact == pytest.approx(brute_force_entropy(prep), abs=1e-9)
    assert exact <= max_input_entropy(prep) + 1e-9


def test_policies_give_different_entropies(session, files):
    # "partial" has unimportant paths x1->u (twice: via out and via v) under u and
    # x2 under out. Independent draws per path can only add entropy.
    figures = {p: scrubbed_input_entropy(prepared(session, files["partial"], p))
               for p in ("per_node", "shared", "independent")}
    assert figures["shared"] <= figures["per_node"] + 1e-12 <= figures["independent"] + 2e-12
    assert figures["per_node"] < figures["independent"]
    # On correlated data, one shared datum for x1 and x2 keeps their dependence.
    corr = {p: scrubbed_input_entropy(prepared(session, files["partial@corr"], p))
            for p in ("per_node", "shared", "independent")}
    assert corr["shared"] < corr["per_node"] < corr["independent"]


def test_enumerated_product_dataset_reaches_the_maximum(session, files):
    # D is every combination once, so the inputs are independent and uniform; the
    # scrubbed distribution is the maximum-entropy one subject to Lemma 1, and D's own
    # joint (uniform on the product, entropy = max) satisfies those constraints.
    prep = prepared(session, files["digits_true"])
    s = specificity(prep)
    assert s.max_entropy_bits == pytest.approx(2 * math.log2(3) + 2)
    assert s.entropy_bits == pytest.approx(s.max_entropy_bits, abs=1e-9)
    assert s.claimed_bits == pytest.approx(0.0, abs=1e-9)


def test_tiny_node_reports(session, files):
    nested = {r.name: r for r in node_reports(prepared(session, files["nested"]))}
    # out owns x0->u->out and x1->u->out (nothing under it claims u there): {out, u};
    # paths through v go on to vv at v: {out}. vv: {v}. uu is a leaf claiming u.
    assert {k: r.stands_for for k, r in nested.items()} == {"out": 2, "vv": 1, "uu": 1}
    assert nested["uu"].relation == "equivalent"  # x0 + x1 is the model's u
    assert nested["vv"].relation == "equivalent"  # (x0 + x1) * x2 is the model's v
    # out = u*x2 + 1 against the model's out = u*(1 + x2), u in 0..3, x2 in 0..1: model value
    # 2 is (u=2, x2=0) -> 1 and (u=1, x2=1) -> 2, and value 1 of ours (x2 = 0) spans every u.
    assert nested["out"].relation == "different"

    leaves = node_reports(prepared(session, files["leaves"]))
    assert [r.name for r in leaves] == ["out", "u", "a0", "a1", "v", "w", "b0", "b1", "c2"]
    assert all(r.relation == "equivalent" for r in leaves)
    assert [r.stands_for for r in leaves] == [1, 1, 0, 0, 1, 1, 0, 0, 0]

    finer = {r.name: r for r in node_reports(prepared(session, files["finer"]))}
    assert finer["fine"].relation == "finer"  # 3*x0 + x1 is injective; x0 + x1 is not
    assert finer["fine"].classes == 6 and finer["fine"].stands_for == 1
    # the root reads `fine` only; it stands for out and v (the x2 path ends at it)
    assert finer["out"].stands_for == 2


def test_relation_helper():
    a = np.array([0, 0, 1, 1])
    b = np.array([0, 1, 2, 3])
    assert relation(a, b) == "coarser"
    assert relation(b, a) == "finer"
    assert relation(b * 10.0, b) == "equivalent"
    assert relation(np.array([0, 1, 0, 1]), a) == "different"
    vectors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    assert relation(vectors, b) == "equivalent"  # vectors compare whole rows
    assert relation(vectors[:, 0], vectors) == "coarser"


def test_limit_gives_none(session, files, monkeypatch):
    monkeypatch.setattr(spec_mod, "MAX_STATES", 3)
    prep = prepared(session, files["leaves"])
    assert scrubbed_input_entropy(prep) is None
    s = specificity(prep)
    assert s.entropy_bits is None and s.claimed_bits is None
    assert s.max_entropy_bits == pytest.approx(max_input_entropy(prep))


# --------------------------------------------------------------------------- the catalogue


def reports(session, path) -> dict[str, NodeReport]:
    return {r.name: r for r in node_reports(prepared(session, path))}


def H(*columns) -> float:
    """Empirical entropy over D of the joint value of some columns."""
    _, counts = np.unique(np.stack(columns, axis=1), axis=0, return_counts=True)
    return entropy_bits(counts / counts.sum())


def test_reciprocal_stands_for_and_relations(session):
    greater = reports(session, "hypotheses/reciprocal/greater.yaml")
    exact = reports(session, "hypotheses/reciprocal/exact.yaml")
    # x0 > x1 stands for r0, r1 and out; the exact root only for out.
    assert greater["out"].stands_for == 3
    assert exact["out"].stands_for == 1
    assert [exact[k].stands_for for k in ("r0", "r1", "x0", "x1")] == [1, 1, 0, 0]
    assert all(r.relation == "equivalent" for r in exact.values())
    # x0 > x1 and 1/x0 < 1/x1 split D the same way (digits 1-9).
    assert greater["out"].relation == "equivalent"
    assert greater["out"].classes == 2
    # Both are extensionally equivalent trees of the same shape on the inputs: same entropy.
    e = [scrubbed_input_entropy(prepared(session, f"hypotheses/reciprocal/{k}.yaml"))
         for k in ("greater", "exact")]
    assert e[0] == pytest.approx(e[1], abs=1e-9)


def test_xor_relations(session):
    second = reports(session, "hypotheses/xor/second_bit.yaml")
    first = reports(session, "hypotheses/xor/first_bit.yaml")
    # x[1] is a function of x (2 classes against 4): it merges x's classes.
    assert second["bit"].relation == "coarser"
    assert first["bit"].relation == "coarser"
    # The roots claim out = x[0]: x[0] is the same partition, x[1] an unrelated one.
    assert first["out"].relation == "equivalent"
    assert second["out"].relation == "different"
    # One path (x -> out), reading a datum uniform over the four inputs.
    for name in ("first_bit", "second_bit"):
        s = specificity(prepared(session, f"hypotheses/xor/{name}.yaml"))
        assert (s.entropy_bits, s.max_entropy_bits) == pytest.approx((2.0, 2.0))


def test_sum4_true(session):
    prep = prepared(session, "hypotheses/sum4/true.yaml")
    rs = node_reports(prep)
    # Every node, leaves included, computes exactly the model node it claims: the leaves
    # are the inputs themselves and a, b, out are the same sums (so the same partitions).
    assert all(r.relation == "equivalent" for r in rs)
    assert [(r.name, r.stands_for) for r in rs] == [
        ("out", 1), ("b", 1), ("a", 1), ("x0", 0), ("x1", 0), ("x2", 0), ("x3", 0)]

    x0, x1, x2, x3 = (prep.dataset.inputs[k] for k in ("x0", "x1", "x2", "x3"))
    a, b = x0 + x1, x0 + x1 + x2
    s = specificity(prep)
    # The maximum: four paths, each reading its own uniform datum.
    assert s.max_entropy_bits == pytest.approx(H(x0) + H(x1) + H(x2) + H(x3), abs=1e-9)
    # Fun Fact 3: H(out) plus, per node, H(its inputs) - H(its output):
    # H(out) + [H(b,x3) - H(out)] + [H(a,x2) - H(b)] + [H(x0,x1) - H(a)] + 0 for leaves.
    fun_fact = H(b, x3) + H(a, x2) + H(x0, x1) - H(b) - H(a)
    assert s.entropy_bits == pytest.approx(fun_fact, abs=1e-9)
    # The scrubbed inputs do not pin r's four digits (x0, x1 come from a datum that only
    # shares a = x0 + x1 with b's datum, which only shares b with r). D's own joint meets
    # Lemma 1's constraints, and the scrubbed distribution is the maximum-entropy one
    # (Theorem 2), so it is at least H(joint of D); on this sampled D strictly more.
    joint = H(x0, x1, x2, x3)
    assert s.entropy_bits > joint + 0.5
    assert s.entropy_bits < s.max_entropy_bits
    # Leaves right under the root do pin r's digits: sum_offset/all reads r's inputs.
    off = prepared(session, "hypotheses/sum_offset/all.yaml")
    inputs = [off.dataset.inputs[k] for k in ("x0", "x1", "x2", "x3")]
    assert scrubbed_input_entropy(off) == pytest.approx(H(*inputs), abs=1e-9)

    reversed_ = prepared(session, "hypotheses/sum4/reversed.yaml")
    # Every path unimportant: (x0, x1) read a's other datum, x2 b's, x3 out's.
    assert scrubbed_input_entropy(reversed_) == pytest.approx(H(x0, x1) + H(x2) + H(x3))
    assert scrubbed_input_entropy(reversed_) > s.entropy_bits
    assert max_input_entropy(reversed_) == pytest.approx(s.max_entropy_bits)


def test_sum4_reversed_relations(session):
    rs = reports(session, "hypotheses/sum4/reversed.yaml")
    # b = x3 + x2 + x1 against the model's x0 + x1 + x2: different partitions.
    assert rs["b"].relation == "different" and rs["a"].relation == "different"
    assert rs["out"].relation == "equivalent"  # the full sum, in another order
    assert {k: r.stands_for for k, r in rs.items()} == {
        "out": 1, "b": 1, "a": 1, "x3": 0, "x2": 0, "x1": 0, "x0": 0}


def test_specificity_dataclass(session):
    s = specificity(prepared(session, "hypotheses/sum4/true.yaml"))
    assert isinstance(s, Specificity)
    assert s.claimed_bits == pytest.approx(s.max_entropy_bits - s.entropy_bits)
    with pytest.raises(AttributeError):
        s.entropy_bits = 0.0  # frozen


def test_stands_for_leaf_is_subtree(session):
    c = session.compile("hypotheses/sum_offset/first_three.yaml")
    # One root over x0..x2 leaves; the x3 path is unimportant and ends at the root.
    assert stands_for(c) == {"out": 1, "x0": 0, "x1": 0, "x2": 0}
