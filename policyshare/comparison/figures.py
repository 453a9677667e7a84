"""Tables and figures of a comparison: Markdown tables, learning curves, intervals, performance
profiles; PNGs written atomically (:func:`save_figure`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from policyshare.io import atomic_write_bytes

if TYPE_CHECKING:
    from policyshare.comparison.runs import Curve
    from policyshare.stats import Profile


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None
                   ) -> list[str]:
    """A Markdown table, one line per list entry.

    Args:
        head: the column titles.
        rows: the cells of each row, already formatted.
        align: the separator of each column (``"---"`` left, ``"---:"`` right); default: the
            first column left, the others right.
    """
    seps = list(align) if align is not None else ["---"] + ["---:"] * (len(head) - 1)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(seps) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a matplotlib figure as a PNG (120 dpi), atomically, and close it.

    A figure made with a layout engine (``layout="constrained"``) keeps it; any other gets
    ``tight_layout``.
    """
    import io

    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: Mapping[str, Sequence[Curve]], path: str | Path, title: str,
                ylabel: str = "mean return (greedy evaluation)", xlabel: str = "env steps",
                confidence: float = 0.95) -> Path:
    """Plot methods' learning curves: mean over seeds with a bootstrap band; PNG, atomic.

    Args:
        curves: method (the legend's label) → one curve per seed. Curves of one method are
            interpolated onto the union of their env steps over their common range.
        path: output ``.png``.
        title: figure title.
        ylabel, xlabel: axis labels; the y label names the curve (greedy evaluation or
            training episodes).
        confidence: size of the band (percentile bootstrap of the mean over seeds, 1000
            resamples; no band for a single seed).

    Returns:
        ``path``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rng = np.random.default_rng(0)
    for method, runs in curves.items():
        runs = [r for r in runs if len(r[0]) > 0]
        if not runs:
            continue
        lo = max(r[0][0] for r in runs)
        hi = min(r[0][-1] for r in runs)
        steps = np.unique(np.concatenate([np.asarray(r[0], float) for r in runs]))
        steps = steps[(steps >= lo) & (steps <= hi)]
        ys = np.stack([np.interp(steps, r[0], r[1]) for r in runs])
        mean = ys.mean(axis=0)
        line = ax.plot(steps, mean, label=f"{method} (n={len(runs)})")[0]
        if len(runs) > 1:
            boots = ys[rng.integers(len(runs), size=(1000, len(runs)))].mean(axis=1)
            tail = 50 * (1 - confidence)
            ax.fill_between(steps, np.percentile(boots, tail, axis=0), np.percentile(boots, 100 - tail, axis=0),
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def interval_figure(rows: Mapping[str, Mapping[str, float]], title: str, ylabel: str,
                    reference: float | None) -> Any:
    """Points with interval bars, one per label (a matplotlib figure).

    Laid out by matplotlib's constrained layout; the title and y label are wrapped to the
    figure's width and height, so that neither is cut off nor runs into the other.

    Args:
        rows: label → ``{"point": …, "low": …, "high": …}`` (``nan`` bounds: no bar).
        title: figure title.
        ylabel: y-axis label.
        reference: a value drawn as a dashed line (100 for transfer %), or ``None``.
    """
    import textwrap

    plt = _pyplot()
    labels = list(rows)
    width, height = max(4.0, 1.1 * len(labels) + 1.5), 3.6
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    x = np.arange(len(labels))
    point = np.array([rows[k]["point"] for k in labels], float)
    low = np.array([rows[k]["low"] for k in labels], float)
    high = np.array([rows[k]["high"] for k in labels], float)
    ax.errorbar(x, point, yerr=[np.nan_to_num(point - low), np.nan_to_num(high - point)], fmt="o",
                capsize=5)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    # About 9 characters per inch at 10 pt (at 9 pt for the y label, less the axes' margins).
    ax.set_ylabel(textwrap.fill(ylabel, max(16, int(9 * (height - 1.2)))), fontsize=9)
    ax.set_title(textwrap.fill(title, max(20, int(8.5 * width))), fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return fig


def plot_intervals(rows: Mapping[str, Mapping[str, float]], path: str | Path, title: str, ylabel: str,
                   reference: float | None) -> Path:
    """:func:`interval_figure`, written as a PNG (atomically); returns ``path``."""
    return save_figure(interval_figure(rows, title, ylabel, reference), path)


def plot_profiles(profiles: Mapping[str, Profile], path: str | Path, title: str, xlabel: str) -> Path:
    """Performance profiles (Agarwal et al. 2021, Sec. 4): the fraction of runs scoring above τ,
    with its bootstrap band, one line per method; PNG, atomic.

    Args:
        profiles: method → :class:`~policyshare.stats.Profile` (thresholds, fraction, band).
        path: output ``.png``.
        title: figure title (say which curve and score).
        xlabel: the score's name and units (the thresholds τ).

    Returns:
        ``path``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, prof in profiles.items():
        line = ax.plot(prof.taus, prof.fraction, label=method)[0]
        ax.fill_between(prof.taus, prof.low, prof.high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
