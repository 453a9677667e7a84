"""The metrics a comparison computes per seed, what each means, and where it comes from.

Every metric is computed per run (one seed of one method) on one learning curve over ``[0, T]``
env steps by :mod:`policyshare.transfer_metrics`; *relative* ones against the baseline's run on
the same (target) seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policyshare.transfer_metrics import Curve as _Curve
from policyshare.transfer_metrics import (
    Metric,
    forward_transfer,
    normalised_area,
    normalised_area_gain,
    normalised_return_at,
    transfer_percent,
)

TRANSFER_PERCENT = "transfer_percent"
AREA_GAIN = "normalised_area_gain"
FORWARD_TRANSFER = "forward_transfer"
NORMALISED_AREA = "normalised_area"

#: Why every metric of a run is undefined when the target has no expert return.
NO_EXPERT = "no expert return for the target"
#: Why a relative metric is undefined on a seed the baseline has no run for.
NO_BASELINE_RUN = "no baseline run on this seed"


@dataclass(frozen=True)
class MetricInfo:
    """One metric: its key in JSON, its column title, its definition and source.

    Attributes:
        key: the JSON key (``"transfer_percent"``, ``"normalised_return_at_10"`` …).
        label: the column title, with units.
        definition: one sentence: the formula and its units.
        source: the paper (and table or equation) it comes from.
        relative: computed against the baseline's run on the same seed.
        spec: the format spec of its values in tables.
    """

    key: str
    label: str
    definition: str
    source: str
    relative: bool
    spec: str = ".3g"


def return_at_key(fraction: float) -> str:
    """``0.1`` → ``"normalised_return_at_10"`` (the key of the return at 10 % of ``T``)."""
    return f"normalised_return_at_{100 * fraction:g}"


def metric_infos(fractions: Sequence[float]) -> dict[str, MetricInfo]:
    """Every metric of a comparison with the given fractions of the budget, in table order."""
    out = {
        TRANSFER_PERCENT: MetricInfo(
            TRANSFER_PERCENT, "transfer %",
            "100 · AUC / AUC_scratch of raw mean returns over [0, T] (100 = no transfer); defined only where "
            "scratch's mean return over the curve is above random + 10 % of (expert − random)",
            "Rusu et al. 2016, Progressive Neural Networks, Table 1", True, ".4g"),
        AREA_GAIN: MetricInfo(
            AREA_GAIN, "normalised area gain",
            "(AUC − AUC_scratch) / (T · (expert − random)): 0 no gain, 1 the random-to-expert gap closed from "
            "the first env step", "area measures of Taylor & Stone 2009 (JMLR 10), expert-normalised", True),
        FORWARD_TRANSFER: MetricInfo(
            FORWARD_TRANSFER, "FT",
            "(AUC − AUC_b) / (1 − AUC_b), AUC = (1/T) ∫ expert-normalised return; 0 none, 1 expert from the start",
            "Wołczyk et al. 2021, Continual World, forward transfer", True),
    }
    for f in fractions:
        key = return_at_key(f)
        out[key] = MetricInfo(
            key, f"return at {100 * f:g} % of T (norm.)",
            f"(return − random) / (expert − random) at {100 * f:g} % of T, interpolated between evaluations",
            "expert-normalised score of Parisotto et al. 2016 (Actor-Mimic)", False)
    out[NORMALISED_AREA] = MetricInfo(
        NORMALISED_AREA, "normalised area",
        "(1/T) ∫_0^T (return − random) / (expert − random): mean expert-normalised return over the budget; the "
        "score ranked by P(improvement) and the performance profiles",
        "AUC of Continual World (Wołczyk et al. 2021) on Parisotto et al. 2016's normalisation", False)
    return out


def per_seed_metrics(curve: _Curve | str, base: _Curve | str | None, *, random: float, expert: float | None,
                     expert_note: str, budget: float, fractions: Sequence[float], margin: float
                     ) -> dict[str, Metric]:
    """Every metric of one run.

    Args:
        curve: the run's ``(env steps, mean return)``, or the short reason it has none.
        base: the baseline's run on the same target seed, the reason it has no curve, or
            ``None`` (no such run).
        random, expert: the target's random and expert mean returns (``expert`` ``None``: none).
        expert_note: where the expert return would come from (the detail of :data:`NO_EXPERT`).
        budget: ``T`` in env steps.
        fractions: fractions of ``T`` for the normalised returns.
        margin: how far above random scratch must be for transfer % (a fraction of expert − random).

    Returns:
        metric key → :class:`Metric`, keys as :func:`metric_infos`.
    """
    keys = list(metric_infos(fractions))
    if expert is None:
        return {k: Metric.undefined(NO_EXPERT, expert_note) for k in keys}
    if isinstance(curve, str):
        return {k: Metric.undefined(curve) for k in keys}
    out: dict[str, Metric] = {}
    if base is None or isinstance(base, str):
        why = Metric.undefined(NO_BASELINE_RUN) if base is None else Metric.undefined(base, "the baseline's run")
        out.update({TRANSFER_PERCENT: why, AREA_GAIN: why, FORWARD_TRANSFER: why})
    else:
        out[TRANSFER_PERCENT] = transfer_percent(curve, base, random, expert, budget=budget, margin=margin)
        out[AREA_GAIN] = normalised_area_gain(curve, base, random, expert, budget=budget)
        out[FORWARD_TRANSFER] = forward_transfer(curve, base, random, expert, budget=budget)
    at = normalised_return_at(curve, random, expert, fractions, budget=budget)
    out.update({return_at_key(f): at[f] for f in fractions})
    out[NORMALISED_AREA] = normalised_area(curve, random, expert, budget=budget)
    return {k: out[k] for k in keys}
