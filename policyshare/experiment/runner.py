"""Running the experiment: ``policyshare run CONFIG`` stage by stage, resumable, one or many jobs at once.

:func:`open_experiment` validates the config and opens (or reopens) the experiment folder,
refusing a changed setting that a finished job depends on; :func:`force_stage` moves a stage's
outputs aside for ``--force``; :func:`run_job` runs one job (the unit ``policyshare sweep`` hands
to Ray Tune, :mod:`policyshare.experiment.sweep`); :func:`local_pool` runs a stage's jobs in
worker processes and stops them cleanly on Ctrl-C; :func:`run_experiment` runs the stages in
order.

A job whose run folder is finished is not redone; an unfinished one resumes from its last
checkpoint (the vision job, which has no checkpoints, restarts and moves its unfinished folder
aside). So the command can be killed and started again, and a second run of a finished
experiment only checks the folders.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from policyshare.config import as_stored, from_dict, read_yaml, to_dict
from policyshare.console import inner_run
from policyshare.errors import Interrupted, UserError
from policyshare.experiment.checks import load_experiment_config
from policyshare.experiment.config import STAGES, ExperimentConfig
from policyshare.experiment.jobs import RUNNERS
from policyshare.experiment.layout import STAGE_OUTPUTS, Job, default_root, job_settings, plan
from policyshare.runs import RunFolder, move_aside

log = logging.getLogger(__name__)


def run_job(root: str | Path, job: Job | Mapping[str, Any]) -> str:
    """Run one job of the experiment in ``root`` (reading its ``config.yaml``); skip it if done.

    This is the unit ``policyshare sweep`` hands to Ray Tune, so it takes plain data. The job's
    own progress is logged as an inner run's (:func:`~policyshare.console.inner_run`: shown with
    ``-v``).

    Returns:
        ``"done"`` (it was finished before) or ``"ran"``.
    """
    root = Path(root)
    j = job if isinstance(job, Job) else Job(**dict(job))
    cfg = from_dict(ExperimentConfig, read_yaml(root / "config.yaml"), str(root / "config.yaml"))
    if j.done(root):
        return "done"
    with inner_run():
        RUNNERS[j.kind](root, cfg, j)
    _release(j.folder(root))
    return "ran"


def _release(folder: Path) -> None:
    """Let other processes resume this folder (``train`` and ``distill`` lock run folders)."""
    RunFolder(folder).release()


def open_experiment(config: str | Path, run_dir: str | Path | None,
                    overrides: Mapping[str, Any] | None = None,
                    force: Sequence[str] = ()) -> tuple[ExperimentConfig, Path]:
    """Validate the config and open (or reopen) the experiment folder.

    A reopened experiment may change any setting that no finished job depends on
    (:func:`job_settings`), and any setting at all of the stages ``force`` redoes; the stored
    ``config.yaml`` is then updated. So more seeds, targets or methods only add their own jobs.

    Raises:
        UserError: a changed setting that a finished job depends on (naming the job and the
            ``--force STAGE`` that redoes it).
    """
    cfg = load_experiment_config(config, overrides)
    root = Path(run_dir) if run_dir is not None else default_root(cfg)
    resolved = to_dict(cfg)
    now = as_stored(resolved)
    resume = (root / "meta.json").is_file()
    changed = False
    if (root / "config.yaml").is_file():
        stored = read_yaml(root / "config.yaml") or {}
        keys = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
        if keys:
            before = from_dict(ExperimentConfig, stored, str(root / "config.yaml"))
            forced = min(force, key=STAGES.index) if force else None
            redone = STAGES[STAGES.index(forced):] if forced else ()
            jobs = plan(cfg)
            stale = [j for s in STAGES if s not in redone for j in jobs[s]
                     if j.kind != "report" and j.done(root) and job_settings(before, j) != job_settings(cfg, j)]
            if stale:
                first = min((j.stage for j in stale), key=STAGES.index)
                more = f" and {len(stale) - 1} more" if len(stale) > 1 else ""
                raise UserError(f"{root}: {', '.join(keys)} changed, and {stale[0].name}{more} finished with the "
                                f"old settings; add --force {first} to redo the {first} stage and every later one "
                                "(their outputs are moved aside), or use another --run-dir")
            changed = True
    RunFolder.open(root, command="run", config=resolved, resume=resume)
    if changed:
        from policyshare.io import atomic_write_text

        atomic_write_text(root / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    return cfg, root


def force_stage(root: Path, stage: str) -> list[Path]:
    """Move a stage's outputs, and those of every later stage, aside under ``.replaced/``.

    Nothing is deleted: a later stage depends on the earlier ones, so all of them are redone.

    Returns:
        The folders moved.
    """
    later = STAGES[STAGES.index(stage):]
    moved = []
    for s in later:
        for name in STAGE_OUTPUTS[s]:
            src = root / name
            if src.exists():
                moved.append(move_aside(src, root))
    return moved


Executor = Callable[[Path, Sequence[Job]], None]


def _local(root: Path, jobs: Sequence[Job]) -> None:
    for job in jobs:
        started = time.perf_counter()
        log.info(f"  {job.name} …")
        run_job(root, job)
        log.info(f"  {job.name}: done ({time.perf_counter() - started:.0f} s)")


#: Set in a worker of :func:`local_pool` while it runs a job.
_IN_JOB = False


def _worker_start() -> None:
    """A pool worker: its own process group, so that a Ctrl-C at the terminal reaches only the
    parent (which asks each worker once); SIGINT interrupts a job, and is ignored between jobs."""
    import os
    import signal

    os.setpgrp()

    def on_sigint(signum: int, frame: Any) -> None:
        if _IN_JOB:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)


def _job_in_process(root: str, job: dict[str, Any]) -> str:
    import torch

    global _IN_JOB
    torch.set_num_threads(1)
    _IN_JOB = True
    try:
        return run_job(root, job)
    finally:
        _IN_JOB = False


def _unfinished(root: Path, jobs: Sequence[Job], signame: str) -> Interrupted:
    left = [j.name for j in jobs if not j.done(root)]
    shown = ", ".join(left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4 else "")
    return Interrupted(f"interrupted ({signame}); unfinished: {shown or 'none of this stage'}, and the later "
                       "stages; run the same command again to continue (finished jobs are kept, unfinished "
                       "ones resume from their last checkpoint)")


def local_pool(workers: int) -> Executor:
    """An executor running up to ``workers`` jobs at once in separate processes (one torch thread
    each); ``workers == 1`` runs them in this process, one after another.

    Jobs are handed to a worker only when one is free. On SIGINT (Ctrl-C) or SIGTERM no further
    job starts, each running job is asked once to stop (training saves a checkpoint first), and
    :class:`~policyshare.errors.Interrupted` (exit status 130) names the unfinished jobs; the same
    command resumes them. A second signal asks the running jobs again, which stops them at once.

    Raises:
        Interrupted: a signal stopped the stage.
    """
    if workers <= 1:
        return _local

    def execute(root: Path, jobs: Sequence[Job]) -> None:
        import multiprocessing
        import os
        import signal
        import threading
        from concurrent.futures import FIRST_COMPLETED, Future, wait
        from concurrent.futures import ProcessPoolExecutor as Pool
        from dataclasses import asdict

        stop: list[str] = []

        def on_signal(signum: int, frame: Any) -> None:
            stop.append(signal.Signals(signum).name)
            for child in multiprocessing.active_children():  # the pool's workers
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGINT)

        handled = (signal.SIGINT, signal.SIGTERM)
        previous = ({s: signal.signal(s, on_signal) for s in handled}
                    if threading.current_thread() is threading.main_thread() else {})
        error: BaseException | None = None
        try:
            ctx = multiprocessing.get_context("spawn")
            with Pool(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_worker_start) as pool:
                queue = list(jobs)
                running: dict[Future[str], Job] = {}
                while running or (queue and not stop and error is None):
                    while queue and not stop and error is None and len(running) < workers:
                        job = queue.pop(0)
                        running[pool.submit(_job_in_process, str(root), asdict(job))] = job
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for f in finished:
                        job = running.pop(f)
                        try:
                            log.info(f"  {job.name}: {f.result()}")
                        except BaseException as e:  # a job failed, or was stopped by the signal
                            if stop:
                                log.info(f"  {job.name}: stopped ({e})")
                            elif error is None:
                                error = e
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        if stop:
            raise _unfinished(root, jobs, stop[0])
        if error is not None:
            raise error

    return execute


def describe_plan(config: str | Path, overrides: Mapping[str, Any] | None = None, cores: int = 1) -> str:
    """``policyshare run CONFIG --plan``: validate the config (every refusal of
    :func:`~policyshare.experiment.checks.load_experiment_config`) and describe its jobs — count,
    env steps per stage, estimated wall time on ``cores`` cores
    (:mod:`~policyshare.experiment.budget`) — without writing anything.

    Raises:
        ConfigError, UserError: a config that cannot run (one line).
    """
    from policyshare.experiment.budget import estimate, render

    cfg = load_experiment_config(config, overrides)
    return render(cfg, estimate(cfg, plan(cfg)), cores)


def run_experiment(config: str | Path, *, run_dir: str | Path | None = None, only: str | None = None,
                   force: Sequence[str] = (), overrides: Mapping[str, Any] | None = None,
                   executor: Executor = _local) -> Path:
    """Run (or finish) the experiment; return its folder.

    Args:
        config: the experiment YAML.
        run_dir: the experiment folder (default ``runs/<name>``).
        only: run just this stage (the earlier ones must be done).
        force: redo these stages (and every later one): their outputs are moved aside.
        overrides: nested config overrides (``--set``).
        executor: runs a stage's pending jobs (one after another by default; Ray in ``sweep``).

    Raises:
        UserError: bad config, an unknown stage, ``only`` with unfinished earlier stages.
    """
    for s in [*force, *([only] if only else [])]:
        if s not in STAGES:
            raise UserError(f"unknown stage {s!r}; stages: {', '.join(STAGES)}")
    cfg, root = open_experiment(config, run_dir, overrides, force)
    for s in sorted(force, key=STAGES.index)[:1]:
        for moved in force_stage(root, s):
            log.info(f"moved aside: {moved}")
    stages = plan(cfg)
    if only is not None:
        for s in STAGES[:STAGES.index(only)]:
            unfinished = [j.name for j in stages[s] if not j.done(root)]
            if unfinished:
                raise UserError(f"--only {only} needs the {s} stage, which is not finished ({unfinished[0]} …); "
                                "run without --only first")
    started = time.perf_counter()
    for stage in STAGES:
        if only is not None and stage != only:
            continue
        pending = [j for j in stages[stage] if not j.done(root)]
        if not pending:
            log.info(f"[{stage}] done ({len(stages[stage])} jobs)")
            continue
        log.info(f"[{stage}] {len(pending)} of {len(stages[stage])} jobs to run")
        executor(root, pending)
    log.info(f"experiment folder: {root} ({time.perf_counter() - started:.0f} s)")
    if (root / "report.md").is_file():
        log.info(f"report:            {root / 'report.md'}")
    log.info(f"TensorBoard:       tensorboard --logdir {shlex.quote(str(root))}")
    for label, pattern in (("experts:", "experts/*/*/model.zip"), ("students:", "distill/*/*/student.safetensors"),
                           ("multi-task nets:", "multitask/*/*/trunk.safetensors"),
                           ("transfer runs:", "transfer/*/*/model.zip")):
        found = sorted(root.glob(pattern))
        if found:
            more = f"  (+{len(found) - 1} more: {root / pattern})" if len(found) > 1 else ""
            log.info(f"{label:18s} {found[0]}{more}")
    return root


__all__ = ["Executor", "describe_plan", "force_stage", "local_pool", "open_experiment", "run_experiment", "run_job"]
