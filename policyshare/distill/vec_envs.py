"""Environments as SB3 models see them: the vectorised env of a task and its observation scale."""

from __future__ import annotations

from typing import Any

from gymnasium import spaces

from policyshare.envs import make_vec_env


def policy_vec_env(env_id: str, n_envs: int, seed: int, vec_env: str = "dummy") -> Any:
    """:func:`~policyshare.envs.make_vec_env`, plus the image transposition SB3 adds itself
    (``VecTransposeImage`` for channels-last ``uint8`` images, i.e. Atari), so observations
    have exactly the layout of an SB3 model's ``observation_space``."""
    from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
    from stable_baselines3.common.vec_env import VecTransposeImage

    venv = make_vec_env(env_id, n_envs, seed, vec_env)
    space = venv.observation_space
    if is_image_space(space) and not is_image_space_channels_first(space):
        venv = VecTransposeImage(venv)
    return venv


def observation_scale(space: spaces.Space) -> float:
    """The factor SB3's ``preprocess_obs`` applies to a ``Box``: 1/255 for images, else 1."""
    from stable_baselines3.common.preprocessing import is_image_space

    return 1.0 / 255.0 if is_image_space(space) else 1.0

