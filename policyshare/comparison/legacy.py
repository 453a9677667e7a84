"""The old transfer % per seed (a ratio of greedy-evaluation areas with nothing subtracted), kept
for the experiment report until it moves to :func:`~policyshare.comparison.compare_methods`.

Its figure is ``nan`` wherever scratch's area is not positive and meaningless where scratch
barely learns (issue 12); the transfer command and the progressive report use
:func:`~policyshare.comparison.compare_methods` instead, whose transfer % is defined only where
scratch is clearly above random and which gives the reason otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from policyshare.comparison.runs import Curve
from policyshare.metrics import Interval, iqm_intervals, transfer_percent


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
