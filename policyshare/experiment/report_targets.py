"""The report's per-target part: every arm on one held-out game through :func:`~policyshare.comparison.compare_methods`.

For one target (:func:`target_comparisons`):

* **rows**: every arm of the design (:func:`~policyshare.experiment.design.arms`: method × source
  × alignment) with a finished run, plus for each method run from every source (``finetune``,
  ``frozen``) with two or more sources, ``<method>__mean-over-sources__<alignment>`` (per seed the
  pointwise mean of the sources' curves: every metric but transfer %'s definedness is linear in the
  curve, so this is the mean of the sources' metrics) and ``<method>__best-source__<alignment>``
  (the runs of the source with the largest mean area under its greedy curve, chosen on these very
  runs: an optimistic figure);
* **seeds**: a run whose ``config.yaml`` records an ``upstream`` (the expert, student or
  multi-task network it started from) is keyed ``(upstream seed, target seed)``, so its intervals
  are hierarchical (upstream seeds, then target seeds); ``scratch`` and ``random_column`` by target
  seed;
* **references**: the target's random return is the runs' own (mean of their
  ``random_mean_return``); its expert return the zoo expert's, else the mean of this experiment's
  experts on that game (with leave-one-game-out every game has them), else none (every normalised
  metric then undefined, with that reason);
* **two comparisons**: greedy-evaluation curves (the figures, verdicts and plots) and
  training-episode curves (a table beside them);
* **upstream env steps** each row was charged (:func:`charged_steps`): the experts it started from
  or learnt from, the distillation, the multi-task training.

Every row of the design stays, whatever is undefined; nothing is ``nan``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.comparison import (
    CURVE_LABELS,
    Comparison,
    Curve,
    CurveKind,
    Runs,
    compare_methods,
    plot_curves,
    plot_intervals,
    plot_profiles,
    read_runs,
    zoo_expert_return,
)
from policyshare.comparison.measures import AREA_GAIN, NORMALISED_AREA
from policyshare.config import read_yaml
from policyshare.experiment.config import ExperimentConfig
from policyshare.experiment.design import Arm, arms, short, teachers
from policyshare.experiment.layout import transfer_dir, upstream_dir, upstream_of
from policyshare.io import read_json
from policyshare.methods import PER_SOURCE_METHODS, SCRATCH
from policyshare.metrics import confidence_label
from policyshare.runs import slug
from policyshare.stats import SeedKey, seed_label

MEAN_OVER_SOURCES = "mean-over-sources"
BEST_SOURCE = "best-source"
KINDS: tuple[CurveKind, ...] = ("greedy", "training")


@dataclass
class Row:
    """One row of a target's comparison.

    Attributes:
        label: the row's name (an arm's label, or ``<method>__mean-over-sources__<alignment>`` …).
        method, alignment: the method and alignment (``None`` for scratch).
        source: its source game, ``"mean-over-sources"``, ``"best-source: <game>"``, or ``None``.
        family: its name across targets (``student__pad``, ``finetune__mean-over-sources__pad`` …),
            or ``None`` for one source's row of a method run from several (the sources differ
            between targets; its mean and best rows stand for it).
        upstream_steps: env steps charged upstream, by part (``experts``, ``distillation``,
            ``multitask``; mean over its runs); empty for rows that start from nothing trained.
    """

    label: str
    method: str
    alignment: str | None
    source: str | None
    family: str | None
    upstream_steps: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "alignment": self.alignment, "source": self.source, "family": self.family,
                "upstream_env_steps": dict(self.upstream_steps),
                "upstream_env_steps_total": sum(self.upstream_steps.values())}


@dataclass
class TargetResult:
    """What :func:`target_comparisons` found on one target: the comparisons by curve kind, the rows
    (in report order), the runs read, and the seeds' upstream records."""

    target: str
    comparisons: dict[str, Comparison]
    rows: dict[str, Row]
    runs: Runs
    upstream: dict[str, dict[str, int | None]]

    def family_rows(self) -> dict[str, str]:
        """family → row label on this target."""
        return {r.family: label for label, r in self.rows.items() if r.family is not None}


