"""Worst-case scrubbing: an adversary picks, per reference, the allowed swaps that hurt most.

Causal scrubbing draws each datum uniformly within its equivalence class; a
hypothesis predicts that *every* allowed swap keeps the metric, so the most
demanding test lets an adversary choose the data instead (the pitfalls post's
"single worst swap"). An assignment of the plan's slots is allowed when every
'node' slot's datum lies in its parent slot's class at that node (the
reference's, for the root's children) and every 'other' slot holds any row of D.

The search is greedy and vectorized over references:

* start from every slot holding the reference (the model's own output);
* visit the slots in plan order (the tree's preorder, then the 'other'
  slots). At a slot, each candidate datum is evaluated with the slot *and all
  its descendant slots* set to it (a consistent completion: a datum lies in
  its own class at every node). Candidates are the distinct *signatures* in
  the class of the parent slot's datum (the values of the inputs read by the
  paths of the slot's subtree: rows with equal signatures give equal outputs),
  at most :data:`MAX_CANDIDATES` per class, evenly spaced when capped. Every
  (reference, candidate) pair of a slot is one flat batch through the plan's
  steps, reduced per reference with ``np.maximum.reduceat``; a candidate
  replaces the current choice only if it is strictly worse;
* a second pass revisits the slots for the references not known to be exact
  (coordinate ascent: the figure can only grow).

The figure is *exact* for a reference when at most one slot can vary in a way
that matters and nothing below that slot can (see :func:`_rigidity`); then the
greedy visit of that slot is brute force over it. Otherwise it is a lower
bound on the worst case. Either way it is at least the model's own loss on
each reference, since the starting assignment is the model itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from . import engine
from .data import Dataset
from .engine import Prepared
from .metrics import Moments

if TYPE_CHECKING:
    from .api import Session

MAX_CANDIDATES = 512
"""Most candidate signatures tried per equivalence class (the rest make the figure a bound)."""

MAX_PAIR_ELEMENTS = 1 << 24
"""Rough bound on the array elements of one batch of (reference, candidate) evaluations."""

DEFAULT_PASSES = 2


@dataclass(frozen=True)
class WorstCase:
    """The adversary's figure for one hypothesis.

    ``worst_loss`` is the mean over references of the worst metric found (the
    largest loss, or the smallest reward when ``higher_is_better``);
    ``excess`` is its paired difference from the model's metric on the same
    references (never negative for a loss). With ``every_row`` the references
    are the rows of D, each once, and there is no sampling error (SEs are 0).
    ``exact`` says the worst case was found exactly for every reference;
    otherwise ``worst_loss`` is a lower bound on it (``exact_fraction`` of the
    references are exact). ``capped`` says some class had more than
    :data:`MAX_CANDIDATES` candidate signatures.
    """

    hypothesis: str
    name: str
    metric: str
    higher_is_better: bool
    model_loss: float
    worst_loss: float
    worst_loss_se: float
    excess: float
    excess_se: float
    references: int
    every_row: bool
    exact: bool
    exact_fraction: float
    capped: bool
    evaluations: int
    passes: int
    seed: int
    dataset_size: int

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


# --------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class _Candidates:
    """For one slot: per class, representative rows of its distinct signatures."""

    labels: np.ndarray | None  # class of each row at the slot's node; None: one class (all of D)
    start: np.ndarray  # per class: offset of its candidates in ``rows``
    kept: np.ndarray  # per class: candidates kept (at most the cap)
    distinct: np.ndarray  # per class: distinct signatures
    rows: np.ndarray


def _signature_ids(dataset: Dataset, names: Sequence[str]) -> np.ndarray:
    """Per row of D, an id of the values of ``names`` (equal ids: equal values, compared whole)."""
    n = dataset.size
    ids = [_row_ids(np.asarray(dataset.inputs[name]).reshape(n, -1)) for name in sorted(names)]
    if not ids:
        return np.zeros(n, dtype=np.int64)
    if len(ids) == 1:
        return ids[0]
    return _row_ids(np.stack(ids, axis=1))


def _row_ids(table: np.ndarray) -> np.ndarray:
    if table.shape[1] == 1:
        _, ids = np.unique(table[:, 0], return_inverse=True)
    else:
        _, ids = np.unique(table, axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def _candidates(labels: np.ndarray | None, signature: np.ndarray, cap: int) -> _Candidates:
    cls = np.zeros(len(signature), dtype=np.int64) if labels is None else labels
    width = int(signature.max()) + 1 if len(signature) else 1
    keys, first = np.unique(cls * width + signature, return_index=True)
    key_class = keys // width
    n_classes = int(cls.max()) + 1 if len(cls) else 0
    distinct = np.bincount(key_class, minlength=n_classes)
    offsets = np.concatenate(([0], np.cumsum(distinct)[:-1]))
    kept = np.minimum(distinct, cap)
    start = np.concatenate(([0], np.cumsum(kept)[:-1]))
    owner = np.repeat(np.arange(n_classes), kept)
    j = np.arange(int(kept.sum())) - start[owner]
    picked = offsets[owner] + (j * distinct[owner]) // kept[owner]  # evenly spaced when capped
    return _Candidates(labels, start, kept, distinct, first[picked].astype(np.int64))


@dataclass(frozen=True)
class _Tables:
    """What the search needs per slot, computed once over D."""

    subtree: list[list[int]]  # slot -> itself and its descendant node slots
    candidates: list[_Candidates | None]  # None for the reference slot
    rigid: dict[int, np.ndarray]  # node slot -> per class: nothing below varies
    flat: dict[int, np.ndarray]  # node slot -> per class: nothing strictly below varies
    free_others: list[int]  # 'other' slots whose datum can change the output
    joint: np.ndarray | None  # every combination of their candidates, when few enough
    shared: _Candidates | None  # else: candidates for all of them holding one datum
    root_children: list[int]

    @property
    def other_freedom(self) -> int:
        """How many independent choices the 'other' slots make (their joint visit is one)."""
        return 1 if self.joint is not None else len(self.free_others)


def _tables(prepared: Prepared, cap: int) -> _Tables:
    plan = prepared.hypothesis.plan
    slots = plan.slots
    children: list[list[int]] = [[] for _ in slots]
    for i, slot in enumerate(slots):
        if slot.kind == "node" and slot.parent is not None:
            children[slot.parent].append(i)
    subtree: list[list[int]] = [[] for _ in slots]
    for i in reversed(range(len(slots))):  # node slots are in preorder: children come later
        subtree[i] = [i] + [d for k in children[i] for d in subtree[k]]
    reads: list[set[str]] = [set() for _ in slots]
    for step in plan.steps:
        if step.kind == "input":
            reads[step.slot].add(step.name)
    candidates: list[_Candidates | None] = []
    for i, slot in enumerate(slots):
        if slot.kind == "ref":
            candidates.append(None)
            continue
        names = set().union(*(reads[d] for d in subtree[i]))
        labels = prepared.classes[slot.node].labels if slot.kind == "node" else None
        candidates.append(_candidates(labels, _signature_ids(prepared.dataset, sorted(names)),
                                      cap))
    rigid, flat = _rigidity(slots, children, candidates)
    others = {i: c for i, c in enumerate(candidates) if c is not None and c.labels is None}
    free = [i for i, c in others.items() if int(c.distinct[0]) > 1]
    joint, shared = None, None
    if len(free) > 1 and math.prod(int(others[i].distinct[0]) for i in free) <= cap:
        grids = np.meshgrid(*[others[i].rows for i in free], indexing="ij")
        joint = np.stack([g.reshape(-1) for g in grids], axis=1)
    elif len(free) > 1:
        names = sorted(set().union(*(reads[i] for i in free)))
        shared = _candidates(None, _signature_ids(prepared.dataset, names), cap)
    return _Tables(subtree, candidates, rigid, flat, free, joint, shared,
                   children[0] if slots else [])


def rigid_classes(prepared: Prepared) -> dict[str, np.ndarray]:
    """Per interpretation node with a slot, per equivalence class: whether every datum of the
    class gives the same treeified inputs whatever is drawn below it. Restricting such a
    class (a join that splits it) cannot change any scrubbed output."""
    tables = _tables(prepared, MAX_CANDIDATES)
    slots = prepared.hypothesis.plan.slots
    return {s.node: tables.rigid[i] for i, s in enumerate(slots)
            if s.kind == "node" and s.node is not None}


def _rigidity(slots, children, candidates) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Per node slot and class: ``flat`` (once a datum of the class is chosen, no slot below
    can change the output) and ``rigid`` (flat, and every datum of the class gives the same
    output). Bottom-up: a row is fixed below a slot when each child's class at the row is rigid.
    """
    rigid: dict[int, np.ndarray] = {}
    flat: dict[int, np.ndarray] = {}
    for i in reversed(range(len(slots))):
        if slots[i].kind != "node":
            continue
        cand = candidates[i]
        labels = cand.labels
        fixed_below = np.ones(len(labels), dtype=bool)
        for k in children[i]:
            fixed_below &= rigid[k][candidates[k].labels]
        loose = np.bincount(labels, weights=~fixed_below, minlength=len(cand.distinct))
        flat[i] = loose == 0
        rigid[i] = flat[i] & (cand.distinct == 1)
    return rigid, flat


