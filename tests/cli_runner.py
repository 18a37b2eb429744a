"""Run the casc CLI in-process for tests: an unhandled exception fails the test with it."""

from __future__ import annotations

from typer.testing import CliRunner

from casc_cli.cli import app


def invoke(*args: str, env: dict[str, str] | None = None):
    """``casc ARGS...`` through typer's runner; exits (0, 1, 2) are results, crashes are not."""
    result = CliRunner(env={"COLUMNS": "200", **(env or {})}).invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"casc {' '.join(args)} raised {result.exception!r}") \
            from result.exception
    return result
