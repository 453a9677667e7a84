"""What ``policyshare progressive`` reports: ``metrics.json``, ``report.md``, plots, the summary.

:func:`summarise` reads every compared run of every seed back from its run folder, measures
transfer % against ``scratch`` (Rusu et al. 2016, Table 1; through :mod:`policyshare.comparison`),
averages the Average Fisher Sensitivity over seeds (:mod:`policyshare.progressive.fisher`), writes
``curves.png``,
``fisher.{md,json,png}``, TensorBoard scalars and ``report.md``, and returns the contents of
``metrics.json``; :func:`summary_text` is what the command prints at the end.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from policyshare.io import atomic_write_json, atomic_write_text
from policyshare.methods import FINETUNE, PROGRESSIVE, RANDOM_COLUMN, SCRATCH
from policyshare.progressive.fisher import fisher_table, plot_fisher_heatmap
from policyshare.progressive.plan import Plan, method_dirs

if TYPE_CHECKING:
    from policyshare.comparison import Comparison, Curve

#: How each compared method is labelled in plots and reports (Rusu et al. 2016's baselines; the
#: names are those of :mod:`policyshare.methods`).
METHOD_LABELS: dict[str, str] = {
    PROGRESSIVE: "progressive net",
    SCRATCH: "baseline 1: single column from scratch",
    FINETUNE: "baseline 3: column 1 fine-tuned",
    RANDOM_COLUMN: "baseline 4: random frozen column 1",
}


def _short(task: str) -> str:
    """``MinAtar/Breakout-v1`` → ``Breakout-v1`` (for plot titles)."""
    return task.rsplit("/", 1)[-1]


def _write_tensorboard(run_dir: Path, scalars: Mapping[str, float], step: int) -> None:
    """Add scalars to a run's TensorBoard folder (a new event file beside SB3's)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir / "tb"))
    try:
        for tag, value in scalars.items():
            if np.isfinite(value):
                writer.add_scalar(tag, value, step)
    finally:
        writer.close()


@dataclass
class _MethodRuns:
    """Every compared method's target run of every seed, read back from its run folder.

    Keys: method, then seed as a string (as ``metrics.json`` writes them).
    """

    curves: dict[str, dict[int, Curve]] = field(default_factory=dict)
    train_curves: dict[str, dict[int, Curve | str]] = field(default_factory=dict)
    finals: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: dict[str, dict[str, str]] = field(default_factory=dict)
    steps: dict[str, dict[str, int]] = field(default_factory=dict)
    random_return: dict[str, float] = field(default_factory=dict)


def _read_runs(plan: Plan, per_seed: Mapping[int, Mapping[str, Any]], methods: list[str]) -> _MethodRuns:
    """Learning curve, final return, folder, env steps and random return of every target run."""
    from policyshare.comparison import read_runs

    dirs = {seed: method_dirs(plan, d["dir"]) for seed, d in per_seed.items()}
    runs = read_runs({m: {seed: dirs[seed][m] for seed in per_seed} for m in methods})
    out = _MethodRuns(runs.curves, runs.train_curves, runs.finals(),
                      {m: {str(s): str(p) for s, p in by_seed.items()} for m, by_seed in runs.dirs.items()},
                      {m: {s: int(v) for s, v in by_seed.items()} for m, by_seed in runs.column("timesteps").items()})
    for seed in per_seed:  # the random policy on the target: read from the last method's run, as before
        last = list(dirs[seed])[-1]
        out.random_return[str(seed)] = float(runs.metrics[last][seed]["random_mean_return"])
    return out


