"""JSON Schemas: of the YAML format (for editors) and of casc's JSON reports.

Both come from the code that defines them, so they cannot drift: the YAML
schema from the pydantic models of :mod:`casc_cli.spec.models`, the report
schema from :class:`casc_cli.metrics.ScrubResult` plus the envelope below.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, create_model
from pydantic.json_schema import models_json_schema

from .metrics import ScrubResult
from .report import SCHEMA_VERSION
from .spec.models import HypothesisSpec, TaskSpec

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def yaml_schema(kind: str = "any") -> dict[str, Any]:
    """The schema of task files, hypothesis files, or either (``kind="any"``)."""
    if kind == "task":
        schema = TaskSpec.model_json_schema(by_alias=True)
    elif kind == "hypothesis":
        schema = HypothesisSpec.model_json_schema(by_alias=True)
    else:
        refs, defs = models_json_schema([(TaskSpec, "validation"), (HypothesisSpec, "validation")],
                                        by_alias=True)
        schema = {**defs, "anyOf": [refs[(TaskSpec, "validation")],
                                    refs[(HypothesisSpec, "validation")]]}
    for name in ("NodeSpec", "MetricSpec"):  # both also accept a plain string (shorthand)
        definition = schema.get("$defs", {}).get(name)
        if definition is not None:
            schema["$defs"][name] = {"anyOf": [{"type": "string"}, definition]}
    schema["$schema"] = DRAFT
    schema["title"] = {"task": "casc task", "hypothesis": "casc hypothesis"}.get(kind, "casc YAML")
    return schema


_STRICT = ConfigDict(extra="forbid")
_hints = typing.get_type_hints(ScrubResult)
ResultModel = create_model(
    "Result",
    __config__=_STRICT,
    **{f.name: (_hints[f.name], ...) for f in dataclasses.fields(ScrubResult)},
    # casc compare adds its ranking
    label=(Optional[str], None), rank=(Optional[int], None), group=(Optional[int], None),
    ci_low=(Optional[float], None), ci_high=(Optional[float], None),
)


class ComparisonInfo(BaseModel):
    model_config = _STRICT
    confidence: float
    model_loss: float
    random_loss: float
    random_loss_se: Optional[float]
    random_group: int
    samples: int
    seed: int


class CheckItem(BaseModel):
    model_config = _STRICT
    file: str
    hypothesis: str
    figure: str
    expected: str
    value: Any
    se: Optional[float]
    passed: bool
    message: str
    line: Optional[int]
    col: Optional[int]


class CheckSummary(BaseModel):
    model_config = _STRICT
    checks: int
    passed: int
    failed: int


class Report(BaseModel):
    """A JSON report of ``casc run``, ``compare`` or ``check`` (``--json`` / ``--format json``)."""

    model_config = _STRICT
    schema_version: Literal[1]
    command: Literal["run", "compare", "check"]
    results: list[ResultModel]  # type: ignore[valid-type]
    comparison: Optional[ComparisonInfo] = None
    summary: Optional[CheckSummary] = None
    checks: Optional[list[CheckItem]] = None


def report_schema() -> dict[str, Any]:
    schema = Report.model_json_schema()
    schema["$schema"] = DRAFT
    schema["title"] = f"casc JSON report, schema_version {SCHEMA_VERSION}"
    return schema
