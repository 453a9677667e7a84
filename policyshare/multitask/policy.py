"""One network for all tasks: a shared trunk, per-task input alignment and action masks, SB3's PPO heads.

* :class:`MultiTaskExtractor` — an SB3 features extractor over the ``Dict`` observations of
  :class:`~policyshare.multitask.vecenv.MultiTaskVecEnv`: each task's observations are aligned
  (:class:`~policyshare.alignment.InputAlignment`: ``pad`` reads the zero-padded channels, ``stem``
  a per-task 1x1 conv of the task's own channels), all of them go through **one**
  :class:`~policyshare.trunks.Trunk` in one pass, and the task's one-hot index is appended to the
  trunk's features, so the policy and value heads know which game they act in (returns differ
  by orders of magnitude between games; a shared value head without it would have to guess).
* :class:`MultiTaskPolicy` — SB3's ``MultiInputActorCriticPolicy`` (one shared extractor, one
  optimizer over every parameter) whose action logits over the suite's *common* action space get
  ``−inf`` where the observation's task lacks the action, before SB3's categorical distribution:
  such an action has probability 0, is never sampled nor chosen greedily, and adds nothing to the
  entropy or the log-likelihood. This is Actor-Mimic's masked common output (Parisotto et al.
  2016, Sec. 3), the same as ``policyshare distill``'s default student, so multi-task RL and
  distillation differ in how they train, not in the network.
* :class:`TaskAgent` — the trained model acting in one task's own env (SB3's ``predict``), for
  :func:`policyshare.evaluate.evaluate`.

Everything the constructors take is plain data, so ``PPO.save``/``PPO.load`` rebuild the network
once policyshare is installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from policyshare.alignment import InputAlignment
from policyshare.errors import CheckpointError, ConfigError, UserError
from policyshare.multitask.vecenv import common_to_local, inverse_action_map, pad_channels
from policyshare.trunks import Trunk, spec_after


def task_indices(obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The task index ``(batch,)`` (int64) of a raw ``Dict`` observation batch (SB3 stores the
    ``Discrete`` entry as ``(batch,)`` or ``(batch, 1)``)."""
    return obs["task"].reshape(-1).long()


