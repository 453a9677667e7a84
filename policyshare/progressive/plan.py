"""The plan of a ``policyshare progressive`` experiment: checked settings and folder layout.

:func:`make_plan` validates the command line and ``configs/progressive.yaml`` and resolves every
task's training config once, *before* any folder is written (:class:`Plan`);
:func:`column_dir` and :func:`method_dirs` name the run folders of a seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policyshare.config import check_seeds, deep_merge, to_dict
from policyshare.errors import ConfigError, UserError
from policyshare.progressive.config import ALGOS, CONTROLS, ProgressiveConfig, load_progressive_config
from policyshare.trunks import Trunk, TrunkSpec, trunk_for_space

if TYPE_CHECKING:
    from policyshare.envs import Suite


@dataclass
class Plan:
    """A validated experiment: everything resolved before any folder is written.

    Attributes:
        tasks: source tasks, then the target.
        algo: ``ppo`` or ``a2c``.
        cfg: the experiment config.
        timesteps: env steps per run (``None``: each task's training config's).
        overrides: the overrides applied to every run's training config.
        runs: every task's resolved training config (``hyperparams`` included).
        trunk: ``{"name", "activation", "theta"}`` of the columns.
        spec: the columns' trunk spec.
        controls: the controls trained on the target.
        seeds: seeds.
    """

    tasks: list[str]
    algo: str
    cfg: ProgressiveConfig
    timesteps: int | None
    overrides: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    trunk: dict[str, Any]
    spec: TrunkSpec
    controls: list[str]
    seeds: list[int]

    @property
    def target(self) -> str:
        """The target task (the last)."""
        return self.tasks[-1]

    def resolved(self, init_from: str | None) -> dict[str, Any]:
        """The experiment's resolved settings, as its ``config.yaml`` records them."""
        # The command line's choices (algo, timesteps, controls) win over the config file's.
        return {**to_dict(self.cfg), "tasks": self.tasks, "target": self.target, "algo": self.algo,
                "seeds": self.seeds, "timesteps": self.timesteps, "init_from": init_from,
                "controls": self.controls, "spec": self.spec.to_dict(), "train": self.overrides,
                "runs": self.runs}


def make_plan(tasks: Sequence[str], config: str | Path | None, algo: str | None, timesteps: int | None,
              seeds: Sequence[int], controls: Sequence[str] | None,
              overrides: Mapping[str, Any] | None) -> Plan:
    """Check the command line and the config, and resolve every task's training config.

    Args:
        tasks: Gymnasium ids, source tasks first, the target last.
        config: experiment config (default ``configs/progressive.yaml``).
        algo: ``ppo`` or ``a2c`` (default: the config's).
        timesteps: env steps per column and per control (default: the config's).
        seeds: seeds.
        controls: subset of :data:`~policyshare.progressive.config.CONTROLS` (default: the config's).
        overrides: nested overrides of the experiment config (``--set``).

    Raises:
        UserError: see :func:`~policyshare.progressive.run.run_progressive`.
        ConfigError: a bad config, no input alignment, evaluations too sparse for a learning
            curve, or a trunk spec that does not fit the suite's observations.
    """
    from policyshare.train import load_train_config

    tasks = list(tasks)
    suite = _check_tasks(tasks)
    cfg = load_progressive_config(config, overrides)
    algo = algo or cfg.algo
    if algo not in ALGOS:
        raise UserError(f"progressive columns train with {' or '.join(ALGOS)}, not {algo!r}")
    if timesteps is not None and timesteps <= 0:
        raise UserError(f"--timesteps must be > 0, got {timesteps}")
    timesteps = timesteps or cfg.timesteps
    first, _ = load_train_config(tasks[0], algo, cfg.train_config, cfg.train)
    mode = first.trunk.alignment or suite.alignment
    if mode == "none":
        raise ConfigError("progressive networks need input alignment 'pad' or 'stem' (the "
                          "columns read every task's observations); set train.trunk.alignment")
    trunk_cfg = {"spec": first.trunk.spec or suite.trunk, "activation": first.trunk.activation,
                 "theta": first.trunk.theta, "alignment": mode}
    run_overrides = deep_merge(cfg.train, {"trunk": trunk_cfg})
    runs = _resolve_runs(tasks, algo, cfg, run_overrides, timesteps)
    trunk = {"name": trunk_cfg["spec"], "activation": trunk_cfg["activation"],
             "theta": trunk_cfg["theta"]}
    spec = _columns_spec(tasks[0], trunk, suite.alignment_kwargs(mode))
    _check_spec_fits(spec, suite.name)
    chosen = [c for c in CONTROLS if getattr(cfg.controls, c)] if controls is None else list(controls)
    unknown = [c for c in chosen if c not in CONTROLS]
    if unknown:
        raise UserError(f"unknown control {unknown[0]!r}; choose from {', '.join(CONTROLS)}")
    if not seeds:
        raise UserError("no seeds given; pass --seeds 0 1 2")
    check_seeds(seeds)
    return Plan(tasks, algo, cfg, timesteps, run_overrides, runs, trunk, spec, chosen, list(seeds))


