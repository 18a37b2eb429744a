"""`casc show`: the three drawings of a hypothesis (text, DOT, Mermaid) agree with the compiled graph."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from casc_cli.api import Session
from casc_cli.show import (
    FORMATS,
    _dot_str,
    _mermaid_escape,
    describe,
    render,
    render_dot,
    render_mermaid,
    render_text,
)

# pydot's parser calls pyparsing's camelCase aliases, deprecated in pyparsing 3.3
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated.*:DeprecationWarning")

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = sorted((ROOT / "hypotheses").glob("*/*.yaml"))
IDS = [f"{p.parent.name}/{p.stem}" for p in CATALOGUE]

_session = Session()


def compiled_of(path: str | Path, policy: str = "per_node"):
    return _session.compile(ROOT / path, policy)


def text_of(compiled) -> str:
    console = Console(record=True, width=120)
    console.print(render_text(compiled))
    return console.export_text()


def vacuous_from_warnings(compiled) -> set[str]:
    names = set()
    for w in compiled.warnings:
        if w.kind == "vacuous":
            names.add(re.search(r"node `([^`]+)`", w.message).group(1))
    return names


def test_catalogue_is_there():
    assert len(CATALOGUE) >= 9


# ---------------------------------------------------------------- description


@pytest.mark.parametrize("path", CATALOGUE, ids=IDS)
def test_description_agrees_with_plan_and_warnings(path):
    compiled = compiled_of(path)
    d = describe(compiled)
    assert set(d.vacuous) == vacuous_from_warnings(compiled)
    assert {p.path for p in d.paths} == set(compiled.plan.path_slots)
    for p in d.paths:
        slot = compiled.plan.slots[compiled.plan.path_slots[p.path]]
        assert p.unimportant == (slot.kind == "other")
        assert p.owner == slot.node  # per_node: the slot names the owner
    assert len(d.model_nodes) == len(compiled.model.inputs) + len(compiled.model.formulas)
    assert [n.name for n in d.interp_nodes][0] == compiled.root
    assert {n.name for n in d.interp_nodes} == set(compiled.nodes)


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_description_owner_independent_of_policy(policy):
    path = "hypotheses/sum4/reversed.yaml"
    base = describe(compiled_of(path))
    other = describe(compiled_of(path, policy))
    assert [(p.path, p.owner, p.unimportant) for p in other.paths] == \
        [(p.path, p.owner, p.unimportant) for p in base.paths]
    assert other.vacuous == base.vacuous


def test_render_dispatch():
    compiled = compiled_of("hypotheses/sum4/true.yaml")
    assert render(compiled, "dot") == render_dot(compiled)
    assert render(compiled, "mermaid") == render_mermaid(compiled)
    assert not isinstance(render(compiled, "text"), str)
    assert FORMATS == ("text", "dot", "mermaid")
    from casc_cli.errors import UsageError

    with pytest.raises(UsageError):
        render(compiled, "svg")


# ---------------------------------------------------------------- DOT


def _unquote(name: str) -> str:
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def _dot_nodes(graph) -> list[str]:
    return [_unquote(n.get_name()) for n in graph.get_nodes()
            if _unquote(n.get_name()) not in ("node", "edge", "graph")]


@pytest.mark.parametrize("path", CATALOGUE, ids=IDS)
def test_dot_parses_and_counts(path):
    pydot = pytest.importorskip("pydot")
    compiled = compiled_of(path)
    model, nodes = compiled.model, compiled.nodes
    graphs = pydot.graph_from_dot_data(render_dot(compiled))
    assert graphs and len(graphs) == 1
    graph = graphs[0]
    subs = {_unquote(s.get_name()): s for s in graph.get_subgraphs()}
    assert set(subs) == {"cluster_model", "cluster_interpretation"}

    model_nodes = _dot_nodes(subs["cluster_model"])
    assert len(model_nodes) == len(model.formulas) + len(model.inputs)
    assert set(model_nodes) == {"m_" + n for n in (*model.formulas, *model.inputs)}
    interp_nodes = _dot_nodes(subs["cluster_interpretation"])
    assert set(interp_nodes) == {"i_" + n for n in nodes} and len(interp_nodes) == len(nodes)

    model_edges = subs["cluster_model"].get_edges()
    assert len(model_edges) == sum(len(model.reads[n]) for n in model.formulas)
    expected = {("m_" + src, "m_" + dst) for dst in model.formulas for src in model.reads[dst]}
    assert {(_unquote(e.get_source()), _unquote(e.get_destination()))
            for e in model_edges} == expected
    tree_edges = subs["cluster_interpretation"].get_edges()
    assert len(tree_edges) == len(nodes) - 1
    correspondence = graph.get_edges()  # the top level holds only the correspondence
    assert len(correspondence) == len(nodes)
    pairs = {(_unquote(e.get_source()), _unquote(e.get_destination())) for e in correspondence}
    assert pairs == {("i_" + n.name, "m_" + n.claims) for n in nodes.values()}
    vacuous = vacuous_from_warnings(compiled)
    for edge in correspondence:
        is_vacuous = _unquote(edge.get_source())[2:] in vacuous
        assert (_unquote(edge.get_style()) == "dotted") == is_vacuous
        assert (_unquote(edge.get_color()) == "red") == is_vacuous


def test_dot_unimportant_edges_are_grey_dashed():
    pydot = pytest.importorskip("pydot")
    graph = pydot.graph_from_dot_data(
        render_dot(compiled_of("hypotheses/sum_offset/first_three.yaml")))[0]
    model = next(s for s in graph.get_subgraphs() if "model" in s.get_name())
    styles = {(_unquote(e.get_source()), _unquote(e.get_destination())):
              _unquote(e.get_style()) for e in model.get_edges()}
    assert styles[("m_x3", "m_out")] == "dashed"
    assert styles[("m_x0", "m_out")] == "solid"


def test_dot_escapes_labels(tmp_path):
    pydot = pytest.importorskip("pydot")
    assert _dot_str('a "b" <c> \\ d\ne') == '"a \\"b\\" <c> \\\\ d\\ne"'
    hyp = tmp_path / "quoted.yaml"
    hyp.write_text(
        "hypothesis: 'out is \"r0 < r1\" <really> \\ yes'\n"
        f"task: {ROOT / 'tasks' / 'reciprocal.yaml'}\n"
        "nodes:\n"
        "  out: {value: x0 > x1}\n"
        "  x0: {value: x0}\n"
        "  x1: {value: x1}\n"
    )
    compiled = _session.compile(hyp)
    text = render_dot(compiled)
    graph = pydot.graph_from_dot_data(text)[0]
    assert graph.get_label() == _dot_str(
        'out is "r0 < r1" <really> \\ yes  (task reciprocal, model reciprocals, policy per_node)')
    interp = next(s for s in graph.get_subgraphs() if "interp" in s.get_name())
    out = next(n for n in interp.get_nodes() if _unquote(n.get_name()) == "i_out")
    assert out.get_label() == '"out = x0 > x1\\nclaims out"'
    _run_dot(text)


def _run_dot(text: str) -> None:
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz `dot` is not installed")
    proc = subprocess.run([dot, "-Tsvg"], input=text, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "<svg" in proc.stdout


@pytest.mark.parametrize("path", CATALOGUE, ids=IDS)
def test_dot_renders_with_graphviz(path):
    _run_dot(render_dot(compiled_of(path)))


# ---------------------------------------------------------------- Mermaid


@pytest.mark.parametrize("path", CATALOGUE, ids=IDS)
def test_mermaid_structure(path):
    compiled = compiled_of(path)
    model, nodes = compiled.model, compiled.nodes
    text = render_mermaid(compiled)
    lines = text.splitlines()
    assert lines[0] == "flowchart BT"
    opened = sum(1 for line in lines if line.strip().startswith("subgraph "))
    closed = sum(1 for line in lines if line.strip() == "end")
    assert opened == closed == 2
    depth = 0
    for line in lines:  # balanced in order, never nested deeper than one
        if line.strip().startswith("subgraph "):
            depth += 1
            assert depth == 1
        elif line.strip() == "end":
            depth -= 1
            assert depth == 0
    defined = {m.group(1) for m in re.finditer(r"^\s*([mi]_\w+)[\[(]", text, re.M)}
    assert defined == {"m_" + n for n in (*model.formulas, *model.inputs)} | \
        {"i_" + n for n in nodes}
    correspondence = [line for line in lines if "-.->" in line]
    assert len(correspondence) == len(nodes)
    assert text.count("-.->") == len(nodes)
    for n in nodes.values():
        link = re.compile(rf"^\s*i_{n.name} -\.->(\|vacuous\|)? m_{n.claims}$")
        assert any(link.match(line) for line in correspondence)
    solid = [line for line in lines if " --> " in line]
    assert len(solid) == sum(len(model.reads[n]) for n in model.formulas) + len(nodes) - 1
    vacuous = vacuous_from_warnings(compiled)
    classed = re.search(r"^\s*class (\S+) vacuous$", text, re.M)
    assert (set() if classed is None else set(classed.group(1).split(","))) == \
        {"i_" + n for n in vacuous}
    assert sum(line.count("|vacuous|") for line in lines) == len(vacuous)
    # labels never carry a raw quote or angle bracket (only the <br/> line breaks)
    for label in re.findall(r'\["(.*?)"\]', text):
        assert '"' not in label
        assert "<" not in label.replace("<br/>", "") and ">" not in label.replace("<br/>", "")


def test_mermaid_escapes_labels():
    assert _mermaid_escape('a < b > "c" & #d') == "a #lt; b #gt; #quot;c#quot; #amp; #35;d"
    text = render_mermaid(compiled_of("hypotheses/reciprocal/exact.yaml"))
    assert "out = r0 #lt; r1" in text
    assert "r0 < r1" not in text
    assert "classDef vacuous" in text and "classDef unimportant" in text


def test_mermaid_unimportant_class():
    text = render_mermaid(compiled_of("hypotheses/sum_offset/first_three.yaml"))
    assert re.search(r"^\s*class (\S*,)?m_x3(,\S*)? unimportant$", text, re.M)
    text = render_mermaid(compiled_of("hypotheses/sum_offset/all.yaml"))
    assert not re.search(r"^\s*class \S+ unimportant$", text, re.M)


# ---------------------------------------------------------------- text


def test_text_marks_vacuous_nodes():
    compiled = compiled_of("hypotheses/sum4/reversed.yaml")
    expected = vacuous_from_warnings(compiled)
    assert expected == {"x0", "x1", "x2", "x3"}
    text = text_of(compiled)
    tree = text.split("Model graph G")[0]
    for name in ("out", "b", "a", "x0", "x1", "x2", "x3"):
        line = next(l for l in tree.splitlines() if re.search(rf"\b{name} = ", l))
        assert ("VACUOUS" in line) == (name in expected), line
        assert "claims → " + name in line
    assert "Vacuous claims: x3, x2, x1, x0" in text


def test_text_true_hypothesis_has_no_vacuous():
    text = text_of(compiled_of("hypotheses/sum4/true.yaml"))
    assert "vacuous" not in text.lower()
    assert "unimportant (" not in text
    assert "x0 → a → b → out   reads d(x0)" in text
    assert "(stands for 3 model nodes)" in text  # the root claims out, which stands for a, b, out


def test_text_unimportant_paths():
    text = text_of(compiled_of("hypotheses/sum_offset/first_three.yaml"))
    assert "x3 → out   unimportant (other inputs of out)" in text
    assert "x0 → out   reads d(x0)" in text
    text = text_of(compiled_of("hypotheses/sum_offset/all.yaml"))
    assert "unimportant (" not in text
    assert "x3 → out   reads d(x3)" in text


def test_text_shows_model_claims_and_formulas():
    text = text_of(compiled_of("hypotheses/xor/second_bit.yaml"))
    assert "bit = x[1]" in text  # brackets in formulas are not taken for markup
    assert "x → out   reads d(bit)" in text
    model_part = text.split("Model graph G")[1]
    assert re.search(r"x\s+\(input\)\s+│\s+—\s+│\s+bit", model_part)


# ---------------------------------------------------------------- edge cases

EDGE_TASK = """\
task: edge
inputs:
  x0: {int: [0, 3]}
  x1: {int: [0, 3]}
  u: {int: [0, 3]}
