"""How a :class:`~policyshare.comparison.compare.Comparison` reads in tables: cells, captions,
definitions.

A cell never hides what stands behind it: ``x [lo, hi]`` is a confidence interval (its kind and
size are in the caption); ``x (range lo to hi, n seeds)`` the smallest and largest of too few seeds
for one; ``x (one seed)``; and the seeds where the metric is undefined are named with the reason
(``undefined: scratch not clearly above random on seeds 0, 2``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from policyshare.stats import Estimate, MetricSummary

if TYPE_CHECKING:
    from policyshare.comparison.compare import Comparison, MethodResult
    from policyshare.comparison.measures import MetricInfo
    from policyshare.stats import SeedKey


def format_estimate(est: Estimate, spec: str = ".3g") -> str:
    """``"x [lo, hi]"`` (confidence interval), ``"x (range lo to hi, n seeds)"``, ``"x (one seed)"``,
    or ``"—"`` (no value)."""
    if est.point is None:
        return "—"
    x = format(est.point, spec)
    if est.kind == "confidence interval":
        return f"{x} [{format(est.low, spec)}, {format(est.high, spec)}]"
    if est.kind == "range":
        return f"{x} (range {format(est.low, spec)} to {format(est.high, spec)}, {_runs(est)})"
    return f"{x} (one seed)" if est.n <= 1 else f"{x} ({_runs(est)}, no interval)"


def _runs(est: Estimate) -> str:
    """``"3 seeds"``, or the note's ``"2 upstream × 3 target seeds"``."""
    head = est.note.split(":")[0]
    return head if "upstream" in head else f"{est.n} seeds"


def format_summary(summary: MetricSummary, spec: str = ".3g") -> str:
    """A metric's aggregate cell, with the undefined seeds named by reason."""
    reasons = summary.reasons()
    if summary.estimate.point is None:
        return f"undefined: {reasons or summary.estimate.note}"
    cell = format_estimate(summary.estimate, spec)
    return f"{cell}; undefined: {reasons}" if reasons else cell


def format_poi(est: Estimate) -> str:
    """P(improvement) as a cell: ``"0.81 [0.62, 0.95]"``, ``"0.75 (3 seeds, no interval)"`` or why none."""
    if est.point is None:
        return f"— ({est.note})"
    if est.is_confidence_interval:
        return f"{est.point:.2f} [{est.low:.2f}, {est.high:.2f}]"
    return f"{est.point:.2f} ({'one seed' if est.n <= 1 else _runs(est)}, no interval)"


def seed_cells(r: MethodResult, key: SeedKey, metrics: Sequence[str], infos: dict[str, MetricInfo]) -> list[str]:
    """One run's metric values (``undefined (why)`` where undefined)."""
    out = []
    for k in metrics:
        m = r.per_seed[k][key]
        out.append(format(m.value, infos[k].spec) if m.value is not None else f"undefined ({m.why})")
    return out


def caption(c: Comparison) -> str:
    """One paragraph: which curve, the budget, the references, what the cells and intervals are."""
    s = c.settings
    stat = "interquartile mean (IQM)" if s["statistic"] == "iqm" else "mean"
    expert = "none" if c.expert is None else f"{c.expert:.3g}"
    refs = f" ({c.references})" if c.references else ""
    return (f"Curve: **{c.curve}**. Budget T = {c.budget:,} env steps; random return {c.random:.3g}, expert "
            f"return {expert}{refs}. Each cell is the {stat} over seeds: `x [lo, hi]` a "
            f"{s['confidence']:.0%} bootstrap confidence interval (rliable's stratified bootstrap; for runs "
            f"keyed by upstream seed, a hierarchical bootstrap over upstream then target seeds); "
            f"`x (range lo to hi, …)` the smallest and largest of fewer than {s['min_seeds']} seeds (or "
            f"{s['min_upstream_seeds']} upstream seeds) — a range, not a confidence interval; seeds where a "
            f"metric is undefined are named with the reason and left out of its aggregate. "
            f"P(> {c.baseline}): rliable's probability of improvement of the normalised area over "
            f"{c.baseline}'s runs.")


def definitions(c: Comparison, metrics: Sequence[str]) -> list[str]:
    """One Markdown bullet per metric: its definition and source."""
    return [f"- **{c.metrics[k].label}**: {c.metrics[k].definition} ({c.metrics[k].source})." for k in metrics]


def format_interval_record(d: Mapping[str, Any], spec: str = ".1f") -> str:
    """An aggregate read back from JSON as a cell.

    A record with a ``kind`` (:meth:`~policyshare.stats.Estimate.as_dict`, with ``point`` or
    ``iqm``) is formatted as :func:`format_estimate` does, so a range never reads as a confidence
    interval; an older record (``iqm``, ``low``, ``high`` only) as
    :func:`policyshare.metrics.format_interval` does.
    """
    from policyshare.metrics import format_interval

    point = d.get("point", d.get("iqm"))
    if "kind" not in d:
        return format_interval(point, d.get("low"), d.get("high"), spec=spec)
    est = Estimate(point, d.get("low"), d.get("high"), d["kind"], int(d.get("n", 0)), str(d.get("note", "")),
                   float(d.get("confidence", 0.95)))
    cell = format_estimate(est, spec)
    seeds = d.get("undefined_seeds") or {}
    reasons = "; ".join(f"{why} on seed{'s' if len(s) > 1 else ''} {', '.join(s)}" for why, s in seeds.items())
    if point is None:
        return f"undefined: {reasons}" if reasons else "—"
    return f"{cell}; undefined: {reasons}" if reasons else cell
