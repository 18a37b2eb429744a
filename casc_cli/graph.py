"""Compile specs into graphs, check the correspondence, and build the scrubbing recipe.

The recipe (:class:`ScrubPlan`) is immutable: a list of *slots* (the data
the algorithm draws: the reference, one per interpretation node, and the
"other inputs" data of unimportant paths) and a list of *steps* that
evaluate the treeified model on whole arrays. Treeified copies of a model
node whose input paths read the same slots are evaluated once.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Literal

import yaml

from .errors import FormulaError, GraphError, Location
from .formula import Formula, compile_formula
from .spec.loader import LoadedHypothesis, LoadedTask, SourceMap

Policy = Literal["per_node", "shared", "independent"]
POLICIES: tuple[Policy, ...] = ("per_node", "shared", "independent")
Ablation = Literal["resample", "mean", "zero"]
ABLATIONS: tuple[Ablation, ...] = ("resample", "mean", "zero")
MAX_PATHS = int(os.environ.get("CASC_MAX_PATHS", 100_000))
MAX_DEPTH = int(os.environ.get("CASC_MAX_DEPTH", 200))
Path_ = tuple[str, ...]  # a model path: (input, node, ..., output)


def compile_formula_at(text: str, source: SourceMap, loc: tuple[str | int, ...]) -> Formula:
    """Compile a formula, placing any error at its position in the YAML file."""
    try:
        return compile_formula(text)
    except FormulaError as exc:
        raise _located(exc, source, loc) from None


def _located(exc: FormulaError, source: SourceMap, loc: tuple[str | int, ...]) -> FormulaError:
    located = FormulaError(exc.message, exc.col)
    located.location = source.formula_location(loc, exc.col)
    return located


def name_column(text: str, name: str) -> int | None:
    """Column of the first use of variable ``name`` in a formula (not inside a longer name)."""
    match = re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)
    return match.start() if match else None


def _check_names(formula: Formula, known: set[str], source: SourceMap,
                 loc: tuple[str | int, ...], what: str) -> None:
    unknown = sorted(formula.names - known)
    if unknown:
        raise GraphError(
            f"{what} reads `{unknown[0]}`, which is not defined here "
            f"(known names: {', '.join(sorted(known)) or 'none'})",
            source.formula_location(loc, name_column(formula.text, unknown[0])),
        )


@dataclass(frozen=True)
class Metric:
    """The metric f(out, reference): a builtin name or a formula over out, label and inputs."""

    name: str
    formula: Formula | None
    higher_is_better: bool
    title: str | None = None

    @property
    def display(self) -> str:
        """How reports name the metric: its title, builtin name, or formula text."""
        if self.title:
            return self.title
        return self.name if self.formula is None else self.formula.text


@dataclass(frozen=True)
class ModelGraph:
    """A model graph G: a DAG of formula nodes over task inputs."""

    name: str
    formulas: dict[str, Formula]
    reads: dict[str, tuple[str, ...]]
    output: str
    inputs: tuple[str, ...]
    order: tuple[str, ...]  # topological order of the nodes upstream of the output
    ancestors: dict[str, frozenset[str]] = field(repr=False)
    every: tuple[str, ...] = ()  # topological order of all nodes (some may not reach the output)

    def is_upstream(self, a: str, b: str) -> bool:
        """Whether ``a`` (a node or input) lies strictly upstream of node ``b``."""
        return a in self.ancestors.get(b, frozenset())

    def paths(self) -> list[Path_]:
        """Every path from a task input to the output: the leaves of the treeified G."""
        result: list[Path_] = []

        def walk(node: str, suffix: Path_) -> None:
            if len(result) > MAX_PATHS:
                raise GraphError(
                    f"model `{self.name}` has more than {MAX_PATHS} input-to-output paths once "
                    "treeified (raise the limit with CASC_MAX_PATHS)"
                )
            if node in self.inputs:
                result.append((node, *suffix))
                return
            for parent in self.reads[node]:
                walk(parent, (node, *suffix))

        walk(self.output, ())
        return result

    def subtree_size(self, node: str) -> int:
        """How many model nodes ``node`` stands for (itself and every node upstream)."""
        if node in self.inputs:
            return 0
        return 1 + sum(1 for a in self.ancestors[node] if a not in self.inputs)


@dataclass(frozen=True)
class CompiledTask:
    loaded: LoadedTask
    label: Formula
    metric: Metric
    input_names: tuple[str, ...]
    models: dict[str, ModelGraph] = field(repr=False, default_factory=dict)

    def model(self, name: str) -> ModelGraph:
        """The compiled model graph ``name`` (compiled once per task)."""
        return self.models[name]


def compile_task(loaded: LoadedTask) -> CompiledTask:
    spec, source = loaded.spec, loaded.source
    inputs = set(spec.inputs)
    label = compile_formula_at(spec.label, source, ("label",))
    _check_names(label, inputs, source, ("label",), "the label")
    formula = None
    if spec.metric.formula is not None:
        loc = ("metric",) if _metric_is_plain(source) else ("metric", "formula")
        formula = compile_formula_at(spec.metric.formula, source, loc)
        _check_names(formula, inputs | {"out", "label"}, source, loc, "the metric")
    metric = Metric(spec.metric.name or "formula", formula, spec.metric.higher_is_better,
                    spec.metric.title)
    models = {name: compile_model(loaded, name) for name in spec.models}  # validates them all
    return CompiledTask(loaded, label, metric, tuple(spec.inputs), models)


def _metric_is_plain(source: SourceMap) -> bool:
    node, _ = source._walk(("metric",))
    return isinstance(node, yaml.ScalarNode)


def compile_model(loaded: LoadedTask, name: str) -> ModelGraph:
    spec, source = loaded.spec.models[name], loaded.source
    inputs = tuple(loaded.spec.inputs)
    base = ("models", name)
    formulas: dict[str, Formula] = {}
    for node, text in spec.nodes.items():
        if node in inputs:
            raise GraphError(
                f"model node `{node}` has the name of a task input; rename one of them",
                source.location((*base, "nodes", node), key=True),
            )
        loc = (*base, "nodes", node)
        formulas[node] = compile_formula_at(text, source, loc)
        _check_names(formulas[node], set(spec.nodes) | set(inputs) - {node}, source, loc,
                     f"model node `{node}`")
    if spec.output not in formulas:
        raise GraphError(
            f"the output `{spec.output}` is not a node of model `{name}`",
            source.location((*base, "output")),
        )
    reads = {n: tuple(sorted(f.names)) for n, f in formulas.items()}
    every = _topological_order(reads, set(inputs), source, base)
    needed = {spec.output}
    for node in reversed(every):
        if node in needed:
            needed.update(p for p in reads[node] if p not in inputs)
    order = [n for n in every if n in needed]
    ancestors: dict[str, frozenset[str]] = {}
    depth: dict[str, int] = {}
    for node in every:  # every node, so claims on nodes the output ignores still resolve
        up: set[str] = set()
        for parent in reads[node]:
            up.add(parent)
            up |= ancestors.get(parent, frozenset())
        ancestors[node] = frozenset(up)
        depth[node] = 1 + max((depth.get(p, 0) for p in reads[node]), default=0)
    if depth[spec.output] > MAX_DEPTH:
        raise GraphError(
            f"model `{name}` is {depth[spec.output]} nodes deep, over the limit of {MAX_DEPTH} "
            "(raise it with CASC_MAX_DEPTH)",
            source.location((*base, "output")),
        )
    return ModelGraph(name, formulas, reads, spec.output, inputs, tuple(order), ancestors,
                      tuple(every))


def _topological_order(reads: dict[str, tuple[str, ...]], inputs: set[str],
                       source: SourceMap, base: tuple[str, ...]) -> list[str]:
    """Every node, parents first; a cycle is an error naming it."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for start in reads:  # every node, so cycles anywhere are reported
        stack: list[tuple[str, int]] = [(start, 0)]
        trail: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                if state.get(node) == 2:
                    continue
                state[node] = 1
                trail.append(node)
            parents = [p for p in reads[node] if p not in inputs]
            if i < len(parents):
                stack.append((node, i + 1))
                parent = parents[i]
                if state.get(parent) == 1:
                    cycle = trail[trail.index(parent):] + [parent]
                    raise GraphError(
                        "the model graph has a cycle: " + " -> ".join(reversed(cycle)),
                        source.location((*base, "nodes", parent), key=True),
                    )
                if state.get(parent) != 2:
                    stack.append((parent, 0))
            else:
                state[node] = 2
                trail.pop()
                order.append(node)
    return order