dataset: {size: 50, seed: 0}
label: x0 + x1
metric: mae
models:
  m:
    nodes: {a: x0 + x1, z: x1 * 2, out: a + 1}
    output: out
"""


def test_claims_off_the_output_graph_and_root_only(tmp_path):
    """Claims on a node and an input the output never reads; a root that is the only node."""
    (tmp_path / "t.yaml").write_text(EDGE_TASK)
    (tmp_path / "h.yaml").write_text(
        "hypothesis: odd claims\ntask: t.yaml\nnodes:\n"
        "  out: {value: k + w}\n  k: {value: x0 + x1, claims: z}\n  w: {value: u, claims: u}\n")
    (tmp_path / "r.yaml").write_text(
        "hypothesis: root only\ntask: t.yaml\nnodes:\n  out: {value: x0 + x1 + 1}\n")
    odd = _session.compile(tmp_path / "h.yaml")
    d = describe(odd)
    assert set(d.vacuous) == {"k", "w"} == vacuous_from_warnings(odd)
    assert {n.name: n.status for n in d.model_nodes}["z"] == "unused"
    assert all(p.unimportant and p.owner == "out" for p in d.paths)
    text = text_of(odd)
    assert "x0 → a → out   unimportant (other inputs of out)" in text
    assert "not upstream of the output" in text
    mermaid = render_mermaid(odd)
    assert "i_k -.->|vacuous| m_z" in mermaid
    assert re.search(r"^\s*class \S*m_z\S* unused$", mermaid, re.M)

    alone = _session.compile(tmp_path / "r.yaml")
    d = describe(alone)
    assert d.vacuous == () and not any(p.unimportant for p in d.paths)
    assert "x0 → a → out   reads d(out) = r, the reference" in text_of(alone)
    pydot = pytest.importorskip("pydot")
    graph = pydot.graph_from_dot_data(render_dot(alone))[0]
    interp = next(s for s in graph.get_subgraphs() if "interp" in s.get_name())
    assert _dot_nodes(interp) == ["i_out"] and interp.get_edges() == []
    assert len(graph.get_edges()) == 1
    _run_dot(render_dot(odd))  # last: skips without Graphviz
