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

from collections.abc import Callable
from dataclasses import field
from typing import Any

from pydantic import NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass

from policyshare.config import SETTINGS, Settings

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


__all__ = ["SHARED", "STAGE_KINDS", "VARIANTS", "CapacityStage", "fit_width"]
