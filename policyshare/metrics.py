"""Scores and interval estimates used to compare sharing methods.

* Expert-normalised score: (score − random) / (expert − random) (Parisotto et al. 2016).
* Transfer %: area under the target task's learning curve ÷ that of the from-scratch baseline,
  × 100, per seed (Rusu et al. 2016, Table 1). Curves are mean evaluation returns at the same
  env steps; the area is the trapezoid rule over env steps.
* Aggregates over seeds (and tasks): interquartile mean with a stratified bootstrap confidence
  interval (Agarwal et al. 2021, via ``rliable``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

#: Why a figure of this module can be undefined, by the key it is stored under. JSON has no NaN:
#: :func:`policyshare.io.atomic_write_json` writes such a figure as ``null`` with a
#: sibling ``"<key>_why"`` holding this reason.
UNDEFINED_WHY: dict[str, str] = {
    "low": "one value (one seed): no interval",
    "high": "one value (one seed): no interval",
    "iqm": "no finite values to average",
    "point": "no finite values to average",
    "per_seed": "transfer % is undefined where scratch's area under the curve is not positive",
    "expert_normalised": "the expert is no better than random: the score is undefined",
}


def expert_normalised(score: float, random: float, expert: float) -> float:
    """(score − random) / (expert − random); ``nan`` if the expert is no better than random."""
    gap = expert - random
    if not gap > 0:
        return float("nan")
    return float((score - random) / gap)


def auc(timesteps: ArrayLike, values: ArrayLike) -> float:
    """Area under a learning curve (trapezoid rule over env steps).

    Args:
        timesteps: env steps of each evaluation, increasing, shape ``(n,)``.
        values: mean evaluation return at each, shape ``(n,)``.

    Raises:
        ValueError: mismatched lengths or fewer than 2 points.
    """
    t = np.asarray(timesteps, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.shape != v.shape or t.size < 2:
        raise ValueError(f"a learning curve needs >= 2 matching points, got {t.size} and {v.size}")
    return float(np.sum((t[1:] - t[:-1]) * (v[1:] + v[:-1]) / 2.0))


def align_curves(a: tuple[ArrayLike, ArrayLike],
                 b: tuple[ArrayLike, ArrayLike]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put two curves on the env steps they share (interpolating within each curve's range).

    Returns:
        ``(steps, values_a, values_b)`` over the overlapping range, using the union of their
        evaluation points inside it.
    """
    ta, va = np.asarray(a[0], float), np.asarray(a[1], float)
    tb, vb = np.asarray(b[0], float), np.asarray(b[1], float)
    lo, hi = max(ta[0], tb[0]), min(ta[-1], tb[-1])
    steps = np.union1d(ta[(ta >= lo) & (ta <= hi)], tb[(tb >= lo) & (tb <= hi)])
    return steps, np.interp(steps, ta, va), np.interp(steps, tb, vb)


def transfer_percent(curve: tuple[ArrayLike, ArrayLike],
                     baseline: tuple[ArrayLike, ArrayLike]) -> float:
    """Transfer % = 100 · AUC(curve) / AUC(baseline) (Rusu et al. 2016, Table 1).

    Both curves are ``(env steps, mean return)``; they are compared over the env steps they
    share. 100 % means no better than training from scratch.

    Returns:
        The percentage, or ``nan`` if the baseline's area is not positive (the ratio is then
        meaningless).
    """
    steps, v, vb = align_curves(curve, baseline)
    base = auc(steps, vb)
    if not base > 0:
        return float("nan")
    return 100.0 * auc(steps, v) / base


@dataclass
class Interval:
    """A point estimate with a confidence interval."""

    point: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"point": self.point, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return format_interval(self.point, self.low, self.high, spec=".3g")


def _finite(v: Any) -> bool:
    try:
        return bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False


