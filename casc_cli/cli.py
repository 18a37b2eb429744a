"""The ``casc`` command line: a thin layer over :mod:`casc_cli.api`.

Heavy modules (numpy, pydantic, rich) are imported inside the commands so
that ``casc --help`` stays fast.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__

app = typer.Typer(
    name="casc",
    help="Causal scrubbing experiments from YAML tasks, models and hypotheses.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_INVALID = 2


class PolicyChoice(str, Enum):
    per_node = "per_node"
    shared = "shared"
    independent = "independent"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"casc {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Causal scrubbing experiments from YAML tasks, models and hypotheses."""


def _fail(errors: list[Exception]) -> None:
    """Print user errors (no traceback) and exit with code 2."""
    from .report import make_console, print_messages

    console = make_console(stderr=True)
    print_messages((f"error: {e}" for e in errors), console)
    raise typer.Exit(EXIT_INVALID)


@app.command()
def run(
    files: List[Path] = typer.Argument(..., help="Hypothesis YAML files.", show_default=False),
    samples: int = typer.Option(10_000, "--samples", "-n", help="Resamples per hypothesis."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed; the same seed gives the same numbers."),
    policy: PolicyChoice = typer.Option(PolicyChoice.per_node, "--policy",
                                        help="How unimportant paths are resampled."),
    strict: bool = typer.Option(False, "--strict", help="Treat vacuous claims as errors."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Scrub each hypothesis and print model, scrubbed and random-baseline loss."""
    from .api import Session, check_run_options
    from .errors import CascError
    from .report import print_results, to_json

    session = Session()
    compiled, errors = [], []
    try:
        check_run_options(samples, seed)
    except CascError as exc:
        _fail([exc])
    for file in files:
        try:
            compiled.append(session.compile(file, policy.value, strict))
        except CascError as exc:
            errors.append(exc)
    if errors:
        _fail(errors)
    results = []
    try:
        for hypothesis in compiled:
            from .engine import scrub

            results.append(scrub(session.prepare(hypothesis), samples, seed))
    except CascError as exc:
        _fail([exc])
    if json_output:
        typer.echo(to_json(results))
    else:
        print_results(results)


@app.command()
def validate(
    files: List[Path] = typer.Argument(..., help="Task or hypothesis YAML files.", show_default=False),
) -> None:
    """Check files without running them: format, formulas, graphs and correspondence."""
    from .api import Session
    from .errors import CascError
    from .report import make_console, print_messages

    session = Session()
    console = make_console()
    errors = []
    for file in files:
        try:
            checked = session.validate(file)
        except CascError as exc:
            errors.append(exc)
            continue
        print_messages([f"ok: {file} ({checked.kind})"], console)
        print_messages((f"warning: {w}" for w in checked.warnings), console)
    if errors:
        _fail(errors)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)
