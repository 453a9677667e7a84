"""``policyshare multitask``: one shared-trunk network trained by PPO on all source games at once.

One loop, top to bottom in :func:`multitask`: check the tasks and the config → build the
side-by-side env (:class:`~policyshare.multitask.vecenv.MultiTaskVecEnv`) and the network (nothing
is written until both exist) → open the run folder → SB3's ``PPO.learn`` with per-task logging and
evaluation, checkpoints and a finite-value guard → ``model.zip`` and ``trunk.safetensors`` →
evaluate every task greedily on its own env, next to the random policy and the zoo expert →
``metrics.json`` with expert-normalised scores and their interquartile mean.

The trunk file is an ordinary ``policyshare.trunk`` file with the alignment header, so
``policyshare transfer --trunk RUN/trunk.safetensors --env <held-out game>`` and ``policyshare
train --init-trunk`` take it like an expert's or a student's.

Units: as :mod:`policyshare.multitask.config` (env steps summed over all tasks). The run trains its
budget rounded up to whole rollouts of ``n_steps · n_envs · tasks`` env steps; each task gets an
equal share (the tasks advance in lockstep). ``--resume`` continues an interrupted run from its
newest checkpoint with the same settings (as ``policyshare train``).
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from policyshare.algos import init_padded_input_layer, parse_schedule
from policyshare.alignment import action_mask
from policyshare.callbacks import AtomicCheckpoint, FiniteGuard
from policyshare.checkpoints import save_trunk
from policyshare.config import to_dict
from policyshare.console import shows_progress
from policyshare.envs import Suite, check_env_id, check_vec_env, make_vec_env, task_action_map
from policyshare.errors import UserError
from policyshare.evaluate import EVAL_SEED_OFFSET, evaluate, random_return
from policyshare.io import atomic_write_json, remove_stale_temporaries
from policyshare.learning import latest_checkpoint
from policyshare.logs import open_logger, restore_pending, silence_writer_thread_errors
from policyshare.metrics import expert_normalised, iqm_intervals
from policyshare.multitask.callbacks import TaskEpisodeLog, TaskEvaluation, trim_curves
from policyshare.multitask.config import MultiTaskConfig, load_multitask_config, resolved_config
from policyshare.multitask.policy import MultiTaskExtractor, MultiTaskPolicy, TaskAgent
from policyshare.multitask.vecenv import TASK_SEED_STRIDE, MultiTaskVecEnv
from policyshare.runs import RunFolder, default_run_dir
from policyshare.sb3_files import load_sb3, save_sb3
from policyshare.train import (
    check_same_config,
    load_train_config,
    resume_point,
    rollout_size,
    trained_timesteps,
)

METHOD = "multitask_ppo"

log = logging.getLogger(__name__)


@dataclass
class MultiTaskResult:
    """What :func:`multitask` produced."""

    run_dir: Path
    model_path: Path
    trunk_path: Path
    metrics: dict[str, Any]
    model: Any = None


def check_tasks(tasks: Sequence[str]) -> Suite:
    """The suite of ``tasks``: at least two distinct ids of one suite.

    Raises:
        UserError: fewer than two tasks, a task given twice, an unknown id, or tasks of two suites.
    """
    if len(tasks) < 2:
        raise UserError(f"multi-task training needs at least two tasks, got {len(tasks)}; for one task use "
                        "policyshare train --env ID")
    seen = [t for i, t in enumerate(tasks) if t in tasks[:i]]
    if seen:
        raise UserError(f"task {seen[0]} is given twice; list each task once")
    suites = [check_env_id(t) for t in tasks]
    if len({s.name for s in suites}) > 1:
        named = ", ".join(f"{t} ({s.name})" for t, s in zip(tasks, suites))
        raise UserError(f"the tasks belong to different suites ({named}); one network shares one suite's "
                        "alignment and action space: pass tasks of one suite")
    return suites[0]


def make_multitask_env(tasks: Sequence[str], n_envs: int, seed: int, vec_env: str,
                       action_maps: Sequence[Sequence[int]], n_common: int) -> MultiTaskVecEnv:
    """The tasks side by side: task ``k``'s ``n_envs`` envs seeded ``seed + 1000 k + i``."""
    envs: list[Any] = []
    try:
        for k, task in enumerate(tasks):
            envs.append(make_vec_env(task, n_envs, seed + TASK_SEED_STRIDE * k, vec_env))
        return MultiTaskVecEnv(envs, tasks, action_maps, n_common)
    except BaseException:
        for e in envs:
            e.close()
        raise


