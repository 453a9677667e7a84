"""The comparison API: learning curves per method and seed → :class:`Comparison`.

:func:`compare_methods` is the one entry point that ``policyshare transfer``, the progressive
report and the experiment report use. Per run it computes every metric of
:mod:`policyshare.comparison.measures` (a value, or undefined with the reason); per method the
aggregate of each metric over seeds (IQM; a confidence interval only with enough seeds, else a
range labelled as such), the probability of improvement over the baseline, performance-profile
data; and, on request, a verdict on a claim "A beats B".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policyshare.comparison.measures import NORMALISED_AREA, MetricInfo, metric_infos, per_seed_metrics
from policyshare.comparison.runs import Curve
from policyshare.comparison.tables import caption, definitions, format_poi, format_summary, seed_cells
from policyshare.stats import (
    MIN_SEEDS,
    MIN_UPSTREAM_SEEDS,
    Estimate,
    MetricSummary,
    Profile,
    SeedKey,
    Statistic,
    Verdict,
    grouped_bootstrap,
    grouped_difference,
    grouped_improvement,
    performance_profiles,
    probability_of_improvement,
    seed_label,
    verdict,
)
from policyshare.transfer_metrics import Metric


@dataclass
class MethodResult:
    """One method's figures in a :class:`Comparison`.

    Attributes:
        name: the method.
        per_seed: metric key → seed → :class:`~policyshare.transfer_metrics.Metric`.
        summary: metric key → aggregate over the seeds with a value, and the undefined ones by reason.
        poi: P(method > baseline) on the normalised area, or ``None`` for the baseline itself.
        hierarchical: its seeds are ``(upstream seed, target seed)``.
    """

    name: str
    per_seed: dict[str, dict[SeedKey, Metric]]
    summary: dict[str, MetricSummary]
    poi: Estimate | None
    hierarchical: bool

    def seeds(self) -> list[SeedKey]:
        """Its seeds, in the order given."""
        return list(next(iter(self.per_seed.values()), {}))

    def scores(self, metric: str) -> dict[SeedKey, float]:
        """seed → value of ``metric`` on the seeds where it is defined."""
        return {k: m.value for k, m in self.per_seed[metric].items() if m.value is not None}


def _groups(scores: Mapping[SeedKey, float]) -> list[list[float]]:
    """Scores grouped by upstream seed; a seed without one is a group of its own."""
    out: dict[Any, list[float]] = {}
    for k, v in scores.items():
        out.setdefault(k[0] if isinstance(k, tuple) else ("flat", k), []).append(v)
    return list(out.values())


def _target(key: SeedKey) -> int:
    return key[1] if isinstance(key, tuple) else key


@dataclass
class Comparison:
    """What :func:`compare_methods` found. Build it with :func:`compare_methods`.

    Attributes:
        curve: which learning curve the figures are of (``"greedy evaluation"`` or
            ``"training episodes"``).
        budget: ``T``, the env steps the curves are read over.
        random, expert: the target's random and expert mean returns (``expert`` ``None``: none).
        references: where ``random`` and ``expert`` come from (one line).
        baseline: the method every relative metric is against (``"scratch"``).
        fractions: fractions of ``T`` of the normalised returns.
        metrics: metric key → :class:`~policyshare.comparison.measures.MetricInfo`, in table order.
        methods: method → :class:`MethodResult`, in the order given (every method, always).
        settings: ``statistic``, ``reps``, ``confidence``, ``seed``, ``min_seeds``,
            ``min_upstream_seeds``, ``margin``.
    """

    curve: str
    budget: int
    random: float
    expert: float | None
    references: str
    baseline: str
    fractions: tuple[float, ...]
    metrics: dict[str, MetricInfo]
    methods: dict[str, MethodResult]
    settings: dict[str, Any]
    _profiles: dict[Any, dict[str, Profile]] = field(default_factory=dict, repr=False)

    # -- tables --------------------------------------------------------------------------------
    def table_keys(self, metrics: Sequence[str] | None = None) -> list[str]:
        """The metrics of the summary table: ``metrics``, or all but the normalised area."""
        return list(metrics) if metrics is not None else [k for k in self.metrics if k != NORMALISED_AREA]

    def table_head(self, metrics: Sequence[str] | None = None) -> list[str]:
        """Column titles of :meth:`table_rows`."""
        return ["method", *(self.metrics[k].label for k in self.table_keys(metrics)),
                f"P(> {self.baseline}), normalised area"]

    def table_rows(self, metrics: Sequence[str] | None = None) -> list[list[str]]:
        """One row per method (every method, undefined seeds named with their reason).

        The baseline's relative metrics (against itself) read ``— (baseline)``. Each metric cell
        is the aggregate over seeds (:func:`~policyshare.comparison.tables.format_summary`:
        ``x [lo, hi]`` a confidence interval, ``x (range lo to hi, n seeds)`` a range,
        ``undefined: …``); the last is P(method > baseline).
        """
        keys = self.table_keys(metrics)
        return [[m, *(self._cell(r, k) for k in keys), "baseline" if r.poi is None else format_poi(r.poi)]
                for m, r in self.methods.items()]

    def _cell(self, r: MethodResult, key: str) -> str:
        if r.name == self.baseline and self.metrics[key].relative:
            return "— (baseline)"  # against itself: 100 %, 0, 0 by construction
        return format_summary(r.summary[key], self.metrics[key].spec)

    def markdown(self, metrics: Sequence[str] | None = None, *, definitions_too: bool = True) -> list[str]:
        """The caption (curve, budget, references, what the intervals are), the table and, with
        ``definitions_too``, each metric's definition and source; one line per list entry."""
        from policyshare.comparison.figures import markdown_table

        out = [caption(self), "", *markdown_table(self.table_head(metrics), self.table_rows(metrics),
                                                  align=["---"] * (len(self.table_keys(metrics)) + 2))]
        if definitions_too:
            out += ["", *definitions(self, self.table_keys(metrics))]
        return out

    def seed_table(self, metrics: Sequence[str] | None = None) -> tuple[list[str], list[list[str]]]:
        """One row per (method, seed): each metric's value or ``undefined (why)``; ``(head, rows)``."""
        keys = self.table_keys(metrics)
        rows = [[m, seed_label(k), *seed_cells(r, k, keys, self.metrics)]
                for m, r in self.methods.items() for k in r.seeds()]
        return ["method", "seed", *(self.metrics[k].label for k in keys)], rows

    def record(self, method: str, metric: str) -> dict[str, Any]:
        """One method's metric as a JSON record: ``curve``, ``per_seed`` (seed → value or
        ``null``), ``per_seed_why`` (seed → reason, undefined seeds only), ``iqm`` (the point,
        whatever the statistic), and the aggregate's fields
        (:meth:`~policyshare.stats.MetricSummary.as_dict`: ``point``, ``low``, ``high``, ``kind``,
        ``note``, ``n_defined``, ``undefined_seeds`` …)."""
        r = self.methods[method]
        by_seed = r.per_seed[metric]
        return {"curve": self.curve,
                "per_seed": {seed_label(k): m.value for k, m in by_seed.items()},
                "per_seed_why": {seed_label(k): m.reason for k, m in by_seed.items() if m.reason},
                "iqm": r.summary[metric].estimate.point, **r.summary[metric].as_dict()}

    # -- profiles and verdicts -----------------------------------------------------------------
    def profiles(self, metric: str = NORMALISED_AREA, taus: Sequence[float] | None = None) -> dict[str, Profile]:
        """Performance profiles of a per-run metric (rliable; Agarwal et al. 2021, Sec. 4).

        Args:
            metric: the per-run score (default the normalised area, dimensionless).
            taus: thresholds in the score's units; default 31 from the lowest to the highest
                score of any method.

        Returns:
            method → :class:`~policyshare.stats.Profile`, methods without a defined score left
            out (their rows in :meth:`table_rows` say why). Bands resample runs as independent
            (rliable), also for hierarchical seeds.
        """
        scores = {m: np.array(list(r.scores(metric).values()), float) for m, r in self.methods.items()}
        scores = {m: s for m, s in scores.items() if s.size}
        if not scores:
            return {}
        if taus is None:
            lo, hi = min(float(s.min()) for s in scores.values()), max(float(s.max()) for s in scores.values())
            taus = list(np.linspace(lo - 0.05 * (hi - lo or 1), hi + 0.05 * (hi - lo or 1), 31))
        key = (metric, tuple(float(t) for t in taus))
        if key not in self._profiles:
            s = self.settings
            self._profiles[key] = performance_profiles(scores, np.asarray(taus, float), reps=s["reps"],
                                                       confidence=s["confidence"], seed=s["seed"])
        return self._profiles[key]

    def verdict(self, a: str, b: str | None = None, claim: str | None = None,
                metric: str = NORMALISED_AREA) -> Verdict:
        """Judge "``a`` beats ``b``" on a per-run metric (:func:`policyshare.stats.verdict`).

        Runs are paired by seed: the same key, or a hierarchical method's ``(upstream, target)``
        run with the other's run on that target seed; then the difference and P(a > b) are
        bootstrapped hierarchically (upstream seeds, then target seeds;
        :func:`~policyshare.stats.grouped_bootstrap`, :func:`~policyshare.stats.grouped_improvement`).
        Two hierarchical methods (upstream seeds of different things) are compared unpaired.
        Only seeds where the metric is defined count. Too few seeds for a confidence interval:
        ``"no verdict"``.

        Args:
            a, b: methods (``b`` defaults to the baseline).
            claim: the claim's wording; default ``"<a> beats <b> (<metric>, <curve>)"``.
            metric: a metric key (default the normalised area, whose paired difference is the
                normalised area gain).

        Returns:
            The :class:`~policyshare.stats.Verdict`, with the runs and env steps behind it.

        Raises:
            KeyError: an unknown method or metric.
        """
        b = b or self.baseline
        ra, rb = self.methods[a], self.methods[b]
        claim = claim or f"{a} beats {b} ({self.metrics[metric].label}, {self.curve})"
        sa, sb = ra.scores(metric), rb.scores(metric)
        return _judge(sa, sb, ra.hierarchical, rb.hierarchical, claim=claim, env_steps=self.budget,
                      settings=self.settings)

    # -- JSON ----------------------------------------------------------------------------------
    def to_json(self, profiles: bool = True) -> dict[str, Any]:
        """Everything as JSON-ready data (no ``nan``; undefined values are ``null`` with reasons).

        Keys: ``curve``, ``budget_env_steps``, ``random_return``, ``expert_return``,
        ``references``, ``baseline``, ``fractions``, ``settings``, ``metrics`` (key → label,
        definition, source, relative), ``methods`` (method → ``seeds``, ``per_seed`` (metric →
        seed → value or ``null``), ``undefined`` (metric → seed → ``"why: detail"``),
        ``aggregate`` (metric → :meth:`~policyshare.stats.MetricSummary.as_dict`),
        ``poi_over_baseline``), and with ``profiles`` the performance profiles of the
        normalised area (``taus``, method → ``fraction``, ``low``, ``high``).
        """
        methods = {}
        for m, r in self.methods.items():
            methods[m] = {
                "seeds": [seed_label(k) for k in r.seeds()], "hierarchical": r.hierarchical,
                "per_seed": {k: {seed_label(s): v.value for s, v in by.items()} for k, by in r.per_seed.items()},
                "undefined": {k: {seed_label(s): v.reason for s, v in by.items() if v.reason}
                              for k, by in r.per_seed.items() if any(not v.defined for v in by.values())},
                "aggregate": {k: v.as_dict() for k, v in r.summary.items()},
                "poi_over_baseline": None if r.poi is None else r.poi.as_dict(),
            }
        out: dict[str, Any] = {
            "curve": self.curve, "budget_env_steps": self.budget, "random_return": self.random,
            "expert_return": self.expert, "references": self.references, "baseline": self.baseline,
            "fractions": list(self.fractions), "settings": dict(self.settings),
            "metrics": {k: {"label": i.label, "definition": i.definition, "source": i.source, "relative": i.relative}
                        for k, i in self.metrics.items()},
            "methods": methods,
        }
        if profiles:
            prof = self.profiles()
            taus = next(iter(prof.values())).taus.tolist() if prof else []
            out["profiles"] = {"score": NORMALISED_AREA, "taus": taus,
                               "methods": {m: {"fraction": p.fraction.tolist(), "low": p.low.tolist(),
                                               "high": p.high.tolist()} for m, p in prof.items()}}
        return out