def _run_key(folder: Path, seed: int) -> tuple[SeedKey, int | None]:
    """A run's seed key and upstream seed (from its ``config.yaml``'s ``upstream``)."""
    up = (read_yaml(folder / "config.yaml") or {}).get("upstream")
    if isinstance(up, dict) and up.get("seed") is not None:
        return (int(up["seed"]), seed), int(up["seed"])
    return seed, None


def _folders(root: Path, cfg: ExperimentConfig, target: str, target_arms: list[Arm]
             ) -> tuple[dict[str, dict[SeedKey, Path]], dict[str, dict[str, int | None]]]:
    """Finished runs by arm and seed key; arm → target seed → upstream seed."""
    folders: dict[str, dict[SeedKey, Path]] = {}
    upstream: dict[str, dict[str, int | None]] = {}
    for a in target_arms:
        for s in cfg.seeds:
            folder = transfer_dir(root, target, a.label, s)
            if not (folder / "metrics.json").is_file():
                continue
            key, up = _run_key(folder, s)
            folders.setdefault(a.label, {})[key] = folder
            upstream.setdefault(a.label, {})[str(s)] = up
    return folders, upstream


def _mean_curve(curves: list[Curve | str]) -> Curve | str:
    """The pointwise mean of curves (on the union of their env steps), or the first reason one has none."""
    for c in curves:
        if isinstance(c, str):
            return c
    real = [c for c in curves if not isinstance(c, str)]
    steps = np.unique(np.concatenate([np.asarray(c[0], float) for c in real]))
    ys = np.mean([np.interp(steps, c[0], c[1]) for c in real], axis=0)
    return [float(t) for t in steps], [float(v) for v in ys]


