"""The adversary's search: a refinement of a hypothesis that moves its scrubbed loss.

Adversarial validation (causal scrubbing appendix, section 8): a hypothesis H
should keep the model's loss not only when scrubbed itself, but also when
joined with any hypothesis H' an adversary proposes. :func:`search` tries one
family of such joins: for an interpretation node ``n``, one of its
equivalence classes ``v`` and one feature ``f`` (a scalar input, or one
element ``x[i]`` of a vector input), H' equals H except that ``n``'s value
becomes ``pair(value_n, where(value_n == v, f, 0))``: the class ``v`` is
split by ``f``, every other class is kept. That is join(H, S) for the
hypothesis S that only splits that class.

Every candidate is scrubbed under the same seed as H (common random numbers),
and ranked by ``|E d| / SE(d)`` with ``d = f(scrubbed, r) - f(G(r), r)`` the
paired per-sample difference from the model's metric on the same reference.
The best is reported as significant when it clears a Bonferroni-corrected
two-sided level over the candidates tried.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from . import engine
from .errors import UsageError
from .formula import compile_formula
from .join import dump_hypothesis, loaded_from_text, node_entry, part, read_parts, relative_task
from .metrics import ScrubResult
from .spec.loader import LoadedHypothesis
from .spec.models import HypothesisSpec, NodeSpec

if TYPE_CHECKING:
    from .api import Session
    from .graph import CompiledHypothesis

MAX_CANDIDATES = 1000
"""Most refinements scrubbed per search (largest classes first)."""

MAX_FEATURES = 64
"""Most features considered: scalar inputs and vector elements, in input order."""

MAX_VALUE_ELEMENTS = 16
"""Vector-valued nodes with more elements per example than this (or more than one
per-example axis) are not split."""

GROUP = 16
"""Refinements prepared and scrubbed together (they share node values, class tables and
the random baseline)."""

DEFAULT_ALPHA = 0.05
SHOWN = 10


@dataclass(frozen=True)
class Refinement:
    """One candidate: ``node``'s class ``value`` split by ``feature``, and its figures."""

    node: str  # the node whose class is split, as named in the hypothesis file
    value: str  # the class, as a formula literal
    feature: str
    formula: str  # the node's new value
    class_size: int  # rows of D in the class
    spec: HypothesisSpec  # the refined hypothesis
    result: ScrubResult
    shift: float  # scrubbed loss minus the model's loss
    shift_se: float  # its standard error, paired per reference
    z: float  # |E d| / SE(d) (inf when every d is the same non-zero number)

    @property
    def title(self) -> str:
        return f"`{self.node}` == {self.value} split by {self.feature}"


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search` found. ``best`` is the top-ranked refinement (None when the
    family is empty); it is a finding only when ``significant``."""

    hypothesis: str
    baseline: ScrubResult
    baseline_shift: float
    baseline_shift_se: float
    baseline_z: float
    family_size: int  # candidates that split a class that matters
    tried: int  # candidates scrubbed (at most max_candidates)
    unmovable_classes: int  # classes in which every datum gives the same treeified inputs
    skipped_nodes: tuple[str, ...]  # vector-valued nodes too large to split
    alpha: float
    threshold_z: float  # Bonferroni: two-sided normal quantile at 1 - alpha / (2 tried)
    ranking: tuple[Refinement, ...]  # the best few, best first
    samples: int
    seed: int
    loaded: LoadedHypothesis

    @property
    def best(self) -> Refinement | None:
        return self.ranking[0] if self.ranking else None

    @property
    def significant(self) -> bool:
        return self.best is not None and self.best.z > self.threshold_z

    @property
    def truncated(self) -> bool:
        return self.tried < self.family_size

    @property
    def baseline_significant(self) -> bool:
        """Whether the hypothesis itself already moves the loss (two-sided, level alpha):
        plain scrubbing rejects it, no adversary needed."""
        return self.baseline_z > NormalDist().inv_cdf(1 - self.alpha / 2)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary (no file text; see :meth:`refinement_yaml`)."""
        def number(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "hypothesis": self.hypothesis, "model_loss": self.baseline.model_loss,
            "scrubbed_loss": self.baseline.scrubbed_loss,
            "scrubbed_loss_se": number(self.baseline.scrubbed_loss_se),
            "baseline_z": number(self.baseline_z),
            "baseline_significant": self.baseline_significant,
            "family_size": self.family_size, "tried": self.tried, "truncated": self.truncated,
            "unmovable_classes": self.unmovable_classes, "skipped_nodes": list(self.skipped_nodes),
            "alpha": self.alpha, "threshold_z": self.threshold_z,
            "significant": self.significant, "samples": self.samples, "seed": self.seed,
            "ranking": [{"node": r.node, "class": r.value, "feature": r.feature,
                         "formula": r.formula, "class_size": r.class_size,
                         "scrubbed_loss": r.result.scrubbed_loss,
                         "scrubbed_loss_se": number(r.result.scrubbed_loss_se),
                         "shift": r.shift, "shift_se": number(r.shift_se), "z": number(r.z)}
                        for r in self.ranking],
        }

    def refinement_yaml(self, refinement: Refinement | None = None,
                        output: str | Path | None = None) -> str:
        """A refinement (the best by default) as a hypothesis file to be written at
        ``output`` (default: beside the hypothesis), ``task:`` relative to it."""
        refinement = refinement or self.best
        if refinement is None:
            raise UsageError("the search found no refinement to write")
        out = Path(output) if output is not None else self.loaded.path
        return refinement_text(self.loaded, refinement, out)


def refinement_text(loaded: LoadedHypothesis, refinement: Refinement, output: Path) -> str:
    """The hypothesis file of a refinement."""
    spec = refinement.spec
    nodes = {name: node_entry(name, node.value, node.claims or name, node.description)
             for name, node in spec.nodes.items()}
    source = Path(loaded.source.file).as_posix()
    r = refinement.result
    header = (f"casc adversary {source}\n"
              f"The hypothesis joined with one whose class `{refinement.node}` == "
              f"{refinement.value} is split by {refinement.feature}:\n"
              f"scrubbed loss {r.scrubbed_loss:.6g} ± {r.scrubbed_loss_se:.2g} against the "
              f"model's {r.model_loss:.6g} ({r.samples} samples, seed {r.seed}).")
    return dump_hypothesis(
        header,
        f"{loaded.spec.hypothesis}, refined: {refinement.title}",
        f"An adversarial refinement of {source}: node `{refinement.node}` also keeps "
        f"{refinement.feature} when its value is {refinement.value} (the join with a "
        "hypothesis that splits that class)",
        relative_task(loaded.task.path, output), spec.model, nodes)


# --------------------------------------------------------------------------- the family


@dataclass(frozen=True)
class _Candidate:
    node: str
    value: np.ndarray  # the class's value of the node
    feature: str  # formula text: `x0` or `x[1]`
    feature_input: str
    class_size: int


def _features(inputs: Mapping[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
    """(formula text, input name, column over D) of every scalar feature, in input order."""
    features = []
    for name, values in inputs.items():
        for index in np.ndindex(*values.shape[1:]):
            text = f"{name}[{', '.join(map(str, index))}]" if index else name
            features.append((text, name, values[(slice(None), *index)]))
    return features[:MAX_FEATURES]


def _literal(value: Any) -> str | None:
    """A formula literal equal (==) to one element of a node value."""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return repr(value) if math.isfinite(value) else None


def _class_test(text: str, value: np.ndarray) -> str | None:
    """A formula true exactly on data whose node value (formula ``text``) equals ``value``."""
    body = ast.parse(text, mode="eval").body
    if not isinstance(body, (ast.Name, ast.Subscript, ast.Call, ast.Constant)):
        text = f"({text})"
    if value.ndim == 0:
        literal = _literal(value[()])
        return None if literal is None else f"{text} == {literal}"
    parts = []
    for index in np.ndindex(*value.shape):
        literal = _literal(value[index])
        if literal is None:
            return None
        parts.append(f"{text}[{', '.join(map(str, index))}] == {literal}")
    return " and ".join(parts)


def _shown(value: np.ndarray) -> str:
    if value.ndim == 0:
        return _literal(value[()]) or str(value)
    return "[" + ", ".join(_literal(v) or str(v) for v in value.ravel()) + "]"


def _family(compiled: CompiledHypothesis, prepared: engine.Prepared
            ) -> tuple[list[_Candidate], list[str], int]:
    """Every (node, class, feature) that splits something that matters, largest classes
    first; the nodes skipped (values too large); how many classes no split can move."""
    from .adversary import rigid_classes

    features = _features(prepared.dataset.inputs)
    rigid = rigid_classes(prepared)
    keyed: list[tuple[tuple, _Candidate]] = []
    skipped: list[str] = []
    unmovable = 0
    slot_nodes = [s.node for s in compiled.plan.slots if s.kind == "node" and s.node]
    for position, name in enumerate(slot_nodes):
        values = prepared.node_values[name]
        if values.ndim > 2 or int(np.prod(values.shape[1:])) > MAX_VALUE_ELEMENTS:
            skipped.append(name)
            continue
        table = prepared.classes[name]
        unmovable += int(rigid[name].sum())
        for f_index, (feature, input_name, column) in enumerate(features):
            ids = np.unique(column, return_inverse=True)[1].reshape(-1)
            width = int(ids.max()) + 1
            pairs = np.unique(table.labels * width + ids) // width
            splits = np.bincount(pairs, minlength=table.n_classes) > 1
            for cls in np.flatnonzero(splits & ~rigid[name]):
                row = int(table.order[table.starts[cls]])
                size = int(table.counts[cls])
                keyed.append(((-size, position, int(cls), f_index), _Candidate(
                    name, np.asarray(values[row]), feature, input_name, size)))
    keyed.sort(key=lambda pair: pair[0])
    return [c for _, c in keyed], skipped, unmovable


def _refine(compiled: CompiledHypothesis, candidate: _Candidate
            ) -> tuple[HypothesisSpec, str] | None:
    """The refined hypothesis and the node's new value; None if the class has no literal.

    The node's parent reads the node's first half (``n[0]``, or ``n[0:k]`` for a
    ``k``-vector), so every other node keeps its value. A node that has the
    feature's input name (other than the split node) is renamed, claiming what it
    claimed, so that the feature reads the input.
    """
    spec = compiled.loaded.spec
    model_inputs = compiled.model.inputs
    parent = compiled.nodes[candidate.node].parent
    mapping: dict[str, str] = {}
    clash = candidate.feature_input
    if clash in spec.nodes and clash != candidate.node:
        taken = set(spec.nodes) | set(model_inputs)
        fresh, i = f"{clash}_node", 2
        while fresh in taken:
            fresh, i = f"{clash}_node{i}", i + 1
        mapping[clash] = fresh
    nodes: dict[str, NodeSpec] = {}
    formula = ""
    for name, node in spec.nodes.items():
        text = compile_formula(node.value).rename(
            {k: v for k, v in mapping.items() if k != name}).text
        if name == parent:
            target = mapping.get(candidate.node, candidate.node)
            text = read_parts(text, {target: (target, part(candidate.value.shape, 0))})
        update: dict[str, Any] = {"value": text}
        if name in mapping:
            update["claims"] = node.claims or name
        if name == candidate.node:
            canonical = ast.unparse(ast.parse(text.strip(), mode="eval"))
            test = _class_test(canonical, candidate.value)
            if test is None:
                return None
            formula = update["value"] = f"pair({canonical}, where({test}, {candidate.feature}, 0))"
        nodes[mapping.get(name, name)] = node.model_copy(update=update)
    return spec.model_copy(update={"nodes": nodes}), formula


# --------------------------------------------------------------------------- scrubbing


def _scrub(session: Session, compiled: CompiledHypothesis, samples: int, seed: int,
           given: str) -> tuple[ScrubResult, float, float, float]:
    """The figures ``casc run`` reports, the move from the model's loss, its paired SE and z."""
    return _figures(session.scrub(compiled, samples, seed, given=given, with_specificity=False))


def _figures(result: ScrubResult) -> tuple[ScrubResult, float, float, float]:
    shift = result.scrubbed_loss - result.model_loss
    return result, shift, result.mean_gap_se, _z(result.mean_gap, result.mean_gap_se)


def _z(shift: float, se: float) -> float:
    if not math.isfinite(se):
        return 0.0
    if se == 0:
        return math.inf if shift != 0 else 0.0
    return abs(shift) / se


def search(path: str | Path, *, samples: int = 10_000, seed: int = 0,
           policy: str = "per_node", strict: bool = False, ablation: str = "resample",
           alpha: float = DEFAULT_ALPHA, max_candidates: int = MAX_CANDIDATES,
           session: Session | None = None,
           on_progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Search the refinements of a hypothesis file for the one whose scrubbed loss moves
    furthest from the model's loss (see the module doc). ``on_progress(done, total)`` is
    called as candidates are scrubbed (in groups of :data:`GROUP`)."""
    from .api import Session, check_run_options

    check_run_options(samples, seed)
    if not 0 < alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    if max_candidates < 1:
        raise UsageError("--max-candidates must be at least 1")
    session = session or Session()
    compiled = session.compile(path, policy, strict, ablation)  # type: ignore[arg-type]
    prepared = session.prepare(compiled)
    baseline, shift, shift_se, baseline_z = _scrub(session, compiled, samples, seed, str(path))
    family, skipped, unmovable = _family(compiled, prepared)
    chosen = family[:max_candidates]
    loaded = compiled.loaded
    refinements: list[Refinement] = []
    dataset = prepared.dataset
    for begin in range(0, len(chosen), GROUP):
        cache = engine.PrepareCache()  # shared by the group: unchanged nodes computed once
        group = []
        for candidate in chosen[begin:begin + GROUP]:
            refined = _refine(compiled, candidate)
            if refined is not None:
                spec, formula = refined
                h = session.compile_loaded(replace(loaded, spec=spec), policy, strict,
                                           ablation)  # type: ignore[arg-type]
                group.append((candidate, spec, formula, engine.prepare(h, dataset, cache)))
        results = engine.scrub_many([g[3] for g in group], samples, seed)
        for (candidate, spec, formula, _), result in zip(group, results):
            result, d, d_se, z = _figures(replace(result, hypothesis=str(path)))
            refinements.append(Refinement(candidate.node, _shown(candidate.value),
                                          candidate.feature, formula, candidate.class_size,
                                          spec, result, d, d_se, z))
        if on_progress:
            on_progress(min(begin + GROUP, len(chosen)), len(chosen))
    refinements.sort(key=lambda r: -r.z)  # stable: ties keep the family's order
    tried = len(refinements)
    threshold = NormalDist().inv_cdf(1 - alpha / (2 * max(tried, 1)))
    return SearchResult(str(path), baseline, shift, shift_se, baseline_z, len(family), tried,
                        unmovable, tuple(skipped), alpha, threshold, tuple(refinements[:SHOWN]),
                        samples, seed, loaded)


def load_refinement(result: SearchResult, refinement: Refinement | None = None,
                    output: str | Path | None = None) -> LoadedHypothesis:
    """The refinement's file text, validated as if written at ``output``."""
    out = Path(output) if output is not None else result.loaded.path
    return loaded_from_text(result.refinement_yaml(refinement, out), out, result.loaded)
