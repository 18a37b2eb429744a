"""Metrics f(out, reference), running moments, and the figures casc reports."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from .graph import Metric


def metric_values(metric: Metric, out: np.ndarray, label: np.ndarray,
                  reference_inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """f(out, r) per sample, as float64; ``label`` and ``reference_inputs`` are the reference's."""
    if metric.formula is not None:
        env = dict(reference_inputs)
        env["out"] = out
        env["label"] = label
        values = metric.formula.evaluate(env, len(out))
        return _per_sample(np.asarray(values, dtype=np.float64))
    if metric.name == "zero_one":
        diff = np.not_equal(out, label)
        return _per_sample(diff.reshape(len(out), -1).any(axis=1).astype(np.float64))
    error = np.subtract(out, label, dtype=np.float64)
    values = np.abs(error) if metric.name == "mae" else np.square(error)
    return _per_sample(values)


def _per_sample(values: np.ndarray) -> np.ndarray:
    """Average any per-example vector axes away (a vector output scores its mean error)."""
    if values.ndim > 1:
        return values.reshape(len(values), -1).mean(axis=1)
    return values


@dataclass
class Moments:
    """Count, mean and sum of squared deviations, merged in a fixed order (Chan et al.)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        mean = float(np.mean(values))
        deviations = values - mean
        np.square(deviations, out=deviations)  # not np.dot: BLAS threads cost more here
        m2 = float(deviations.sum())
        self.merge(Moments(len(values), mean, m2))

    def merge(self, other: Moments) -> None:
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n

    @property
    def se(self) -> float:
        """Standard error of the mean."""
        if self.n < 2:
            return float("nan")
        return math.sqrt(self.m2 / (self.n - 1) / self.n)


@dataclass(frozen=True)
class ScrubResult:
    """Everything one run reports about one hypothesis (the JSON result object)."""

    hypothesis: str
    name: str
    task: str
    model: str
    metric: str
    higher_is_better: bool
    model_loss: float
    scrubbed_loss: float
    scrubbed_loss_se: float
    random_loss: float
    random_loss_se: float
    recovered_pct: float | None
    recovered_pct_se: float | None
    per_sample_gap: float
    per_sample_gap_se: float
    mean_gap: float
    mean_gap_se: float
    cancellation: bool
    cancelled_fraction: float | None
    better_than_model: bool
    output_divergence: float | None
    output_divergence_se: float | None
    samples: int
    seed: int
    policy: str
    ablation: str
    dataset_size: int
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    entropy_bits: float | None = None
    max_entropy_bits: float | None = None
    claimed_bits: float | None = None
    nodes: list[dict[str, Any]] = field(default_factory=list)
    worst_case_loss: float | None = None  # with --adversary (docs/adversarial.md)
    worst_case_loss_se: float | None = None
    worst_case_exact: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: json_value(v) for k, v in asdict(self).items()}


def json_value(value: Any) -> Any:
    """Plain JSON values: numpy scalars become Python ones, NaN and infinities null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


UNDEFINED_WITHIN_SE = 2.0


def recovered(model: float, scrubbed: Moments, random: Moments) -> tuple[float | None, float | None]:
    """% loss recovered = (scrubbed - random) / (model - random) * 100, with a delta-method SE.

    The model loss is exact on D; scrubbed and random losses are independent
    Monte Carlo estimates. Undefined (None) when the model's loss cannot be told
    apart from the random baseline (within :data:`UNDEFINED_WITHIN_SE` standard
    errors of the baseline): there is then no loss to recover.
    """
    denominator = model - random.mean
    if not math.isfinite(denominator) or abs(denominator) <= UNDEFINED_WITHIN_SE * random.se \
            or denominator == 0:
        return None, None
    pct = (scrubbed.mean - random.mean) / denominator * 100
    # d pct / d scrubbed = 100 / den ; d pct / d random = 100 (scrubbed - model) / den^2
    d_scrubbed = 100 / denominator
    d_random = 100 * (scrubbed.mean - model) / denominator**2
    se = math.sqrt((d_scrubbed * scrubbed.se) ** 2 + (d_random * random.se) ** 2)
    return pct, se
