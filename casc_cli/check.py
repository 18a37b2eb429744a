"""``casc check``: judge expectations and baselines with their statistical uncertainty.

A bound ``{min: m}`` on a figure with estimate ``v`` and standard error ``se``
fails only when ``v + k·se < m`` (``{max: M}``: when ``v − k·se > M``): the
estimate must be off by more than ``k`` standard errors, so a gate does not
flap on sampling noise. A violation within ``k`` standard errors passes with
a note ("within noise"). Figures without sampling error (the model loss, or
any figure whose SE is 0) are compared exactly. Boolean expectations
(``cancellation``, ``better_than_model``) are compared as they are.

A baseline (``casc run --json`` saved earlier) is checked by running every
hypothesis in it again with the same seed, samples, policy and ablation;
a figure fails when it moved by more than ``k·sqrt(se_old² + se_new²)``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import Location, SpecError, UsageError
from .metrics import ScrubResult, json_value
from .spec.loader import LoadedHypothesis, file_kind, load_hypothesis, read_yaml
from .spec.models import Bound, ExpectSpec

DEFAULT_K = 3.0
BASELINE_FIGURES = ("model_loss", "scrubbed_loss", "random_loss", "recovered_pct",
                    "per_sample_gap", "mean_gap", "output_divergence", "worst_case_loss")
SE_OF = {
    "scrubbed_loss": "scrubbed_loss_se",
    "random_loss": "random_loss_se",
    "recovered_pct": "recovered_pct_se",
    "per_sample_gap": "per_sample_gap_se",
    "mean_gap": "mean_gap_se",
    "output_divergence": "output_divergence_se",
    "worst_case_loss": "worst_case_loss_se",
}
EXACT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Check:
    """One judged expectation."""

    file: str
    hypothesis: str
    figure: str
    expected: str
    value: Any
    se: float | None
    passed: bool
    message: str
    location: Location

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file, "hypothesis": self.hypothesis, "figure": self.figure,
            "expected": self.expected, "value": json_value(self.value), "se": json_value(self.se),
            "passed": bool(self.passed), "message": self.message,
            "line": self.location.line, "col": self.location.col,
        }


def judge_bound(value: float | None, se: float | None, bound: Bound, k: float
                ) -> tuple[bool, str]:
    """Pass/fail and a sentence, by the rule in the module docstring."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return False, "the figure is undefined for this run"
    spread = k * se if se is not None and math.isfinite(se) else 0.0
    tolerance = EXACT_TOLERANCE * max(1.0, abs(value))
    shown = f"{value:.6g}" + (f" ± {se:.2g}" if se else "")
    for limit, sign, word in ((bound.min, 1, "below"), (bound.max, -1, "above")):
        if limit is None:
            continue
        violation = sign * (limit - value)  # > 0: the estimate is on the wrong side
        if violation > spread + tolerance:
            sigmas = f", {violation / se:.1f} SE" if se else ""
            return False, f"{shown} is {word} {limit} (by {violation:.4g}{sigmas})"
        if violation > tolerance:
            return True, f"{shown} is {word} {limit} but within {k:g} SE (noise)"
    return True, f"{shown} {bound.describe()}"


def judge(result: ScrubResult, expect: ExpectSpec, loaded: LoadedHypothesis, file: str,
          k: float) -> list[Check]:
    """Every expectation of one hypothesis against its result."""
    checks = []
    for figure in expect.model_fields_set:
        wanted = getattr(expect, figure)
        where = loaded.source.location(("expect", figure), key=True)
        value = getattr(result, figure, None)
        if isinstance(wanted, bool):
            passed = value is wanted
            message = f"{figure} is {value}" + ("" if passed else f", expected {wanted}")
            checks.append(Check(file, result.name, figure, str(wanted).lower(), value, None,
                                passed, message, where))
            continue
        se = getattr(result, SE_OF[figure], None) if figure in SE_OF else None
        passed, message = judge_bound(value, se, wanted, k)
        checks.append(Check(file, result.name, figure, wanted.describe(), value, se, passed,
                            f"{figure} {message}", where))
    return sorted(checks, key=lambda c: (c.location.line or 0, c.figure))


def hypothesis_files(paths: Iterable[str]) -> list[str]:
    """Hypothesis files among ``paths``; folders are searched recursively for *.yaml/*.yml."""
    found: list[str] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
                    data, _ = read_yaml(candidate)
                    if file_kind(data) == "hypothesis":
                        found.append(os.path.join(given, candidate.relative_to(path).as_posix()))
        elif path.exists():
            found.append(given)
        else:
            raise UsageError(f"{given}: no such file or folder")
    return found


def expectations(file: str) -> tuple[LoadedHypothesis, ExpectSpec | None]:
    loaded = load_hypothesis(Path(file))
    return loaded, loaded.spec.expect


def load_baseline(path: str) -> list[dict[str, Any]]:
    """Results of a ``casc run --json`` (or ``compare --json``) document."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"baseline {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"not a casc JSON report: {exc}", Location(path)) from None
    if not isinstance(data, dict) or data.get("schema_version") != 1 or \
            not isinstance(data.get("results"), list):
        raise SpecError("not a casc JSON report (expected schema_version 1 and results)",
                        Location(path))
    for item in data["results"]:
        if not isinstance(item, dict) or not {"hypothesis", "seed", "samples"} <= set(item):
            raise SpecError("a baseline result lacks hypothesis, seed or samples", Location(path))
    return data["results"]


def judge_baseline(old: dict[str, Any], new: ScrubResult, k: float, baseline: str) -> list[Check]:
    """Each figure of a re-run against the baseline's, within k combined SEs."""
    checks = []
    for figure in BASELINE_FIGURES:
        before = old.get(figure)
        after = getattr(new, figure, None)
        if before is None and after is None:
            continue
        where = Location(baseline)
        if before is None or after is None:
            checks.append(Check(new.hypothesis, new.name, figure, f"{before}", after, None, False,
                                f"{figure} was {before}, now {after}", where))
            continue
        se_old = old.get(SE_OF.get(figure, ""), 0.0) or 0.0
        se_new = getattr(new, SE_OF.get(figure, ""), 0.0) or 0.0
        spread = k * math.hypot(se_old, se_new)
        moved = abs(after - before)
        passed = bool(moved <= spread + EXACT_TOLERANCE * max(1.0, abs(before)))
        message = (f"{figure} {after:.6g} vs baseline {before:.6g}"
                   + ("" if passed else f": moved by {moved:.4g}, more than {k:g} combined SE"))
        checks.append(Check(new.hypothesis, new.name, figure, f"≈ {before:.6g}", after,
                            math.hypot(se_old, se_new), passed, message, where))
    return checks


def rerun_baseline(old: dict[str, Any], run: Callable[..., ScrubResult]) -> ScrubResult:
    result = run(old["hypothesis"], samples=int(old["samples"]), seed=int(old["seed"]),
                 policy=old.get("policy", "per_node"), ablation=old.get("ablation", "resample"))
    return replace(result, hypothesis=old["hypothesis"])