@dataclass(frozen=True)
class InterpNode:
    name: str
    formula: Formula
    claims: str
    parent: str | None
    children: tuple[str, ...]
    location: Location

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass(frozen=True)
class HypothesisWarning:
    """Something the hypothesis says that the run cannot honour or that may mislead."""

    kind: Literal["vacuous", "unclaimed_input", "no_variation"]
    message: str
    location: Location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True)
class Slot:
    """A datum the algorithm draws per resample.

    ``kind`` is ``ref`` (the reference r), ``node`` (an interpretation node's
    datum, drawn from its parent's within the node's equivalence class) or
    ``other`` (an unconditional draw for unimportant paths). ``stream`` keys the
    random stream, so common random numbers line up across hypotheses.
    """

    kind: Literal["ref", "node", "other"]
    stream: tuple[int, ...]
    node: str | None = None
    parent: int | None = None


@dataclass(frozen=True)
class Step:
    """Evaluate one treeified model node (``args`` name -> step), read one input, or
    stand in for an ablated subtree (``ablate``: the node's mean over D, or zero)."""

    kind: Literal["input", "node", "ablate"]
    name: str
    slot: int = -1
    args: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ScrubPlan:
    slots: tuple[Slot, ...]
    steps: tuple[Step, ...]
    output_step: int
    path_slots: dict[Path_, int]