def _judge(sa: Mapping[SeedKey, float], sb: Mapping[SeedKey, float], hier_a: bool, hier_b: bool, *, claim: str,
           env_steps: int, settings: Mapping[str, Any]) -> Verdict:
    """The verdict on "A beats B" from per-seed scores (see :meth:`Comparison.verdict`)."""
    kw = {k: settings[k] for k in ("reps", "confidence", "seed")}
    mins = {"min_seeds": settings["min_seeds"], "min_upstream_seeds": settings["min_upstream_seeds"]}
    if hier_a and hier_b:  # upstream seeds of different things: unpaired
        poi = grouped_improvement(_groups(sa), _groups(sb), **kw, **mins)
        diff = grouped_difference(_groups(sa), _groups(sb), **kw, **mins)
        return verdict(list(sa.values()), list(sb.values()), env_steps=env_steps, claim=claim, paired=False,
                       difference=diff, poi=poi, min_seeds=settings["min_seeds"], **kw)
    if not (hier_a or hier_b):
        common = [k for k in sa if k in sb]
        return verdict([sa[k] for k in common], [sb[k] for k in common], env_steps=env_steps, claim=claim,
                       paired=True, min_seeds=settings["min_seeds"], **kw)
    # One side hangs off upstream seeds: pair each of its runs with the other's run on its target seed.
    hier, flat = (sa, sb) if hier_a else (sb, sa)
    pairs = [(k, _target(k)) for k in hier if _target(k) in flat]
    sign = 1.0 if hier_a else -1.0
    diffs: dict[SeedKey, float] = {k: sign * (hier[k] - flat[t]) for k, t in pairs}
    used = sorted({t for _, t in pairs})
    flat_groups = [[flat[t]] for t in used]
    hier_groups = _groups({k: hier[k] for k, _ in pairs})
    poi = grouped_improvement(hier_groups if hier_a else flat_groups, flat_groups if hier_a else hier_groups,
                              **kw, **mins)
    diff = grouped_bootstrap(_groups(diffs), "mean", **kw, **mins)
    a_vals = [sa[k] if hier_a else sa[t] for k, t in pairs]
    b_vals = [sb[t] if hier_a else sb[k] for k, t in pairs]
    seeds = (len(pairs), len(used)) if hier_a else (len(used), len(pairs))
    return verdict(a_vals, b_vals, env_steps=env_steps, claim=claim, paired=True, difference=diff, poi=poi,
                   seeds=seeds, min_seeds=settings["min_seeds"], **kw)


