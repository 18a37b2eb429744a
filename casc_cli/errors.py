"""The one error hierarchy of casc.

Every error a user can cause is a :class:`CascError`; the CLI prints it and
exits with code 2. Anything else escaping is a bug in casc.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A position in a source file (1-based line and column)."""

    file: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.col is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


class CascError(Exception):
    """Base class: bad input or usage. Carries an optional source location."""

    kind = "error"

    def __init__(self, message: str, location: Location | None = None):
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        return f"{self.location}: {self.message}"


class SpecError(CascError):
    """A YAML file is malformed or does not match the declared format."""

    kind = "invalid file"


class FormulaError(CascError):
    """A formula does not parse or uses something outside the whitelist.

    ``col`` is the 0-based column inside the formula text, so the loader can
    add it to the column where the formula starts in the YAML file.
    """

    kind = "invalid formula"

    def __init__(self, message: str, col: int | None = None):
        super().__init__(message)
        self.col = col


class GraphError(CascError):
    """The model graph or the interpretation tree is not well formed."""

    kind = "invalid graph"


class DataError(CascError):
    """The dataset cannot be built or loaded."""

    kind = "invalid data"


class EvaluationError(CascError):
    """A formula produced something it must not (NaN, inf, a bad shape) at run time."""

    kind = "evaluation error"


class UsageError(CascError):
    """A command-line option is out of range or inconsistent."""

    kind = "usage error"
