"""Drawings of a hypothesis: the model graph G, the interpretation tree I and the correspondence.

One description (:class:`Drawing`, built once by :func:`describe` from a
:class:`~casc_cli.graph.CompiledHypothesis`) is rendered three ways, so the
three formats always agree:

- ``text``: a ``rich`` renderable for the terminal (:func:`render_text`);
- ``dot``: Graphviz DOT source (:func:`render_dot`);
- ``mermaid``: a Mermaid ``flowchart BT`` (:func:`render_mermaid`).

What is drawn: every model node and task input, the model's edges (input ->
node, the direction values flow), the interpretation tree (child -> parent,
the same direction: a parent's value is computed from its children's), and one
correspondence edge per interpretation node to the model node it claims.
Each treeified input path of G (``compiled.plan.path_slots``) is either
*claimed* (it reads an interpretation node's datum) or *unimportant* (it reads
an "other inputs" datum); a claim that no path honours is *vacuous*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .graph import CompiledHypothesis, Path_, walk_path

FORMATS: tuple[str, ...] = ("text", "dot", "mermaid")

EdgeStatus = Literal["claimed", "mixed", "unimportant", "unused"]
NodeStatus = Literal["claimed", "mixed", "unimportant", "unused"]


# --------------------------------------------------------------------------
# The description
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelNodeView:
    """A node or task input of G."""

    name: str
    is_input: bool
    formula: str | None  # None for a task input
    reads: tuple[str, ...]
    on_output_graph: bool  # whether it lies upstream of (or is) the output
    is_output: bool
    claimed_by: tuple[str, ...]  # interpretation nodes whose claim is this node
    status: NodeStatus  # how the paths through it are read

    @property
    def id(self) -> str:
        return "m_" + self.name


@dataclass(frozen=True)
class ModelEdgeView:
    """An edge of G, ``source`` read by ``target``, with the paths running through it."""

    source: str
    target: str
    claimed_paths: int
    unimportant_paths: int

    @property
    def status(self) -> EdgeStatus:
        return _status(self.claimed_paths, self.unimportant_paths)


@dataclass(frozen=True)
class InterpNodeView:
    """A node of the interpretation tree I."""

    name: str
    formula: str
    claims: str
    parent: str | None
    children: tuple[str, ...]
    depth: int
    is_leaf: bool
    vacuous: bool
    stands_for: int  # how many model nodes the claimed node stands for (its G subtree)
    claimed_paths: int  # paths reading this node's own datum
    unimportant_paths: int  # paths reading its "other inputs" datum
    warnings: tuple[str, ...]  # the compiler's messages about this node

    @property
    def id(self) -> str:
        return "i_" + self.name


@dataclass(frozen=True)
class PathView:
    """One treeified input path of G and the datum it reads."""

    path: Path_  # (input, node, ..., output)
    owner: str  # the interpretation node the path ends at, walking down I
    unimportant: bool
    slot: int  # index into ``compiled.plan.slots``
    reads: str  # in words, e.g. "reads d(x0)" or "unimportant (other inputs of b)"


@dataclass(frozen=True)
class Drawing:
    """Everything the three renderers draw, computed once."""

    hypothesis: str
    description: str | None
    task: str
    model: str
    output: str
    root: str
    policy: str
    model_nodes: tuple[ModelNodeView, ...]  # inputs first, then nodes in topological order
    model_edges: tuple[ModelEdgeView, ...]
    interp_nodes: tuple[InterpNodeView, ...]  # preorder, root first
    paths: tuple[PathView, ...]
    warnings: tuple[str, ...]

    @property
    def vacuous(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.interp_nodes if n.vacuous)

    def interp(self, name: str) -> InterpNodeView:
        return next(n for n in self.interp_nodes if n.name == name)


def _status(claimed: int, unimportant: int) -> EdgeStatus:
    if claimed and unimportant:
        return "mixed"
    if claimed:
        return "claimed"
    if unimportant:
        return "unimportant"
    return "unused"


def _path_owner(compiled: CompiledHypothesis, path: Path_) -> str:
    """Walk down I along ``path``: the node whose datum (or other-inputs datum) it reads.

    The same rule as the compiler's: at each node, go to the child whose claim
    lies on the path nearest to the current node's claim; stop when none does.
    """
    return walk_path(compiled.nodes, compiled.root, path)[-1][0]


def _stands_for(compiled: CompiledHypothesis, node: str) -> int:
    model = compiled.model
    if node in model.inputs or node in model.ancestors:
        return model.subtree_size(node)
    # a model node off the output's graph: count its upstream nodes by hand
    seen, stack = {node}, [node]
    while stack:
        for parent in model.reads.get(stack.pop(), ()):
            if parent not in seen and parent not in model.inputs:
                seen.add(parent)
                stack.append(parent)
    return len(seen)


def describe(compiled: CompiledHypothesis) -> Drawing:
    """Build the description the renderers draw from a compiled hypothesis."""
    model, nodes, plan = compiled.model, compiled.nodes, compiled.plan

    # Paths: which datum each reads (from the plan), and which node it ends at.
    paths: list[PathView] = []
    for path in sorted(plan.path_slots):
        slot_index = plan.path_slots[path]
        slot = plan.slots[slot_index]
        owner = _path_owner(compiled, path)
        unimportant = slot.kind == "other"
        if not unimportant:
            owner = slot.node or owner  # the plan's word is final for claimed paths
            if slot.kind == "ref":
                reads = f"reads d({owner}) = r, the reference"
            else:
                reads = f"reads d({owner})"
        elif compiled.policy == "shared":
            reads = f"unimportant (the shared other-inputs datum, under {owner})"
        elif compiled.policy == "independent":
            reads = f"unimportant (its own random datum, under {owner})"
        else:
            reads = f"unimportant (other inputs of {owner})"
        paths.append(PathView(path, owner, unimportant, slot_index, reads))

    # Interpretation nodes, preorder.
    preorder: list[tuple[str, int]] = []
    stack = [(compiled.root, 0)]
    while stack:
        name, depth = stack.pop()
        preorder.append((name, depth))
        stack.extend((kid, depth + 1) for kid in reversed(nodes[name].children))
    owners = {p.owner for p in paths}
    honoured: set[str] = set()  # nodes with a path ending at them or below them
    for name in owners:
        while name is not None and name not in honoured:
            honoured.add(name)
            name = nodes[name].parent
    messages: dict[str, list[str]] = {}
    for warning in compiled.warnings:
        for name in nodes:
            if f"node `{name}`" in warning.message:
                messages.setdefault(name, []).append(warning.message)
                break
    interp_nodes = tuple(
        InterpNodeView(
            name=name,
            formula=nodes[name].formula.text,
            claims=nodes[name].claims,
            parent=nodes[name].parent,
            children=nodes[name].children,
            depth=depth,
            is_leaf=nodes[name].is_leaf,
            vacuous=nodes[name].parent is not None and name not in honoured,
            stands_for=_stands_for(compiled, nodes[name].claims),
            claimed_paths=sum(1 for p in paths if p.owner == name and not p.unimportant),
            unimportant_paths=sum(1 for p in paths if p.owner == name and p.unimportant),
            warnings=tuple(messages.get(name, ())),
        )
        for name, depth in preorder
    )

    # Model nodes and edges, with the paths through them.
    through: dict[str, list[int]] = {}
    edge_counts: dict[tuple[str, str], list[int]] = {}
    for p in paths:
        k = 1 if p.unimportant else 0
        for name in p.path:
            through.setdefault(name, [0, 0])[k] += 1
        for a, b in zip(p.path, p.path[1:]):
            edge_counts.setdefault((a, b), [0, 0])[k] += 1
    on_graph = set(model.order) | set(model.ancestors.get(model.output, ()))
    names = list(model.inputs) + list(model.order) + sorted(set(model.formulas) - set(model.order))
    claimed_by: dict[str, list[str]] = {}
    for name, _ in preorder:
        claimed_by.setdefault(nodes[name].claims, []).append(name)
    model_nodes = tuple(
        ModelNodeView(
            name=name,
            is_input=name in model.inputs,
            formula=None if name in model.inputs else model.formulas[name].text,
            reads=() if name in model.inputs else model.reads[name],
            on_output_graph=name in on_graph,
            is_output=name == model.output,
            claimed_by=tuple(claimed_by.get(name, ())),
            status=_status(*through.get(name, (0, 0))),
        )
        for name in names
    )
    model_edges = tuple(
        ModelEdgeView(source, target, *edge_counts.get((source, target), (0, 0)))
        for target in names if target not in model.inputs
        for source in model.reads[target]
    )
    return Drawing(
        hypothesis=compiled.loaded.spec.hypothesis,
        description=compiled.loaded.spec.description,
        task=compiled.task.loaded.spec.task,
        model=model.name,
        output=model.output,
        root=compiled.root,
        policy=compiled.policy,
        model_nodes=model_nodes,
        model_edges=model_edges,
        interp_nodes=interp_nodes,
        paths=tuple(paths),
        warnings=tuple(str(w) for w in compiled.warnings),
    )


def _model_label(node: ModelNodeView) -> str:
    if node.is_input:
        return f"{node.name} (input)"
    return f"{node.name} = {node.formula}"


def _claimed_by(node: ModelNodeView, d: Drawing) -> str:
    """``claimed by a, x0 (vacuous)``, or empty when no interpretation node claims it."""
    if not node.claimed_by:
        return ""
    return "claimed by " + ", ".join(
        who + (" (vacuous)" if d.interp(who).vacuous else "") for who in node.claimed_by)


def _stands_for_words(node: InterpNodeView) -> str:
    """``stands for 3 model nodes``: the size of the claimed node's G subtree."""
    n = node.stands_for
    if n == 0:
        return "an input, stands for no model node"
    return f"stands for {n} model node{'' if n == 1 else 's'}"


