"""Transfer of a saved trunk to a new game, against training from scratch: ``policyshare transfer``.

For every seed, two agents are trained on the target env with the same config, seed and
evaluation steps (:func:`policyshare.train.train`): one whose trunk starts from a trunk file
(a distilled student's, an expert's, a progressive column's) with fresh heads — fine-tuned, or
frozen with ``--freeze-trunk`` — and one from scratch. Their learning curves (``evaluations.json``:
greedy evaluation, and the training episodes between evaluations) are compared by
:func:`policyshare.comparison.compare_methods`, once per curve: per seed the paper's transfer %
(Rusu et al. 2016, Table 1; only where scratch is clearly above random, else undefined with the
reason), the normalised area gain, forward transfer (Continual World) and the expert-normalised
return at 10, 50 and 100 % of the budget; over seeds their interquartile mean with a stratified
bootstrap interval, or the range of the seeds when there are too few for one (Agarwal et al.
2021), the probability of improvement over scratch, and a verdict. The target's random return is
the runs' own, its expert return the zoo expert's (:func:`~policyshare.comparison.zoo_expert_return`)
unless given. The methods are ``finetune`` or ``frozen`` against ``scratch``
(:mod:`policyshare.methods`).

Layout of the experiment folder (``runs/transfer/<env>__<method>__<trunk>`` by default, the
trunk named by :func:`trunk_label`)::

    <root>/<method>__s<seed>/   the trunk-initialised run of each seed (a train run folder)
    <root>/scratch__s<seed>/    the from-scratch run of each seed
    <root>/curves.png           mean greedy-evaluation curves with 95 % bootstrap bands
    <root>/curves_training.png  the same of the training episodes' returns
    <root>/profiles.png         performance profiles of the normalised area (greedy evaluation)
    <root>/summary.json         every metric per seed and aggregated, per curve; verdicts; final returns
    <root>/report.md            the same as tables
    <root>/metrics.json         = summary.json; marks the experiment finished

The sub-runs share TensorBoard tags (``eval/mean_reward``, ``rollout/ep_rew_mean`` …) and differ
by run name, so ``tensorboard --logdir <root>`` overlays them. A resumed experiment
(``--resume``) skips finished sub-runs and continues unfinished ones from their checkpoints.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyshare.checkpoints import read_trunk_file
from policyshare.comparison import (
    CURVE_LABELS,
    TRANSFER_PERCENT,
    Comparison,
    CurveKind,
    Runs,
    compare_methods,
    definitions,
    format_interval_record,
    markdown_table,
    mean_over_seeds,
    plot_curves,
    plot_profiles,
    read_runs,
    zoo_expert_return,
)
from policyshare.config import check_seeds, to_dict
from policyshare.console import inner_run
from policyshare.envs import check_env_id, make_vec_env
from policyshare.errors import CheckpointError, ConfigError, UserError
from policyshare.io import atomic_write_json, atomic_write_text, slug
from policyshare.methods import FINETUNE, FROZEN, SCRATCH
from policyshare.metrics import format_number
from policyshare.runs import RunFolder, default_run_dir
from policyshare.train import load_train_config, train

log = logging.getLogger(__name__)


def check_trunk_fits(trunk_file: str | Path, env_id: str, algo: str = "ppo",
                     config: str | Path | None = None,
                     overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the target agent exactly as :func:`~policyshare.train.train` will and load the trunk
    file into it, before any run folder is written.

    Returns:
        The trunk file's header.

    Raises:
        CheckpointError: missing or corrupt file, neither a trunk nor a student file, another
            trunk spec, activation or input alignment, or other shapes (naming both).
        UserError: unknown env id or algorithm, bad config.
    """
    from policyshare.algos import build_model, load_trunk_into

    read_trunk_file(trunk_file)
    suite = check_env_id(env_id)
    cfg, params = load_train_config(env_id, algo, config, overrides)
    env = make_vec_env(env_id, cfg.n_envs, 0, cfg.vec_env)
    try:
        model = build_model(algo, env, params, cfg.policy, cfg.trunk, suite, seed=0)
        return load_trunk_into(model, trunk_file)
    finally:
        env.close()


