"""The experiment report: ``report.md``, ``summary.json`` and plots, from run folders alone.

:func:`build_report` reads an experiment folder (see :mod:`policyshare.experiment`) — the
experts', students' and multi-task networks' ``metrics.json``, every transfer run's
``evaluations.json``, ``metrics.json`` and ``config.yaml`` (its ``upstream``), the vision
comparison's ``metrics.json`` — and writes:

* **per held-out target** (:mod:`~policyshare.experiment.report_targets`): every arm (method ×
  source × alignment, and for the methods run from every source the mean over sources and the best
  source) through :func:`~policyshare.comparison.compare_methods` on the greedy-evaluation curves,
  and a table on the training-episode curves: every metric (transfer % where scratch is clearly
  above random, normalised area gain, forward transfer, expert-normalised return at 10/50/100 % of
  the budget, normalised area), each a value with a confidence interval, a labelled range of too
  few seeds, or undefined with the reason; runs that start from an upstream artifact keyed by
  ``(upstream seed, target seed)`` (hierarchical intervals); P(> scratch); the env steps charged
  upstream to each row beside its score; curves, gain and performance-profile plots;
* **across targets** (:mod:`~policyshare.experiment.report_claims`): the expert-normalised scores
  (normalised area, return at 100 %) of every row family aggregated with rliable (IQM,
  stratified over targets), P(> scratch), performance profiles;
* **verdicts** on the four claims — (a) sharing helps transfer to a held-out game, (b) the student
  transfers better than single experts, (c) progressive beats its random-column control, (d)
  sharing gives more per parameter (from ``summary["capacity"]``, written by the capacity study;
  :func:`~policyshare.experiment.report_claims.capacity_claim`) — each *supported*, *refuted*,
  *undecided at this budget* (with about how many seeds would decide it) or *no verdict* (too few
  runs: ranges, not intervals), with the seeds and env steps behind it;
* the students' and multi-task networks' scores, parameter counts, experts, the vision table;
* ``summary.json`` (strict JSON: undefined values are ``null`` with their reasons) with every
  figure and the list of inputs it was built from (so a rerun of ``policyshare run`` skips an
  up-to-date report).

Every interval uses the config's ``report.confidence`` and ``report.bootstrap_reps``, and says
what it is. ``policyshare report RUN_DIR`` rebuilds all of it; :func:`render` turns a summary (the
file's contents) back into the Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.comparison import format_interval_record, markdown_table, plot_intervals, plot_profiles
from policyshare.config import from_dict, read_yaml
from policyshare.errors import UserError
from policyshare.experiment.config import ExperimentConfig
from policyshare.experiment.design import vision_student
from policyshare.experiment.layout import report_inputs, upstream_dir
from policyshare.experiment.report_claims import (
    ACROSS_METRICS,
    across_profiles,
    across_targets,
    capacity_claim,
    claims,
)
from policyshare.experiment.report_targets import TargetResult, target_comparisons, target_summary
from policyshare.io import atomic_write_json, atomic_write_text, read_json
from policyshare.methods import DESCRIPTIONS
from policyshare.metrics import confidence_label, format_interval


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


def _transfer(root: Path, cfg: ExperimentConfig) -> tuple[dict[str, Any], list[TargetResult]]:
    """Per target the comparisons (:func:`~policyshare.experiment.report_targets.target_summary`),
    and across targets the families' aggregates and profiles plot."""
    results = [r for r in (target_comparisons(root, cfg, t) for t in cfg.target_games) if r is not None]
    out: dict[str, Any] = {"targets": {r.target: target_summary(root, r, cfg.report.confidence) for r in results}}
    if not results:
        return out, results
    out["across_targets"] = {"n_targets": len(results), "scores": across_targets(results),
                             "metrics": dict(ACROSS_METRICS), "curve": "greedy evaluation"}
    profiles = across_profiles(results)
    if profiles:
        path = plot_profiles(profiles, root / "plots" / "profiles.png",
                             f"performance profiles over {len(results)} held-out target(s) (greedy evaluation)",
                             "normalised area: mean (return − random) / (expert − random) over the budget")
        out["across_targets"]["profiles"] = {
            "plot": str(path.relative_to(root)), "taus": next(iter(profiles.values())).taus.tolist(),
            "families": {f: {"fraction": p.fraction.tolist(), "low": p.low.tolist(), "high": p.high.tolist()}
                         for f, p in profiles.items()}}
    return out, results


