"""Scale-out: ``policyshare sweep`` runs an experiment's jobs as Ray Tune trials.

The experiment (:mod:`policyshare.experiment`) is a sequence of stages, each a list of
independent jobs (method × task × seed); every job writes one run folder. The sweep hands each
stage's pending jobs to Ray Tune as a grid of trials — a local Ray by default, an existing
cluster with ``--address`` — waits for them, then starts the next stage. Results land in the
same run-folder layout as ``policyshare run``, so ``policyshare report`` works on either, and a
sweep stopped half-way continues with ``policyshare run`` or another sweep.

On a cluster every node must see the experiment folder at the same path (a shared file
system) and have policyshare installed. A trial whose worker dies (a lost node, a killed or
crashed process) is retried by Ray Tune's own failure handling (``FailureConfig.max_failures``,
``--max-failures``), on any node with room; the retried job resumes from its run folder's last
checkpoint (:func:`policyshare.experiment.run_job`), so the loss costs at most the env steps
since that checkpoint and the run folders come out as in an uninterrupted run. A job that fails
on its own input (a :class:`~policyshare.errors.UserError`) would fail again: it is reported,
not retried. Ray is an optional extra:
``pip install 'policyshare[ray]'``. ``--backend local`` runs the jobs one after another
without Ray.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from policyshare.errors import UserError
from policyshare.experiment.layout import Job
from policyshare.experiment.runner import Executor, run_experiment, run_job

log = logging.getLogger(__name__)

#: Retries of a trial whose worker was lost, by default (Ray Tune's ``FailureConfig.max_failures``).
DEFAULT_MAX_FAILURES = 3


def import_ray(command: str, alternative: str = "") -> Any:
    """Import Ray (with Ray Tune), an optional extra, or say how to install it.

    Args:
        command: the command that needs Ray, for the message (``policyshare sweep``).
        alternative: the rest of the message, e.g. a way to go without Ray.

    Returns:
        The ``ray`` module.

    Raises:
        UserError: Ray or Ray Tune is not installed.
    """
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise UserError(f"{command} needs Ray: pip install 'policyshare[ray]' (or 'ray[tune]'){alternative}") from None
    return ray


def _check_reachable(address: str) -> None:
    """Refuse at once a ``host:port`` (or ``ray://host:port``) address where nothing listens.

    ``ray.init`` would wait for minutes before it gives up on an address with no Ray behind it.

    Raises:
        UserError: nothing accepts a connection at the address (within 5 s).
    """
    import socket

    target = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" and the like: Ray resolves them
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"no Ray cluster at --address {address} ({e.strerror or e}); start one there "
                        "(ray start --head) or leave --address out for a local Ray") from None


def init_ray(address: str | None) -> None:
    """Connect to the Ray cluster at ``address``, or start a local Ray (``None``), once per process.

    Workers get ``PYTHONWARNINGS=ignore``; their output is not forwarded to the driver.

    Raises:
        UserError: Ray is not installed, or no Ray cluster answers at ``address``.
    """
    ray = import_ray("this command")
    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}})
    except ConnectionError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not connect to the Ray cluster at --address {address}: {first}") from None


def _trial(config: Mapping[str, Any]) -> dict[str, Any]:
    """One Ray Tune trial: run one job of the experiment (in the caller's working directory).

    A :class:`UserError` (bad input: it would fail again) is returned as the trial's result, so
    Ray Tune does not retry it; any other failure (a lost worker, a crash) is left to Tune.
    """
    import torch

    os.chdir(config["cwd"])
    torch.set_num_threads(1)
    try:
        status = run_job(config["root"], config["job"])
    except UserError as e:
        return {"job": config["job"]["name"], "status": "failed", "error": str(e)}
    return {"job": config["job"]["name"], "status": status}


def _retry_notices(max_failures: int) -> Any:
    """A Ray Tune callback printing one line per trial that Tune retries, and counting them."""
    from ray import tune

    class RetryNotices(tune.Callback):
        def __init__(self) -> None:
            self.retried: list[str] = []

        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            name = trial.config["job"]["name"]
            self.retried.append(name)
            limit = "unlimited" if max_failures < 0 else str(max_failures)
            log.info(f"  {name}: its worker was lost or crashed (failure {self.retried.count(name)}, at most "
                     f"{limit} retried); retrying it, resuming from its run folder's last checkpoint")

    return RetryNotices()


def ray_executor(address: str | None = None, cpus_per_trial: float = 1.0,
                 max_failures: int = DEFAULT_MAX_FAILURES) -> Executor:
    """An executor that runs a stage's jobs as Ray Tune trials.

    Args:
        address: an existing Ray cluster (``ray://host:10001`` or ``host:6379``); ``None`` starts
            a local Ray.
        cpus_per_trial: CPUs Ray reserves per trial (trials run one torch thread each).
        max_failures: how many times Ray Tune retries a trial whose worker died (a lost node, a
            killed or crashed process); ``0`` never, ``-1`` without limit
            (``tune.FailureConfig(max_failures=...)``). A retried job resumes from its run
            folder's last checkpoint. A job failing with a :class:`UserError` is not retried.

    Raises:
        UserError: Ray is not installed (with the command that installs it), or a trial failed
            (on its own input, or more often than ``max_failures`` allows).
    """
    import_ray("policyshare sweep", "; or run the jobs one after another with --backend local")
    from ray import tune

    def execute(root: Path, jobs: Sequence[Job]) -> None:
        init_ray(address)
        stage = jobs[0].stage
        trainable = tune.with_resources(_trial, {"cpu": cpus_per_trial})
        space = {"root": str(root.resolve()), "cwd": os.getcwd(),
                 "job": tune.grid_search([asdict(j) for j in jobs])}
        notices = _retry_notices(max_failures)
        tuner = tune.Tuner(trainable, param_space=space,
                           run_config=tune.RunConfig(name=stage, storage_path=str((root / "ray").resolve()),
                                                     verbose=0, callbacks=[notices],
                                                     failure_config=tune.FailureConfig(max_failures=max_failures)))
        results = tuner.fit()
        failed = [str(e).strip().splitlines() for e in results.errors]
        outcomes = [results[i].metrics or {} for i in range(len(results))]
        failed += [[str(m.get("error"))] for m in outcomes if m.get("status") == "failed"]
        if failed:
            first = failed[0][-1] if failed[0] else "unknown error"
            raise UserError(f"{len(failed)} of {len(jobs)} {stage} trials failed; first: {first} "
                            f"(see {root / 'ray' / stage})")
        for metrics in outcomes:
            log.info(f"  {metrics.get('job')}: {metrics.get('status')}")
        if notices.retried:
            log.info(f"  {len(notices.retried)} {stage} trial(s) retried after a lost or crashed worker: "
                     f"{', '.join(sorted(set(notices.retried)))}")

    return execute


def sweep(config: str | Path, *, seeds: Sequence[int] | None = None, address: str | None = None,
          backend: str = "ray", run_dir: str | Path | None = None,
          overrides: Mapping[str, Any] | None = None, max_failures: int | None = None) -> Path:
    """Run an experiment's jobs on Ray Tune (or locally) and return its folder.

    Args:
        config: the experiment YAML.
        seeds: seeds of the transfer runs (override the config's).
        address: Ray cluster address; ``None`` starts a local Ray.
        backend: ``ray`` or ``local``.
        run_dir: the experiment folder.
        overrides: nested config overrides.
        max_failures: retries of a trial whose worker died (``ray`` backend; ``-1`` without
            limit; default :data:`DEFAULT_MAX_FAILURES`); see :func:`ray_executor`.

    Raises:
        UserError: an unknown backend, ``max_failures`` below -1 or given with ``local``, no Ray
            installed, a failed trial, a bad config (all but a failed trial before any job runs).
    """
    merged = dict(overrides or {})
    if seeds is not None:
        merged["seeds"] = list(seeds)
    if backend not in ("ray", "local"):
        raise UserError(f"unknown backend {backend!r}; choose ray or local")
    if max_failures is not None and max_failures < -1:
        raise UserError(f"--max-failures must be a count of retries (0, 1, …) or -1 for no limit, got {max_failures}")
    if backend == "local":
        if max_failures is not None:
            raise UserError("--max-failures is Ray Tune's retry of a lost trial; with --backend local rerun the "
                            "command instead (finished jobs are kept, unfinished ones resume)")
        return run_experiment(config, run_dir=run_dir, overrides=merged)
    if address is not None:
        _check_reachable(address)  # before the experiment folder is opened: a wrong address writes nothing
    executor = ray_executor(address, max_failures=DEFAULT_MAX_FAILURES if max_failures is None else max_failures)
    return run_experiment(config, run_dir=run_dir, overrides=merged, executor=executor)