def build_multitask_model(env: MultiTaskVecEnv, cfg: MultiTaskConfig, params: Any, suite: Suite,
                          action_maps: Sequence[Sequence[int]], seed: int) -> Any:
    """SB3's ``PPO`` with :class:`MultiTaskPolicy` on :class:`MultiTaskExtractor` (one trunk, one optimizer).

    The first trunk layer is initialised for the channels the tasks really have
    (:func:`~policyshare.algos.init_padded_input_layer` with the widest task), after SB3's own
    initialisation.
    """
    from stable_baselines3 import PPO

    n_common = len(suite.actions)
    kwargs = to_dict(params)
    kwargs["learning_rate"] = parse_schedule(params.learning_rate, "learning_rate")
    kwargs["clip_range"] = parse_schedule(params.clip_range, "clip_range")
    policy_kwargs: dict[str, Any] = {
        "features_extractor_class": MultiTaskExtractor,
        "features_extractor_kwargs": {
            "trunk": cfg.trunk.trunk_kwargs(suite.trunk),
            "alignment": suite.alignment_kwargs(cfg.trunk.alignment),
            "task_channels": list(env.task_channels)},
        "net_arch": list(cfg.policy.net_arch),
        "ortho_init": cfg.policy.ortho_init,
        "action_masks": [action_mask(m, n_common).tolist() for m in action_maps],
    }
    model = PPO(MultiTaskPolicy, env, policy_kwargs=policy_kwargs, seed=seed, device=cfg.device, verbose=0,
                **kwargs)
    ex = cast(MultiTaskExtractor, model.policy.features_extractor)
    init_padded_input_layer(ex.trunk, ex.widest_alignment(), cfg.policy.ortho_init)
    return model


def expert_return(task: str, cfg: MultiTaskConfig, episodes: int, seed: int) -> tuple[float | None, str]:
    """The task's expert return on the evaluation seeds, and where it comes from.

    ``experts: zoo`` evaluates the shipped zoo expert of training seed 0 (:mod:`policyshare.zoo`)
    greedily on the same seeds and episodes as the multi-task network; ``none`` or a task without
    a seed-0 zoo expert gives ``(None, reason)``.
    """
    if cfg.experts == "none":
        return None, "experts: none in the config"
    from policyshare import zoo

    try:
        path = zoo.expert_path(task, seed=0)
    except UserError:
        return None, f"the zoo has no seed-0 expert for {task}"
    return evaluate(zoo.load(task, seed=0), task, episodes, seed).mean, f"zoo expert {path.name}"


