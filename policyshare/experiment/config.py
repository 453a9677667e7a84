"""The experiment's config: ``configs/quickstart.yaml``, ``configs/sharing.yaml`` … as typed data.

:class:`ExperimentConfig` names the **target** games (held out in turn: ``targets: all``), their
**source** games (a list, or ``others``: the other games of the suite, leave-one-game-out), the
target seeds, and one settings block per stage (:class:`ExpertsStage`, :class:`DistillStage`,
:class:`MultitaskStage`, :class:`TransferStage`, :class:`VisionStage`, :class:`ReportStage`).
Upstream artifacts (experts, students, multi-task networks) have their own seeds
(``experts.seeds``, ``distill.seeds``, ``multitask.seeds``); how target seeds pair with them is
:mod:`policyshare.experiment.design`'s.

Everything that cannot work is refused here, before any stage runs, with one
:class:`~policyshare.errors.ConfigError` line naming the problem and the fix (exit status 2):
checks across fields in ``__post_init__``; checks against the suites, the zoo and every stage's
own config in :func:`load_experiment_config` (:func:`check_stage_configs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass

from policyshare.config import SETTINGS, Settings, check_seeds, from_dict, load_config, with_changes
from policyshare.errors import ConfigError
from policyshare.methods import (
    EXPERIMENT_METHODS,
    FINETUNE,
    FROZEN,
    MULTITASK,
    PROGRESSIVE,
    RANDOM_COLUMN,
    SCRATCH,
    SINGLE_TEACHER,
    STUDENT,
)

#: The stages, in order.
STAGES: tuple[str, ...] = ("experts", "distill", "multitask", "transfer", "vision", "report")
#: Transfer methods on a target game (named in :mod:`policyshare.methods`); ``scratch`` is the
#: reference of transfer %.
METHODS: tuple[str, ...] = EXPERIMENT_METHODS
#: The methods that start from a source game's expert (its trunk, or its whole network as a column).
EXPERT_METHODS: tuple[str, ...] = (FINETUNE, FROZEN, PROGRESSIVE)
#: The input alignments a study can compare (:mod:`policyshare.alignment`).
Alignment = Literal["pad", "stem"]


@dataclass(config=SETTINGS)
class ExpertsStage(Settings):
    """Where the source experts come from: one per source game and upstream seed (and, when
    trained here, per input alignment).

    Attributes:
        source: ``zoo`` (the shipped experts, ``policyshare.zoo``), ``train`` (trained here with
            ``policyshare train``) or ``runs`` (finished train run folders listed in ``runs``).
        runs: env id → a finished ``policyshare train`` run folder, or a list of them, one per
            seed of ``seeds`` in order (``source: runs``).
        seeds: upstream seeds of the experts (each seed a separate expert per game).
        alignment: ``zoo``/``runs`` only: the input alignment the copied experts were trained
            with (checked against the files; the zoo's experts use ``pad``). Experts trained here
            are trained under every alignment of ``transfer.alignments``.
        timesteps: env steps per expert when trained here (default: the game's ``timesteps`` in
            the training config).
        config: training config (default ``configs/<algo>.yaml``).
        set: overrides of the training config (same keys as an entry of it).
    """

    source: Literal["zoo", "train", "runs"] = "zoo"
    runs: dict[str, str | list[str]] = field(default_factory=dict)
    seeds: list[NonNegativeInt] = field(default_factory=lambda: [0])
    alignment: Alignment = "pad"
    timesteps: PositiveInt | None = None
    config: str | None = None
    set: dict[str, Any] = field(default_factory=dict)


@dataclass(config=SETTINGS)
class DistillStage(Settings):
    """The Actor-Mimic students (see ``configs/actor_mimic.yaml``): per target (its source games)
    and upstream seed, and per alignment; ``single_teacher`` adds students of one teacher.

    Attributes:
        enabled: distil students (the ``student`` and ``single_teacher`` methods need them).
        config: distillation config (default ``configs/actor_mimic.yaml``).
        steps: env steps per task (overrides the config).
        seeds: the students' seeds (default: ``experts.seeds``); student number ``j`` learns from
            the experts of seed number ``j mod len(experts.seeds)``.
        set: overrides of the distillation config.
    """

    enabled: bool = True
    config: str | None = None
    steps: PositiveInt | None = None
    seeds: list[NonNegativeInt] | None = None
    set: dict[str, Any] = field(default_factory=dict)


@dataclass(config=SETTINGS)
class MultitaskStage(Settings):
    """Multi-task PPO from scratch on a target's source games (``configs/multitask.yaml``), run for
    the ``multitask`` method: per target (its source games), upstream seed and alignment.

    Attributes:
        config: multi-task config (default ``configs/multitask.yaml``).
        timesteps: env steps summed over the source games (default: the experts' env steps on
            those games together, so that multi-task RL gets the data the experts got).
        seeds: its seeds (default: ``experts.seeds``).
        set: overrides of the multi-task config.
    """

    config: str | None = None
    timesteps: PositiveInt | None = None
    seeds: list[NonNegativeInt] | None = None
    set: dict[str, Any] = field(default_factory=dict)


@dataclass(config=SETTINGS)
class TransferStage(Settings):
    """Training on the held-out target games.

    Attributes:
        methods: which of :data:`METHODS` to run (``scratch`` is always run: it is the reference).
        alignments: the input alignments compared (``pad``, ``stem``): every method but
            ``scratch`` runs under each, with its upstream artifacts trained under the same one
            (default: the suite's alignment alone). ``scratch`` runs once, with the suite's.
        timesteps: env steps per run.
        finetune_from: the source games ``finetune`` and ``frozen`` start from: ``every`` (one
            run per source game), ``first`` (each target's first source), or one game (a source
            of every target).
        single_teacher_from: the one teacher of ``single_teacher`` (default: each target's first
            source).
        progressive_from: the source game whose expert is ``progressive``'s frozen column
            (default: each target's first source).
        config: training config (default ``configs/<algo>.yaml``).
        set: overrides of the training config for every run (e.g. ``eval: {freq: 10000}``).
        adapter: lateral adapters of the progressive columns (``policyshare.progressive.AdapterConfig``).
    """

    methods: list[str] = field(default_factory=lambda: list(METHODS))
    alignments: list[Alignment] | None = None
    timesteps: PositiveInt = 500_000
    finetune_from: str = "every"
    single_teacher_from: str | None = None
    progressive_from: str | None = None
    config: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    adapter: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if len(set(self.methods)) < len(self.methods):
            raise ValueError("methods: a method is listed twice; list each once")
        if SCRATCH not in self.methods:
            self.methods.insert(0, SCRATCH)
        if self.alignments is not None:
            if not self.alignments:
                raise ValueError("alignments: list at least one of pad, stem")
            if len(set(self.alignments)) < len(self.alignments):
                raise ValueError(f"alignments: {self.alignments} lists an alignment twice; list each once")


@dataclass(config=SETTINGS)
class VisionStage(Settings):
    """The vision thesis table over the trunks (``configs/vision.yaml``).

    Attributes:
        enabled: run it.
        config: vision config (default ``configs/vision.yaml``).
        set: overrides of the vision config.
        trunks: trunks built there: ``random``, ``classify``, ``autoencoder``.
        include: trunks of this run to add: ``expert`` (the first target's first source's, first
            seed and alignment), ``student`` (the first target's), ``progressive`` (the column
            trained on the first target, first seed).
    """

    enabled: bool = True
    config: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    trunks: list[str] = field(default_factory=lambda: ["random", "classify", "autoencoder"])
    include: list[Literal["expert", "student", "progressive"]] = field(
        default_factory=lambda: ["expert", "student", "progressive"])


@dataclass(config=SETTINGS)
class ReportStage(Settings):
    """Report settings.

    Attributes:
        bootstrap_reps: stratified bootstrap replications of the intervals.
        confidence: interval size.
    """

    bootstrap_reps: PositiveInt = 2000
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95


@dataclass(config=SETTINGS)
class ExperimentConfig(Settings):
    """An experiment (``configs/sharing.yaml``).

    Attributes:
        name: the experiment's name (default folder ``runs/<name>``).
        description: one line for the report.
        algo: ``ppo`` or ``a2c`` (progressive columns are actor-critic).
        games: the games ``targets: all`` and ``sources: others`` range over: a suite's name
            (``minatar``: every game it lists) or a list (default: the suite of the games named);
            filled in as a list when the config loads.
        sources: source games (experts, teachers, multi-task tasks) of every target, or
            ``others``: for each target the other games (leave-one-game-out).
        targets: held-out target games, or ``all`` (every game of ``games``).
        seeds: seeds of the transfer runs (target seeds); target seed number ``i`` uses upstream
            seed number ``i mod U`` (:mod:`policyshare.experiment.design`).
    """

    name: str
    sources: list[str] | Literal["others"]
    targets: list[str] | Literal["all"]
    games: list[str] | str | None = None
    description: str = ""
    algo: Literal["ppo", "a2c"] = "ppo"
    seeds: list[NonNegativeInt] = field(default_factory=lambda: [0, 1, 2])
    experts: ExpertsStage = field(default_factory=ExpertsStage)
    distill: DistillStage = field(default_factory=DistillStage)
    multitask: MultitaskStage = field(default_factory=MultitaskStage)
    transfer: TransferStage = field(default_factory=TransferStage)
    vision: VisionStage = field(default_factory=VisionStage)
    report: ReportStage = field(default_factory=ReportStage)

    def __post_init__(self) -> None:
        if isinstance(self.sources, list) and not self.sources:
            raise ValueError("sources: list at least one source game, or write sources: others")
        if isinstance(self.targets, list) and not self.targets:
            raise ValueError("targets: list at least one held-out target game, or write targets: all")
        for where, seeds in (("seeds", self.seeds), ("experts.seeds", self.experts.seeds),
                             ("distill.seeds", self.distill.seeds), ("multitask.seeds", self.multitask.seeds)):
            if seeds is not None and not seeds:
                raise ValueError(f"{where}: list at least one seed >= 0")
            try:
                check_seeds(seeds or [], where)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        _check_methods(self)
        _check_alignment_sets(self)
        if self.resolved:
            _check_games(self)

    @property
    def resolved(self) -> bool:
        """Whether the games of ``targets: all`` and ``sources: others`` are known (a list)."""
        symbolic = self.targets == "all" or self.sources == "others"
        return not symbolic or isinstance(self.games, list)

    @property
    def target_games(self) -> list[str]:
        """The held-out target games, in order.

        Raises:
            ConfigError: ``targets: all`` before the games are known (the config did not load
                through :func:`load_experiment_config`).
        """
        if isinstance(self.targets, list):
            return list(self.targets)
        return list(self._pool("targets: all"))

    def sources_for(self, target: str) -> list[str]:
        """The source games of ``target``: the listed ones, or with ``sources: others`` every other
        game of :attr:`games`, in that order."""
        if isinstance(self.sources, list):
            return list(self.sources)
        return [g for g in self._pool("sources: others") if g != target]

    @property
    def all_sources(self) -> list[str]:
        """Every game that is a source of some target, in order of first appearance."""
        out: list[str] = []
        for target in self.target_games:
            out += [g for g in self.sources_for(target) if g not in out]
        return out

    @property
    def alignments(self) -> list[str]:
        """The compared input alignments (``transfer.alignments``; ``pad`` where not set yet)."""
        return list(self.transfer.alignments or ["pad"])

    def _pool(self, what: str) -> list[str]:
        if not isinstance(self.games, list):
            raise ConfigError(f"{what} needs the suite's games; load the config with load_experiment_config")
        return list(self.games)


def _check_methods(cfg: ExperimentConfig) -> None:
    """The checks of the methods against the stages that feed them.

    Raises:
        ValueError: a method whose upstream stage is off.
    """
    methods = cfg.transfer.methods
    if not cfg.distill.enabled:
        for method in (STUDENT, SINGLE_TEACHER):
            if method in methods:
                raise ValueError(f"transfer method {method!r} needs the distill stage (distill.enabled: true)")


def _check_alignment_sets(cfg: ExperimentConfig) -> None:
    """``pad``/``stem`` is a condition of the study, set in one place.

    Raises:
        ValueError: ``trunk.alignment`` in a stage's ``set``; or an alignment the copied experts
            were not trained with, for a method that starts from an expert.
    """
    for stage in ("experts", "distill", "multitask", "transfer"):
        trunk = getattr(cfg, stage).set.get("trunk")
        if isinstance(trunk, Mapping) and trunk.get("alignment") is not None:
            raise ValueError(f"{stage}.set.trunk.alignment: the alignment is a condition of the study; set "
                             "transfer.alignments: [pad, stem] (or one of them) instead")
    if cfg.experts.source != "train" and cfg.transfer.alignments:
        uses = [m for m in cfg.transfer.methods if m in EXPERT_METHODS]
        other = [a for a in cfg.transfer.alignments if a != cfg.experts.alignment]
        if uses and other:
            raise ValueError(f"transfer.alignments: {other[0]} needs experts trained with {other[0]} for {uses[0]}, "
                             f"but experts.source: {cfg.experts.source} gives {cfg.experts.alignment} experts; set "
                             f"experts.source: train (experts trained here under every alignment) or drop "
                             f"{other[0]} from transfer.alignments")


def _check_games(cfg: ExperimentConfig) -> None:
    """The checks that need every target's source games.

    Raises:
        ValueError: a target that is also its own source, a target without enough sources for
            a method, a named source game that is not a source of every target, too few target
            seeds for the upstream seeds, or ``experts.runs`` without a folder per game and seed.
    """
    targets = cfg.target_games
    if len(set(targets)) < len(targets):
        raise ValueError(f"targets: {targets} lists a game twice; list each once")
    for target in targets:
        sources = cfg.sources_for(target)
        if target in sources:
            raise ValueError(f"{target} is both a source and a target; a target must be held out: drop it from "
                             "sources, or write sources: others (leave-one-game-out)")
        if not sources:
            raise ValueError(f"{target} has no source game; list sources, or add games to games")
        needs_two = [m for m in (STUDENT, MULTITASK) if m in cfg.transfer.methods]
        if len(sources) < 2 and (needs_two or cfg.distill.enabled):
            what = f"transfer method {needs_two[0]!r}" if needs_two else "distillation"
            raise ValueError(f"{what} needs at least two source games, {target} has {len(sources)} (add sources, "
                             "or drop the method / set distill.enabled: false)")
        for key in ("finetune_from", "single_teacher_from", "progressive_from"):
            game = getattr(cfg.transfer, key)
            if game not in (None, "every", "first") and game not in sources:
                raise ValueError(f"transfer.{key}: {game} is not a source of {target}; leave it unset (each "
                                 "target's first source) or name a source of every target")
    _check_seed_pairing(cfg)
    if cfg.experts.source == "runs":
        for game in cfg.all_sources:
            entry = cfg.experts.runs.get(game)
            folders = [entry] if isinstance(entry, str) else (entry or [])
            if len(folders) != len(cfg.experts.seeds):
                raise ValueError(f"experts.runs: {game} needs one run folder per seed of experts.seeds "
                                 f"({len(cfg.experts.seeds)}), got {len(folders)}")


def _check_seed_pairing(cfg: ExperimentConfig) -> None:
    """Every upstream seed must get a target seed (target seed number ``i`` uses upstream seed
    number ``i mod U``), or its artifacts would be trained for nothing.

    Raises:
        ValueError: fewer target seeds than a used stage's upstream seeds.
    """
    methods = set(cfg.transfer.methods)
    used = [("experts.seeds", cfg.experts.seeds, bool(methods & set(EXPERT_METHODS)))]
    used.append(("distill.seeds", cfg.distill.seeds or cfg.experts.seeds, bool(methods & {STUDENT, SINGLE_TEACHER})))
    used.append(("multitask.seeds", cfg.multitask.seeds or cfg.experts.seeds, MULTITASK in methods))
    for where, upstream, in_use in used:
        if in_use and len(cfg.seeds) < len(upstream):
            raise ValueError(f"seeds: {len(cfg.seeds)} target seeds cannot use the {len(upstream)} upstream seeds "
                             f"of {where} (target seed number i uses upstream seed number i mod "
                             f"{len(upstream)}); list at least {len(upstream)} target seeds or fewer {where}")


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
    """The zoo checkpoint of ``game`` trained with ``seed``: ``<env>__s<seed>.zip``, or the single
    unseeded ``<env>.zip`` where its provenance records that seed.

    Raises:
        UserError: the zoo has no expert of that game and seed (naming the seeds it has, and the fix).
    """
    from policyshare import zoo
    from policyshare.errors import UserError
    from policyshare.io import read_json, slug

    seeded = zoo.ZOO_DIR / f"{slug(game)}__s{seed}.zip"
    if seeded.is_file():
        return seeded
    plain = zoo.ZOO_DIR / f"{slug(game)}.zip"
    have = sorted(int(p.stem.rsplit("__s", 1)[1]) for p in zoo.ZOO_DIR.glob(f"{slug(game)}__s*.zip")
                  if p.stem.rsplit("__s", 1)[1].isdigit())
    if plain.is_file():
        plain_seed = int(read_json(plain.with_suffix(".json"), "zoo provenance").get("seed", -1))
        if plain_seed == seed:
            return plain
        have = sorted({*have, plain_seed})
    has = f"seeds {', '.join(map(str, have))}" if have else "no expert"
    raise UserError(f"experts.seeds: the zoo has no {game} expert of seed {seed} (it has {has}); list only seeds "
                    "the zoo has, add experts with `policyshare train --seed S` + `policyshare zoo add RUN`, or set "
                    "experts.source: train")


def zoo_alignment(path: Path) -> str:
    """The input alignment a zoo expert was trained with (its provenance's training config; the
    suite's where that says ``null``)."""
    from policyshare.envs import check_env_id
    from policyshare.io import read_json

    prov = read_json(path.with_suffix(".json"), "zoo provenance")
    mode = ((prov.get("config") or {}).get("trunk") or {}).get("alignment")
    return str(mode or check_env_id(str(prov["env_id"])).alignment)


__all__ = ["EXPERT_METHODS", "METHODS", "STAGES", "Alignment", "DistillStage", "ExperimentConfig", "ExpertsStage",
           "MultitaskStage", "ReportStage", "TransferStage", "VisionStage", "check_stage_configs",
           "load_experiment_config", "zoo_alignment", "zoo_expert"]
