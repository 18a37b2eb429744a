"""The vectorized causal-scrubbing engine.

Over D, once per hypothesis: labels, the model's outputs and metric, and
each interpretation node's equivalence classes (a class label per row, rows
sorted by class). Then resamples are processed in blocks of
:data:`BLOCK_SIZE`: every slot of the plan gets an index array into D
(conditional draws are one gather each), the treeified model is evaluated
on whole arrays, and the metric is reduced to moments merged in block
order. Each block's random streams are spawned from
``SeedSequence(seed, spawn_key=(stream, ..., block))``, so a figure depends
only on the seed and the number of samples, never on how blocks are grouped
or scheduled, and hypotheses compared under one seed share their reference
draws (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .data import Dataset
from .diagnostics import diagnose
from .errors import EvaluationError
from .formula import Formula
from .graph import STREAM_RANDOM_BASELINE, CompiledHypothesis
from .metrics import Moments, ScrubResult, metric_values, recovered
from .spec.loader import display_path

BLOCK_SIZE = 1 << 16
DEFAULT_CHUNK_SIZE = 1 << 16


def _tune_allocator() -> None:
    """Keep freed array memory in the process (glibc only; CASC_KEEP_MALLOC=1 to skip).

    Every block allocates temporaries of a few hundred KB. By default glibc
    serves those with fresh mmaps or trims them back to the OS, so each
    allocation pays one page fault per 4 KB touched, which on some machines
    costs more than the arithmetic. Raising the mmap and trim thresholds lets
    freed blocks be reused (measured: 442 µs -> 25 µs to subtract a scalar
    from 65 536 floats).
    """
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("CASC_KEEP_MALLOC"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 28)  # M_MMAP_THRESHOLD: 256 MiB
        libc.mallopt(-1, 1 << 29)  # M_TRIM_THRESHOLD: 512 MiB
    except (OSError, AttributeError):  # not glibc
        pass


_tune_allocator()


@dataclass(frozen=True)
class ClassTable:
    """Equivalence classes of one interpretation node over D."""

    labels: np.ndarray  # class of each row
    order: np.ndarray  # rows sorted by class
    starts: np.ndarray  # first position of each class in ``order``
    counts: np.ndarray  # size of each class
    row_start: np.ndarray  # starts[labels]: where each row's class begins in ``order``
    row_count: np.ndarray  # counts[labels]: the size of each row's class

    @classmethod
    def from_values(cls, values: np.ndarray) -> ClassTable:
        rows = values.reshape(len(values), -1) if values.ndim > 1 else values
        if rows.ndim > 1:
            _, labels = np.unique(rows, axis=0, return_inverse=True)
        else:
            _, labels = np.unique(rows, return_inverse=True)
        labels = labels.reshape(-1).astype(np.int64)
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        return cls(labels, order, starts, counts, starts[labels], counts[labels].astype(np.float64))

    @property
    def n_classes(self) -> int:
        return len(self.counts)

    def draw(self, parent_rows: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """For each parent row, a row drawn uniformly from the parent's class."""
        offsets = (uniforms * self.row_count[parent_rows]).astype(np.int64)
        offsets += self.row_start[parent_rows]
        return self.order[offsets]


@dataclass(frozen=True)
class Prepared:
    """What the engine computes once over D for one hypothesis."""

    hypothesis: CompiledHypothesis
    dataset: Dataset
    labels: np.ndarray
    model_outputs: np.ndarray
    model_metric: np.ndarray
    node_values: dict[str, np.ndarray]
    classes: dict[str, ClassTable]
    ablated: dict[str, np.ndarray]  # per-example value standing in for an ablated node
    model_values: dict[str, np.ndarray]  # every input and model node, evaluated over D
    inherited: frozenset[int]  # node slots that may take their parent's row (see below)
    exact_random: float | None = None  # the random baseline computed exactly, when cheap

    @property
    def discrete_output(self) -> bool:
        """Whether outputs are discrete (bool or integer), so output divergence is defined."""
        return self.model_outputs.dtype.kind in "biu"


