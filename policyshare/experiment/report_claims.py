"""The report's conclusions: scores across held-out targets, and verdicts on the study's four claims.

**Across targets** (:func:`across_targets`; leave-one-game-out holds every game out in turn): per
row *family* (a row's name without its source game, e.g. ``student__pad``,
``finetune__mean-over-sources__pad``; :attr:`~policyshare.experiment.report_targets.Row.family`)
the per-run expert-normalised scores of every target on the greedy-evaluation curve — the
normalised area and the normalised return at 100 % of the budget — aggregated as rliable does
(Agarwal et al. 2021): the IQM of all runs of all targets, with a bootstrap stratified over
targets (runs resampled within each target; rliable's own when every target has the same number
of runs and none hangs off an upstream seed, else within each target upstream seeds then target
seeds, as :func:`~policyshare.stats.grouped_bootstrap` does); and P(family > scratch) on the
normalised area, the mean over targets of rliable's per-target probability of improvement, with the
same stratified resampling. Too few runs (fewer than ``min_seeds`` on a target, or fewer than
``min_upstream_seeds`` upstream seeds) give a *range*, labelled as one, and no interval.

**Claims** (:func:`claims`), each *supported*, *refuted*, *undecided at this budget* — or *no
verdict* with too few runs for a confidence interval — from the interval of the difference in
normalised area and of P(A > B) (:func:`policyshare.stats.verdict`), with the seeds and env steps
behind it and, when undecided, about how many seeds per method would decide it
(:func:`~policyshare.stats.seeds_to_decide`):

a. sharing helps transfer to a held-out game: ``student`` vs ``scratch``;
b. the student transfers better than single experts: ``student`` vs ``finetune`` (mean over
   sources) and vs ``single_teacher``;
c. progressive beats its random-column control: ``progressive`` vs ``random_column``;
d. sharing gives more per parameter: from the capacity study's section of the summary
   (:func:`capacity_claim`), "undecided: no capacity study in this experiment" without one.

With one target a claim is judged on that target's comparison (runs paired by target seed,
:meth:`~policyshare.comparison.Comparison.verdict`); with several, across targets (stratified,
unpaired: each method's runs resampled independently within each target).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from policyshare.comparison import MethodResult, return_at_key
from policyshare.comparison.measures import NORMALISED_AREA
from policyshare.experiment.report_targets import MEAN_OVER_SOURCES, TargetResult
from policyshare.methods import FINETUNE, PROGRESSIVE, RANDOM_COLUMN, SCRATCH, SINGLE_TEACHER, STUDENT
from policyshare.stats import MIN_SEEDS, MIN_UPSTREAM_SEEDS, Estimate, Verdict, aggregate, verdict

Groups = list[np.ndarray]
"""One target's runs of a row: one array of scores per upstream seed (a run without one: its own group)."""

#: The scores aggregated across targets: metric key → its words.
ACROSS_METRICS: dict[str, str] = {NORMALISED_AREA: "normalised area",
                                  return_at_key(1.0): "normalised return at 100 % of T"}

#: Outcome of claim (d) while the summary has no capacity study.
NO_CAPACITY = "undecided: no capacity study in this experiment"


def _groups(r: MethodResult, metric: str) -> Groups:
    out: dict[Any, list[float]] = {}
    for k, v in r.scores(metric).items():
        out.setdefault(k[0] if isinstance(k, tuple) else ("flat", k), []).append(float(v))
    return [np.array(v, float) for v in out.values()]


def _too_few(per_target: Sequence[Groups], min_seeds: int, min_upstream: int) -> str | None:
    for gs in per_target:
        n = sum(g.size for g in gs)
        if n < min_seeds:
            return f"{n} runs on a target, fewer than {min_seeds}"
        if any(g.size > 1 for g in gs) and len(gs) < min_upstream:
            return f"{len(gs)} upstream seeds on a target, fewer than {min_upstream}"
    return None


def _draw(gs: Groups, rng: np.random.Generator) -> np.ndarray:
    picks = [gs[i] for i in rng.integers(len(gs), size=len(gs))]
    return np.concatenate([g[rng.integers(g.size, size=g.size)] for g in picks])