def _fisher_summary(plan: Plan, root: Path, per_seed: Mapping[int, Mapping[str, Any]],
                    steps: Mapping[str, int]) -> dict[str, Any] | None:
    """AFS mean ± std over seeds: ``fisher.{md,png,json}`` and TensorBoard scalars (or ``None``).

    Args:
        plan: the experiment.
        root: the experiment folder.
        per_seed: seed → ``{"fisher": AFS dict or None, "dir": seed folder, …}``.
        steps: seed (string) → env steps of the progressive column's target run (the
            TensorBoard step).
    """
    fishers = {str(s): d["fisher"] for s, d in per_seed.items() if d["fisher"] is not None}
    if not fishers:
        return None
    first = next(iter(fishers.values()))
    layers, columns = list(first["layers"]), list(first["columns"])
    arr = np.array([[[f["afs"][c][layer] for layer in layers] for c in columns]
                    for f in fishers.values()])
    mean, std = arr.mean(axis=0), arr.std(axis=0)
    table = fisher_table(mean, columns, layers, std if len(fishers) > 1 else None)
    atomic_write_text(root / "fisher.md",
                      f"# Average Fisher Sensitivity on {plan.target}\n\n(Rusu et al. 2016, "
                      f"Sec. 5; mean ± std over seeds {', '.join(fishers)}; each layer sums "
                      f"to 1 over columns)\n\n{table}")
    plot_fisher_heatmap(mean, columns, layers, root / "fisher.png",
                        f"AFS on {_short(plan.target)}\n(mean of {len(fishers)} seeds)")
    fisher = {"target": plan.target, "layers": layers, "columns": columns,
              "afs_mean": {c: dict(zip(layers, map(float, row))) for c, row in zip(columns, mean)},
              "afs_std": {c: dict(zip(layers, map(float, row))) for c, row in zip(columns, std)},
              "per_seed": fishers, "table": table}
    atomic_write_json(root / "fisher.json", fisher)
    for s, f in fishers.items():
        path = method_dirs(plan, per_seed[int(s)]["dir"])["progressive"]
        _write_tensorboard(path, {f"progressive/column_{c + 1}/afs/{layer}": f["afs"][col][layer]
                                  for c, col in enumerate(columns) for layer in layers},
                           steps[s])
    return fisher


def summarise(plan: Plan, root: Path, per_seed: Mapping[int, Mapping[str, Any]],
              resolved: Mapping[str, Any]) -> dict[str, Any]:
    """Transfer %, curves plot, Fisher table and heat map, TensorBoard scalars, report.

    Args:
        plan: the experiment.
        root: the experiment folder (``curves.png``, ``fisher.*`` and ``report.md`` go there).
        per_seed: seed → ``{"network": ProgressiveNetwork, "no_forgetting": check,
            "fisher": AFS dict or None, "dir": seed folder}``.
        resolved: the experiment's resolved settings (its ``config.yaml``).

    Returns:
        The contents of ``metrics.json`` (written by the caller).

    Raises:
        CheckpointError: a run's ``metrics.json`` or learning curve is missing or unreadable.
    """
    from policyshare.comparison import TRANSFER_PERCENT

    methods = [PROGRESSIVE, *plan.controls]
    runs = _read_runs(plan, per_seed, methods)
    comparisons = _compare(plan, runs) if SCRATCH in methods else {}
    transfer = {m: comparisons["greedy"].record(m, TRANSFER_PERCENT) for m in methods} if comparisons else {}
    _tensorboard_transfer(plan, per_seed, runs, comparisons)
    _plot_curves(plan, root, runs, [int(s) for s in per_seed], methods)
    k = len(plan.tasks)
    alphas = {str(s): {name: a.alpha.item() for name, a in d["network"].stack.adapters(k - 1).items()}
              for s, d in per_seed.items()}
    forgetting = {str(s): d["no_forgetting"] for s, d in per_seed.items()}
    fisher = _fisher_summary(plan, root, per_seed, runs.steps[PROGRESSIVE])
    metrics: dict[str, Any] = {
        "tasks": plan.tasks, "target": plan.target, "algo": plan.algo,
        "seeds": [int(s) for s in per_seed], "controls": plan.controls,
        "transfer_baseline": SCRATCH if transfer else None,
        "transfer_definition": "100 * AUC(method) / AUC(scratch) of greedy-evaluation returns over the budget, per "
                               "seed (Rusu et al. 2016, Table 1), defined only where scratch's mean return is above "
                               "random + 10% of (expert - random); IQM over seeds with a 95% stratified bootstrap CI, "
                               "or the range of the seeds below 5 seeds",
        "methods": {m: {"label": METHOD_LABELS[m], "runs": runs.runs[m], "timesteps": runs.steps[m],
                        "final_eval_mean_return": runs.finals[m],
                        "final_eval_mean_return_over_seeds": float(np.mean(list(runs.finals[m].values()))),
                        "transfer_percent": transfer.get(m)} for m in methods},
        "target_random_mean_return": runs.random_return,
        "comparison": {c.curve: c.to_json() for c in comparisons.values()},
        "tables": {c.curve: c.markdown(definitions_too=False) for c in comparisons.values()},
        "definitions": _definitions(comparisons),
        "verdicts": _verdicts(comparisons),
        "no_forgetting": forgetting,
        "no_forgetting_all_identical": all(v["identical"] for f in forgetting.values() for v in f.values()),
        "lateral_alpha": alphas,
        "fisher": fisher,
        "config": dict(resolved),
        "files": {"curves": "curves.png", "curves_training": "curves_training.png", "report": "report.md",
                  **({"fisher_table": "fisher.md", "fisher_json": "fisher.json",
                      "fisher_heatmap": "fisher.png"} if fisher else {})},
        "tensorboard": f"tensorboard --logdir {shlex.quote(str(root))}",
    }
    atomic_write_text(root / "report.md", _report(metrics))
    return metrics


