"""The experiment's config: ``configs/quickstart.yaml``, ``configs/sharing.yaml`` … as typed data.

:class:`ExperimentConfig` names the **target** games (held out in turn: ``targets: all``), their
**source** games (a list, or ``others``: the other games of the suite, leave-one-game-out), the
target seeds, and one settings block per stage (:class:`ExpertsStage`, :class:`DistillStage`,
:class:`MultitaskStage`, :class:`TransferStage`, :class:`VisionStage`, :class:`ReportStage`).
Upstream artifacts (experts, students, multi-task networks) have their own seeds
(``experts.seeds``, ``distill.seeds``, ``multitask.seeds``); how target seeds pair with them is
:mod:`policyshare.experiment.design`'s.

Everything that cannot work is refused before any stage runs, with one
:class:`~policyshare.errors.ConfigError` line naming the problem and the fix (exit status 2):
checks across fields here, in ``__post_init__``; checks against the suites, the zoo and every
stage's own config in :mod:`policyshare.experiment.checks` (:func:`load_experiment_config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass

from policyshare.config import SETTINGS, Settings, check_seeds
from policyshare.errors import ConfigError
from policyshare.experiment.capacity import CapacityStage
from policyshare.methods import (
    EXPERIMENT_METHODS,
    FINETUNE,
    FROZEN,
    MULTITASK,
    PROGRESSIVE,
    SCRATCH,
    SINGLE_TEACHER,
    STUDENT,
)

#: The stages, in order.
STAGES: tuple[str, ...] = ("experts", "distill", "multitask", "transfer", "vision", "capacity", "capacity_shared",
                           "report")
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


def _check_capacity(cfg: ExperimentConfig) -> None:
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
    games = cfg.capacity_games()
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
        capacity: data per parameter at a fixed budget
            (:class:`~policyshare.experiment.capacity.CapacityStage`; off by default).
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
    capacity: CapacityStage = field(default_factory=CapacityStage)

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
            _check_capacity(self)

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
                through :func:`~policyshare.experiment.checks.load_experiment_config`).
        """
        if isinstance(self.targets, list):
            return list(self.targets)
        return list(self._pool("targets: all"))

    def capacity_games(self) -> list[str]:
        """The capacity study's ``K`` games: ``capacity.games``, or the first target's source games."""
        return list(self.capacity.games or self.sources_for(self.target_games[0]))

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


__all__ = ["EXPERT_METHODS", "METHODS", "STAGES", "Alignment", "CapacityStage", "DistillStage", "ExperimentConfig",
           "ExpertsStage", "MultitaskStage", "ReportStage", "TransferStage", "VisionStage"]
