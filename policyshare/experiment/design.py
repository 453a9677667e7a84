"""The experimental design: which runs a study compares on each target, and what each starts from.

Pure functions of an :class:`~policyshare.experiment.config.ExperimentConfig` (nothing is read or
trained here):

* an :class:`Arm` is one compared condition on a target — a method (:mod:`policyshare.methods`),
  its source game where it has one (``finetune`` and ``frozen`` run from every source,
  ``single_teacher`` and ``progressive`` from one), and its input alignment (``pad``/``stem``;
  ``scratch`` has none: it runs once, with the suite's own) — :func:`arms`;
* an :class:`Upstream` is one trained artifact a transfer run starts from — an expert (per game,
  seed and alignment, shared by every target), a student or a multi-task network (per set of
  source games, seed and alignment: with leave-one-game-out, per target) — :func:`upstream_for`,
  :func:`teachers`, :func:`upstreams`.

**Upstream seeds.** Each stage has its seeds (``experts.seeds``, ``distill.seeds``,
``multitask.seeds``; the latter two default to the experts'); call their number ``U``. Target
seed number ``i`` (its position in ``seeds``) uses upstream seed number ``i mod U``: a *nested*
design, in which every target seed belongs to exactly one upstream seed. It costs ``S`` runs per
arm (the full cross of target and upstream seeds would cost ``S · U``) and is what a hierarchical
bootstrap needs: resample upstream seeds, then target seeds within each (with ``S = 5``,
``U = 3``: groups of 2, 2 and 1 target seeds). Every transfer run records its upstream seed in
its ``config.yaml`` (``upstream``), so the report can group by it. Student number ``j`` learns
from the experts of seed number ``j mod len(experts.seeds)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policyshare.experiment.config import EXPERT_METHODS, ExperimentConfig
from policyshare.io import slug
from policyshare.methods import (
    MULTITASK,
    PER_SOURCE_METHODS,
    PROGRESSIVE,
    SCRATCH,
    SINGLE_TEACHER,
    STUDENT,
)

#: The stage of each upstream kind.
UPSTREAM_STAGE: dict[str, str] = {"expert": "experts", "distill": "distill", "multitask": "multitask"}


def short(game: str) -> str:
    """A game's name without its suite prefix, for folder names (``MinAtar/Breakout-v1`` →
    ``Breakout-v1``)."""
    return game.split("/")[-1]


def group_name(games: tuple[str, ...] | list[str]) -> str:
    """The folder name of a set of source games (``Asterix-v1_Freeway-v1``)."""
    return "_".join(short(g) for g in games)


@dataclass(frozen=True)
class Arm:
    """One compared condition on a target game.

    Attributes:
        method: a name of :data:`policyshare.methods.EXPERIMENT_METHODS`.
        alignment: ``pad`` or ``stem``; ``None`` for ``scratch`` (the suite's own alignment).
        source: the source game it starts from (``finetune``, ``frozen``, ``single_teacher``,
            ``progressive``), else ``None``.
    """

    method: str
    alignment: str | None = None
    source: str | None = None

    @property
    def label(self) -> str:
        """The arm's name in folder names and reports: ``method[__source][__alignment]``, e.g.
        ``finetune__Breakout-v1__stem`` or ``scratch``."""
        parts = [self.method, *([short(self.source)] if self.source else []),
                 *([self.alignment] if self.alignment else [])]
        return "__".join(parts)


@dataclass(frozen=True)
class Upstream:
    """One trained artifact that transfer runs start from.

    Attributes:
        kind: ``expert`` (``policyshare train``, or copied from the zoo or a run), ``distill``
            (an Actor-Mimic student; one teacher for ``single_teacher``) or ``multitask``
            (multi-task PPO from scratch).
        games: the game (expert), the teachers' games (distill) or the tasks (multitask).
        alignment: the input alignment it was trained with.
        seed: its seed.
        index: its upstream seed number (position in its stage's seeds).
        teacher_seed: ``distill`` only: the seed of its teachers (experts).
    """

    kind: str
    games: tuple[str, ...]
    alignment: str
    seed: int
    index: int
    teacher_seed: int | None = None

    @property
    def name(self) -> str:
        """Its run folder, relative to the experiment folder: ``experts/<env>/<alignment>__s<seed>``,
        ``distill/<games>/<alignment>__s<seed>`` or ``multitask/<games>/<alignment>__s<seed>``."""
        where = slug(self.games[0]) if self.kind == "expert" else group_name(self.games)
        return f"{UPSTREAM_STAGE[self.kind]}/{where}/{self.alignment}__s{self.seed}"

    def describe(self) -> dict[str, Any]:
        """Plain data recorded in the transfer run's ``config.yaml`` (``upstream``)."""
        return {"kind": self.kind, "run": self.name, "games": list(self.games), "alignment": self.alignment,
                "seed": self.seed, "index": self.index, "teacher_seed": self.teacher_seed}


def upstream_seeds(cfg: ExperimentConfig, kind: str) -> list[int]:
    """The seeds of an upstream kind: ``expert``, ``distill`` or ``multitask`` (the latter two
    default to the experts')."""
    if kind == "distill":
        return list(cfg.distill.seeds or cfg.experts.seeds)
    if kind == "multitask":
        return list(cfg.multitask.seeds or cfg.experts.seeds)
    return list(cfg.experts.seeds)


def expert_alignments(cfg: ExperimentConfig) -> list[str]:
    """The alignments experts exist under: every compared one when trained here, else the one the
    copied experts were trained with (``experts.alignment``)."""
    return cfg.alignments if cfg.experts.source == "train" else [cfg.experts.alignment]


def arms(cfg: ExperimentConfig, target: str) -> list[Arm]:
    """Every arm run on ``target``, in report order: ``scratch`` first, then per alignment the
    methods of ``transfer.methods`` (per-source ones once per source game)."""
    sources = cfg.sources_for(target)
    out = [Arm(SCRATCH)]
    for alignment in cfg.alignments:
        for method in cfg.transfer.methods:
            if method == SCRATCH:
                continue
            if method in PER_SOURCE_METHODS:
                out += [Arm(method, alignment, g) for g in finetune_sources(cfg, target)]
            elif method == SINGLE_TEACHER:
                out.append(Arm(method, alignment, cfg.transfer.single_teacher_from or sources[0]))
            elif method == PROGRESSIVE:
                out.append(Arm(method, alignment, cfg.transfer.progressive_from or sources[0]))
            else:
                out.append(Arm(method, alignment))
    return out


def finetune_sources(cfg: ExperimentConfig, target: str) -> list[str]:
    """The source games ``finetune`` and ``frozen`` start from on ``target`` (``transfer.finetune_from``)."""
    sources = cfg.sources_for(target)
    choice = cfg.transfer.finetune_from
    if choice == "every":
        return sources
    return [sources[0]] if choice == "first" else [choice]


def upstream_for(cfg: ExperimentConfig, target: str, arm: Arm, seed: int) -> Upstream | None:
    """The artifact the run of ``arm`` on ``target`` with target seed ``seed`` starts from
    (``None``: ``scratch`` and ``random_column`` start from nothing trained).

    Raises:
        ValueError: ``seed`` is not one of the config's target seeds.
    """
    i = cfg.seeds.index(seed)
    if arm.alignment is None:
        return None
    if arm.method in EXPERT_METHODS:
        assert arm.source is not None
        return expert(cfg, arm.source, arm.alignment, i)
    if arm.method in (STUDENT, SINGLE_TEACHER):
        games = cfg.sources_for(target) if arm.method == STUDENT else [arm.source or ""]
        return student(cfg, games, arm.alignment, i)
    if arm.method == MULTITASK:
        seeds = upstream_seeds(cfg, "multitask")
        u = i % len(seeds)
        return Upstream("multitask", tuple(cfg.sources_for(target)), arm.alignment, seeds[u], u)
    return None


def expert(cfg: ExperimentConfig, game: str, alignment: str, i: int) -> Upstream:
    """The expert on ``game`` for upstream seed number ``i mod len(experts.seeds)``, trained with
    ``alignment`` (or with the copied experts' alignment, where they are not trained here)."""
    seeds = upstream_seeds(cfg, "expert")
    u = i % len(seeds)
    have = expert_alignments(cfg)
    return Upstream("expert", (game,), alignment if alignment in have else have[0], seeds[u], u)


def student(cfg: ExperimentConfig, games: list[str], alignment: str, i: int) -> Upstream:
    """The student distilled from the experts on ``games`` for upstream seed number
    ``i mod len(distill.seeds)``, its trunk aligned by ``alignment``."""
    seeds = upstream_seeds(cfg, "distill")
    u = i % len(seeds)
    teacher_seeds = upstream_seeds(cfg, "expert")
    return Upstream("distill", tuple(games), alignment, seeds[u], u, teacher_seeds[u % len(teacher_seeds)])


def teachers(cfg: ExperimentConfig, up: Upstream) -> list[Upstream]:
    """The experts a student (``kind == "distill"``) learns from: one per game, its teacher seed,
    the student's alignment where experts exist under it."""
    seeds = upstream_seeds(cfg, "expert")
    assert up.teacher_seed is not None
    return [expert(cfg, g, up.alignment, seeds.index(up.teacher_seed)) for g in up.games]


def upstreams(cfg: ExperimentConfig) -> dict[str, list[Upstream]]:
    """Every artifact the transfer runs (and the vision stage) start from, without repeats, by
    kind (``expert``, ``distill``, ``multitask``): what the upstream stages must produce.

    With ``distill.enabled``, every target's all-teacher student is made for every distill seed
    and alignment, also when no transfer method uses it (the vision stage and the report read
    students).
    """
    out: dict[str, list[Upstream]] = {"expert": [], "distill": [], "multitask": []}

    def add(up: Upstream | None) -> None:
        if up is not None and up not in out[up.kind]:
            out[up.kind].append(up)

    for target in cfg.target_games:
        for arm in arms(cfg, target):
            for seed in cfg.seeds:
                add(upstream_for(cfg, target, arm, seed))
        if cfg.distill.enabled:
            for alignment in cfg.alignments:
                for i in range(len(upstream_seeds(cfg, "distill"))):
                    add(student(cfg, cfg.sources_for(target), alignment, i))
    if cfg.vision.enabled and "expert" in cfg.vision.include:
        add(vision_expert(cfg))
    if cfg.capacity.enabled:  # the expert returns the capacity variants are normalised by
        for game in cfg.capacity.games or cfg.sources_for(cfg.target_games[0]):
            for i in range(len(upstream_seeds(cfg, "expert"))):
                add(expert(cfg, game, cfg.alignments[0], i))
    for up in list(out["distill"]):
        for t in teachers(cfg, up):
            add(t)
    return out


def vision_expert(cfg: ExperimentConfig) -> Upstream:
    """The expert whose trunk the vision stage compares: the first target's first source, first
    seed, first alignment."""
    target = cfg.target_games[0]
    return expert(cfg, cfg.sources_for(target)[0], cfg.alignments[0], 0)


def vision_student(cfg: ExperimentConfig) -> Upstream:
    """The student whose trunk the vision stage compares: the first target's, first seed and alignment."""
    target = cfg.target_games[0]
    return student(cfg, cfg.sources_for(target), cfg.alignments[0], 0)


def vision_progressive(cfg: ExperimentConfig) -> tuple[str, Arm, int] | None:
    """``(target, arm, seed)`` of the progressive column the vision stage compares (first target,
    first alignment, first seed), or ``None`` without ``progressive``."""
    target = cfg.target_games[0]
    found = [a for a in arms(cfg, target) if a.method == PROGRESSIVE]
    return (target, found[0], cfg.seeds[0]) if found else None


__all__ = ["UPSTREAM_STAGE", "Arm", "Upstream", "arms", "expert", "expert_alignments",
           "finetune_sources", "group_name", "short", "student", "teachers", "upstream_for", "upstream_seeds",
           "upstreams", "vision_expert", "vision_progressive", "vision_student"]