def compare_methods(curves: Mapping[str, Mapping[Any, Curve | str]], *, random: float, expert: float | None,
                    budget: float | None = None, baseline: str = "scratch",
                    fractions: Sequence[float] = (0.1, 0.5, 1.0), curve: str = "greedy evaluation",
                    references: str = "", margin: float = 0.1, statistic: Statistic = "iqm", reps: int = 2000,
                    confidence: float = 0.95, seed: int = 0, min_seeds: int = MIN_SEEDS,
                    min_upstream_seeds: int = MIN_UPSTREAM_SEEDS) -> Comparison:
    """Compare methods' learning curves on one target task against a baseline (from scratch).

    Args:
        curves: method → seed → curve. A seed is a target seed (``int``) or, for a method whose
            runs hang off upstream runs (experts, students), ``(upstream seed, target seed)``.
            A curve is ``(env steps, mean return)``, two sequences of length ``n`` starting at
            env step 0 (a step-0 evaluation), env steps increasing — or a short reason why the
            run has none (then every metric of that run is undefined with it). Every curve of a
            comparison is of one kind (``curve``).
        random: the target's random-policy mean return (same units as the curves: return per
            episode), e.g. :meth:`~policyshare.comparison.runs.Runs.random_return`.
        expert: the target's expert mean return, e.g.
            :func:`~policyshare.comparison.runs.zoo_expert_return`; ``None``: every metric is
            undefined ("no expert return for the target").
        budget: ``T`` in env steps; default the smallest last env step of any curve.
        baseline: the method relative metrics are against, on the same target seed; it must be
            among ``curves``.
        fractions: fractions of ``T`` in ``[0, 1]`` at which to read the normalised return.
        curve: which curve these are, said in every caption: ``"greedy evaluation"`` or
            ``"training episodes"`` (:data:`~policyshare.comparison.runs.CURVE_LABELS`).
        references: where ``random`` and ``expert`` come from (shown in captions).
        margin: transfer % needs scratch's mean return above ``random + margin · (expert − random)``.
        statistic: ``"iqm"`` (interquartile mean, rliable) or ``"mean"`` over seeds.
        reps, confidence, seed: bootstrap replications, interval size, bootstrap seed.
        min_seeds: runs below which an interval is the range of the seeds, labelled a range, and
            no verdict is given.
        min_upstream_seeds: upstream seeds below which a hierarchical interval is a range.

    Returns:
        The :class:`Comparison`: per method and seed every metric (value or reason); per method
        and metric the aggregate (rliable's stratified bootstrap, or the hierarchical bootstrap
        over upstream then target seeds for ``(upstream, target)`` seeds); P(method > baseline)
        on the normalised area; profiles and verdicts on request. Every method of ``curves`` is
        in it, whatever is undefined.

    Raises:
        KeyError: ``baseline`` is not among ``curves``.
        ValueError: a malformed curve, no curve at all, a fraction outside ``[0, 1]``.
    """
    if baseline not in curves:
        raise KeyError(f"the baseline {baseline!r} has no runs; methods: {', '.join(curves)}")
    if budget is None:
        ends = [float(c[0][-1]) for by in curves.values() for c in by.values() if not isinstance(c, str) and len(c[0])]
        if not ends:
            raise ValueError("no learning curve to compare: every run lacks one")
        budget = min(ends)
    settings = {"statistic": statistic, "reps": reps, "confidence": confidence, "seed": seed,
                "min_seeds": min_seeds, "min_upstream_seeds": min_upstream_seeds, "margin": margin}
    base = curves[baseline]
    methods: dict[str, MethodResult] = {}
    infos = metric_infos(fractions)
    for name, by_seed in curves.items():
        per_run = {k: per_seed_metrics(c, _base_curve(base, k), random=random, expert=expert,
                                       expert_note=references, budget=budget, fractions=fractions, margin=margin)
                   for k, c in by_seed.items()}
        per_seed = {key: {k: per_run[k][key] for k in by_seed} for key in infos}
        summary = {key: _summarise(v, settings) for key, v in per_seed.items()}
        methods[name] = MethodResult(name, per_seed, summary, None, any(isinstance(k, tuple) for k in by_seed))
    for name, r in methods.items():
        if name != baseline:
            r.poi = _improvement(r, methods[baseline], settings)
    return Comparison(curve, int(budget), float(random), None if expert is None else float(expert), references,
                      baseline, tuple(fractions), infos, methods, settings)


