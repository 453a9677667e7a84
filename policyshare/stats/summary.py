"""Per-seed metrics of every method into one row each: undefined seeds named by reason, no method dropped.

A seed is a target seed (``int``) or, for a method whose runs hang off upstream runs (experts,
students), an ``(upstream seed, target seed)`` pair; such a method's aggregate is the
hierarchical bootstrap of :func:`~policyshare.stats.hierarchical.grouped_bootstrap`, any other's
rliable's stratified bootstrap (:func:`~policyshare.stats.estimates.aggregate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policyshare.stats.estimates import MIN_SEEDS, Estimate, Statistic, aggregate
from policyshare.stats.hierarchical import MIN_UPSTREAM_SEEDS, grouped_bootstrap
from policyshare.transfer_metrics import Metric

SeedKey = int | tuple[int, int]
"""A run's seed: the target seed, or ``(upstream seed, target seed)``."""


def seed_label(key: SeedKey) -> str:
    """How a seed is written in tables and JSON keys: ``"3"``, or ``"u1-s3"`` for upstream 1, target 3."""
    if isinstance(key, tuple):
        return f"u{key[0]}-s{key[1]}"
    return str(key)


def _seed_list(labels: Sequence[str], limit: int = 8) -> str:
    word = "seed" if len(labels) == 1 else "seeds"
    if len(labels) <= limit:
        return f"{word} {', '.join(labels)}"
    return f"{len(labels)} seeds ({', '.join(labels[:limit])}, …)"


@dataclass(frozen=True)
class MetricSummary:
    """One method's row: the aggregate over its defined seeds and what was undefined, and why.

    Attributes:
        estimate: the aggregate over seeds with a value (``point`` ``None`` when none has one).
        n_total: seeds given.
        undefined: short reason (:attr:`Metric.why`) → number of seeds undefined for it.
        undefined_seeds: short reason → the seeds (:func:`seed_label`) undefined for it.
    """

    estimate: Estimate
    n_total: int
    undefined: dict[str, int]
    undefined_seeds: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_defined(self) -> int:
        """Seeds with a value."""
        return self.n_total - sum(self.undefined.values())

    def reasons(self) -> str:
        """``"scratch not clearly above random on seeds 0, 2; …"`` (empty when all are defined)."""
        parts = []
        for why, k in self.undefined.items():
            seeds = self.undefined_seeds.get(why)
            parts.append(f"{why} on {_seed_list(seeds)}" if seeds else f"{why} ({k} of {self.n_total} seeds)")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (no ``nan``): the estimate's, ``n_total``, ``n_defined``, ``undefined``
        (reason → count) and ``undefined_seeds`` (reason → seeds)."""
        return {**self.estimate.as_dict(), "n_total": self.n_total, "n_defined": self.n_defined,
                "undefined": dict(self.undefined),
                "undefined_seeds": {k: list(v) for k, v in self.undefined_seeds.items()}}

    def __str__(self) -> str:
        reasons = self.reasons()
        if self.estimate.point is None:
            return f"undefined: {reasons or self.estimate.note}"
        return f"{self.estimate}" + (f"; undefined: {reasons}" if reasons else "")


def summarise(metrics: Mapping[SeedKey, Metric], statistic: Statistic = "iqm", *, reps: int = 2000,
              confidence: float = 0.95, seed: int = 0, min_seeds: int = MIN_SEEDS,
              min_upstream_seeds: int = MIN_UPSTREAM_SEEDS) -> MetricSummary:
    """One method's per-seed metrics into its row (see :func:`summarise_metrics`).

    Args:
        metrics: seed → :class:`Metric`; with ``(upstream, target)`` keys the defined values are
            grouped by upstream seed and bootstrapped hierarchically.
        statistic: ``"iqm"`` or ``"mean"``.
        reps, confidence, seed: bootstrap replications, interval size, bootstrap seed.
        min_seeds: runs below which the interval is a range of the seeds.
        min_upstream_seeds: upstream seeds below which a hierarchical interval is a range.
    """
    values = {k: m.value for k, m in metrics.items() if m.value is not None}
    undefined: dict[str, list[str]] = {}
    for k, m in metrics.items():
        if m.why is not None:
            undefined.setdefault(m.why, []).append(seed_label(k))
    if any(isinstance(k, tuple) for k in metrics):
        groups: dict[Any, list[float]] = {}
        for k, v in values.items():
            groups.setdefault(k[0] if isinstance(k, tuple) else k, []).append(float(v))
        est = grouped_bootstrap(list(groups.values()), statistic, reps=reps, confidence=confidence, seed=seed,
                                min_upstream_seeds=min_upstream_seeds, min_seeds=min_seeds)
    else:
        est = aggregate(np.array(list(values.values()), dtype=float), statistic, reps=reps, confidence=confidence,
                        seed=seed, min_seeds=min_seeds)
    return MetricSummary(est, len(metrics), {why: len(s) for why, s in undefined.items()}, undefined)


def summarise_metrics(per_method: Mapping[str, Sequence[Metric] | Mapping[Any, Metric]],
                      statistic: Statistic = "iqm", **kwargs: Any) -> dict[str, MetricSummary]:
    """Aggregate per-seed metrics per method, keeping every method and every reason.

    Seeds whose metric is undefined are left out of the aggregate and named by reason, so a
    method undefined on every seed still has a row reading ``undefined: <reason> on seeds 0, 2``;
    nothing is ``nan`` and nothing disappears.

    Args:
        per_method: method → per-seed :class:`Metric` values (a sequence, its positions taken as
            the seeds, or seed → Metric with :data:`SeedKey` keys).
        statistic: ``"iqm"`` or ``"mean"`` over the defined seeds (see :func:`aggregate`).
        **kwargs: ``reps``, ``confidence``, ``seed``, ``min_seeds``, ``min_upstream_seeds`` (see
            :func:`summarise`).

    Returns:
        method → :class:`MetricSummary`, same keys and order as ``per_method``.
    """
    return {name: summarise(ms if isinstance(ms, Mapping) else dict(enumerate(ms)), statistic, **kwargs)
            for name, ms in per_method.items()}
