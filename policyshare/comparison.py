"""One comparison: (method × seed → learning curve) into scores, intervals, a table and a plot.

``policyshare transfer``, ``policyshare progressive``'s report and the experiment's report
(``policyshare run`` / ``policyshare report``) all compare methods the same way, through here:

1. **Curves from run folders** (:func:`read_runs`, :func:`load_curve`): a run's learning curve is
   its ``evaluations.json`` — mean evaluation return at env steps, from a step-0 evaluation of the
   untrained agent to one at the last step (:class:`~policyshare.callbacks.PeriodicEvaluation`) —
   and its final figures are its ``metrics.json``. Methods compared on one task share seeds,
   budget and evaluation steps, so their curves line up.
2. **Scores per seed against a baseline** (:func:`transfer_by_seed`): transfer % = 100 ·
   AUC(method) / AUC(baseline) on the same seed (Rusu et al. 2016, Table 1;
   :func:`policyshare.metrics.transfer_percent`), the baseline being from scratch
   (:data:`policyshare.methods.SCRATCH`).
3. **Intervals** (:func:`transfer_summary`, :func:`aggregate_over_tasks`): the interquartile mean
   over seeds (and tasks) with a stratified bootstrap interval (Agarwal et al. 2021, rliable;
   :func:`policyshare.metrics.iqm_intervals`); one seed gives no interval.
4. **A table** (:func:`markdown_table`) and **plots** (:func:`plot_curves`: mean curves with
   bootstrap bands; :func:`plot_intervals`: points with interval bars), written as PNGs atomically
   (:func:`save_figure`).

Per-seed metrics that never return ``nan`` (normalised area gain, forward transfer) are in
:mod:`policyshare.transfer_metrics`, and the small-sample aggregates and verdicts in
:mod:`policyshare.stats`. Method names are those of :mod:`policyshare.methods`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.io import atomic_write_bytes, read_json
from policyshare.metrics import Interval, iqm_intervals, transfer_percent

Curve = tuple[list[float], list[float]]
"""``(env steps, mean evaluation return)``, two lists of the same length ``n``."""


def load_curve(run_dir: str | Path) -> Curve:
    """``(env steps, mean return)`` from a run folder's ``evaluations.json``.

    Raises:
        CheckpointError: the file is missing or corrupt.
    """
    data = read_json(Path(run_dir) / "evaluations.json", "evaluation curve")
    return [float(t) for t in data["timesteps"]], [float(v) for v in data["mean"]]


@dataclass
class Runs:
    """The compared runs, read back from their run folders; every field is method → seed → value.

    Attributes:
        curves: the learning curve (``evaluations.json``).
        metrics: the final figures (``metrics.json``: ``eval_mean_return``, ``timesteps``,
            ``random_mean_return``, ``n_parameters`` …).
        dirs: the run folder.
    """

    curves: dict[str, dict[int, Curve]] = field(default_factory=dict)
    metrics: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    dirs: dict[str, dict[int, Path]] = field(default_factory=dict)

    def column(self, key: str) -> dict[str, dict[str, Any]]:
        """One field of every run's ``metrics.json``: method → seed (as a string, as JSON keys
        are) → value (``None`` where the file has no such key)."""
        return {m: {str(s): met.get(key) for s, met in by_seed.items()} for m, by_seed in self.metrics.items()}

    def finals(self) -> dict[str, dict[str, float]]:
        """Final mean evaluation return: method → seed (as a string) → return."""
        return {m: {str(s): float(met["eval_mean_return"]) for s, met in by_seed.items()}
                for m, by_seed in self.metrics.items()}

    def seeds(self) -> list[int]:
        """Every seed with a run of some method, sorted."""
        return sorted({s for by_seed in self.curves.values() for s in by_seed})


def read_runs(folders: Mapping[str, Mapping[int, str | Path]], *, finished_only: bool = False) -> Runs:
    """Read the learning curve and final figures of every compared run.

    Args:
        folders: method → seed → run folder.
        finished_only: skip runs without a ``metrics.json`` (not finished yet) instead of
            refusing them; a method left with no run is left out.

    Returns:
        The runs, in the order of ``folders`` (methods, then seeds).

    Raises:
        CheckpointError: a run's ``evaluations.json`` or ``metrics.json`` is missing (unless
            ``finished_only``) or corrupt.
    """
    out = Runs()
    for method, by_seed in folders.items():
        for seed, folder in by_seed.items():
            path = Path(folder)
            if finished_only and not (path / "metrics.json").is_file():
                continue
            out.metrics.setdefault(method, {})[seed] = read_json(path / "metrics.json", "run metrics")
            out.curves.setdefault(method, {})[seed] = load_curve(path)
            out.dirs.setdefault(method, {})[seed] = path
    return out


def mean_over_seeds(values: Mapping[Any, float]) -> float:
    """The plain mean of per-seed values (e.g. final returns)."""
    return float(np.mean(list(values.values())))


def transfer_by_seed(curves: Mapping[str, Mapping[int, Curve]], baseline: str) -> dict[str, dict[int, float]]:
    """Transfer % of each method against ``baseline`` per seed.

    Args:
        curves: method → seed → curve.
        baseline: the from-scratch method's name.

    Returns:
        method → seed → transfer % (seeds without a baseline run are left out; ``nan`` where the
        baseline's area is not positive).
    """
    base = curves[baseline]
    return {m: {s: transfer_percent(c, base[s]) for s, c in by_seed.items() if s in base}
            for m, by_seed in curves.items()}


def transfer_summary(curves: Mapping[str, Mapping[int, Curve]], baseline: str, seed: int = 0,
                     reps: int = 2000, confidence: float = 0.95) -> dict[str, dict[str, Any]]:
    """Transfer % per seed and its IQM with a stratified bootstrap interval, per method.

    Args:
        curves: method → seed → curve.
        baseline: the from-scratch method's name.
        seed: bootstrap seed.
        reps: bootstrap replications.
        confidence: interval size (e.g. ``0.95``).

    Returns:
        method → ``{"per_seed": {seed: %}, "iqm": point, "low": …, "high": …}``; ``low`` and
        ``high`` are ``nan`` with a single seed (no interval).
    """
    per_seed = transfer_by_seed(curves, baseline)
    intervals: dict[str, Interval] = iqm_intervals(
        {m: np.array(list(v.values()), float) for m, v in per_seed.items() if v}, reps=reps,
        confidence=confidence, seed=seed)
    out: dict[str, dict[str, Any]] = {}
    for m, v in per_seed.items():
        iv = intervals.get(m, Interval(float("nan"), float("nan"), float("nan")))
        out[m] = {"per_seed": {str(s): p for s, p in v.items()}, "iqm": iv.point, "low": iv.low,
                  "high": iv.high}
    return out


def aggregate_over_tasks(summaries: Sequence[Mapping[str, Mapping[str, Any]]], seeds: Sequence[int],
                         baseline: str, reps: int = 2000,
                         confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """IQM over (seed, task) of each method's transfer %, with a stratified bootstrap interval.

    Args:
        summaries: one :func:`transfer_summary` per task.
        seeds: the seeds (rows); a seed a task lacks counts as ``nan`` there, and a task with a
            ``nan`` is left out of that method's aggregate (see :func:`~policyshare.metrics.iqm_intervals`).
        baseline: the reference method, left out (its transfer % is 100 by definition).
        reps: bootstrap replications.
        confidence: interval size.

    Returns:
        method → ``{"point": …, "low": …, "high": …}``.
    """
    per_method: dict[str, list[list[float]]] = {}
    for summary in summaries:
        for method, v in summary.items():
            per_method.setdefault(method, []).append([v["per_seed"].get(str(s), float("nan")) for s in seeds])
    arrays = {m: np.array(v, float).T for m, v in per_method.items() if m != baseline}
    return {m: iv.as_dict() for m, iv in iqm_intervals(arrays, reps=reps, confidence=confidence).items()}


def interval_rows(summary: Mapping[str, Mapping[str, Any]], leave_out: Iterable[str] = ()
                  ) -> dict[str, dict[str, float]]:
    """A :func:`transfer_summary` as the rows of :func:`plot_intervals` (``point``, ``low``, ``high``)."""
    skip = set(leave_out)
    return {m: {"point": v["iqm"], "low": v["low"], "high": v["high"]} for m, v in summary.items() if m not in skip}


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
                ylabel: str = "mean evaluation return", xlabel: str = "env steps",
                confidence: float = 0.95) -> Path:
    """Plot methods' learning curves: mean over seeds with a bootstrap band; PNG, atomic.

    Args:
        curves: method (the legend's label) → one curve per seed. Curves of one method are
            interpolated onto the union of their env steps over their common range.
        path: output ``.png``.
        title: figure title.
        ylabel, xlabel: axis labels.
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


__all__ = ["Curve", "Runs", "aggregate_over_tasks", "interval_figure", "interval_rows", "load_curve",
           "markdown_table", "mean_over_seeds", "plot_curves", "plot_intervals", "read_runs", "save_figure",
           "transfer_by_seed", "transfer_summary"]
