"""The multi-task PPO config (``configs/multitask.yaml``), typed and validated.

Units: ``timesteps``, ``checkpoint_freq`` and ``eval.freq`` are env steps **summed over all tasks**
(SB3's ``num_timesteps``: every rollout advances each of the ``k`` tasks by ``n_steps · n_envs``
env steps); ``n_envs`` is envs **per task**; evaluation is in complete episodes per task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from pydantic import NonNegativeInt, PositiveInt
from pydantic.dataclasses import dataclass

from policyshare.algos import PolicyConfig, PPOParams, TrunkConfig, algo_params
from policyshare.config import SETTINGS, Settings, from_dict, read_settings, to_dict
from policyshare.errors import ConfigError
from policyshare.paths import default_config
from policyshare.train import EvalConfig


@dataclass(config=SETTINGS)
class MultiTaskConfig(Settings):
    """A resolved ``configs/multitask.yaml``.

    Attributes:
        timesteps: env steps over all tasks together; ``null`` gives the tasks' experts' budgets
            summed (each task's ``timesteps`` in ``configs/ppo.yaml``, the recipe of
            ``policyshare train`` and the zoo), so multi-task RL uses as many env steps as the
            experts it is compared with.
        n_envs: parallel envs per task.
        vec_env: ``dummy``, ``subproc`` or ``batched`` (MinAtar only), per task.
        torch_threads: torch intra-op threads.
        device: torch device.
        checkpoint_freq: env steps (all tasks) between checkpoints; 0 turns them off.
        progress_bar: SB3's progress bar.
        experts: ``zoo``: each task's expert return for the expert-normalised score is the shipped
            zoo expert's, evaluated on the same seeds and episodes; ``none``: no expert, the score
            is left undefined.
        trunk: trunk spec, activation and input alignment (``null``: the suite's).
        policy: heads above the trunk (and the one-hot task index).
        eval: periodic (``eval.freq`` env steps over all tasks; ``eval.episodes`` per task) and
            final evaluation settings.
        hyperparams: PPO hyper-parameters (SB3 names; ``n_steps`` per env, ``batch_size``
            transitions per minibatch over all tasks' envs).
    """

    timesteps: PositiveInt | None = None
    n_envs: PositiveInt = 8
    vec_env: Literal["dummy", "subproc", "batched"] = "dummy"
    torch_threads: PositiveInt = 1
    device: str = "cpu"
    checkpoint_freq: NonNegativeInt = 200_000
    progress_bar: bool = True
    experts: Literal["zoo", "none"] = "zoo"
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hyperparams: dict[str, Any] = field(default_factory=dict)


def load_multitask_config(n_tasks: int, path: str | Path | None = None,
                          overrides: Mapping[str, Any] | None = None) -> tuple[MultiTaskConfig, PPOParams]:
    """Read ``configs/multitask.yaml`` (or ``path``), apply ``--set`` overrides, validate.

    Args:
        n_tasks: how many tasks train together (for the rollout-size check).
        path: the config file.
        overrides: nested overrides.

    Returns:
        ``(config, ppo_hyperparams)``.

    Raises:
        ConfigError: missing or malformed file, unknown key, wrong type, out-of-range value, or a
            ``batch_size`` larger than one rollout (``n_steps · n_envs · tasks``).
    """
    p = Path(path) if path is not None else default_config("multitask")
    raw, where = read_settings(p, overrides=overrides,
                               expected="a mapping of settings (timesteps, n_envs, hyperparams …)")
    cfg = from_dict(MultiTaskConfig, raw, where)
    params: PPOParams = algo_params("ppo", cfg.hyperparams, f"{p}.hyperparams")
    rollout = params.n_steps * cfg.n_envs * n_tasks
    if params.batch_size > rollout:
        raise ConfigError(f"{p}: hyperparams.batch_size ({params.batch_size}) exceeds the rollout size "
                          f"n_steps*n_envs*tasks ({rollout}); lower batch_size or raise n_steps or n_envs")
    return cfg, params


def resolved_config(cfg: MultiTaskConfig, params: PPOParams, tasks: Sequence[str], seed: int,
                    timesteps: int) -> dict[str, Any]:
    """The plain-data config a run records in ``config.yaml`` (and a resume must match)."""
    d = to_dict(cfg)
    d["hyperparams"] = to_dict(params)
    d["timesteps"] = timesteps
    return {"tasks": list(tasks), "algo": "ppo", "method": "multitask_ppo", "seed": seed, **d}