def _findings(summary: Mapping[str, Any]) -> list[str]:
    """The claims' sentences, then what the student and the vision stage show (no claim from them)."""
    lines = [c["text"] for c in summary["claims"].values()]
    s = summary.get("student")
    if s:
        iv = s["expert_normalised_iqm"]
        lines.append(f"The student ({s['run']}) reaches an expert-normalised IQM of {_iv(iv, 2, single='one game')} "
                     f"over {len(s['per_task'])} games with {s['student_parameters']:,} parameters, "
                     f"{100 * s['student_to_teachers_ratio']:.0f}% of its teachers' {s['teacher_parameters']:,} "
                     "together; whether that is more per parameter is claim (d)'s to say.")
    v = summary.get("vision")
    if v:
        res = v["metrics"]["results"]
        guided = {k: r.get("generate", {}).get("accuracy") for k, r in res.items()
                  if r.get("generate", {}).get("accuracy") is not None}
        probe = {k: r.get("probe", {}).get("accuracy") for k, r in res.items()
                 if r.get("probe", {}).get("accuracy") is not None}
        if guided and probe:
            best, worst = max(guided, key=lambda k: guided[k]), min(guided, key=lambda k: guided[k])
            lines.append(f"Vision (one seed, so no intervals): guided generation is most accurate with "
                         f"`{best}` ({100 * guided[best]:.1f}%) and least with `{worst}` ({100 * guided[worst]:.1f}%); "
                         f"linear probes range {100 * min(probe.values()):.1f}–{100 * max(probe.values()):.1f}%. "
                         "Differences of a few points between trunks are within seed-to-seed variation.")
    return lines


def _load_config(root: Path) -> ExperimentConfig:
    if not (root / "config.yaml").is_file():
        raise UserError(f"{root} is not an experiment folder (no config.yaml of policyshare run); pass "
                        "the folder `policyshare run` printed, e.g. runs/quickstart")
    try:
        return from_dict(ExperimentConfig, read_yaml(root / "config.yaml"), str(root / "config.yaml"))
    except UserError as e:
        raise UserError(f"{root} is not an experiment folder of policyshare run ({e}); pass the folder "
                        "`policyshare run` printed, e.g. runs/quickstart") from None


