"""Joins of hypotheses (casc_cli.join): identities, partitions and errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from casc_cli import engine
from casc_cli.api import Session
from casc_cli.errors import CascError, GraphError, UsageError
from casc_cli.join import join_files, same_partition

SAMPLES, SEED = 4000, 11


def labels(values: np.ndarray) -> np.ndarray:
    _, out = np.unique(values.reshape(len(values), -1), axis=0, return_inverse=True)
    return out.reshape(-1)


def partitions(session: Session, compiled) -> dict[str, np.ndarray]:
    prepared = session.prepare(compiled)
    return {name: labels(v) for name, v in prepared.node_values.items()}


def scrub(session: Session, compiled):
    return engine.scrub(session.prepare(compiled), SAMPLES, SEED)


@pytest.fixture(scope="module")
def session():
    return Session()


CATALOGUE = ["xor/second_bit", "sum4/true", "sum4/reversed", "sum_offset/first_three",
             "reciprocal/exact", "reciprocal/greater", "dropout/m2_unimportant"]


@pytest.mark.parametrize("name", CATALOGUE)
def test_join_with_itself_is_the_same_hypothesis(session, tmp_path, name):
    path = f"hypotheses/{name}.yaml"
    joined = join_files(path, path, tmp_path / "joined.yaml", session)
    original = session.compile(path)
    before, after = partitions(session, original), partitions(session, joined.compiled)
    assert set(before) == set(after)
    for node in before:
        assert same_partition(before[node], after[node]), node
    a, b = scrub(session, original), scrub(session, joined.compiled)
    # same tree, same classes, same streams: the same draws, to the bit
    assert (a.scrubbed_loss, a.scrubbed_loss_se, a.per_sample_gap) == \
        (b.scrubbed_loss, b.scrubbed_loss_se, b.per_sample_gap)


@pytest.mark.parametrize("first, second", [("xor/first_bit", "xor/second_bit"),
                                           ("sum4/true", "sum4/swap_first_pair")])
def test_join_is_symmetric(session, tmp_path, first, second):
    a, b = (f"hypotheses/{n}.yaml" for n in (first, second))
    ab = join_files(a, b, tmp_path / "ab.yaml", session)
    ba = join_files(b, a, tmp_path / "ba.yaml", session)
    pa, pb = partitions(session, ab.compiled), partitions(session, ba.compiled)
    names_b = join_files(a, b, tmp_path / "ab.yaml", session).names  # b's node -> joined name
    for node_b, node_ab in names_b.items():
        assert same_partition(pa[node_ab], pb[node_b])
    r_ab, r_ba = scrub(session, ab.compiled), scrub(session, ba.compiled)
    assert r_ab.scrubbed_loss == r_ba.scrubbed_loss


@pytest.mark.parametrize("first, second", [("xor/first_bit", "xor/second_bit"),
                                           ("sum4/true", "sum4/swap_first_pair"),
                                           ("reciprocal/exact", "reciprocal/exact")])
def test_joined_partition_is_the_meet(session, tmp_path, first, second):
    a, b = (f"hypotheses/{n}.yaml" for n in (first, second))
    joined = join_files(a, b, tmp_path / "j.yaml", session)
    pa = partitions(session, session.compile(a))
    pb = partitions(session, session.compile(b))
    pj = partitions(session, joined.compiled)
    for node_b, node in joined.names.items():
        meet = labels(np.stack([pa[node], pb[node_b]], axis=1))
        assert same_partition(meet, pj[node])


def test_xor_join_of_both_bits_keeps_every_input(session, tmp_path):
    joined = join_files("hypotheses/xor/first_bit.yaml", "hypotheses/xor/second_bit.yaml",
                        tmp_path / "j.yaml", session)
    r = scrub(session, joined.compiled)
    assert r.per_sample_gap == 0  # the class of `bit` is the whole input: nothing is resampled


def test_written_file_validates_and_runs_the_same(session, tmp_path):
    out = tmp_path / "sub" / "joined.yaml"
    out.parent.mkdir()
    joined = join_files("hypotheses/sum4/true.yaml", "hypotheses/sum4/swap_first_pair.yaml",
                        out, session)
    out.write_text(joined.text)
    assert Session().validate(out).kind == "hypothesis"
    ran = Session().run(out, samples=SAMPLES, seed=SEED)
    assert ran.scrubbed_loss == scrub(session, joined.compiled).scrubbed_loss
    text = joined.text
    assert text.startswith("# casc join") and "pair(" in text
    task = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("task:"))
    assert (out.parent / task).resolve() == Path("tasks/sum4.yaml").resolve()


# --------------------------------------------------------------------------- tiny tasks

TASK = """\
task: tiny
inputs:
  a: {int: [0, 2]}
  b: {int: [0, 2]}
  v: {int: [0, 1], shape: [2]}
dataset: {enumerate: true}
label: a + b
metric: mae
models:
  add:
    nodes:
      s: a + b
      out: "s + v[0]"
    output: out
  other:
    nodes: {out: a - b}
    output: out