def trunk_label(trunk_file: str | Path) -> str:
    """The trunk's identity in default folder names: ``<folder>-<file stem>-<8 hex digits>``.

    The folder and stem say where the trunk comes from (``Breakout__ppo__s0-trunk``,
    ``columns-column_1__MinAtar-Breakout-v1``); the first 8 hex digits of the file's SHA-256 tell
    apart two trunks of the same names, so that a second trunk transferred to the same env
    gets a folder of its own, and the same trunk always gets the same one (``--resume``).

    Raises:
        CheckpointError: the file cannot be read.
    """
    path = Path(trunk_file)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    except OSError as e:
        raise CheckpointError(f"cannot read the trunk file {path}: {e.strerror or e}") from None
    return slug(f"{path.resolve().parent.name}-{path.stem}-{digest}")


@dataclass
class TransferResult:
    """What :func:`transfer` produced."""

    run_dir: Path
    summary: dict[str, Any]


def transfer(trunk_file: str | Path, env_id: str, *, algo: str = "ppo",
             config: str | Path | None = None, timesteps: int | None = None,
             seeds: Sequence[int] = (0,), freeze_trunk: bool = False,
             run_dir: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
             resume: bool = False, expert_return: float | None = None) -> TransferResult:
    """Train trunk-initialised and from-scratch agents per seed; compare them on both curves.

    Args:
        trunk_file: a ``policyshare.trunk`` file (``trunk.safetensors`` of a distill, train or
            progressive run), or a distilled ``student.safetensors`` (its trunk is taken).
        env_id: the target Gymnasium id.
        algo: ``ppo``, ``a2c`` or ``dqn``.
        config: the algorithm's config keyed by env id (default ``configs/<algo>.yaml``); it
            must evaluate periodically (``eval.freq > 0``) to give learning curves. Every curve
            starts with a step-0 evaluation and ends with one at the last step, so a budget
            shorter than ``eval.freq`` still gives a curve of two points.
        timesteps: env steps per run (overrides the config).
        seeds: one trunk-initialised and one from-scratch run per seed.
        freeze_trunk: keep the loaded trunk fixed (method ``frozen``; else ``finetune``).
        run_dir: experiment folder (default ``runs/transfer/<env>__<method>__<trunk>``, the
            trunk named by :func:`trunk_label`, so that two trunks never share one).
        overrides: nested config overrides (``--set``).
        resume: continue an unfinished experiment: finished sub-runs are kept as they are.
        expert_return: the target's expert mean return (normalises the metrics); default the
            zoo expert's recorded greedy return, none for a target without a zoo expert (then the
            metrics are undefined, with that reason).

    Returns:
        A :class:`TransferResult`; ``summary`` is also written as ``summary.json`` and
        ``metrics.json``.

    Raises:
        UserError: a trunk file of another spec, activation, input alignment or shape (checked
            before anything is written), a seed given twice, unknown env id, bad config, no
            periodic evaluation, a folder that would be overwritten.
    """
    if not seeds:
        raise UserError("no seeds given: pass --seeds 0 1 2")
    check_seeds(seeds)
    if timesteps is not None and timesteps <= 0:
        raise UserError(f"--timesteps must be > 0, got {timesteps}")
    cfg, params = load_train_config(env_id, algo, config, overrides)
    if cfg.eval.freq <= 0:
        raise ConfigError("transfer compares learning curves: set eval.freq > 0 (env steps "
                          "between evaluations), e.g. --set eval.freq=25000")
    header = check_trunk_fits(trunk_file, env_id, algo, config, overrides)
    method = FROZEN if freeze_trunk else FINETUNE
    budget = timesteps or cfg.timesteps
    resolved = {"env_id": env_id, "algo": algo, "trunk": str(trunk_file),
                "trunk_source": header.get("source", {}), "method": method,
                "freeze_trunk": freeze_trunk, "seeds": list(seeds), "timesteps": budget,
                "config": str(config) if config else None, "overrides": dict(overrides or {}),
                "train_config": {**to_dict(cfg), "hyperparams": to_dict(params)}}
    folder = run_dir or default_run_dir("transfer", env_id, method=f"{method}__{trunk_label(trunk_file)}")
    root = RunFolder.open(folder, command="transfer", config=resolved, resume=resume)
    folders = {m: {seed: root.path / f"{m}__s{seed}" for seed in seeds} for m in (method, SCRATCH)}
    for seed in seeds:
        for name in (method, SCRATCH):
            sub = RunFolder(folders[name][seed])
            if not sub.finished:
                log.info(f"training {name} seed {seed} ({budget} env steps) → {sub.path}")
                with inner_run():
                    train(env_id, algo, config=config, timesteps=timesteps, seed=seed, run_dir=sub.path,
                          overrides=overrides, resume=sub.meta_path.is_file(),
                          init_trunk=None if name == SCRATCH else trunk_file,
                          freeze_trunk=freeze_trunk and name != SCRATCH, run_name=name)
    runs = read_runs(folders)
    comparisons = _compare(runs, env_id, expert_return)
    summary: dict[str, Any] = {
        "env_id": env_id, "algo": algo, "trunk": str(trunk_file), "method": method,
        "seeds": list(seeds), "timesteps": budget, **_figures(runs, comparisons, method),
        **_plots(runs, comparisons, root.path, f"{env_id}: trunk from {Path(trunk_file).name} ({method}) vs scratch"),
        "runs": {m: {str(s): str(p) for s, p in by_seed.items()} for m, by_seed in folders.items()},
    }
    atomic_write_json(root.path / "summary.json", summary)
    atomic_write_text(root.path / "report.md", report(summary))
    root.write_metrics(summary)
    log.info(report(summary))
    log.info(f"experiment folder: {root.path}")
    log.info(f"TensorBoard:       tensorboard --logdir {shlex.quote(str(root.path))}")
    return TransferResult(root.path, summary)


