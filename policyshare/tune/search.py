"""The search: Ray Tune trials, Optuna's sampler, ASHA early stopping (``policyshare tune``).

Each trial is one :func:`policyshare.train.train` run with the trial's sampled hyper-parameters,
written as an ordinary train run folder ``<tune folder>/trial_<k>/`` (``k`` = 1, 2, … in the order
Optuna proposed them). Every periodic evaluation of a trial (``eval/mean_reward`` over
``eval.episodes`` episodes, every ``timesteps / tuner.evaluations`` env steps) is reported to Ray
Tune with ``ray.tune.report``; ASHA (Li et al. 2020, "A System for Massively Parallel
Hyperparameter Tuning") stops trials whose return at those points is in the worst part of the
trials that reached them, and Optuna's TPE sampler (Bergstra et al. 2011) proposes the next
trials from the scores so far. A trial that trains to the end reports its final evaluation
(``eval.final_episodes`` episodes, as in ``metrics.json``) last: its score. The best finished
trial's config is returned as YAML for ``configs/<algo>.yaml`` (:mod:`policyshare.tune.best`).

Trials run on a local Ray, or on an existing cluster (``--address``; every node must see the tune
folder at the same path). A trial whose worker dies is retried by Ray Tune
(``FailureConfig(max_failures=3)``) and resumes from its run folder's last checkpoint; a trial
whose training fails on its own terms (e.g. a learning rate that makes the network diverge:
:class:`~policyshare.errors.NumericalError`) scores ``-inf`` and the search goes on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policyshare.config import deep_merge
from policyshare.console import inner_run
from policyshare.errors import UserError
from policyshare.tune.space import SearchSpace, cap_batch_size, check_search_space, load_search_space, trial_overrides

#: The metric every trial reports and ASHA and Optuna maximise.
METRIC = "eval/mean_reward"
#: Ray Tune's time axis for ASHA: env steps trained.
TIME_ATTR = "timesteps"

log = logging.getLogger(__name__)


@dataclass
class TuneJob:
    """What every trial needs besides its sampled values (plain data, sent to Ray workers).

    Attributes:
        env_id: the Gymnasium id.
        algo: ``ppo``, ``a2c`` or ``dqn``.
        seed: the seed every trial trains with.
        timesteps: env steps per trial.
        root: the tune folder (absolute).
        cwd: the working directory trials run in (relative paths in configs resolve from it).
        space: the search space.
        train_config: the train config the trials override (``None``: ``configs/<algo>.yaml``).
        overrides: keys fixed for every trial (the evaluation frequency and ``--set``).
    """

    env_id: str
    algo: str
    seed: int
    timesteps: int
    root: str
    cwd: str
    space: SearchSpace
    train_config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def trial_folder_name(trial: Any) -> str:
    """``trial_<k>``: the trial's run folder and Ray Tune record, numbered as Tune created them.

    Ray Tune's experiment tag of a searched trial starts with its 1-based counter (``"3_n_envs=…"``).
    """
    counter = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return f"trial_{counter}" if counter.isdigit() else f"trial_{trial.trial_id}"


def _trial(config: Mapping[str, Any], job: TuneJob) -> None:
    """One Ray Tune trial: ``policyshare train`` with the sampled values, reporting evaluations."""
    import torch
    from ray import tune as rtune

    from policyshare.train import train

    os.chdir(job.cwd)
    torch.set_num_threads(1)
    folder = Path(job.root) / Path(rtune.get_context().get_trial_dir()).name
    overrides = cap_batch_size(job.env_id, job.algo, job.train_config,
                               trial_overrides(job.space, config, job.overrides))
    last = {TIME_ATTR: 0}

    def report(step: int, result: Any) -> None:
        last[TIME_ATTR] = step
        rtune.report({METRIC: result.mean, "eval/std_reward": result.std, TIME_ATTR: step, "final": False,
                     "trial": folder.name})

    # A retried trial (its worker was lost) continues its run folder from the last checkpoint.
    resume = (folder / "meta.json").is_file() and not (folder / "metrics.json").is_file()
    try:
        with inner_run():
            result = train(job.env_id, job.algo, config=job.train_config, timesteps=job.timesteps, seed=job.seed,
                           run_dir=folder, overrides=overrides, resume=resume, on_evaluation=report)
    except UserError as e:
        # Fails again if retried (e.g. diverged): the worst score, and the search goes on.
        rtune.report({METRIC: -math.inf, TIME_ATTR: last[TIME_ATTR], "final": True, "trial": folder.name,
                     "failed": str(e)})
        return
    m = result.metrics
    rtune.report({METRIC: m["eval_mean_return"], "eval/std_reward": m["eval_std_return"],
                 TIME_ATTR: m["timesteps"], "final": True, "trial": folder.name})


def _progress() -> Any:
    """A Ray Tune callback logging one line per trial that ends (the command shows it on stderr)."""
    from ray import tune as rtune

    class Progress(rtune.Callback):
        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            r = trial.last_result or {}
            score = r.get(METRIC)
            how = (f"failed: {r['failed']}" if r.get("failed") else "finished" if r.get("final")
                   else "stopped early by ASHA")
            score_text = f"{score:.2f}" if isinstance(score, (int, float)) else "none"
            log.info(f"  {trial_folder_name(trial)}: {METRIC} {score_text} at env step {r.get(TIME_ATTR, 0)} "
                     f"({how})")

        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            log.info(f"  {trial_folder_name(trial)}: its worker was lost or crashed; retrying it, resuming "
                     "from its run folder's last checkpoint")

    return Progress()


@dataclass
class TrialOutcome:
    """How one trial ended.

    Attributes:
        name: ``trial_<k>`` (its run folder under the tune folder).
        status: ``finished``, ``stopped early`` (by ASHA), ``failed`` (its training raised a user
            error, e.g. diverged) or ``error`` (Ray Tune gave up on it).
        score: its last ``eval/mean_reward`` (the final evaluation when finished), or ``None``.
        timesteps: env steps it reached.
        sampled: the values it trained with, by searched key (rounded, with the schedule applied:
            ``lin_<value>``), before PPO's ``batch_size`` cap.
        message: the failure, if any.
    """

    name: str
    status: str
    score: float | None
    timesteps: int
    sampled: dict[str, Any]
    message: str = ""


@dataclass
class TuneResult:
    """What :func:`tune` produced.

    Attributes:
        root: the tune folder.
        best: the best finished trial.
        best_yaml: its config as YAML for ``configs/<algo>.yaml`` (also ``root/best.yaml``).
        trials: every trial, in order.
    """

    root: Path
    best: TrialOutcome
    best_yaml: str
    trials: list[TrialOutcome]


def _require_tuning_libraries() -> None:
    from policyshare.experiment.sweep import import_ray

    import_ray("policyshare tune")
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise UserError("policyshare tune needs Optuna for its sampler: pip install 'policyshare[ray]' "
                        "(or optuna)") from None


def tune(env_id: str, algo: str = "ppo", *, trials: int | None = None, timesteps: int | None = None,
         address: str | None = None, space: str | Path | None = None, config: str | Path | None = None,
         overrides: Mapping[str, Any] | None = None, seed: int = 0, run_dir: str | Path | None = None) -> TuneResult:
    """Search hyper-parameters of ``algo`` on ``env_id`` and return the best finished trial's config.

    Args:
        env_id: Gymnasium id of a suite.
        algo: an algorithm with a search space in ``space`` (``ppo``, ``dqn``; ``a2c`` if added).
        trials: trials to run (default: the file's ``tuner.trials``).
        timesteps: env steps per trial (default: the file's ``tuner.timesteps``); a trial trains
            this many rounded up to whole rollouts, as ``policyshare train`` does.
        address: an existing Ray cluster (``host:6379``, ``ray://host:10001``); ``None`` starts a
            local Ray.
        space: the search-space file (default ``configs/tune.yaml``).
        config: the train config the trials override (default ``configs/<algo>.yaml``).
        overrides: train-config keys fixed for every trial (``--set``); such a key leaves the search.
        seed: the seed of every trial (its envs and network) and of Optuna's sampler.
        run_dir: the tune folder (default ``runs/tune/<env>__<algo>``), which must not exist yet.

    Returns:
        A :class:`TuneResult`; the tune folder holds ``trial_<k>/`` (train run folders; a trial
        stopped early has no ``metrics.json``), ``ray/`` (Ray Tune's records), ``config.yaml`` and
        ``meta.json`` (the search and the command), ``summary.json`` (every trial) and ``best.yaml``.

    Raises:
        UserError: before any trial runs: an unknown algorithm or env id, ``trials`` or
            ``timesteps`` below 1, a search space or override that cannot train (ConfigError), an
            existing tune folder, Ray or Optuna missing, no Ray cluster at ``address``. After the
            trials: none of them finished (each trial's failure is in ``summary.json``).
    """
    from policyshare.algos import ALGOS
    from policyshare.envs import check_env_id
    from policyshare.runs import default_run_dir

    if algo not in ALGOS:
        raise UserError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    if trials is not None and trials < 1:
        raise UserError(f"--trials must be >= 1, got {trials}")
    if timesteps is not None and timesteps < 1:
        raise UserError(f"--timesteps must be >= 1 (env steps per trial), got {timesteps}")
    check_env_id(env_id)
    overrides = dict(overrides or {})
    search = load_search_space(algo, space).without(overrides)
    settings = search.settings
    n_trials = trials or settings.trials
    budget = timesteps or settings.timesteps
    fixed = deep_merge({"eval": {"freq": max(1, budget // settings.evaluations)}}, overrides)
    check_search_space(search, env_id, config, fixed)
    root = Path(run_dir or default_run_dir("tune", env_id, method=algo))
    if root.exists() and any(root.iterdir()):
        raise UserError(f"tune folder {root} already holds a search; choose another --run-dir or delete that folder")
    _require_tuning_libraries()
    from policyshare.experiment.sweep import init_ray

    init_ray(address)
    return _search(env_id, algo, search, config, fixed, seed, n_trials, budget, root, address)


def _search(env_id: str, algo: str, search: SearchSpace, config: str | Path | None, fixed: dict[str, Any],
            seed: int, n_trials: int, budget: int, root: Path, address: str | None) -> TuneResult:
    """Run the trials (Ray is up, the input checked) and write the tune folder."""
    import logging

    import optuna
    from ray import tune as rtune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from policyshare.experiment.sweep import DEFAULT_MAX_FAILURES
    from policyshare.io import atomic_write_json, atomic_write_text
    from policyshare.runs import RunFolder
    from policyshare.tune.best import best_config_yaml

    optuna.logging.set_verbosity(logging.WARNING)
    settings = search.settings
    run = RunFolder.open(root, command="tune", seed=seed, config={
        "env_id": env_id, "algo": algo, "seed": seed, "trials": n_trials, "timesteps": budget,
        "train_config": str(config) if config else None, "address": address, "fixed": fixed,
        "tuner": {"evaluations": settings.evaluations, "grace_period": settings.grace_period,
                  "reduction_factor": settings.reduction_factor, "cpus_per_trial": settings.cpus_per_trial},
        "space": search.describe()})
    try:
        job = TuneJob(env_id, algo, seed, budget, str(root.resolve()), os.getcwd(), search,
                      str(Path(config).resolve()) if config else None, fixed)
        trainable = rtune.with_resources(rtune.with_parameters(_trial, job=job), {"cpu": settings.cpus_per_trial})
        scheduler = ASHAScheduler(time_attr=TIME_ATTR, max_t=budget,
                                  grace_period=max(1, int(settings.grace_period * budget)),
                                  reduction_factor=settings.reduction_factor,
                                  # A trial reaching the budget ends itself after its final evaluation.
                                  stop_last_trials=False)
        tuner = rtune.Tuner(
            trainable, param_space=search.domains(),
            tune_config=rtune.TuneConfig(metric=METRIC, mode="max", num_samples=n_trials, scheduler=scheduler,
                                         search_alg=OptunaSearch(seed=seed),
                                         trial_dirname_creator=trial_folder_name),
            run_config=rtune.RunConfig(name="search", storage_path=str((root / "ray").resolve()), verbose=0,
                                       callbacks=[_progress()],
                                       failure_config=rtune.FailureConfig(max_failures=DEFAULT_MAX_FAILURES)))
        log.info(f"tuning {algo.upper()} on {env_id}: {n_trials} trials of {budget} env steps "
                 f"({len(search.dimensions)} searched keys), folder {root}")
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the YAML alone
            results = tuner.fit()
        outcomes = [_outcome(results[i], root, search) for i in range(len(results))]
        outcomes.sort(key=lambda o: (len(o.name), o.name))
        finished = [o for o in outcomes if o.status == "finished" and o.score is not None]
        summary: dict[str, Any] = {"env_id": env_id, "algo": algo, "seed": seed, "timesteps": budget,
                                   "metric": METRIC, "trials": [vars(o) for o in outcomes]}
        if not finished:
            atomic_write_json(root / "summary.json", summary)
            first = next((o.message for o in outcomes if o.message), "all were stopped early")
            raise UserError(f"none of the {len(outcomes)} trials finished; first failure: {first} "
                            f"(see {root / 'summary.json'})")
        best = max(finished, key=lambda o: o.score if o.score is not None else -math.inf)
        text = best_config_yaml(root / best.name, best=best, trials=outcomes, budget=budget, seed=seed,
                                space=search)
        summary["best"] = best.name
        atomic_write_text(root / "best.yaml", text)
        atomic_write_json(root / "summary.json", summary)
        return TuneResult(root, best, text, outcomes)
    finally:
        run.release()


def _outcome(result: Any, root: Path, space: SearchSpace) -> TrialOutcome:
    """A :class:`TrialOutcome` from one Ray Tune ``Result``."""
    metrics = dict(result.metrics or {})
    name = metrics.get("trial") or Path(str(result.path)).name
    config = result.config or {}
    sampled = {d.name: d.value(config) for d in space.dimensions if d.name in config}
    score = metrics.get(METRIC)
    score = float(score) if isinstance(score, (int, float)) and math.isfinite(score) else None
    steps = int(metrics.get(TIME_ATTR, 0) or 0)
    if result.error is not None:
        lines = str(result.error).strip().splitlines()
        return TrialOutcome(name, "error", score, steps, sampled, lines[-1] if lines else "unknown error")
    if metrics.get("failed"):
        return TrialOutcome(name, "failed", None, steps, sampled, str(metrics["failed"]))
    if metrics.get("final") and (root / name / "metrics.json").is_file():
        return TrialOutcome(name, "finished", score, steps, sampled)
    return TrialOutcome(name, "stopped early", score, steps, sampled)