@dataclass(frozen=True)
class CompiledHypothesis:
    loaded: LoadedHypothesis
    task: CompiledTask
    model: ModelGraph
    nodes: dict[str, InterpNode]
    root: str
    plan: ScrubPlan
    policy: Policy
    warnings: tuple[HypothesisWarning, ...]
    ablation: Ablation = "resample"


STREAM_REFERENCE = 0
STREAM_NODE = 1
STREAM_OTHER = 2
STREAM_PATH = 3
STREAM_RANDOM_BASELINE = 4


def compile_hypothesis(loaded: LoadedHypothesis, policy: Policy = "per_node",
                       task: CompiledTask | None = None,
                       ablation: Ablation = "resample") -> CompiledHypothesis:
    """Check the interpretation tree and its correspondence, and build the recipe.

    ``ablation`` says what unimportant paths get: ``resample`` (the algorithm:
    an "other inputs" datum), or ``mean``/``zero``, which replace every maximal
    treeified subtree whose input paths are all unimportant by that node's mean
    over D or by zero (appendix section 3 explains why resampling is preferred).
    """
    task = task or compile_task(loaded.task)
    model = task.model(loaded.model_name)
    nodes, root = _interpretation_tree(loaded, model)
    warnings: list[HypothesisWarning] = []
    path_owner = _assign_paths(nodes, root, model, warnings)
    plan = _build_plan(nodes, root, model, path_owner, policy, ablation)
    return CompiledHypothesis(loaded, task, model, nodes, root, plan, policy, tuple(warnings),
                              ablation)


def _interpretation_tree(loaded: LoadedHypothesis, model: ModelGraph
                         ) -> tuple[dict[str, InterpNode], str]:
    spec, source = loaded.spec, loaded.source
    inputs = set(model.inputs)
    names = list(spec.nodes)
    root = names[0]
    formulas: dict[str, Formula] = {}
    children: dict[str, tuple[str, ...]] = {}
    parent_of: dict[str, str] = {}
    for name in names:
        loc = ("nodes", name, "value")
        formula = compile_formula_at(spec.nodes[name].value, source, loc)
        known = (set(names) - {name}) | inputs
        _check_names(formula, known, source, loc, f"interpretation node `{name}`")
        formulas[name] = formula
        kids = tuple(n for n in names if n in formula.names and n != name)
        children[name] = kids
        for kid in kids:
            if kid == root:
                raise GraphError(
                    f"node `{name}` reads the root `{root}`: the interpretation must be a tree "
                    "whose first node is the root",
                    source.formula_location(loc, name_column(formula.text, kid)),
                )
            if kid in parent_of:
                raise GraphError(
                    f"node `{kid}` is read by both `{parent_of[kid]}` and `{name}`: the "
                    "interpretation must be a tree; give the second use its own node "
                    f"(e.g. `{kid}_2: {{value: ..., claims: ...}}`)",
                    source.formula_location(loc, name_column(formula.text, kid)),
                )
            parent_of[kid] = name
    reachable, stack = {root}, [root]
    while stack:
        for kid in children[stack.pop()]:
            if kid not in reachable:
                reachable.add(kid)
                stack.append(kid)
    for name in names:
        if name not in reachable:
            reason = ("it is part of a cycle" if name in parent_of
                      else "no node reads it")
            raise GraphError(
                f"node `{name}` is not below the root `{root}` ({reason}); the first node "
                "is the root and every other node must be read by exactly one node",
                source.location(("nodes", name), key=True),
            )
    nodes: dict[str, InterpNode] = {}
    for name in names:
        claim = spec.nodes[name].claims
        claims_loc = ("nodes", name, "claims")
        if claim is None:
            claim = name
            claims_loc = ("nodes", name)
            if name not in model.formulas and name not in inputs:
                raise GraphError(
                    f"node `{name}` claims nothing: model `{model.name}` has no node or input "
                    f"named `{name}`; say which with `claims:`",
                    source.location(("nodes", name), key=True),
                )
        elif claim not in model.formulas and claim not in inputs:
            raise GraphError(
                f"node `{name}` claims `{claim}`, which is neither a node of model "
                f"`{model.name}` nor a task input",
                source.location(claims_loc),
            )
        nodes[name] = InterpNode(name, formulas[name], claim, parent_of.get(name), children[name],
                                 source.location(claims_loc, key=claim == name and
                                                 spec.nodes[name].claims is None))
    if nodes[root].claims != model.output:
        raise GraphError(
            f"the root `{root}` must claim the model's output `{model.output}`, "
            f"not `{nodes[root].claims}`",
            nodes[root].location,
        )
    return nodes, root