def _evaluate_checked(formula: Formula, env: Mapping[str, np.ndarray], batch: int,
                      what: str, rows: np.ndarray | None, dataset: Dataset) -> np.ndarray:
    """Evaluate a formula and reject NaN/inf, naming the datum where it appeared."""
    with np.errstate(all="ignore"):
        try:
            values = formula.evaluate(env, batch)
        except EvaluationError as exc:
            where = ""
            index = getattr(exc, "index", None)
            if index is not None and index < batch:
                row = index if rows is None else int(rows[index])
                shown = ", ".join(f"{k}={_fmt(v[row])}" for k, v in dataset.inputs.items())
                where = f" on row {row} of D ({shown})"
            raise EvaluationError(f"{what} (`{formula.text}`): {exc.message}{where}") from None
        except (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError) as exc:
            raise EvaluationError(f"{what} (`{formula.text}`) cannot be evaluated: {exc}") from None
    if values.dtype.kind == "f" or values.dtype.kind == "c":
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(np.argwhere(~finite.reshape(batch, -1).all(axis=1))[0][0])
            row = bad if rows is None else int(rows[bad])
            shown = ", ".join(f"{k}={_fmt(v[row])}" for k, v in dataset.inputs.items())
            kind = "NaN" if np.isnan(values.reshape(batch, -1)[bad]).any() else "infinity"
            raise EvaluationError(
                f"{what} (`{formula.text}`) produced {kind} on row {row} of D ({shown})"
            )
    if values.shape[:1] != (batch,):
        raise EvaluationError(f"{what} (`{formula.text}`) did not produce one value per datum")
    return values


def _fmt(value: np.ndarray) -> str:
    return np.array2string(np.asarray(value), threshold=8) if np.ndim(value) else str(value)


@dataclass
class PrepareCache:
    """What hypotheses over one dataset share: the model's figures over D per model, and
    node values and class tables keyed by what they are computed from (a node's formula
    and, recursively, its children's), so a sweep over permutations computes each once."""

    models: dict[tuple, tuple] = field(default_factory=dict)
    digests: dict[tuple, bytes] = field(default_factory=dict)  # node key -> digest of values
    values: dict[bytes, np.ndarray] = field(default_factory=dict)  # one array per content
    classes: dict[bytes, ClassTable] = field(default_factory=dict)
    constant: dict[tuple, bool] = field(default_factory=dict)


def _digest(values: np.ndarray) -> bytes:
    """A content key: nodes with equal values over D share one class table."""
    import hashlib

    array = np.ascontiguousarray(values)
    return hashlib.blake2b(array.tobytes(), digest_size=16,
                           person=f"{array.dtype.str}{array.shape}"[:16].encode()).digest()


def _model_over_data(hypothesis: CompiledHypothesis, dataset: Dataset) -> tuple:
    task, model = hypothesis.task, hypothesis.model
    n = dataset.size
    inputs = dataset.inputs
    labels = _evaluate_checked(task.label, inputs, n, "the label", None, dataset)
    env: dict[str, np.ndarray] = dict(inputs)
    for node in model.every:  # nodes the output ignores too: claims on them are reported
        env[node] = _evaluate_checked(model.formulas[node], env, n, f"model node `{node}`",
                                      None, dataset)
    outputs = env[model.output]
    if outputs.ndim > 1 and outputs[0].size == 0:
        raise EvaluationError(f"the model's output `{model.output}` has no elements per example "
                              f"(shape {outputs.shape[1:]})")
    if task.metric.formula is None and outputs.shape[1:] != labels.shape[1:]:
        raise EvaluationError(
            f"the model's output has per-example shape {outputs.shape[1:]} but the label has "
            f"{labels.shape[1:]}; the {task.metric.name} metric compares them element-wise"
        )
    model_metric = _metric(hypothesis, outputs, labels, np.arange(n), dataset)
    return labels, env, outputs, model_metric