def _plot_curves(plan: Plan, root: Path, runs: _MethodRuns, seeds: list[int], methods: list[str]) -> None:
    """``curves.png`` (greedy evaluation) and ``curves_training.png`` (training episodes)."""
    from policyshare.comparison import plot_curves

    for name, what, by_method in (("curves.png", "greedy evaluation", runs.curves),
                                  ("curves_training.png", "training episodes", runs.train_curves)):
        curves = {METHOD_LABELS[m]: [c for s in seeds if not isinstance(c := by_method[m][s], str)] for m in methods}
        plot_curves(curves, root / name,
                    f"{_short(plan.target)} after {' → '.join(map(_short, plan.tasks[:-1]))}\n"
                    f"({plan.algo}, seeds {' '.join(map(str, seeds))}; bands: 95% bootstrap CI)",
                    ylabel=f"mean return ({what})")


def _compare(plan: Plan, runs: _MethodRuns) -> dict[str, Comparison]:
    """Every control and the progressive column against scratch, on each curve
    (:func:`~policyshare.comparison.compare_methods`); random: the runs' own, expert: the zoo's."""
    from policyshare.comparison import CURVE_LABELS, compare_methods, zoo_expert_return

    expert, source = zoo_expert_return(plan.target)
    random = float(np.mean(list(runs.random_return.values())))
    refs = f"random: the runs' random-policy return, mean over seeds; expert: {source}"
    budget = min(int(c[0][-1]) for by_seed in runs.curves.values() for c in by_seed.values())
    curves: dict[str, Mapping[str, Mapping[int, Curve | str]]] = {"greedy": runs.curves,
                                                                   "training": runs.train_curves}
    return {kind: compare_methods(curves[kind], random=random, expert=expert, budget=budget, baseline=SCRATCH,
                                  curve=CURVE_LABELS[kind], references=refs) for kind in curves}


def _tensorboard_transfer(plan: Plan, per_seed: Mapping[int, Mapping[str, Any]], runs: _MethodRuns,
                          comparisons: Mapping[str, Comparison]) -> None:
    """``progressive/transfer_percent`` and ``progressive/normalised_area_gain`` (greedy evaluation)
    in each run's TensorBoard folder, where defined."""
    from policyshare.comparison import AREA_GAIN, TRANSFER_PERCENT

    if not comparisons:
        return
    c = comparisons["greedy"]
    for seed, d in per_seed.items():
        for m, path in method_dirs(plan, d["dir"]).items():
            if m not in c.methods:
                continue
            values = {f"progressive/{key}": c.methods[m].per_seed[key][seed].value
                      for key in (TRANSFER_PERCENT, AREA_GAIN)}
            _write_tensorboard(path, {k: v for k, v in values.items() if v is not None}, runs.steps[m][str(seed)])


def _definitions(comparisons: Mapping[str, Comparison]) -> list[str]:
    from policyshare.comparison import definitions

    c = comparisons.get("greedy")
    return definitions(c, c.table_keys()) if c is not None else []


#: The claims the report judges, (A, B, wording): Rusu et al. 2016's question and its baseline 4.
CLAIMS: tuple[tuple[str, str, str], ...] = (
    (PROGRESSIVE, SCRATCH, "the progressive column learns faster than a column from scratch"),
    (PROGRESSIVE, RANDOM_COLUMN, "the progressive column beats its random-column control (baseline 4)"),
)


def _verdicts(comparisons: Mapping[str, Comparison]) -> list[dict[str, Any]]:
    """Each claim of :data:`CLAIMS` whose methods were run, on each curve (normalised area)."""
    return [c.verdict(a, b, claim=f"{claim} (normalised area, {c.curve})").as_dict()
            for c in comparisons.values() for a, b, claim in CLAIMS if a in c.methods and b in c.methods]


