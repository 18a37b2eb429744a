"""Compare many hypotheses of one model: rank, confidence intervals, groups.

All hypotheses are scrubbed under the same seed, so they share the reference
draws and, node position by node position, the uniform variates of every
conditional draw (common random numbers): hypotheses whose recipes coincide
get identical figures, and differences between them are not sampling noise.

Groups: hypotheses are ranked by scrubbed loss (the random baseline takes part
as one more entry). Walking down the ranking, an entry joins the current group
unless it differs from the group's *first* entry by more than
``z * sqrt(se_first^2 + se_entry^2)``, where ``z`` is the two-sided normal
quantile at ``1 - (1 - confidence) / m`` with ``m`` the number of adjacent
boundaries tested (Bonferroni). Comparing with the group's first entry, not
the previous one, keeps a slow drift from chaining into one group. Treating
the estimates as independent overstates the standard error of a difference
under common random numbers, so groups err on the side of merging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Sequence

from .errors import UsageError
from .graph import CompiledHypothesis
from .metrics import ScrubResult

DEFAULT_CONFIDENCE = 0.95
RANDOM_LABEL = "random baseline"


@dataclass(frozen=True)
class Entry:
    """One ranked row: a hypothesis (or the random baseline) with its CI and group."""

    label: str
    mean: float
    se: float
    ci_low: float
    ci_high: float
    group: int
    result: ScrubResult | None  # None for the random baseline row


@dataclass(frozen=True)
class Comparison:
    entries: tuple[Entry, ...]
    model_loss: float
    random_loss: float
    random_se: float
    confidence: float
    samples: int
    seed: int
    metric: str
    higher_is_better: bool

    @property
    def hypotheses(self) -> list[Entry]:
        return [e for e in self.entries if e.result is not None]

    @property
    def random_group(self) -> int:
        return next(e.group for e in self.entries if e.result is None)


def z_two_sided(confidence: float) -> float:
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def assign_groups(means: Sequence[float], ses: Sequence[float],
                  confidence: float = DEFAULT_CONFIDENCE) -> list[int]:
    """Group labels (1, 2, ...) for entries already sorted by mean; see the module doc."""
    boundaries = max(1, len(means) - 1)
    z = z_two_sided(1 - (1 - confidence) / boundaries)
    groups: list[int] = []
    first = 0
    for i, (mean, se) in enumerate(zip(means, ses)):
        if i > 0:
            spread = z * math.sqrt(ses[first] ** 2 + se ** 2)
            if abs(mean - means[first]) > spread:
                first = i
        groups.append(1 if not groups else groups[-1] + (first == i))
    return groups


def compare(items: Sequence[tuple[str, CompiledHypothesis]],
            scrub_all: Callable[[list[CompiledHypothesis]], list[ScrubResult]],
            confidence: float = DEFAULT_CONFIDENCE) -> Comparison:
    """Scrub every hypothesis with ``scrub_all`` (one call, in order) and rank them."""
    if not items:
        raise UsageError("nothing to compare")
    if not 0.5 <= confidence < 1:
        raise UsageError("--confidence must be in [0.5, 1)")
    first = items[0][1]
    for label, hyp in items[1:]:
        if (hyp.task.loaded.path.resolve(), hyp.model.name) != (
                first.task.loaded.path.resolve(), first.model.name):
            raise UsageError(
                f"{label} is about task {hyp.task.loaded.spec.task!r}, model {hyp.model.name!r}; "
                f"a comparison needs hypotheses of one task and model "
                f"({first.task.loaded.spec.task!r}, {first.model.name!r})"
            )
    scrubbed = scrub_all([hyp for _, hyp in items])
    results = [(label, result) for (label, _), result in zip(items, scrubbed)]
    reference = results[0][1]
    sign = -1.0 if reference.higher_is_better else 1.0  # rank best first
    rows = [(label, r.scrubbed_loss, r.scrubbed_loss_se, r) for label, r in results]
    rows.append((RANDOM_LABEL, reference.random_loss, reference.random_loss_se, None))
    rows.sort(key=lambda row: (sign * row[1], row[0]))
    groups = assign_groups([r[1] for r in rows], [_finite(r[2]) for r in rows], confidence)
    z = z_two_sided(confidence)
    entries = tuple(
        Entry(label, mean, se, mean - z * _finite(se), mean + z * _finite(se), group, result)
        for (label, mean, se, result), group in zip(rows, groups)
    )
    return Comparison(entries, reference.model_loss, reference.random_loss,
                      reference.random_loss_se, confidence, reference.samples, reference.seed,
                      reference.metric, reference.higher_is_better)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
