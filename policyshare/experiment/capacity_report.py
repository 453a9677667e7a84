"""The capacity stages' summary: data per parameter, measured (:mod:`policyshare.experiment.capacity`).

:func:`capacity_summary` reads the run folders alone: per variant and seed the expert-normalised
score ``(return − random) / (expert − random)`` on each of the ``K`` games (expert and random
returns: this experiment's experts on that game, mean over its expert seeds), its IQM over seeds
and games with a stratified bootstrap interval (:func:`policyshare.stats.aggregate`; a range,
not an interval, below :data:`~policyshare.stats.MIN_SEEDS` seeds), the trainable parameters and
the env steps with those spent upstream (a student's teachers). The claim "sharing gives more per
parameter" is judged by :func:`policyshare.stats.verdict`: each shared variant against the ``K``
single-task networks, per seed, at the same budget. :func:`capacity_markdown` and
:func:`plot_capacity` render it. Strict JSON: no ``nan`` (an undefined score is left out of
its seed's row and counted under ``undefined``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.comparison.figures import markdown_table, save_figure
from policyshare.comparison.tables import format_estimate
from policyshare.experiment.capacity import VARIANTS
from policyshare.experiment.capacity_plan import capacity_games, capacity_seeds, run_name
from policyshare.experiment.config import ExperimentConfig
from policyshare.experiment.design import expert, upstream_seeds
from policyshare.io import read_json
from policyshare.metrics import expert_normalised
from policyshare.stats import Estimate, aggregate, verdict

#: The claim of each shared variant against the K single-task networks.
CLAIMS: dict[str, str] = {
    "shared_one": "sharing gives more per parameter: one shared network with 1/K of the parameters beats "
                  "K single-task networks",
    "shared_total": "one shared network with the K networks' parameters beats K single-task networks",
    "multitask": "multi-task PPO (one shared network, same env steps) beats K single-task networks",
}


def _metrics(path: Path) -> dict[str, Any] | None:
    return read_json(path, "capacity metrics") if path.is_file() else None


def _references(root: Path, cfg: ExperimentConfig, games: list[str]) -> dict[str, tuple[float, float] | None]:
    """Per game ``(expert return, random return)``: means over this experiment's experts of it."""
    out: dict[str, tuple[float, float] | None] = {}
    for g in games:
        found = [_metrics(root / expert(cfg, g, cfg.alignments[0], i).name / "metrics.json")
                 for i in range(len(upstream_seeds(cfg, "expert")))]
        got = [m for m in found if m and m.get("eval_mean_return") is not None
               and m.get("random_mean_return") is not None]
        out[g] = ((float(np.mean([m["eval_mean_return"] for m in got])),
                   float(np.mean([m["random_mean_return"] for m in got]))) if got else None)
    return out


def _returns(root: Path, cfg: ExperimentConfig, variant: str, seed: int, games: list[str]
             ) -> tuple[dict[str, float], int, int, int] | None:
    """``(return per game, trainable parameters, own env steps, upstream env steps)`` of one
    finished variant run, or ``None`` while any of its runs is unfinished."""
    if variant == "single":
        ms = [_metrics(root / run_name(cfg, "single", seed, g) / "metrics.json") for g in games]
        if any(m is None for m in ms):
            return None
        return ({g: float(m["eval_mean_return"]) for g, m in zip(games, ms) if m},
                sum(int(m["n_parameters"]) for m in ms if m), sum(int(m["timesteps"]) for m in ms if m), 0)
    m = _metrics(root / run_name(cfg, variant, seed) / "metrics.json")
    if m is None:
        return None
    if variant == "multitask":
        return ({g: float(m["per_task"][g]["eval_mean_return"]) for g in games}, int(m["n_parameters"]),
                int(m["timesteps"]), 0)
    teachers = _returns(root, cfg, "single", seed, games)
    upstream = teachers[2] if teachers is not None else 0
    return ({g: float(m["per_task"][g]["student_return"]) for g in games}, int(m["student_parameters"]),
            int(m["env_steps_per_task"]) * len(games), upstream)


def _variant(root: Path, cfg: ExperimentConfig, variant: str, games: list[str],
             refs: dict[str, tuple[float, float] | None]) -> dict[str, Any]:
    """One variant's per-seed scores, IQM, parameters and env steps."""
    per_seed: dict[str, dict[str, float]] = {}
    params: list[int] = []
    steps: list[int] = []
    upstream: list[int] = []
    undefined: list[str] = []
    for seed in capacity_seeds(cfg):
        got = _returns(root, cfg, variant, seed, games)
        if got is None:
            continue
        returns, n_params, own, up = got
        row: dict[str, float] = {}
        for g, r in returns.items():
            ref = refs[g]
            score = expert_normalised(r, ref[1], ref[0]) if ref is not None else math.nan
            if math.isfinite(score):
                row[g] = score
            else:
                undefined.append(f"s{seed} {g}")
        per_seed[str(seed)] = row
        params.append(n_params)
        steps.append(own)
        upstream.append(up)
    return {"per_seed": per_seed, "trainable_parameters": int(np.mean(params)) if params else None,
            "env_steps": int(np.mean(steps)) if steps else None,
            "upstream_env_steps": int(np.mean(upstream)) if upstream else None,
            "total_env_steps": int(np.mean(steps) + np.mean(upstream)) if steps else None,
            "undefined": undefined}