def _iqm(x: np.ndarray) -> float:
    from rliable import metrics as rmetrics

    return float(rmetrics.aggregate_iqm(x[:, None]))


def _mann_whitney(x: np.ndarray, y: np.ndarray) -> float:
    from rliable import metrics as rmetrics

    return float(rmetrics.probability_of_improvement(x[:, None], y[:, None]))


def _bootstrap(stat: Callable[[np.random.Generator | None], float], settings: Mapping[str, Any]
               ) -> tuple[float, float, float]:
    rng = np.random.default_rng(settings["seed"])
    boot = np.array([stat(rng) for _ in range(settings["reps"])])
    alpha = 1 - settings["confidence"]
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return stat(None), float(low), float(high)


def _flat_matrix(per_target: Sequence[Groups]) -> np.ndarray | None:
    """``(runs, targets)`` when every run is its own group and every target has as many: rliable's case."""
    if any(g.size != 1 for gs in per_target for g in gs) or len({len(gs) for gs in per_target}) != 1:
        return None
    return np.array([[float(g[0]) for g in gs] for gs in per_target]).T


def stratified_iqm(per_target: Sequence[Groups], settings: Mapping[str, Any]) -> Estimate:
    """IQM of every run of every target, bootstrapped within each target (hierarchically where runs
    hang off upstream seeds); a range with too few runs."""
    per_target = [gs for gs in per_target if gs]
    conf = settings["confidence"]
    if not per_target:
        return Estimate(None, None, None, "none", 0, "no runs with a defined score", conf)
    allv = np.concatenate([np.concatenate(gs) for gs in per_target])
    few = _too_few(per_target, settings["min_seeds"], settings["min_upstream_seeds"])
    n = min(sum(g.size for g in gs) for gs in per_target)
    if allv.size == 1:
        return Estimate(float(allv[0]), None, None, "none", 1, "one run: no interval", conf)
    if few is not None:
        return Estimate(_iqm(allv), float(allv.min()), float(allv.max()), "range", n,
                        f"{few}: a range of the runs, not a confidence interval", conf)
    flat = _flat_matrix(per_target)
    if flat is not None:
        est = aggregate(flat, "iqm", reps=settings["reps"], confidence=conf, seed=settings["seed"],
                        min_seeds=settings["min_seeds"])
        return Estimate(est.point, est.low, est.high, est.kind, est.n,
                        f"{conf:.0%} stratified bootstrap CI over {flat.shape[0]} seeds × {flat.shape[1]} targets "
                        "(rliable)", conf)

    def stat(rng: np.random.Generator | None) -> float:
        return _iqm(allv if rng is None else np.concatenate([_draw(gs, rng) for gs in per_target]))

    point, low, high = _bootstrap(stat, settings)
    return Estimate(point, low, high, "confidence interval", n,
                    f"{conf:.0%} bootstrap CI stratified over {len(per_target)} targets, upstream then target seeds "
                    "within each", conf)


def _paired_targets(xs: Sequence[Groups], ys: Sequence[Groups]) -> tuple[list[Groups], list[Groups]]:
    keep = [i for i in range(len(xs)) if xs[i] and ys[i]]
    return [xs[i] for i in keep], [ys[i] for i in keep]


def stratified_improvement(xs: Sequence[Groups], ys: Sequence[Groups], settings: Mapping[str, Any]) -> Estimate:
    """P(X > Y): the mean over targets of rliable's per-target probability of improvement, X and Y
    resampled independently within each target; no interval with too few runs."""
    xs, ys = _paired_targets(xs, ys)
    conf = settings["confidence"]
    if not xs:
        return Estimate(None, None, None, "none", 0, "no target with defined scores of both", conf)

    def stat(rng: np.random.Generator | None) -> float:
        if rng is None:
            return float(np.mean([_mann_whitney(np.concatenate(x), np.concatenate(y)) for x, y in zip(xs, ys)]))
        return float(np.mean([_mann_whitney(_draw(x, rng), _draw(y, rng)) for x, y in zip(xs, ys)]))

    n = min(sum(g.size for g in gs) for gs in [*xs, *ys])
    few = _too_few([*xs, *ys], settings["min_seeds"], settings["min_upstream_seeds"])
    if few is not None:
        return Estimate(stat(None), None, None, "none", n, f"{few}: no interval", conf)
    point, low, high = _bootstrap(stat, settings)
    return Estimate(point, low, high, "confidence interval", n,
                    f"{conf:.0%} bootstrap CI stratified over {len(xs)} targets", conf)


