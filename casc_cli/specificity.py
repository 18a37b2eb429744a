"""How specific a hypothesis is: what each node stands for, and how much it pins down.

A hypothesis that claims one node for a whole subgraph can pass while saying
little (the pitfalls post's ``x0 > x1`` for the reciprocal comparison). Two
views of that, both exact over D:

* :func:`node_reports`, per interpretation node: how many model nodes it
  stands for, how many equivalence classes its value has over D, and how its
  partition of D relates to the partition induced by the model node (or
  input) it claims;
* :func:`specificity`: the entropy of the joint distribution of the scrubbed
  inputs (section 5 of the causal scrubbing appendix: the maximum-entropy
  distribution subject to Lemma 1's constraints), against the entropy with no
  claims at all. Their difference is how many bits the hypothesis pins down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .engine import Prepared
from .graph import CompiledHypothesis, Path_, walk_path

MAX_STATES = 200_000
"""Largest support of any distribution :func:`scrubbed_input_entropy` builds."""

MAX_WORK = 5_000_000
"""Most (value, probability) entries :func:`scrubbed_input_entropy` builds in all."""

Relation = Literal["equivalent", "coarser", "finer", "different"]


@dataclass(frozen=True)
class NodeReport:
    """One interpretation node, as :func:`node_reports` sees it."""

    name: str
    claims: str
    stands_for: int  # model nodes the node summarises (inputs excluded)
    classes: int  # equivalence classes of the node's value over D
    relation: Relation  # its partition of D against the claimed model node's


@dataclass(frozen=True)
class Specificity:
    """Entropies, in bits, of the scrubbed inputs (one value per treeified input path).

    ``entropy_bits`` is None when it was too large to compute exactly (see
    :func:`scrubbed_input_entropy`), and then so is ``claimed_bits``.
    """

    entropy_bits: float | None
    max_entropy_bits: float
    claimed_bits: float | None  # max_entropy_bits - entropy_bits: what the claims pin down


# --------------------------------------------------------------------------- helpers


def _row_labels(values: np.ndarray) -> tuple[np.ndarray, int]:
    """A class label per row (equal rows, compared whole, share a label) and the class count."""
    values = np.asarray(values)
    n = values.shape[0]
    if values.ndim > 1:
        rows = values.reshape(n, -1)
        if rows.shape[1] == 0:
            return np.zeros(n, dtype=np.int64), min(n, 1)
        return _combine([_row_labels(rows[:, j]) for j in range(rows.shape[1])])
    uniques, labels = np.unique(values, return_inverse=True)
    return labels.reshape(-1).astype(np.int64), len(uniques)


def _compact(key: np.ndarray, bound: int) -> tuple[np.ndarray, int]:
    """Relabel non-negative integer keys below ``bound`` as 0..k-1, keeping their order."""
    n = len(key)
    if bound <= max(4 * n, 1 << 16):
        present = np.zeros(bound, dtype=bool)
        present[key] = True
        remap = np.cumsum(present) - 1
        return remap[key].astype(np.int64), int(present.sum())
    uniques, labels = np.unique(key, return_inverse=True)
    return labels.reshape(-1).astype(np.int64), len(uniques)


def _combine(columns: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    """Labels of the joint value of several labelled columns (mixed radix, relabelled)."""
    labels, k = columns[0]
    for column, size in columns[1:]:
        labels, k = _compact(labels * size + column, k * size)
    return labels, k


def _representatives(labels: np.ndarray, k: int) -> np.ndarray:
    """One row of each class (any: rows of a class agree on what was labelled)."""
    rows = np.zeros(k, dtype=np.int64)
    rows[labels] = np.arange(len(labels))
    return rows


def _entropy_of_labels(labels: np.ndarray) -> float:
    counts = np.bincount(labels)
    return _entropy_of_counts(counts[counts > 0])


def _entropy_of_counts(counts: np.ndarray) -> float:
    p = np.asarray(counts, dtype=float)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


def _entropy_of_dist(dist: dict) -> float:
    return _entropy_of_counts(np.fromiter(dist.values(), dtype=float, count=len(dist)))


def _preorder(hyp: CompiledHypothesis) -> list[str]:
    order, stack = [], [hyp.root]
    while stack:
        name = stack.pop()
        order.append(name)
        stack.extend(reversed(hyp.nodes[name].children))
    return order


def path_chains(hyp: CompiledHypothesis) -> dict[Path_, list[tuple[str, int]]]:
    """For every treeified input path, the interpretation nodes it passes through.

    Each entry is ``(node, position)``: ``position`` indexes the node's claim
    in the path ``(input, ..., output)``. The chain starts at the root (whose
    claim is the output, the path's last element) and follows the documented
    rule: walking down, a path goes to the child whose claimed node lies on
    it nearest to the parent's claim. The last entry owns the path (reads its
    datum, or its "other inputs" datum when it is not a leaf).
    """
    return {path: walk_path(hyp.nodes, hyp.root, path) for path in hyp.model.paths()}


def stands_for(hyp: CompiledHypothesis) -> dict[str, int]:
    """How many model nodes each interpretation node stands for.

    A leaf stands for its claim's whole subtree (``subtree_size``). A non-leaf
    stands for the distinct model nodes on the paths that reach it, from its
    own claim (inclusive) down to the claim of the child the path goes on to
    (exclusive), or down to the input when the path ends at it; inputs are
    never counted.
    """
    model = hyp.model
    segments: dict[str, set[str]] = {name: set() for name in hyp.nodes}
    for path, chain in path_chains(hyp).items():
        for i, (name, position) in enumerate(chain):
            below = chain[i + 1][1] if i + 1 < len(chain) else -1
            segments[name].update(n for n in path[below + 1:position + 1]
                                  if n not in model.inputs)
    return {name: model.subtree_size(node.claims) if node.is_leaf else len(segments[name])
            for name, node in hyp.nodes.items()}


def relation(interp: np.ndarray, model: np.ndarray) -> Relation:
    """Compare the partitions of D induced by two value arrays (rows compared whole).

    ``equivalent``: the same partition; ``coarser``: the first is a function
    of the second but not conversely (it merges classes); ``finer``: the
    second is a function of the first but not conversely; else ``different``.
    """
    a, ka = _row_labels(interp)
    b, kb = _row_labels(model)
    kab = _combine([(a, ka), (b, kb)])[1] if len(a) else 0
    a_of_b, b_of_a = kab == kb, kab == ka
    if a_of_b and b_of_a:
        return "equivalent"
    if a_of_b:
        return "coarser"
    if b_of_a:
        return "finer"
    return "different"


# --------------------------------------------------------------------------- API


def node_reports(prepared: Prepared) -> list[NodeReport]:
    """One report per interpretation node, in preorder from the root."""
    hyp = prepared.hypothesis
    values = prepared.model_values
    counts = stands_for(hyp)
    reports = []
    for name in _preorder(hyp):
        node = hyp.nodes[name]
        mine = prepared.node_values[name]
        reports.append(NodeReport(
            name=name,
            claims=node.claims,
            stands_for=counts[name],
            classes=_row_labels(mine)[1],
            relation=relation(mine, values[node.claims]),
        ))
    return reports


def _slot_value_labels(prepared: Prepared) -> list[tuple[np.ndarray, int]]:
    """For each slot: a label per row of D for V_s, the inputs of the paths reading the slot."""
    plan = prepared.hypothesis.plan
    n = prepared.dataset.size
    input_labels = {name: _row_labels(v) for name, v in prepared.dataset.inputs.items()}
    read: list[set[str]] = [set() for _ in plan.slots]
    for path, slot in plan.path_slots.items():
        read[slot].add(path[0])
    result = []
    for names in read:
        if not names:
            result.append((np.zeros(n, dtype=np.int64), 1))
        else:
            result.append(_combine([input_labels[m] for m in sorted(names)]))
    return result


class _TooLarge(Exception):
    pass


def scrubbed_input_entropy(prepared: Prepared) -> float | None:
    """Entropy in bits of the joint distribution of the scrubbed inputs, computed exactly.

    The scrubbed inputs are, for every treeified input path of the model, the
    value of its input in the datum the path reads (slot
    ``plan.path_slots[path]``), under the scrubbing distribution: the
    reference uniform over D, each interpretation node's datum uniform over
    its parent datum's class at that node, each "other inputs" datum uniform
    over D independently. Paths reading the same slot and input carry the
    same value, so they count once.

    "Other" slots are independent of everything, so their entropies add. The
    reference and node slots form a tree; with V_s the inputs slot s supplies:

        P(T_s | d_s = row) = delta(V_s(row)) x prod_children P(T_c | class_c(row))
        P(T_c | class l)   = mean over rows of class l of P(T_c | d_c = row)

    computed bottom up, with rows grouped by their signature (V_s, children's
    class labels), so the work scales with distinct signatures, not rows.

    Returns None when a distribution would have more than :data:`MAX_STATES`
    states, or building them would take more than :data:`MAX_WORK` entries
    in all (large or continuous datasets); casc then shows "—".
    """
    try:
        return _scrubbed_entropy(prepared)
    except _TooLarge:
        return None


def _scrubbed_entropy(prepared: Prepared) -> float:
    plan = prepared.hypothesis.plan
    n = prepared.dataset.size
    v_labels = _slot_value_labels(prepared)
    total = 0.0
    children: dict[int, list[int]] = {i: [] for i in range(len(plan.slots))}
    for i, slot in enumerate(plan.slots):
        if slot.kind == "other":
            total += _entropy_of_labels(v_labels[i][0])
        elif slot.kind == "node":
            assert slot.parent is not None
            children[slot.parent].append(i)

    work = [0]

    def spend(entries: int) -> None:
        work[0] += entries
        if work[0] > MAX_WORK:
            raise _TooLarge

    def mix(target: dict[int, float], source: dict[int, float], weight: float) -> None:
        """target += weight * source (distributions over state ids), within the limits."""
        spend(len(source))
        for state, p in source.items():
            target[state] = target.get(state, 0.0) + weight * p
        if len(target) > MAX_STATES:
            raise _TooLarge

    # Per tree slot: signature of each row, and P(T_s | signature) as {state id: p}.
    sig_of_row: dict[int, np.ndarray] = {}
    sig_dists: dict[int, list[dict[int, float]]] = {}
    for i in reversed(range(len(plan.slots))):
        slot = plan.slots[i]
        if slot.kind == "other":
            continue
        kids = children[i]
        tables = [prepared.classes[plan.slots[c].node] for c in kids]  # type: ignore[index]
        inverse, n_sigs = _combine([v_labels[i], *((t.labels, t.n_classes) for t in tables)])
        rep = _representatives(inverse, n_sigs)
        signatures = np.stack([v_labels[i][0][rep], *(t.labels[rep] for t in tables)], axis=1)
        spend(n_sigs)
        # P(T_c | class l) for each child, keyed by class label.
        per_class: list[dict[int, dict[int, float]]] = []
        for c, table in zip(kids, tables):
            pair, n_pairs = _combine([(table.labels, table.n_classes),
                                      (sig_of_row[c], len(sig_dists[c]))])
            spend(n_pairs)
            pair_rows = _representatives(pair, n_pairs)
            pair_counts = np.bincount(pair, minlength=n_pairs)
            mixed: dict[int, dict[int, float]] = {}
            for label, sig, count in zip(table.labels[pair_rows].tolist(),
                                         sig_of_row[c][pair_rows].tolist(),
                                         pair_counts.tolist()):
                weight = count / int(table.counts[label])
                mix(mixed.setdefault(label, {}), sig_dists[c][sig], weight)
            per_class.append(mixed)
        states: dict[tuple, int] = {}
        dists: list[dict[int, float]] = []
        for row in signatures.tolist():
            parts = [per_class[j][label] for j, label in enumerate(row[1:])]
            size = math.prod(len(part) for part in parts)
            if size > MAX_STATES:
                raise _TooLarge
            spend(size)
            current: dict[tuple, float] = {(row[0],): 1.0}
            for part in parts:
                current = {key + (state,): p * q
                           for key, p in current.items() for state, q in part.items()}
            dists.append({states.setdefault(key, len(states)): p for key, p in current.items()})
        sig_of_row[i], sig_dists[i] = inverse, dists

    root = next(i for i, s in enumerate(plan.slots) if s.kind == "ref")
    sig_counts = np.bincount(sig_of_row[root])
    final: dict[int, float] = {}
    for sig, count in enumerate(sig_counts.tolist()):
        if count == 0:
            continue
        mix(final, sig_dists[root][sig], count / n)
    return total + _entropy_of_dist(final)


def max_input_entropy(prepared: Prepared) -> float:
    """Entropy in bits of the scrubbed inputs with no claims at all.

    Every treeified input path reads its own independent uniform datum, so
    this is the sum over paths of the entropy of the path's input over D.
    """
    marginal = {name: _entropy_of_labels(_row_labels(v)[0])
                for name, v in prepared.dataset.inputs.items()}
    return float(sum(marginal[path[0]] for path in prepared.hypothesis.plan.path_slots))


def specificity(prepared: Prepared) -> Specificity:
    """The scrubbed inputs' entropy, the claim-free maximum, and their difference."""
    entropy = scrubbed_input_entropy(prepared)
    maximum = max_input_entropy(prepared)
    claimed = None if entropy is None else maximum - entropy
    if claimed is not None and abs(claimed) < 1e-9:
        claimed = 0.0  # rounding noise: the figures agree
    return Specificity(entropy, maximum, claimed)