def prepare(hypothesis: CompiledHypothesis, dataset: Dataset,
            cache: PrepareCache | None = None) -> Prepared:
    """Labels, model outputs and the equivalence classes of every drawn node, over D."""
    cache = cache or PrepareCache()
    model_key = (hypothesis.task.loaded.path.resolve(), hypothesis.model.name, id(dataset))
    if model_key not in cache.models:
        over_data = _model_over_data(hypothesis, dataset)
        cache.models[model_key] = (*over_data, _exact_random(hypothesis, dataset, *over_data))
    labels, env, outputs, model_metric, exact_random = cache.models[model_key]
    n = dataset.size
    node_values: dict[str, np.ndarray] = {}
    node_digests: dict[str, bytes] = {}
    for name in _postorder(hypothesis):
        node = hypothesis.nodes[name]
        key = (id(dataset), node.formula.text,
               tuple(sorted((kid, node_digests[kid]) for kid in node.children)))
        if key not in cache.digests:
            node_env = dict(dataset.inputs)
            node_env.update({kid: node_values[kid] for kid in node.children})
            values = _evaluate_checked(node.formula, node_env, n,
                                       f"interpretation node `{name}`", None, dataset)
            digest = _digest(values)
            cache.values.setdefault(digest, values)  # equal contents share one array
            cache.digests[key] = digest
        node_digests[name] = cache.digests[key]
        node_values[name] = cache.values[node_digests[name]]
    classes = {}
    for slot in hypothesis.plan.slots:
        if slot.kind == "node" and slot.node:
            digest = node_digests[slot.node]
            if digest not in cache.classes:
                cache.classes[digest] = ClassTable.from_values(node_values[slot.node])
            classes[slot.node] = cache.classes[digest]
    ablated = {}
    for step in hypothesis.plan.steps:
        if step.kind == "ablate":
            values = env[step.name]
            ablated[step.name] = (np.zeros_like(values[0]) if hypothesis.ablation == "zero"
                                  else values.mean(axis=0))
    return Prepared(hypothesis, dataset, labels, outputs, model_metric, node_values, classes,
                    ablated, env, _inherited_slots(hypothesis, dataset, classes, cache),
                    exact_random)


def _inherited_slots(hypothesis: CompiledHypothesis, dataset: Dataset,
                     classes: dict[str, ClassTable], cache: PrepareCache) -> frozenset[int]:
    """Node slots whose draw cannot change any value read, so they reuse the parent's row.

    A slot with no slots below it, all of whose paths read inputs that are
    constant within each of the node's classes, reads the same values from any
    member of its parent's class, the parent's own row included (for example
    the leaf ``x0: {value: x0}``). Skipping the draw changes no figure, to the
    bit: the values read are identical and every slot has its own stream.
    """
    plan = hypothesis.plan
    has_children = {slot.parent for slot in plan.slots if slot.parent is not None}
    read: dict[int, set[str]] = {}
    for path, slot in plan.path_slots.items():
        read.setdefault(slot, set()).add(path[0])
    inherited = set()
    for i, slot in enumerate(plan.slots):
        if slot.kind != "node" or i in has_children or slot.node is None:
            continue
        table = classes[slot.node]
        constant = True
        for name in read.get(i, ()):
            key = (id(table), name)
            if key not in cache.constant:
                cache.constant[key] = _constant_within(dataset.inputs[name], table)
            constant = constant and cache.constant[key]
        if constant:
            inherited.add(i)
    return frozenset(inherited)


def _constant_within(values: np.ndarray, table: ClassTable) -> bool:
    """Whether ``values`` (one per row of D) are equal across every row of each class."""
    ordered = values[table.order].reshape(len(values), -1)
    first = ordered[table.starts[table.labels[table.order]]]
    return bool(np.all(ordered == first))


def _postorder(hypothesis: CompiledHypothesis) -> list[str]:
    order: list[str] = []
    stack = [(hypothesis.root, False)]
    while stack:
        name, done = stack.pop()
        if done:
            order.append(name)
            continue
        stack.append((name, True))
        stack.extend((kid, False) for kid in hypothesis.nodes[name].children)
    return order