def walk_path(nodes: dict[str, InterpNode], root: str, path: Path_) -> list[tuple[str, int]]:
    """The interpretation nodes a treeified path passes through, from the root.

    Each entry is ``(node, position)``, ``position`` indexing the node's claim
    in ``path = (input, ..., output)``. Walking down, the path goes to the child
    whose claimed node lies on it nearest to the parent's claim; the last entry
    owns the path: the path reads its datum (a leaf) or its "other inputs"
    datum (a non-leaf: the path is unimportant).
    """
    current, position = root, len(path) - 1
    chain = [(current, position)]
    while True:
        best, best_position = None, -1
        for kid in nodes[current].children:
            claim = nodes[kid].claims
            if claim in path[:position]:
                at = path.index(claim, 0, position)
                if at > best_position:
                    best, best_position = kid, at
        if best is None:
            return chain
        current, position = best, best_position
        chain.append((current, position))


def _assign_paths(nodes: dict[str, InterpNode], root: str, model: ModelGraph,
                  warnings: list[HypothesisWarning]) -> dict[Path_, tuple[str, bool]]:
    """For every treeified input path: the interpretation node whose datum it reads.

    Walking down the tree, a path goes to the child whose claimed node lies on
    it nearest to the parent's node; ties (two children claiming the same model
    node) are an error. The value is (node, unimportant): unimportant paths
    read the node's "other inputs" datum instead of the node's own.
    """
    # Correspondence checks, parent by parent.
    honoured: dict[str, set[str]] = {}
    for node in nodes.values():
        if node.parent is None:
            continue
        parent = nodes[node.parent]
        if node.claims == parent.claims:
            raise GraphError(
                f"node `{node.name}` claims `{node.claims}`, the same model node as its parent "
                f"`{parent.name}`; a child must claim something its parent's node reads",
                node.location,
            )
        if model.is_upstream(parent.claims, node.claims):
            raise GraphError(
                f"node `{node.name}` claims `{node.claims}`, which is downstream of (computed "
                f"from) its parent `{parent.name}`'s node `{parent.claims}`; a child must claim "
                "a node upstream of its parent's",
                node.location,
            )
    for node in nodes.values():
        seen: dict[str, str] = {}
        for kid in node.children:
            claim = nodes[kid].claims
            if claim in seen:
                raise GraphError(
                    f"nodes `{seen[claim]}` and `{kid}` (both under `{node.name}`) claim the same "
                    f"model node `{claim}`: two claims on overlapping paths; merge them or claim "
                    "different nodes",
                    nodes[kid].location,
                )
            seen[claim] = kid
        honoured[node.name] = set()

    owner: dict[Path_, tuple[str, bool]] = {}
    for path in model.paths():
        chain = walk_path(nodes, root, path)
        for (parent, _), (kid, _) in zip(chain, chain[1:]):
            honoured[parent].add(kid)
        current = chain[-1][0]
        owner[path] = (current, not nodes[current].is_leaf)

    for node in nodes.values():
        if node.parent is None:
            continue
        if node.name in honoured[node.parent]:
            continue
        parent = nodes[node.parent]
        if model.is_upstream(node.claims, parent.claims):
            shadows = [f"`{s}` (claims `{nodes[s].claims}`)" for s in parent.children
                       if s in honoured[parent.name]
                       and model.is_upstream(node.claims, nodes[s].claims)]
            reason = (f"every path from `{node.claims}` to `{parent.claims}` goes through "
                      f"sibling {' and '.join(shadows)}, whose claim is nearer to `{parent.claims}`, so this claim has no effect")
        else:
            reason = (f"`{node.claims}` is not upstream of `{parent.claims}` in model "
                      f"`{model.name}`, so the model cannot honour it; paths it would name are "
                      "resampled as unimportant")
        warnings.append(HypothesisWarning(
            "vacuous",
            f"vacuous claim: node `{node.name}` claims `{node.claims}` under `{parent.name}`, but "
            f"{reason}",
            node.location,
        ))
    for node in nodes.values():
        if node.is_leaf:
            continue
        direct_inputs = sorted(node.formula.names & set(model.inputs) - set(node.children))
        for name in direct_inputs:
            unclaimed = [p for p, (owner_node, unimportant) in owner.items()
                         if owner_node == node.name and unimportant and p[0] == name]
            if unclaimed:
                warnings.append(HypothesisWarning(
                    "unclaimed_input",
                    f"node `{node.name}` reads input `{name}` in its formula, but no child claims "
                    f"the model's use of `{name}`, so those paths are resampled as unimportant; "
                    f"add a leaf `{name}: {{value: {name}}}` to claim them",
                    node.location,
                ))
    return owner


