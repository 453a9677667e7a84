"""Loading an experiment config, and checking it against the world before anything runs.

:func:`load_experiment_config` reads a config strictly (:mod:`policyshare.experiment.config`'s
classes check it across fields), resolves its games from the suites (``games: minatar``,
``targets: all``, ``sources: others``) and the default alignment, and :func:`check_stage_configs`
checks what only files can tell: every env id, the zoo's experts of every seed
(:func:`zoo_expert`) and their alignment, every stage's own config under every alignment, the
learning curves, the adapters and the vision config. A config that cannot work is refused in one
line naming the problem and the fix (:class:`~policyshare.errors.ConfigError` or
:class:`~policyshare.errors.UserError`, exit status 2); nothing is trained or written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from policyshare.config import from_dict, load_config, with_changes
from policyshare.errors import ConfigError
from policyshare.experiment.config import ExperimentConfig
from policyshare.methods import MULTITASK, PROGRESSIVE, RANDOM_COLUMN


def load_experiment_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read an experiment config strictly and check that every planned job can run.

    Unknown keys, wrong types and bad values are errors; ``games`` (and with it ``targets: all``
    and ``sources: others``) is resolved from the suites; env ids, the zoo's experts and every
    stage's own config are checked (:func:`check_stage_configs`). Nothing is trained or written.

    Raises:
        ConfigError: bad file, key, type or value, games of two suites, an alignment the suite
            cannot give, or a stage config that cannot run; UserError: an unknown env id or a zoo
            expert that does not exist.
    """
    cfg = load_config(ExperimentConfig, path, overrides=overrides,
                      expected="a mapping of settings (name, sources, targets, …)")
    cfg = _resolve_games(cfg, str(path))
    check_stage_configs(cfg)
    return cfg


def _resolve_games(cfg: ExperimentConfig, where: str) -> ExperimentConfig:
    """``cfg`` with ``games`` a list of checked env ids of one suite, and the suite's alignment as
    the default of ``transfer.alignments``.

    Raises:
        ConfigError: games of two suites, or ``all``/``others`` without a game or suite named.
        UserError: an unknown env id.
    """
    from policyshare.envs import check_env_id, load_suite

    named = [g for g in ([*cfg.sources] if isinstance(cfg.sources, list) else [])
             + ([*cfg.targets] if isinstance(cfg.targets, list) else [])]
    named += cfg.games if isinstance(cfg.games, list) else []
    suites = {check_env_id(g).name for g in named}
    if isinstance(cfg.games, str):
        suite = load_suite(cfg.games)
        suites.add(suite.name)
    elif suites:
        suite = load_suite(sorted(suites)[0])
    else:
        raise ConfigError(f"{where}: targets: all and sources: others need the suite: add games: SUITE "
                          "(e.g. games: minatar) or list the games")
    if len(suites) > 1:
        raise ConfigError(f"{where}: the games mix suites ({', '.join(sorted(suites))}); one study shares one "
                          "suite's alignment and action space")
    games = list(cfg.games) if isinstance(cfg.games, list) else list(suite.tasks)
    for g in games:
        check_env_id(g)
    changes: dict[str, Any] = {"games": games}
    if cfg.transfer.alignments is None:
        changes["transfer"] = {**_plain(cfg.transfer), "alignments": [suite.alignment]}
    return with_changes(cfg, where, **changes)


def _plain(settings: Any) -> dict[str, Any]:
    from policyshare.config import to_dict

    out: dict[str, Any] = to_dict(settings)
    return out


def check_stage_configs(cfg: ExperimentConfig) -> None:
    """Validate every stage's own config and overrides now, before any stage runs: the experts
    (the zoo's seeds and alignment, or the training config per game and alignment), the
    distillation, multi-task and training configs under every alignment, the transfer's learning
    curves, the adapters and the vision config.

    Raises:
        ConfigError: a bad key, type or value in a stage's config or ``set``; an alignment a game
            cannot take; learning curves with fewer than two points.
        UserError: a zoo expert of a seed the zoo does not have.
    """
    from policyshare.config import deep_merge
    from policyshare.train import load_train_config

    _check_experts(cfg)
    methods = set(cfg.transfer.methods)
    for alignment in cfg.alignments:
        with_alignment = {"trunk": {"alignment": alignment}}
        if cfg.distill.enabled:
            from policyshare.distill import load_distill_config

            steps = {} if cfg.distill.steps is None else {"steps": cfg.distill.steps}
            load_distill_config(cfg.distill.config, deep_merge({**cfg.distill.set, **steps}, with_alignment))
        if MULTITASK in methods:
            from policyshare.multitask import load_multitask_config

            n_tasks = min(len(cfg.sources_for(t)) for t in cfg.target_games)
            load_multitask_config(n_tasks, cfg.multitask.config, deep_merge(cfg.multitask.set, with_alignment))
        for target in cfg.target_games:
            load_train_config(target, cfg.algo, cfg.transfer.config, deep_merge(cfg.transfer.set, with_alignment))
            _check_alignment_fits(target, alignment)
    for target in cfg.target_games:
        t_cfg, _ = load_train_config(target, cfg.algo, cfg.transfer.config, cfg.transfer.set)
        if not 0 < 2 * t_cfg.eval.freq <= cfg.transfer.timesteps:
            raise ConfigError(f"transfer is measured on learning curves: set transfer.set.eval.freq (now "
                              f"{t_cfg.eval.freq}) to at most half of transfer.timesteps ({cfg.transfer.timesteps})")
    _check_capacity_configs(cfg)
    if {PROGRESSIVE, RANDOM_COLUMN} & methods:
        from policyshare.progressive import AdapterConfig

        from_dict(AdapterConfig, cfg.transfer.adapter, "transfer.adapter")
    if cfg.vision.enabled:
        from policyshare.vision.config import load_vision_config

        load_vision_config(cfg.vision.config, cfg.vision.set)


