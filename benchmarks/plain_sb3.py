"""The "old defaults" yardstick of the speed and learning-quality benchmarks: plain stable-baselines3.

What a user writes by hand without policyshare, as ``/work/shared/REFERENCE.md`` describes it:
MinAtar ``-v1`` envs in SB3's ``DummyVecEnv`` (``make_vec_env``), the MinAtar paper network as a
hand-written features extractor (Conv2d(C, 16, 3x3, stride 1) → ReLU → Linear(1024, 128) → ReLU)
under SB3's default heads for a custom extractor (separate 64-64 policy and value MLPs), one torch
thread, CPU.

* PPO: 8 envs, n_steps 128, batch 256, 4 epochs, lr 2.5e-4, clip 0.1, ent_coef 0.01
  (:data:`OLD_PPO`).
* DQN: 1 env and the MinAtar paper's DQN (Young & Tian 2019) as in ``configs/dqn.yaml``
  (:data:`OLD_DQN`).

Nothing here imports policyshare but :mod:`policyshare.envs` (for the MinAtar ids).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

#: Plain-SB3 PPO "old defaults": (n_envs, PPO keyword arguments).
OLD_PPO: tuple[int, dict[str, Any]] = (8, {
    "learning_rate": 2.5e-4, "n_steps": 128, "batch_size": 256, "n_epochs": 4, "gamma": 0.99,
    "gae_lambda": 0.95, "clip_range": 0.1, "ent_coef": 0.01, "vf_coef": 0.5, "max_grad_norm": 0.5})

#: Plain-SB3 DQN "old defaults" (the MinAtar paper's DQN): (n_envs, DQN keyword arguments).
OLD_DQN: tuple[int, dict[str, Any]] = (1, {
    "learning_rate": 2.5e-4, "buffer_size": 100_000, "learning_starts": 5000, "batch_size": 32,
    "tau": 1.0, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1, "target_update_interval": 1000,
    "exploration_fraction": 0.1, "exploration_initial_eps": 1.0, "exploration_final_eps": 0.1,
    "max_grad_norm": 10.0})


class HandWrittenMinAtarCNN(BaseFeaturesExtractor):
    """The MinAtar paper network as a plain SB3 extractor: ``(B, 10, 10, C)`` → ``(B, 128)``."""

    def __init__(self, observation_space: gym.spaces.Box) -> None:
        super().__init__(observation_space, features_dim=128)
        c = observation_space.shape[-1]
        self.net = nn.Sequential(nn.Conv2d(c, 16, 3), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(16 * 8 * 8, 128), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(obs.permute(0, 3, 1, 2))
        return out


def plain_model(algo: str, env_id: str, seed: int, overrides: dict[str, Any] | None = None) -> Any:
    """A plain-SB3 ``PPO``/``DQN`` with the old defaults on ``env_id`` (DummyVecEnv, CPU).

    Args:
        algo: ``ppo`` or ``dqn``.
        env_id: a ``MinAtar/<Game>-v1`` id.
        seed: SB3 seed; env ``i`` is seeded ``seed + i``.
        overrides: keyword arguments replacing the old defaults' (e.g. ``learning_starts``).

    Returns:
        The SB3 model (its env in ``model.env``); sets torch to one thread.
    """
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    import policyshare.envs  # noqa: F401  (registers the MinAtar ids with Gymnasium)

    torch.set_num_threads(1)
    n_envs, kwargs = OLD_PPO if algo == "ppo" else OLD_DQN
    kwargs = {**kwargs, **(overrides or {})}
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    policy_kwargs: dict[str, Any] = {"features_extractor_class": HandWrittenMinAtarCNN}
    if algo == "dqn":
        policy_kwargs["net_arch"] = []
        return DQN("CnnPolicy", env, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **kwargs)
    return PPO("CnnPolicy", env, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **kwargs)