def _build_plan(nodes: dict[str, InterpNode], root: str, model: ModelGraph,
                owner: dict[Path_, tuple[str, bool]], policy: Policy,
                ablation: Ablation = "resample") -> ScrubPlan:
    slots: list[Slot] = []
    node_slot: dict[str, int] = {}
    preorder: list[str] = []
    stack = [root]
    while stack:
        name = stack.pop()
        preorder.append(name)
        stack.extend(reversed(nodes[name].children))
    position = {name: i for i, name in enumerate(preorder)}

    used_nodes = {n for n, _ in owner.values()} | {root}  # the reference is always drawn
    needed = set()
    for name in used_nodes:  # a node's datum is needed if it or a descendant is read
        while name is not None and name not in needed:
            needed.add(name)
            name = nodes[name].parent
    for name in preorder:
        if name not in needed:
            continue
        if name == root:
            node_slot[name] = len(slots)
            slots.append(Slot("ref", (STREAM_REFERENCE,), name))
        else:
            node_slot[name] = len(slots)
            slots.append(Slot("node", (STREAM_NODE, position[name]), name,
                              node_slot[nodes[name].parent]))

    other_slot: dict[object, int] = {}
    path_slot: dict[Path_, int] = {}
    for path in sorted(owner, key=lambda p: (position[owner[p][0]], p)):
        name, unimportant = owner[path]
        if not unimportant:
            path_slot[path] = node_slot[name]
            continue
        if policy == "per_node":
            key: object = name
            stream: tuple[int, ...] = (STREAM_OTHER, position[name])
        elif policy == "shared":
            key, stream = "shared", (STREAM_OTHER, 0)
        else:
            key, stream = path, (STREAM_PATH, _stable_hash(path))
        if key not in other_slot:
            other_slot[key] = len(slots)
            slots.append(Slot("other", stream, name))
        path_slot[path] = other_slot[key]

    steps: list[Step] = []
    memo: dict[tuple, int] = {}

    def unimportant_only(node: str, suffix: Path_) -> bool:
        if node in model.inputs:
            return owner[(node, *suffix)][1]
        return all(unimportant_only(parent, (node, *suffix)) for parent in model.reads[node])

    def build(node: str, suffix: Path_) -> tuple[int, tuple]:
        if ablation != "resample" and unimportant_only(node, suffix):
            signature: tuple = ("ablate", node)
            if signature not in memo:
                memo[signature] = len(steps)
                steps.append(Step("ablate", node))
            return memo[signature], signature
        if node in model.inputs:
            slot = path_slot[(node, *suffix)]
            signature = (node, slot)
            if signature not in memo:
                memo[signature] = len(steps)
                steps.append(Step("input", node, slot=slot))
            return memo[signature], signature
        args, parts = [], []
        for parent in model.reads[node]:
            step, sig = build(parent, (node, *suffix))
            args.append((parent, step))
            parts.append(sig)
        signature = (node, tuple(parts))
        if signature not in memo:
            memo[signature] = len(steps)
            steps.append(Step("node", node, args=tuple(args)))
        return memo[signature], signature

    output_step, _ = build(model.output, ())
    return ScrubPlan(tuple(slots), tuple(steps), output_step, path_slot)


def _stable_hash(path: Path_) -> int:
    return zlib.crc32("/".join(path).encode())