def stratified_difference(xs: Sequence[Groups], ys: Sequence[Groups], settings: Mapping[str, Any]) -> Estimate:
    """Mean over targets of mean(X) − mean(Y), resampled as :func:`stratified_improvement`; a range
    with too few runs."""
    xs, ys = _paired_targets(xs, ys)
    conf = settings["confidence"]
    if not xs:
        return Estimate(None, None, None, "none", 0, "no target with defined scores of both", conf)

    def stat(rng: np.random.Generator | None) -> float:
        pick = (lambda g: np.concatenate(g)) if rng is None else (lambda g: _draw(g, rng))
        return float(np.mean([pick(x).mean() - pick(y).mean() for x, y in zip(xs, ys)]))

    n = min(sum(g.size for g in gs) for gs in [*xs, *ys])
    few = _too_few([*xs, *ys], settings["min_seeds"], settings["min_upstream_seeds"])
    if few is not None:
        a, b = np.concatenate([np.concatenate(x) for x in xs]), np.concatenate([np.concatenate(y) for y in ys])
        return Estimate(stat(None), float(a.min() - b.max()), float(a.max() - b.min()), "range", n,
                        f"{few}: a range, not a confidence interval", conf)
    point, low, high = _bootstrap(stat, settings)
    return Estimate(point, low, high, "confidence interval", n,
                    f"{conf:.0%} bootstrap CI stratified over {len(xs)} targets", conf)


def _family_groups(results: Sequence[TargetResult], family: str, metric: str) -> list[Groups]:
    out = []
    for res in results:
        label = res.family_rows().get(family)
        greedy = res.comparisons["greedy"]
        out.append(_groups(greedy.methods[label], metric) if label in greedy.methods else [])
    return out


def settings_of(results: Sequence[TargetResult]) -> dict[str, Any]:
    """The comparisons' statistics settings (every target's are the same)."""
    if not results:
        return {"reps": 2000, "confidence": 0.95, "seed": 0, "min_seeds": MIN_SEEDS,
                "min_upstream_seeds": MIN_UPSTREAM_SEEDS}
    return dict(results[0].comparisons["greedy"].settings)


def across_targets(results: Sequence[TargetResult]) -> dict[str, Any]:
    """Per family: the stratified IQM of each of :data:`ACROSS_METRICS`, P(> scratch) on the
    normalised area, the targets it ran on and its upstream env steps (mean over targets)."""
    s = settings_of(results)
    families: list[str] = []
    for res in results:
        families += [f for f in res.family_rows() if f not in families]
    scratch = _family_groups(results, SCRATCH, NORMALISED_AREA)
    out: dict[str, Any] = {}
    for fam in families:
        on = [res for res in results if fam in res.family_rows()]
        steps = [res.rows[res.family_rows()[fam]].upstream_steps for res in on]
        keys = sorted({k for st in steps for k in st})
        out[fam] = {
            "targets": [res.target for res in on],
            "runs": sum(len(res.comparisons["greedy"].methods[res.family_rows()[fam]].seeds()) for res in on),
            "upstream_env_steps": {k: int(round(np.mean([st.get(k, 0) for st in steps]))) for k in keys},
            **{m: stratified_iqm(_family_groups(results, fam, m), s).as_dict() for m in ACROSS_METRICS},
            "poi_over_scratch": None if fam == SCRATCH else
            stratified_improvement(_family_groups(results, fam, NORMALISED_AREA), scratch, s).as_dict(),
        }
    return out


