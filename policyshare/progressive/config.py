"""The typed ``configs/progressive.yaml``: adapters, controls, Fisher sensitivity, the experiment.

Plain data only (no torch): the command line reads and checks it before anything is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from pydantic import FiniteFloat, PositiveInt
from pydantic.dataclasses import dataclass

from policyshare.config import SETTINGS, Settings, load_config
from policyshare.methods import PROGRESSIVE_CONTROLS
from policyshare.paths import default_config

#: Algorithms a column can be trained with (actor-critic policies with SB3 heads).
ALGOS = ("ppo", "a2c")
#: The controls of Rusu et al. 2016 that ``policyshare progressive`` trains on the target task
#: (named in :mod:`policyshare.methods`).
CONTROLS = PROGRESSIVE_CONTROLS
#: Offset added to a seed for the envs that sample Fisher-sensitivity observations.
FISHER_SEED_OFFSET = 20_000
#: Offset added to a seed for the random frozen column of the ``random_column`` control.
RANDOM_COLUMN_SEED_OFFSET = 30_000


@dataclass(config=SETTINGS)
class AdapterConfig(Settings):
    """Lateral adapters (Rusu et al. 2016, Eq. 2).

    Attributes:
        alpha_init: initial value of the learned scalar α that multiplies the earlier columns'
            activations (the paper searched {1, 0.1, 0.01}).
        reduction: channels (conv) or units (dense) after the reduction V; ``None`` reduces to
            one column's width of the source layer, as in the paper.
        heads: also feed the earlier columns' last layer into the new column's policy and
            value heads (the paper's laterals into the output layer).
    """

    alpha_init: FiniteFloat = 1.0
    reduction: PositiveInt | None = None
    heads: bool = True


@dataclass(config=SETTINGS)
class ControlsConfig(Settings):
    """Controls trained on the target task with the same seeds (Rusu et al. 2016, Sec. 4).

    Attributes:
        scratch: baseline 1, a single column trained from scratch (the transfer % reference).
        finetune: baseline 3, the first task's column fine-tuned on the target, fresh heads.
        random_column: baseline 4, a two-column network whose first column is random and
            frozen (separates extra capacity from transfer).
    """

    scratch: bool = True
    finetune: bool = True
    random_column: bool = True


@dataclass(config=SETTINGS)
class FisherConfig(Settings):
    """Average Fisher Sensitivity on the target task (Rusu et al. 2016, Sec. 5).

    Attributes:
        enabled: compute it.
        samples: target-task observations, collected by running the target column's
            stochastic policy (env steps summed over 8 envs).
        batch_size: observations per backward pass.
    """

    enabled: bool = True
    samples: PositiveInt = 2048
    batch_size: PositiveInt = 256


@dataclass(config=SETTINGS)
class ProgressiveConfig(Settings):
    """An experiment config (``configs/progressive.yaml``).

    Attributes:
        algo: ``ppo`` or ``a2c``.
        train_config: the per-env training config (default ``configs/<algo>.yaml``).
        timesteps: env steps per column and per control run; ``None`` takes each task's
            ``timesteps`` from the training config.
        adapter: lateral adapters.
        controls: which controls to train on the target task.
        fisher: Average Fisher Sensitivity.
        train: overrides applied to every run's training config (same keys as an entry of
            ``configs/<algo>.yaml``, e.g. ``eval: {freq: 10000}``).
    """

    algo: Literal["ppo", "a2c"] = "ppo"
    train_config: str | None = None
    timesteps: PositiveInt | None = None
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    fisher: FisherConfig = field(default_factory=FisherConfig)
    train: dict[str, Any] = field(default_factory=dict)


def load_progressive_config(path: str | Path | None = None,
                            overrides: Mapping[str, Any] | None = None) -> ProgressiveConfig:
    """Read ``configs/progressive.yaml`` (or ``path``) strictly, with ``--set`` overrides.

    Raises:
        ConfigError: missing/malformed file, unknown key, wrong type or out-of-range value.
    """
    p = Path(path) if path is not None else default_config("progressive")
    return load_config(ProgressiveConfig, p, overrides=overrides)