def _interp_lines(node: InterpNodeView) -> list[str]:
    lines = [f"{node.name} = {node.formula}", f"claims {node.claims}"]
    if node.vacuous:
        lines.append("VACUOUS")
    elif node.is_leaf:
        lines.append("leaf: " + _stands_for_words(node))
    return lines


# --------------------------------------------------------------------------
# Graphviz DOT
# --------------------------------------------------------------------------


def _dot_str(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_attrs(**attrs: str) -> str:
    return "[" + ", ".join(f"{k}={_dot_str(v)}" for k, v in attrs.items()) + "]"


_DOT_EDGE_STYLE: dict[str, dict[str, str]] = {
    "claimed": {"style": "solid", "color": "black"},
    "mixed": {"style": "solid", "color": "black"},
    "unimportant": {"style": "dashed", "color": "grey55"},
    "unused": {"style": "dotted", "color": "grey75"},
}


def render_dot(compiled: CompiledHypothesis, drawing: Drawing | None = None) -> str:
    """Graphviz DOT source: ``cluster_model`` (G) beside ``cluster_interpretation`` (I).

    Edges run the way values flow (bottom to top): input -> model node, child ->
    parent interpretation node. Dashed blue edges go from each interpretation
    node to the model node it claims (dotted red: vacuous). Model edges that
    only unimportant paths use are grey and dashed.
    """
    d = drawing or describe(compiled)
    out = [
        "digraph casc {",
        "  rankdir=BT;",
        "  newrank=true;",
        f"  label={_dot_str(f'{d.hypothesis}  (task {d.task}, model {d.model}, policy {d.policy})')};",
        '  labelloc="t";',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
        "",
        "  subgraph cluster_model {",
        f"    label={_dot_str(f'model G: {d.model}')};",
        '    style="rounded"; color="grey40";',
    ]
    for node in d.model_nodes:
        claimed = _claimed_by(node, d)
        attrs = {"label": _model_label(node) + ("\n" + claimed if claimed else ""),
            "shape": "ellipse" if node.is_input else "box"}
        style = ["filled"]
        attrs["fillcolor"] = "lightyellow" if node.is_input else "white"
        if node.is_output:
            attrs["penwidth"] = "2"
        if node.status == "unimportant":
            style.append("dashed")
            attrs["color"] = attrs["fontcolor"] = "grey45"
        elif node.status == "unused":
            style.append("dotted")
            attrs["color"] = attrs["fontcolor"] = "grey65"
        attrs["style"] = ",".join(style)
        attrs["tooltip"] = node.status
        out.append(f"    {_dot_str(node.id)} {_dot_attrs(**attrs)};")
    for edge in d.model_edges:
        attrs = dict(_DOT_EDGE_STYLE[edge.status])
        attrs["tooltip"] = (f"{edge.claimed_paths} claimed, {edge.unimportant_paths} "
                            "unimportant path(s)")
        out.append(f"    {_dot_str('m_' + edge.source)} -> {_dot_str('m_' + edge.target)} "
                   f"{_dot_attrs(**attrs)};")
    out += [
        "  }",
        "",
        "  subgraph cluster_interpretation {",
        f"    label={_dot_str('interpretation I')};",
        '    style="rounded"; color="steelblue";',
    ]
    for node in d.interp_nodes:
        attrs = {"label": "\n".join(_interp_lines(node)), "shape": "box",
                 "style": "rounded,filled", "fillcolor": "aliceblue", "color": "steelblue"}
        if node.vacuous:
            attrs.update(fillcolor="mistyrose", color="red", fontcolor="red3")
            attrs["tooltip"] = "\n".join(node.warnings) or "vacuous claim"
        if node.parent is None:
            attrs["penwidth"] = "2"
        out.append(f"    {_dot_str(node.id)} {_dot_attrs(**attrs)};")
    for node in d.interp_nodes:
        if node.parent is not None:
            out.append(f"    {_dot_str(node.id)} -> {_dot_str('i_' + node.parent)} "
                       f"{_dot_attrs(color='steelblue')};")
    out += ["  }", ""]
    for node in d.interp_nodes:
        if node.vacuous:
            attrs = {"style": "dotted", "color": "red", "fontcolor": "red",
                     "label": "vacuous", "constraint": "false"}
        else:
            attrs = {"style": "dashed", "color": "royalblue", "constraint": "false",
                     "arrowhead": "open"}
        out.append(f"  {_dot_str(node.id)} -> {_dot_str('m_' + node.claims)} "
                   f"{_dot_attrs(**attrs)};")
    out.append("}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Mermaid
# --------------------------------------------------------------------------


def _mermaid_escape(text: str) -> str:
    """Entity-escape a label for Mermaid's ``["..."]`` form (no raw quotes, ``<``, ``>``)."""
    out = []
    for ch in text:
        if ch == "#":
            out.append("#35;")
        elif ch == '"':
            out.append("#quot;")
        elif ch == "<":
            out.append("#lt;")
        elif ch == ">":
            out.append("#gt;")
        elif ch == "&":
            out.append("#amp;")
        elif ch in "\r\n":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _mermaid_label(lines: list[str]) -> str:
    return '["' + "<br/>".join(_mermaid_escape(line) for line in lines) + '"]'


def render_mermaid(compiled: CompiledHypothesis, drawing: Drawing | None = None) -> str:
    """A Mermaid ``flowchart BT``: subgraphs ``model`` and ``interpretation``.

    Same conventions as :func:`render_dot`: solid links for values flowing
    (input -> node, child -> parent), dotted ``-.->`` links for the
    correspondence; classes ``vacuous``, ``unimportant`` and ``unused``.
    """
    d = drawing or describe(compiled)
    out = ["flowchart BT"]
    links: list[tuple[str, str]] = []  # (line, style key) in order, for linkStyle indices
    out.append(f'  subgraph model{_mermaid_label([f"model G: {d.model}"])}')
    for node in d.model_nodes:
        lines = [_model_label(node)]
        if node.claimed_by:
            lines.append(_claimed_by(node, d))
        shape = _mermaid_label(lines)
        if node.is_input:
            shape = "([" + shape[1:-1] + "])"  # stadium for inputs
        out.append(f"    {node.id}{shape}")
    for edge in d.model_edges:
        out.append(f"    m_{edge.source} --> m_{edge.target}")
        links.append((out[-1], edge.status))
    out.append("  end")
    out.append(f'  subgraph interpretation{_mermaid_label(["interpretation I"])}')
    for node in d.interp_nodes:
        out.append(f"    {node.id}{_mermaid_label(_interp_lines(node))}")
    for node in d.interp_nodes:
        if node.parent is not None:
            out.append(f"    {node.id} --> i_{node.parent}")
            links.append((out[-1], "tree"))
    out.append("  end")
    for node in d.interp_nodes:
        if node.vacuous:
            out.append(f"  {node.id} -.->|vacuous| m_{node.claims}")
            links.append((out[-1], "vacuous"))
        else:
            out.append(f"  {node.id} -.-> m_{node.claims}")
            links.append((out[-1], "claim"))
    out += [
        "  classDef input fill:#fffde7,stroke:#555",
        "  classDef interp fill:#eef5ff,stroke:#4682b4",
        "  classDef vacuous fill:#ffe4e1,stroke:#d00,color:#a00,stroke-dasharray:3 3",
        "  classDef unimportant fill:#f4f4f4,stroke:#999,color:#777,stroke-dasharray:5 5",
        "  classDef unused fill:#fafafa,stroke:#bbb,color:#aaa,stroke-dasharray:2 4",
    ]
    classes: dict[str, list[str]] = {}
    for node in d.model_nodes:
        if node.status in ("unimportant", "unused"):
            classes.setdefault(node.status, []).append(node.id)
        elif node.is_input:
            classes.setdefault("input", []).append(node.id)
    for node in d.interp_nodes:
        classes.setdefault("vacuous" if node.vacuous else "interp", []).append(node.id)
    for cls in ("input", "interp", "vacuous", "unimportant", "unused"):
        if cls in classes:
            out.append(f"  class {','.join(classes[cls])} {cls}")
    link_styles = {
        "unimportant": "stroke:#999,stroke-dasharray:5 5",
        "unused": "stroke:#bbb,stroke-dasharray:2 4",
        "tree": "stroke:#4682b4",
        "claim": "stroke:#4169e1",
        "vacuous": "stroke:#d00",
    }
    for key, style in link_styles.items():
        indices = [str(i) for i, (_, k) in enumerate(links) if k == key]
        if indices:
            out.append(f"  linkStyle {','.join(indices)} {style}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Terminal (rich)
# --------------------------------------------------------------------------


def _tree_label(node: InterpNodeView) -> Text:
    text = Text()
    text.append(node.name, style="bold red" if node.vacuous else "bold")
    text.append(" = ")
    text.append(node.formula, style="cyan")
    text.append("   claims → ", style="dim")
    text.append(node.claims, style="bold")
    text.append(f"  ({_stands_for_words(node)})", style="dim")
    if node.parent is None:
        text.append("  [root]", style="magenta")
    if node.is_leaf:
        text.append("  [leaf]", style="green")
    if node.vacuous:
        text.append("  [VACUOUS: claims nothing the model can honour]", style="bold red")
    elif node.unimportant_paths:
        n = node.unimportant_paths
        text.append(f"  [{n} unimportant path{'' if n == 1 else 's'} below]", style="yellow")
    return text


def render_text(compiled: CompiledHypothesis, drawing: Drawing | None = None) -> RenderableType:
    """A terminal rendering: the interpretation tree, the model graph, and the treeified paths."""
    d = drawing or describe(compiled)
    parts: list[RenderableType] = []
    header = Text()
    header.append(d.hypothesis, style="bold")
    header.append(f"\ntask {d.task}, model {d.model}, output {d.output}, policy {d.policy}",
                  style="dim")
    if d.description:
        header.append("\n" + d.description, style="italic")
    parts.append(header)

    by_name = {n.name: n for n in d.interp_nodes}
    tree = Tree(Text("Interpretation I", style="bold underline"))
    branches: dict[str, Tree] = {}
    for node in d.interp_nodes:  # preorder: parents come first
        under = tree if node.parent is None else branches[node.parent]
        branches[node.name] = under.add(_tree_label(by_name[node.name]))
    parts.append(tree)

    table = Table(title="Model graph G", title_justify="left", title_style="bold underline",
                  show_edge=False, pad_edge=False)
    table.add_column("node", style="bold", no_wrap=True)
    table.add_column("formula", style="cyan")
    table.add_column("claimed by")
    table.add_column("paths through it")
    for node in d.model_nodes:
        name = Text(node.name + ("  (output)" if node.is_output else "")
                    + ("  (input)" if node.is_input else ""))
        claimers = Text()
        for i, who in enumerate(node.claimed_by):
            if i:
                claimers.append(", ")
            vac = by_name[who].vacuous
            claimers.append(who + (" (vacuous)" if vac else ""), style="red" if vac else "")
        status = {"claimed": Text("claimed"), "mixed": Text("claimed and unimportant",
                                                             style="yellow"),
                  "unimportant": Text("unimportant", style="yellow"),
                  "unused": Text("none (not upstream of the output)", style="dim")}[node.status]
        table.add_row(name, Text(node.formula or "—"), claimers, status)
    parts.append(Text(""))
    parts.append(table)

    parts.append(Text(""))
    parts.append(Text("Treeified input paths", style="bold underline"))
    for p in d.paths:
        line = Text("  ")
        line.append(" → ".join(p.path))
        line.append("   ")
        line.append(p.reads, style="yellow" if p.unimportant else "green")
        parts.append(line)

    vacuous = d.vacuous
    parts.append(Text(""))
    if vacuous:
        parts.append(Text(f"Vacuous claims: {', '.join(vacuous)}", style="bold red"))
    if d.warnings:
        parts.append(Text("Warnings", style="bold underline"))
        for message in d.warnings:
            parts.append(Text("  " + message, style="yellow"))
    return Group(*parts)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def render(compiled: CompiledHypothesis, fmt: str = "text") -> str | RenderableType:
    """Draw a compiled hypothesis: ``fmt`` is ``text`` (a rich renderable), ``dot`` or
    ``mermaid`` (strings)."""
    drawing = describe(compiled)
    if fmt == "text":
        return render_text(compiled, drawing)
    if fmt == "dot":
        return render_dot(compiled, drawing)
    if fmt == "mermaid":
        return render_mermaid(compiled, drawing)
    from .errors import UsageError

    raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
