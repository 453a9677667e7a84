"""Learning curves of runs, their comparison (transfer %), and their plot.

A run's learning curve is its ``evaluations.json``: mean evaluation return at env steps (see
:class:`~policyshare.callbacks.PeriodicEvaluation`). Methods compared on one task share
evaluation steps, so their curves line up; transfer % per seed is computed against the
from-scratch run of the *same seed* (Rusu et al. 2016, Table 1), and aggregated over seeds as
an interquartile mean with a stratified bootstrap interval (:func:`~policyshare.metrics.iqm_intervals`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.io import atomic_write_bytes, read_json
from policyshare.metrics import Interval, iqm_intervals, transfer_percent

Curve = tuple[list[float], list[float]]


def load_curve(run_dir: str | Path) -> Curve:
    """``(env steps, mean return)`` from a run folder's ``evaluations.json``.

    Raises:
        CheckpointError: the file is missing or corrupt.
    """
    data = read_json(Path(run_dir) / "evaluations.json", "evaluation curve")
    return [float(t) for t in data["timesteps"]], [float(v) for v in data["mean"]]


def transfer_by_seed(curves: Mapping[str, Mapping[int, Curve]], baseline: str) -> dict[str, dict[int, float]]:
    """Transfer % of each method against ``baseline`` per seed.

    Args:
        curves: method → seed → curve.
        baseline: the from-scratch method's name.

    Returns:
        method → seed → transfer % (seeds without a baseline run are left out).
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


def plot_curves(curves: Mapping[str, Sequence[Curve]], path: str | Path, title: str,
                ylabel: str = "mean evaluation return", xlabel: str = "env steps",
                confidence: float = 0.95) -> Path:
    """Plot methods' learning curves: mean over seeds with a bootstrap band; PNG, atomic.

    Args:
        curves: method → one curve per seed. Curves of one method are interpolated onto the
            union of their env steps over their common range.
        path: output ``.png``.
        title: figure title.
        ylabel, xlabel: axis labels.
        confidence: size of the band (percentile bootstrap of the mean over seeds, 1000
            resamples; no band for a single seed).
    """

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