def _compare(runs: Runs, env_id: str, expert_return: float | None) -> dict[str, Comparison]:
    """:func:`~policyshare.comparison.compare_methods` on each curve (greedy evaluation, training episodes)."""
    expert: float | None = None if expert_return is None else float(expert_return)
    source = "given"
    if expert is None:
        expert, source = zoo_expert_return(env_id)
    random = runs.random_return()
    if random is None:  # runs of an older version: no reference, so nothing can be normalised
        random, expert, source = 0.0, None, "no run records a random-policy return"
    refs = f"random: the runs' random-policy return, mean over runs; expert: {source}"
    kinds: tuple[CurveKind, ...] = ("greedy", "training")
    return {kind: compare_methods(runs.curves_of(kind), random=random, expert=expert, budget=runs.budget(),
                                  baseline=SCRATCH, curve=CURVE_LABELS[kind], references=refs)
            for kind in kinds}


def _figures(runs: Runs, comparisons: Mapping[str, Comparison], method: str) -> dict[str, Any]:
    """The summary's figures: transfer % on the greedy curve (the key the report and tests read),
    every comparison, the verdicts, final returns."""
    finals = runs.finals()
    greedy = comparisons["greedy"]
    return {
        "transfer_percent": greedy.record(method, TRANSFER_PERCENT),
        "random_return": greedy.random, "expert_return": greedy.expert, "references": greedy.references,
        "comparison": {c.curve: c.to_json() for c in comparisons.values()},
        "tables": {c.curve: c.markdown(definitions_too=False) for c in comparisons.values()},
        "definitions": definitions(greedy, greedy.table_keys()),
        "verdicts": {c.curve: c.verdict(method, SCRATCH, claim=f"{method} learns faster than scratch "
                                                               f"(normalised area, {c.curve})").as_dict()
                     for c in comparisons.values()},
        "final_returns": finals,
        "final_return_mean": {m: mean_over_seeds(v) for m, v in finals.items()},
    }


