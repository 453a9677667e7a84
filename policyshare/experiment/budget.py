"""What an experiment costs before it runs: env steps per job and stage, and an estimated wall time.

``policyshare run CONFIG --plan`` prints :func:`render` of :func:`estimate`: the job count of every
stage, the env steps it trains (each run's budget rounded up to whole rollouts, as SB3 trains
it), the env steps of its greedy evaluation episodes (at assumed episode lengths), and the time
on one core; then the wall time on ``N`` cores, simulating how ``policyshare run --jobs N`` runs
them (stage after stage; within a stage, jobs in plan order, each on the next free core).

The speeds are assumptions (:class:`Throughput`), measured on the 2-core development machine
under load and rounded down: ``policyshare train`` with the MinAtar defaults of
``configs/ppo.yaml`` (64 batched envs) runs at about 5,000 env steps/s per core; relative to it,
in the same conditions, a two-column progressive network ran at 0.31×, multi-task PPO on four
games (32 batched envs each) at 0.69× and greedy evaluation (``policyshare.evaluate``, 5 envs) at
0.36×; under ``stem`` alignment ``policyshare train`` ran at 0.50× its ``pad`` speed, progressive
columns at 0.65×, multi-task PPO at 0.70× and distillation at 0.94× (:attr:`Throughput.stem`).
Actor-Mimic distillation is paced by its collection rounds (``n_envs`` env steps per game,
then one update): about 24 ms per round with four teachers and 12 ms with one, scaled to the same
reference (:attr:`Throughput.distill_round_s`, :attr:`Throughput.distill_game_s`). Each run's
``timing.json`` gives its own figure to check them against.

:func:`expert_timesteps` is also the budget rule of multi-task PPO: by default it trains as many
env steps as the experts of its games together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyshare.config import deep_merge
from policyshare.experiment.config import STAGES, ExperimentConfig
from policyshare.experiment.design import upstream_seeds
from policyshare.experiment.layout import Job
from policyshare.methods import PROGRESSIVE, RANDOM_COLUMN


@dataclass(frozen=True)
class Throughput:
    """Assumed speeds on one core (one torch thread): env steps per second by kind of work,
    and fixed costs in seconds. See the module docstring for where the figures come from.

    Attributes:
        train: ``policyshare train`` (experts, scratch, fine-tuned and frozen trunks).
        progressive: a two-column progressive network (``progressive``, ``random_column``).
        multitask: multi-task PPO, env steps summed over its games.
        distill_round_s: seconds of one collection round of Actor-Mimic distillation (``n_envs``
            env steps per game, then ``configs/actor_mimic.yaml``'s update), without its games …
        distill_game_s: … plus these seconds per game.
        evaluate: greedy evaluation episodes.
        stem: the training speed under ``stem`` alignment, as a fraction of the above (``pad``
            reads only the game's own channels; ``stem`` runs a 1x1 convolution and the trunk's
            full input width): measured 0.50 (``policyshare train``) to 0.65 (progressive columns).
        stem_multitask: the same for multi-task PPO (measured 0.70).
        stem_distill: the same for distillation (measured 0.94: the teachers' forward passes
            do not change).
        job_s: seconds per job beyond training and evaluation (building envs and the model,
            writing checkpoints and metrics, the random policy's episodes; measured 1 to 1.5 s in a
            warm worker process).
        copy_s: seconds to copy an expert from the zoo or a run folder.
        vision_s: seconds of the vision stage (not env steps: image trunks, a diffusion prior
            and guidance at the quickstart's sizes).
        report_s: seconds of the report.
    """

    train: float = 5000.0
    progressive: float = 1500.0
    multitask: float = 3400.0
    distill_round_s: float = 0.011
    distill_game_s: float = 0.005
    evaluate: float = 1800.0
    stem: float = 0.5
    stem_multitask: float = 0.7
    stem_distill: float = 0.9
    job_s: float = 2.0
    copy_s: float = 3.0
    vision_s: float = 240.0
    report_s: float = 60.0


#: Assumed env steps of one greedy evaluation episode, per game; :data:`DEFAULT_EPISODE_STEPS`
#: by suite elsewhere. MinAtar Freeway always lasts 2,500 steps; a random policy's episodes last
#: 11 (Breakout) to 85 (Asterix) steps, trained ones longer; the 10,000-step limit caps all.
EPISODE_STEPS: dict[str, int] = {"MinAtar/Freeway-v1": 2500, "MinAtar/Freeway-v0": 2500}
DEFAULT_EPISODE_STEPS: dict[str, int] = {"MinAtar": 300, "ALE": 2000}


def episode_steps(game: str) -> int:
    """The assumed env steps of one evaluation episode on ``game``."""
    return EPISODE_STEPS.get(game, DEFAULT_EPISODE_STEPS.get(game.split("/")[0], 1000))


@dataclass(frozen=True)
class JobCost:
    """The planned cost of one job.

    Attributes:
        job: the job.
        train_steps: env steps it trains (rounded up to whole rollouts; summed over games).
        eval_steps: env steps of its greedy evaluation episodes (assumed lengths).
        seconds: estimated seconds on one core.
    """

    job: Job
    train_steps: int
    eval_steps: int
    seconds: float


def _alignment(params: Mapping[str, Any]) -> dict[str, Any]:
    alignment = params.get("alignment")
    return {"trunk": {"alignment": alignment}} if alignment else {}


def _speed(params: Mapping[str, Any], tp: Throughput, stem: float | None = None) -> float:
    """The factor of the job's training speed for its alignment (``stem``, or
    :attr:`Throughput.stem`, under ``stem``; 1 under ``pad``)."""
    return (tp.stem if stem is None else stem) if params.get("alignment") == "stem" else 1.0


def expert_timesteps(cfg: ExperimentConfig, game: str, index: int = 0) -> int:
    """The env steps of the expert on ``game`` (upstream seed number ``index``): ``experts.timesteps``
    or the training config's budget for the game when trained here; the recorded ones when copied.

    Raises:
        UserError: a zoo expert or run folder that does not exist; ConfigError: a bad training config.
    """
    from policyshare.io import read_json
    from policyshare.train import load_train_config

    if cfg.experts.source == "train":
        if cfg.experts.timesteps is not None:
            return cfg.experts.timesteps
        return load_train_config(game, cfg.algo, cfg.experts.config, cfg.experts.set)[0].timesteps
    if cfg.experts.source == "zoo":
        from policyshare.experiment.checks import zoo_expert

        seed = upstream_seeds(cfg, "expert")[index]
        return int(read_json(zoo_expert(game, seed).with_suffix(".json"), "zoo provenance")["timesteps"])
    entry = cfg.experts.runs[game]
    run = entry if isinstance(entry, str) else entry[index]
    return int(read_json(f"{run}/metrics.json", f"metrics of expert run {run}")["timesteps"])


def multitask_timesteps(cfg: ExperimentConfig, games: Sequence[str], index: int = 0) -> int:
    """The env steps (summed over ``games``) of a multi-task PPO job: ``multitask.timesteps``, the
    multi-task config's, or by default the experts' on those games together."""
    from policyshare.multitask import load_multitask_config

    if cfg.multitask.timesteps is not None:
        return cfg.multitask.timesteps
    mt, _ = load_multitask_config(len(games), cfg.multitask.config, cfg.multitask.set)
    if mt.timesteps is not None:
        return mt.timesteps
    return sum(expert_timesteps(cfg, g, index % len(cfg.experts.seeds)) for g in games)


#: Training configs already read by this process's estimates: (game, algo, config, overrides) → config.
_TRAIN_CONFIGS: dict[str, Any] = {}


def _train_config(game: str, algo: str, config: str | None, overrides: Mapping[str, Any]) -> Any:
    """``load_train_config``, read once per game, file (and its modification time) and overrides:
    a study's hundreds of transfer jobs share a handful of configs."""
    import json

    from policyshare.paths import default_config
    from policyshare.train import load_train_config

    path = Path(config) if config is not None else default_config(algo)
    key = json.dumps([game, algo, str(path), path.stat().st_mtime_ns if path.is_file() else None, overrides],
                     sort_keys=True, default=str)
    if key not in _TRAIN_CONFIGS:
        _TRAIN_CONFIGS[key] = load_train_config(game, algo, config, overrides)
    return _TRAIN_CONFIGS[key]


def _train_cost(cfg: ExperimentConfig, job: Job, game: str, timesteps: int | None, config: str | None,
                overrides: Mapping[str, Any], speed: float, tp: Throughput) -> JobCost:
    from policyshare.train import rollout_size, trained_timesteps

    t_cfg, params = _train_config(game, cfg.algo, config, deep_merge(overrides, _alignment(job.params)))
    steps = trained_timesteps(timesteps or t_cfg.timesteps, rollout_size(cfg.algo, t_cfg.n_envs, params))
    evals = (steps // t_cfg.eval.freq + 1) * t_cfg.eval.episodes if t_cfg.eval.freq else 0
    eval_steps = (evals + t_cfg.eval.final_episodes) * episode_steps(game)
    seconds = steps / (speed * _speed(job.params, tp)) + eval_steps / tp.evaluate + tp.job_s
    return JobCost(job, steps, eval_steps, seconds)


def _distill_cost(cfg: ExperimentConfig, job: Job, tp: Throughput) -> JobCost:
    return _distill_steps_cost(job, cfg.distill.steps, cfg.distill.set, tp, cfg.distill.config)


def _distill_steps_cost(job: Job, steps_per_task: int | None, overrides: Mapping[str, Any], tp: Throughput,
                        config: str | None = None) -> JobCost:
    """A distillation's cost: ``steps_per_task`` env steps per game (``None``: the config's)."""
    from policyshare.distill import load_distill_config

    games = job.params["games"]
    steps = {} if steps_per_task is None else {"steps": steps_per_task}
    d = load_distill_config(config, deep_merge({**overrides, **steps}, _alignment(job.params)))
    rounds = -(-d.steps // d.n_envs)
    per_task = rounds * d.n_envs
    evals = (per_task // d.eval.freq) * d.eval.episodes if d.eval.freq else 0
    eval_steps = sum((evals + 2 * d.eval.final_episodes) * episode_steps(g) for g in games)  # student and teacher
    train_s = rounds * (tp.distill_round_s + tp.distill_game_s * len(games)) / _speed(job.params, tp, tp.stem_distill)
    return JobCost(job, per_task * len(games), eval_steps, train_s + eval_steps / tp.evaluate + tp.job_s)


def _multitask_cost(cfg: ExperimentConfig, job: Job, tp: Throughput) -> JobCost:
    games = job.params["games"]
    return _multitask_steps_cost(job, multitask_timesteps(cfg, games, job.params["index"]), cfg.multitask.set, tp,
                                 cfg.multitask.config)


def _multitask_steps_cost(job: Job, timesteps: int, overrides: Mapping[str, Any], tp: Throughput,
                          config: str | None = None) -> JobCost:
    """A multi-task PPO run's cost: ``timesteps`` env steps over its games."""
    from policyshare.multitask import load_multitask_config
    from policyshare.train import trained_timesteps

    games = job.params["games"]
    mt, params = load_multitask_config(len(games), config, deep_merge(overrides, _alignment(job.params)))
    steps = trained_timesteps(timesteps, params.n_steps * mt.n_envs * len(games))
    evals = (steps // mt.eval.freq + 1) * mt.eval.episodes if mt.eval.freq else 0
    eval_steps = sum((evals + mt.eval.final_episodes) * episode_steps(g) for g in games)
    return JobCost(job, steps, eval_steps,
                   steps / (tp.multitask * _speed(job.params, tp, tp.stem_multitask)) + eval_steps / tp.evaluate
                   + tp.job_s)


def job_cost(cfg: ExperimentConfig, job: Job, tp: Throughput = Throughput()) -> JobCost:
    """The planned env steps and one-core seconds of ``job``.

    Raises:
        ConfigError, UserError: as the stage configs and the experts' budgets
            (:func:`expert_timesteps`).
    """
    p = job.params
    if job.kind == "expert":
        if cfg.experts.source != "train":
            return JobCost(job, 0, 0, tp.copy_s)
        e = cfg.experts
        return _train_cost(cfg, job, p["games"][0], e.timesteps, e.config, e.set, tp.train, tp)
    if job.kind == "distill":
        return _distill_cost(cfg, job, tp)
    if job.kind == "multitask":
        return _multitask_cost(cfg, job, tp)
    if job.kind == "transfer":
        speed = tp.progressive if p["method"] in (PROGRESSIVE, RANDOM_COLUMN) else tp.train
        t = cfg.transfer
        return _train_cost(cfg, job, p["env_id"], t.timesteps, t.config, t.set, speed, tp)
    if job.kind.startswith("capacity_"):
        return _capacity_cost(cfg, job, tp)
    return JobCost(job, 0, 0, tp.vision_s if job.kind == "vision" else tp.report_s)


def _capacity_cost(cfg: ExperimentConfig, job: Job, tp: Throughput) -> JobCost:
    """The planned cost of a capacity job (:mod:`~policyshare.experiment.capacity`) on its settings."""
    from policyshare.experiment.capacity_plan import single_timesteps

    c = cfg.capacity
    if job.kind == "capacity_single":
        return _train_cost(cfg, job, job.params["env_id"], single_timesteps(cfg), None, c.train_set, tp.train, tp)
    if job.kind == "capacity_multitask":
        return _multitask_steps_cost(job, c.timesteps, c.multitask_set, tp)
    return _distill_steps_cost(job, c.distill_steps, c.distill_set, tp)


def wall_seconds(costs: Sequence[JobCost], cores: int) -> float:
    """The wall time of one stage's jobs run ``cores`` at a time, each started in order on the
    first core to be free (as ``policyshare run --jobs N`` hands them out)."""
    free = [0.0] * max(1, cores)
    for c in costs:
        i = min(range(len(free)), key=free.__getitem__)
        free[i] += c.seconds
    return max(free)


@dataclass(frozen=True)
class Estimate:
    """An experiment's planned cost: every job's (by stage), and the wall time on some cores."""

    costs: dict[str, list[JobCost]]
    throughput: Throughput

    def env_steps(self, stage: str | None = None) -> int:
        """Env steps trained by a stage (all stages: ``None``)."""
        stages = STAGES if stage is None else (stage,)
        return sum(c.train_steps for s in stages for c in self.costs[s])

    def wall_seconds(self, cores: int) -> float:
        """Estimated wall time of the whole experiment on ``cores`` cores (stages one after another)."""
        return sum(wall_seconds(self.costs[s], cores) for s in STAGES)


def estimate(cfg: ExperimentConfig, jobs: Mapping[str, Sequence[Job]], tp: Throughput = Throughput()) -> Estimate:
    """The planned cost of every job of :func:`~policyshare.experiment.layout.plan`.

    Raises:
        ConfigError, UserError: as :func:`job_cost`.
    """
    return Estimate({s: [job_cost(cfg, j, tp) for j in jobs.get(s, [])] for s in STAGES}, tp)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def render(cfg: ExperimentConfig, est: Estimate, cores: int) -> str:
    """The plan as text: the design in one line, a table of stages (jobs, env steps trained, env
    steps evaluated, one-core time), the transfer runs by method, the wall time on ``cores``
    cores and the assumptions behind it."""
    tp = est.throughput
    targets = cfg.target_games
    loo = " (leave-one-game-out)" if cfg.sources == "others" else ""
    ups = ", ".join(f"{k} {len(upstream_seeds(cfg, k))}" for k in ("expert", "distill", "multitask"))
    lines = [f"{cfg.name}: {len(targets)} target{'s' * (len(targets) > 1)}{loo}, {len(cfg.seeds)} target seeds, "
             f"alignments {', '.join(cfg.alignments)}, upstream seeds ({ups}), methods "
             f"{', '.join(cfg.transfer.methods)}", "",
             f"{'stage':10s} {'jobs':>5s} {'env steps trained':>18s} {'env steps evaluated':>20s} {'one core':>12s}"]
    for s in STAGES:
        costs = est.costs[s]
        secs = sum(x.seconds for x in costs)
        lines.append(f"{s:10s} {len(costs):5d} {sum(x.train_steps for x in costs):18,d} "
                     f"{sum(x.eval_steps for x in costs):20,d} {_duration(secs) if costs else '—':>12s}")
    total = sum(x.seconds for s in STAGES for x in est.costs[s])
    n_jobs = sum(len(v) for v in est.costs.values())
    lines.append(f"{'total':10s} {n_jobs:5d} {est.env_steps():18,d} "
                 f"{sum(x.eval_steps for s in STAGES for x in est.costs[s]):20,d} {_duration(total):>12s}")
    by_method: dict[str, list[int]] = {}
    for c in est.costs["transfer"]:
        by_method.setdefault(c.job.params["method"], []).append(c.train_steps)
    lines += ["", "transfer runs by method: " + "; ".join(f"{m} {len(v)} ({sum(v):,} env steps)"
                                                          for m, v in by_method.items())]
    lines += ["", f"estimated wall time on {cores} core{'s' * (cores > 1)}: {_duration(est.wall_seconds(cores))} "
              f"(policyshare run --jobs {cores}: stage after stage, {cores} job{'s' * (cores > 1)} at a time)",
              f"assumed speeds per core, env steps/s: train {tp.train:,.0f}, progressive columns "
              f"{tp.progressive:,.0f}, "
              f"multi-task PPO {tp.multitask:,.0f}, greedy evaluation {tp.evaluate:,.0f}; under stem alignment "
              f"{tp.stem:.2f}x (multi-task {tp.stem_multitask:.2f}x, distillation {tp.stem_distill:.2f}x); "
              "distillation "
              f"{1000 * tp.distill_round_s:.0f} ms per collection round + {1000 * tp.distill_game_s:.0f} ms per game; "
              f"evaluated episodes of {EPISODE_STEPS['MinAtar/Freeway-v1']:,} env steps on "
              f"Freeway, {DEFAULT_EPISODE_STEPS['MinAtar']} on other MinAtar games; {tp.job_s:.0f} s per job; vision "
              f"{_duration(tp.vision_s)}"]
    if not all(g.startswith("MinAtar/") for g in targets):
        lines.append("these speeds are MinAtar's on a CPU: for other suites (Atari: about 115 env steps/s per run "
                     "on a CPU) measure them, e.g. from a run's timing.json")
    return "\n".join(lines)


__all__ = ["DEFAULT_EPISODE_STEPS", "EPISODE_STEPS", "Estimate", "JobCost", "Throughput", "episode_steps",
           "estimate", "expert_timesteps", "job_cost", "multitask_timesteps", "render", "wall_seconds"]