def _metric(hypothesis: CompiledHypothesis, out: np.ndarray, labels: np.ndarray,
            reference_rows: np.ndarray, dataset: Dataset) -> np.ndarray:
    metric = hypothesis.task.metric
    reference = {k: v[reference_rows] for k, v in dataset.inputs.items()} if metric.formula else {}
    with np.errstate(all="ignore"):
        try:
            values = metric_values(metric, out, labels[reference_rows], reference)
        except EvaluationError as exc:
            index = getattr(exc, "index", None)
            where = "" if index is None else f" for reference row {int(reference_rows[index])}"
            raise EvaluationError(f"the metric (`{metric.display}`): {exc.message}{where}"
                                  ) from None
    if not np.isfinite(values).all():
        bad = int(np.argwhere(~np.isfinite(values))[0][0])
        raise EvaluationError(
            f"the metric produced a non-finite value for reference row {int(reference_rows[bad])}"
        )
    return values


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


@dataclass
class Accumulator:
    """Moments of the Monte Carlo quantities of one block, or of blocks merged in order.

    ``diff`` is the paired difference f(scrubbed, r) - f(G(r), r), ``gap`` its
    absolute value, ``divergence`` whether the scrubbed output differs from the
    model's output on the same reference (discrete outputs only).
    """

    scrubbed: Moments
    diff: Moments
    gap: Moments
    divergence: Moments

    @classmethod
    def empty(cls) -> Accumulator:
        return cls(Moments(), Moments(), Moments(), Moments())

    def merge(self, other: Accumulator) -> None:
        for name in ("scrubbed", "diff", "gap", "divergence"):
            getattr(self, name).merge(getattr(other, name))


Block = tuple[int, int]  # (block number, number of resamples in it)


