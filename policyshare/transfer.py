"""Transfer of a saved trunk to a new game, against training from scratch: ``policyshare transfer``.

For every seed, two agents are trained on the target env with the same config, seed and
evaluation steps (:func:`policyshare.train.train`): one whose trunk starts from a trunk file
(a distilled student's, an expert's, a progressive column's) with fresh heads — fine-tuned, or
frozen with ``--freeze-trunk`` — and one from scratch. Their learning curves
(``evaluations.json``) give transfer % = 100 · AUC(trunk) / AUC(scratch) per seed (Rusu et al.
2016, Table 1), aggregated over seeds as an interquartile mean with a stratified bootstrap
interval (Agarwal et al. 2021): the comparison of :mod:`policyshare.comparison`. The methods are
``finetune`` or ``frozen`` against ``scratch`` (:mod:`policyshare.methods`).

Layout of the experiment folder (``runs/transfer/<env>__<method>__<trunk>`` by default, the
trunk named by :func:`trunk_label`)::

    <root>/<method>__s<seed>/   the trunk-initialised run of each seed (a train run folder)
    <root>/scratch__s<seed>/    the from-scratch run of each seed
    <root>/curves.png           mean learning curves with 95 % bootstrap bands
    <root>/summary.json         transfer % per seed and IQM interval, final returns
    <root>/report.md            the same as a table
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
from policyshare.comparison import markdown_table, mean_over_seeds, plot_curves, read_runs, transfer_summary
from policyshare.config import check_seeds, to_dict
from policyshare.console import inner_run
from policyshare.envs import check_env_id, make_vec_env
from policyshare.errors import CheckpointError, ConfigError, UserError
from policyshare.io import atomic_write_json, atomic_write_text, slug
from policyshare.methods import FINETUNE, FROZEN, SCRATCH
from policyshare.metrics import format_interval, format_number
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
             resume: bool = False) -> TransferResult:
    """Train trunk-initialised and from-scratch agents per seed; report transfer %.

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
    plot = plot_curves({m: [runs.curves[m][s] for s in seeds] for m in (method, SCRATCH)},
                       root.path / "curves.png",
                       title=f"{env_id}: trunk from {Path(trunk_file).name} ({method}) vs scratch")
    finals = runs.finals()
    summary: dict[str, Any] = {
        "env_id": env_id, "algo": algo, "trunk": str(trunk_file), "method": method,
        "seeds": list(seeds), "timesteps": budget,
        "transfer_percent": transfer_summary(runs.curves, SCRATCH, seed=0)[method],
        "final_returns": finals,
        "final_return_mean": {m: mean_over_seeds(v) for m, v in finals.items()},
        "plot": str(plot), "runs": {m: {str(s): str(p) for s, p in by_seed.items()} for m, by_seed in folders.items()},
    }
    atomic_write_json(root.path / "summary.json", summary)
    atomic_write_text(root.path / "report.md", report(summary))
    root.write_metrics(summary)
    log.info(report(summary))
    log.info(f"experiment folder: {root.path}")
    log.info(f"TensorBoard:       tensorboard --logdir {shlex.quote(str(root.path))}")
    return TransferResult(root.path, summary)


def report(summary: Mapping[str, Any]) -> str:
    """Markdown: transfer % and final returns per seed, the IQM with its interval."""
    method = summary["method"]
    t = summary["transfer_percent"]
    lines = [f"# Transfer to {summary['env_id']} ({method}, {summary['algo']}, "
             f"{summary['timesteps']} env steps per run)", "",
             f"Trunk: `{summary['trunk']}`", ""]
    finals = summary["final_returns"]
    lines += markdown_table(
        ["seed", "transfer %", f"final return {method}", f"final return {SCRATCH}"],
        [[str(seed), format_number(t["per_seed"].get(str(seed))), f"{finals[method][str(seed)]:.2f}",
          f"{finals[SCRATCH][str(seed)]:.2f}"] for seed in summary["seeds"]], align=["---:"] * 4)
    n = len(summary["seeds"])
    lines += ["", f"Transfer % (area under the learning curve ÷ scratch's, × 100; 100 = no "
              f"transfer), IQM over {n} seed{'s' if n != 1 else ''}: "
              f"**{format_interval(t['iqm'], t['low'], t['high'])}**"
              f"{' (95 % stratified bootstrap)' if n > 1 else ''}.", "",
              f"Mean final return: {method} {summary['final_return_mean'][method]:.2f}, "
              f"scratch {summary['final_return_mean'][SCRATCH]:.2f}.", "",
              f"![learning curves]({Path(summary['plot']).name})", ""]
    return "\n".join(lines)
