"""Joins of hypotheses (causal scrubbing appendix, section 8), and hypothesis files as text.

The swap-centric join of two hypotheses allows a swap only if both allow it.
For two hypotheses about the same model whose interpretation trees have the
same shape (children matched by the model node they claim), that is the tree
whose every node's value is the *pair* of the two values: two data are
equivalent at a joined node exactly when they are equivalent at both.

:func:`join_files` writes that tree as an ordinary hypothesis file, each node
``n`` valued ``pair(A, B)`` where ``A`` is the first hypothesis's formula with
each child ``c`` read back as its first half (``c[0]``, or ``c[0:k]`` for a
``k``-vector) and ``B`` the second's formula, its children renamed to the first
one's by claim, read back as the second half.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import yaml

from .errors import EvaluationError, GraphError, SpecError, UsageError
from .graph import CompiledHypothesis, InterpNode
from .spec.loader import LoadedHypothesis, SourceMap, display_path, validate
from .spec.models import HypothesisSpec

if TYPE_CHECKING:
    from .api import Session


# --------------------------------------------------------------------------- files as text


def dump_hypothesis(header: str, name: str, description: str, task: str, model: str | None,
                    nodes: Mapping[str, Mapping[str, str]]) -> str:
    """A hypothesis file as YAML text; ``header`` becomes comment lines at the top."""
    data: dict[str, Any] = {"hypothesis": name, "description": description, "task": task}
    if model is not None:
        data["model"] = model
    data["nodes"] = {k: dict(v) for k, v in nodes.items()}
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100_000,
                          default_flow_style=None)
    comments = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comments + body


def node_entry(name: str, value: str, claims: str, description: str = "") -> dict[str, str]:
    """One ``nodes:`` entry, with ``claims`` only where it differs from the name."""
    entry = {"value": value}
    if claims != name:
        entry["claims"] = claims
    if description:
        entry["description"] = description
    return entry


def relative_task(task_path: Path, output: Path) -> str:
    """The ``task:`` entry of a file written at ``output``: relative to its folder."""
    return Path(os.path.relpath(task_path.resolve(), output.resolve().parent)).as_posix()


def loaded_from_text(text: str, path: Path, like: LoadedHypothesis) -> LoadedHypothesis:
    """Validate hypothesis text as if it were the file ``path`` (about ``like``'s task)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root)
    finally:
        loader.dispose()
    source = SourceMap(display_path(path), root)
    spec = validate(HypothesisSpec, data, source)
    task_path = (path.parent / spec.task).resolve()
    if task_path != like.task.path.resolve():  # pragma: no cover - we write the path ourselves
        raise SpecError(f"`task:` {spec.task} does not name {display_path(like.task.path)}",
                        source.location(("task",)))
    return LoadedHypothesis(spec, path, source, like.task)


# --------------------------------------------------------------------------- joins


@dataclass(frozen=True)
class Joined:
    """A joined hypothesis: the file text, and the same hypothesis loaded and compiled."""

    text: str
    loaded: LoadedHypothesis
    compiled: CompiledHypothesis
    names: dict[str, str]  # second hypothesis's node -> joined node


def join_files(a: str | Path, b: str | Path, output: str | Path,
               session: Session | None = None, verify: bool = True) -> Joined:
    """Join two hypothesis files; the text is meant to be written at ``output``.

    Raises :class:`UsageError` when the files are about different tasks or
    models, :class:`GraphError` when their trees differ in shape or claims (at
    the first node that differs) or a node's value is not a scalar or a 1-D
    vector. With ``verify``, the joined partition of D at every node is checked
    to be exactly the meet of the two partitions.
    """
    from .api import Session
    from .spec.loader import load_hypothesis

    session = session or Session()
    return join_loaded(load_hypothesis(Path(a)), load_hypothesis(Path(b)), Path(output),
                       session, verify)


def join_loaded(a: LoadedHypothesis, b: LoadedHypothesis, output: Path,
                session: Session, verify: bool = True) -> Joined:
    """:func:`join_files` on loaded hypotheses."""
    ha, hb = session.compile_loaded(a), session.compile_loaded(b)
    if a.task.path.resolve() != b.task.path.resolve():
        raise UsageError(
            f"cannot join {a.source.file} and {b.source.file}: they are about different tasks "
            f"({display_path(a.task.path)} and {display_path(b.task.path)})")
    if ha.model.name != hb.model.name:
        raise UsageError(
            f"cannot join {a.source.file} and {b.source.file}: they are about different models "
            f"(`{ha.model.name}` and `{hb.model.name}`)")
    partner = match_trees(ha, hb)  # a's node -> b's node
    pa, pb = session.prepare(ha), session.prepare(hb)
    shapes_a = {n: _example_shape(pa.node_values[n], n, a) for n in ha.nodes}
    shapes_b = {n: _example_shape(pb.node_values[n], n, b) for n in hb.nodes}

    inputs = set(ha.model.inputs)
    final = _joined_names(ha, hb, partner, inputs)
    to_a = {nb: na for na, nb in partner.items()}
    nodes: dict[str, dict[str, str]] = {}
    for name, node in ha.nodes.items():
        other = hb.nodes[partner[name]]
        size_a = {c: int(np.prod(shapes_a[c])) for c in node.children}
        first = read_parts(node.formula.text, {
            c: (final[c], part(shapes_a[c], 0)) for c in node.children})
        second = read_parts(other.formula.text, {
            c: (final[to_a[c]], part(shapes_b[c], size_a[to_a[c]])) for c in other.children})
        nodes[final[name]] = node_entry(final[name], f"pair({first}, {second})", node.claims)

    output = Path(output)
    here = output.resolve().parent
    name_a = Path(os.path.relpath(a.path.resolve(), here)).as_posix()
    name_b = Path(os.path.relpath(b.path.resolve(), here)).as_posix()
    header = (f"casc join {name_a} {name_b}\n"
              "Each node's value is the pair of the two hypotheses' values, so a datum is "
              "swapped in only\nif both hypotheses allow the swap (causal scrubbing appendix, "
              "section 8).")
    text = dump_hypothesis(
        header,
        f"join of {name_a} and {name_b}",
        f"The swap-centric join of {name_a} ({a.spec.hypothesis}) and {name_b} "
        f"({b.spec.hypothesis}): a swap is allowed only if both allow it",
        relative_task(a.task.path, output), a.spec.model, nodes)
    loaded = loaded_from_text(text, output, a)
    compiled = session.compile_loaded(loaded)
    if verify:
        _verify_meet(compiled, session, pa.node_values, pb.node_values, final, partner)
    names = {partner[n]: final[n] for n in ha.nodes}
    return Joined(text, loaded, compiled, names)


def match_trees(a: CompiledHypothesis, b: CompiledHypothesis) -> dict[str, str]:
    """Pair the nodes of two trees of the same shape: children are matched by claim.

    Returns a's node -> b's node; raises :class:`GraphError` at the first node
    (in a's preorder) where the number of children or their claims differ.
    """
    file_a, file_b = a.loaded.source.file, b.loaded.source.file
    partner = {a.root: b.root}
    stack = [(a.root, b.root, a.root)]
    while stack:
        na, nb, where = stack.pop()
        node_a, node_b = a.nodes[na], b.nodes[nb]
        if len(node_a.children) != len(node_b.children):
            raise GraphError(
                f"cannot join: at {where}, node `{na}` of {file_a} {_describe(a, node_a)} but "
                f"node `{nb}` of {file_b} {_describe(b, node_b)}; a join needs trees of the "
                "same shape",
                node_b.location)
        by_claim = {b.nodes[k].claims: k for k in node_b.children}
        pairs = []
        for kid in node_a.children:
            claim = a.nodes[kid].claims
            if claim not in by_claim:
                extra = next(k for k in node_b.children
                             if b.nodes[k].claims not in {a.nodes[c].claims
                                                           for c in node_a.children})
                raise GraphError(
                    f"cannot join: at {where} > {kid}, node `{kid}` of {file_a} claims "
                    f"`{claim}` but no child of `{nb}` in {file_b} does; its child `{extra}` "
                    f"claims `{b.nodes[extra].claims}` instead. A join needs the same claims "
                    "at every node", b.nodes[extra].location)
            partner[kid] = by_claim[claim]
            pairs.append((kid, by_claim[claim], f"{where} > {kid}"))
        stack.extend(reversed(pairs))
    return partner


def _describe(h: CompiledHypothesis, node: InterpNode) -> str:
    if not node.children:
        return "is a leaf"
    n = len(node.children)
    claims = ", ".join(f"`{h.nodes[k].claims}`" for k in node.children)
    return f"has {n} {'child' if n == 1 else 'children'} (claiming {claims})"


def _example_shape(values: np.ndarray, name: str, h: LoadedHypothesis) -> tuple[int, ...]:
    shape = tuple(values.shape[1:])
    if len(shape) > 1:
        raise GraphError(
            f"cannot join: node `{name}` of {h.source.file} has per-example shape {shape}; "
            "joins support scalar and 1-D vector values",
            h.source.location(("nodes", name), key=True))
    return shape


def part(shape: tuple[int, ...], offset: int) -> tuple[int, int | None]:
    """(start, stop) of a half in a pair: stop None for a scalar (read as ``c[start]``)."""
    return (offset, None) if shape == () else (offset, offset + shape[0])


def _joined_names(a: CompiledHypothesis, b: CompiledHypothesis, partner: dict[str, str],
                  inputs: set[str]) -> dict[str, str]:
    """a's node names, except where the second formula reads an input of that name."""
    reads: set[str] = set()
    for name, node in a.nodes.items():
        other = b.nodes[partner[name]]
        reads |= {x for x in other.formula.names - set(other.children)
                  if x in inputs and x != name}
    taken = set(a.nodes) | inputs
    final = {}
    for name in a.nodes:
        if name in reads:
            fresh, i = f"{name}_node", 2
            while fresh in taken:
                fresh, i = f"{name}_node{i}", i + 1
            taken.add(fresh)
            final[name] = fresh
        else:
            final[name] = name
    return final


def read_parts(text: str, parts: Mapping[str, tuple[str, tuple[int, int | None]]]) -> str:
    """The formula with each name in ``parts`` read back as its part of a pair: ``c`` becomes
    ``new_name[start]`` (stop None) or ``new_name[start:stop]``."""
    tree = ast.parse(text.strip(), mode="eval")
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}

    class Rewrite(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if id(node) in callees or node.id not in parts:
                return node
            name, (start, stop) = parts[node.id]
            index: ast.expr = (ast.Constant(start) if stop is None
                               else ast.Slice(ast.Constant(start), ast.Constant(stop)))
            return ast.Subscript(ast.Name(name, ast.Load()), index, ast.Load())

    return ast.unparse(ast.fix_missing_locations(Rewrite().visit(tree)))


def _labels(values: np.ndarray) -> np.ndarray:
    rows = values.reshape(len(values), -1)
    _, labels = np.unique(rows, axis=0, return_inverse=True)
    return labels.reshape(-1)


def same_partition(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether two labelings of the same rows group them identically."""
    pairs = np.unique(np.stack([x, y], axis=1), axis=0)
    return len(pairs) == len(np.unique(x)) == len(np.unique(y))


def _verify_meet(joined: CompiledHypothesis, session: Session,
                 values_a: Mapping[str, np.ndarray], values_b: Mapping[str, np.ndarray],
                 final: Mapping[str, str], partner: Mapping[str, str]) -> None:
    try:
        values = session.prepare(joined).node_values
    except EvaluationError as exc:
        raise EvaluationError(
            f"the joined hypothesis cannot be evaluated: {exc.message} (pair() promotes the two "
            "values of a node to a common type, so a formula that needs a bool or an integer "
            "may now see a float)") from None
    for name, new in final.items():
        la, lb = _labels(values_a[name]), _labels(values_b[partner[name]])
        meet = _labels(np.stack([la, lb], axis=1))
        if not same_partition(meet, _labels(values[new])):
            raise EvaluationError(
                f"the joined value of node `{new}` does not split D into the classes on which "
                "both hypotheses agree (pair() promoted the two values to a type that merges "
                "some of them)")
