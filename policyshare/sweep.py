"""Scale-out: ``policyshare sweep`` runs an experiment's jobs as Ray Tune trials.

The experiment (:mod:`policyshare.experiment`) is a sequence of stages, each a list of
independent jobs (method × task × seed); every job writes one run folder. The sweep hands each
stage's pending jobs to Ray Tune as a grid of trials — a local Ray by default, an existing
cluster with ``--address`` — waits for them, then starts the next stage. Results land in the
same run-folder layout as ``policyshare run``, so ``policyshare report`` works on either, and a
sweep stopped half-way continues with ``policyshare run`` or another sweep.

On a cluster every node must see the experiment folder at the same path (a shared file
system) and have policyshare installed. Ray is an optional extra:
``pip install 'policyshare[ray]'``. ``--backend local`` runs the jobs one after another
without Ray.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from policyshare.errors import UserError
from policyshare.experiment import Executor, Job, run_experiment, run_job


def _trial(config: Mapping[str, Any]) -> dict[str, Any]:
    """One Ray Tune trial: run one job of the experiment (in the caller's working directory)."""
    import torch

    os.chdir(config["cwd"])
    torch.set_num_threads(1)
    status = run_job(config["root"], config["job"])
    return {"job": config["job"]["name"], "status": status}


def ray_executor(address: str | None = None, cpus_per_trial: float = 1.0) -> Executor:
    """An executor that runs a stage's jobs as Ray Tune trials.

    Args:
        address: an existing Ray cluster (``ray://host:10001`` or ``host:6379``); ``None`` starts
            a local Ray.
        cpus_per_trial: CPUs Ray reserves per trial (trials run one torch thread each).

    Raises:
        UserError: Ray is not installed (with the command that installs it), or a trial failed.
    """
    try:
        import ray
        from ray import tune
    except ImportError:
        raise UserError("policyshare sweep needs Ray: pip install 'policyshare[ray]' (or 'ray[tune]'); "
                        "or run the jobs one after another with --backend local") from None

    def execute(root: Path, jobs: Sequence[Job]) -> None:
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}})
        stage = jobs[0].stage
        trainable = tune.with_resources(_trial, {"cpu": cpus_per_trial})
        space = {"root": str(root.resolve()), "cwd": os.getcwd(),
                 "job": tune.grid_search([asdict(j) for j in jobs])}
        tuner = tune.Tuner(trainable, param_space=space,
                           run_config=tune.RunConfig(name=stage, storage_path=str((root / "ray").resolve()),
                                                     verbose=0))
        results = tuner.fit()
        if results.errors:
            first = str(results.errors[0]).strip().splitlines()
            raise UserError(f"{len(results.errors)} of {len(jobs)} {stage} trials failed; first: "
                            f"{first[-1] if first else 'unknown error'} (see {root / 'ray' / stage})")
        for i in range(len(results)):
            metrics = results[i].metrics or {}
            print(f"  {metrics.get('job')}: {metrics.get('status')}", flush=True)

    return execute


def sweep(config: str | Path, *, seeds: Sequence[int] | None = None, address: str | None = None,
          backend: str = "ray", run_dir: str | Path | None = None,
          overrides: Mapping[str, Any] | None = None) -> Path:
    """Run an experiment's jobs on Ray Tune (or locally) and return its folder.

    Args:
        config: the experiment YAML.
        seeds: seeds of the transfer runs (override the config's).
        address: Ray cluster address; ``None`` starts a local Ray.
        backend: ``ray`` or ``local``.
        run_dir: the experiment folder.
        overrides: nested config overrides.

    Raises:
        UserError: an unknown backend, no Ray installed, a failed trial, a bad config.
    """
    merged = dict(overrides or {})
    if seeds is not None:
        merged["seeds"] = list(seeds)
    if backend == "local":
        return run_experiment(config, run_dir=run_dir, overrides=merged)
    if backend != "ray":
        raise UserError(f"unknown backend {backend!r}; choose ray or local")
    return run_experiment(config, run_dir=run_dir, overrides=merged, executor=ray_executor(address))