def across_profiles(results: Sequence[TargetResult]) -> dict[str, Any]:
    """Performance profiles of the normalised area over every target's runs, per family (rliable;
    a stratified band where every target has as many runs, else the runs pooled)."""
    from policyshare.stats import performance_profiles

    s = settings_of(results)
    scores: dict[str, np.ndarray] = {}
    families = list(dict.fromkeys(f for res in results for f in res.family_rows()))
    for fam in families:
        per = [np.concatenate(gs) for gs in _family_groups(results, fam, NORMALISED_AREA) if gs]
        if per:
            sizes = {p.size for p in per}
            scores[fam] = np.stack(per, axis=1) if len(sizes) == 1 and len(per) == len(results) else np.concatenate(per)
    if not scores:
        return {}
    lo = min(float(v.min()) for v in scores.values())
    hi = max(float(v.max()) for v in scores.values())
    pad = 0.05 * (hi - lo or 1)
    taus = np.linspace(lo - pad, hi + pad, 31)
    return performance_profiles(scores, taus, reps=s["reps"], confidence=s["confidence"], seed=s["seed"])


# -- claims -------------------------------------------------------------------------------------

#: claim key → (its wording, the comparisons "A beats B" behind it, as family patterns).
CLAIMS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "a": ("sharing helps transfer to a held-out game", [(f"{STUDENT}__{{al}}", SCRATCH)]),
    "b": ("the student transfers better than single experts",
          [(f"{STUDENT}__{{al}}", f"{FINETUNE}__{MEAN_OVER_SOURCES}__{{al}}"),
           (f"{STUDENT}__{{al}}", f"{SINGLE_TEACHER}__{{al}}")]),
    "c": ("progressive beats its random-column control", [(f"{PROGRESSIVE}__{{al}}", f"{RANDOM_COLUMN}__{{al}}")]),
}
CAPACITY_CLAIM = "sharing gives more per parameter"


def _resolve(family: str, known: set[str]) -> str:
    """``finetune__mean-over-sources__pad`` → ``finetune__pad`` where finetune ran from one source."""
    if family in known or MEAN_OVER_SOURCES not in family:
        return family
    return family.replace(f"__{MEAN_OVER_SOURCES}", "")


def _not_run(claim: str, missing: str, env_steps: int) -> dict[str, Any]:
    text = f"{claim}: no verdict ({missing} has no runs in this experiment)"
    return {"claim": claim, "outcome": "no verdict", "why": f"{missing} has no runs", "text": text,
            "seeds": [0, 0], "env_steps": env_steps, "seeds_needed": None, "not_run": True}


def _judge_one(results: Sequence[TargetResult], a: str, b: str, claim: str) -> dict[str, Any]:
    """One comparison "a beats b" on the normalised area (greedy evaluation)."""
    known = {f for res in results for f in res.family_rows()}
    a, b = _resolve(a, known), _resolve(b, known)
    budget = max((res.comparisons["greedy"].budget for res in results), default=0)
    for fam in (a, b):
        if fam not in known:
            return _not_run(claim, fam, budget)
    if len(results) == 1:
        res = results[0]
        rows = res.family_rows()
        v = res.comparisons["greedy"].verdict(rows[a], rows[b], claim=claim)
    else:
        v = _across_verdict(results, a, b, claim)
    steps = {fam: _steps_of(results, fam) for fam in (a, b)}
    text = str(v) + "; env steps charged upstream: " + ", ".join(f"{fam} {n:,}" for fam, n in steps.items())
    return {**v.as_dict(), "a": a, "b": b, "upstream_env_steps": steps, "text": text}


def _steps_of(results: Sequence[TargetResult], fam: str) -> int:
    vals = [sum(res.rows[res.family_rows()[fam]].upstream_steps.values()) for res in results
            if fam in res.family_rows()]
    return int(round(np.mean(vals))) if vals else 0


