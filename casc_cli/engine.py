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

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .data import Dataset
from .diagnostics import diagnose
from .errors import EvaluationError
from .formula import Formula
from .graph import STREAM_RANDOM_BASELINE, STREAM_REFERENCE, CompiledHypothesis
from .metrics import Moments, ScrubResult, metric_values, recovered
from .spec.loader import display_path

BLOCK_SIZE = 1 << 16


@dataclass(frozen=True)
class ClassTable:
    """Equivalence classes of one interpretation node over D."""

    labels: np.ndarray  # class of each row
    order: np.ndarray  # rows sorted by class
    starts: np.ndarray  # first position of each class in ``order``
    counts: np.ndarray  # size of each class

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
        return cls(labels, order, starts, counts)

    @property
    def n_classes(self) -> int:
        return len(self.counts)

    def draw(self, parent_rows: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """For each parent row, a row drawn uniformly from the parent's class."""
        cls = self.labels[parent_rows]
        offsets = (uniforms * self.counts[cls]).astype(np.int64)
        return self.order[self.starts[cls] + offsets]


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
            raise EvaluationError(f"{what} (`{formula.text}`): {exc.message}") from None
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


def prepare(hypothesis: CompiledHypothesis, dataset: Dataset) -> Prepared:
    """Labels, model outputs and the equivalence classes of every drawn node, over D."""
    task, model = hypothesis.task, hypothesis.model
    n = dataset.size
    rows = np.arange(n)
    inputs = dataset.inputs
    labels = _evaluate_checked(task.label, inputs, n, "the label", None, dataset)
    env: dict[str, np.ndarray] = dict(inputs)
    for node in model.order:
        env[node] = _evaluate_checked(model.formulas[node], env, n, f"model node `{node}`",
                                      None, dataset)
    outputs = env[model.output]
    if task.metric.formula is None and outputs.shape[1:] != labels.shape[1:]:
        raise EvaluationError(
            f"the model's output has per-example shape {outputs.shape[1:]} but the label has "
            f"{labels.shape[1:]}; the {task.metric.name} metric compares them element-wise"
        )
    model_metric = _metric(hypothesis, outputs, labels, rows, dataset)
    node_values: dict[str, np.ndarray] = {}
    for name in _postorder(hypothesis):
        node = hypothesis.nodes[name]
        node_env = dict(inputs)
        node_env.update({kid: node_values[kid] for kid in node.children})
        node_values[name] = _evaluate_checked(node.formula, node_env, n,
                                              f"interpretation node `{name}`", None, dataset)
    classes = {slot.node: ClassTable.from_values(node_values[slot.node])
               for slot in hypothesis.plan.slots if slot.kind == "node" and slot.node}
    ablated = {}
    for step in hypothesis.plan.steps:
        if step.kind == "ablate":
            values = env[step.name]
            ablated[step.name] = (np.zeros_like(values[0]) if hypothesis.ablation == "zero"
                                  else values.mean(axis=0))
    return Prepared(hypothesis, dataset, labels, outputs, model_metric, node_values, classes,
                    ablated, env)


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
        values = metric_values(metric, out, labels[reference_rows], reference)
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
    """Moments of the Monte Carlo quantities, merged block by block.

    ``diff`` is the paired difference f(scrubbed, r) - f(G(r), r), ``gap`` its
    absolute value, ``divergence`` whether the scrubbed output differs from the
    model's output on the same reference (discrete outputs only).
    """

    scrubbed: Moments
    diff: Moments
    gap: Moments
    divergence: Moments
    random: Moments

    @classmethod
    def empty(cls) -> Accumulator:
        return cls(Moments(), Moments(), Moments(), Moments(), Moments())

    def merge(self, other: Accumulator) -> None:
        for name in ("scrubbed", "diff", "gap", "divergence", "random"):
            getattr(self, name).merge(getattr(other, name))


def scrubbed_outputs(prepared: Prepared, seed: int, block: int, size: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Reference rows and scrubbed outputs of one block of resamples."""
    plan = prepared.hypothesis.plan
    n_rows = prepared.dataset.size
    slot_rows: list[np.ndarray] = []
    for slot in plan.slots:
        uniforms = _stream(seed, *slot.stream, block).random(size)
        if slot.kind == "node":
            assert slot.node is not None and slot.parent is not None
            rows = prepared.classes[slot.node].draw(slot_rows[slot.parent], uniforms)
        else:
            rows = (uniforms * n_rows).astype(np.int64)
        slot_rows.append(rows)
    inputs = prepared.dataset.inputs
    formulas = prepared.hypothesis.model.formulas
    values: list[np.ndarray] = []
    for step in plan.steps:
        if step.kind == "input":
            values.append(inputs[step.name][slot_rows[step.slot]])
        elif step.kind == "ablate":
            constant = prepared.ablated[step.name]
            values.append(np.broadcast_to(constant, (size, *np.shape(constant))))
        else:
            env = {name: values[i] for name, i in step.args}
            values.append(_evaluate_checked(formulas[step.name], env, size,
                                            f"model node `{step.name}` (scrubbed)",
                                            slot_rows[0], prepared.dataset))
    return slot_rows[0], values[plan.output_step]


def run_block(prepared: Prepared, seed: int, block: int, size: int) -> Accumulator:
    """Scrub ``size`` resamples with the streams of block number ``block``."""
    references, out = scrubbed_outputs(prepared, seed, block, size)
    f_scrubbed = _metric(prepared.hypothesis, out, prepared.labels, references, prepared.dataset)
    acc = Accumulator.empty()
    acc.scrubbed.add(f_scrubbed)
    diff = f_scrubbed - prepared.model_metric[references]
    acc.diff.add(diff)
    acc.gap.add(np.abs(diff))
    if prepared.discrete_output:
        changed = np.not_equal(out, prepared.model_outputs[references])
        acc.divergence.add(changed.reshape(size, -1).any(axis=1).astype(np.float64))
    n_rows = prepared.dataset.size
    rng = _stream(seed, STREAM_RANDOM_BASELINE, block)
    shuffled_out = (rng.random(size) * n_rows).astype(np.int64)
    shuffled_ref = (rng.random(size) * n_rows).astype(np.int64)
    acc.random.add(_metric(prepared.hypothesis, prepared.model_outputs[shuffled_out],
                           prepared.labels, shuffled_ref, prepared.dataset))
    return acc


def blocks(samples: int) -> list[tuple[int, int]]:
    """(block number, size) of every block of a run of ``samples`` resamples."""
    return [(b, min(BLOCK_SIZE, samples - b * BLOCK_SIZE))
            for b in range(-(-samples // BLOCK_SIZE))]


def scrub(prepared: Prepared, samples: int, seed: int) -> ScrubResult:
    """Run ``samples`` resamples and summarise them."""
    acc = Accumulator.empty()
    for block, size in blocks(samples):
        acc.merge(run_block(prepared, seed, block, size))
    return summarise(prepared, acc, seed)


def summarise(prepared: Prepared, acc: Accumulator, seed: int) -> ScrubResult:
    hyp = prepared.hypothesis
    metric = hyp.task.metric
    model_loss = float(np.mean(prepared.model_metric))
    pct, pct_se = recovered(model_loss, acc.scrubbed, acc.random)
    diagnosis = diagnose(acc.diff, acc.gap, model_loss, acc.random.mean,
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
        random_loss=acc.random.mean,
        random_loss_se=acc.random.se,
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
