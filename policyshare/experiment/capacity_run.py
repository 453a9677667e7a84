"""What the capacity study's jobs run (:mod:`policyshare.experiment.capacity`): single-task
networks, multi-task PPO, and students sized by :func:`~policyshare.experiment.capacity.fit_width`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from policyshare.config import deep_merge
from policyshare.experiment.capacity import SHARED, fit_width
from policyshare.experiment.capacity_plan import run_name, single_timesteps
from policyshare.experiment.config import ExperimentConfig
from policyshare.experiment.layout import Job


def _alignment(alignment: str | None) -> dict[str, Any]:
    return {"trunk": {"alignment": alignment}} if alignment else {}


def _single_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.train import train

    p = job.params
    folder = job.folder(root)
    train(p["env_id"], cfg.algo, timesteps=single_timesteps(cfg), seed=int(p["seed"]), run_dir=folder,
          overrides=deep_merge(cfg.capacity.train_set, _alignment(p["alignment"])),
          resume=(folder / "meta.json").is_file(), run_name="capacity_single",
          extra_config={"capacity": {"variant": "single", "games": list(p["games"])}})


def _multitask_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.multitask import multitask

    p = job.params
    folder = job.folder(root)
    overrides = deep_merge(deep_merge({"experts": "none"}, cfg.capacity.multitask_set), _alignment(p["alignment"]))
    multitask(list(p["games"]), timesteps=cfg.capacity.timesteps, seed=int(p["seed"]), run_dir=folder,
              overrides=overrides, resume=(folder / "meta.json").is_file())


def student_overrides(cfg: ExperimentConfig, games: list[str], alignment: str | None, target: int) -> dict[str, Any]:
    """The distillation overrides of a student of ``games`` with about ``target`` parameters: the
    capacity's ``distill_set``, the alignment, ``trunk.width`` and ``head_hidden`` scaled by it."""
    from policyshare.distill import load_distill_config
    from policyshare.distill.student import build_student, task_info
    from policyshare.envs import suite_for

    base = deep_merge(cfg.capacity.distill_set, _alignment(alignment))
    d_cfg = load_distill_config(None, base)
    tasks = [task_info(g) for g in games]
    suite = suite_for(games[0])

    def sized(width: float) -> dict[str, Any]:
        return deep_merge(base, {"trunk": {"width": width},
                                 "head_hidden": [max(1, round(h * width)) for h in d_cfg.head_hidden]})

    def count(width: float) -> int:
        return build_student(tasks, suite, load_distill_config(None, sized(width))).n_parameters()

    return sized(fit_width(target, count))


def _student_job(root: Path, cfg: ExperimentConfig, job: Job) -> None:
    from policyshare.distill import distill
    from policyshare.io import read_json

    p = job.params
    folder = job.folder(root)
    games, seed = list(p["games"]), int(p["seed"])
    singles = [root / run_name(cfg, "single", seed, g) for g in games]
    total = sum(int(read_json(s / "metrics.json", "single-task metrics")["n_parameters"]) for s in singles)
    target = total if SHARED[p["variant"]] == "total" else round(total / len(games))
    overrides = student_overrides(cfg, games, p["alignment"], target)
    distill([f"{g}={s / 'model.zip'}" for g, s in zip(games, singles)], steps=cfg.capacity.distill_steps,
            seed=seed, run_dir=folder, overrides=overrides, resume=(folder / "meta.json").is_file())


#: What each capacity job kind runs (merged into :data:`policyshare.experiment.jobs.RUNNERS`).
RUNNERS: dict[str, Callable[[Path, ExperimentConfig, Job], None]] = {
    "capacity_single": _single_job, "capacity_multitask": _multitask_job, "capacity_student": _student_job}


__all__ = ["RUNNERS", "student_overrides"]
