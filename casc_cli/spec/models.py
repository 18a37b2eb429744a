"""Pydantic models of the YAML format: tasks and hypotheses.

These models check shape and types only; cross-references (dangling names,
cycles, correspondences) are checked when the files are compiled into
graphs (:mod:`casc_cli.graph`), where the source positions are still known.
"""

from __future__ import annotations

import keyword
import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

Number = Union[StrictInt, StrictFloat]
PositiveInt = Annotated[StrictInt, Field(gt=0)]

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
BUILTIN_METRICS = ("mae", "mse", "zero_one")
MAX_SHAPE_ELEMENTS = 1_000_000
MAX_MAGNITUDE = 2**62


def check_identifier(name: str, what: str) -> str:
    """Names of inputs and nodes must be usable inside formulas."""
    if not _IDENTIFIER.match(name) or keyword.iskeyword(name):
        raise ValueError(
            f"{what} name {name!r} cannot be used in formulas: use letters, digits and "
            "underscores, starting with a letter, and no Python keyword"
        )
    return name


def _formula_text(value: Any) -> Any:
    """Formulas are strings; YAML numbers (``label: 0``) are accepted as their text."""
    if isinstance(value, bool):
        return value  # let pydantic reject it as "not a string"
    if isinstance(value, (int, float)):
        return repr(value)
    return value


Formula = Annotated[StrictStr, Field(min_length=1)]


def _identifier(name: str) -> str:
    return check_identifier(name, "this")


Identifier = Annotated[StrictStr, AfterValidator(_identifier)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class InputSpec(_Strict):
    """One task input: a distribution (for sampled or enumerated datasets) and a shape.

    Exactly one of ``int``, ``choice`` or ``normal`` gives the distribution;
    inputs of a dataset loaded from a file declare no distribution.
    ``p_zero`` makes any distribution sparse: zero with that probability.
    """

    int_range: list[StrictInt] | None = Field(None, alias="int", min_length=2, max_length=2)
    choice: list[Number] | None = Field(None, min_length=1)
    p: list[Number] | None = None
    normal: list[Number] | None = Field(None, min_length=2, max_length=2)
    p_zero: Number | None = Field(None, ge=0, le=1)
    shape: list[PositiveInt] | None = Field(None, min_length=1, max_length=4)

    @model_validator(mode="after")
    def _one_distribution(self) -> InputSpec:
        given = [k for k in ("int_range", "choice", "normal") if getattr(self, k) is not None]
        if len(given) > 1:
            names = ", ".join("int" if k == "int_range" else k for k in given)
            raise ValueError(f"an input has one distribution, got {names}")
        if self.int_range is not None and self.int_range[0] > self.int_range[1]:
            raise ValueError(f"int range {self.int_range}: the low end is above the high end")
        if self.p is not None:
            if self.choice is None:
                raise ValueError("`p` (probabilities) goes with `choice`")
            if len(self.p) != len(self.choice):
                raise ValueError(
                    f"`p` has {len(self.p)} probabilities for {len(self.choice)} choices"
                )
            if any(q < 0 for q in self.p) or not math.isclose(sum(self.p), 1.0, abs_tol=1e-9):
                raise ValueError("`p` must be non-negative and sum to 1")
        if self.normal is not None and not self.normal[1] > 0:
            raise ValueError("`normal: [mean, std]` needs a positive std")
        numbers = (self.choice or []) + (self.normal or []) + (self.int_range or [])
        if any(not math.isfinite(v) for v in numbers):
            raise ValueError("distribution parameters must be finite numbers")
        if any(abs(v) > MAX_MAGNITUDE for v in numbers):
            raise ValueError(f"distribution parameters must be within ±{MAX_MAGNITUDE:.0e} "
                             "(values are stored as 64-bit numbers)")
        if self.shape is not None and math.prod(self.shape) > MAX_SHAPE_ELEMENTS:
            raise ValueError(f"shape {self.shape} has more than {MAX_SHAPE_ELEMENTS} elements")
        return self

    @property
    def has_distribution(self) -> bool:
        return any(v is not None for v in (self.int_range, self.choice, self.normal))

    @property
    def support_size(self) -> int | None:
        """How many values a discrete distribution takes (None for continuous ones)."""
        if self.int_range is not None:
            size = self.int_range[1] - self.int_range[0] + 1
            return size + (1 if self.p_zero and not self.int_range[0] <= 0 <= self.int_range[1]
                           else 0)
        if self.choice is not None:
            values = set(self.choice)
            return len(values) + (1 if self.p_zero and 0 not in values else 0)
        return None

    @property
    def finite_values(self) -> list[int | float] | None:
        """The support of a discrete distribution (None for continuous ones)."""
        if self.int_range is not None:
            values: list[int | float] = list(range(self.int_range[0], self.int_range[1] + 1))
        elif self.choice is not None:
            values = list(dict.fromkeys(self.choice))
        else:
            return None
        if self.p_zero and 0 not in values:
            values.append(0)
        return values

    @property
    def shape_tuple(self) -> tuple[int, ...]:
        return tuple(self.shape or ())


class DatasetSpec(_Strict):
    """How the finite dataset D is made: sampled, enumerated, or loaded from a file."""

    size: PositiveInt | None = None
    seed: StrictInt = Field(0, ge=0)
    enumerate: StrictBool = False
    file: StrictStr | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_mode(self) -> DatasetSpec:
        modes = [m for m, on in (("size", self.size is not None), ("enumerate", self.enumerate),
                                  ("file", self.file is not None)) if on]
        if len(modes) != 1:
            raise ValueError(
                "a dataset is exactly one of `size: N` (sampled), `enumerate: true` "
                f"(every combination once) or `file: PATH` (.npz or .csv); got {modes or 'none'}"
            )
        return self

    @property
    def mode(self) -> Literal["sample", "enumerate", "file"]:
        if self.file is not None:
            return "file"
        return "enumerate" if self.enumerate else "sample"


class MetricSpec(_Strict):
    """``mae``, ``mse``, ``zero_one`` or a formula over ``out``, ``label`` and the inputs."""

    name: Literal["mae", "mse", "zero_one"] | None = None
    formula: Formula | None = None
    title: StrictStr | None = Field(None, min_length=1)  # how reports name a formula metric
    higher_is_better: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value} if value in BUILTIN_METRICS else {"formula": value}
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> MetricSpec:
        if (self.name is None) == (self.formula is None):
            raise ValueError("a metric is one of mae, mse, zero_one, or `formula: ...`")
        return self

    @property
    def label(self) -> str:
        return self.name or self.formula or ""


