"""Aggregates over seeds, their intervals, and verdicts on claims — honest about small samples.

Scores are arrays of shape ``(runs, tasks)`` (a 1-D array is one task over runs), a run being
one seed; hierarchical scores are ``(upstream seeds, target seeds[, tasks])``, or one group of
target-seed scores per upstream seed.

* :mod:`~policyshare.stats.estimates`: :func:`aggregate` — IQM or mean with a stratified
  bootstrap interval (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice",
  via ``rliable``); :func:`probability_of_improvement` — P(X > Y) with its interval (Agarwal et
  al. 2021, Sec. 4, via ``rliable``); :func:`performance_profiles` — run-score distributions,
  fraction of runs above τ (Agarwal et al. 2021, Sec. 4, via ``rliable``).
* :mod:`~policyshare.stats.hierarchical`: :func:`hierarchical_bootstrap`,
  :func:`hierarchical_difference`, :func:`grouped_bootstrap`, :func:`grouped_difference`,
  :func:`grouped_improvement` —
  resample upstream seeds (experts, students), then target seeds within each (Davison & Hinkley
  1997, Sec. 3.8; Saravanan et al. 2020).
* :mod:`~policyshare.stats.verdicts`: :func:`verdict` — "A beats B": supported, refuted, or
  undecided at this budget, with a rough number of seeds that would decide it
  (:func:`seeds_to_decide`; Colas, Sigaud & Oudeyer 2018).
* :mod:`~policyshare.stats.summary`: :func:`summarise_metrics` — per-seed
  :class:`~policyshare.transfer_metrics.Metric` values per method into one row each, undefined
  seeds named by reason, no method dropped.

Small samples are reported as what they are: one seed has no interval ("one seed: no
interval"); fewer than ``min_seeds`` (default :data:`MIN_SEEDS`) seeds give the *range* of the
seeds, labelled as a range, not a confidence interval, and :func:`verdict` gives no verdict on it.
"""

from __future__ import annotations

from policyshare.stats.estimates import (
    MIN_SEEDS,
    Estimate,
    Kind,
    Profile,
    Statistic,
    aggregate,
    performance_profiles,
    probability_of_improvement,
)
from policyshare.stats.hierarchical import (
    MIN_UPSTREAM_SEEDS,
    grouped_bootstrap,
    grouped_difference,
    grouped_improvement,
    hierarchical_bootstrap,
    hierarchical_difference,
)
from policyshare.stats.summary import MetricSummary, SeedKey, seed_label, summarise_metrics
from policyshare.stats.verdicts import Outcome, Verdict, seeds_to_decide, verdict

__all__ = ["MIN_SEEDS", "MIN_UPSTREAM_SEEDS", "Estimate", "Kind", "MetricSummary", "Outcome", "Profile", "SeedKey",
           "Statistic", "Verdict", "aggregate", "grouped_bootstrap", "grouped_difference",
           "grouped_improvement", "hierarchical_bootstrap",
           "hierarchical_difference", "performance_profiles", "probability_of_improvement", "seed_label",
           "seeds_to_decide", "summarise_metrics", "verdict"]
