"""Pitfall diagnostics: cancellation and "better than the model" flags.

Both rules read paired per-sample differences ``d = f(scrubbed, r) - f(G(r), r)``
(the scrubbed metric minus the model's metric on the same reference):

Cancellation
    The per-sample view ``E|d|`` is compared with the average view ``|E d|``.
    casc flags cancellation when the per-sample disagreement is real,
    ``E|d| > 3 SE(E|d|)`` (and at least 1 % of |random - model| when that is
    defined), while at least half of it cancels in the average:
    ``|E d| + 2 SE(E d) <= 0.5 E|d|``. The *cancelled fraction*
    ``1 - |E d| / E|d|`` is reported with it: 1 means the average hides all of
    the per-sample disagreement.

Better than the model
    A scrubbed model should not do better than the model itself: resampling
    only removes information. casc flags a scrubbed figure that is better than
    the model's by more than 3 standard errors of the paired difference and by
    more than 5 % of |random - model| (any amount when the model and random
    baseline cannot be told apart): a sign that the hypothesis sneaks in
    information (appendix section 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .metrics import Moments

DISAGREEMENT_Z = 3.0
CANCELLATION_Z = 2.0
CANCELLED_AT_LEAST = 0.5
MIN_DISAGREEMENT = 0.01
BETTER_Z = 3.0
BETTER_AT_LEAST = 0.05


@dataclass(frozen=True)
class Diagnosis:
    cancellation: bool
    cancelled_fraction: float | None
    better_than_model: bool


def _se(moments: Moments) -> float:
    return moments.se if math.isfinite(moments.se) else 0.0


def diagnose(diff: Moments, gap: Moments, model_loss: float, random_loss: float,
             higher_is_better: bool, scale_defined: bool) -> Diagnosis:
    scale = abs(random_loss - model_loss) if scale_defined else 0.0
    per_sample = gap.mean
    fraction = 1 - abs(diff.mean) / per_sample if per_sample > 0 else None
    real = per_sample > DISAGREEMENT_Z * _se(gap) and per_sample > 0 and \
        per_sample >= MIN_DISAGREEMENT * scale
    hidden = abs(diff.mean) + CANCELLATION_Z * _se(diff) <= CANCELLED_AT_LEAST * per_sample
    improvement = diff.mean if higher_is_better else -diff.mean
    better = improvement > BETTER_Z * _se(diff) and improvement > BETTER_AT_LEAST * scale \
        and improvement > 0
    return Diagnosis(bool(real and hidden), fraction, bool(better))
