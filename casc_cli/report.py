"""Reporters: render results as a rich table or as versioned JSON."""

from __future__ import annotations

import json
import math
from typing import Iterable, Sequence

from rich.markup import escape

from .metrics import ScrubResult

SCHEMA_VERSION = 1


def fmt(value: float | None, se: float | None = None) -> str:
    """A figure with as many decimals as its standard error supports."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        value = 0.0  # no "-0"
    if se is None or not math.isfinite(se) or se <= 0:
        text = f"{value:.4g}"
        return text if se is None else f"{text} ± 0"
    decimals = _decimals(se)
    return f"{value:.{decimals}f} ± {se:.{decimals}f}"


def fmt_baseline(value: float, se: float) -> str:
    """The random baseline: marked exact when computed exactly over D."""
    return f"{value:.5g} (exact)" if se == 0 else fmt(value, se)


def _decimals(se: float) -> int:
    """Two significant digits of the standard error."""
    return min(8, max(0, 1 - math.floor(math.log10(se))))


def fmt_interval(mean: float, low: float, high: float, se: float) -> str:
    if not math.isfinite(se) or se <= 0:
        return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"
    d = _decimals(se)
    return f"{mean:.{d}f} [{low:.{d}f}, {high:.{d}f}]"


def to_json(results: Sequence[ScrubResult]) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "command": "run",
                       "results": [r.to_json() for r in results]}, indent=2)


def results_table(results: Sequence[ScrubResult]):
    """The ``casc run`` table: one row per hypothesis."""
    from rich.table import Table

    metrics = sorted({(r.metric, r.higher_is_better) for r in results})
    title = "causal scrubbing"
    if len(metrics) == 1:
        metric, higher = metrics[0]
        title += f" · metric {escape(metric)} ({'higher' if higher else 'lower'} is better)"
    if results:
        r0 = results[0]
        title += f" · {r0.samples} samples · seed {r0.seed} · policy {r0.policy}"
        if r0.ablation != "resample":
            title += f" · {r0.ablation} ablation"
    table = Table(title=title, title_justify="left", header_style="bold")
    widest = max((len(r.hypothesis) for r in results), default=20)
    table.add_column("hypothesis", overflow="fold", min_width=min(60, max(20, widest)))
    if len(metrics) > 1:
        table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("scrubbed ± SE", justify="right")
    table.add_column("random", justify="right")
    table.add_column("recovered %", justify="right")
    table.add_column("per-sample gap", justify="right")
    table.add_column("output ≠", justify="right")
    table.add_column("bits claimed", justify="right")
    adversary = any(r.worst_case_loss is not None for r in results)
    if adversary:
        table.add_column("worst case", justify="right")
    table.add_column("flags")
    for r in results:
        cells = [f"{escape(r.hypothesis)}\n[dim]{escape(r.name)}[/dim]"]
        if len(metrics) > 1:
            cells.append(f"{escape(r.metric)} {'↑' if r.higher_is_better else '↓'}")
        cells += [
            fmt(r.model_loss),
            fmt(r.scrubbed_loss, r.scrubbed_loss_se),
            fmt_baseline(r.random_loss, r.random_loss_se),
            fmt(r.recovered_pct, r.recovered_pct_se),
            fmt(r.per_sample_gap, r.per_sample_gap_se),
            fmt(r.output_divergence, r.output_divergence_se),
            _bits(r),
            *([worst_case_cell(r)] if adversary else []),
            "\n".join(f"[bold red]{f}[/bold red]" for f in r.flags) or "[green]—[/green]",
        ]
        table.add_row(*cells)
    return table


def worst_case_cell(r: ScrubResult) -> str:
    """The adversary's figure: exact, or a bound the true worst case lies beyond."""
    if r.worst_case_loss is None:
        return "—"
    text = fmt(r.worst_case_loss, r.worst_case_loss_se or None)
    if r.worst_case_exact:
        return f"{text} (exact)"
    return f"{'≤' if r.higher_is_better else '≥'} {text}"


def _bits(r: ScrubResult) -> str:
    """Claimed bits of the scrubbed inputs' entropy, out of the no-claims maximum."""
    if r.max_entropy_bits is None:
        return "—"
    claimed = "—" if r.claimed_bits is None else f"{r.claimed_bits:.3g}"
    return f"{claimed} / {r.max_entropy_bits:.4g}"


def nodes_table(result: ScrubResult):
    from rich.table import Table

    table = Table(title=f"{escape(result.hypothesis)}: interpretation nodes", title_justify="left",
                  header_style="bold")
    for column in ("node", "claims", "stands for", "classes", "vs claimed model node"):
        table.add_column(column, justify="right" if column in ("stands for", "classes") else "left")
    for n in result.nodes:
        table.add_row(escape(n["name"]), escape(n["claims"]), str(n["stands_for"]),
                      str(n["classes"]),
                      n["relation"])
    return table


