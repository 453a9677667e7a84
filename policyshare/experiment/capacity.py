"""The ``capacity`` stages: "data per parameter", measured (issue 12, item 6).

At one fixed total env-step budget ``B`` over ``K`` source games (``capacity.games``, default the
first target's sources), four variants, each per seed of ``capacity.seeds`` (default the
experiment's seeds):

* ``single`` — ``K`` single-task networks: ordinary ``policyshare train`` runs, ``B / K`` env
  steps each (stage ``capacity``, ``capacity/single/<env>__s<seed>``);
* ``multitask`` — multi-task PPO from scratch (:func:`policyshare.multitask.multitask`): one
  shared-trunk network, masked common action space, ``B`` env steps over the games, its width as
  configured (stage ``capacity``, ``capacity/multitask/<games>__s<seed>``);
* ``shared_total`` and ``shared_one`` — one shared network, an Actor-Mimic student
  (:func:`policyshare.distill.distill`) of that seed's ``K`` single-task networks, sized to the
  trainable parameters of the ``K`` networks together, or to ``1/K`` of them (stage
  ``capacity_shared``, ``capacity/shared_total/…``, ``capacity/shared_one/…``). Its size is set
  by one width multiplier on the trunk's channels and units (``trunk.width``) and the hidden
  layers above it (``head_hidden``), chosen by :func:`fit_width` so the student's parameter
  count is the nearest reachable to the target; both are recorded in the run's ``config.yaml``,
  and the counts in its ``metrics.json``. Its env steps are its own distillation's plus, as
  upstream, its teachers' ``B``.

:mod:`policyshare.experiment.capacity_report` turns the run folders into the summary and verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass

from policyshare.config import SETTINGS, Settings, deep_merge, to_dict

if TYPE_CHECKING:
    from policyshare.experiment.budget import JobCost, Throughput
    from policyshare.experiment.config import ExperimentConfig
    from policyshare.experiment.layout import Job

#: The variants, in report order.
VARIANTS: tuple[str, ...] = ("single", "shared_total", "shared_one", "multitask")
#: The shared (Actor-Mimic) variants: their size as a fraction of the K single-task networks together.
SHARED: dict[str, str] = {"shared_total": "total", "shared_one": "one"}
#: The stages (in :data:`~policyshare.experiment.config.STAGES`) and the job kinds of each.
STAGE_KINDS: dict[str, tuple[str, ...]] = {"capacity": ("capacity_single", "capacity_multitask"),
                                           "capacity_shared": ("capacity_student",)}


@dataclass(config=SETTINGS)
class CapacityStage(Settings):
    """Data per parameter at a fixed budget (off by default).

    Attributes:
        enabled: run the ``capacity`` and ``capacity_shared`` stages.
        games: the ``K`` source games (default: the first target's sources); at least two.
        timesteps: the total env-step budget ``B`` over the games (``B / K`` per single-task
            network, ``B`` for multi-task PPO and for the students' teachers together).
        seeds: seeds of every variant (default: the experiment's ``seeds``).
        distill_steps: env steps per game of each student's distillation.
        train_set: overrides of the training config (``configs/<algo>.yaml``) of the single-task networks.
        multitask_set: overrides of ``configs/multitask.yaml``.
        distill_set: overrides of ``configs/actor_mimic.yaml`` (``head_hidden`` is scaled with the width).
    """

    enabled: bool = False
    games: list[str] | None = None
    timesteps: PositiveInt = 131_072
    seeds: list[NonNegativeInt] | None = None
    distill_steps: PositiveInt = 8192
    train_set: dict[str, Any] = field(default_factory=dict)
    multitask_set: dict[str, Any] = field(default_factory=dict)
    distill_set: dict[str, Any] = field(default_factory=dict)


def check_capacity(cfg: ExperimentConfig) -> None:
    """The cross-field checks of the ``capacity`` section (games known).

    Raises:
        ValueError: fewer than two games, a game listed twice or outside ``games``, no seeds,
            or a budget below one env step per game.
    """
    c = cfg.capacity
    if not c.enabled:
        return
    if c.seeds is not None and not c.seeds:
        raise ValueError("capacity.seeds: list at least one seed >= 0, or leave it unset (the experiment's seeds)")
    games = capacity_games(cfg)
    if len(games) < 2:
        raise ValueError(f"capacity.games: {len(games)} game; a shared network needs at least two source games")
    if len(set(games)) < len(games):
        raise ValueError(f"capacity.games: {games} lists a game twice; list each once")
    if isinstance(cfg.games, list):
        unknown = [g for g in games if g not in cfg.games]
        if unknown:
            raise ValueError(f"capacity.games: {unknown[0]} is not one of games ({', '.join(cfg.games)})")
    if c.timesteps < len(games):
        raise ValueError(f"capacity.timesteps: {c.timesteps} is less than one env step per game ({len(games)})")


def capacity_games(cfg: ExperimentConfig) -> list[str]:
    """The ``K`` games: ``capacity.games``, or the first target's source games."""
    return list(cfg.capacity.games or cfg.sources_for(cfg.target_games[0]))


def capacity_seeds(cfg: ExperimentConfig) -> list[int]:
    """The seeds of every variant: ``capacity.seeds``, or the experiment's."""
    return list(cfg.capacity.seeds or cfg.seeds)


def single_timesteps(cfg: ExperimentConfig) -> int:
    """Env steps of one single-task network: ``B // K``."""
    return cfg.capacity.timesteps // len(capacity_games(cfg))


def _group(cfg: ExperimentConfig) -> str:
    from policyshare.experiment.design import group_name

    return group_name(capacity_games(cfg))


def run_name(cfg: ExperimentConfig, variant: str, seed: int, game: str | None = None) -> str:
    """A variant's run folder, relative to the experiment folder (``capacity/<variant>/…__s<seed>``)."""
    from policyshare.io import slug

    where = slug(game) if game is not None else _group(cfg)
    return f"capacity/{variant}/{where}__s{seed}"


def capacity_jobs(cfg: ExperimentConfig) -> dict[str, list[Job]]:
    """The jobs of both stages (empty lists when ``capacity.enabled`` is false)."""
    from policyshare.experiment.layout import Job

    out: dict[str, list[Job]] = {s: [] for s in STAGE_KINDS}
    if not cfg.capacity.enabled:
        return out
    games = capacity_games(cfg)
    alignment = cfg.alignments[0]
    for seed in capacity_seeds(cfg):
        base = {"seed": seed, "games": games, "alignment": alignment}
        out["capacity"] += [Job("capacity", "capacity_single", run_name(cfg, "single", seed, g),
                                {**base, "variant": "single", "env_id": g}) for g in games]
        out["capacity"].append(Job("capacity", "capacity_multitask", run_name(cfg, "multitask", seed),
                                   {**base, "variant": "multitask"}))
        out["capacity_shared"] += [Job("capacity_shared", "capacity_student", run_name(cfg, v, seed),
                                       {**base, "variant": v}) for v in SHARED]
    return out


def capacity_settings(cfg: ExperimentConfig, job: Job) -> dict[str, Any]:
    """Every setting a capacity job's result depends on (a student's: its teachers' too)."""
    d = to_dict(cfg)["capacity"]
    p = job.params
    base = {"algo": cfg.algo, "seed": p["seed"], "alignment": p["alignment"], "games": list(p["games"]),
            "timesteps": d["timesteps"]}
    if job.kind == "capacity_single":
        return {**base, "env_id": p["env_id"], "train_set": d["train_set"]}
    if job.kind == "capacity_multitask":
        return {**base, "multitask_set": d["multitask_set"]}
    return {**base, "variant": p["variant"], "distill_steps": d["distill_steps"], "distill_set": d["distill_set"],
            "teachers": d["train_set"]}


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


def fit_width(target: int, count: Callable[[float], int], low: float = 0.02, high: float = 32.0) -> float:
    """The width multiplier whose network's parameter count ``count(width)`` is nearest ``target``
    (``count`` grows with the width): bisection, then the nearer of the two bracketing widths,
    rounded to 4 decimals (the value recorded in the run's config)."""
    for _ in range(40):
        mid = (low * high) ** 0.5
        if count(mid) < target:
            low = mid
        else:
            high = mid
    candidates = {round(w, 4) for w in (low, high)}
    return min(sorted(candidates), key=lambda w: abs(count(w) - target))


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


def capacity_cost(cfg: ExperimentConfig, job: Job, tp: Throughput, cost: Mapping[str, Callable[..., JobCost]]
                  ) -> JobCost:
    """The planned cost of a capacity job, from :mod:`~policyshare.experiment.budget`'s cost
    functions (``cost["train"]``, ``cost["multitask"]``, ``cost["distill"]``) on its settings."""
    c = cfg.capacity
    if job.kind == "capacity_single":
        return cost["train"](cfg, job, job.params["env_id"], single_timesteps(cfg), None, c.train_set, tp.train, tp)
    if job.kind == "capacity_multitask":
        return cost["multitask"](job, c.timesteps, c.multitask_set, tp)
    return cost["distill"](job, c.distill_steps, c.distill_set, tp)


__all__ = ["RUNNERS", "SHARED", "STAGE_KINDS", "VARIANTS", "CapacityStage", "capacity_cost", "capacity_games",
           "capacity_jobs", "capacity_seeds", "capacity_settings", "check_capacity", "fit_width", "run_name",
           "single_timesteps", "student_overrides"]
