"""The capacity study's plan (:mod:`policyshare.experiment.capacity`): its games, seeds, run
folders, jobs (as plain data) and the settings each job's result depends on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policyshare.config import to_dict
from policyshare.experiment.capacity import SHARED, STAGE_KINDS
from policyshare.experiment.config import ExperimentConfig
from policyshare.experiment.design import group_name
from policyshare.io import slug

#: A job as plain data: ``(stage, kind, name, params)``.
JobSpec = tuple[str, str, str, dict[str, Any]]


def capacity_games(cfg: ExperimentConfig) -> list[str]:
    """The ``K`` games: ``capacity.games``, or the first target's source games
    (:meth:`~policyshare.experiment.config.ExperimentConfig.capacity_games`)."""
    return cfg.capacity_games()


def capacity_seeds(cfg: ExperimentConfig) -> list[int]:
    """The seeds of every variant: ``capacity.seeds``, or the experiment's."""
    return list(cfg.capacity.seeds or cfg.seeds)


def single_timesteps(cfg: ExperimentConfig) -> int:
    """Env steps of one single-task network: ``B // K``."""
    return cfg.capacity.timesteps // len(capacity_games(cfg))


def _group(cfg: ExperimentConfig) -> str:
    return group_name(capacity_games(cfg))


def run_name(cfg: ExperimentConfig, variant: str, seed: int, game: str | None = None) -> str:
    """A variant's run folder, relative to the experiment folder (``capacity/<variant>/…__s<seed>``)."""
    where = slug(game) if game is not None else _group(cfg)
    return f"capacity/{variant}/{where}__s{seed}"


def capacity_jobs(cfg: ExperimentConfig) -> dict[str, list[JobSpec]]:
    """The jobs of both stages as ``(stage, kind, name, params)`` (empty lists when
    ``capacity.enabled`` is false); :func:`policyshare.experiment.layout.plan` makes them jobs."""
    out: dict[str, list[JobSpec]] = {s: [] for s in STAGE_KINDS}
    if not cfg.capacity.enabled:
        return out
    games = capacity_games(cfg)
    alignment = cfg.alignments[0]
    for seed in capacity_seeds(cfg):
        base = {"seed": seed, "games": games, "alignment": alignment}
        out["capacity"] += [("capacity", "capacity_single", run_name(cfg, "single", seed, g),
                                {**base, "variant": "single", "env_id": g}) for g in games]
        out["capacity"].append(("capacity", "capacity_multitask", run_name(cfg, "multitask", seed),
                                   {**base, "variant": "multitask"}))
        out["capacity_shared"] += [("capacity_shared", "capacity_student", run_name(cfg, v, seed),
                                       {**base, "variant": v}) for v in SHARED]
    return out


def capacity_settings(cfg: ExperimentConfig, kind: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting a capacity job's result depends on (a student's: its teachers' too), from its
    kind and params."""
    d = to_dict(cfg)["capacity"]
    base = {"algo": cfg.algo, "seed": p["seed"], "alignment": p["alignment"], "games": list(p["games"]),
            "timesteps": d["timesteps"]}
    if kind == "capacity_single":
        return {**base, "env_id": p["env_id"], "train_set": d["train_set"]}
    if kind == "capacity_multitask":
        return {**base, "multitask_set": d["multitask_set"]}
    return {**base, "variant": p["variant"], "distill_steps": d["distill_steps"], "distill_set": d["distill_set"],
            "teachers": d["train_set"]}


__all__ = ["JobSpec", "capacity_games", "capacity_jobs", "capacity_seeds", "capacity_settings", "run_name",
           "single_timesteps"]
