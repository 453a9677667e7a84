"""Verdicts on claims "A beats B": supported, refuted, or undecided at this budget.

* :func:`verdict` — from the confidence interval of the difference and of P(A > B) (Agarwal et
  al. 2021), with the seeds and env steps behind it;
* :func:`seeds_to_decide` — a rough number of seeds that would decide it (Colas, Sigaud &
  Oudeyer 2018).

Too few seeds for a confidence interval (a range of the seeds, or one seed) give no verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from policyshare.stats.estimates import (
    MIN_SEEDS,
    Estimate,
    _as_runs_tasks,
    _no_values,
    _rliable_interval,
    aggregate,
    probability_of_improvement,
)

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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (no ``nan``), with the sentence of :meth:`__str__` as ``"text"``."""
        return {"claim": self.claim, "outcome": self.outcome, "difference": self.difference.as_dict(),
                "poi": self.poi.as_dict(), "seeds": list(self.seeds), "env_steps": self.env_steps,
                "seeds_needed": self.seeds_needed, "why": self.why, "text": str(self)}

    def __str__(self) -> str:
        s = (f"{self.claim}: {self.outcome} ({self.why}; {self.seeds[0]} and {self.seeds[1]} seeds, "
             f"{self.env_steps:,} env steps)")
        if self.seeds_needed is not None:
            s += f"; about {self.seeds_needed} seeds per method would decide it"
        elif self.outcome not in ("supported", "refuted"):
            s += (f"; at the observed difference not even {MAX_SEEDS_TO_DECIDE:,} seeds per method would decide it "
                  "(a longer budget might)")
        return s


#: Above this many seeds per method, :func:`seeds_to_decide` says no budget decides the claim.
MAX_SEEDS_TO_DECIDE = 10_000


def seeds_to_decide(effect: float, sd: float, *, paired: bool, confidence: float = 0.95,
                    power: float = 0.8) -> int | None:
    """Rough seeds per method to detect ``effect`` at this spread (normal approximation).

    Paired runs (differences ``d`` of the same seeds): ``n ≈ ((z_{α/2} + z_β) · sd / effect)²``
    with ``sd`` the standard deviation of ``d``. Independent groups: twice that per group, with
    ``sd`` the pooled standard deviation. ``α = 1 − confidence``, ``1 − β = power`` (Colas,
    Sigaud & Oudeyer 2018, "How many random seeds? Statistical power analysis in deep RL
    experiments"). A rough guide only: it takes the observed effect at face value.

    Returns:
        ``ceil(n)`` (at least 2), or ``None`` when the observed effect is 0 or so small next to
        the spread that more than :data:`MAX_SEEDS_TO_DECIDE` seeds would be needed (no seed
        budget decides it; the effect is indistinguishable from none).
    """
    from scipy.stats import norm

    if effect == 0 or not np.isfinite(effect) or not np.isfinite(sd):
        return None
    z = norm.ppf(1 - (1 - confidence) / 2) + norm.ppf(power)
    n = (z * sd / effect) ** 2 * (1 if paired else 2)
    return max(2, math.ceil(n)) if n <= MAX_SEEDS_TO_DECIDE else None


def verdict(scores_a: ArrayLike, scores_b: ArrayLike, *, env_steps: int, claim: str = "A beats B",
            paired: bool = True, difference: Estimate | None = None, poi: Estimate | None = None,
            seeds: tuple[int, int] | None = None, reps: int = 2000, confidence: float = 0.95, seed: int = 0,
            min_seeds: int = MIN_SEEDS, power: float = 0.8) -> Verdict:
    """Judge "A beats B" from per-seed scores at one budget.

    * **supported**: the difference's confidence interval lies entirely above 0 *and* the lower
      bound of P(A > B)'s interval is above 0.5;
    * **refuted**: the difference's interval lies entirely below 0 *and* the upper bound of
      P(A > B)'s interval is below 0.5;
    * **undecided at this budget**: anything else, with :func:`seeds_to_decide`'s rough number of
      seeds per method (at least ``min_seeds``) from the observed mean difference and its
      spread — the unpaired number (pooled sd of the runs), or when paired the larger of that
      and the paired one (sd of the per-seed differences), since P(A > B) ranks runs as
      independent samples;
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
        poi: an estimate of P(A > B) to use instead (e.g.
            :func:`~policyshare.stats.hierarchical.grouped_improvement`).
        seeds: the runs of A and of B to report, when the score arrays repeat runs (B's target
            seeds paired with each of A's upstream seeds); default their lengths.
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
    if poi is None:
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
    if needed is not None:
        needed = max(needed, min_seeds)  # no verdict at all below min_seeds
    return Verdict(claim, outcome, diff, poi, seeds or (a.shape[0], b.shape[0]), int(env_steps), needed, why)


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


