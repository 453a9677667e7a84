"""The typed distillation config (``configs/actor_mimic.yaml``) and the method name it implies.

Units: ``steps``, ``learning_starts``, ``eval.freq``, ``log_freq`` and ``checkpoint_freq`` are
**env steps per task** (summed over that task's ``n_envs`` envs; every task advances in
lockstep); ``gradient_steps`` are gradient updates; evaluation is in complete episodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass

from policyshare.algos import TrunkConfig
from policyshare.config import SETTINGS, Settings, UnitInterval, load_config
from policyshare.paths import default_config

LossKind = Literal["cross_entropy", "kl"]
HeadKind = Literal["common", "per_task"]


@dataclass(config=SETTINGS)
class DistillEvalConfig(Settings):
    """Evaluation settings of a distillation run.

    Attributes:
        freq: env steps per task between greedy evaluations of the student during training
            (``distill/<task>/eval_return``); 0 turns them off.
        episodes: episodes per task of each periodic evaluation.
        final_episodes: episodes per task of the final student and teacher evaluations.
        random_episodes: episodes per task of the random-policy baseline.
    """

    freq: NonNegativeInt = 100_000
    episodes: PositiveInt = 5
    final_episodes: PositiveInt = 30
    random_episodes: PositiveInt = 30


@dataclass(config=SETTINGS)
class DistillConfig(Settings):
    """A distillation config (``configs/actor_mimic.yaml``), validated.

    Attributes:
        steps: env steps per task the student acts for (summed over the task's envs).
        n_envs: parallel envs per task.
        vec_env: ``dummy`` (one process), ``subproc`` or ``batched`` (MinAtar only: the envs
            stepped together with array operations, same episodes as ``dummy``).
        epsilon: the student's fixed ε of ε-greedy acting, in [0, 1] (0.1 in Actor-Mimic).
        loss: ``cross_entropy`` (Actor-Mimic, Eq. 2) or ``kl`` (Policy Distillation, Eq. 3).
        head: ``common`` (one output over the common action space, per-task masks) or
            ``per_task`` (one linear head per task).
        tau: softmax temperature τ > 0 applied to the teacher's outputs.
        beta: weight β >= 0 of the feature-regression loss (0 turns it off).
        head_hidden: widths of ReLU layers between the trunk's features and the output.
        buffer_size: replay memory capacity per task, in transitions.
        batch_size: transitions sampled *per task* for each gradient update.
        learning_starts: env steps per task collected before the first update.
        train_freq: collection rounds (one env step in every env of every task) between
            update rounds.
        gradient_steps: gradient updates per update round.
        learning_rate: Adam step size.
        max_grad_norm: gradient clipping (global L2 norm).
        torch_threads: torch intra-op threads.
        device: torch device of the student and teachers.
        log_freq: env steps per task between TensorBoard dumps of losses and agreement.
        checkpoint_freq: env steps per task between training checkpoints; 0 turns them off.
        trunk: the student's trunk spec, activation and input alignment (null: the suite's).
        eval: evaluation settings.
    """

    steps: PositiveInt = 500_000
    n_envs: PositiveInt = 4
    vec_env: Literal["dummy", "subproc", "batched"] = "dummy"
    epsilon: UnitInterval = 0.1
    loss: LossKind = "cross_entropy"
    head: HeadKind = "common"
    tau: PositiveFloat = 1.0
    beta: NonNegativeFloat = 0.01
    head_hidden: list[PositiveInt] = field(default_factory=list)
    buffer_size: PositiveInt = 100_000
    batch_size: PositiveInt = 32
    learning_starts: NonNegativeInt = 5_000
    train_freq: PositiveInt = 1
    gradient_steps: PositiveInt = 1
    learning_rate: PositiveFloat = 1e-4
    max_grad_norm: PositiveFloat = 10.0
    torch_threads: PositiveInt = 1
    device: str = "cpu"
    log_freq: PositiveInt = 5_000
    checkpoint_freq: NonNegativeInt = 100_000
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    eval: DistillEvalConfig = field(default_factory=DistillEvalConfig)

    def __post_init__(self) -> None:
        rounds = -(-self.steps // self.n_envs)  # the run collects whole rounds of n_envs env steps
        if rounds * self.n_envs < self.first_update_step:
            raise ValueError(
                f"steps {self.steps} (env steps per task) trains nothing: the first update comes at env "
                f"step {self.first_update_step} per task (learning_starts {self.learning_starts}, n_envs "
                f"{self.n_envs}, train_freq {self.train_freq}); set steps (--steps) to at least "
                f"{self.first_update_step} or lower learning_starts (--set learning_starts=N)")

    @property
    def first_update_step(self) -> int:
        """Env steps per task at which the first gradient update runs.

        Collection round ``r`` (1, 2, …) ends at ``r · n_envs`` env steps per task; updates
        follow rounds with ``r · n_envs >= learning_starts`` and ``r`` a multiple of
        ``train_freq``. A run of fewer ``steps`` would report an untrained student, so the
        config refuses it.
        """
        first = max(1, -(-self.learning_starts // self.n_envs))  # ceil(learning_starts / n_envs)
        first = -(-first // self.train_freq) * self.train_freq  # up to a multiple of train_freq
        return first * self.n_envs


def load_distill_config(path: str | Path | None = None,
                        overrides: Mapping[str, Any] | None = None) -> DistillConfig:
    """Read a distillation config (default ``configs/actor_mimic.yaml``) and apply overrides.

    Raises:
        ConfigError: missing or malformed file, unknown key, wrong type, or a value out of
            range (τ <= 0, ε outside [0, 1], β < 0 …).
    """
    p = Path(path) if path is not None else default_config("actor_mimic")
    return load_config(DistillConfig, p, overrides=overrides,
                       expected="a mapping of settings (steps, tau, beta …)")


def method_name(cfg: DistillConfig) -> str:
    """``actor_mimic`` (common head + cross-entropy), ``policy_distillation`` (per-task heads
    + KL), or ``<head>_<loss>`` for the mixed choices; used in run names."""
    if cfg.head == "common" and cfg.loss == "cross_entropy":
        return "actor_mimic"
    if cfg.head == "per_task" and cfg.loss == "kl":
        return "policy_distillation"
    return f"{cfg.head}_{cfg.loss}"