def _plots(runs: Runs, comparisons: Mapping[str, Comparison], folder: Path, title: str) -> dict[str, Any]:
    """``curves.png`` (greedy evaluation), ``curves_training.png`` (training episodes) and
    ``profiles.png`` (performance profiles of the normalised area, greedy evaluation)."""
    out: dict[str, Any] = {}
    plots: tuple[tuple[CurveKind, str, str], ...] = (
        ("greedy", "curves.png", "mean return (greedy evaluation)"),
        ("training", "curves_training.png", "mean return of training episodes"))
    for kind, name, ylabel in plots:
        curves = {m: [c for c in by_seed.values() if not isinstance(c, str)]
                  for m, by_seed in runs.curves_of(kind).items()}
        out.setdefault("plots", {})[kind] = str(plot_curves(curves, folder / name, title=f"{title}\n({ylabel})",
                                                            ylabel=ylabel))
    profiles = comparisons["greedy"].profiles()
    if profiles:
        out["plots"]["profiles"] = str(plot_profiles(
            profiles, folder / "profiles.png", f"{title}\nperformance profiles (greedy evaluation)",
            "normalised area: mean (return − random) / (expert − random) over the budget"))
    out["plot"] = out["plots"]["greedy"]
    return out


def report(summary: Mapping[str, Any]) -> str:
    """Markdown: per seed and aggregated figures on each curve, verdicts, final returns, plots.

    A summary without ``tables`` (written by an older version, or built by hand) gets the
    transfer % line and the final returns only.
    """
    method = summary["method"]
    t = summary["transfer_percent"]
    n = len(summary["seeds"])
    lines = [f"# Transfer to {summary['env_id']} ({method}, {summary['algo']}, "
             f"{summary['timesteps']} env steps per run)", "",
             f"Trunk: `{summary['trunk']}`", ""]
    finals = summary["final_returns"]
    lines += markdown_table(
        ["seed", f"transfer % ({t.get('curve', 'greedy evaluation')})", f"final return {method}",
         f"final return {SCRATCH}"],
        [[str(seed), _seed_value(t, str(seed)), f"{finals[method][str(seed)]:.2f}",
          f"{finals[SCRATCH][str(seed)]:.2f}"] for seed in summary["seeds"]], align=["---:"] * 4)
    lines += ["", f"Transfer % (area under the learning curve ÷ scratch's, × 100; 100 = no "
              f"transfer), IQM over {n} seed{'s' if n != 1 else ''}: **{format_interval_record(t)}**"
              f"{' (95 % stratified bootstrap)' if 'kind' not in t and n > 1 else ''}.", ""]
    for curve, table in summary.get("tables", {}).items():
        verdict = summary.get("verdicts", {}).get(curve)
        lines += [f"## Every metric on the {curve} curve", "", *table, ""]
        if verdict:
            lines += [f"Verdict: {verdict['text']}.", ""]
    if summary.get("definitions"):
        lines += ["## Definitions", "", *summary["definitions"], ""]
    lines += [f"Mean final return: {method} {summary['final_return_mean'][method]:.2f}, "
              f"scratch {summary['final_return_mean'][SCRATCH]:.2f}.", ""]
    plots = summary.get("plots", {"greedy": summary["plot"]})
    for kind, label in (("greedy", "learning curves (greedy evaluation)"),
                        ("training", "learning curves (training episodes)"),
                        ("profiles", "performance profiles (greedy evaluation)")):
        if kind in plots:
            lines += [f"![{label}]({Path(plots[kind]).name})", ""]
    return "\n".join(lines)


def _seed_value(record: Mapping[str, Any], seed: str) -> str:
    """One seed's value, or ``undefined (why)`` when the record gives a reason."""
    why = record.get("per_seed_why", {}).get(seed)
    return f"undefined ({why.split(':')[0]})" if why else format_number(record["per_seed"].get(seed))