def _area(c: Curve) -> float:
    x, y = np.asarray(c[0], float), np.asarray(c[1], float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def _source_rows(runs: Runs, target_arms: list[Arm]) -> tuple[dict[str, dict[str, dict[Any, Curve | str]]],
                                                                 dict[str, Row]]:
    """The mean-over-sources and best-source rows of the methods run from several sources: their
    curves by kind (kind → row → seed → curve) and their :class:`Row` s."""
    curves: dict[str, dict[str, dict[Any, Curve | str]]] = {k: {} for k in KINDS}
    rows: dict[str, Row] = {}
    groups: dict[tuple[str, str | None], list[Arm]] = {}
    for a in target_arms:
        if a.method in PER_SOURCE_METHODS and a.label in runs.curves:
            groups.setdefault((a.method, a.alignment), []).append(a)
    for (method, alignment), group in groups.items():
        if len(group) < 2:
            continue
        keys = [k for k in runs.curves[group[0].label] if all(k in runs.curves[a.label] for a in group)]
        mean = f"{method}__{MEAN_OVER_SOURCES}__{alignment}"
        for kind in KINDS:
            by = runs.curves_of(kind)
            curves[kind][mean] = {k: _mean_curve([by[a.label][k] for a in group]) for k in keys}
        rows[mean] = Row(mean, method, alignment, MEAN_OVER_SOURCES, mean)
        best = max(group, key=lambda a: float(np.mean([_area(c) for c in runs.curves[a.label].values()])))
        label = f"{method}__{BEST_SOURCE}__{alignment}"
        for kind in KINDS:
            curves[kind][label] = dict(runs.curves_of(kind)[best.label])
        rows[label] = Row(label, method, alignment, f"{BEST_SOURCE}: {best.source}", label)
    return curves, rows


def _family(a: Arm, n_sources: int) -> str | None:
    if a.method == SCRATCH:
        return SCRATCH
    if a.method in PER_SOURCE_METHODS and n_sources > 1:
        return None
    return f"{a.method}__{a.alignment}" if a.source else a.label


def references(root: Path, target: str, runs: Runs) -> tuple[float, float | None, str]:
    """The target's ``(random return, expert return, where they come from)``."""
    random = runs.random_return()
    if random is None:
        return 0.0, None, "no run records a random-policy return, so nothing can be normalised"
    expert, source = zoo_expert_return(target)
    if expert is None:
        found = [read_json(p, "expert metrics").get("eval_mean_return")
                 for p in sorted((root / "experts" / slug(target)).glob("*/metrics.json"))]
        values = [float(v) for v in found if isinstance(v, (int, float))]
        if values:
            expert = float(np.mean(values))
            source = f"this experiment's experts on {short(target)} (mean over {len(values)})"
    return random, expert, f"random: the runs' random-policy return, mean over runs; expert: {source}"


class _StepReader:
    """Env steps charged upstream to a transfer run, by part; each upstream run's files read once."""

    def __init__(self, root: Path, cfg: ExperimentConfig) -> None:
        self.root, self.cfg = root, cfg
        self._metrics: dict[Path, dict[str, Any] | None] = {}

    def _read(self, folder: Path) -> dict[str, Any] | None:
        if folder not in self._metrics:
            p = folder / "metrics.json"
            self._metrics[folder] = read_json(p, "upstream metrics") if p.is_file() else None
        return self._metrics[folder]

    def _steps(self, folder: Path, *keys: str) -> int:
        m = self._read(folder) or {}
        for k in keys:
            if isinstance(m.get(k), (int, float)):
                return int(m[k])
        return 0

    def charged(self, run: Path) -> dict[str, int]:
        """``experts`` (the expert started from, or a student's teachers), ``distillation`` (env steps
        over its games), ``multitask``: the parts that apply, in env steps."""
        rec = (read_yaml(run / "config.yaml") or {}).get("upstream")
        if not isinstance(rec, dict):
            return {}
        up = upstream_of(rec)
        folder = upstream_dir(self.root, up)
        if up.kind == "expert":
            return {"experts": self._steps(folder, "timesteps")}
        if up.kind == "multitask":
            return {"multitask": self._steps(folder, "timesteps")}
        m = self._read(folder) or {}
        distill = int(m.get("env_steps_per_task") or 0) * len(up.games)
        experts = sum(self._steps(upstream_dir(self.root, t), "timesteps") for t in teachers(self.cfg, up))
        return {"experts": experts, "distillation": distill}


def charged_steps(reader: _StepReader, dirs: Mapping[Any, Path]) -> dict[str, int]:
    """The mean over runs of each part of their upstream env steps."""
    parts = [reader.charged(Path(d)) for d in dirs.values()]
    keys = sorted({k for p in parts for k in p})
    return {k: int(round(np.mean([p.get(k, 0) for p in parts]))) for k in keys}


def target_comparisons(root: Path, cfg: ExperimentConfig, target: str) -> TargetResult | None:
    """Every arm on ``target`` compared with scratch on both curves (``None``: scratch has no
    finished run here)."""
    target_arms = arms(cfg, target)
    folders, upstream = _folders(root, cfg, target, target_arms)
    if SCRATCH not in folders:
        return None
    runs = read_runs(folders)
    extra, extra_rows = _source_rows(runs, target_arms)
    reader = _StepReader(root, cfg)
    n_sources = {(a.method, a.alignment): 0 for a in target_arms}
    for a in target_arms:
        if a.label in runs.curves:
            n_sources[(a.method, a.alignment)] += 1
    rows: dict[str, Row] = {}
    for a in target_arms:
        if a.label in runs.curves:
            family = _family(a, n_sources[(a.method, a.alignment)])
            rows[a.label] = Row(a.label, a.method, a.alignment, a.source, family,
                                charged_steps(reader, runs.dirs[a.label]))
    for label, row in extra_rows.items():
        method, alignment = row.method, row.alignment
        group = [r for r in rows.values() if r.method == method and r.alignment == alignment and r.family is None]
        if row.source == MEAN_OVER_SOURCES:
            row.upstream_steps = {k: sum(r.upstream_steps.get(k, 0) for r in group)
                                  for k in sorted({k for r in group for k in r.upstream_steps})}
        else:
            best = next(r for r in group if r.source == str(row.source).split(": ", 1)[1])
            row.upstream_steps = dict(best.upstream_steps)
        rows[label] = row
    random, expert, refs = references(root, target, runs)
    s = cfg.report
    comparisons: dict[str, Comparison] = {}
    for kind in KINDS:
        curves = {**runs.curves_of(kind), **extra[kind]}
        curves = {label: curves[label] for label in rows}
        comparisons[kind] = compare_methods(curves, random=random, expert=expert, budget=runs.budget(),
                                            baseline=SCRATCH, curve=CURVE_LABELS[kind], references=refs,
                                            reps=s.bootstrap_reps, confidence=s.confidence, seed=0)
    return TargetResult(target, comparisons, rows, runs, upstream)


def target_plots(root: Path, result: TargetResult, confidence: float) -> dict[str, str]:
    """``plots/curves_<env>.png`` (greedy evaluation), ``plots/curves_training_<env>.png``,
    ``plots/gain_<env>.png`` (normalised area gain per row, greedy) and ``plots/profiles_<env>.png``
    (performance profiles of the normalised area, greedy); paths relative to ``root``."""
    name, level = slug(result.target), confidence_label(confidence)
    out: dict[str, str] = {}
    pairs: tuple[tuple[CurveKind, str], ...] = (("greedy", "curves"), ("training", "curves_training"))
    for kind, stem in pairs:
        curve = CURVE_LABELS[kind]
        by_row = {m: [c for c in by.values() if not isinstance(c, str)]
                  for m, by in result.runs.curves_of(kind).items()}
        path = plot_curves(by_row, root / "plots" / f"{stem}_{name}.png",
                           title=f"{result.target}: learning curves ({curve}; mean, {level} bootstrap band)",
                           ylabel=f"mean return ({curve})", confidence=confidence)
        out[stem] = str(path.relative_to(root))
    greedy = result.comparisons["greedy"]
    gains = {}
    for label, r in greedy.methods.items():
        est = r.summary[AREA_GAIN].estimate
        if label != SCRATCH and est.point is not None:
            gains[label] = {"point": est.point, "low": est.low if est.low is not None else float("nan"),
                            "high": est.high if est.high is not None else float("nan")}
    if gains:
        path = plot_intervals(gains, root / "plots" / f"gain_{name}.png",
                              f"{result.target}: normalised area gain over scratch (greedy evaluation; IQM, bars: "
                              f"{level} interval or range of seeds)",
                              "(AUC − AUC_scratch) / (T·(expert − random))", 0.0)
        out["gain"] = str(path.relative_to(root))
    profiles = greedy.profiles()
    if profiles:
        path = plot_profiles(profiles, root / "plots" / f"profiles_{name}.png",
                             f"{result.target}: performance profiles (greedy evaluation)",
                             "normalised area: mean (return − random) / (expert − random) over the budget")
        out["profiles"] = str(path.relative_to(root))
    return out


def target_summary(root: Path, result: TargetResult, confidence: float) -> dict[str, Any]:
    """One target's part of ``summary.json`` (strict JSON), with its tables as Markdown lines."""
    from policyshare.comparison import TRANSFER_PERCENT, mean_over_seeds

    greedy = result.comparisons["greedy"]
    finals = result.runs.finals()
    every = list(greedy.metrics)
    head, seed_rows = greedy.seed_table(every)
    return {
        "budget_env_steps": greedy.budget, "random_return": greedy.random, "expert_return": greedy.expert,
        "references": greedy.references,
        "rows": {label: row.as_dict() for label, row in result.rows.items()},
        "comparison": {c.curve: c.to_json(profiles=c is greedy) for c in result.comparisons.values()},
        "tables": {c.curve: c.markdown(every, definitions_too=False) for c in result.comparisons.values()},
        "seed_table": {"head": head, "rows": seed_rows},
        "transfer_percent": {label: greedy.record(label, TRANSFER_PERCENT) for label in greedy.methods},
        "normalised_area": {label: greedy.record(label, NORMALISED_AREA) for label in greedy.methods},
        "final_returns": finals,
        "final_return_mean": {m: mean_over_seeds(v) for m, v in finals.items()},
        "parameters": {m: {"total": list(met.values())[-1].get("n_parameters"),
                           "trunk": list(met.values())[-1].get("trunk_parameters")}
                       for m, met in result.runs.metrics.items()},
        "upstream_seeds": result.upstream,
        "seeds": sorted({seed_label(k) for by in result.runs.curves.values() for k in by}),
        "plots": target_plots(root, result, confidence),
    }


__all__ = ["BEST_SOURCE", "KINDS", "MEAN_OVER_SOURCES", "Row", "TargetResult", "charged_steps", "references",
           "target_comparisons", "target_plots", "target_summary"]
