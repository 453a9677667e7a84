"""Point estimates over seeds with their intervals: IQM, probability of improvement, profiles.

Scores are arrays of shape ``(runs, tasks)`` (a 1-D array is one task over runs), a run being
one seed.

* :func:`aggregate` — IQM or mean with a stratified bootstrap interval (Agarwal et al. 2021,
  "Deep RL at the edge of the statistical precipice", via ``rliable``).
* :func:`probability_of_improvement` — P(X > Y) with its interval (Agarwal et al. 2021, Sec. 4,
  via ``rliable``).
* :func:`performance_profiles` — run-score distributions, fraction of runs above τ (Agarwal et
  al. 2021, Sec. 4, via ``rliable``).

Small samples are reported as what they are: one seed has no interval ("one seed: no
interval"); fewer than ``min_seeds`` (default :data:`MIN_SEEDS`) seeds give the *range* of the
seeds, labelled as a range, not a confidence interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from policyshare.metrics import seeded_numpy_global

MIN_SEEDS = 5
"""Seeds per group below which an interval is a range of the seeds, not a confidence interval."""

Statistic = Literal["iqm", "mean"]
Kind = Literal["confidence interval", "range", "none"]


@dataclass(frozen=True)
class Estimate:
    """A point estimate and what kind of interval, if any, stands behind it.

    Attributes:
        point: the estimate, or ``None`` when there are no values at all.
        low, high: the interval's bounds (``None`` when ``kind`` is ``"none"``).
        kind: ``"confidence interval"`` (a bootstrap interval of size ``confidence``),
            ``"range"`` (the smallest and largest seed: too few seeds for a confidence
            interval) or ``"none"``.
        n: the seeds behind it (the smallest group's, where there are several).
        note: one line saying what the interval is, e.g. ``"one seed: no interval"``.
        confidence: the nominal coverage of a confidence interval (e.g. 0.95).
    """

    point: float | None
    low: float | None
    high: float | None
    kind: Kind
    n: int
    note: str
    confidence: float = 0.95

    @property
    def is_confidence_interval(self) -> bool:
        """Whether ``[low, high]`` is a confidence interval (the only kind a verdict may use)."""
        return self.kind == "confidence interval"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``None`` stays ``None``; no ``nan``)."""
        return {"point": self.point, "low": self.low, "high": self.high, "kind": self.kind, "n": self.n,
                "note": self.note, "confidence": self.confidence}

    def __str__(self) -> str:
        if self.point is None:
            return f"no value ({self.note})"
        if self.kind == "confidence interval":
            return f"{self.point:.3g} [{self.low:.3g}, {self.high:.3g}] ({self.note})"
        if self.kind == "range":
            return f"{self.point:.3g}, range {self.low:.3g} to {self.high:.3g} ({self.note})"
        return f"{self.point:.3g} ({self.note})"


def _as_runs_tasks(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    a = np.asarray(scores, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected shape (runs, tasks) or (runs,), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: non-finite scores; keep undefined seeds as Metric reasons "
                         "(summarise_metrics) instead of nan")
    return a


def _stat_fn(statistic: Statistic) -> Callable[[np.ndarray], float]:
    if statistic == "iqm":
        from rliable import metrics as rmetrics

        return lambda x: float(rmetrics.aggregate_iqm(x))
    if statistic == "mean":
        return lambda x: float(np.mean(x))
    raise ValueError(f"unknown statistic {statistic!r}; use 'iqm' or 'mean'")


def _per_row(a: np.ndarray, statistic: Statistic) -> np.ndarray:
    """The statistic of each row of ``(rows, tasks)`` over its tasks, shape ``(rows,)``."""
    from scipy.stats import trim_mean

    return np.asarray(trim_mean(a, 0.25, axis=1) if statistic == "iqm" else a.mean(axis=1), dtype=float)


def _small_sample(point: float, per_run: np.ndarray, n: int, min_seeds: int, confidence: float,
                  what: str = "seeds") -> Estimate | None:
    """The estimate for too few seeds (none or a range), or ``None`` when a CI can be had."""
    if n == 1:
        return Estimate(point, None, None, "none", 1, "one seed: no interval", confidence)
    if n < min_seeds:
        return Estimate(point, float(per_run.min()), float(per_run.max()), "range", n,
                        f"{n} {what}: a range, not a confidence interval (fewer than {min_seeds})",
                        confidence)
    return None


def _no_values(confidence: float) -> Estimate:
    return Estimate(None, None, None, "none", 0, "no seeds", confidence)


def _rliable_interval(data: np.ndarray | list[np.ndarray], func: Callable[..., np.ndarray], reps: int,
                      confidence: float, seed: int, task_bootstrap: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
    from rliable import library as rly

    with seeded_numpy_global(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arch's notice about RandomState, which rliable passes
        point, ci = rly.get_interval_estimates(
            {"x": data}, func, reps=reps, confidence_interval_size=confidence,
            random_state=np.random.RandomState(seed), task_bootstrap=task_bootstrap)
    return np.asarray(point["x"]), np.asarray(ci["x"])


def aggregate(scores: ArrayLike, statistic: Statistic = "iqm", *, reps: int = 2000, confidence: float = 0.95,
              seed: int = 0, min_seeds: int = MIN_SEEDS) -> Estimate:
    """IQM (or mean) over runs and tasks with a stratified bootstrap interval (Agarwal et al. 2021).

    The IQM is the mean of the middle 50 % of all ``runs × tasks`` scores
    (``rliable.metrics.aggregate_iqm``); the interval is ``rliable``'s stratified percentile
    bootstrap over runs within each task (``rly.get_interval_estimates``), reproducible by
    ``seed``.

    Args:
        scores: shape ``(runs, tasks)`` or ``(runs,)``; finite (keep undefined seeds out and
            count them, see :func:`summarise_metrics`).
        statistic: ``"iqm"`` or ``"mean"``.
        reps: bootstrap replications.
        confidence: interval size, e.g. 0.95.
        seed: bootstrap seed.
        min_seeds: runs below which the interval is the range of the runs' own statistic
            over tasks, labelled a range (not a confidence interval).

    Returns:
        An :class:`Estimate`: no runs → no value; one run → no interval; fewer than
        ``min_seeds`` → a range; otherwise a confidence interval.

    Raises:
        ValueError: wrong shape, non-finite scores, unknown statistic.
    """
    fn = _stat_fn(statistic)
    a = _as_runs_tasks(scores)
    n = a.shape[0]
    if a.size == 0:
        return _no_values(confidence)
    point = fn(a)
    small = _small_sample(point, _per_row(a, statistic), n, min_seeds, confidence)
    if small is not None:
        return small
    p, ci = _rliable_interval(a, lambda x: np.array([fn(x)]), reps, confidence, seed)
    return Estimate(float(p[0]), float(ci[0, 0]), float(ci[1, 0]), "confidence interval", n,
                    f"{confidence:.0%} stratified bootstrap CI over {n} seeds", confidence)


def probability_of_improvement(scores_x: ArrayLike, scores_y: ArrayLike, *, reps: int = 2000,
                               confidence: float = 0.95, seed: int = 0, min_seeds: int = MIN_SEEDS) -> Estimate:
    """P(X > Y): the chance a run of X scores above a run of Y, averaged over tasks (Agarwal et al. 2021).

    Per task it is the Mann–Whitney U statistic over ``runs_x · runs_y`` pairs (ties count
    one half), via ``rliable.metrics.probability_of_improvement``; the interval resamples runs
    of X and of Y independently within each task (``rly.get_interval_estimates`` with a pair of
    arrays).

    Args:
        scores_x, scores_y: shapes ``(runs_x, tasks)`` and ``(runs_y, tasks)`` (or 1-D).
        reps, confidence, seed: as in :func:`aggregate`.
        min_seeds: with fewer runs in either group there is no interval (a probability has no
            meaningful "range of seeds").

    Returns:
        An :class:`Estimate` in ``[0, 1]``; ``n`` is the smaller group's runs.

    Raises:
        ValueError: wrong shapes, different task counts, non-finite scores.
    """
    from rliable import metrics as rmetrics

    x, y = _as_runs_tasks(scores_x, "scores_x"), _as_runs_tasks(scores_y, "scores_y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y must cover the same tasks, got {x.shape[1]} and {y.shape[1]}")
    n = min(x.shape[0], y.shape[0])
    if n == 0:
        return _no_values(confidence)
    point = float(rmetrics.probability_of_improvement(x, y))
    if n == 1:
        return Estimate(point, None, None, "none", 1, "one seed: no interval", confidence)
    if n < min_seeds:
        return Estimate(point, None, None, "none", n,
                        f"{n} seeds per group, fewer than {min_seeds}: no interval", confidence)
    p, ci = _rliable_interval([x, y], lambda a, b: np.array([rmetrics.probability_of_improvement(a, b)]),
                              reps, confidence, seed)
    return Estimate(float(p[0]), float(ci[0, 0]), float(ci[1, 0]), "confidence interval", n,
                    f"{confidence:.0%} stratified bootstrap CI over {x.shape[0]} and {y.shape[0]} seeds", confidence)


@dataclass(frozen=True)
class Profile:
    """A performance profile: the fraction of runs (× tasks) scoring above each threshold τ.

    Attributes:
        taus: thresholds, shape ``(k,)`` (units of the scores, e.g. expert-normalised).
        fraction: fraction of runs above each τ, shape ``(k,)``, in ``[0, 1]``.
        low, high: bootstrap confidence bounds, shape ``(k,)``.
    """

    taus: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray


def performance_profiles(scores: Mapping[str, ArrayLike], taus: ArrayLike, *, reps: int = 2000,
                         confidence: float = 0.95, seed: int = 0) -> dict[str, Profile]:
    """Score-distribution performance profiles with bootstrap bands (Agarwal et al. 2021, Sec. 4).

    ``fraction[i]`` is the share of all ``runs × tasks`` scores above ``taus[i]``, with a
    stratified bootstrap band, from ``rly.create_performance_profile`` (run distributions, not
    averages over runs); the band is reproducible by ``seed``. Plotting is left to the caller
    (e.g. ``rliable.plot_utils.plot_performance_profiles``).

    Args:
        scores: method → shape ``(runs, tasks)`` or ``(runs,)``; finite.
        taus: thresholds, shape ``(k,)``, in the scores' units (e.g. expert-normalised).
        reps, confidence, seed: as in :func:`aggregate`.

    Returns:
        method → :class:`Profile`, every method of ``scores`` kept. With one run the band
        equals the profile (one run has no interval).

    Raises:
        ValueError: wrong shapes or non-finite scores.
    """
    from rliable import library as rly

    t = np.asarray(taus, dtype=float).ravel()
    arrays = {name: _as_runs_tasks(s, name) for name, s in scores.items()}
    with seeded_numpy_global(seed), warnings.catch_warnings():  # arch's notice about RandomState
        warnings.simplefilter("ignore", FutureWarning)
        profiles, bands = rly.create_performance_profile(arrays, t, reps=reps, confidence_interval_size=confidence)
    out: dict[str, Profile] = {}
    for name, a in arrays.items():
        prof = np.asarray(profiles[name], dtype=float)
        band = np.asarray(bands[name], dtype=float)
        out[name] = Profile(t, prof, prof.copy(), prof.copy()) if a.shape[0] < 2 else Profile(t, prof, band[0], band[1])
    return out