def multitask(tasks: Sequence[str], *, config: str | Path | None = None, timesteps: int | None = None,
              seed: int = 0, run_dir: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
              resume: bool = False) -> MultiTaskResult:
    """Train one shared-trunk network by PPO on all ``tasks`` at once and write a run folder.

    Args:
        tasks: Gymnasium ids of one suite (at least two), e.g. the source games of a transfer study.
        config: the config (default ``configs/multitask.yaml``).
        timesteps: env steps over all tasks (overrides the config; default: the experts' budgets summed).
        seed: seed of the network and training envs (task ``k``'s envs: ``seed + 1000 k + i``);
            evaluation uses ``seed + 10000``.
        run_dir: run folder (default ``runs/multitask/<games>__ppo__s<seed>``).
        overrides: nested config overrides (``--set``).
        resume: continue the unfinished run in ``run_dir`` from its newest checkpoint, same settings.

    Returns:
        A :class:`MultiTaskResult`. ``metrics.json`` holds per task the final greedy return (mean,
        std over ``eval.final_episodes`` episodes), the random policy's and the expert's on the same
        seeds, the expert-normalised score ``(return − random) / (expert − random)`` (Parisotto et al.
        2016), and over tasks their interquartile mean with a bootstrap interval over tasks
        (Agarwal et al. 2021); plus env steps (total and per task) and parameter counts.

    Raises:
        UserError: bad tasks (:func:`check_tasks`), a bad config, ``timesteps <= 0``, a ``vec_env``
            that cannot run a task, a run folder that would be overwritten or is in use, a resume with
            other settings, an interrupt (Ctrl-C; resume from the last checkpoint) — all but the last
            two before anything is written.
        NumericalError: a NaN or infinite loss or parameter.
        CheckpointError: a corrupt checkpoint or a failed write.
    """
    tasks = list(tasks)
    suite = check_tasks(tasks)
    cfg, params = load_multitask_config(len(tasks), config, overrides)
    for task in tasks:
        check_vec_env(task, cfg.vec_env)
    if timesteps is not None and timesteps <= 0:
        raise UserError(f"--timesteps must be > 0, got {timesteps}")
    budget = timesteps or cfg.timesteps or sum(load_train_config(t, "ppo")[0].timesteps for t in tasks)
    resolved = resolved_config(cfg, params, tasks, seed, budget)
    name = "_".join(t.split("/")[-1] for t in tasks)
    folder = Path(run_dir) if run_dir is not None else default_run_dir("multitask", name, seed, "ppo")
    if resume:
        check_same_config(RunFolder(folder), resolved)
    torch.set_num_threads(cfg.torch_threads)
    action_maps = [task_action_map(t) for t in tasks]
    env = make_multitask_env(tasks, cfg.n_envs, seed, cfg.vec_env, action_maps, len(suite.actions))
    try:
        # Built before the folder opens: what cannot be built is refused without writing anything.
        fresh = None if resume else build_multitask_model(env, cfg, params, suite, action_maps, seed)
        run = RunFolder.open(folder, command="multitask", config=resolved, seed=seed, resume=resume)
    except BaseException:
        env.close()
        raise
    restore_excepthook = silence_writer_thread_errors()
    try:
        return _train_and_report(run, env, fresh, tasks, action_maps, cfg, params, suite, seed, budget,
                                 resolved, resume)
    finally:
        env.close()
        restore_excepthook()
        run.release()


def _train_and_report(run: RunFolder, env: MultiTaskVecEnv, fresh: Any, tasks: list[str],
                      action_maps: list[list[int]], cfg: MultiTaskConfig, params: Any, suite: Suite, seed: int,
                      budget: int, resolved: Mapping[str, Any], resume: bool) -> MultiTaskResult:
    """The body of :func:`multitask` once the env and the run folder are open: train, save the model and
    the trunk, evaluate every task and write ``metrics.json`` and ``timing.json``."""
    header = {"format": "policyshare.sb3", "algo": "ppo", "method": METHOD, "tasks": tasks, "seed": seed,
              "run": str(run.path), "trunk": resolved["trunk"], "policy": resolved["policy"]}
    size = rollout_size("ppo", cfg.n_envs * len(tasks), params)
    target = trained_timesteps(budget, size)
    if target != budget and not resume:
        log.info(f"note: a rollout is {size} env steps over {len(tasks)} tasks, so this run trains {target} env "
              f"steps ({budget} rounded up)")
    model, from_checkpoint = _open_model(run, env, fresh, tasks, action_maps, cfg, params, suite, seed, resume)
    callbacks, evaluator = _callbacks(run, env, tasks, action_maps, cfg, seed, header)
    train_wall, trained = _learn(model, run, callbacks, target, from_checkpoint, cfg)

    model_path = save_sb3(model, run.path / "model.zip", {**header, "timesteps": model.num_timesteps})
    ex = cast(MultiTaskExtractor, model.policy.features_extractor)
    trunk_path = _save_multitask_trunk(model, ex, env, run, suite, cfg, tasks, seed)
    if evaluator is not None:
        _finish_curves(evaluator, model, tasks)

    per_task = _evaluate_tasks(model, tasks, action_maps, cfg, seed)
    scores = np.array([[per_task[t]["expert_normalised"] for t in tasks]], float)
    interval = iqm_intervals({METHOD: scores}, seed=seed, task_bootstrap=True)[METHOD]
    metrics: dict[str, Any] = {
        "tasks": tasks, "seed": seed, "algo": "ppo", "method": METHOD, "run_name": METHOD,
        "timesteps": int(model.num_timesteps), "timesteps_requested": budget,
        "env_steps_per_task": int(model.num_timesteps) // len(tasks),
        "eval_episodes": cfg.eval.final_episodes, "random_episodes": cfg.eval.random_episodes,
        "alignment": ex.mode, "per_task": per_task,
        "expert_normalised_iqm": interval.as_dict(),
        "n_parameters": sum(p.numel() for p in model.policy.parameters()),
        "trunk_parameters": ex.trunk.n_parameters(),
        "model": str(model_path), "trunk": str(trunk_path),
    }
    atomic_write_json(run.path / "timing.json", {
        "train_wall_s": round(train_wall, 3), "env_steps_trained": trained,
        "train_steps_per_s": round(trained / train_wall, 1) if train_wall > 0 else None})
    run.write_metrics(metrics)
    log.info(f"expert-normalised IQM over {len(tasks)} tasks: {interval}")
    log.info(f"run folder:   {run.path}")
    log.info(f"trunk:        {trunk_path}  (policyshare transfer --trunk {trunk_path} --env ID)")
    log.info(f"TensorBoard:  tensorboard --logdir {shlex.quote(str(run.tb_dir))}")
    return MultiTaskResult(run.path, model_path, trunk_path, metrics, model)


