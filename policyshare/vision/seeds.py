"""Figures over seeds: per-trunk intervals, paired differences between trunks, and verdicts.

Every seed-dependent part of ``vision compare --seeds`` (trunk pretraining, guiding
classifier, diffusion prior, sampling, few-label draws) is redrawn per seed, so one seed gives
one value per trunk and metric. Over ``n`` seeds:

* ``n >= 5`` (:data:`MIN_SEEDS_FOR_CI`): the mean with a bootstrap confidence interval
  (``scipy.stats.bootstrap``, percentile method, resampling seeds; Efron & Tibshirani 1993);
* ``2 <= n < 5``: the mean and the range (min–max) — too few seeds for a bootstrap interval,
  so no verdict is drawn from it;
* ``n == 1``: the value alone ("one seed: no interval").

Differences between two trunks are **paired**: both trunks of one seed guide the same prior
with the same sampling noise, so the per-seed difference ``a_s − b_s`` removes what the seed
does to both (the prior, the sampler) and the interval is the one of the mean difference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

#: The fewest seeds for which a bootstrap interval (and a verdict) is reported.
MIN_SEEDS_FOR_CI = 5

Kind = Literal["ci", "range", "single", "empty"]
Verdict = Literal["supported", "refuted", "undecided"]


@dataclass
class SeedSummary:
    """A metric over seeds.

    Attributes:
        mean: mean over the seeds with a finite value (``nan`` when none).
        low: lower end: the interval's (``ci``), the minimum (``range``), ``nan`` otherwise.
        high: upper end, likewise.
        kind: ``ci`` (bootstrap interval, >= 5 seeds), ``range`` (2–4 seeds), ``single`` (one
            seed: no interval) or ``empty`` (no finite value).
        n: seeds with a finite value.
        confidence: the interval's size (``ci`` only).
        values: the per-seed values (``nan`` where undefined), in seed order.
    """

    mean: float
    low: float
    high: float
    kind: Kind
    n: int
    confidence: float = 0.95
    values: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """Plain data for ``metrics.json`` (``nan`` becomes ``None``)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    def format(self, pct: bool = False, points: bool = False) -> str:
        """``0.850 [0.800, 0.900]`` (CI), ``0.850 (range 0.800–0.900, 3 seeds)``, ``0.850 (one seed: no interval)``.

        Args:
            pct: show fractions as percentages (``85.0%``).
            points: show differences of fractions as signed percentage points (``+5.0 pp``).
        """
        def f(v: float) -> str:
            if points:
                return f"{100 * v:+.1f} pp"
            return f"{100 * v:.1f}%" if pct else f"{v:.3f}"

        if self.kind == "empty":
            return "—"
        if self.kind == "single":
            return f"{f(self.mean)} (one seed: no interval)"
        if self.kind == "range":
            return f"{f(self.mean)} (range {f(self.low)}–{f(self.high)}, {self.n} seeds)"
        return f"{f(self.mean)} [{f(self.low)}, {f(self.high)}]"


def summarise(values: Sequence[float], reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> SeedSummary:
    """Mean over seeds with a bootstrap interval (>= 5 seeds), a range (2–4) or nothing (1).

    Non-finite values (a metric undefined for that seed, e.g. a diversity level never reached)
    are left out of ``n``.

    Args:
        values: one value per seed.
        reps: bootstrap resamples.
        confidence: interval size.
        seed: the bootstrap's random seed (the interval is reproducible).

    Returns:
        The :class:`SeedSummary`.
    """
    raw = [float(v) for v in values]
    a = np.array([v for v in raw if math.isfinite(v)], dtype=float)
    n = len(a)
    if n == 0:
        return SeedSummary(math.nan, math.nan, math.nan, "empty", 0, confidence, raw)
    mean = float(a.mean())
    if n == 1:
        return SeedSummary(mean, math.nan, math.nan, "single", 1, confidence, raw)
    if n < MIN_SEEDS_FOR_CI:
        return SeedSummary(mean, float(a.min()), float(a.max()), "range", n, confidence, raw)
    if float(np.ptp(a)) == 0.0:  # every seed agrees: the bootstrap distribution is a point
        return SeedSummary(mean, mean, mean, "ci", n, confidence, raw)
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate resamples of few distinct values
        res = bootstrap((a,), np.mean, n_resamples=reps, confidence_level=confidence, method="percentile",
                        random_state=np.random.default_rng(seed), vectorized=True)
    return SeedSummary(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), "ci", n,
                       confidence, raw)


def paired_difference(a: Sequence[float], b: Sequence[float], reps: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> SeedSummary:
    """The paired difference ``a − b`` over seeds (same seed, same prior, same sampling noise).

    Seeds where either value is undefined (non-finite) are left out.

    Args:
        a: one value per seed of trunk A.
        b: one value per seed of trunk B, in the same seed order.
        reps: bootstrap resamples.
        confidence: interval size.
        seed: the bootstrap's random seed.

    Returns:
        :func:`summarise` of the per-seed differences.

    Raises:
        ValueError: ``a`` and ``b`` of different lengths (not paired).
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need one value per seed on both sides, got {len(a)} and {len(b)}")
    return summarise([float(x) - float(y) for x, y in zip(a, b)], reps, confidence, seed)


def verdict(differences: Mapping[str, SeedSummary]) -> tuple[Verdict, str]:
    """One verdict on a claim that every difference is positive (A better than each B).

    ``refuted`` when one interval lies below 0 (one failed part refutes an "A beats every B"
    claim, whatever the other parts show); ``supported`` when every interval lies above 0;
    ``undecided`` otherwise — and ``undecided``, unless refuted, when a difference has fewer
    than :data:`MIN_SEEDS_FOR_CI` seeds (ranges are not intervals, so they decide nothing).

    Args:
        differences: name of the comparison (``classify − autoencoder``) → paired difference.

    Returns:
        ``(verdict, reason)``: the reason names the intervals that decided it.
    """
    if not differences:
        return "undecided", "nothing to compare"
    below = [k for k, d in differences.items() if d.kind == "ci" and d.high < 0]
    if below:
        return "refuted", "interval below 0: " + "; ".join(f"{k} = {differences[k].format()}" for k in below)
    few = [k for k, d in differences.items() if d.kind != "ci"]
    if few:
        n = min(differences[k].n for k in few)
        return "undecided", (f"{', '.join(few)}: {n} seed(s) with a defined value, fewer than {MIN_SEEDS_FOR_CI}, "
                             "so a range, not an interval; no other difference refutes the claim")
    if all(d.low > 0 for d in differences.values()):
        return "supported", "every interval above 0: " + "; ".join(f"{k} = {d.format()}"
                                                                      for k, d in differences.items())
    open_ = [k for k, d in differences.items() if d.low <= 0]
    return "undecided", "interval includes 0: " + "; ".join(f"{k} = {differences[k].format()}" for k in open_)