def _base_curve(base: Mapping[SeedKey, Curve | str], key: SeedKey) -> Curve | str | None:
    if key in base:
        return base[key]
    return base.get(_target(key)) if isinstance(key, tuple) else None


def _summarise(per_seed: Mapping[SeedKey, Metric], settings: Mapping[str, Any]) -> MetricSummary:
    from policyshare.stats.summary import summarise

    return summarise(per_seed, settings["statistic"], reps=settings["reps"], confidence=settings["confidence"],
                     seed=settings["seed"], min_seeds=settings["min_seeds"],
                     min_upstream_seeds=settings["min_upstream_seeds"])


def _improvement(r: MethodResult, base: MethodResult, settings: Mapping[str, Any]) -> Estimate:
    """P(r > base) on the normalised area: rliable's, hierarchical where either has upstream seeds."""
    a, b = r.scores(NORMALISED_AREA), base.scores(NORMALISED_AREA)
    kw = {k: settings[k] for k in ("reps", "confidence", "seed")}
    if not a or not b:
        missing = r.name if not a else base.name
        return Estimate(None, None, None, "none", 0, f"{missing} has no defined normalised area",
                        settings["confidence"])
    if r.hierarchical or base.hierarchical:
        return grouped_improvement(_groups(a), _groups(b), min_seeds=settings["min_seeds"],
                                   min_upstream_seeds=settings["min_upstream_seeds"], **kw)
    return probability_of_improvement(np.array(list(a.values())), np.array(list(b.values())),
                                      min_seeds=settings["min_seeds"], **kw)