def print_results(results: Sequence[ScrubResult], console=None, nodes: bool = False) -> None:
    console = console or make_console()
    console.print(results_table(results))
    if nodes:
        for r in results:
            console.print(nodes_table(r))
    for r in results:
        for warning in r.warnings:
            where = "" if warning.startswith(r.hypothesis) else f"{r.hypothesis}: "
            console.print(f"[yellow]warning:[/yellow] {escape(where + warning)}", soft_wrap=True)
    if results:
        console.print(
            "[dim]per-sample gap = E|f(scrubbed, r) − f(model(r), r)|; compare it with "
            "|scrubbed − model|: a large gap beside a recovered mean is cancellation "
            "(docs/diagnostics.md).[/dim]"
        )


def make_console(stderr: bool = False):
    """A console that is wide enough for the tables when output is not a terminal."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=max(console.width, 180))
    return console


def print_messages(lines: Iterable[str], console) -> None:
    for line in lines:
        console.print(escape(line), soft_wrap=True)


def comparison_json(comparison) -> str:
    """``casc compare --json``: one result per hypothesis, with its rank, CI and group."""
    results = []
    for rank, entry in enumerate(comparison.hypotheses, start=1):
        item = entry.result.to_json()
        item.update(label=entry.label, rank=rank, group=entry.group,
                    ci_low=entry.ci_low, ci_high=entry.ci_high)
        results.append(item)
    return json.dumps({
        "schema_version": SCHEMA_VERSION,
        "command": "compare",
        "comparison": {
            "confidence": comparison.confidence,
            "model_loss": comparison.model_loss,
            "random_loss": comparison.random_loss,
            "random_loss_se": comparison.random_se,
            "random_group": comparison.random_group,
            "samples": comparison.samples,
            "seed": comparison.seed,
        },
        "results": results,
    }, indent=2)


def comparison_table(comparison, limit: int | None = 60):
    """The ``casc compare`` table: ranked, with CIs, a bar and the group of each row.

    With more than ``limit`` rows, the best ``limit // 2`` and the worst few are
    shown around a line that counts the rest (``--all`` or ``--json`` for everything).
    """
    from rich.table import Table
    from rich.text import Text

    pct = round(comparison.confidence * 100)
    direction = "higher" if comparison.higher_is_better else "lower"
    table = Table(
        title=f"casc compare · metric {escape(comparison.metric)} ({direction} is better)",
        title_justify="left", header_style="bold",
        caption=(f"model loss {fmt(comparison.model_loss)} · random baseline "
                 f"{fmt_baseline(comparison.random_loss, comparison.random_se)} · "
                 f"{comparison.samples} samples · seed {comparison.seed}\n"
                 f"group: rows that cannot be told apart at {pct}% (Bonferroni over the "
                 "ranking; docs/compare.md)"),
        caption_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("hypothesis", overflow="fold")
    table.add_column(f"scrubbed [{pct}% CI]", justify="right")
    table.add_column("recovered %", justify="right")
    table.add_column("", min_width=22)
    table.add_column("group", justify="right")
    entries = list(comparison.entries)
    adversary = any(e.result is not None and e.result.worst_case_loss is not None
                    for e in entries)
    if adversary:
        table.add_column("worst case", justify="right")
    top = max([abs(e.ci_high) for e in entries] + [abs(comparison.model_loss), 1e-300])
    width = 20
    ranks, rank = [], 0
    for entry in entries:
        rank += entry.result is not None
        ranks.append(rank if entry.result is not None else None)
    shown = range(len(entries))
    if limit is not None and len(entries) > limit:
        head, tail = limit // 2, 5
        keep = set(range(head)) | set(range(len(entries) - tail, len(entries)))
        keep |= {i for i, e in enumerate(entries) if e.result is None}
        shown = sorted(keep)
    previous = -1
    for i in shown:
        if i != previous + 1:
            table.add_row("", Text(f"… {i - previous - 1} more (--all or --json to see every row)",
                                   style="dim italic"), *[""] * (4 + adversary))
        previous = i
        entry = entries[i]
        filled = int(round(width * abs(entry.mean) / top)) if math.isfinite(entry.mean) else 0
        bar = Text("█" * filled + "·" * (width - filled),
                   style="dim" if entry.result is None else "cyan")
        ci = fmt_interval(entry.mean, entry.ci_low, entry.ci_high, entry.se)
        if entry.result is None:
            table.add_row("", Text(entry.label, style="italic"), ci, "0", bar,
                          str(entry.group), *([""] if adversary else []), style="dim")
            continue
        r = entry.result
        table.add_row(str(ranks[i]), Text(entry.label), ci, fmt(r.recovered_pct, r.recovered_pct_se),
                      bar, str(entry.group), *([worst_case_cell(r)] if adversary else []))
    return table


def print_search(found, refinement_text: str | None, console) -> None:
    """``casc adversary``: the ranking of refinements and the verdict."""
    from rich.syntax import Syntax
    from rich.table import Table

    base = found.baseline
    console.print(f"casc adversary · {escape(found.hypothesis)} · model {fmt(base.model_loss)} · "
                  f"scrubbed {fmt(base.scrubbed_loss, base.scrubbed_loss_se)} · "
                  f"{found.samples} samples · seed {found.seed}", soft_wrap=True)
    table = Table(title_justify="left", header_style="bold",
                  caption=(f"{found.tried} of {found.family_size} refinements tried"
                           f"{' (truncated)' if found.truncated else ''}; significant when "
                           f"z > {found.threshold_z:.2f} (alpha {found.alpha:g}, Bonferroni); "
                           f"{found.unmovable_classes} classes no split can move"),
                  caption_justify="left")
    for column in ("refinement", "scrubbed ± SE", "shift ± SE", "z"):
        table.add_column(column, justify="left" if column == "refinement" else "right")
    for r in found.ranking:
        table.add_row(escape(r.title), fmt(r.result.scrubbed_loss, r.result.scrubbed_loss_se),
                      fmt(r.shift, r.shift_se), f"{r.z:.1f}")
    if found.ranking:
        console.print(table)
    else:
        console.print(f"no refinement to try: {found.unmovable_classes} classes, none of which "
                      "a split by one feature can move")
    if found.significant:
        console.print(f"[bold red]found:[/bold red] {escape(found.best.title)} moves the scrubbed loss "
                      f"by {fmt(found.best.shift, found.best.shift_se)} (z {found.best.z:.1f}); "
                      "the refinement, as a file casc run accepts:")
        console.print(Syntax(refinement_text or "", "yaml", theme="ansi_dark",
                             background_color="default"))
    elif found.baseline_significant:
        console.print("nothing needed: plain scrubbing already moves this hypothesis's loss "
                      f"(z {found.baseline_z:.1f})")
    else:
        console.print("[green]nothing significant:[/green] no refinement in the family moves "
                      "the average scrubbed loss beyond its standard error (a cancellation "
                      "that no split can break still shows in `casc run --adversary`)")


# ---------------------------------------------------------------------- casc check


def checks_table(checks, k: float):
    from rich.table import Table

    table = Table(title=f"casc check · bounds judged at {k:g} standard errors",
                  title_justify="left", header_style="bold")
    table.add_column("", width=4)
    table.add_column("where", overflow="fold")
    table.add_column("figure")
    table.add_column("expected")
    table.add_column("result", overflow="fold")
    for c in checks:
        mark = "[green]ok[/green]" if c.passed else "[bold red]FAIL[/bold red]"
        table.add_row(mark, escape(str(c.location)), c.figure, escape(c.expected),
                      escape(c.message))
    return table


def checks_json(checks, results) -> str:
    failed = sum(not c.passed for c in checks)
    return json.dumps({
        "schema_version": SCHEMA_VERSION,
        "command": "check",
        "summary": {"checks": len(checks), "passed": len(checks) - failed, "failed": failed},
        "checks": [c.to_json() for c in checks],
        "results": [r.to_json() for r in results],
    }, indent=2)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def checks_github(checks) -> str:
    """GitHub Actions workflow commands: an ``::error`` at the line of each failed expectation."""
    lines = []
    for c in checks:
        if c.passed:
            lines.append(f"ok {c.location}: {c.message}")
            continue
        props = [f"file={_escape_property(c.location.file)}"]
        if c.location.line:
            props.append(f"line={c.location.line}")
        if c.location.col:
            props.append(f"col={c.location.col}")
        props.append(f"title={_escape_property('casc check: ' + c.figure)}")
        lines.append(f"::error {','.join(props)}::{_escape_data(c.hypothesis + ': ' + c.message)}")
    return "\n".join(lines)


def checks_junit(checks) -> str:
    """JUnit XML: one test suite per file, one test case per expectation."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="casc check", tests=str(len(checks)),
                      failures=str(sum(not c.passed for c in checks)))
    by_file: dict[str, list] = {}
    for c in checks:
        by_file.setdefault(c.location.file, []).append(c)
    for file, items in by_file.items():
        suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(items)),
                              failures=str(sum(not c.passed for c in items)))
        for c in items:
            case = ET.SubElement(suite, "testcase", classname=file, name=c.figure,
                                 file=file, line=str(c.location.line or 0))
            if not c.passed:
                failure = ET.SubElement(case, "failure", message=c.message, type="expectation")
                failure.text = f"{c.location}: {c.hypothesis}: {c.message}"
            else:
                ET.SubElement(case, "system-out").text = c.message
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