def _transfer_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    from policyshare.comparison import format_interval_record
    from policyshare.metrics import format_number

    rows = []
    for m, d in metrics["methods"].items():
        t = d["transfer_percent"]
        interval = format_interval_record(t) if t else "n/a"
        why = t.get("per_seed_why", {}) if t else {}
        per_seed = ", ".join(f"s{s}: {'undefined' if s in why else format_number(v)}"
                             for s, v in t["per_seed"].items()) if t else "n/a"
        rows.append((m, interval, per_seed, f"{d['final_eval_mean_return_over_seeds']:.2f}"))
    return rows


def summary_text(metrics: Mapping[str, Any], root: Path) -> str:
    """The figures ``policyshare progressive`` prints at the end."""
    lines = [f"target {metrics['target']} after {' → '.join(metrics['tasks'][:-1])}, "
             f"{metrics['algo']}, seeds {' '.join(map(str, metrics['seeds']))}",
             f"{'method':<15} {'transfer % IQM (greedy evaluation)':<34} {'per seed':<34} final return"]
    for m, interval, per_seed, final in _transfer_rows(metrics):
        lines.append(f"{m:<15} {interval:<34} {per_seed:<34} {final}")
    lines += [f"verdict: {v['text']}" for v in metrics.get("verdicts", [])]
    lines.append("earlier columns' returns unchanged after training later ones: "
                 f"{'yes' if metrics['no_forgetting_all_identical'] else 'NO'}")
    if metrics["fisher"]:
        lines.append("Average Fisher Sensitivity on the target (rows: columns; mean ± std over seeds):")
        lines.append(metrics["fisher"]["table"].rstrip())
    lines.append(f"metrics: {root / 'metrics.json'}  report: {root / 'report.md'}  "
                 f"curves: {root / 'curves.png'}")
    lines.append(f"TensorBoard: {metrics['tensorboard']}")
    return "\n".join(lines)


def _report(metrics: Mapping[str, Any]) -> str:
    """``report.md``: settings, transfer table, no-forgetting check, lateral scalars, Fisher."""
    from policyshare.comparison import markdown_table

    cfg = metrics["config"]
    steps = sorted({n for d in metrics["methods"].values() for n in d["timesteps"].values()})
    out = [f"# Progressive network: {' → '.join(metrics['tasks'])}", "",
           f"Algorithm {metrics['algo']}; seeds {', '.join(map(str, metrics['seeds']))}; "
           f"env steps per target run: {', '.join(map(str, steps))}; adapters {cfg['adapter']}.", "",
           "## Transfer to the target (Rusu et al. 2016, Table 1)", "",
           f"{metrics['transfer_definition']}.", "",
           *markdown_table(["method", "transfer % IQM (greedy evaluation)", "per seed",
                            "final eval return (mean over seeds)"],
                           [[metrics["methods"][m]["label"], interval, per_seed, final]
                            for m, interval, per_seed, final in _transfer_rows(metrics)], align=["---"] * 4)]
    for curve, table in metrics.get("tables", {}).items():
        out += ["", f"### Every metric on the {curve} curve", "", *table]
    verdicts = metrics.get("verdicts", [])
    if verdicts:
        out += ["", "### Verdicts", "", *(f"- {v['text']}" for v in verdicts)]
    if metrics.get("definitions"):
        out += ["", "### Definitions", "", *metrics["definitions"]]
    randoms = ", ".join(f"s{s}: {v:.2f}" for s, v in metrics["target_random_mean_return"].items())
    out += ["", f"Random policy on the target: {randoms}.", "", "![learning curves (greedy evaluation)](curves.png)",
            "", "![learning curves (training episodes)](curves_training.png)", "",
            "## No forgetting", "",
            "Every earlier column, evaluated through the whole network on its own task with the "
            "seeds and episodes of its evaluation right after training: "
            f"{'identical returns' if metrics['no_forgetting_all_identical'] else 'RETURNS DIFFER'}.",
            ""]
    for seed, checks in metrics["no_forgetting"].items():
        for task, c in checks.items():
            out.append(f"- s{seed} {task}: before {np.mean(c['before']):.2f}, after "
                       f"{np.mean(c['after']):.2f} over {c['episodes']} episodes "
                       f"({'identical' if c['identical'] else 'different'})")
    out += ["", "## Lateral scalars α of the target column", ""]
    for seed, alphas in metrics["lateral_alpha"].items():
        out.append(f"- s{seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in alphas.items()))
    if metrics["fisher"]:
        out += ["", "## Average Fisher Sensitivity (Rusu et al. 2016, Sec. 5)", "",
                metrics["fisher"]["table"], "![Fisher sensitivity](fisher.png)"]
    out += ["", f"TensorBoard: `{metrics['tensorboard']}`", ""]
    return "\n".join(out)