def _capacity(root: Path, cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The capacity study's section (:mod:`~policyshare.experiment.capacity_report`) with its
    Markdown table and plot, or ``None`` where the experiment has no capacity stage."""
    from policyshare.experiment.capacity_report import capacity_markdown, capacity_summary, plot_capacity

    cap = capacity_summary(root, cfg)
    if cap is None:
        return None
    plot = plot_capacity(cap, root / "plots" / "capacity.png")
    return {**cap, "table": [*capacity_markdown(cap), "", f"![capacity]({plot.relative_to(root)})"]}


def build_report(root: str | Path, capacity: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``summary.json`` and ``plots/`` of an experiment folder.

    Args:
        root: the experiment folder (it must hold the ``config.yaml`` of ``policyshare run``).
        capacity: the capacity study's section (``summary["capacity"]``; see
            :func:`~policyshare.experiment.report_claims.capacity_claim`); default: the one the
            folder's ``capacity/summary.json`` holds, if any.

    Returns:
        The summary (also ``summary.json``).

    Raises:
        UserError: not an experiment folder, or no finished transfer runs to report.
        CheckpointError: a corrupt result file.
    """
    root = Path(root)
    cfg = _load_config(root)
    inputs = report_inputs(root)
    if capacity is None and (root / "capacity" / "summary.json").is_file():
        capacity = read_json(root / "capacity" / "summary.json", "capacity study")
    if capacity is None:
        capacity = _capacity(root, cfg)
    transfer, results = _transfer(root, cfg)
    if not results:
        raise UserError(f"{root} has no finished transfer runs to report; run the experiment first")
    summary: dict[str, Any] = {
        "name": cfg.name, "description": cfg.description, "algo": cfg.algo,
        "sources": {t: cfg.sources_for(t) for t in cfg.target_games}, "targets": cfg.target_games,
        "seeds": cfg.seeds, "transfer_timesteps": cfg.transfer.timesteps,
        "confidence": cfg.report.confidence, "bootstrap_reps": cfg.report.bootstrap_reps,
        "alignments": cfg.alignments, "upstream_seeds": {"experts": cfg.experts.seeds,
                                                         "distill": cfg.distill.seeds or cfg.experts.seeds,
                                                         "multitask": cfg.multitask.seeds or cfg.experts.seeds},
        "experts": _experts(root, cfg), "student": _student(root, cfg), "upstream_runs": _upstream_runs(root),
        "transfer": transfer, "vision": _vision(root),
        **({"capacity": dict(capacity)} if capacity else {}),
        "claims": claims(results, cfg.alignments, capacity),
    }
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


def _steps_cell(parts: Mapping[str, int]) -> str:
    """``"1,000,448 (experts)"``, ``"2,001,920 (experts 2,000,896 + distillation 1,024)"`` or ``"0"``."""
    parts = {k: int(v) for k, v in parts.items() if v}
    if not parts:
        return "0"
    total = sum(parts.values())
    if len(parts) == 1:
        return f"{total:,} ({next(iter(parts))})"
    return f"{total:,} (" + " + ".join(f"{k} {v:,}" for k, v in parts.items()) + ")"


def _setup(summary: Mapping[str, Any]) -> list[str]:
    sources = {", ".join(v) for v in summary["sources"].values()}
    where = (f"Sources: {sources.pop()}" if len(sources) == 1 else
             "Sources: for each target the other games (leave-one-game-out)")
    ups = summary.get("upstream_seeds", {})
    return [f"{where}. Held-out targets: {', '.join(summary['targets'])}. "
            f"Algorithm: {summary['algo']}. Target seeds: {', '.join(map(str, summary['seeds']))}; upstream seeds: "
            + "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in ups.items())
            + " (target seed number i uses upstream seed number i mod U; a run that starts from an upstream "
            "artifact is keyed `u<upstream seed>-s<target seed>` and its intervals resample upstream seeds, then "
            f"target seeds). Alignments: {', '.join(summary.get('alignments', []))}. Transfer runs: "
            f"{summary['transfer_timesteps']:,} env steps each.", ""]


def _claims_section(summary: Mapping[str, Any]) -> list[str]:
    cl = dict(summary.get("claims", {}))
    cl["d"] = capacity_claim(summary.get("capacity"))
    L = ["## Verdicts on the four claims", "",
         "Each claim is judged on the normalised area of the greedy-evaluation curves: *supported* when the "
         f"{confidence_label(summary.get('confidence', 0.95))} interval of the difference lies above 0 and that of "
         "P(A > B) above 0.5, *refuted* when both lie below, *undecided at this budget* otherwise (with about how "
         "many seeds per method would decide it), and *no verdict* when there are too few runs for a confidence "
         "interval (the figures are then ranges of the seeds). Env steps charged upstream (experts, distillation, "
         "multi-task training) are given beside each method.", ""]
    for c in cl.values():
        L.append(f"- {c['text']}")
        L += [f"  - {p['text']}" for p in c.get("parts", []) if p.get("text")]
    cap = summary.get("capacity")
    if cap:
        L += ["", "### Data per parameter (capacity study)", "", *cap.get("table", []), *cap.get("notes", [])]
    return [*L, ""]


def _across_section(summary: Mapping[str, Any]) -> list[str]:
    a = summary["transfer"].get("across_targets")
    if not a:
        return []
    level = confidence_label(summary.get("confidence", 0.95))
    n = a["n_targets"]
    L = [f"## Across the held-out targets ({n} target{'s' if n != 1 else ''})", "",
         "Curve: **greedy evaluation**. Per row family (the row without its source game, which differs between "
         "targets) the expert-normalised scores of every run on every target: IQM with a "
         f"{level} bootstrap interval stratified over targets (rliable; runs that start from an upstream artifact "
         "resampled by upstream seed, then target seed), or a labelled range with too few runs; P(> scratch): the "
         "mean over targets of rliable's probability of improvement of the normalised area.", ""]
    head = ["family", "targets", "runs", *a["metrics"].values(), "P(> scratch), normalised area",
            "env steps charged upstream"]
    rows = []
    for fam, v in a["scores"].items():
        poi = v.get("poi_over_scratch")
        rows.append([fam, str(len(v["targets"])), str(v.get("runs") or 0),
                     *(format_interval_record(v[m], ".3g") for m in a["metrics"]),
                     "baseline" if poi is None else format_interval_record(poi, ".2f"),
                     _steps_cell(v["upstream_env_steps"])])
    L += markdown_table(head, rows, align=["---"] * len(head))
    prof = a.get("profiles")
    if prof:
        L += ["", f"![performance profiles, greedy evaluation, all targets]({prof['plot']})"]
    return [*L, ""]


def _target_section(target: str, t: Mapping[str, Any]) -> list[str]:
    L = [f"### {target}", "",
         f"Budget T = {t['budget_env_steps']:,} env steps; random return {t['random_return']:.3g}, expert return "
         + ("none" if t["expert_return"] is None else f"{t['expert_return']:.3g}") + f" ({t['references']}).", ""]
    rows = [[label, r["method"], r["source"] or "—", r["alignment"] or "—",
             _steps_cell(r["upstream_env_steps"]), _fmt(t["final_return_mean"].get(label), 2),
             ", ".join(t["comparison"]["greedy evaluation"]["methods"][label]["seeds"])]
            for label, r in t["rows"].items()]
    L += markdown_table(["row", "method", "source", "alignment", "env steps charged upstream",
                         "final return (mean)", "seeds"], rows, align=["---"] * 7)
    for curve, table in t["tables"].items():
        L += ["", f"**Every metric, {curve} curve.**", "", *table]
    st = t.get("seed_table")
    if st:
        L += ["", "<details><summary>Every run (greedy evaluation)</summary>", "",
              *markdown_table(st["head"], st["rows"], align=["---"] * len(st["head"])), "", "</details>"]
    captions = {"curves": "learning curves (greedy evaluation)", "curves_training": "learning curves "
                "(training episodes)", "gain": "normalised area gain over scratch (greedy evaluation)",
                "profiles": "performance profiles of the normalised area (greedy evaluation)"}
    L += [""] + [f"![{captions[k]}]({p})" for k, p in t["plots"].items() if k in captions]
    return [*L, ""]


def _definitions(summary: Mapping[str, Any]) -> list[str]:
    first = next(iter(summary["transfer"]["targets"].values()))
    metrics = first["comparison"]["greedy evaluation"]["metrics"]
    return [f"- **{m['label']}**: {m['definition']} ({m['source']})." for m in metrics.values()]


def render(summary: Mapping[str, Any]) -> str:
    """The Markdown report of a summary (claim (d) from its ``capacity`` section, if any)."""
    L: list[str] = [f"# {summary['name']}: does sharing the lower conv layers pay off?", ""]
    if summary["description"]:
        L += [summary["description"], ""]
    L += _setup(summary)
    L += ["## What this run shows", ""]
    findings = list(summary["findings"])
    cap = capacity_claim(summary.get("capacity"))["text"]
    L += [f"- {line if not line.startswith('(d) ') else cap}" for line in findings] + [""]
    L += _claims_section(summary)
    L += _across_section(summary)
    L += ["## Transfer to each held-out game", "",
          "Rows are arms: method, source game, alignment; `<method>__mean-over-sources__<alignment>` is per seed the "
          "mean of the sources' curves, `<method>__best-source__<alignment>` repeats the source with the largest "
          "area under its greedy curve (chosen on these very runs: an optimistic figure). Figures, verdicts and "
          "profiles use the **greedy-evaluation** curves; the training-episode table (the curve whose area Rusu et "
          "al. 2016 report) stands beside them. Methods:", ""]
    L += [f"- `{m}`: {d}" for m, d in DESCRIPTIONS.items()] + ["", "Metrics:", "", *_definitions(summary), ""]
    for target, t in summary["transfer"]["targets"].items():
        L += _target_section(target, t)
    s = summary.get("student")
    if s:
        L += ["## The Actor-Mimic student", "",
              "Expert-normalised score = (student − random) / (teacher − random), per game; IQM over games with a "
              f"{confidence_label(summary.get('confidence', 0.95))} bootstrap interval over games.", ""]
        rows = [[t, _fmt(r["student_return"], 2), _fmt(r["teacher_return"], 2), _fmt(r["random_return"], 2),
                 _fmt(r["expert_normalised"], 3), _fmt(r.get("agreement"), 3)] for t, r in s["per_task"].items()]
        L += markdown_table(["game", "student", "teacher", "random", "expert-normalised", "agreement"], rows)
        L += ["", f"IQM: {_iv(s['expert_normalised_iqm'], 3, single='one game')}; "
              f"{s['env_steps_per_task']:,} env steps per game.", "", f"![student]({s['plot']})", ""]
    L += _networks_sections(summary)
    L += _vision_section(summary)
    L += ["## Where everything is", "",
          "- `experts/<env>/<alignment>__s<seed>/`, `distill/<games>/<alignment>__s<seed>/`, "
          "`multitask/<games>/<alignment>__s<seed>/`, `transfer/<env>/<method>[__<source>][__<alignment>]__s<seed>/`, "
          "`vision/`: the run folders (config, TensorBoard events, checkpoints, metrics); a transfer run's "
          "`config.yaml` names the upstream run and seed it started from (`upstream`).",
          "- `tensorboard --logdir .` overlays every run by name; compared runs share tag names.",
          "- `summary.json`: every figure of this report (strict JSON: undefined values are `null` with their "
          "reasons); `policyshare report .` rebuilds it.", ""]
    return "\n".join(L)


def _vision_section(summary: Mapping[str, Any]) -> list[str]:
    v = summary.get("vision")
    if not v:
        return []
    from policyshare.vision.compare import TEXTURE_LEGEND, texture_gallery_markdown
    from policyshare.vision.compare import markdown_table as vision_table

    L = ["## Vision: the same trunks classify and guide generation", "", vision_table(v["metrics"]), "",
         TEXTURE_LEGEND, ""]
    L += [f"![{Path(img).stem}]({img})" for img in v["images"] if "grid" in img or "sample" in img][:12]
    return L + ["", texture_gallery_markdown(v["metrics"], prefix="vision/").replace("## Textures", "### Textures")]