def _check_tasks(tasks: list[str]) -> Suite:
    """The tasks' suite: at least two distinct, known ids of one suite.

    Raises:
        UserError: fewer than two tasks, a repeated or unknown id, or tasks of several suites.
    """
    from policyshare.envs import check_env_id

    if len(tasks) < 2:
        raise UserError(f"--tasks needs at least two env ids (the source tasks, then the target), "
                        f"got {len(tasks)}: {' '.join(tasks) or 'none'}")
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        raise UserError(f"--tasks lists {', '.join(repeated)} more than once; each column learns "
                        "a different task")
    suites = [check_env_id(t) for t in tasks]
    if len({s.name for s in suites}) > 1:
        raise UserError(f"--tasks mixes suites ({', '.join(sorted({s.name for s in suites}))}); "
                        "the columns of one network read one suite's aligned observations")
    return suites[0]


def _resolve_runs(tasks: list[str], algo: str, cfg: ProgressiveConfig, run_overrides: Mapping[str, Any],
                  timesteps: int | None) -> dict[str, dict[str, Any]]:
    """Every task's whole training config (with ``hyperparams``), resolved once.

    Raises:
        ConfigError: a bad training config, or fewer than two evaluations on the target's curve.
    """
    from policyshare.train import load_train_config

    resolved_runs = {t: load_train_config(t, algo, cfg.train_config, run_overrides) for t in tasks}
    runs = {t: {**to_dict(c), "hyperparams": to_dict(h)} for t, (c, h) in resolved_runs.items()}
    target = resolved_runs[tasks[-1]][0]  # the target's runs are the ones compared
    steps = timesteps or target.timesteps
    if not 0 < 2 * target.eval.freq <= steps:
        raise ConfigError(f"transfer is measured on learning curves of at least two evaluations: "
                          f"set train.eval.freq (now {target.eval.freq}) to at most half the "
                          f"target's {steps} env steps")
    return runs


def _columns_spec(task: str, trunk: Mapping[str, Any], alignment: Mapping[str, Any]) -> TrunkSpec:
    """The columns' trunk spec for ``task``'s observations under ``alignment``."""
    from policyshare.envs import make_env

    env = make_env(task)
    try:
        _, spec = trunk_for_space(env.observation_space, trunk, alignment, user="a progressive network")
    finally:
        env.close()
    return spec


def _check_spec_fits(spec: TrunkSpec, suite: str) -> None:
    """Refuse a trunk spec whose layers do not fit the suite's observations (before training).

    Raises:
        ConfigError: naming the layer that does not fit and the specs that do.
    """
    from policyshare.trunks import TRUNK_SPECS

    def fits(name: str) -> bool:
        try:
            Trunk(TrunkSpec(name, spec.in_channels, spec.height, spec.width, spec.activation, spec.theta))
        except ConfigError:
            return False
        return True

    if not fits(spec.name):
        try:
            Trunk(spec)
        except ConfigError as e:
            raise ConfigError(f"{e}; set train.trunk.spec to one that fits {suite}'s "
                              f"{spec.height}x{spec.width} observations: "
                              f"{', '.join(n for n in TRUNK_SPECS if fits(n))}") from None


def column_dir(seed_dir: Path, k: int, task: str) -> Path:
    """The run folder of column ``k`` (1-based) of a seed: ``<seed_dir>/column_<k>__<task>``."""
    from policyshare.runs import slug

    return seed_dir / f"column_{k}__{slug(task)}"


def method_dirs(plan: Plan, seed_dir: Path) -> dict[str, Path]:
    """The target-task run of every compared method (the progressive column and the controls)."""
    from policyshare.runs import slug

    dirs = {"progressive": column_dir(seed_dir, len(plan.tasks), plan.target)}
    dirs.update({c: seed_dir / f"{c}__{slug(plan.target)}" for c in plan.controls})
    return dirs

