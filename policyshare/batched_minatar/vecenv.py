"""A batched MinAtar game behind stable-baselines3's ``VecEnv`` API.

:class:`BatchedMinAtarVecEnv` is a drop-in for ``policyshare.envs.make_vec_env(env_id, n, seed)``
on a ``MinAtar/<Game>-v0/-v1`` id (a ``DummyVecEnv`` of :class:`~policyshare.envs.MinAtarEnv`
under Gymnasium's ``TimeLimit`` and SB3's ``Monitor``): for the same seed and actions it returns
the same observations, rewards, dones and infos (``TimeLimit.truncated``,
``terminal_observation``), because it reproduces, per env,

* the seeding: env ``i`` gets the Gymnasium seed ``seed + i`` at the first :meth:`reset` after
  :meth:`seed` (SB3's ``make_vec_env`` convention); as ``MinAtarEnv.reset`` does, its game's
  ``RandomState`` is seeded with ``np_random.integers(2**31 - 1)`` of Gymnasium's ``np_random``
  for that seed; later resets continue the stream;
* the sticky actions of ``minatar.Environment.act``: each env step draws ``rand()`` from the
  env's ``RandomState`` *before* the game's own draws and repeats the env's previous action when
  it is below the probability (0.1); the previous action survives resets, as in MinAtar;
* auto-reset of terminated envs and truncation after the registered ``max_episode_steps``
  (10,000 env steps).

Episode statistics for SB3's logger (``info["episode"]``) come from SB3's ``VecMonitor``:
:func:`make_batched_vec_env` wraps the env in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from policyshare.batched_minatar import game_class
from policyshare.errors import UserError

_ENTRY_POINT = "policyshare.envs:MinAtarEnv"


def minatar_spec(env_id: str) -> tuple[str, bool, int | None]:
    """``(game module, minimal action set, max_episode_steps)`` of a registered MinAtar id.

    Raises:
        UserError: ``env_id`` is not a ``MinAtar/<Game>-v0/-v1`` id registered by policyshare.
    """
    spec = gym.registry.get(env_id)
    if spec is None or spec.entry_point != _ENTRY_POINT:
        raise UserError(f"vec_env 'batched' runs MinAtar ids only (MinAtar/<Game>-v0/-v1), not "
                        f"{env_id!r}; use vec_env=dummy or subproc")
    return (str(spec.kwargs["game"]), bool(spec.kwargs.get("use_minimal_action_set", True)),
            spec.max_episode_steps)


class BatchedMinAtarVecEnv(VecEnv):
    """``n_envs`` copies of a MinAtar game as one SB3 ``VecEnv``, stepped with array operations.

    Observations: ``(n_envs, 10, 10, C)`` bool (``Box(0, 1, (10, 10, C), bool)`` per env, as
    :class:`~policyshare.envs.MinAtarEnv`). Actions: ``(n_envs,)`` ints of ``Discrete(k)`` over
    the game's minimal action set (``-v1``) or all 6 MinAtar actions (``-v0``). Rewards
    ``(n_envs,)`` float32; dones ``(n_envs,)`` bool (terminated or truncated); every info holds
    ``TimeLimit.truncated``, and a done env's also ``terminal_observation`` (its last
    observation; the returned one is the first of its next episode).

    Args:
        env_id: a registered ``MinAtar/<Game>-v0/-v1`` id.
        n_envs: number of envs.
        seed: base seed (env ``i`` gets ``seed + i`` at the next :meth:`reset`); ``None``
            draws one, as SB3's ``VecEnv.seed``.
        sticky_action_prob: probability of repeating an env's previous action.
        difficulty_ramping: MinAtar's difficulty ramping.
        max_episode_steps: env steps after which an episode is truncated; default the id's
            registered limit (10,000).
        render_mode: ``None`` or ``rgb_array`` (:meth:`get_images` gives one frame per env).
        render_scale: pixels per MinAtar cell in rendered frames.

    Raises:
        UserError: not a MinAtar id.
        KeyError, ImportError: the game has no batched version (see
            :func:`policyshare.batched_minatar.available_games`).
    """

    def __init__(self, env_id: str, n_envs: int, seed: int | None = None, *,
                 sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 max_episode_steps: int | None = None, render_mode: str | None = None,
                 render_scale: int = 24) -> None:
        game, minimal, registered_limit = minatar_spec(env_id)
        self.env_id = env_id
        self.randoms = [np.random.RandomState() for _ in range(n_envs)]
        self._draw_sticky = [r.random_sample for r in self.randoms]  # = rand(), without its wrapper
        self.game = game_class(game)(n_envs, self.randoms, ramping=difficulty_ramping)
        self.action_set = np.array(self.game.minimal_actions if minimal else range(6), dtype=np.int64)
        self.sticky_action_prob = sticky_action_prob
        self.max_episode_steps = max_episode_steps if max_episode_steps is not None else registered_limit
        self.render_mode = render_mode
        self.render_scale = render_scale
        self.last_action = np.zeros(n_envs, dtype=np.int64)   # MinAtar's last_action starts at 0
        self.episode_steps = np.zeros(n_envs, dtype=np.int64)
        self._seeded = np.zeros(n_envs, dtype=bool)
        self._actions = np.zeros(n_envs, dtype=np.int64)
        boolean: Any = np.bool_  # a bool Box is valid; Gymnasium's annotations omit bool dtypes
        obs_space = spaces.Box(0, 1, shape=(10, 10, self.game.channels), dtype=boolean)
        super().__init__(n_envs, obs_space, spaces.Discrete(len(self.action_set)))
        self.game.reset(np.arange(n_envs))  # a valid state before the first reset (re-done there)
        self.seed(seed)
        if seed is not None:
            self.action_space.seed(seed)  # as make_vec_env seeds env 0's action space

    # ---------------------------------------------------------------------------------------
    # The VecEnv API

    def reset(self) -> VecEnvObs:
        """Start new episodes in every env; seeds given by :meth:`seed` are used once.

        Returns:
            Observations ``(n_envs, 10, 10, C)`` bool.
        """
        for i, s in enumerate(self._seeds):
            if s is not None or not self._seeded[i]:
                # MinAtarEnv.reset: the game's RandomState from Gymnasium's np_random.
                np_random, _ = seeding.np_random(s)
                self.randoms[i].seed(int(np_random.integers(2**31 - 1)))
                self._seeded[i] = True
        self.game.reset(np.arange(self.num_envs))
        self.episode_steps[:] = 0
        self._reset_seeds()
        self._reset_options()
        return self.game.state()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        actions = self.action_set[self._actions]
        # minatar.Environment.act: the sticky draw comes first, from the env's own RandomState.
        sticky = np.array([draw() for draw in self._draw_sticky]) < self.sticky_action_prob
        actions = np.where(sticky, self.last_action, actions)
        self.last_action = actions
        reward, terminated = self.game.act(actions)
        self.episode_steps += 1
        obs = self.game.state()
        truncated = (np.zeros(self.num_envs, dtype=bool) if self.max_episode_steps is None
                     else self.episode_steps >= self.max_episode_steps)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": False} for _ in range(self.num_envs)]
        if dones.any():
            idx = np.flatnonzero(dones)
            for i in idx:
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                infos[i]["terminal_observation"] = obs[i]
            self.game.reset(idx)
            self.episode_steps[idx] = 0
            obs = self.game.state()
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        """Nothing to release (no processes, no files)."""

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One ``(10*scale, 10*scale, 3)`` uint8 frame per env in ``rgb_array`` mode, else ``None``s."""
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        from policyshare.envs import render_frame

        return [render_frame(s, self.render_scale) for s in self.game.state()]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of this env, once per index (the envs share their settings)."""
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of this env (for all envs: they share their settings)."""
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """Call a method of this env once per index."""
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """``False`` for every env: there are no per-env Gymnasium wrappers."""
        return [False for _ in self._get_indices(indices)]


def make_batched_vec_env(env_id: str, n_envs: int, seed: int | None,
                         render_mode: str | None = None) -> VecMonitor:
    """:class:`BatchedMinAtarVecEnv` under SB3's ``VecMonitor`` (``info["episode"]`` with the
    return ``r``, length ``l`` in env steps and time ``t``, for ``rollout/ep_rew_mean``).

    Raises:
        UserError: not a MinAtar id.
    """
    return VecMonitor(BatchedMinAtarVecEnv(env_id, n_envs, seed, render_mode=render_mode))
