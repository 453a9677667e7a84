"""The experiment report: ``report.md``, ``summary.json`` and plots, from run folders alone.

:func:`build_report` reads an experiment folder (see :mod:`policyshare.experiment`) — the
experts' ``metrics.json``, the student's ``metrics.json``, every transfer run's
``evaluations.json`` and ``metrics.json``, the vision comparison's ``metrics.json`` — and writes:

* learning curves per target and method with bootstrap bands (``plots/curves_<env>.png``);
* transfer % per method (area under the learning curve ÷ scratch's, per seed; Rusu et al. 2016)
  as an interquartile mean with a stratified bootstrap interval (Agarwal et al. 2021, rliable),
  per target and over all targets (``plots/transfer.png``);
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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.config import from_dict, read_yaml
from policyshare.curves import save_figure
from policyshare.errors import UserError
from policyshare.experiment.config import ExperimentConfig
from policyshare.experiment.layout import expert_dir, report_inputs, transfer_dir
from policyshare.io import atomic_write_json, atomic_write_text, read_json
from policyshare.metrics import confidence_label, format_interval
from policyshare.runs import slug


def _interval_figure(rows: Mapping[str, Mapping[str, float]], title: str, ylabel: str,
                     reference: float | None) -> Any:
    """Points with interval bars, one per label (a matplotlib figure, laid out by matplotlib's
    constrained layout; the title and y label are wrapped to the figure's width and height, so
    that neither is cut off nor runs into the other)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(rows)
    width, height = max(4.0, 1.1 * len(labels) + 1.5), 3.6
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    x = np.arange(len(labels))
    point = np.array([rows[k]["point"] for k in labels], float)
    low = np.array([rows[k]["low"] for k in labels], float)
    high = np.array([rows[k]["high"] for k in labels], float)
    ax.errorbar(x, point, yerr=[np.nan_to_num(point - low), np.nan_to_num(high - point)], fmt="o",
                capsize=5)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    # About 9 characters per inch at 10 pt (at 9 pt for the y label, less the axes' margins).
    ax.set_ylabel(textwrap.fill(ylabel, max(16, int(9 * (height - 1.2)))), fontsize=9)
    ax.set_title(textwrap.fill(title, max(20, int(8.5 * width))), fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return fig


def _interval_plot(rows: Mapping[str, Mapping[str, float]], path: Path, title: str, ylabel: str,
                   reference: float | None) -> Path:
    """:func:`_interval_figure`, written as a PNG."""
    return save_figure(_interval_figure(rows, title, ylabel, reference), path)


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
    """Per target: curves, final returns, transfer % per seed and IQM interval; plus the
    aggregate over targets."""
    from policyshare.curves import Curve, load_curve, plot_curves, transfer_summary
    from policyshare.metrics import iqm_intervals

    out: dict[str, Any] = {"targets": {}}
    level = confidence_label(cfg.report.confidence)
    per_method_scores: dict[str, list[list[float]]] = {}
    for target in cfg.targets:
        curves: dict[str, dict[int, Curve]] = {}
        finals: dict[str, dict[str, float]] = {}
        params: dict[str, Any] = {}
        for method in cfg.transfer.methods:
            for seed in cfg.seeds:
                run = transfer_dir(root, target, method, seed)
                if not (run / "metrics.json").is_file():
                    continue
                m = read_json(run / "metrics.json", "run metrics")
                curves.setdefault(method, {})[seed] = load_curve(run)
                finals.setdefault(method, {})[str(seed)] = float(m["eval_mean_return"])
                params[method] = {"total": m.get("n_parameters"), "trunk": m.get("trunk_parameters")}
        if "scratch" not in curves:
            continue
        summary = transfer_summary(curves, "scratch", seed=0, reps=cfg.report.bootstrap_reps,
                                   confidence=cfg.report.confidence)
        plot = plot_curves({m: [curves[m][s] for s in sorted(curves[m])] for m in curves},
                           root / "plots" / f"curves_{slug(target)}.png",
                           title=f"{target}: learning curves per method (mean, {level} bootstrap band)",
                           confidence=cfg.report.confidence)
        rows = {m: {"point": v["iqm"], "low": v["low"], "high": v["high"]} for m, v in summary.items()
                if m != "scratch"}
        tplot = _interval_plot(rows, root / "plots" / f"transfer_{slug(target)}.png",
                               f"{target}: transfer % (IQM, {level} stratified bootstrap)", "transfer %", 100.0)
        out["targets"][target] = {
            "transfer_percent": summary, "final_returns": finals,
            "final_return_mean": {m: float(np.mean(list(v.values()))) for m, v in finals.items()},
            "parameters": params, "seeds": sorted({s for v in curves.values() for s in v}),
            "plots": {"curves": str(plot.relative_to(root)), "transfer": str(tplot.relative_to(root))},
        }
        for method, v in summary.items():
            per_method_scores.setdefault(method, []).append(
                [v["per_seed"].get(str(s), float("nan")) for s in cfg.seeds])
    if len(out["targets"]) > 1:
        arrays = {m: np.array(v, float).T for m, v in per_method_scores.items() if m != "scratch"}
        agg = iqm_intervals(arrays, reps=cfg.report.bootstrap_reps, confidence=cfg.report.confidence)
        out["aggregate"] = {m: iv.as_dict() for m, iv in agg.items()}
    return out


def _student(root: Path, cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The student's scores, with its IQM over games recomputed at the report's confidence."""
    from policyshare.metrics import iqm_intervals

    path = root / "distill" / "metrics.json"
    if not path.is_file():
        return None
    m = read_json(path, "student metrics")
    scores = [r["expert_normalised"] if _finite(r["expert_normalised"]) else np.nan for r in m["per_task"].values()]
    iqm = iqm_intervals({"student": np.array([scores], float)}, reps=cfg.report.bootstrap_reps,
                        confidence=cfg.report.confidence, seed=cfg.distill.seed, task_bootstrap=True)["student"]
    rows = {t.split("/")[-1]: {"point": v, "low": v, "high": v} for t, v in zip(m["per_task"], scores)}
    rows["IQM"] = iqm.as_dict()
    plot = _interval_plot(rows, root / "plots" / "student.png",
                          f"student: expert-normalised score per game (IQM: "
                          f"{confidence_label(cfg.report.confidence)} bootstrap over games)",
                          "(student − random) / (teacher − random)", 1.0)
    return {**m, "expert_normalised_iqm": iqm.as_dict(), "plot": str(plot.relative_to(root))}


def _experts(root: Path, cfg: ExperimentConfig) -> dict[str, Any]:
    out = {}
    for game in cfg.sources:
        p = expert_dir(root, game) / "metrics.json"
        if p.is_file():
            m = read_json(p, "expert metrics")
            out[game] = {k: m.get(k) for k in ("eval_mean_return", "eval_std_return", "eval_episodes",
                                               "random_mean_return", "timesteps", "n_parameters",
                                               "trunk_parameters", "copied_from")}
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
            if method == "scratch":
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
        if "progressive" in tp and "random_column" in tp:
            p, r = tp["progressive"], tp["random_column"]
            if not all(_finite(x) for x in (p["low"], p["high"], r["low"], r["high"])):
                pass
            elif p["low"] > r["high"]:
                lines.append(f"On {target}, the progressive network with a trained expert column beats the "
                             "random-frozen-column control outside both intervals: the gain is transfer, not "
                             "extra capacity.")
            elif p["high"] < r["low"]:
                lines.append(f"On {target}, the random-frozen-column control beats the progressive network "
                             "outside both intervals: the expert column's features hurt here.")
            else:
                lines.append(f"On {target}, the progressive network and the random-frozen-column control "
                             "overlap: their difference cannot be told from extra capacity at this budget.")
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
        "name": cfg.name, "description": cfg.description, "algo": cfg.algo, "sources": cfg.sources,
        "targets": cfg.targets, "seeds": cfg.seeds, "transfer_timesteps": cfg.transfer.timesteps,
        "confidence": cfg.report.confidence, "bootstrap_reps": cfg.report.bootstrap_reps,
        "experts": _experts(root, cfg), "student": _student(root, cfg), "transfer": _transfer(root, cfg),
        "vision": _vision(root),
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


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render(summary: Mapping[str, Any]) -> str:
    """The Markdown report of a summary."""
    level = confidence_label(summary.get("confidence", 0.95))
    L: list[str] = [f"# {summary['name']}: does sharing the lower conv layers pay off?", ""]
    if summary["description"]:
        L += [summary["description"], ""]
    L += [f"Sources: {', '.join(summary['sources'])}. Held-out targets: {', '.join(summary['targets'])}. "
          f"Algorithm: {summary['algo']}. Seeds: {', '.join(map(str, summary['seeds']))}. "
          f"Transfer runs: {summary['transfer_timesteps']:,} env steps each.", "",
          "## What this run shows", ""]
    L += [f"- {line}" for line in summary["findings"]] + [""]

    L += ["## Transfer to the held-out games", "",
          "Transfer % = area under the learning curve ÷ the from-scratch run's of the same seed × 100 "
          "(Rusu et al. 2016, Table 1); 100 % = no transfer. Aggregates: interquartile mean over seeds with a "
          f"{level} stratified bootstrap interval (Agarwal et al. 2021, rliable); one seed gives no interval.", ""]
    for target, t in summary["transfer"]["targets"].items():
        tp = t["transfer_percent"]
        rows = [[m, _iv(tp[m]) if m != "scratch" else "100 (reference)",
                 " ".join(f"{_fmt(v)}" for v in tp[m]["per_seed"].values()),
                 _fmt(t["final_return_mean"].get(m), 2)] for m in tp]
        L += [f"### {target}", ""]
        L += _table(["method", f"transfer % IQM [{level} CI]", "per seed", "final return (mean over seeds)"], rows)
        L += ["", f"![learning curves]({t['plots']['curves']})", f"![transfer %]({t['plots']['transfer']})", ""]
    if "aggregate" in summary["transfer"]:
        rows = [[m, _iv(v, key="point")] for m, v in summary["transfer"]["aggregate"].items()]
        L += ["### All targets together", ""] + _table(["method", f"transfer % IQM [{level} CI]"], rows) + [""]

    s = summary.get("student")
    if s:
        L += ["## The Actor-Mimic student", "",
              "Expert-normalised score = (student − random) / (teacher − random), per game; IQM over games with a "
              f"{level} bootstrap interval over games.", ""]
        rows = [[t, _fmt(r["student_return"], 2), _fmt(r["teacher_return"], 2), _fmt(r["random_return"], 2),
                 _fmt(r["expert_normalised"], 3), _fmt(r.get("agreement"), 3)] for t, r in s["per_task"].items()]
        L += _table(["game", "student", "teacher", "random", "expert-normalised", "agreement"], rows)
        iv = s["expert_normalised_iqm"]
        L += ["", f"IQM: {_iv(iv, 3, single='one game')}; "
              f"{s['env_steps_per_task']:,} env steps per game.", "", f"![student]({s['plot']})", ""]

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
    L += _table(["network", "parameters"], rows) + [""]

    e = summary["experts"]
    if e:
        L += ["## Experts", ""]
        rows = [[g, _fmt(v["eval_mean_return"], 2), _fmt(v["eval_std_return"], 2), _fmt(v["random_mean_return"], 2),
                 f"{int(v['timesteps']):,}" if v.get("timesteps") else "—"] for g, v in e.items()]
        L += _table(["game", "return", "std", "random", "env steps"], rows) + [""]

    v = summary.get("vision")
    if v:
        from policyshare.vision.compare import TEXTURE_LEGEND, markdown_table, texture_gallery_markdown

        L += ["## Vision: the same trunks classify and guide generation", "", markdown_table(v["metrics"]), "",
              TEXTURE_LEGEND, ""]
        L += [f"![{Path(img).stem}]({img})" for img in v["images"] if "grid" in img or "sample" in img][:12]
        L += ["", texture_gallery_markdown(v["metrics"], prefix="vision/").replace("## Textures", "### Textures")]
    L += ["## Where everything is", "",
          "- `experts/`, `distill/`, `transfer/<env>/<method>__s<seed>/`, `vision/`: the run folders "
          "(config, TensorBoard events, checkpoints, metrics).",
          "- `tensorboard --logdir .` overlays every run by name; compared runs share tag names.",
          "- `summary.json`: every figure of this report; `policyshare report .` rebuilds it.", ""]
    return "\n".join(L)