def _open_model(run: RunFolder, env: MultiTaskVecEnv, fresh: Any, tasks: list[str], action_maps: list[list[int]],
                cfg: MultiTaskConfig, params: Any, suite: Suite, seed: int, resume: bool) -> tuple[Any, bool]:
    """The model to train, with its TensorBoard logger open: the newest checkpoint's on ``resume`` (after
    clearing stale temporaries and trimming the curves to its step), else ``fresh`` (built if ``None``).

    Returns:
        ``(model, from_checkpoint)``: whether the model was loaded from a checkpoint.
    """
    ckpt, ckpt_header = resume_point(run) if resume else (None, {})
    if ckpt is not None:
        model, _ = load_sb3(ckpt, env=env, device=cfg.device)
        model.set_random_seed(seed + model.num_timesteps)
    else:
        model = fresh if fresh is not None else build_multitask_model(env, cfg, params, suite, action_maps, seed)
    resume_step = int(model.num_timesteps) if resume else None
    if resume_step is not None:
        for d in (run.path, run.checkpoints_dir, run.tb_dir):
            remove_stale_temporaries(d)
        trim_curves(run.path / "evaluations.json", resume_step)
        log.info(f"resuming {run.path} at env step {resume_step}")
    model.set_logger(open_logger(run.tb_dir, resume_step))
    restore_pending(model.logger, ckpt_header.get("pending_log"))
    return model, ckpt is not None


def _callbacks(run: RunFolder, env: MultiTaskVecEnv, tasks: list[str], action_maps: list[list[int]],
               cfg: MultiTaskConfig, seed: int, header: dict[str, Any]) -> tuple[list[Any], TaskEvaluation | None]:
    """The callbacks of ``learn``: finite-value guard, per-task episode log, per-task evaluation (when
    ``eval.freq > 0``) and checkpoints.

    Returns:
        ``(callbacks, evaluator)``: the evaluation callback, or ``None`` when evaluation is off.
    """
    callbacks: list[Any] = [FiniteGuard(), TaskEpisodeLog(tasks, env.task_of_env.tolist())]
    evaluator = None
    if cfg.eval.freq > 0:
        evaluator = TaskEvaluation(tasks, action_maps, cfg.eval.freq, cfg.eval.episodes, seed + EVAL_SEED_OFFSET,
                                   run.path / "evaluations.json")
        callbacks.append(evaluator)
    callbacks.append(AtomicCheckpoint(run.checkpoints_dir, cfg.checkpoint_freq, header))
    return callbacks, evaluator