def _across_verdict(results: Sequence[TargetResult], a: str, b: str, claim: str) -> Verdict:
    s = settings_of(results)
    xa, xb = _family_groups(results, a, NORMALISED_AREA), _family_groups(results, b, NORMALISED_AREA)
    xa, xb = _paired_targets(xa, xb)
    va = [float(v) for gs in xa for g in gs for v in g]
    vb = [float(v) for gs in xb for g in gs for v in g]
    diff = stratified_difference(xa, xb, s)
    poi = stratified_improvement(xa, xb, s)
    budget = max(res.comparisons["greedy"].budget for res in results)
    if not va or not vb:
        return Verdict(claim, "no verdict", diff, poi, (len(va), len(vb)), budget, None,
                       "no target with defined scores of both")
    return verdict(va, vb, env_steps=budget, claim=claim, paired=False, difference=diff, poi=poi,
                   reps=s["reps"], confidence=s["confidence"], seed=s["seed"], min_seeds=s["min_seeds"])


def _overall(parts: Sequence[Mapping[str, Any]]) -> tuple[str, int | None]:
    """A claim's outcome from its comparisons' (those whose methods ran) and the seeds per method that
    would decide it."""
    parts = [p for p in parts if not p.get("not_run")] or list(parts)
    outcomes = {p["outcome"] for p in parts}
    needed = [p["seeds_needed"] for p in parts if p.get("seeds_needed")]
    if outcomes == {"supported"}:
        return "supported", None
    if outcomes == {"refuted"}:
        return "refuted", None
    if outcomes <= {"no verdict"}:
        return "no verdict", max(needed) if needed else None
    return "undecided at this budget", max(needed) if needed else None


def capacity_claim(capacity: Mapping[str, Any] | None) -> dict[str, Any]:
    """Claim (d), "sharing gives more per parameter", from the summary's ``capacity`` section.

    The contract with the capacity study (``policyshare/experiment/capacity*.py``), which writes
    ``summary["capacity"]``: its ``verdict`` is a :meth:`policyshare.stats.Verdict.as_dict` record
    (``claim``, ``outcome``, ``text`` …) of "one shared network scores higher per parameter than K
    single-task ones" from its intervals; its optional ``table`` (Markdown lines) and ``notes``
    (sentences) are shown under "Data per parameter". Without the section, or without a verdict in
    it: :data:`NO_CAPACITY`.
    """
    if not capacity or not isinstance(capacity.get("verdict"), Mapping):
        return {"claim": CAPACITY_CLAIM, "outcome": NO_CAPACITY, "parts": [],
                "text": f"(d) {CAPACITY_CLAIM}: {NO_CAPACITY}.", "seeds_needed": None}
    v = dict(capacity["verdict"])
    outcome = str(v.get("outcome", "undecided at this budget"))
    text = str(v.get("text") or f"{CAPACITY_CLAIM}: {outcome}")
    return {"claim": CAPACITY_CLAIM, "outcome": outcome, "parts": [v], "text": f"(d) {text}.",
            "seeds_needed": v.get("seeds_needed")}


def claims(results: Sequence[TargetResult], alignments: Sequence[str],
           capacity: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The four claims: key (``a`` … ``d``) → ``claim``, ``outcome``, ``parts`` (each comparison's
    verdict record, per alignment), ``seeds_needed``, ``text`` (one sentence)."""
    out: dict[str, dict[str, Any]] = {}
    where = "on the held-out target" if len(results) == 1 else f"across {len(results)} held-out targets"
    for key, (claim, pairs) in CLAIMS.items():
        parts = [_judge_one(results, a.format(al=al), b.format(al=al),
                            f"{a.format(al=al)} beats {b.format(al=al)} (normalised area, greedy evaluation, {where})")
                 for al in alignments for a, b in pairs]
        outcome, needed = _overall(parts)
        text = f"({key}) {claim}: **{outcome}**"
        if outcome == "no verdict":
            text += " — too few runs for a confidence interval (the figures are ranges of the seeds)"
        if needed:
            text += f"; about {needed} seeds per method would decide it"
        out[key] = {"claim": claim, "outcome": outcome, "parts": parts, "seeds_needed": needed, "text": text + "."}
    out["d"] = capacity_claim(capacity)
    return out


__all__ = ["ACROSS_METRICS", "CAPACITY_CLAIM", "CLAIMS", "NO_CAPACITY", "across_profiles", "across_targets",
           "capacity_claim", "claims", "settings_of", "stratified_difference", "stratified_improvement",
           "stratified_iqm"]