class ModelSpec(_Strict):
    """A model graph G: named formula nodes and the output node."""

    nodes: dict[Identifier, Formula] = Field(min_length=1)
    output: StrictStr

    @field_validator("nodes", mode="before")
    @classmethod
    def _formulas(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _formula_text(v) for k, v in value.items()}
        return value


class TaskSpec(_Strict):
    """A task: inputs, the dataset D, the label, the metric and the model graphs."""

    task: StrictStr = Field(min_length=1)
    description: StrictStr = ""
    inputs: dict[Identifier, InputSpec] = Field(min_length=1)
    dataset: DatasetSpec
    label: Formula
    metric: MetricSpec
    models: dict[StrictStr, ModelSpec] = Field(min_length=1)

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        return _formula_text(value)

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, value: dict[str, InputSpec]) -> dict[str, InputSpec]:
        for name in value:
            if name in ("out", "label"):
                raise ValueError(f"`{name}` is reserved for metric formulas; rename the input")
        return value


class NodeSpec(_Strict):
    """An interpretation node: its value formula and the model node it claims."""

    value: Formula
    claims: StrictStr | None = None
    description: StrictStr = ""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return {"value": _formula_text(value)}
        if isinstance(value, dict) and "value" in value:
            return {**value, "value": _formula_text(value["value"])}
        return value


class Bound(_Strict):
    """Bounds on a figure, judged with its standard error (see docs/check.md)."""

    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("a bound needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min}) is above `max` ({self.max})")
        if any(v is not None and not math.isfinite(v) for v in (self.min, self.max)):
            raise ValueError("bounds must be finite numbers")
        return self

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"in [{self.min}, {self.max}]"
        return f">= {self.min}" if self.min is not None else f"<= {self.max}"


class ExpectSpec(_Strict):
    """What ``casc check`` asserts about a hypothesis's figures."""

    model_loss: Bound | None = None
    scrubbed_loss: Bound | None = None
    random_loss: Bound | None = None
    recovered_pct: Bound | None = None
    per_sample_gap: Bound | None = None
    mean_gap: Bound | None = None
    output_divergence: Bound | None = None
    worst_case_loss: Bound | None = None
    cancellation: StrictBool | None = None
    better_than_model: StrictBool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ExpectSpec:
        if not self.model_fields_set:
            raise ValueError("`expect:` names no figure; see docs/check.md for the keys")
        return self


class HypothesisSpec(_Strict):
    """A hypothesis: an interpretation tree I (first node is the root) and its task."""

    hypothesis: StrictStr = Field(min_length=1)
    description: StrictStr = ""
    task: StrictStr = Field(min_length=1)
    model: StrictStr | None = None
    nodes: dict[Identifier, NodeSpec] = Field(min_length=1)
    expect: ExpectSpec | None = None