def _matrix(v: dict[str, Any], seeds: list[str], games: list[str]) -> np.ndarray:
    """``(seeds, games)`` scores of the seeds given, games defined in every one of them."""
    keep = [g for g in games if all(g in v["per_seed"].get(s, {}) for s in seeds)]
    return np.array([[v["per_seed"][s][g] for g in keep] for s in seeds], float).reshape(len(seeds), len(keep))


def capacity_summary(root: str | Path, cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The capacity stages' summary (strict JSON), or ``None`` when ``capacity.enabled`` is false.

    Returns:
        ``games``, ``K``, ``budget`` (env steps over the games), ``seeds``, ``references`` (expert
        and random return per game), ``variants`` (per variant: ``per_seed`` scores per game,
        ``iqm`` (:meth:`~policyshare.stats.Estimate.as_dict`), ``trainable_parameters``,
        ``env_steps``, ``upstream_env_steps``, ``total_env_steps``, ``undefined``), ``verdicts``
        (per shared variant vs ``single``, :meth:`~policyshare.stats.Verdict.as_dict`) and
        ``verdict``: the one on "sharing gives more per parameter" (``shared_one``).
    """
    if not cfg.capacity.enabled:
        return None
    root = Path(root)
    games = capacity_games(cfg)
    refs = _references(root, cfg, games)
    reps, conf = cfg.report.bootstrap_reps, cfg.report.confidence
    variants: dict[str, dict[str, Any]] = {}
    for name in VARIANTS:
        v = _variant(root, cfg, name, games, refs)
        seeds = list(v["per_seed"])
        m = _matrix(v, seeds, games)
        est = (aggregate(m, "iqm", reps=reps, confidence=conf) if m.size else
               Estimate(None, None, None, "none", 0, "no finished run with a defined score", conf))
        v["iqm"] = est.as_dict()
        variants[name] = v
    verdicts: dict[str, Any] = {}
    for name, claim in CLAIMS.items():
        a, b = variants[name], variants["single"]
        seeds = [s for s in a["per_seed"] if s in b["per_seed"]]
        ma, mb = _matrix(a, seeds, games), _matrix(b, seeds, games)
        if not seeds or ma.shape != mb.shape or not ma.size:
            verdicts[name] = {"claim": claim, "outcome": "no verdict", "text": f"{claim}: no verdict (no common "
                              "finished seeds with defined scores)"}
            continue
        verdicts[name] = verdict(ma, mb, env_steps=cfg.capacity.timesteps, claim=claim, paired=True, reps=reps,
                                 confidence=conf).as_dict()
    return {"games": games, "K": len(games), "budget": cfg.capacity.timesteps,
            "seeds": capacity_seeds(cfg),
            "references": {g: ({"expert": r[0], "random": r[1]} if r else None) for g, r in refs.items()},
            "variants": variants, "verdicts": verdicts, "verdict": verdicts["shared_one"]}


def _estimate(d: dict[str, Any]) -> Estimate:
    return Estimate(d["point"], d["low"], d["high"], d["kind"], d["n"], d["note"], d["confidence"])


#: Readable names of the variants.
LABELS: dict[str, str] = {"single": "K single-task networks", "shared_total": "shared, K networks' parameters",
                          "shared_one": "shared, 1/K of them", "multitask": "multi-task PPO"}


def capacity_markdown(summary: dict[str, Any]) -> list[str]:
    """The section of ``report.md``: a table of the variants and the verdict sentences."""
    k = summary["K"]
    lines = [f"At {summary['budget']:,} env steps over {k} games ({', '.join(summary['games'])}), "
             f"{len(summary['seeds'])} seeds: expert-normalised IQM over seeds and games. Shared networks are "
             f"Actor-Mimic students of the {k} single-task networks (their env steps are charged upstream).", ""]
    rows = []
    for name, v in summary["variants"].items():
        def n(x: int | None) -> str:
            return f"{x:,}" if x is not None else "—"
        rows.append([LABELS.get(name, name), format_estimate(_estimate(v["iqm"])), n(v["trainable_parameters"]),
                     n(v["env_steps"]), n(v["upstream_env_steps"]), n(v["total_env_steps"]), str(len(v["per_seed"]))])
    lines += markdown_table(["variant", "IQM", "trainable parameters", "env steps", "upstream env steps",
                             "total env steps", "seeds"], rows)
    lines.append("")
    lines += [f"- {d['text']}" for d in summary["verdicts"].values()]
    return lines


def plot_capacity(summary: dict[str, Any], path: str | Path) -> Path:
    """Two panels: IQM (with its interval) against trainable parameters, and against total env
    steps including upstream ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, xlabel in ((axes[0], "trainable_parameters", "trainable parameters"),
                            (axes[1], "total_env_steps", "total env steps (incl. upstream)")):
        for name, v in summary["variants"].items():
            iqm, x = v["iqm"], v[key]
            if iqm["point"] is None or x is None:
                continue
            low = iqm["point"] - (iqm["low"] if iqm["low"] is not None else iqm["point"])
            high = (iqm["high"] if iqm["high"] is not None else iqm["point"]) - iqm["point"]
            ax.errorbar([x], [iqm["point"]], yerr=[[low], [high]], fmt="o", capsize=4, label=LABELS.get(name, name))
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("expert-normalised IQM")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Data per parameter: {summary['K']} games, {summary['budget']:,} env steps")
    return save_figure(fig, path)


__all__ = ["CLAIMS", "LABELS", "capacity_markdown", "capacity_summary", "plot_capacity"]
