"""The source games side by side as one SB3 ``VecEnv``: observations padded and tagged with the task,
actions in the suite's common action space.

:class:`MultiTaskVecEnv` holds one vectorised env per task (``m`` envs each, built by
:func:`policyshare.envs.make_vec_env`: ``DummyVecEnv``, ``SubprocVecEnv`` or the batched MinAtar
``VecEnv``) and presents them as ``k · m`` envs of one ``VecEnv``. Env ``i`` belongs to task
``i // m``; every step advances every task by ``m`` env steps (the tasks stay in lockstep).

* **Observations** are a ``Dict``: ``"obs"`` — the task's observation with its channels
  zero-padded to the widest task's (channels are the *last* axis, as the envs return them:
  MinAtar's ``(10, 10, C)``), shape ``(H, W, C_max)``; ``"task"`` — ``Discrete(k)``, the task's
  index. The policy reads the task's own channels back (``stem`` alignment) or the padded ones
  (``pad``), and the task index selects its action mask (:mod:`policyshare.multitask.policy`).
* **Actions** are indices into the suite's common action space (MinAtar's 6, Atari's 18), mapped
  to each task's own ``Discrete`` action by :func:`common_to_local`; a common action the task
  does not have is refused (the policy's mask never samples one).
* ``info["terminal_observation"]`` (SB3's bootstrap on truncation) is converted to the same
  ``Dict`` form; ``info["episode"]`` (``Monitor``) is passed through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from policyshare.errors import ConfigError

#: Offset between the seeds of consecutive tasks' envs: task ``k``'s env ``i`` gets ``seed + 1000 k + i``.
TASK_SEED_STRIDE = 1000


def pad_channels(obs: np.ndarray, channels: int) -> np.ndarray:
    """Zero-pad the last (channel) axis of ``obs`` ``(..., C)`` to ``(..., channels)``.

    Raises:
        ValueError: ``obs`` has more channels than ``channels``.
    """
    c = obs.shape[-1]
    if c > channels:
        raise ValueError(f"cannot pad {c} channels to {channels}")
    if c == channels:
        return obs
    widths = [(0, 0)] * (obs.ndim - 1) + [(0, channels - c)]
    return np.pad(obs, widths)


def inverse_action_map(local_to_common: Sequence[int], n_common: int) -> np.ndarray:
    """``(n_common,)`` int64 array: the task's action index of each common action, ``-1`` where
    the task does not have it (inverse of :func:`policyshare.envs.task_action_map`)."""
    inverse = np.full(n_common, -1, dtype=np.int64)
    inverse[np.asarray(list(local_to_common), dtype=np.int64)] = np.arange(len(local_to_common))
    return inverse


def common_to_local(actions: np.ndarray, inverse: np.ndarray, env_id: str) -> np.ndarray:
    """Map common-space actions ``(n,)`` to a task's own actions with :func:`inverse_action_map`.

    Raises:
        ValueError: an action the task does not have (the policy's mask should make it impossible).
    """
    local = inverse[np.asarray(actions, dtype=np.int64).reshape(-1)]
    if (local < 0).any():
        bad = sorted({int(a) for a, m in zip(np.asarray(actions).reshape(-1), local) if m < 0})
        raise ValueError(f"{env_id} has no common action {bad}; the policy's action mask must exclude it")
    return local


class MultiTaskVecEnv(VecEnv):
    """Several tasks' vectorised envs as one ``VecEnv`` with ``Dict`` observations (see the module
    docstring).

    Args:
        envs: one vectorised env per task (each with ``Monitor``/``VecMonitor`` statistics), all of
            the same number of envs ``m``, image observations of equal height and width.
        env_ids: the tasks' Gymnasium ids, in the order of ``envs``.
        action_maps: per task, each of its actions' index in the common action space.
        n_common: size of the suite's common action space.

    Attributes:
        task_of_env: ``(k · m,)`` the task index of every env.
        channels: ``C_max``, the padded channel count.

    Raises:
        ConfigError: envs of unequal sizes, non-image observations, or heights/widths that differ.
    """

    def __init__(self, envs: Sequence[VecEnv], env_ids: Sequence[str], action_maps: Sequence[Sequence[int]],
                 n_common: int) -> None:
        if not envs or len(envs) != len(env_ids) or len(envs) != len(action_maps):
            raise ConfigError("a multi-task env needs one vectorised env, env id and action map per task")
        sizes = {e.num_envs for e in envs}
        if len(sizes) != 1:
            raise ConfigError(f"every task needs the same number of envs, got {sorted(sizes)}")
        spaces = [e.observation_space for e in envs]
        if not all(isinstance(s, gym.spaces.Box) and len(s.shape) == 3 for s in spaces):
            raise ConfigError("multi-task training needs image observations (H, W, C) in every task")
        boxes: list[gym.spaces.Box] = [s for s in spaces if isinstance(s, gym.spaces.Box)]
        if len({b.shape[:-1] for b in boxes}) != 1:
            raise ConfigError("the tasks' observations differ in height or width: "
                              + ", ".join(f"{i} {b.shape}" for i, b in zip(env_ids, boxes)))
        for e, env_id in zip(envs, env_ids):
            if not isinstance(e.action_space, gym.spaces.Discrete):
                raise ConfigError(f"{env_id}: multi-task training needs a discrete action space")
        self.envs = list(envs)
        self.env_ids = list(env_ids)
        self.n_per_task = sizes.pop()
        self.channels = max(b.shape[-1] for b in boxes)
        self.task_channels = [int(b.shape[-1]) for b in boxes]
        self.inverse_maps = [inverse_action_map(m, n_common) for m in action_maps]
        self.task_of_env = np.repeat(np.arange(len(envs)), self.n_per_task)
        first = boxes[0]
        low = np.zeros((*first.shape[:-1], self.channels), dtype=first.dtype)
        high = np.full_like(low, first.high.max())
        obs_space = gym.spaces.Dict({"obs": gym.spaces.Box(low, high, dtype=first.dtype),
                                     "task": gym.spaces.Discrete(len(envs))})
        super().__init__(len(envs) * self.n_per_task, obs_space, gym.spaces.Discrete(n_common))
        self._actions: np.ndarray | None = None

    # -- observations ---------------------------------------------------------------------------

    def task_observation(self, obs: np.ndarray, task: int) -> dict[str, Any]:
        """One task's observations ``(n, H, W, C_task)`` (or a single one) in this env's ``Dict`` form."""
        padded = pad_channels(np.asarray(obs), self.channels)
        n = padded.shape[0] if padded.ndim == 4 else None
        ids = np.full(n, task, dtype=np.int64) if n is not None else np.int64(task)
        return {"obs": padded, "task": ids}

    def _combine(self, parts: Sequence[Any]) -> dict[str, np.ndarray]:
        return {"obs": np.concatenate([pad_channels(np.asarray(p), self.channels) for p in parts]),
                "task": self.task_of_env.copy()}

    # -- VecEnv interface -----------------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        parts: list[Any] = []
        self.reset_infos = []
        for e in self.envs:
            parts.append(e.reset())
            self.reset_infos += list(e.reset_infos)
        return self._combine(parts)

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed task ``k``'s envs with ``seed + 1000 k + i`` (applied at the next reset)."""
        if seed is None:
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max - TASK_SEED_STRIDE * len(self.envs),
                                         dtype=np.uint32))
        out: list[int | None] = []
        for k, e in enumerate(self.envs):
            out += list(e.seed(seed + TASK_SEED_STRIDE * k))
        return out

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions).reshape(self.num_envs)
        m = self.n_per_task
        for k, e in enumerate(self.envs):
            e.step_async(common_to_local(actions[k * m:(k + 1) * m], self.inverse_maps[k], self.env_ids[k]))

    def step_wait(self) -> VecEnvStepReturn:
        parts: list[Any] = []
        rewards, dones, infos = [], [], []
        for k, e in enumerate(self.envs):
            obs, rew, done, info = e.step_wait()
            parts.append(obs)
            rewards.append(rew)
            dones.append(done)
            for i in info:
                i = dict(i)
                if i.get("terminal_observation") is not None:
                    i["terminal_observation"] = self.task_observation(i["terminal_observation"], k)
                infos.append(i)
        return (self._combine(parts), np.concatenate(rewards).astype(np.float32),
                np.concatenate(dones), infos)

    def close(self) -> None:
        for e in self.envs:
            e.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [img for e in self.envs for img in e.get_images()]

    def _locate(self, indices: VecEnvIndices) -> list[tuple[int, list[int]]]:
        """Global env indices → ``[(task, [local indices])]``."""
        by_task: dict[int, list[int]] = {}
        for i in self._get_indices(indices):
            by_task.setdefault(int(i) // self.n_per_task, []).append(int(i) % self.n_per_task)
        return sorted(by_task.items())

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [v for k, local in self._locate(indices) for v in self.envs[k].get_attr(attr_name, local)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for k, local in self._locate(indices):
            self.envs[k].set_attr(attr_name, value, local)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return [v for k, local in self._locate(indices)
                for v in self.envs[k].env_method(method_name, *method_args, indices=local, **method_kwargs)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [v for k, local in self._locate(indices) for v in self.envs[k].env_is_wrapped(wrapper_class, local)]
