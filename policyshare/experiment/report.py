"""The experiment report: ``report.md``, ``summary.json`` and plots, from run folders alone.

:func:`build_report` reads an experiment folder (see :mod:`policyshare.experiment`) — the
experts' ``metrics.json``, the student's ``metrics.json``, every transfer run's
``evaluations.json`` and ``metrics.json``, the vision comparison's ``metrics.json`` — and writes:

* learning curves per target and arm (method, source, alignment:
  :class:`~policyshare.experiment.design.Arm`) with bootstrap bands (``plots/curves_<env>.png``);
* transfer % per arm (area under the learning curve ÷ scratch's, per seed; Rusu et al. 2016)
  as an interquartile mean with a stratified bootstrap interval (Agarwal et al. 2021, rliable),
  per target and over all targets (``plots/transfer.png``); for the methods run from every
  source (``finetune``, ``frozen``) also the mean over sources (per seed) and the best source;
* the upstream seed each transfer run used (from its ``config.yaml``), for grouping;
* every student's and multi-task network's expert-normalised IQM over its games;
* the student's expert-normalised score per game and its IQM (``plots/student.png``);
* parameter counts (experts, teachers together, student, progressive network);
* the vision thesis table and its sample grids;
* a "what this run shows" paragraph written from the numbers: which differences lie outside
  their intervals;
* ``summary.json`` with every figure, and the list of inputs it was built from (so a rerun of
  ``policyshare run`` skips an up-to-date report).

Every interval and band uses the config's ``report.confidence`` (default 95 %) and
``report.bootstrap_reps``, and is labelled with it; with one seed there is no interval, and the
report says so ("one seed: no interval") instead of printing ``[nan, nan]``.

``policyshare report RUN_DIR`` rebuilds all of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.comparison import markdown_table, plot_intervals
from policyshare.config import from_dict, read_yaml
from policyshare.errors import UserError
from policyshare.experiment.config import ExperimentConfig
from policyshare.experiment.design import Arm, arms, vision_student
from policyshare.experiment.layout import report_inputs, transfer_dir, upstream_dir
from policyshare.io import atomic_write_json, atomic_write_text, read_json
from policyshare.methods import PER_SOURCE_METHODS, PROGRESSIVE, RANDOM_COLUMN, SCRATCH
from policyshare.metrics import confidence_label, format_interval
from policyshare.runs import slug


def _fmt(v: Any, digits: int = 1) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if not np.isfinite(f) else f"{f:.{digits}f}"


def _finite(v: Any) -> bool:
    try:
        return bool(np.isfinite(float(v)))
    except (TypeError, ValueError):  # None: a figure JSON holds as null
        return False


def _iv(d: Mapping[str, Any], digits: int = 1, key: str = "iqm", single: str = "one seed") -> str:
    return format_interval(d.get(key, d.get("point")), d.get("low"), d.get("high"), digits, single=single)


def _transfer(root: Path, cfg: ExperimentConfig) -> dict[str, Any]:
    """Per target: curves, final returns, transfer % per seed and IQM interval per arm (and over
    sources), the upstream seed of each run; plus the aggregate over targets."""
    from policyshare.comparison import (
        aggregate_over_tasks,
        interval_rows,
        mean_over_seeds,
        plot_curves,
        read_runs,
        transfer_summary,
    )

    out: dict[str, Any] = {"targets": {}}
    level = confidence_label(cfg.report.confidence)
    reps, confidence = cfg.report.bootstrap_reps, cfg.report.confidence
    for target in cfg.target_games:
        target_arms = arms(cfg, target)
        runs = read_runs({a.label: {s: transfer_dir(root, target, a.label, s) for s in cfg.seeds}
                          for a in target_arms}, finished_only=True)
        if SCRATCH not in runs.curves:
            continue
        summary = transfer_summary(runs.curves, SCRATCH, seed=0, reps=reps, confidence=confidence)
        summary.update(_over_sources(summary, target_arms, reps, confidence))
        plot = plot_curves({m: [c[s] for s in sorted(c)] for m, c in runs.curves.items()},
                           root / "plots" / f"curves_{slug(target)}.png",
                           title=f"{target}: learning curves per method (mean, {level} bootstrap band)",
                           confidence=confidence)
        tplot = plot_intervals(interval_rows(summary, leave_out=[SCRATCH]),
                               root / "plots" / f"transfer_{slug(target)}.png",
                               f"{target}: transfer % (IQM, {level} stratified bootstrap)", "transfer %", 100.0)
        finals = runs.finals()
        out["targets"][target] = {
            "transfer_percent": summary, "final_returns": finals,
            "final_return_mean": {m: mean_over_seeds(v) for m, v in finals.items()},
            "parameters": {m: _parameter_counts(list(met.values())[-1]) for m, met in runs.metrics.items()},
            "upstream_seeds": _upstream_seeds(runs.dirs),
            "seeds": runs.seeds(),
            "plots": {"curves": str(plot.relative_to(root)), "transfer": str(tplot.relative_to(root))},
        }
    if len(out["targets"]) > 1:
        out["aggregate"] = aggregate_over_tasks([t["transfer_percent"] for t in out["targets"].values()], cfg.seeds,
                                                SCRATCH, reps=reps, confidence=confidence)
    return out


def _over_sources(summary: Mapping[str, Mapping[str, Any]], target_arms: list[Arm], reps: int,
                  confidence: float) -> dict[str, dict[str, Any]]:
    """For each method run from every source (``finetune``, ``frozen``) and alignment, two rows:
    ``<method>__mean-over-sources__<alignment>`` (per seed, the mean of the sources' transfer %)
    and ``<method>__best-source__<alignment>`` (the source with the highest IQM here, chosen on
    these very runs: an optimistic figure)."""
    from policyshare.metrics import iqm_intervals

    out: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, str | None], list[Arm]] = {}
    for a in target_arms:
        if a.method in PER_SOURCE_METHODS and a.label in summary:
            groups.setdefault((a.method, a.alignment), []).append(a)
    for (method, alignment), group in groups.items():
        if len(group) < 2:
            continue
        seeds = sorted({s for a in group for s in summary[a.label]["per_seed"]}, key=int)
        per_seed = {}
        for s in seeds:
            values = [float(summary[a.label]["per_seed"][s]) for a in group
                      if s in summary[a.label]["per_seed"] and _finite(summary[a.label]["per_seed"][s])]
            per_seed[s] = float(np.mean(values)) if values else float("nan")
        finite = np.array([v for v in per_seed.values() if np.isfinite(v)], float)
        iv = iqm_intervals({"m": finite}, reps=reps, confidence=confidence)["m"]
        out[f"{method}__mean-over-sources__{alignment}"] = {"per_seed": per_seed, "iqm": iv.point, "low": iv.low,
                                                            "high": iv.high, "sources": [a.source for a in group]}
        ranked = [a for a in group if _finite(summary[a.label]["iqm"])]
        if ranked:
            best = max(ranked, key=lambda a: float(summary[a.label]["iqm"]))
            out[f"{method}__best-source__{alignment}"] = {**summary[best.label], "source": best.source}
    return out


def _upstream_seeds(dirs: Mapping[str, Mapping[int, Path]]) -> dict[str, dict[str, int | None]]:
    """Arm → target seed → the upstream seed its run started from (its ``config.yaml``'s
    ``upstream.seed``; ``None`` for runs that start from nothing trained)."""
    out: dict[str, dict[str, int | None]] = {}
    for label, by_seed in dirs.items():
        for seed, folder in by_seed.items():
            up = (read_yaml(Path(folder) / "config.yaml") or {}).get("upstream")
            out.setdefault(label, {})[str(seed)] = up.get("seed") if isinstance(up, dict) else None
    return out


def _parameter_counts(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A transfer run's parameters: ``total`` and ``trunk`` (``None`` where not recorded)."""
    return {"total": metrics.get("n_parameters"), "trunk": metrics.get("trunk_parameters")}


def _student(root: Path, cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The first target's first all-teacher student's scores (the vision stage's), with its IQM
    over games recomputed at the report's confidence."""
    from policyshare.metrics import iqm_intervals

    if not cfg.distill.enabled:
        return None
    up = vision_student(cfg)
    path = upstream_dir(root, up) / "metrics.json"
    if not path.is_file():
        return None
    m = read_json(path, "student metrics")
    scores = [r["expert_normalised"] if _finite(r["expert_normalised"]) else np.nan for r in m["per_task"].values()]
    iqm = iqm_intervals({"student": np.array([scores], float)}, reps=cfg.report.bootstrap_reps,
                        confidence=cfg.report.confidence, seed=up.seed, task_bootstrap=True)["student"]
    rows = {t.split("/")[-1]: {"point": v, "low": v, "high": v} for t, v in zip(m["per_task"], scores)}
    rows["IQM"] = iqm.as_dict()
    plot = plot_intervals(rows, root / "plots" / "student.png",
                          f"student: expert-normalised score per game (IQM: "
                          f"{confidence_label(cfg.report.confidence)} bootstrap over games)",
                          "(student − random) / (teacher − random)", 1.0)
    return {**m, "run": up.name, "expert_normalised_iqm": iqm.as_dict(), "plot": str(plot.relative_to(root))}


def _upstream_runs(root: Path) -> dict[str, Any]:
    """Every student's and multi-task network's expert-normalised IQM over its games, by run folder
    (``distill/…``, ``multitask/…``), as their ``metrics.json`` give it."""
    out: dict[str, Any] = {}
    for pattern in ("distill/*/*/metrics.json", "multitask/*/*/metrics.json"):
        for p in sorted(root.glob(pattern)):
            m = read_json(p, "upstream metrics")
            out[str(p.parent.relative_to(root))] = {
                "expert_normalised_iqm": m.get("expert_normalised_iqm"),
                "env_steps": m.get("timesteps", m.get("env_steps_per_task")),
                "n_parameters": m.get("n_parameters", m.get("student_parameters"))}
    return out


def _experts(root: Path, cfg: ExperimentConfig) -> dict[str, Any]:
    """Every expert, labelled ``<game> <alignment> s<seed>``."""
    out = {}
    for p in sorted(root.glob("experts/*/*/metrics.json")):
        m = read_json(p, "expert metrics")
        alignment, seed = p.parent.name.rsplit("__s", 1)
        out[f"{m.get('env_id')} {alignment} s{seed}"] = {
            k: m.get(k) for k in ("eval_mean_return", "eval_std_return", "eval_episodes", "random_mean_return",
                                  "timesteps", "n_parameters", "trunk_parameters", "copied_from")}
    return out


def _vision(root: Path) -> dict[str, Any] | None:
    path = root / "vision" / "metrics.json"
    if not path.is_file():
        return None
    m: dict[str, Any] = read_json(path, "vision metrics")
    pngs = sorted(str(p.relative_to(root)) for p in (root / "vision").rglob("*.png"))
    return {"metrics": m, "images": pngs}


def _findings(summary: Mapping[str, Any]) -> list[str]:
    """Sentences stating which differences lie outside their intervals."""
    lines: list[str] = []
    for target, t in summary["transfer"]["targets"].items():
        tp = t["transfer_percent"]
        n = len(t["seeds"])
        for method, v in tp.items():
            if method == SCRATCH:
                continue
            iv = f"{_fmt(v['iqm'])}% [{_fmt(v['low'])}, {_fmt(v['high'])}]"
            if not (_finite(v["low"]) and _finite(v["high"])):
                seeds = "one seed" if n == 1 else f"{n} seeds"
                lines.append(f"On {target}, **{method}** reaches a transfer % of {_fmt(v['iqm'])} with {seeds}: "
                             "no interval, so no claim either way; run more seeds.")
                continue
            if v["low"] > 100:
                verdict = "learns faster than from scratch: the interval lies above 100%"
            elif v["high"] < 100:
                verdict = "learns slower than from scratch (negative transfer): the interval lies below 100%"
            else:
                verdict = "is not distinguishable from training from scratch: the interval contains 100%"
            caveat = (f" — with only {n} seeds the interval is little more than their range: indicative, "
                      "not conclusive" if n < 3 else "")
            lines.append(f"On {target}, **{method}** ({iv}, {n} seeds) {verdict}{caveat}.")
        for label in [m for m in tp if m.split("__")[0] == PROGRESSIVE]:
            control = f"{RANDOM_COLUMN}__{label.rsplit('__', 1)[-1]}"
            if control in tp:
                lines += _progressive_finding(target, tp[label], tp[control])
    s = summary.get("student")
    if s:
        iv = s["expert_normalised_iqm"]
        lines.append(f"The student reaches an expert-normalised IQM of {_iv(iv, 2, single='one game')} "
                     f"over {len(s['per_task'])} games with "
                     f"{s['student_parameters']:,} parameters, {100 * s['student_to_teachers_ratio']:.0f}% of "
                     f"its teachers' {s['teacher_parameters']:,} together"
                     + (" — more data per parameter without losing the experts' skill."
                        if _finite(iv["low"]) and iv["low"] >= 0.9 else "."))
    v = summary.get("vision")
    if v:
        res = v["metrics"]["results"]
        guided = {k: r.get("generate", {}).get("accuracy") for k, r in res.items()
                  if r.get("generate", {}).get("accuracy") is not None}
        probe = {k: r.get("probe", {}).get("accuracy") for k, r in res.items()
                 if r.get("probe", {}).get("accuracy") is not None}
        if guided:
            best = max(guided, key=lambda k: guided[k])
            worst = min(guided, key=lambda k: guided[k])
            lines.append(f"Vision (one seed, so no intervals): guided generation is most accurate with "
                         f"`{best}` ({100 * guided[best]:.1f}%) and least with `{worst}` ({100 * guided[worst]:.1f}%); "
                         f"linear probes range {100 * min(probe.values()):.1f}–{100 * max(probe.values()):.1f}%. "
                         "Differences of a few points between trunks are within seed-to-seed variation.")
    return lines


def _progressive_finding(target: str, p: Mapping[str, Any], r: Mapping[str, Any]) -> list[str]:
    """The sentence comparing a progressive column with its random-frozen-column control."""
    if not all(_finite(x) for x in (p["low"], p["high"], r["low"], r["high"])):
        return []
    if p["low"] > r["high"]:
        return [f"On {target}, the progressive network with a trained expert column beats the random-frozen-column "
                "control outside both intervals: the gain is transfer, not extra capacity."]
    if p["high"] < r["low"]:
        return [f"On {target}, the random-frozen-column control beats the progressive network outside both "
                "intervals: the expert column's features hurt here."]
    return [f"On {target}, the progressive network and the random-frozen-column control overlap: their difference "
            "cannot be told from extra capacity at this budget."]


def build_report(root: str | Path) -> dict[str, Any]:
    """Write ``report.md``, ``summary.json`` and ``plots/`` of an experiment folder.

    Args:
        root: the experiment folder (it must hold the ``config.yaml`` of ``policyshare run``).

    Returns:
        The summary (also ``summary.json``).

    Raises:
        UserError: not an experiment folder, or no finished transfer runs to report.
        CheckpointError: a corrupt result file.
    """
    root = Path(root)
    if not (root / "config.yaml").is_file():
        raise UserError(f"{root} is not an experiment folder (no config.yaml of policyshare run); pass "
                        "the folder `policyshare run` printed, e.g. runs/quickstart")
    raw = read_yaml(root / "config.yaml")
    try:
        cfg = from_dict(ExperimentConfig, raw, str(root / "config.yaml"))
    except UserError as e:
        raise UserError(f"{root} is not an experiment folder of policyshare run ({e}); pass the folder "
                        "`policyshare run` printed, e.g. runs/quickstart") from None
    inputs = report_inputs(root)
    summary: dict[str, Any] = {
        "name": cfg.name, "description": cfg.description, "algo": cfg.algo,
        "sources": {t: cfg.sources_for(t) for t in cfg.target_games}, "targets": cfg.target_games,
        "seeds": cfg.seeds, "transfer_timesteps": cfg.transfer.timesteps,
        "confidence": cfg.report.confidence, "bootstrap_reps": cfg.report.bootstrap_reps,
        "alignments": cfg.alignments, "upstream_seeds": {"experts": cfg.experts.seeds,
                                                         "distill": cfg.distill.seeds or cfg.experts.seeds,
                                                         "multitask": cfg.multitask.seeds or cfg.experts.seeds},
        "experts": _experts(root, cfg), "student": _student(root, cfg), "upstream_runs": _upstream_runs(root),
        "transfer": _transfer(root, cfg), "vision": _vision(root),
    }
    if not summary["transfer"]["targets"]:
        raise UserError(f"{root} has no finished transfer runs to report; run the experiment first")
    summary["parameters"] = _parameters(summary)
    summary["findings"] = _findings(summary)
    summary["inputs"] = inputs
    atomic_write_text(root / "report.md", render(summary))
    atomic_write_json(root / "summary.json", summary)
    return summary


def _parameters(summary: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"experts": {g: e.get("n_parameters") for g, e in summary["experts"].items()}}
    out["experts_total"] = sum(v for v in out["experts"].values() if v)
    s = summary.get("student")
    if s:
        out["student"] = s["student_parameters"]
        out["student_feature_maps_training_only"] = s.get("feature_map_parameters")
        out["teachers_total"] = s["teacher_parameters"]
    for target, t in summary["transfer"]["targets"].items():
        out[f"transfer/{target}"] = t["parameters"]
    return out


def _networks_sections(summary: Mapping[str, Any]) -> list[str]:
    """The report's parameter counts, students and multi-task networks, and experts."""
    L: list[str] = []
    p = summary["parameters"]
    L += ["## Parameter counts", ""]
    rows = [[f"expert {g}", f"{n:,}" if n else "—"] for g, n in p["experts"].items()]
    rows.append(["experts together", f"{p['experts_total']:,}"])
    if "student" in p:
        rows.append(["student (one network for every source game)", f"{p['student']:,}"])
        rows.append(["  + feature-regression maps (training only)", f"{p['student_feature_maps_training_only']:,}"])
    for key, methods in p.items():
        if key.startswith("transfer/"):
            for m, v in methods.items():
                rows.append([f"{m} on {key.split('/', 1)[1]} (total)", f"{v['total']:,}" if v.get("total") else "—"])
    L += markdown_table(["network", "parameters"], rows) + [""]

    u = summary.get("upstream_runs")
    if u:
        L += ["## Students and multi-task networks", "",
              "Expert-normalised score = (return − random) / (expert − random) per game; IQM over the network's "
              "games. Multi-task networks have no expert return of their own (— here).", ""]
        rows = [[f"`{k}`", _iv(v["expert_normalised_iqm"] or {}, 3, key="point", single="one game"),
                 f"{int(v['env_steps']):,}" if v.get("env_steps") else "—"] for k, v in u.items()]
        L += markdown_table(["run", "expert-normalised IQM", "env steps"], rows) + [""]

    e = summary["experts"]
    if e:
        L += ["## Experts", ""]
        rows = [[g, _fmt(v["eval_mean_return"], 2), _fmt(v["eval_std_return"], 2), _fmt(v["random_mean_return"], 2),
                 f"{int(v['timesteps']):,}" if v.get("timesteps") else "—"] for g, v in e.items()]
        L += markdown_table(["game", "return", "std", "random", "env steps"], rows) + [""]

    return L


def render(summary: Mapping[str, Any]) -> str:
    """The Markdown report of a summary."""
    level = confidence_label(summary.get("confidence", 0.95))
    L: list[str] = [f"# {summary['name']}: does sharing the lower conv layers pay off?", ""]
    if summary["description"]:
        L += [summary["description"], ""]
    sources = {", ".join(v) for v in summary["sources"].values()}
    where = (f"Sources: {sources.pop()}" if len(sources) == 1 else
             "Sources: for each target the other games (leave-one-game-out)")
    ups = summary.get("upstream_seeds", {})
    L += [f"{where}. Held-out targets: {', '.join(summary['targets'])}. "
          f"Algorithm: {summary['algo']}. Target seeds: {', '.join(map(str, summary['seeds']))}; upstream seeds: "
          + "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in ups.items())
          + f" (target seed number i uses upstream seed number i mod U). Alignments: "
          f"{', '.join(summary.get('alignments', []))}. Transfer runs: {summary['transfer_timesteps']:,} env steps "
          "each.", "",
          "## What this run shows", ""]
    L += [f"- {line}" for line in summary["findings"]] + [""]

    L += ["## Transfer to the held-out games", "",
          "Transfer % = area under the learning curve ÷ the from-scratch run's of the same seed × 100 "
          "(Rusu et al. 2016, Table 1); 100 % = no transfer. Aggregates: interquartile mean over seeds with a "
          f"{level} stratified bootstrap interval (Agarwal et al. 2021, rliable); one seed gives no interval. "
          "Rows are arms: method, source game, alignment. `<method>__mean-over-sources__<alignment>` averages "
          "the sources' transfer % per seed; `<method>__best-source__<alignment>` repeats the source with the "
          "highest IQM here (chosen on these very runs: an optimistic figure).", ""]
    for target, t in summary["transfer"]["targets"].items():
        tp = t["transfer_percent"]
        rows = [[m, _iv(tp[m]) if m != SCRATCH else "100 (reference)",
                 " ".join(f"{_fmt(v)}" for v in tp[m]["per_seed"].values()),
                 _fmt(t["final_return_mean"].get(m), 2)] for m in tp]
        L += [f"### {target}", ""]
        L += markdown_table(["method", f"transfer % IQM [{level} CI]", "per seed", "final return (mean over seeds)"],
                            rows)
        L += ["", f"![learning curves]({t['plots']['curves']})", f"![transfer %]({t['plots']['transfer']})", ""]
    if "aggregate" in summary["transfer"]:
        rows = [[m, _iv(v, key="point")] for m, v in summary["transfer"]["aggregate"].items()]
        L += ["### All targets together", ""] + markdown_table(["method", f"transfer % IQM [{level} CI]"], rows) + [""]

    s = summary.get("student")
    if s:
        L += ["## The Actor-Mimic student", "",
              "Expert-normalised score = (student − random) / (teacher − random), per game; IQM over games with a "
              f"{level} bootstrap interval over games.", ""]
        rows = [[t, _fmt(r["student_return"], 2), _fmt(r["teacher_return"], 2), _fmt(r["random_return"], 2),
                 _fmt(r["expert_normalised"], 3), _fmt(r.get("agreement"), 3)] for t, r in s["per_task"].items()]
        L += markdown_table(["game", "student", "teacher", "random", "expert-normalised", "agreement"], rows)
        iv = s["expert_normalised_iqm"]
        L += ["", f"IQM: {_iv(iv, 3, single='one game')}; "
              f"{s['env_steps_per_task']:,} env steps per game.", "", f"![student]({s['plot']})", ""]

    L += _networks_sections(summary)

    v = summary.get("vision")
    if v:
        from policyshare.vision.compare import TEXTURE_LEGEND, texture_gallery_markdown
        from policyshare.vision.compare import markdown_table as vision_table

        L += ["## Vision: the same trunks classify and guide generation", "", vision_table(v["metrics"]), "",
              TEXTURE_LEGEND, ""]
        L += [f"![{Path(img).stem}]({img})" for img in v["images"] if "grid" in img or "sample" in img][:12]
        L += ["", texture_gallery_markdown(v["metrics"], prefix="vision/").replace("## Textures", "### Textures")]
    L += ["## Where everything is", "",
          "- `experts/<env>/<alignment>__s<seed>/`, `distill/<games>/<alignment>__s<seed>/`, "
          "`multitask/<games>/<alignment>__s<seed>/`, `transfer/<env>/<method>[__<source>][__<alignment>]__s<seed>/`, "
          "`vision/`: the run folders (config, TensorBoard events, checkpoints, metrics); a transfer run's "
          "`config.yaml` names the upstream run and seed it started from (`upstream`).",
          "- `tensorboard --logdir .` overlays every run by name; compared runs share tag names.",
          "- `summary.json`: every figure of this report; `policyshare report .` rebuilds it.", ""]
    return "\n".join(L)