class MultiTaskExtractor(BaseFeaturesExtractor):
    """Per-task input alignment → one shared trunk → ``[trunk features, one-hot task]``.

    Input (as SB3 preprocesses the ``Dict`` observation): ``obs`` ``(batch, H, W, C_max)`` floats
    (channels last; ``(batch, C_max, H, W)`` when ``alignment.channels_last`` is false) and ``task``
    ``(batch, k)`` one-hot. Output ``(batch, trunk.features_dim + k)``.

    Args:
        observation_space: ``Dict({"obs": Box, "task": Discrete(k)})``.
        trunk: ``{"name", "activation", "theta"}`` of the trunk spec.
        alignment: ``{"mode", "channels_last", "channels"}`` (see :class:`InputAlignment`).
        task_channels: each task's own channel count ``C_k`` (its first ``C_k`` padded channels).

    Attributes:
        trunk: the one trunk every task goes through.
        alignments: one :class:`InputAlignment` per task (a 1x1 ``stem`` each under ``stem``).

    Raises:
        ConfigError: a malformed observation space, ``none`` alignment for tasks whose channels
            differ, or a trunk that does not fit the input.
    """

    def __init__(self, observation_space: gym.Space, trunk: Mapping[str, Any] | None = None,
                 alignment: Mapping[str, Any] | None = None, task_channels: Sequence[int] = ()) -> None:
        if not isinstance(observation_space, gym.spaces.Dict) or set(observation_space.spaces) != {"obs", "task"}:
            raise ConfigError(f"a multi-task network needs Dict(obs, task) observations, got {observation_space}")
        box, ids = observation_space["obs"], observation_space["task"]
        if not isinstance(box, gym.spaces.Box) or len(box.shape) != 3 or not isinstance(ids, gym.spaces.Discrete):
            raise ConfigError("a multi-task network needs image observations and a Discrete task, got "
                              f"{observation_space}")
        trunk = dict(trunk or {"name": "minatar"})
        alignment = dict(alignment or {})
        n_tasks = int(ids.n)
        last = bool(alignment.get("channels_last", False))
        channels = [int(c) for c in task_channels] or [int(box.shape[-1 if last else 0])] * n_tasks
        if len(channels) != n_tasks:
            raise ConfigError(f"task_channels lists {len(channels)} tasks, the observation space {n_tasks}")
        if alignment.get("mode", "none") == "none" and len(set(channels)) > 1:
            raise ConfigError(f"input alignment 'none' cannot share one trunk between tasks of {sorted(set(channels))} "
                              "channels; use trunk.alignment pad or stem")
        aligns = [InputAlignment((*box.shape[:-1], c) if last else (c, *box.shape[1:]), **alignment)
                  for c in channels]
        first = aligns[0]
        spec = spec_after(first, trunk)
        net = Trunk(spec)
        super().__init__(observation_space, features_dim=net.features_dim + n_tasks)
        self.trunk = net
        self.alignments = nn.ModuleList(aligns)
        self.task_channels = channels
        self.n_tasks = n_tasks
        self.mode = str(first.mode)

    def aligned(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Trunk input ``(batch, C, H, W)`` of padded observations ``x`` whose tasks are ``task`` ``(batch,)``."""
        if self.mode != "stem":  # pad/none: the padded channels as they are (zeros beyond a task's own)
            return self.alignment(0).layout(x)
        parts, where = [], []
        for k in range(self.n_tasks):
            align = self.alignment(k)
            idx = (task == k).nonzero().reshape(-1)
            if len(idx):
                c = self.task_channels[k]
                own = x[idx][..., :c] if align.channels_last else x[idx][:, :c]
                parts.append(align(own))
                where.append(idx)
        order = torch.cat(where).argsort()
        return torch.cat(parts)[order]

    def forward(self, observations: Mapping[str, torch.Tensor]) -> torch.Tensor:
        onehot = observations["task"].reshape(len(observations["obs"]), -1)
        features = self.trunk(self.aligned(observations["obs"], onehot.argmax(-1)))
        return torch.cat([features, onehot], dim=1)

    def alignment(self, task: int) -> InputAlignment:
        """Task ``task``'s input alignment."""
        return cast(InputAlignment, self.alignments[task])

    def widest_alignment(self) -> InputAlignment:
        """The alignment of the task with the most channels (the channels the trunk really reads)."""
        return self.alignment(int(np.argmax(self.task_channels)))


class MultiTaskPolicy(MultiInputActorCriticPolicy):
    """SB3's actor-critic over ``Dict`` observations with per-task action masks on the logits.

    The features extractor is always shared by actor and critic (one trunk). Logits
    ``(batch, n_common)`` are ``action_net(latent)`` with ``−inf`` where
    ``action_masks[task]`` is false (see the module docstring).

    Args:
        *args: SB3's ``(observation_space, action_space, lr_schedule)``.
        action_masks: ``(k, n_common)`` booleans, row ``k`` true at the common actions task ``k`` has.
        **kwargs: SB3's ``ActorCriticPolicy`` keyword arguments.

    Raises:
        ConfigError: masks of the wrong shape, or a task with no action.
    """

    def __init__(self, *args: Any, action_masks: Sequence[Sequence[bool]] = (), **kwargs: Any) -> None:
        kwargs["share_features_extractor"] = True
        super().__init__(*args, **kwargs)
        masks = torch.as_tensor(np.asarray(action_masks, dtype=bool))
        n_actions = int(self.action_space.n)  # type: ignore[attr-defined]
        if masks.ndim != 2 or masks.shape[1] != n_actions or not bool(masks.any(1).all()):
            raise ConfigError(f"action_masks must be (tasks, {n_actions}) booleans with an action in every row, "
                              f"got shape {tuple(masks.shape)}")
        self.action_masks = [[bool(v) for v in row] for row in masks.tolist()]
        self.task_masks: torch.Tensor
        self.register_buffer("task_masks", masks, persistent=False)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["action_masks"] = self.action_masks
        return data

    def masked_distribution(self, latent_pi: torch.Tensor, obs: Mapping[str, torch.Tensor]) -> Distribution:
        """SB3's categorical distribution over the common actions, ``−inf`` logits where the task lacks one."""
        logits = self.action_net(latent_pi)
        mask = self.task_masks[task_indices(obs)]
        return self.action_dist.proba_distribution(action_logits=logits.masked_fill(~mask, -math.inf))

    def forward(self, obs: Any, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.extract_features(obs)
        latent_pi, latent_vf = self.mlp_extractor(features)
        distribution = self.masked_distribution(latent_pi, obs)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions.reshape(-1), self.value_net(latent_vf), distribution.log_prob(actions)

    def evaluate_actions(self, obs: Any,
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        features = self.extract_features(obs)
        latent_pi, latent_vf = self.mlp_extractor(features)
        distribution = self.masked_distribution(latent_pi, obs)
        return self.value_net(latent_vf), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: Any) -> Distribution:
        features = cast(torch.Tensor, self.extract_features(obs))  # one shared extractor: one tensor
        return self.masked_distribution(self.mlp_extractor.forward_actor(features), obs)


class TaskAgent:
    """A multi-task model acting in one task's own env, with SB3's ``predict`` (for ``evaluate_policy``).

    Observations ``(n, H, W, C_task)`` (or one) are padded and tagged with the task; the model's
    common-space actions are mapped back to the task's own (:func:`common_to_local`).

    Args:
        model: the SB3 model (policy :class:`MultiTaskPolicy`).
        task: the task's index.
        env_id: the task's Gymnasium id.
        action_map: the task's actions' indices in the common action space.
    """

    def __init__(self, model: Any, task: int, env_id: str, action_map: Sequence[int]) -> None:
        self.model = model
        self.task = task
        self.env_id = env_id
        space = model.observation_space["obs"]
        self.channels = int(space.shape[-1])
        self.inverse = inverse_action_map(action_map, int(model.action_space.n))

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        obs = np.asarray(observation)
        single = obs.ndim == 3
        batch = pad_channels(obs[None] if single else obs, self.channels)
        tasks = np.full(len(batch), self.task, dtype=np.int64)
        actions, _ = self.model.predict({"obs": batch, "task": tasks}, deterministic=deterministic)
        local = common_to_local(actions, self.inverse, self.env_id)
        return (local[0] if single else local), None


def load_task_agent(path: str | Path, header: Mapping[str, Any], task: str | None,
                    safe: bool = False) -> tuple[TaskAgent, str]:
    """A multi-task ``model.zip`` as a :class:`TaskAgent` of one of its tasks (``policyshare evaluate RUN --task ID``).

    Args:
        path: the SB3 zip written by ``policyshare multitask``.
        header: its ``policyshare.json`` header (lists ``tasks``).
        task: the env id to act in.
        safe: load without unpickling (refused: a multi-task zip is not rebuilt from JSON yet).

    Raises:
        UserError: no ``task`` given, or one the model was not trained on.
        CheckpointError: an unreadable file, or ``safe``.
    """
    from policyshare.envs import task_action_map
    from policyshare.sb3_files import load_sb3

    tasks = [str(t) for t in header.get("tasks", [])]
    if task is None or task not in tasks:
        given = "" if task is None else f", not {task}"
        raise UserError(f"{path} is a multi-task model of {', '.join(tasks)}{given}; pass one of them with --task")
    if safe:
        raise CheckpointError(f"{path} is a multi-task model, which --safe cannot rebuild yet; load it without "
                              "--safe only if you trust its source")
    model, _ = load_sb3(path)
    return TaskAgent(model, tasks.index(task), task, task_action_map(task)), task