# --------------------------------------------------------------------------- the search


def _chunks(counts: np.ndarray, budget: int) -> Iterator[slice]:
    """Consecutive ranges whose counts sum to at most ``budget`` (at least one item each)."""
    total = np.cumsum(counts)
    begin, n = 0, len(counts)
    while begin < n:
        base = total[begin - 1] if begin else 0
        end = int(np.searchsorted(total, base + budget, side="right"))
        end = max(end, begin + 1)
        yield slice(begin, end)
        begin = end


def _tolerance(values: np.ndarray) -> np.ndarray:
    # the same evaluation reached through different batches may differ in the last bit
    return 1e-12 * np.maximum(1.0, np.abs(values))


class _Search:
    def __init__(self, prepared: Prepared, tables: _Tables, passes: int):
        self.prepared = prepared
        self.tables = tables
        self.passes = passes
        hyp = prepared.hypothesis
        self.sign = -1.0 if hyp.task.metric.higher_is_better else 1.0
        per_pair = len(hyp.plan.steps) * max(
            [int(np.prod(v.shape[1:])) for v in prepared.dataset.inputs.values()] + [1])
        self.budget = max(256, MAX_PAIR_ELEMENTS // max(1, per_pair))
        self.evaluations = 0

    def badness(self, out: np.ndarray, references: np.ndarray) -> np.ndarray:
        p = self.prepared
        return self.sign * engine._metric(p.hypothesis, out, p.labels, references, p.dataset)

    def run(self, references: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per reference: the worst badness found, whether it is exact, whether a cap was hit."""
        slots = self.prepared.hypothesis.plan.slots
        t = self.tables
        n = len(references)
        current = np.tile(references, (len(slots), 1))
        value = self.sign * self.prepared.model_metric[references]
        capped = np.zeros(n, dtype=bool)
        exact = self._structurally_exact(references)
        for p in range(self.passes):
            active = np.ones(n, dtype=bool) if p == 0 else ~exact
            if not active.any():
                break
            for s, slot in enumerate(slots):
                if slot.kind == "node":
                    capped |= self._visit(s, current, value, active, p == 0)
            if t.joint is not None:
                self._visit_joint(current, value, active)
            else:
                if t.shared is not None:  # all of them on one datum, then one by one
                    self._visit(None, current, value, active, False)
                for s in t.free_others:
                    capped |= self._visit(s, current, value, active, p == 0)
            if p == 0:
                exact &= ~capped
        return value, exact, capped

    def _visit(self, s: int | None, current: np.ndarray, value: np.ndarray, active: np.ndarray,
               first_pass: bool) -> np.ndarray:
        """Try each candidate of slot ``s`` (with its subtree) for the active references;
        ``s`` None: one datum for every free 'other' slot at once."""
        t = self.tables
        if s is None:
            cand, subtree = t.shared, t.free_others
        else:
            cand, subtree = t.candidates[s], t.subtree[s]
        assert cand is not None
        slot = self.prepared.hypothesis.plan.slots[s] if s is not None else None
        if slot is not None and slot.kind == "node":
            cls = cand.labels[current[slot.parent]]
        else:
            cls = np.zeros(current.shape[1], dtype=np.int64)
        counts = cand.kept[cls]
        # on the first pass the slot and its subtree hold the parent's datum, whose signature
        # is the only candidate when there is one: nothing to try
        todo = np.flatnonzero(active & ((counts > 1) | (not first_pass)))
        for part in _chunks(counts[todo], self.budget):
            idx = todo[part]
            m = counts[idx]
            local = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
            rows = cand.rows[np.repeat(cand.start[cls[idx]], m) + local]
            self._try(idx, m, [(subtree, rows)], current, value)
        return cand.distinct[cls] > counts

    def _visit_joint(self, current: np.ndarray, value: np.ndarray, active: np.ndarray) -> None:
        """Try every combination of the free 'other' slots' candidates at once."""
        joint = self.tables.joint
        assert joint is not None
        todo = np.flatnonzero(active)
        counts = np.full(len(todo), len(joint))
        for part in _chunks(counts, self.budget):
            idx = todo[part]
            m = counts[part]
            assign = [([s], np.tile(joint[:, j], len(idx)))
                      for j, s in enumerate(self.tables.free_others)]
            self._try(idx, m, assign, current, value)

    def _try(self, idx: np.ndarray, m: np.ndarray, assign: list[tuple[list[int], np.ndarray]],
             current: np.ndarray, value: np.ndarray) -> None:
        """Evaluate ``m[i]`` candidates for reference ``idx[i]`` as one flat batch; keep, per
        reference, the first worst one if it is strictly worse than the current assignment."""
        total = int(m.sum())
        offsets = np.cumsum(m) - m
        owner = np.repeat(idx, m)
        slot_rows = [row[owner] for row in current]
        for targets, rows in assign:
            for t in targets:
                slot_rows[t] = rows
        bad = self.badness(engine.evaluate_plan(self.prepared, slot_rows), current[0][owner])
        self.evaluations += total
        best = np.maximum.reduceat(bad, offsets)
        better = best > value[idx] + _tolerance(value[idx])
        if not better.any():
            return
        position = np.where(bad == np.repeat(best, m), np.arange(total), total)
        first = np.minimum.reduceat(position, offsets)[better]  # ties: the first candidate
        winners = idx[better]
        for targets, rows in assign:
            for t in targets:
                current[t][winners] = rows[first]
        value[winners] = best[better]

    def _structurally_exact(self, references: np.ndarray) -> np.ndarray:
        """References for which at most one slot can vary, with nothing varying below it."""
        t = self.tables
        free = np.full(len(references), t.other_freedom, dtype=np.int64)
        ok = np.ones(len(references), dtype=bool)
        for k in t.root_children:
            cls = t.candidates[k].labels[references]  # type: ignore[union-attr]
            loose = ~t.rigid[k][cls]
            free += loose
            ok &= ~loose | t.flat[k][cls]
        return ok & (free <= 1)


@dataclass(frozen=True)
class WorstValues:
    """Per reference: the worst metric found, whether it is exact, whether a cap was hit."""

    metric: np.ndarray
    exact: np.ndarray
    capped: np.ndarray
    evaluations: int


def worst_values(prepared: Prepared, references: np.ndarray, *, passes: int = DEFAULT_PASSES,
                 max_candidates: int = MAX_CANDIDATES) -> WorstValues:
    """The adversary's worst metric for each reference row of D."""
    references = np.asarray(references, dtype=np.int64)
    search = _Search(prepared, _tables(prepared, max_candidates), passes)
    metric, exact, capped = [], [], []
    for begin in range(0, len(references), engine.BLOCK_SIZE):
        value, ok, hit = search.run(references[begin:begin + engine.BLOCK_SIZE])
        metric.append(search.sign * value)
        exact.append(ok)
        capped.append(hit)
    join = (lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype))
    return WorstValues(join(metric, np.float64), join(exact, bool), join(capped, bool),
                       search.evaluations)


def reference_rows(prepared: Prepared, samples: int, seed: int) -> tuple[np.ndarray, bool]:
    """The references of a worst-case run, and whether they are every row of D once.

    Every row of D when it has at most ``samples`` rows; otherwise ``samples``
    rows drawn exactly as :func:`casc_cli.engine.scrub` draws its references.
    """
    n_rows = prepared.dataset.size
    if n_rows <= samples:
        return np.arange(n_rows, dtype=np.int64), True
    return np.concatenate([engine.slot_rows(prepared, seed, [block])[0]
                           for block in engine.blocks(samples)]), False


def worst_case(prepared: Prepared, samples: int = 10_000, seed: int = 0, *,
               passes: int = DEFAULT_PASSES, max_candidates: int = MAX_CANDIDATES) -> WorstCase:
    """Worst-case scrubbing of a prepared hypothesis.

    References (:func:`reference_rows`): when D has at most ``samples`` rows,
    every row once, and the figure has no sampling error; otherwise
    ``samples`` references drawn as :func:`casc_cli.engine.scrub` draws them
    under ``seed``, so the figure is paired with the average scrub's.
    """
    from .api import check_run_options
    from .spec.loader import display_path

    check_run_options(samples, seed)
    references, every_row = reference_rows(prepared, samples, seed)
    found = worst_values(prepared, references, passes=passes, max_candidates=max_candidates)
    worst, excess = Moments(), Moments()
    worst.add(found.metric)
    excess.add(found.metric - prepared.model_metric[references])
    hyp = prepared.hypothesis
    metric = hyp.task.metric
    return WorstCase(
        hypothesis=display_path(hyp.loaded.path),
        name=hyp.loaded.spec.hypothesis,
        metric=metric.name if metric.formula is None else metric.formula.text,
        higher_is_better=metric.higher_is_better,
        model_loss=float(np.mean(prepared.model_metric)),
        worst_loss=worst.mean,
        worst_loss_se=0.0 if every_row else worst.se,
        excess=excess.mean,
        excess_se=0.0 if every_row else excess.se,
        references=len(references),
        every_row=every_row,
        exact=bool(found.exact.all()),
        exact_fraction=float(found.exact.mean()),
        capped=bool(found.capped.any()),
        evaluations=found.evaluations,
        passes=passes,
        seed=seed,
        dataset_size=prepared.dataset.size,
    )


def worst_case_file(path: str | Path, *, samples: int = 10_000, seed: int = 0,
                    policy: str = "per_node", strict: bool = False, ablation: str = "resample",
                    session: Session | None = None, passes: int = DEFAULT_PASSES) -> WorstCase:
    """:func:`worst_case` of a hypothesis file (``hypothesis`` is the path as given)."""
    from dataclasses import replace

    from .api import Session, check_run_options

    check_run_options(samples, seed)
    session = session or Session()
    compiled = session.compile(path, policy, strict, ablation)  # type: ignore[arg-type]
    result = worst_case(session.prepare(compiled), samples, seed, passes=passes)
    return replace(result, hypothesis=str(path))