def blocks(samples: int) -> list[Block]:
    """(block number, size) of every block of a run of ``samples`` resamples."""
    return [(b, min(BLOCK_SIZE, samples - b * BLOCK_SIZE))
            for b in range(-(-samples // BLOCK_SIZE))]


def chunks(samples: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[list[Block]]:
    """Blocks grouped into chunks of about ``chunk_size`` resamples (whole blocks)."""
    per_chunk = max(1, -(-chunk_size // BLOCK_SIZE))
    all_blocks = blocks(samples)
    return [all_blocks[i:i + per_chunk] for i in range(0, len(all_blocks), per_chunk)]


def _uniforms(seed: int, key: tuple[int, ...], chunk: list[Block]) -> np.ndarray:
    """The uniform variates in [0, 1) of one stream over the blocks of a chunk."""
    out = np.empty(sum(size for _, size in chunk))
    start = 0
    for block, size in chunk:
        _stream(seed, *key, block).random(out=out[start:start + size])
        start += size
    return out


def _indices(seed: int, key: tuple[int, ...], chunk: list[Block], n: int) -> np.ndarray:
    """Uniform rows of D (unconditional draws) of one stream over the blocks of a chunk."""
    out = np.empty(sum(size for _, size in chunk), dtype=np.int64)
    start = 0
    for block, size in chunk:
        out[start:start + size] = _stream(seed, *key, block).integers(0, n, size)
        start += size
    return out


def slot_rows(prepared: Prepared, seed: int, chunk: list[Block]) -> list[np.ndarray]:
    """The row of D each slot of the plan reads, for every resample of a chunk."""
    n_rows = prepared.dataset.size
    rows: list[np.ndarray] = []
    for i, slot in enumerate(prepared.hypothesis.plan.slots):
        if i in prepared.inherited:
            rows.append(rows[slot.parent])
        elif slot.kind == "node":
            assert slot.node is not None and slot.parent is not None
            uniforms = _uniforms(seed, slot.stream, chunk)
            rows.append(prepared.classes[slot.node].draw(rows[slot.parent], uniforms))
        else:
            rows.append(_indices(seed, slot.stream, chunk, n_rows))
    return rows


def evaluate_plan(prepared: Prepared, rows: list[np.ndarray]) -> np.ndarray:
    """The treeified model's output given the row each slot reads."""
    plan = prepared.hypothesis.plan
    size = len(rows[0])
    inputs = prepared.dataset.inputs
    formulas = prepared.hypothesis.model.formulas
    values: list[np.ndarray] = []
    for step in plan.steps:
        if step.kind == "input":
            values.append(inputs[step.name][rows[step.slot]])
        elif step.kind == "ablate":
            constant = prepared.ablated[step.name]
            values.append(np.broadcast_to(constant, (size, *np.shape(constant))))
        else:
            env = {name: values[i] for name, i in step.args}
            values.append(_evaluate_checked(formulas[step.name], env, size,
                                            f"model node `{step.name}` (scrubbed)",
                                            rows[0], prepared.dataset))
    return values[plan.output_step]


def scrubbed_outputs(prepared: Prepared, seed: int, block: int, size: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Reference rows and scrubbed outputs of one block of resamples."""
    rows = slot_rows(prepared, seed, [(block, size)])
    return rows[0], evaluate_plan(prepared, rows)


def scrub_chunk(prepared: Prepared, seed: int, chunk: list[Block]) -> list[Accumulator]:
    """One accumulator per block of the chunk (so grouping never changes a figure)."""
    rows = slot_rows(prepared, seed, chunk)
    references = rows[0]
    out = evaluate_plan(prepared, rows)
    f_scrubbed = _metric(prepared.hypothesis, out, prepared.labels, references, prepared.dataset)
    diff = f_scrubbed - prepared.model_metric[references]
    gap = np.abs(diff)
    changed = None
    if prepared.discrete_output:
        changed = np.not_equal(out, prepared.model_outputs[references])
        if changed.ndim > 1:
            changed = changed.reshape(len(out), -1).any(axis=1)
        changed = changed.astype(np.float64)
    result, start = [], 0
    for _, size in chunk:
        part = slice(start, start + size)
        start += size
        acc = Accumulator.empty()
        acc.scrubbed.add(f_scrubbed[part])
        acc.diff.add(diff[part])
        acc.gap.add(gap[part])
        if changed is not None:
            acc.divergence.add(changed[part])
        result.append(acc)
    return result


def random_chunk(prepared: Prepared, seed: int, chunk: list[Block]) -> list[Moments]:
    """The random baseline's moments, one per block: G on one random datum scored against
    an independent random reference."""
    n_rows = prepared.dataset.size
    out_rows = _indices(seed, (STREAM_RANDOM_BASELINE, 0), chunk, n_rows)
    ref_rows = _indices(seed, (STREAM_RANDOM_BASELINE, 1), chunk, n_rows)
    values = _metric(prepared.hypothesis, prepared.model_outputs[out_rows], prepared.labels,
                     ref_rows, prepared.dataset)
    result, start = [], 0
    for _, size in chunk:
        moments = Moments()
        moments.add(values[start:start + size])
        start += size
        result.append(moments)
    return result


EXACT_BASELINE_BUDGET = 20_000_000


def _exact_random(hypothesis: CompiledHypothesis, dataset: Dataset, labels: np.ndarray,
                  env: dict, outputs: np.ndarray, model_metric: np.ndarray) -> float | None:
    """E f(G(x), r) over independent x, r uniform on D, exactly, when it is cheap.

    The metric only sees x through the model's output, so it suffices to score
    each distinct output against every reference: ``distinct outputs × |D|``
    evaluations, done when that is within :data:`EXACT_BASELINE_BUDGET`.
    """
    n = dataset.size
    flat = outputs.reshape(n, -1)
    distinct, counts = np.unique(flat, axis=0, return_counts=True)
    if len(distinct) * n > EXACT_BASELINE_BUDGET:
        return None
    all_rows = np.arange(n)
    total = 0.0
    for value, count in zip(distinct, counts):
        out = np.broadcast_to(value.reshape(outputs.shape[1:]), outputs.shape)
        scores = _metric(hypothesis, out, labels, all_rows, dataset)
        total += count * float(np.mean(scores))
    return total / n


def random_baseline(prepared: Prepared, samples: int, seed: int,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> Moments:
    """The random baseline: exact (standard error 0) when cheap, else Monte Carlo."""
    if prepared.exact_random is not None:
        return Moments(samples, prepared.exact_random, 0.0)
    return merged([m for c in chunks(samples, chunk_size) for m in random_chunk(prepared, seed, c)])


def merged(parts: list) -> Any:
    """Merge per-block accumulators or moments in block order."""
    total = type(parts[0]).empty() if isinstance(parts[0], Accumulator) else Moments()
    for part in parts:
        total.merge(part)
    return total


def baseline_key(prepared: Prepared) -> tuple:
    """Hypotheses of one task and model share their random baseline."""
    hyp = prepared.hypothesis
    return (hyp.task.loaded.path.resolve(), hyp.model.name)


def scrub(prepared: Prepared, samples: int, seed: int,
          chunk_size: int = DEFAULT_CHUNK_SIZE) -> ScrubResult:
    """Run ``samples`` resamples and summarise them."""
    return scrub_many([prepared], samples, seed, chunk_size)[0]


def scrub_many(prepared: list[Prepared], samples: int, seed: int,
               chunk_size: int = DEFAULT_CHUNK_SIZE,
               on_done: Callable[[], None] | None = None) -> list[ScrubResult]:
    """Scrub several hypotheses in this process; the random baseline is computed once per
    task and model."""
    baselines: dict[tuple, Moments] = {}
    results = []
    for p in prepared:
        key = baseline_key(p)
        if key not in baselines:
            baselines[key] = random_baseline(p, samples, seed, chunk_size)
        acc = merged([a for c in chunks(samples, chunk_size) for a in scrub_chunk(p, seed, c)])
        results.append(summarise(p, acc, baselines[key], seed))
        if on_done:
            on_done()
    return results


def summarise(prepared: Prepared, acc: Accumulator, random: Moments, seed: int) -> ScrubResult:
    hyp = prepared.hypothesis
    metric = hyp.task.metric
    model_loss = float(np.mean(prepared.model_metric))
    pct, pct_se = recovered(model_loss, acc.scrubbed, random)
    diagnosis = diagnose(acc.diff, acc.gap, model_loss, random.mean,
                         metric.higher_is_better, scale_defined=pct is not None)
    warnings = [str(w) for w in hyp.warnings]
    flags = []
    if pct is None:
        warnings.append("% loss recovered is undefined: the model's loss cannot be told apart "
                        "from the random baseline, so there is no loss to recover")
    if diagnosis.cancellation:
        flags.append("cancellation")
        warnings.append(
            f"cancellation: the scrubbed model disagrees with the model by "
            f"{acc.gap.mean:.4g} per sample, but {diagnosis.cancelled_fraction:.0%} of that "
            "cancels in the average; the mean hides how wrong the hypothesis is")
    if diagnosis.better_than_model:
        flags.append("better than model")
        warnings.append(
            "the scrubbed model does better than the model itself "
            f"({acc.scrubbed.mean:.4g} vs {model_loss:.4g}): resampling should only remove "
            "information, so the hypothesis may be sneaking some in")
    divergence = acc.divergence if prepared.discrete_output else None
    return ScrubResult(
        hypothesis=display_path(hyp.loaded.path),
        name=hyp.loaded.spec.hypothesis,
        task=hyp.task.loaded.spec.task,
        model=hyp.model.name,
        metric=metric.display,
        higher_is_better=metric.higher_is_better,
        model_loss=model_loss,
        scrubbed_loss=acc.scrubbed.mean,
        scrubbed_loss_se=acc.scrubbed.se,
        random_loss=random.mean,
        random_loss_se=random.se,
        recovered_pct=pct,
        recovered_pct_se=pct_se,
        per_sample_gap=acc.gap.mean,
        per_sample_gap_se=acc.gap.se,
        mean_gap=abs(acc.diff.mean),
        mean_gap_se=acc.diff.se,
        cancellation=diagnosis.cancellation,
        cancelled_fraction=diagnosis.cancelled_fraction,
        better_than_model=diagnosis.better_than_model,
        output_divergence=None if divergence is None else divergence.mean,
        output_divergence_se=None if divergence is None else divergence.se,
        samples=acc.scrubbed.n,
        seed=seed,
        policy=hyp.policy,
        ablation=hyp.ablation,
        dataset_size=prepared.dataset.size,
        flags=flags,
        warnings=warnings,
    )
