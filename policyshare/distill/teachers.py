"""Teachers: fixed single-task experts loaded from stable-baselines3 checkpoints.

PPO/A2C teachers give action logits, DQN teachers Q-values (:meth:`Teacher.outputs`). Each is
validated against its task's spaces on load (:func:`check_teacher_spaces`); its (minimal) action
set is mapped into the suite's common action space (:func:`policyshare.envs.task_action_map`).
On the command line a teacher is ``PATH`` or ``TASK=PATH`` (:func:`parse_teacher`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from policyshare.algos import algo_class
from policyshare.distill.vec_envs import policy_vec_env
from policyshare.envs import Suite, check_env_id, task_action_map
from policyshare.errors import CheckpointError, UserError
from policyshare.io import read_json
from policyshare.sb3_files import load_sb3, read_sb3_header


@dataclass
class Teacher:
    """A fixed expert for one task, loaded from an SB3 checkpoint.

    Attributes:
        task: the Gymnasium id it acts in.
        path: the checkpoint file.
        algo: ``ppo``, ``a2c`` or ``dqn``.
        model: the SB3 model (its policy is in eval mode and never trained here).
        suite: the task's suite.
        action_map: for each of the teacher's actions, its index in the common action space.
        hidden_dim: width of the teacher's last hidden layer ``h_E`` (the input of its output
            layer).
    """

    task: str
    path: Path
    algo: str
    model: Any
    suite: Suite
    action_map: list[int]
    hidden_dim: int

    @torch.no_grad()
    def outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's scores and last hidden layer on raw observations.

        Args:
            obs: ``(batch, *observation_shape)`` as the env returns them (SB3 preprocesses).

        Returns:
            ``(scores, hidden)``: ``(batch, n_task_actions)`` logits (PPO/A2C) or Q-values (DQN)
            over the task's own actions, and ``(batch, hidden_dim)``.
        """
        return _teacher_forward(self.model, self.algo, obs)

    def n_parameters(self) -> int:
        """Scalar parameters of the teacher's policy (actor and critic; DQN: the Q-network)."""
        net = self.model.q_net if self.algo == "dqn" else self.model.policy
        return sum(p.numel() for p in net.parameters())