def _learn(model: Any, run: RunFolder, callbacks: list[Any], target: int, from_checkpoint: bool,
           cfg: MultiTaskConfig) -> tuple[float, int]:
    """Train ``model`` up to ``target`` env steps (nothing if it is there already).

    Returns:
        ``(train_wall, trained)``: wall-clock seconds and env steps of this call.

    Raises:
        UserError: an interrupt (Ctrl-C), naming the last checkpoint to resume from.
    """
    start_step = int(model.num_timesteps)
    started = time.perf_counter()
    try:
        if target > model.num_timesteps:
            model.learn(target - model.num_timesteps, callback=callbacks, reset_num_timesteps=not from_checkpoint,
                        progress_bar=cfg.progress_bar and shows_progress(log), tb_log_name="")
    except KeyboardInterrupt:
        last = latest_checkpoint(run)
        raise UserError(f"interrupted at env step {model.num_timesteps}; the last checkpoint is "
                        f"{last or 'none (the run restarts)'}; continue with the same command and --resume") from None
    train_wall = time.perf_counter() - started
    trained = int(model.num_timesteps) - start_step
    return train_wall, trained


def _save_multitask_trunk(model: Any, ex: MultiTaskExtractor, env: MultiTaskVecEnv, run: RunFolder, suite: Suite,
                          cfg: MultiTaskConfig, tasks: list[str], seed: int) -> Path:
    """Write the shared trunk of ``model`` (extractor ``ex``) to ``trunk.safetensors`` with its alignment
    header and source, and return its path."""
    obs_shape = tuple(env.observation_space["obs"].shape)  # type: ignore[index]
    return save_trunk(ex.trunk, run.path / "trunk.safetensors",
                      alignment={**suite.alignment_kwargs(cfg.trunk.alignment),
                                 "height": ex.trunk.spec.height, "width": ex.trunk.spec.width},
                      observation_shape=obs_shape,
                      source={"run": str(run.path), "method": METHOD, "algo": "ppo", "tasks": tasks,
                              "seed": seed, "timesteps": int(model.num_timesteps)})


def _finish_curves(evaluator: TaskEvaluation, model: Any, tasks: list[str]) -> None:
    """Evaluate once more if the learning curves stop short of the model's last env step."""
    if (not evaluator.curves[tasks[0]]["timesteps"]
            or evaluator.curves[tasks[0]]["timesteps"][-1] < model.num_timesteps):
        if getattr(evaluator, "model", None) is None:  # learn() did not run (resumed from the final model)
            evaluator.init_callback(model)
        evaluator.run_evaluation()


def _evaluate_tasks(model: Any, tasks: list[str], action_maps: list[list[int]], cfg: MultiTaskConfig,
                    seed: int) -> dict[str, dict[str, Any]]:
    """Per task: the greedy return of ``model``, the random policy's and the expert's on the same seeds,
    and the expert-normalised score (NaN, with the reason, where there is no expert return)."""
    eval_seed = seed + EVAL_SEED_OFFSET
    per_task: dict[str, dict[str, Any]] = {}
    for k, task in enumerate(tasks):
        final = evaluate(TaskAgent(model, k, task, action_maps[k]), task, cfg.eval.final_episodes, eval_seed)
        rand = random_return(task, cfg.eval.random_episodes, eval_seed)
        expert, source = expert_return(task, cfg, cfg.eval.final_episodes, eval_seed)
        entry: dict[str, Any] = {
            "eval_mean_return": final.mean, "eval_std_return": final.std, "eval_returns": final.returns,
            "random_mean_return": rand.mean, "random_std_return": rand.std,
            "expert_mean_return": expert, "expert_source": source,
            "expert_normalised": (expert_normalised(final.mean, rand.mean, expert)
                                  if expert is not None else float("nan"))}
        if expert is None:
            entry["expert_normalised_why"] = f"no expert return ({source}): the score is undefined"
        per_task[task] = entry
        shown = f"{expert:.2f}" if expert is not None else "none"
        log.info(f"{task}: return {final.mean:.2f} ± {final.std:.2f}, random {rand.mean:.2f}, expert {shown}")
    return per_task
