"""The experiment's config: ``configs/quickstart.yaml``, ``configs/sharing.yaml`` … as typed data.

:class:`ExperimentConfig` names a suite's **source** games and held-out **target** games, the
seeds, and one settings block per stage (:class:`ExpertsStage`, :class:`DistillStage`,
:class:`TransferStage`, :class:`VisionStage`, :class:`ReportStage`).
:func:`load_experiment_config` reads it strictly and :func:`check_stage_configs` validates
every stage's own config (training, distillation, adapters, vision) before any stage runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass

from policyshare.config import SETTINGS, Settings, check_seeds, from_dict, load_config
from policyshare.errors import ConfigError
from policyshare.methods import EXPERIMENT_METHODS, PROGRESSIVE, RANDOM_COLUMN, SCRATCH

#: The stages, in order.
STAGES: tuple[str, ...] = ("experts", "distill", "transfer", "vision", "report")
#: Transfer methods on a target game (named in :mod:`policyshare.methods`); ``scratch`` is the
#: reference of transfer %.
METHODS: tuple[str, ...] = EXPERIMENT_METHODS


@dataclass(config=SETTINGS)
class ExpertsStage(Settings):
    """Where the source experts come from.

    Attributes:
        source: ``zoo`` (the shipped experts), ``train`` (trained here with
            ``policyshare train``) or ``runs`` (finished train run folders listed in ``runs``).
        runs: env id → a finished ``policyshare train`` run folder (``source: runs``).
        timesteps: env steps per expert when trained here.
        seed: seed of the experts trained here, or the training seed of the zoo's experts
            (``source: zoo``; the zoo ships seeds 0, 1 and 2 of each MinAtar game once retrained).
        config: training config (default ``configs/<algo>.yaml``).
        set: overrides of the training config (same keys as an entry of it).
    """

    source: Literal["zoo", "train", "runs"] = "zoo"
    runs: dict[str, str] = field(default_factory=dict)
    timesteps: PositiveInt | None = None
    seed: int = 0
    config: str | None = None
    set: dict[str, Any] = field(default_factory=dict)


@dataclass(config=SETTINGS)
class DistillStage(Settings):
    """The Actor-Mimic student (see ``configs/actor_mimic.yaml``).

    Attributes:
        enabled: distil a student (the ``student`` transfer method needs it).
        config: distillation config (default ``configs/actor_mimic.yaml``).
        steps: env steps per task (overrides the config).
        seed: the student's seed.
        set: overrides of the distillation config.
    """

    enabled: bool = True
    config: str | None = None
    steps: PositiveInt | None = None
    seed: int = 0
    set: dict[str, Any] = field(default_factory=dict)


@dataclass(config=SETTINGS)
class TransferStage(Settings):
    """Training on the held-out target games.

    Attributes:
        methods: which of ``scratch``, ``finetune``, ``student``, ``progressive``,
            ``random_column`` to run (``scratch`` is always run: it is the reference).
        timesteps: env steps per run.
        finetune_from: source game whose expert's trunk ``finetune`` starts from (default: the
            first source).
        progressive_from: source game whose expert is ``progressive``'s frozen column
            (default: the first source).
        config: training config (default ``configs/<algo>.yaml``).
        set: overrides of the training config for every run (e.g. ``eval: {freq: 10000}``).
        adapter: lateral adapters of the progressive columns (``policyshare.progressive.AdapterConfig``).
    """

    methods: list[str] = field(default_factory=lambda: list(METHODS))
    timesteps: PositiveInt = 500_000
    finetune_from: str | None = None
    progressive_from: str | None = None
    config: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    adapter: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if SCRATCH not in self.methods:
            self.methods.insert(0, SCRATCH)


@dataclass(config=SETTINGS)
class VisionStage(Settings):
    """The vision thesis table over the trunks (``configs/vision.yaml``).

    Attributes:
        enabled: run it.
        config: vision config (default ``configs/vision.yaml``).
        set: overrides of the vision config.
        trunks: trunks built there: ``random``, ``classify``, ``autoencoder``.
        include: trunks of this run to add: ``expert`` (the first source's), ``student``,
            ``progressive`` (the column trained on the first target, first seed).
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
        sources: source games (experts, distillation teachers).
        targets: held-out target games.
        seeds: seeds of the transfer runs.
    """

    name: str
    sources: list[str]
    targets: list[str]
    description: str = ""
    algo: Literal["ppo", "a2c"] = "ppo"
    seeds: list[NonNegativeInt] = field(default_factory=lambda: [0, 1, 2])
    experts: ExpertsStage = field(default_factory=ExpertsStage)
    distill: DistillStage = field(default_factory=DistillStage)
    transfer: TransferStage = field(default_factory=TransferStage)
    vision: VisionStage = field(default_factory=VisionStage)
    report: ReportStage = field(default_factory=ReportStage)

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("sources: list at least one source game")
        if not self.targets:
            raise ValueError("targets: list at least one held-out target game")
        both = sorted(set(self.sources) & set(self.targets))
        if both:
            raise ValueError(f"{both[0]} is both a source and a target; a target must be held out")
        if not self.seeds:
            raise ValueError("seeds: list at least one seed >= 0")
        try:
            check_seeds(self.seeds)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        if len(self.sources) < 2 and self.distill.enabled:
            raise ValueError("distillation needs at least two source games (or set distill.enabled: false)")
        if not self.distill.enabled and "student" in self.transfer.methods:
            raise ValueError("transfer method 'student' needs the distill stage (distill.enabled: true)")
        for name in ("finetune_from", "progressive_from"):
            game = getattr(self.transfer, name)
            if game is not None and game not in self.sources:
                raise ValueError(f"transfer.{name}: {game} is not a source game")
        missing = [g for g in self.sources if self.experts.source == "runs" and g not in self.experts.runs]
        if missing:
            raise ValueError(f"experts.runs has no run folder for {missing[0]}")

    @property
    def finetune_from(self) -> str:
        return self.transfer.finetune_from or self.sources[0]

    @property
    def progressive_from(self) -> str:
        return self.transfer.progressive_from or self.sources[0]


def load_experiment_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read an experiment config strictly (unknown keys, wrong types and bad values are errors).

    Env ids are checked against the suites.

    Raises:
        ConfigError: bad file, key, type or value; UserError: an unknown env id.
    """
    from policyshare.envs import check_env_id

    cfg = load_config(ExperimentConfig, path, overrides=overrides,
                      expected="a mapping of settings (name, sources, targets, …)")
    suites = {check_env_id(g).name for g in cfg.sources + cfg.targets}
    if len(suites) > 1:
        raise ConfigError(f"{path}: sources and targets mix suites ({', '.join(sorted(suites))})")
    check_stage_configs(cfg)
    return cfg


def check_stage_configs(cfg: ExperimentConfig) -> None:
    """Validate every stage's own config and overrides now, before any stage runs.

    Raises:
        ConfigError: a bad key, type or value in a stage's config or ``set``.
    """
    from policyshare.train import load_train_config

    if cfg.experts.source == "train":
        for game in cfg.sources:
            load_train_config(game, cfg.algo, cfg.experts.config, cfg.experts.set)
    if cfg.distill.enabled:
        from policyshare.distill import load_distill_config

        steps = {} if cfg.distill.steps is None else {"steps": cfg.distill.steps}
        load_distill_config(cfg.distill.config, {**cfg.distill.set, **steps})
    for target in cfg.targets:
        t_cfg, _ = load_train_config(target, cfg.algo, cfg.transfer.config, cfg.transfer.set)
        if not 0 < 2 * t_cfg.eval.freq <= cfg.transfer.timesteps:
            raise ConfigError(f"transfer is measured on learning curves: set transfer.set.eval.freq (now "
                              f"{t_cfg.eval.freq}) to at most half of transfer.timesteps ({cfg.transfer.timesteps})")
    if {PROGRESSIVE, RANDOM_COLUMN} & set(cfg.transfer.methods):
        from policyshare.progressive import AdapterConfig

        from_dict(AdapterConfig, cfg.transfer.adapter, "transfer.adapter")
    if cfg.vision.enabled:
        from policyshare.vision.config import load_vision_config

        load_vision_config(cfg.vision.config, cfg.vision.set)


__all__ = ["METHODS", "STAGES", "DistillStage", "ExperimentConfig", "ExpertsStage", "ReportStage",
           "TransferStage", "VisionStage", "check_stage_configs", "load_experiment_config"]
