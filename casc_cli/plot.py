"""Bar charts of comparisons (needs the optional ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError

INSTALL_HINT = "plots need matplotlib: pip install 'casc[plot]' (or pip install matplotlib)"
FORMATS = (".png", ".svg", ".pdf")


class PlotUnavailable(Exception):
    """matplotlib is not installed."""


def check_plot_path(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"--plot writes {', '.join(FORMATS)} files, not {path.suffix or path.name!r}")
    if not path.parent.exists():
        raise UsageError(f"--plot: folder {path.parent} does not exist")


def plot_comparison(comparison, path: Path, title: str | None = None) -> None:
    """Scrubbed loss per hypothesis with CI whiskers, random baseline and model loss as lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(INSTALL_HINT) from exc

    entries = comparison.hypotheses
    labels = [e.label for e in entries]
    means = [e.mean for e in entries]
    errors = [[e.mean - e.ci_low for e in entries], [e.ci_high - e.mean for e in entries]]
    groups = [e.group for e in entries]
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * len(entries) + 2), 4.8), dpi=120)
    ax.bar(range(len(entries)), means, yerr=errors, capsize=3,
           color=[cmap((g - 1) % 10) for g in groups], edgecolor="black", linewidth=0.4)
    ax.axhline(comparison.random_loss, color="firebrick", linestyle="--",
               label=f"random baseline ({comparison.random_loss:.3g})")
    ax.axhline(comparison.model_loss, color="forestgreen", linestyle=":",
               label=f"model loss ({comparison.model_loss:.3g})")
    ax.set_xticks(range(len(entries)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"scrubbed loss ({comparison.metric}), {round(comparison.confidence * 100)}% CI")
    ax.set_title(title or "causal scrubbing: scrubbed loss per hypothesis")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
