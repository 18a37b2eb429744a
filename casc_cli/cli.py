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
EXIT_INTERNAL = 3


class PolicyChoice(str, Enum):
    per_node = "per_node"
    shared = "shared"
    independent = "independent"


class AblationChoice(str, Enum):
    resample = "resample"
    mean = "mean"
    zero = "zero"


ABLATION_HELP = "What unimportant paths get: a resampled datum, or their mean or zero."
ADVERSARY_HELP = ("Also report worst-case scrubbing: the allowed swaps that make the metric "
                  "worst (docs/adversarial.md).")
CHUNK_HELP = ("Resamples processed at once (rounded to whole blocks of 65536); bounds memory, "
              "never changes a figure.")


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
    files: List[str] = typer.Argument(..., help="Hypothesis YAML files.", show_default=False,
                                      metavar="FILES..."),
    samples: int = typer.Option(10_000, "--samples", "-n", help="Resamples per hypothesis."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed; the same seed gives the same numbers."),
    policy: PolicyChoice = typer.Option(PolicyChoice.per_node, "--policy",
                                        help="How unimportant paths are resampled."),
    ablation: AblationChoice = typer.Option(AblationChoice.resample, "--ablation",
                                            help=ABLATION_HELP),
    strict: bool = typer.Option(False, "--strict", help="Treat vacuous claims as errors."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    nodes: bool = typer.Option(False, "--nodes", help="Also print the per-node specificity report."),
    chunk_size: int = typer.Option(65536, "--chunk-size", help=CHUNK_HELP),
    adversary: bool = typer.Option(False, "--adversary", help=ADVERSARY_HELP),
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
            compiled.append((file, session.compile(file, policy.value, strict, ablation.value)))
        except CascError as exc:
            errors.append(exc)
    if errors:
        _fail(errors)
    results = []
    try:
        for file, hypothesis in compiled:
            results.append(session.scrub(hypothesis, samples, seed, given=file,
                                         chunk_size=chunk_size, adversary=adversary))
    except CascError as exc:
        _fail([exc])
    if json_output:
        typer.echo(to_json(results))
    else:
        print_results(results, nodes=nodes)


@app.command()
def validate(
    files: List[str] = typer.Argument(..., help="Task or hypothesis YAML files.",
                                      show_default=False, metavar="FILES..."),
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


@app.command()
def compare(
    files: List[str] = typer.Argument(..., help="Hypothesis YAML files.", show_default=False,
                                      metavar="FILES..."),
    permute: Optional[str] = typer.Option(
        None, "--permute", metavar="NAMES",
        help="Comma-separated symbols: one hypothesis per permutation of them (in node names, "
             "formulas and claims) of each file."),
    samples: int = typer.Option(10_000, "--samples", "-n", help="Resamples per hypothesis."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed, shared by all hypotheses."),
    policy: PolicyChoice = typer.Option(PolicyChoice.per_node, "--policy",
                                        help="How unimportant paths are resampled."),
    ablation: AblationChoice = typer.Option(AblationChoice.resample, "--ablation",
                                            help=ABLATION_HELP),
    confidence: float = typer.Option(0.95, "--confidence",
                                     help="Confidence level of intervals and groups."),
    strict: bool = typer.Option(False, "--strict", help="Treat vacuous claims as errors."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE",
                                        help="Write a bar chart (.png, .svg or .pdf)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Local worker processes."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", metavar="ADDRESS",
        help="Run on a Dask cluster (tcp://host:port); needs pip install 'casc[dask]'."),
    chunk_size: int = typer.Option(65536, "--chunk-size", help=CHUNK_HELP),
    show_all: bool = typer.Option(False, "--all", help="Show every row, however many."),
    adversary: bool = typer.Option(False, "--adversary", help=ADVERSARY_HELP),
) -> None:
    """Scrub many hypotheses under one seed and rank them, with CIs and groups."""
    from .api import Session, check_run_options
    from .compare import compare as run_comparison
    from .errors import CascError
    from .plot import PlotUnavailable, check_plot_path, plot_comparison
    from .report import comparison_json, comparison_table, make_console, print_messages
    from .spec.loader import load_hypothesis
    from .spec.transform import permutations

    session = Session()
    items = []
    try:
        check_run_options(samples, seed)
        if plot is not None:
            check_plot_path(plot)
        for file in files:
            loaded = load_hypothesis(Path(file))
            if permute is None:
                items.append((file, session.compile_loaded(loaded, policy.value, strict,
                                                                   ablation.value)))
                continue
            symbols = [s.strip() for s in permute.split(",") if s.strip()]
            for variant in permutations(loaded, symbols):
                label = variant.label if len(files) == 1 else f"{file} [{variant.label}]"
                items.append((label, session.compile_loaded(variant.loaded, policy.value,
                                                                    strict, ablation.value)))
        with _progress() as progress:
            def scrub_all(hyps):
                results = session.scrub_sweep(hyps, samples, seed, jobs=jobs,
                                              scheduler=scheduler, chunk_size=chunk_size,
                                              on_progress=progress)
                if adversary:
                    results = [session.with_worst_case(r, h, samples, seed)
                               for r, h in zip(results, hyps)]
                return results

            comparison = run_comparison(items, scrub_all, confidence)
    except CascError as exc:
        _fail([exc])
    console = make_console()
    if json_output:
        typer.echo(comparison_json(comparison))
    else:
        console.print(comparison_table(comparison, None if show_all else 60))
    if plot is not None:
        try:
            plot_comparison(comparison, plot)
            print_messages([f"wrote {plot}"], make_console(stderr=True))
        except PlotUnavailable as exc:
            print_messages([f"warning: no plot written: {exc}"], make_console(stderr=True))


class CheckFormat(str, Enum):
    table = "table"
    json = "json"
    github = "github"
    junit = "junit"


@app.command()
def check(
    paths: List[str] = typer.Argument(None, help="Hypothesis files or folders (searched "
                                      "recursively).", show_default=False, metavar="PATHS..."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="FILE",
                                           help="A saved `casc run --json`: re-run and compare."),
    samples: int = typer.Option(10_000, "--samples", "-n", help="Resamples per hypothesis."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed."),
    k: float = typer.Option(3.0, "-k", "--sigmas",
                            help="Fail only when a bound is missed by more than k standard errors."),
    fmt: Optional[CheckFormat] = typer.Option(
        None, "--format", "-f",
        help="table, json, github (workflow annotations) or junit (XML); default github under "
             "GitHub Actions, else table."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE",
                                          help="Write the report to FILE instead of stdout."),
) -> None:
    """Run every hypothesis that has `expect:` and judge it; exit 1 if any expectation fails."""
    import os

    from .api import Session
    from .errors import CascError
    from .report import checks_github, checks_json, checks_junit, checks_table, make_console

    if fmt is None:
        fmt = CheckFormat.github if os.environ.get("GITHUB_ACTIONS") == "true" else CheckFormat.table
    try:
        checks, results = Session().check(paths or [], samples=samples, seed=seed, k=k,
                                          baseline=baseline)
    except CascError as exc:
        _fail([exc])
    failed = sum(not c.passed for c in checks)
    if fmt is CheckFormat.table:
        console = make_console()
        if output is not None:
            import io

            from rich.console import Console

            console = Console(file=io.StringIO(), width=160, record=True)
        console.print(checks_table(checks, k))
        console.print(f"{len(checks) - failed} passed, {failed} failed")
        if output is not None:
            output.write_text(console.export_text(), encoding="utf-8")
    else:
        text = {CheckFormat.json: lambda: checks_json(checks, results),
                CheckFormat.github: lambda: checks_github(checks),
                CheckFormat.junit: lambda: checks_junit(checks)}[fmt]()
        if output is not None:
            output.write_text(text + "\n", encoding="utf-8")
        else:
            typer.echo(text)
    if failed:
        raise typer.Exit(1)


@app.command()
def join(
    first: str = typer.Argument(..., help="A hypothesis file.", metavar="A.yaml"),
    second: str = typer.Argument(..., help="A hypothesis of the same shape.", metavar="B.yaml"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE",
                                          help="Write the joined hypothesis here "
                                               "(default: print it)."),
) -> None:
    """Join two hypotheses of the same tree shape: a swap is allowed only if both allow it."""
    from .errors import CascError
    from .join import join_files

    target = output if output is not None else Path(first).with_name("joined.yaml")
    try:
        joined = join_files(first, second, target)
    except CascError as exc:
        _fail([exc])
    if output is None:
        typer.echo(joined.text, nl=False)
        return
    output.write_text(joined.text, encoding="utf-8")
    typer.echo(f"wrote {output}", err=True)


@app.command("adversary")
def adversary_command(
    file: str = typer.Argument(..., help="A hypothesis file.", metavar="FILE"),
    samples: int = typer.Option(10_000, "--samples", "-n", help="Resamples per candidate."),
    seed: int = typer.Option(0, "--seed", "-s", help="Random seed."),
    policy: PolicyChoice = typer.Option(PolicyChoice.per_node, "--policy",
                                        help="How unimportant paths are resampled."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level, Bonferroni-corrected "
                                "over the candidates tried."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE",
                                          help="Write the refinement found to FILE."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Search refinements of a hypothesis for the one that moves its loss furthest."""
    import json

    from .errors import CascError
    from .report import make_console, print_search
    from .search import search

    try:
        with _progress() as progress:
            found = search(file, samples=samples, seed=seed, policy=policy.value, alpha=alpha,
                           on_progress=progress)
        text = found.refinement_yaml(output=output) if found.significant else None
    except CascError as exc:
        _fail([exc])
    if json_output:
        typer.echo(json.dumps({**found.to_json(), "refinement": text}, indent=2))
    else:
        print_search(found, text, make_console())
    if text is not None and output is not None:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


class SchemaKind(str, Enum):
    any = "any"
    task = "task"
    hypothesis = "hypothesis"
    report = "report"


@app.command()
def schema(
    kind: SchemaKind = typer.Argument(SchemaKind.any, help="any (task or hypothesis files), "
                                      "task, hypothesis, or report (the JSON output)."),
) -> None:
    """Print a JSON Schema: of the YAML files (for editors) or of the JSON reports."""
    import json

    from .schema import report_schema, yaml_schema

    document = report_schema() if kind is SchemaKind.report else yaml_schema(kind.value)
    typer.echo(json.dumps(document, indent=2))


class ShowFormat(str, Enum):
    text = "text"
    dot = "dot"
    mermaid = "mermaid"


@app.command()
def show(
    file: str = typer.Argument(..., help="A hypothesis YAML file.", show_default=False,
                               metavar="FILE"),
    fmt: ShowFormat = typer.Option(ShowFormat.text, "--format", "-f",
                                   help="text (terminal), dot (Graphviz) or mermaid (Markdown)."),
    policy: PolicyChoice = typer.Option(PolicyChoice.per_node, "--policy",
                                        help="How unimportant paths are resampled."),
) -> None:
    """Draw the model graph and the interpretation tree with the correspondence."""
    from .api import Session
    from .errors import CascError
    from .report import make_console
    from .show import render

    try:
        drawing = render(Session().compile(file, policy.value), fmt.value)
    except CascError as exc:
        _fail([exc])
    if isinstance(drawing, str):
        typer.echo(drawing, nl=False)
    else:
        make_console().print(drawing)


class _progress:
    """A progress bar on stderr for sweeps, only when stderr is a terminal.

    Entering gives a callback ``(done, total)``, or None when there is no terminal.
    """

    def __init__(self) -> None:
        self.bar = None
        self.task = None

    def __enter__(self):
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return None
        from rich.progress import Progress

        self.bar = Progress(console=console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("scrubbing", total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc_info) -> None:
        if self.bar is not None:
            self.bar.stop()


def main() -> None:
    """Console-script entry point: user errors exit 2 (see ``_fail``); a bug in casc exits 3
    with a one-line report (set CASC_DEBUG=1 for the traceback)."""
    import os

    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)
    except Exception as exc:  # pragma: no cover - only reached through a bug
        if os.environ.get("CASC_DEBUG"):
            raise
        print(f"casc: internal error (a bug in casc, please report it): {exc!r}; "
              "set CASC_DEBUG=1 for the traceback", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
