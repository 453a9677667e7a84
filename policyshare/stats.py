"""Aggregates over seeds, their intervals, and verdicts on claims — honest about small samples.

Scores are arrays of shape ``(runs, tasks)`` (a 1-D array is one task over runs), a run being
one seed; hierarchical scores are ``(upstream seeds, target seeds[, tasks])``.

* :func:`aggregate` — IQM or mean with a stratified bootstrap interval (Agarwal et al. 2021,
  "Deep RL at the edge of the statistical precipice", via ``rliable``).
* :func:`probability_of_improvement` — P(X > Y) with its interval (Agarwal et al. 2021, Sec. 4,
  via ``rliable``).
* :func:`performance_profiles` — run-score distributions, fraction of runs above τ (Agarwal et
  al. 2021, Sec. 4, via ``rliable``).
* :func:`hierarchical_bootstrap`, :func:`hierarchical_difference` — resample upstream seeds
  (experts, students), then target seeds within each (Davison & Hinkley 1997, Sec. 3.8;
  Saravanan et al. 2020).
* :func:`verdict` — "A beats B": supported, refuted, or undecided at this budget, with a rough
  number of seeds that would decide it (Colas, Sigaud & Oudeyer 2018).
* :func:`summarise_metrics` — per-seed :class:`~policyshare.transfer_metrics.Metric` values per
  method into one row each, undefined seeds reported by reason, no method dropped.

Small samples are reported as what they are: one seed has no interval ("one seed: no
interval"); fewer than ``min_seeds`` (default :data:`MIN_SEEDS`) seeds give the *range* of the
seeds, labelled as a range, not a confidence interval, and :func:`verdict` gives no verdict on it.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from policyshare.metrics import seeded_numpy_global
from policyshare.transfer_metrics import Metric

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


def _as_hierarchical(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    a = np.asarray(scores, dtype=float)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"{name}: expected shape (upstream seeds, target seeds[, tasks]), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: non-finite scores")
    return a


def hierarchical_bootstrap(scores: ArrayLike, statistic: Statistic = "iqm", *, reps: int = 2000,
                           confidence: float = 0.95, seed: int = 0, min_seeds: int = MIN_SEEDS,
                           min_target_seeds: int | None = None) -> Estimate:
    """IQM (or mean) with a two-level bootstrap: upstream seeds, then target seeds within each.

    When a method's runs hang off upstream runs (a student or an expert trained with its own
    seed, then each transferred with several target seeds), runs sharing an upstream seed are
    not independent, and a flat bootstrap over all runs understates the spread. Each
    replication, per task: draw ``U`` upstream seeds with replacement; within each drawn one,
    draw ``S`` target seeds with replacement; compute the statistic over all drawn scores. The
    interval is the percentile interval of the replications (Davison & Hinkley 1997, "Bootstrap
    methods and their application", Sec. 3.8; Saravanan, Berman & Sober 2020,
    "Application of the hierarchical bootstrap to multi-level data in neuroscience").

    Args:
        scores: shape ``(U upstream seeds, S target seeds)`` or ``(U, S, tasks)``; finite.
        statistic: ``"iqm"`` (over all drawn scores, as ``rliable.metrics.aggregate_iqm``) or
            ``"mean"``.
        reps, confidence, seed: as in :func:`aggregate`.
        min_seeds: upstream seeds below which the interval is the range of the runs (each run's
            statistic over tasks), labelled a range.
        min_target_seeds: target seeds per upstream seed below which the same holds
            (default ``min_seeds``).

    Returns:
        An :class:`Estimate` with ``n`` the upstream seeds (no interval for a single run).

    Raises:
        ValueError: wrong shape, non-finite scores, unknown statistic.
    """
    fn = _stat_fn(statistic)
    a = _as_hierarchical(scores)
    n_up, n_tgt, n_tasks = a.shape
    if a.size == 0:
        return _no_values(confidence)
    point = fn(a)
    min_t = min_seeds if min_target_seeds is None else min_target_seeds
    if n_up * n_tgt == 1:
        return Estimate(point, None, None, "none", 1, "one seed: no interval", confidence)
    if n_up < min_seeds or n_tgt < min_t:
        per_run = _per_row(a.reshape(n_up * n_tgt, n_tasks), statistic)
        return Estimate(point, float(per_run.min()), float(per_run.max()), "range", n_up,
                        f"{n_up} upstream × {n_tgt} target seeds: a range, not a confidence interval "
                        f"(fewer than {min_seeds} upstream or {min_t} target seeds)", confidence)
    rng = np.random.default_rng(seed)
    up = rng.integers(0, n_up, size=(reps, n_tasks, n_up))  # upstream seeds, per replication and task
    tgt = rng.integers(0, n_tgt, size=(reps, n_tasks, n_up, n_tgt))  # target seeds within each drawn one
    task = np.arange(n_tasks)[None, :, None, None]
    drawn = a[up[..., None], tgt, task].reshape(reps, -1)  # (reps, n_tasks·n_up·n_tgt)
    boot = _per_row(drawn, statistic)
    alpha = 1 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    note = f"{confidence:.0%} hierarchical bootstrap CI over {n_up} upstream × {n_tgt} target seeds"
    return Estimate(point, float(low), float(high), "confidence interval", n_up, note, confidence)


def hierarchical_difference(scores_a: ArrayLike, scores_b: ArrayLike, statistic: Statistic = "mean",
                            **kwargs: Any) -> Estimate:
    """Paired difference A − B with the hierarchical bootstrap of :func:`hierarchical_bootstrap`.

    Runs are paired by (upstream seed, target seed): ``d[u, s] = a[u, s] − b[u, s]``, and the
    statistic of ``d`` is bootstrapped over upstream seeds, then target seeds.

    Args:
        scores_a: shape ``(U, S)`` or ``(U, S, tasks)``.
        scores_b: the same shape, or ``(S,)`` / ``(S, tasks)`` for a method without upstream
            seeds (from scratch on the same target seeds), repeated for every upstream seed.
        statistic: ``"mean"`` (the mean paired difference) or ``"iqm"`` (IQM of differences).
        **kwargs: ``reps``, ``confidence``, ``seed``, ``min_seeds``, ``min_target_seeds``.

    Returns:
        The :class:`Estimate` of the difference (its units are the scores').

    Raises:
        ValueError: shapes that do not pair, non-finite scores.
    """
    raw_a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if raw_a.ndim >= 2 and b.shape == raw_a.shape[1:]:  # scratch: (S[, tasks]), same for every upstream seed
        b = np.broadcast_to(b, raw_a.shape)
    if b.shape != raw_a.shape:
        raise ValueError(f"paired scores must have the same shape (or B one row of target seeds), "
                         f"got {raw_a.shape} and {b.shape}")
    a, b = _as_hierarchical(raw_a, "scores_a"), _as_hierarchical(b, "scores_b")
    return hierarchical_bootstrap(a - b, statistic, **kwargs)


Outcome = Literal["supported", "refuted", "undecided at this budget", "no verdict"]


@dataclass(frozen=True)
class Verdict:
    """The answer to a claim "A beats B" at a given budget.

    Attributes:
        claim: the claim, e.g. ``"transfer beats scratch"``.
        outcome: ``"supported"``, ``"refuted"``, ``"undecided at this budget"`` or
            ``"no verdict"`` (too few seeds for a confidence interval).
        difference: the estimate of A − B (mean over runs and tasks) behind it.
        poi: P(A > B) behind it.
        seeds: runs of A and of B, ``(n_a, n_b)``.
        env_steps: the budget each run had, in env steps.
        seeds_needed: when undecided (or no verdict), a rough number of seeds per method that
            would decide it at this effect size; ``None`` when no effect was observed.
        why: one line on how the outcome follows from the intervals.
    """

    claim: str
    outcome: Outcome
    difference: Estimate
    poi: Estimate
    seeds: tuple[int, int]
    env_steps: int
    seeds_needed: int | None
    why: str

    def __str__(self) -> str:
        s = (f"{self.claim}: {self.outcome} ({self.why}; {self.seeds[0]} and {self.seeds[1]} seeds, "
             f"{self.env_steps:,} env steps)")
        if self.seeds_needed is not None:
            s += f"; about {self.seeds_needed} seeds per method would decide it"
        return s


def seeds_to_decide(effect: float, sd: float, *, paired: bool, confidence: float = 0.95,
                    power: float = 0.8) -> int | None:
    """Rough seeds per method to detect ``effect`` at this spread (normal approximation).

    Paired runs (differences ``d`` of the same seeds): ``n ≈ ((z_{α/2} + z_β) · sd / effect)²``
    with ``sd`` the standard deviation of ``d``. Independent groups: twice that per group, with
    ``sd`` the pooled standard deviation. ``α = 1 − confidence``, ``1 − β = power`` (Colas,
    Sigaud & Oudeyer 2018, "How many random seeds? Statistical power analysis in deep RL
    experiments"). A rough guide only: it takes the observed effect at face value.

    Returns:
        ``ceil(n)`` (at least 2), or ``None`` when the observed effect is 0.
    """
    from scipy.stats import norm

    if effect == 0 or not np.isfinite(effect) or not np.isfinite(sd):
        return None
    z = norm.ppf(1 - (1 - confidence) / 2) + norm.ppf(power)
    n = (z * sd / effect) ** 2 * (1 if paired else 2)
    return max(2, math.ceil(n))


def verdict(scores_a: ArrayLike, scores_b: ArrayLike, *, env_steps: int, claim: str = "A beats B",
            paired: bool = True, difference: Estimate | None = None, reps: int = 2000,
            confidence: float = 0.95, seed: int = 0, min_seeds: int = MIN_SEEDS, power: float = 0.8) -> Verdict:
    """Judge "A beats B" from per-seed scores at one budget.

    * **supported**: the difference's confidence interval lies entirely above 0 *and* the lower
      bound of P(A > B)'s interval is above 0.5;
    * **refuted**: the difference's interval lies entirely below 0 *and* the upper bound of
      P(A > B)'s interval is below 0.5;
    * **undecided at this budget**: anything else, with :func:`seeds_to_decide`'s rough number of
      seeds per method from the observed mean difference and its spread — the unpaired number
      (pooled sd of the runs), or when paired the larger of that and the paired one (sd of the
      per-seed differences), since P(A > B) ranks runs as independent samples;
    * **no verdict**: either interval is not a confidence interval (one seed, or fewer than
      ``min_seeds``: a range of seeds decides nothing).

    To judge a normalised area gain, pass each method's normalised area
    ``AUC / (T · (expert − random))`` per seed: their paired difference is the gain.

    Args:
        scores_a, scores_b: per-seed scores, shapes ``(runs, tasks)`` or ``(runs,)``; with
            ``paired`` row ``i`` of both is the same seed.
        env_steps: the budget ``T`` each run trained for, in env steps (reported).
        claim: the claim's wording.
        paired: the difference is the mean of per-seed differences (same seeds, same shapes);
            otherwise the difference of means with runs resampled independently.
        difference: an estimate of A − B to use instead (e.g. :func:`hierarchical_difference`
            when A's runs hang off upstream seeds).
        reps, confidence, seed, min_seeds: as in :func:`aggregate`.
        power: the power ``1 − β`` for the seeds estimate.

    Returns:
        A :class:`Verdict`.

    Raises:
        ValueError: shapes that do not pair, non-finite scores.
    """
    a, b = _as_runs_tasks(scores_a, "scores_a"), _as_runs_tasks(scores_b, "scores_b")
    if paired and a.shape != b.shape:
        raise ValueError(f"paired scores need the same shape (same seeds and tasks), got {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"A and B must cover the same tasks, got {a.shape[1]} and {b.shape[1]}")
    kw: dict[str, Any] = {"reps": reps, "confidence": confidence, "seed": seed, "min_seeds": min_seeds}
    effect = float(a.mean() - b.mean())  # equals the mean paired difference when paired
    pooled = _pooled_sd(a.mean(axis=1), b.mean(axis=1))
    # P(A > B) compares runs of A and B as independent samples, so it needs about the unpaired
    # number of seeds even when the difference is paired; both conditions must hold: the larger.
    needed = seeds_to_decide(effect, pooled, paired=False, confidence=confidence, power=power)
    if paired:
        d = (a - b).mean(axis=1)
        sd_d = float(d.std(ddof=1)) if d.size > 1 else float("nan")
        n_d = seeds_to_decide(effect, sd_d, paired=True, confidence=confidence, power=power)
        needed = None if needed is None or n_d is None else max(needed, n_d)
        diff = difference if difference is not None else aggregate(a - b, "mean", **kw)
    else:
        diff = difference if difference is not None else _unpaired_difference(a, b, **kw)
    poi = probability_of_improvement(a, b, **kw)
    outcome: Outcome
    if not diff.is_confidence_interval or not poi.is_confidence_interval:
        outcome = "no verdict"
        why = f"difference: {diff.note}; P(A > B): {poi.note}"
    else:
        assert diff.low is not None and diff.high is not None and poi.low is not None and poi.high is not None
        if diff.low > 0 and poi.low > 0.5:
            outcome, why, needed = "supported", f"difference {diff} and P(A > B) {poi} both above", None
        elif diff.high < 0 and poi.high < 0.5:
            outcome, why, needed = "refuted", f"difference {diff} and P(A > B) {poi} both below", None
        else:
            outcome = "undecided at this budget"
            why = f"difference {diff}, P(A > B) {poi}: not both clear of 0 and 0.5"
    return Verdict(claim, outcome, diff, poi, (a.shape[0], b.shape[0]), int(env_steps), needed, why)


def _pooled_sd(x: np.ndarray, y: np.ndarray) -> float:
    """Pooled standard deviation of two samples (``nan`` if either has fewer than 2 values)."""
    nx, ny = x.size, y.size
    if nx < 2 or ny < 2:
        return float("nan")
    return math.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))


def _unpaired_difference(a: np.ndarray, b: np.ndarray, *, reps: int, confidence: float, seed: int,
                         min_seeds: int) -> Estimate:
    """mean(A) − mean(B), runs of A and B resampled independently within each task (rliable)."""
    point = float(a.mean() - b.mean())
    n = min(a.shape[0], b.shape[0])
    if n == 0:
        return _no_values(confidence)
    if n == 1:
        return Estimate(point, None, None, "none", 1, "one seed: no interval", confidence)
    if n < min_seeds:
        lo, hi = float(a.mean(axis=1).min() - b.mean(axis=1).max()), float(a.mean(axis=1).max() - b.mean(axis=1).min())
        return Estimate(point, lo, hi, "range", n, f"{n} seeds per group: a range, not a confidence interval "
                        f"(fewer than {min_seeds})", confidence)
    p, ci = _rliable_interval([a, b], lambda x, y: np.array([x.mean() - y.mean()]), reps, confidence, seed)
    return Estimate(float(p[0]), float(ci[0, 0]), float(ci[1, 0]), "confidence interval", n,
                    f"{confidence:.0%} stratified bootstrap CI over {a.shape[0]} and {b.shape[0]} seeds", confidence)


@dataclass(frozen=True)
class MetricSummary:
    """One method's row: the aggregate over its defined seeds and what was undefined, and why.

    Attributes:
        estimate: the aggregate over seeds with a value (``point`` ``None`` when none has one).
        n_total: seeds given.
        undefined: reason → number of seeds undefined for that reason.
    """

    estimate: Estimate
    n_total: int
    undefined: dict[str, int]

    @property
    def n_defined(self) -> int:
        """Seeds with a value."""
        return self.n_total - sum(self.undefined.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (no ``nan``): the estimate's, ``n_total``, ``n_defined``, ``undefined``."""
        return {**self.estimate.as_dict(), "n_total": self.n_total, "n_defined": self.n_defined,
                "undefined": dict(self.undefined)}

    def __str__(self) -> str:
        reasons = "; ".join(f"{why} ({k} of {self.n_total} seeds)" if k < self.n_total else why
                            for why, k in self.undefined.items())
        if self.estimate.point is None:
            return f"undefined ({reasons or self.estimate.note})"
        return f"{self.estimate}" + (f"; undefined: {reasons}" if reasons else "")


def summarise_metrics(per_method: Mapping[str, Sequence[Metric] | Mapping[Any, Metric]],
                      statistic: Statistic = "iqm", **kwargs: Any) -> dict[str, MetricSummary]:
    """Aggregate per-seed metrics per method, keeping every method and every reason.

    Seeds whose metric is undefined are left out of the aggregate and counted by reason, so a
    method undefined on every seed still has a row reading ``undefined (reason)``; nothing is
    ``nan`` and nothing disappears.

    Args:
        per_method: method → per-seed :class:`Metric` values (a sequence, or seed → Metric).
        statistic: ``"iqm"`` or ``"mean"`` over the defined seeds (see :func:`aggregate`).
        **kwargs: ``reps``, ``confidence``, ``seed``, ``min_seeds`` for :func:`aggregate`.

    Returns:
        method → :class:`MetricSummary`, same keys and order as ``per_method``.
    """
    out: dict[str, MetricSummary] = {}
    for name, ms in per_method.items():
        metrics = list(ms.values()) if isinstance(ms, Mapping) else list(ms)
        values = [m.value for m in metrics if m.value is not None]
        undefined = Counter(m.why for m in metrics if m.why is not None)
        est = aggregate(np.array(values, dtype=float), statistic, **kwargs)
        out[name] = MetricSummary(est, len(metrics), {str(k): v for k, v in undefined.items()})
    return out
