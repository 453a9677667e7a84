"""The student network and its file: :class:`Student`, :func:`build_student`, :class:`StudentAgent`.

One shared :class:`~policyshare.trunks.Trunk` behind a per-task input alignment, with a common
output over the suite's action space (Actor-Mimic) or one head per task (Policy Distillation).
A student is saved as safetensors + a JSON header (format ``policyshare.student``) and loaded
without unpickling; :func:`load_policy` is what ``policyshare evaluate STUDENT --task ID`` uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from policyshare.alignment import InputAlignment, action_mask, to_common, to_local
from policyshare.checkpoints import load_state_checked, load_tensors, save_tensors
from policyshare.distill.config import DistillConfig
from policyshare.distill.vec_envs import observation_scale, policy_vec_env
from policyshare.envs import Suite, task_action_map
from policyshare.errors import CheckpointError, ConfigError, UserError
from policyshare.trunks import Trunk, TrunkSpec, spec_after

STUDENT_FORMAT = "policyshare.student"


@dataclass(frozen=True)
class TaskInfo:
    """What the student needs to know about one of its tasks.

    Attributes:
        env_id: the Gymnasium id.
        obs_shape: single observation shape as the env (and SB3) gives it.
        obs_scale: factor applied to observations before the network (1/255 for ``uint8``
            images, as SB3's ``preprocess_obs``; 1 otherwise).
        action_map: for each of the task's actions, its index in the common action space.
    """

    env_id: str
    obs_shape: tuple[int, ...]
    obs_scale: float
    action_map: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (inverse of :meth:`from_dict`)."""
        return {"env_id": self.env_id, "obs_shape": list(self.obs_shape),
                "obs_scale": self.obs_scale, "action_map": list(self.action_map)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskInfo:
        """Rebuild from :meth:`to_dict` output (raises ``KeyError``/``ValueError`` if malformed)."""
        return cls(env_id=str(d["env_id"]), obs_shape=tuple(int(v) for v in d["obs_shape"]),
                   obs_scale=float(d["obs_scale"]), action_map=tuple(int(v) for v in d["action_map"]))


def task_info(env_id: str) -> TaskInfo:
    """:class:`TaskInfo` of a suite task (builds one env to read its spaces).

    Raises:
        UserError: unknown env id.
    """
    venv = policy_vec_env(env_id, 1, 0)
    try:
        space = venv.observation_space
        return TaskInfo(env_id, tuple(space.shape), observation_scale(space),
                        tuple(task_action_map(env_id)))
    finally:
        venv.close()


class Student(nn.Module):
    """The multi-task student: per-task input alignment → one shared trunk → output(s).

    For task ``k`` an observation batch ``(batch, *tasks[k].obs_shape)`` is scaled, aligned
    (:class:`~policyshare.alignment.InputAlignment`: ``pad`` or a per-task ``stem``) to
    ``(batch, C, H, W)``, passed through the shared :class:`~policyshare.trunks.Trunk` and
    optional ReLU layers (``head_hidden``) to the hidden features ``h`` ``(batch, hidden_dim)``,
    then to scores over the common action space ``(batch, n_common)``:

    * ``head="common"`` (Actor-Mimic): one linear layer for all tasks; actions task ``k``
      does not have are masked to ``−inf``;
    * ``head="per_task"`` (Policy Distillation): one linear layer per task over its own
      actions, scattered into the common space (``−inf`` elsewhere).

    Args:
        spec: the trunk spec (its ``in_channels``, ``height``, ``width`` must be the aligned
            input's).
        tasks: the tasks, in order; the task index used by :meth:`forward` is the position.
        n_common: size of the suite's common action space.
        alignment: :class:`~policyshare.alignment.InputAlignment` keyword arguments
            (``mode``, ``channels_last``, ``channels``).
        head: ``common`` or ``per_task``.
        head_hidden: widths of ReLU layers between the trunk and the output.

    Raises:
        ConfigError: tasks whose aligned inputs differ from the trunk's input, an action map
            outside the common space, or an unknown head.
    """

    def __init__(self, spec: TrunkSpec, tasks: Sequence[TaskInfo], n_common: int,
                 alignment: Mapping[str, Any], head: str = "common",
                 head_hidden: Sequence[int] = ()) -> None:
        super().__init__()
        if head not in ("common", "per_task"):
            raise ConfigError(f"unknown student head {head!r}; choose common or per_task")
        self.tasks = list(tasks)
        self.n_common = int(n_common)
        self.alignment_kwargs = dict(alignment)
        self.head_kind = head
        self.head_hidden = [int(w) for w in head_hidden]
        self.alignments = nn.ModuleList(InputAlignment(t.obs_shape, **self.alignment_kwargs)
                                        for t in self.tasks)
        for t, a in zip(self.tasks, self.alignments):
            if (a.out_channels, a.height, a.width) != (spec.in_channels, spec.height, spec.width):
                raise ConfigError(
                    f"{t.env_id}: aligned input {a.out_channels}x{a.height}x{a.width} does not "
                    f"fit the trunk's {spec.in_channels}x{spec.height}x{spec.width}; use "
                    "alignment pad or stem with the suite's channel count")
        self.trunk = Trunk(spec)
        layers: list[nn.Module] = []
        width = self.trunk.features_dim
        for w in self.head_hidden:
            layers += [nn.Linear(width, w), nn.ReLU()]
            width = w
        self.body = nn.Sequential(*layers)
        self.hidden_dim = width
        self.head: nn.Module = (nn.Linear(width, self.n_common) if head == "common" else
                                nn.ModuleList(nn.Linear(width, len(t.action_map)) for t in self.tasks))
        masks = torch.stack([action_mask(t.action_map, self.n_common) for t in self.tasks])
        self.masks: torch.Tensor
        self.register_buffer("masks", masks, persistent=False)

    def _aligned(self, obs: torch.Tensor, task: int) -> torch.Tensor:
        x = obs.float() * self.tasks[task].obs_scale
        aligned: torch.Tensor = self.alignments[task](x)
        return aligned

    def _scores(self, hidden: torch.Tensor, task: int) -> torch.Tensor:
        if isinstance(self.head, nn.ModuleList):
            local = self.head[task](hidden)
            return to_common(local, self.tasks[task].action_map, self.n_common)
        common: torch.Tensor = self.head(hidden)
        return common.masked_fill(~self.masks[task], float("-inf"))

    def forward(self, obs: torch.Tensor, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and hidden features of one task's observations.

        Args:
            obs: ``(batch, *tasks[task].obs_shape)`` raw observations (bool, uint8 or float).
            task: the task's index.

        Returns:
            ``(scores, hidden)``: ``(batch, n_common)`` with ``−inf`` at actions the task does
            not have, and ``(batch, hidden_dim)``.
        """
        hidden = self.body(self.trunk(self._aligned(obs, task)))
        return self._scores(hidden, task), hidden

    def forward_tasks(self, batches: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`forward` for one batch per task, with one trunk pass over all of them.

        Args:
            batches: ``batches[k]`` is ``(batch_k, *tasks[k].obs_shape)``.

        Returns:
            One ``(scores, hidden)`` per task, as :meth:`forward`.
        """
        aligned = [self._aligned(b, k) for k, b in enumerate(batches)]
        hidden = self.body(self.trunk(torch.cat(aligned)))
        out = []
        for k, part in enumerate(hidden.split([len(b) for b in batches])):
            out.append((self._scores(part, k), part))
        return out

    def local_actions(self, scores: torch.Tensor, task: int) -> torch.Tensor:
        """Greedy actions ``(batch,)`` as indices of the task's own action space."""
        return to_local(scores, self.tasks[task].action_map).argmax(-1)

    def n_parameters(self) -> int:
        """Scalar parameters of the student (alignments, trunk, hidden layers, heads)."""
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict[str, Any]:
        """The JSON header that rebuilds this network (:meth:`from_header`)."""
        return {"spec": self.trunk.spec.to_dict(), "tasks": [t.to_dict() for t in self.tasks],
                "n_common": self.n_common, "alignment": self.alignment_kwargs,
                "head": self.head_kind, "head_hidden": self.head_hidden}

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> Student:
        """Rebuild an (untrained) student from :meth:`describe` output.

        Raises:
            CheckpointError: a header that lacks a field or describes an invalid network.
        """
        try:
            return cls(TrunkSpec.from_dict(header["spec"]),
                       [TaskInfo.from_dict(t) for t in header["tasks"]], int(header["n_common"]),
                       header["alignment"], str(header["head"]), header.get("head_hidden", []))
        except (KeyError, TypeError, ValueError, UserError) as e:
            raise CheckpointError(f"unusable student header ({e}); pass a student file written "
                                  "by policyshare distill") from None


def build_student(tasks: Sequence[TaskInfo], suite: Suite, cfg: DistillConfig) -> Student:
    """The student for ``tasks`` of ``suite`` under a config (trunk spec, alignment, head).

    Raises:
        ConfigError: an invalid trunk, alignment or head.
    """
    alignment = suite.alignment_kwargs(cfg.trunk.alignment)
    probe = InputAlignment(tasks[0].obs_shape, **alignment)
    spec = spec_after(probe, cfg.trunk.trunk_kwargs(suite.trunk))
    return Student(spec, tasks, len(suite.actions), alignment, cfg.head, cfg.head_hidden)


class StudentAgent:
    """A student acting in one of its tasks, with SB3's ``predict`` (for ``evaluate_policy``).

    Args:
        student: the network.
        task: index of the task to act in.
    """

    def __init__(self, student: Student, task: int) -> None:
        self.student = student.eval()
        self.task = task
        self.env_id = student.tasks[task].env_id

    @torch.no_grad()
    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """Actions for a batch ``(n, *obs_shape)`` (or one observation) of the task.

        Greedy over the task's actions when ``deterministic``, else sampled from the student's
        masked softmax. Returns ``(actions (n,) int64 — the task's own action indices, None)``.
        """
        obs = np.asarray(observation)
        single = obs.shape == self.student.tasks[self.task].obs_shape
        if single:
            obs = obs[None]
        device = next(self.student.parameters()).device
        scores, _ = self.student(torch.as_tensor(obs, device=device), self.task)
        local = to_local(scores, self.student.tasks[self.task].action_map)
        if deterministic:
            actions = local.argmax(-1)
        else:
            actions = torch.distributions.Categorical(logits=local).sample()
        out = actions.cpu().numpy().astype(np.int64)
        return (out[0] if single else out), None


def save_student(student: Student, path: str | Path, source: Mapping[str, Any]) -> Path:
    """Save a student as safetensors + JSON header (format ``policyshare.student``), atomically.

    The header holds the trunk spec, input alignment, every task's observation shape and action
    map, the head, and ``source`` (run, teachers, env steps). Loading never unpickles.

    Raises:
        CheckpointError: if the write fails.
    """
    header = {"format": STUDENT_FORMAT, "format_version": 1, **student.describe(),
              "source": dict(source)}
    return save_tensors(path, student.state_dict(), header)


def load_student(path: str | Path) -> Student:
    """Rebuild a student from a file written by :func:`save_student` (eval mode).

    Raises:
        CheckpointError: missing, corrupt, of another format, or not fitting its header.
    """
    tensors, header = load_tensors(path, STUDENT_FORMAT)
    student = Student.from_header(header)
    load_state_checked(student, tensors, f"student file {path}")
    return student.eval()


def load_policy(path: str | Path, header: Mapping[str, Any], task: str | None) -> tuple[StudentAgent, str]:
    """The loader behind ``policyshare evaluate STUDENT --task ID`` (see
    :data:`policyshare.evaluate.POLICY_LOADERS`).

    Args:
        path: the ``student.safetensors`` file.
        header: its header (already read).
        task: the env id to act in; optional when the student has one task.

    Returns:
        ``(agent, env_id)``.

    Raises:
        UserError: ``task`` missing for a multi-task student, or not one of its tasks.
        CheckpointError: an unreadable or mismatched file.
    """
    tasks = [str(t["env_id"]) for t in header.get("tasks", [])]
    if task is None:
        if len(tasks) != 1:
            raise UserError(f"{path} is a student of {len(tasks)} tasks ({', '.join(tasks)}); "
                            "pass --task ID")
        task = tasks[0]
    if task not in tasks:
        raise UserError(f"{path} was distilled on {', '.join(tasks)}, not {task}; pass one of "
                        "those with --task")
    student = load_student(path)
    return StudentAgent(student, tasks.index(task)), task