def _check_experts(cfg: ExperimentConfig) -> None:
    """The experts can be had: trained (their config under every alignment), or copied from the
    zoo (every game and seed there, with the alignment ``experts.alignment`` says).

    Raises:
        ConfigError: a bad training config; a zoo expert trained with another alignment.
        UserError: a game and seed the zoo has no expert for.
    """
    from policyshare.config import deep_merge
    from policyshare.train import load_train_config

    if cfg.experts.source == "train":
        for alignment in cfg.alignments:
            for game in cfg.all_sources:
                load_train_config(game, cfg.algo, cfg.experts.config,
                                  deep_merge(cfg.experts.set, {"trunk": {"alignment": alignment}}))
    elif cfg.experts.source == "zoo":
        for game in cfg.all_sources:
            for seed in cfg.experts.seeds:
                path = zoo_expert(game, seed)
                mode = zoo_alignment(path)
                if mode != cfg.experts.alignment:
                    raise ConfigError(f"experts: the zoo's {path.name} was trained with {mode} alignment, not "
                                      f"experts.alignment {cfg.experts.alignment}; set experts.alignment: {mode}")


def _check_alignment_fits(game: str, alignment: str) -> None:
    """Build the input alignment of ``game`` under ``alignment`` (cheap: one 1x1 conv at most).

    Raises:
        ConfigError: the suite cannot align the game that way (e.g. ``pad`` to fewer channels
            than the game has).
    """
    from policyshare.alignment import InputAlignment
    from policyshare.envs import check_env_id

    suite = check_env_id(game)
    if suite.kind == "atari":  # frame-stacked and resized by the wrappers: the suite's layout
        shape: tuple[int, ...] = (suite.observation.channels, suite.observation.height, suite.observation.width)
    else:
        import gymnasium as gym

        env = gym.make(game)
        shape = tuple(env.observation_space.shape or ())
        env.close()
    try:
        InputAlignment(shape, **suite.alignment_kwargs(alignment))
    except ConfigError as e:
        raise ConfigError(f"transfer.alignments: {alignment} cannot align {game} ({e}); drop it") from None


def zoo_expert(game: str, seed: int) -> Path:
    """The zoo checkpoint of ``game`` trained with ``seed`` (:func:`policyshare.zoo.expert_path`).

    Raises:
        UserError: the zoo has no expert of that game and seed (naming the seeds it has, and the fix).
    """
    from policyshare import zoo
    from policyshare.errors import UserError

    have = zoo.seeds(game)
    if seed not in have:
        has = f"seeds {', '.join(map(str, have))}" if have else "no expert"
        raise UserError(f"experts.seeds: the zoo has no {game} expert of seed {seed} (it has {has}); list only "
                        "seeds the zoo has, add experts with `policyshare train --seed S` + `policyshare zoo add RUN` "
                        "(or `make zoo`), or set experts.source: train")
    return zoo.expert_path(game, seed)


def zoo_alignment(path: Path) -> str:
    """The input alignment a zoo expert was trained with (its provenance's training config; the
    suite's where that says ``null``)."""
    from policyshare.envs import check_env_id
    from policyshare.io import read_json

    prov = read_json(path.with_suffix(".json"), "zoo provenance")
    mode = ((prov.get("config") or {}).get("trunk") or {}).get("alignment")
    return str(mode or check_env_id(str(prov["env_id"])).alignment)



def _check_capacity_configs(cfg: ExperimentConfig) -> None:
    """The capacity stages' own configs (training, multi-task, distillation) with their overrides.

    Raises:
        ConfigError: a bad override in ``capacity.train_set``, ``multitask_set`` or ``distill_set``.
    """
    if not cfg.capacity.enabled:
        return
    from policyshare.config import deep_merge
    from policyshare.distill import load_distill_config
    from policyshare.multitask import load_multitask_config
    from policyshare.train import load_train_config

    c = cfg.capacity
    aligned = {"trunk": {"alignment": cfg.alignments[0]}}
    games = cfg.capacity_games()
    for game in games:
        load_train_config(game, cfg.algo, None, deep_merge(c.train_set, aligned))
    load_multitask_config(len(games), None, deep_merge(c.multitask_set, aligned))
    load_distill_config(None, deep_merge({**c.distill_set, "steps": c.distill_steps}, aligned))

__all__ = ["check_stage_configs", "load_experiment_config", "zoo_alignment", "zoo_expert"]