def _teacher_forward(model: Any, algo: str, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if algo == "dqn":
        q_net = model.q_net
        features = q_net.extract_features(obs, q_net.features_extractor)
        hidden = q_net.q_net[:-1](features)
        return q_net.q_net[-1](hidden), hidden
    policy = model.policy
    features = policy.extract_features(obs)
    if isinstance(features, tuple):  # actor and critic with separate extractors
        features = features[0]
    hidden = policy.mlp_extractor.forward_actor(features)
    return policy.action_net(hidden), hidden


def parse_teacher(text: str) -> tuple[str | None, Path]:
    """``PATH`` or ``TASK=PATH`` → ``(task or None, path)``; a run folder means its ``model.zip``."""
    task: str | None = None
    if "=" in text and not Path(text).exists():
        task, text = text.split("=", 1)
    p = Path(text)
    if p.is_dir():
        p = p / "model.zip"
    return task, p


def _teacher_task(path: Path, task: str | None) -> tuple[str, dict[str, Any]]:
    """The task a teacher checkpoint acts in (its header, its run folder, or ``TASK=``)."""
    header = read_sb3_header(path)
    recorded = header.get("env_id")
    if recorded is None and (path.parent / "metrics.json").is_file():
        recorded = read_json(path.parent / "metrics.json", "run metrics").get("env_id")
    if task is not None and recorded is not None and task != recorded:
        raise UserError(f"teacher {path} was trained on {recorded}, not {task}; drop the "
                        f"'{task}=' prefix or pass a teacher of {task}")
    found = task or recorded
    if found is None:
        raise UserError(f"cannot tell which task teacher {path} acts in (a plain SB3 file); "
                        "write it as TASK=PATH, e.g. MinAtar/Breakout-v1=model.zip")
    return str(found), header


def check_teacher_spaces(task: str, path: Path, observation_space: spaces.Space,
                         action_space: spaces.Space, env_observation: spaces.Space,
                         env_action: spaces.Space) -> None:
    """Refuse a teacher whose spaces differ from its task's.

    Raises:
        CheckpointError: a non-discrete action space, another number of actions, or another
            observation shape or dtype; one line naming every mismatch, both sides of each.
    """
    if not isinstance(action_space, spaces.Discrete):
        raise CheckpointError(f"teacher {path} has action space {action_space}; distillation "
                              "needs discrete actions (PPO/A2C logits or DQN Q-values)")
    problems = []
    same_obs = (isinstance(observation_space, spaces.Box) and isinstance(env_observation, spaces.Box)
                and observation_space.shape == env_observation.shape
                and observation_space.dtype == env_observation.dtype)
    if not same_obs:
        problems.append(f"observation space {observation_space} but {task} has {env_observation}")
    if not isinstance(env_action, spaces.Discrete) or int(action_space.n) != int(env_action.n):
        problems.append(f"action space {action_space} but {task} has {env_action}")
    if problems:
        raise CheckpointError(f"teacher {path} does not fit its task: {'; '.join(problems)}; pass a "
                              f"teacher trained on {task}")


def load_teachers(items: Sequence[str], device: str = "cpu", safe: bool = False) -> list[Teacher]:
    """Load and validate teachers, one per task, all of one suite.

    Args:
        items: ``PATH`` or ``TASK=PATH`` per teacher (a run folder means its ``model.zip``).
            The task is read from the checkpoint's policyshare header or its run folder's
            ``metrics.json``; plain SB3 files need ``TASK=``.
        device: torch device.
        safe: never unpickle: rebuild each teacher from its zip's ``policyshare.json`` and
            load only tensors (:func:`~policyshare.sb3_files.load_sb3_safe`; plain SB3 files
            are then refused).

    Returns:
        The teachers, in the order given.

    Raises:
        UserError: no teachers, two teachers of one task, tasks of different suites, an
            unknown env id or an unknown task.
        CheckpointError: a missing or corrupt checkpoint, or one whose spaces do not fit its
            task (naming both spaces).
    """
    if not items:
        raise UserError("no teachers given: pass --teachers CKPT [CKPT ...]")
    found: list[tuple[str, Path]] = []
    for item in items:
        task, path = parse_teacher(item)
        task, _ = _teacher_task(path, task)
        for other_task, other_path in found:
            if other_task == task:
                raise UserError(f"two teachers for {task} ({other_path} and {path}); pass one "
                                "teacher per task")
        found.append((task, path))
    suites = {check_env_id(task).name for task, _ in found}
    if len(suites) > 1:
        raise UserError(f"teachers come from different suites ({', '.join(sorted(suites))}); a "
                        "student shares one input and action alignment: use tasks of one suite")
    teachers = []
    for task, path in found:
        suite = check_env_id(task)
        model, header = load_sb3(path, device=device, safe=safe)
        venv = policy_vec_env(task, 1, 0)
        try:
            check_teacher_spaces(task, path, model.observation_space, model.action_space,
                                 venv.observation_space, venv.action_space)
        finally:
            venv.close()
        algo = str(header.get("algo", "ppo"))
        if not isinstance(model, algo_class(algo)):
            algo = type(model).__name__.lower()
        model.policy.set_training_mode(False)
        with torch.no_grad():
            sample = torch.as_tensor(np.stack([model.observation_space.sample()]), device=device)
            _, hidden = _teacher_forward(model, algo, sample)
        teachers.append(Teacher(task=task, path=path, algo=algo, model=model, suite=suite,
                                action_map=task_action_map(task), hidden_dim=int(hidden.shape[-1])))
    return teachers

