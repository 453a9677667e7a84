"""The ``policyshare progressive`` experiment: grow the network, train the controls, analyse.

For every seed (:func:`run_progressive`): column 1 is trained on the first task (or taken from
``--init-from``, :func:`network_from_checkpoint`), each next column on the next task with the
earlier ones frozen (``_grow``); then the controls of Rusu et al. 2016 train on the target with
the same seed (``_controls``): ``scratch`` (baseline 1), ``finetune`` (baseline 3) and
``random_column`` (baseline 4). The no-forgetting check (:func:`check_no_forgetting`) and the
Average Fisher Sensitivity (:mod:`policyshare.progressive.fisher`) follow;
:mod:`policyshare.progressive.report` writes the comparison. Every run is a ``policyshare
train`` run folder, never redone once finished.

Units: ``timesteps`` and evaluation frequencies are env steps summed over the parallel envs;
evaluations are complete episodes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policyshare.config import check_same_settings
from policyshare.console import inner_run
from policyshare.errors import CheckpointError, UserError
from policyshare.io import atomic_write_json, read_json
from policyshare.methods import FINETUNE, SCRATCH
from policyshare.progressive.config import FISHER_SEED_OFFSET, AdapterConfig
from policyshare.progressive.fisher import average_fisher_sensitivity, collect_observations
from policyshare.progressive.network import NETWORK_FILE, ProgressiveNetwork, describe_spec, load_network
from policyshare.progressive.plan import Plan, column_dir, make_plan, method_dirs
from policyshare.progressive.policy import LateralScalarLogger, column_model_factory
from policyshare.progressive.report import summarise, summary_text
from policyshare.sb3_files import load_sb3
from policyshare.trunks import TrunkExtractor, TrunkSpec

if TYPE_CHECKING:
    from policyshare.runs import RunFolder

log = logging.getLogger(__name__)


def column_source(metrics: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """A column's provenance and the evaluation taken right after it was trained.

    Args:
        metrics: the column run's ``metrics.json`` (seed, env steps, final evaluation).
        run_dir: the column's run folder.

    Returns:
        :attr:`ColumnInfo.source`: run, seed, timesteps (env steps), ``eval_seed``,
        ``eval_episodes``, ``eval_returns`` and ``eval_mean_return``.
    """
    from policyshare.evaluate import EVAL_SEED_OFFSET

    return {"run": str(run_dir), "seed": metrics["seed"], "timesteps": metrics["timesteps"],
            "eval_seed": int(metrics["seed"]) + EVAL_SEED_OFFSET,
            "eval_episodes": metrics["eval_episodes"], "eval_returns": metrics["eval_returns"],
            "eval_mean_return": metrics["eval_mean_return"]}


def network_from_checkpoint(path: str | Path, task: str, spec: TrunkSpec, adapter: AdapterConfig,
                            algo: str, safe: bool = False) -> ProgressiveNetwork:
    """Column 1 from a single-task checkpoint (``--init-from``).

    Args:
        path: a ``policyshare train`` run folder or its ``model.zip`` (PPO or A2C).
        task: the first task; the checkpoint must have been trained on it.
        spec: the trunk spec of the network to build.
        adapter: lateral adapter settings.
        algo: the algorithm the next columns train with (recorded).
        safe: never unpickle (:func:`~policyshare.sb3_files.load_sb3_safe`): rebuild the
            model from the zip's ``policyshare.json`` and load only tensors.

    Raises:
        CheckpointError: missing, unreadable, not an actor-critic policy on a trunk, or another
            trunk spec (the message names both); with ``safe``, a zip without a policyshare
            description or holding more than tensors.
        UserError: a checkpoint of another task.
    """
    from policyshare.evaluate import EVAL_SEED_OFFSET, evaluate
    from policyshare.sb3_files import read_sb3_header

    p = Path(path)
    if p.is_dir():
        p = p / "model.zip"
    if p.suffix != ".zip":
        raise CheckpointError(f"--init-from {path}: column 1 needs its heads too; pass a "
                              "`policyshare train` run folder or its model.zip")
    header = read_sb3_header(p)
    env_id = header.get("env_id")
    if env_id is not None and env_id != task:
        raise UserError(f"--init-from {path} was trained on {env_id}, but the first task is "
                        f"{task}; list {env_id} first in --tasks or pass a checkpoint of {task}")
    model, _ = load_sb3(p, safe=safe)
    ex = getattr(model.policy, "features_extractor", None)
    if not isinstance(ex, TrunkExtractor):
        raise CheckpointError(f"--init-from {path} is not a PPO/A2C policy on a policyshare trunk; "
                              "pass a `policyshare train` run of --algo ppo or a2c")
    if ex.trunk.spec != spec:
        raise CheckpointError(f"--init-from {path} holds a {describe_spec(ex.trunk.spec)}, but the "
                              f"progressive network uses a {describe_spec(spec)}; pass a checkpoint "
                              f"of that spec or set train.trunk.spec: {ex.trunk.spec.name}")
    metrics_path = p.parent / "metrics.json"
    metrics = read_json(metrics_path, "run metrics") if metrics_path.is_file() else None
    if metrics is not None and metrics.get("eval_returns") and metrics.get("env_id") == task:
        source = column_source(metrics, p.parent)
    else:
        result = evaluate(model, task, 10, EVAL_SEED_OFFSET)
        source = {"run": str(p.parent), "eval_seed": EVAL_SEED_OFFSET, "eval_episodes": 10,
                  "eval_returns": result.returns, "eval_mean_return": result.mean}
    source["init_from"] = str(p)
    network = ProgressiveNetwork(spec, adapter, algo)
    network.add_column_from_model(model, task, source)
    return network


def _stage(plan: Plan, run_dir: Path, task: str, seed: int, method: str, **kwargs: Any
           ) -> tuple[dict[str, Any], Any]:
    """Train one run of the experiment, or read it back if it finished (stage-level resume).

    Returns:
        ``(metrics, model)``; ``model`` is ``None`` for a run finished earlier.
    """
    from policyshare.runs import RunFolder
    from policyshare.train import train

    run = RunFolder(run_dir)
    if run.finished:
        log.info(f"[s{seed}] {method} on {task}: finished earlier ({run_dir})")
        return read_json(run.metrics_path, "run metrics"), None
    resume = run.meta_path.is_file()
    log.info(f"[s{seed}] {method} on {task}: {'resuming' if resume else 'training'} → {run_dir}")
    started = time.perf_counter()
    with inner_run():
        result = train(task, plan.algo, config=plan.cfg.train_config, timesteps=plan.timesteps,
                       seed=seed, run_dir=run_dir, overrides=plan.runs[task], resume=resume,
                       run_name=method, **kwargs)
    m = result.metrics
    log.info(f"[s{seed}] {method} on {task}: eval return {m['eval_mean_return']:.2f} ± "
             f"{m['eval_std_return']:.2f} after {m['timesteps']} env steps "
             f"({time.perf_counter() - started:.0f} s)")
    return m, result.model


def _grow(plan: Plan, seed_dir: Path, seed: int, init: ProgressiveNetwork | None
          ) -> ProgressiveNetwork:
    """Train (or read back) every column of one seed; the network file grows column by column."""
    import copy

    net_path = seed_dir / NETWORK_FILE
    network: ProgressiveNetwork | None = None
    if net_path.is_file():
        network = load_network(net_path)
        if network.tasks != plan.tasks[:len(network)]:
            raise CheckpointError(f"{net_path} holds columns for {', '.join(network.tasks)}, not "
                                  f"the first tasks of {', '.join(plan.tasks)}; choose another "
                                  "--run-dir")
    elif init is not None:
        network = copy.deepcopy(init)
        network.save(net_path)
    adapter = plan.cfg.adapter
    for k in range(len(network) if network is not None else 0, len(plan.tasks)):
        task = plan.tasks[k]
        run_dir = column_dir(seed_dir, k + 1, task)
        method = f"column_{k + 1}"
        if network is None:
            metrics, model = _stage(plan, run_dir, task, seed, method)
        else:
            describe = {"progressive": {"column": k + 1, "tasks": plan.tasks[:k + 1],
                                        "adapter": asdict(adapter), "frozen_from": str(net_path)}}
            metrics, model = _stage(plan, run_dir, task, seed, method,
                                    model_factory=column_model_factory(plan.algo, k + 1, plan.trunk, adapter,
                                                                        network),
                                    extra_callbacks=[LateralScalarLogger()], extra_config=describe)
        if model is None:
            model, _ = load_sb3(run_dir / "model.zip")
        if network is None:
            network = ProgressiveNetwork(plan.spec, adapter, plan.algo)
        network.add_column_from_model(model, task, column_source(metrics, run_dir))
        network.save(net_path)
    if network is None:  # unreachable: plan.tasks has at least two entries
        raise UserError("no tasks to train")
    network.export_columns(seed_dir / "columns", net_path)
    return network


def _controls(plan: Plan, seed_dir: Path, seed: int) -> None:
    """Train the selected controls on the target task (same seed, same config, same steps)."""
    from policyshare.runs import slug

    target = plan.target
    first_trunk = seed_dir / "columns" / f"column_1__{slug(plan.tasks[0])}.safetensors"
    dirs = method_dirs(plan, seed_dir)
    for control in plan.controls:
        if control == SCRATCH:  # baseline 1
            _stage(plan, dirs[control], target, seed, control)
        elif control == FINETUNE:  # baseline 3
            _stage(plan, dirs[control], target, seed, control, init_trunk=first_trunk)
        else:  # baseline 4: a random, frozen first column
            _stage(plan, dirs[control], target, seed, control,
                   model_factory=column_model_factory(plan.algo, 2, plan.trunk, plan.cfg.adapter),
                   extra_callbacks=[LateralScalarLogger()],
                   extra_config={"progressive": {"column": 2, "random_frozen_columns": 1,
                                                 "adapter": asdict(plan.cfg.adapter)}})


def check_no_forgetting(network: ProgressiveNetwork) -> dict[str, dict[str, Any]]:
    """Evaluate every column but the last on its own task, as right after it was trained.

    Each column's ``source`` records the evaluation taken when it was trained (seed, episodes,
    returns); the whole network, acting with that column, is evaluated again with the same
    seed and episodes. Frozen columns never change, so the returns must be identical.

    Returns:
        task → ``{"before", "after", "identical", "episodes", "seed"}`` (returns are lists).
    """
    from policyshare.evaluate import evaluate

    out: dict[str, dict[str, Any]] = {}
    for info in network.info[:-1]:
        src = info.source
        result = evaluate(network.agent(info.task), info.task, int(src["eval_episodes"]),
                          int(src["eval_seed"]))
        before = [float(r) for r in src["eval_returns"]]
        out[info.task] = {"before": before, "after": result.returns,
                          "identical": before == result.returns,
                          "episodes": int(src["eval_episodes"]), "seed": int(src["eval_seed"])}
    return out


def _seed_analysis(plan: Plan, seed_dir: Path, seed: int, network: ProgressiveNetwork
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """No-forgetting check and Fisher sensitivity of one seed (cached in the seed folder)."""
    path = seed_dir / "no_forgetting.json"
    if path.is_file():
        forgetting = read_json(path, "no-forgetting check")
    else:
        forgetting = check_no_forgetting(network)
        atomic_write_json(path, forgetting)
    fisher = None
    if plan.cfg.fisher.enabled:
        path = seed_dir / "fisher.json"
        if path.is_file():
            fisher = read_json(path, "Fisher sensitivity")
        else:
            obs = collect_observations(network, plan.target, plan.cfg.fisher.samples,
                                       seed + FISHER_SEED_OFFSET)
            fisher = average_fisher_sensitivity(network, plan.target, obs,
                                                plan.cfg.fisher.batch_size).as_dict()
            atomic_write_json(path, fisher)
    return forgetting, fisher


def _open_experiment(plan: Plan, folder: Path, resolved: Mapping[str, Any], resume: bool) -> RunFolder:
    """The experiment folder, new, or resumed only with the settings it started with.

    On resume, ``plan.runs`` becomes the training configs the experiment started with.

    Raises:
        UserError: a folder that would be overwritten, or a resume with other settings.
    """
    from policyshare.runs import RunFolder

    saved: dict[str, Any] = {}
    if resume:  # before anything is written (RunFolder.open records this command)
        saved = check_same_settings(folder, folder / "config.yaml", resolved, ignore=("runs",),
                                    fix="resume with the same command or choose another --run-dir")
    exp = RunFolder.open(folder, command="progressive", config=resolved, resume=resume)
    if saved:
        plan.runs = saved["runs"]  # the training configs the experiment started with
    return exp


def run_progressive(tasks: Sequence[str], *, config: str | Path | None = None,
                    algo: str | None = None, timesteps: int | None = None,
                    seeds: Sequence[int] = (0,), run_dir: str | Path | None = None,
                    init_from: str | Path | None = None, controls: Sequence[str] | None = None,
                    overrides: Mapping[str, Any] | None = None, resume: bool = False,
                    safe: bool = False) -> dict[str, Any]:
    """Grow a progressive network over ``tasks`` and measure transfer to the last one.

    For every seed: column 1 is trained on the first task (or taken from ``init_from``), each
    next column on the next task with the earlier ones frozen; then the controls train on the
    target. Every run is a ``policyshare train`` run folder under ``<run_dir>/s<seed>/`` (so
    TensorBoard overlays them by name, ``tensorboard --logdir <run_dir>``); the growing network
    is ``s<seed>/network.safetensors`` and its columns ``s<seed>/columns/*.safetensors``. A run
    that finished is never redone: re-run with ``resume`` to continue after an interruption.
    Every task's training config is resolved once, recorded in the experiment's ``config.yaml``
    (``runs``) and passed whole to every run, so all runs of the experiment — resumed ones
    too — train with the settings it started with, whatever later edits to the config files.

    At the root: ``metrics.json`` (transfer % per seed and its IQM with a 95 % bootstrap
    interval per method, final returns, the no-forgetting check, lateral scalars, Average
    Fisher Sensitivity), ``report.md``, ``curves.png`` and ``fisher.{md,json,png}``.

    Args:
        tasks: Gymnasium ids, source tasks first, the target last (at least two).
        config: experiment config (default ``configs/progressive.yaml``).
        algo: ``ppo`` or ``a2c`` (default: the config's).
        timesteps: env steps per column and per control (default: the config's).
        seeds: seeds; every method of a seed uses that seed.
        run_dir: experiment folder (default ``runs/progressive/<tasks>__<algo>``).
        init_from: a ``policyshare train`` run folder or model.zip of the first task: column 1.
        controls: subset of :data:`~policyshare.progressive.config.CONTROLS` (default: the config's).
        overrides: nested overrides of the experiment config (``--set``).
        resume: continue an unfinished experiment in ``run_dir``.
        safe: load ``init_from`` without unpickling (see
            :func:`~policyshare.progressive.network.network_from_checkpoint`).

    Returns:
        The contents of ``metrics.json``.

    Raises:
        UserError: fewer than two tasks, an unknown or repeated id, a seed given twice, tasks
            of different suites, an unsupported algorithm, a bad config, an ``init_from`` of
            another task or spec, or a run folder that would be overwritten.
    """
    from policyshare.runs import default_run_dir, slug

    plan = make_plan(tasks, config, algo, timesteps, seeds, controls, overrides)
    init = (network_from_checkpoint(init_from, plan.tasks[0], plan.spec, plan.cfg.adapter, plan.algo,
                                    safe=safe) if init_from is not None else None)
    resolved = plan.resolved(str(init_from) if init_from is not None else None)
    folder = Path(run_dir) if run_dir is not None else default_run_dir(
        "progressive", "__".join(slug(t) for t in plan.tasks), None, plan.algo)
    exp = _open_experiment(plan, folder, resolved, resume)
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in plan.seeds:
        seed_dir = exp.path / f"s{seed}"
        network = _grow(plan, seed_dir, seed, init)
        _controls(plan, seed_dir, seed)
        forgetting, fisher = _seed_analysis(plan, seed_dir, seed, network)
        per_seed[seed] = {"network": network, "no_forgetting": forgetting, "fisher": fisher,
                          "dir": seed_dir}
    metrics = summarise(plan, exp.path, per_seed, resolved)
    exp.write_metrics(metrics)
    log.info(summary_text(metrics, exp.path))
    return metrics