"""


def hypothesis(tmp_path: Path, name: str, nodes: str, model: str = "add") -> Path:
    (tmp_path / "task.yaml").write_text(TASK)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"hypothesis: {name}\ntask: task.yaml\nmodel: {model}\nnodes:\n"
                    + textwrap.indent(textwrap.dedent(nodes), "  "))
    return path


def test_different_hypotheses_same_shape(session, tmp_path):
    a = hypothesis(tmp_path, "a", """\
        out: {value: s + v}
        s: {value: a % 2}
        v: {value: v}
    """)
    b = hypothesis(tmp_path, "b", """\
        out: {value: t + w}
        t: {value: b, claims: s}
        w: {value: "v[1]", claims: v}
    """)
    ab = join_files(a, b, tmp_path / "ab.yaml", session)
    ba = join_files(b, a, tmp_path / "ba.yaml", session)
    assert "pair(a % 2, b)" in ab.text  # s keeps a's name; b's children map to a's by claim
    pab, pba = partitions(session, ab.compiled), partitions(session, ba.compiled)
    for node_b, node in ab.names.items():
        assert same_partition(pab[node], pba[node_b])
    x, y = scrub(session, ab.compiled), scrub(session, ba.compiled)
    assert x.scrubbed_loss == y.scrubbed_loss  # same preorder: common random numbers line up


def test_vector_values_are_sliced(session, tmp_path):
    a = hypothesis(tmp_path, "a", """\
        out: {value: "s + w[0]"}
        s: {value: a + b}
        w: {value: v, claims: v}
    """)
    b = hypothesis(tmp_path, "b", """\
        out: {value: s + w}
        s: {value: a}
        w: {value: "v[1]", claims: v}
    """)
    joined = join_files(a, b, tmp_path / "j.yaml", session)
    # a's w is the whole 2-vector v (w[0:2]), b's the scalar v[1] (w[2])
    assert "pair(s[0] + w[0:2][0], s[1] + w[2])" in joined.text
    (tmp_path / "j.yaml").write_text(joined.text)
    twice = join_files(tmp_path / "j.yaml", a, tmp_path / "jj.yaml", session)
    pj, pjj = partitions(session, joined.compiled), partitions(session, twice.compiled)
    for node in pj:  # join(join(a, b), a) = join(a, b)
        assert same_partition(pj[node], pjj[node])


def test_second_formula_reading_an_input_named_like_a_node(session, tmp_path):
    a = hypothesis(tmp_path, "a", """\
        out: {value: s + b}
        s: {value: a}
        b: {value: "v[0]", claims: v}
    """)
    b = hypothesis(tmp_path, "b", """\
        out: {value: t + b + u}
        t: {value: a, claims: s}
        u: {value: "v[0]", claims: v}
    """)
    joined = join_files(a, b, tmp_path / "j.yaml", session)
    # b's root reads input b, so a's node b is renamed (claiming what it claimed)
    assert "b_node" in joined.text and "claims: v" in joined.text
    pa = partitions(session, session.compile(a))
    pj = partitions(session, joined.compiled)
    assert same_partition(pa["s"], pj["s"])


def test_mismatched_claims_name_the_node(session):
    with pytest.raises(GraphError, match=r"at out > x3, node `x3`.*claims `x3`.*`x0` claims `x0`"):
        join_files("hypotheses/sum4/true.yaml", "hypotheses/sum4/reversed.yaml", "j.yaml",
                   session)


def test_mismatched_shapes_name_the_node(session, tmp_path):
    a = hypothesis(tmp_path, "a", """\
        out: {value: s + v}
        s: {value: a}
        v: {value: v}
    """)
    b = hypothesis(tmp_path, "b", """\
        out: {value: s}
        s: {value: xa + xb}
        xa: {value: a, claims: a}
        xb: {value: b, claims: b}
    """)
    with pytest.raises(GraphError,
                       match=r"at out, node `out` .* has 2 children .* `out` .* has 1 child "):
        join_files(a, b, tmp_path / "j.yaml", session)
    with pytest.raises(GraphError, match=r"at out > s, node `s` .* is a leaf but .* has "
                                         r"2 children \(claiming `a`, `b`\)"):
        join_files(hypothesis(tmp_path, "c", """\
            out: {value: s}
            s: {value: a}
        """), b, tmp_path / "j.yaml", session)


def test_different_tasks_or_models_are_usage_errors(session, tmp_path):
    with pytest.raises(UsageError, match="different tasks"):
        join_files("hypotheses/xor/first_bit.yaml", "hypotheses/sum4/true.yaml", "j.yaml",
                   session)
    a = hypothesis(tmp_path, "a", "out: {value: s}\ns: {value: a}\n")
    b = hypothesis(tmp_path, "b", "out: {value: a - b}\n", model="other")
    with pytest.raises(UsageError, match="different models"):
        join_files(a, b, tmp_path / "j.yaml", session)


def test_matrix_values_are_refused(session, tmp_path):
    (tmp_path / "task.yaml").write_text(TASK.replace("shape: [2]", "shape: [2, 2]").replace(
        "v[0]\"", "v[0, 0]\""))
    path = tmp_path / "m.yaml"
    path.write_text("hypothesis: m\ntask: task.yaml\nmodel: add\nnodes:\n"
                    "  out: {value: 's + w[0, 0]'}\n  s: {value: a + b}\n"
                    "  w: {value: v, claims: v}\n")
    with pytest.raises(GraphError, match=r"node `w` .* per-example shape \(2, 2\)"):
        join_files(path, path, tmp_path / "j.yaml", session)


def test_errors_are_casc_errors(session):
    with pytest.raises(CascError):
        join_files("hypotheses/xor/first_bit.yaml", "no/such/file.yaml", "j.yaml", session)