def format_number(v: Any, digits: int = 1, spec: str | None = None) -> str:
    """A number with ``digits`` decimals (or format ``spec``); ``"—"`` for NaN, infinity or ``None``."""
    return format(float(v), spec or f".{digits}f") if _finite(v) else "—"


def format_interval(point: Any, low: Any, high: Any, digits: int = 1, *, spec: str | None = None,
                    single: str = "one seed") -> str:
    """``"point [low, high]"``, or ``"point (one seed: no interval)"`` where the bounds are
    undefined (NaN, or ``null`` read back from JSON): every interval the commands print goes
    through here, so a single run never shows as ``[nan, nan]``.

    Args:
        point, low, high: the estimate and its bounds (floats, ``nan`` or ``None``).
        digits: decimals (ignored when ``spec`` is given).
        spec: a format spec instead, e.g. ``".3g"``.
        single: what there was only one of (``"one seed"``, ``"one game"``).

    Returns:
        The text; an undefined point is ``"—"``.
    """
    def num(v: Any) -> str:
        return format_number(v, digits, spec)

    if _finite(low) and _finite(high):
        return f"{num(point)} [{num(low)}, {num(high)}]"
    return f"{num(point)} ({single}: no interval)" if _finite(point) else "—"


def confidence_label(confidence: float) -> str:
    """``0.95`` → ``"95%"`` (labels of intervals and bands follow the confidence actually used)."""
    return f"{100 * confidence:g}%"


@contextmanager
def seeded_numpy_global(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for the block, then put its state back.

    rliable's ``StratifiedBootstrap`` and ``StratifiedIndependentBootstrap`` draw their indices
    from ``np.random.choice`` (rliable 1.2, ``library.py``), ignoring the ``random_state`` they
    are given, so a bootstrap interval is reproducible only with the global generator seeded.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm(values: np.ndarray) -> float:
    """Interquartile mean over all entries (mean of the middle 50 %, ``scipy.stats.trim_mean``)."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(values, float).ravel(), proportiontocut=0.25))


def iqm_intervals(scores: Mapping[str, np.ndarray], reps: int = 2000, confidence: float = 0.95,
                  seed: int = 0, task_bootstrap: bool = False) -> dict[str, Interval]:
    """IQM with stratified bootstrap confidence intervals, per method (rliable).

    Args:
        scores: method → array ``(runs, tasks)`` (a 1-D array is one task over runs).
        reps: bootstrap replications.
        confidence: interval size.
        seed: bootstrap seed (the interval is reproducible).
        task_bootstrap: also resample tasks (use when there is a single run per task).

    Returns:
        method → :class:`Interval`. Non-finite scores are dropped; a method with none left
        gets ``nan``; a single value gets ``nan`` bounds (no interval from one run).
    """
    from rliable import library as rly
    from rliable import metrics as rmetrics

    out: dict[str, Interval] = {}
    for name, arr in scores.items():
        a = np.asarray(arr, float)
        if a.ndim == 1:
            a = a[:, None]
        finite_cols = [j for j in range(a.shape[1]) if np.isfinite(a[:, j]).all()]
        a = a[:, finite_cols]
        if a.size == 0:
            out[name] = Interval(float("nan"), float("nan"), float("nan"))
            continue
        if a.shape[0] == 1 and a.shape[1] == 1:  # one value: no interval can be estimated
            out[name] = Interval(float(a[0, 0]), float("nan"), float("nan"))
            continue
        with seeded_numpy_global(seed), warnings.catch_warnings():  # arch's notice about RandomState
            warnings.simplefilter("ignore", FutureWarning)
            point, ci = rly.get_interval_estimates(
                {name: a}, lambda x: np.array([rmetrics.aggregate_iqm(x)]), reps=reps,
                confidence_interval_size=confidence, random_state=np.random.RandomState(seed),
                task_bootstrap=task_bootstrap or a.shape[0] == 1)
        out[name] = Interval(float(point[name][0]), float(ci[name][0, 0]), float(ci[name][1, 0]))
    return out
