"""Distilling several single-task experts into one shared-trunk student: ``policyshare distill``.

Two published recipes, chosen by config (``configs/actor_mimic.yaml``):

* **Actor-Mimic** (Parisotto, Ba & Salakhutdinov 2016, arXiv 1511.06342): one output over the
  suite's *common* action space with a per-task mask; policy regression is the cross-entropy
  between the teacher's Boltzmann policy ``softmax(Q_E / τ)`` and the student's masked softmax
  (Eq. 2), plus ``β ·`` feature regression ``‖f_i(h_AMN(s)) − h_E_i(s)‖²`` through a learned
  linear map ``f_i`` per teacher (Eq. 4; β = 0.01 in the original scripts).
* **Policy Distillation** (Rusu et al. 2015, arXiv 1511.06295): small per-task output heads
  ("controllers") on the shared layers; the loss is the KL divergence from the teacher's
  ``softmax(q_T / τ)`` to the student's ``softmax(q_S)`` (Eq. 3).

Teachers are stable-baselines3 checkpoints: PPO/A2C give action logits, DQN gives Q-values.
Each is validated against its task's spaces on load; its (minimal) action set is mapped into
the suite's common action space (:func:`policyshare.envs.task_action_map`).

Data (Actor-Mimic, Sec. 3): the *student* acts ε-greedily (fixed ε) in every task through
vectorised envs; each task has its own replay memory of observations; every gradient update
mixes one minibatch from each task. Teachers are fixed, so their outputs are computed on the
sampled observations at update time.

One loop, read top to bottom in :func:`train_student`. :func:`distill` wraps it in stages
(train → export student and trunk → evaluate each task → ``metrics.json``); a resumed run skips
the stages it finished and continues training from its latest checkpoint.

Units: ``steps``, ``learning_starts``, ``eval.freq``, ``log_freq`` and ``checkpoint_freq`` are
**env steps per task** (summed over that task's ``n_envs`` envs; every task advances in
lockstep); ``gradient_steps`` are gradient updates; evaluation is in complete episodes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from gymnasium import spaces
from torch import nn

from policyshare.algos import TrunkConfig
from policyshare.alignment import InputAlignment, action_mask, to_common, to_local
from policyshare.checkpoints import (
    algo_class,
    atomic_write_json,
    load_sb3,
    load_state_checked,
    load_tensors,
    read_json,
    read_sb3_header,
    save_tensors,
    save_trunk,
)
from policyshare.config import (
    check_non_negative,
    check_positive,
    check_unit_interval,
    deep_merge,
    from_dict,
    read_yaml,
    to_dict,
)
from policyshare.envs import Suite, check_env_id, check_vec_env, make_vec_env, task_action_map
from policyshare.errors import CheckpointError, ConfigError, NumericalError, UserError
from policyshare.evaluate import EVAL_SEED_OFFSET, EvalResult, evaluate, random_return
from policyshare.metrics import expert_normalised, iqm_intervals
from policyshare.paths import default_config
from policyshare.runs import RunFolder, default_run_dir, slug
from policyshare.trunks import Trunk, TrunkSpec

STUDENT_FORMAT = "policyshare.student"
CHECKPOINT_FORMAT = "policyshare.distill_checkpoint"
LossKind = Literal["cross_entropy", "kl"]
HeadKind = Literal["common", "per_task"]


# --------------------------------------------------------------------------------------------
# Config


@dataclass
class DistillEvalConfig:
    """Evaluation settings of a distillation run.

    Attributes:
        freq: env steps per task between greedy evaluations of the student during training
            (``distill/<task>/eval_return``); 0 turns them off.
        episodes: episodes per task of each periodic evaluation.
        final_episodes: episodes per task of the final student and teacher evaluations.
        random_episodes: episodes per task of the random-policy baseline.
    """

    freq: int = 100_000
    episodes: int = 5
    final_episodes: int = 30
    random_episodes: int = 30

    def __post_init__(self) -> None:
        check_non_negative("", freq=self.freq)
        check_positive("", episodes=self.episodes, final_episodes=self.final_episodes,
                       random_episodes=self.random_episodes)


@dataclass
class DistillConfig:
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

    steps: int = 500_000
    n_envs: int = 4
    vec_env: Literal["dummy", "subproc", "batched"] = "dummy"
    epsilon: float = 0.1
    loss: LossKind = "cross_entropy"
    head: HeadKind = "common"
    tau: float = 1.0
    beta: float = 0.01
    head_hidden: list[int] = field(default_factory=list)
    buffer_size: int = 100_000
    batch_size: int = 32
    learning_starts: int = 5_000
    train_freq: int = 1
    gradient_steps: int = 1
    learning_rate: float = 1e-4
    max_grad_norm: float = 10.0
    torch_threads: int = 1
    device: str = "cpu"
    log_freq: int = 5_000
    checkpoint_freq: int = 100_000
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    eval: DistillEvalConfig = field(default_factory=DistillEvalConfig)

    def __post_init__(self) -> None:
        check_positive("", steps=self.steps, n_envs=self.n_envs, tau=self.tau,
                       buffer_size=self.buffer_size, batch_size=self.batch_size,
                       train_freq=self.train_freq, gradient_steps=self.gradient_steps,
                       learning_rate=self.learning_rate, max_grad_norm=self.max_grad_norm,
                       torch_threads=self.torch_threads, log_freq=self.log_freq)
        check_unit_interval("", epsilon=self.epsilon)
        check_non_negative("", beta=self.beta, learning_starts=self.learning_starts,
                           checkpoint_freq=self.checkpoint_freq)
        for w in self.head_hidden:
            check_positive("", head_hidden=w)
        rounds = -(-self.steps // self.n_envs)  # the run collects whole rounds of n_envs env steps
        if rounds * self.n_envs < self.first_update_step:
            raise ConfigError(
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
    raw = read_yaml(p)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{p}: expected a mapping of settings (steps, tau, beta …)")
    if overrides:
        raw = deep_merge(raw, overrides)
    return from_dict(DistillConfig, raw, str(p))


def method_name(cfg: DistillConfig) -> str:
    """``actor_mimic`` (common head + cross-entropy), ``policy_distillation`` (per-task heads
    + KL), or ``<head>_<loss>`` for the mixed choices; used in run names."""
    if cfg.head == "common" and cfg.loss == "cross_entropy":
        return "actor_mimic"
    if cfg.head == "per_task" and cfg.loss == "kl":
        return "policy_distillation"
    return f"{cfg.head}_{cfg.loss}"


# --------------------------------------------------------------------------------------------
# Losses


def policy_regression_loss(student_logits: torch.Tensor, teacher_scores: torch.Tensor,
                           mask: torch.Tensor, tau: float,
                           kind: LossKind = "cross_entropy") -> torch.Tensor:
    """Policy regression of a student onto a teacher, over the actions a task has.

    With ``p = softmax(teacher_scores / τ)`` and ``q = softmax(student_logits)``, both taken
    over the task's actions only (``mask``; other actions get probability 0, whatever their
    scores):

    * ``cross_entropy`` — ``−Σ_a p(a) log q(a)`` (Actor-Mimic, Parisotto et al. 2016, Eq. 2);
    * ``kl`` — ``Σ_a p(a) (log p(a) − log q(a))`` (Policy Distillation, Rusu et al. 2015,
      Eq. 3; the student's softmax is at temperature 1).

    The two differ by the teacher's entropy, a constant, so their gradients are equal.

    Reduction: summed over actions, **mean over the batch** (per-sample mean), so the scale does
    not depend on the batch size.

    Args:
        student_logits: ``(batch, n_actions)`` student scores (common action space).
        teacher_scores: ``(batch, n_actions)`` teacher logits (PPO/A2C) or Q-values (DQN).
        mask: ``(batch, n_actions)`` or ``(n_actions,)`` bool, ``True`` where the task has
            the action; every row needs at least one.
        tau: temperature τ > 0 of the teacher's softmax (small τ → the greedy action).
        kind: ``cross_entropy`` or ``kl``.

    Returns:
        A scalar tensor (nats).

    Raises:
        ConfigError: ``tau <= 0`` or an unknown ``kind``.
    """
    if not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}")
    if kind not in ("cross_entropy", "kl"):
        raise ConfigError(f"unknown policy loss {kind!r}; choose cross_entropy or kl")
    mask = mask.to(torch.bool).expand_as(student_logits)
    neg_inf = float("-inf")
    log_q = torch.log_softmax(student_logits.masked_fill(~mask, neg_inf), dim=-1)
    log_p = torch.log_softmax((teacher_scores / tau).masked_fill(~mask, neg_inf), dim=-1)
    # Zero the masked entries before multiplying: 0 · (−inf) would be NaN.
    log_q = log_q.masked_fill(~mask, 0.0)
    log_p = log_p.masked_fill(~mask, 0.0)
    p = log_p.exp() * mask
    per_sample = -(p * log_q).sum(-1) if kind == "cross_entropy" else (p * (log_p - log_q)).sum(-1)
    return per_sample.mean()


def feature_regression_loss(predicted: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Feature regression ``‖f_i(h_student) − h_teacher‖²₂`` (Actor-Mimic, Eq. 4).

    Reduction: squared L2 norm **summed over feature units**, **mean over the batch**.

    Args:
        predicted: ``(batch, d_teacher)`` = ``f_i(h_student)``, the student's hidden features
            through the per-teacher linear map.
        teacher_features: ``(batch, d_teacher)`` the teacher's last hidden layer.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: if the shapes differ.
    """
    if predicted.shape != teacher_features.shape:
        raise ValueError(f"feature regression needs equal shapes, got {tuple(predicted.shape)} "
                         f"and {tuple(teacher_features.shape)}")
    return (predicted - teacher_features).pow(2).sum(-1).mean()


def agreement(student_logits: torch.Tensor, teacher_scores: torch.Tensor,
              mask: torch.Tensor) -> float:
    """Fraction of rows where the student's and the teacher's greedy actions (over the task's
    actions) coincide. Shapes as in :func:`policy_regression_loss`."""
    mask = mask.to(torch.bool).expand_as(student_logits)
    s = student_logits.masked_fill(~mask, float("-inf")).argmax(-1)
    t = teacher_scores.masked_fill(~mask, float("-inf")).argmax(-1)
    return float((s == t).float().mean())


# --------------------------------------------------------------------------------------------
# Environments as SB3 models see them


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


# --------------------------------------------------------------------------------------------
# Teachers


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
            load only tensors (:func:`~policyshare.checkpoints.load_sb3_safe`; plain SB3 files
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


# --------------------------------------------------------------------------------------------
# Student


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
    spec = TrunkSpec(name=cfg.trunk.spec or suite.trunk, in_channels=probe.out_channels,
                     height=probe.height, width=probe.width, activation=cfg.trunk.activation,
                     theta=cfg.trunk.theta)
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


# --------------------------------------------------------------------------------------------
# Replay memories


class TaskMemory:
    """A circular replay memory of one task's observations (distillation needs only states).

    Args:
        capacity: transitions kept (older ones are overwritten).
        obs_shape: single observation shape.
        dtype: observation dtype (kept as the env gives it: bool for MinAtar, uint8 Atari).
    """

    def __init__(self, capacity: int, obs_shape: Sequence[int], dtype: Any) -> None:
        self.obs = np.zeros((capacity, *obs_shape), dtype=dtype)
        self.capacity = capacity
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray) -> None:
        """Append a batch ``(n, *obs_shape)``."""
        n = len(obs)
        keep = obs[-self.capacity:]  # a batch larger than the memory keeps its newest rows
        start = self.pos + n - len(keep)
        self.obs[(start + np.arange(len(keep))) % self.capacity] = keep
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` observations drawn uniformly with replacement, ``(n, *obs_shape)``.

        Raises:
            ValueError: if the memory is empty.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay memory")
        return self.obs[rng.integers(self.size, size=n)]


# --------------------------------------------------------------------------------------------
# Training checkpoints (student + feature maps + optimizer state, safetensors)


def _checkpoint_tensors(student: Student, maps: nn.ModuleList,
                        optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {f"student.{k}": v for k, v in student.state_dict().items()}
    tensors.update({f"maps.{k}": v for k, v in maps.state_dict().items()})
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value)
    return tensors


def save_training_checkpoint(path: Path, student: Student, maps: nn.ModuleList,
                             optimizer: torch.optim.Optimizer, env_steps: int, updates: int) -> Path:
    """Save the training state (student, feature maps, Adam moments) at ``env_steps`` per task.

    Raises:
        CheckpointError: if the write fails.
    """
    header = {"format": CHECKPOINT_FORMAT, "env_steps": env_steps, "updates": updates,
              "student": student.describe()}
    return save_tensors(path, _checkpoint_tensors(student, maps, optimizer), header)


def load_training_checkpoint(path: Path, student: Student, maps: nn.ModuleList,
                             optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """Restore a :func:`save_training_checkpoint` file in place.

    Returns:
        ``(env_steps per task, gradient updates)`` at which it was saved.

    Raises:
        CheckpointError: corrupt, or saved by a differently shaped student.
    """
    tensors, header = load_tensors(path, CHECKPOINT_FORMAT)
    part = {k[len("student."):]: v for k, v in tensors.items() if k.startswith("student.")}
    load_state_checked(student, part, f"checkpoint {path}")
    part = {k[len("maps."):]: v for k, v in tensors.items() if k.startswith("maps.")}
    load_state_checked(maps, part, f"checkpoint {path}")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state,
                               "param_groups": optimizer.state_dict()["param_groups"]})
    return int(header["env_steps"]), int(header["updates"])


def _checkpoint_step(path: Path) -> int:
    try:
        return int(path.stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return -1


# --------------------------------------------------------------------------------------------
# The training loop


@dataclass
class _Running:
    """Sums since the last TensorBoard dump, per task."""

    policy: list[float]
    feature: list[float]
    agree: list[float]
    count: int = 0


def _task_tag(env_id: str) -> str:
    return slug(env_id)


def train_student(student: Student, teachers: Sequence[Teacher], cfg: DistillConfig, seed: int,
                  run: RunFolder, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Distill ``teachers`` into ``student`` (in place): act, remember, regress.

    Each collection round steps every env of every task once with the student's ε-greedy
    action; each task's observations go to its own :class:`TaskMemory`. After
    ``learning_starts`` env steps per task, every ``train_freq`` rounds, ``gradient_steps``
    Adam updates each draw ``batch_size`` observations from *every* task and minimise the mean
    over tasks of ``policy_regression + β · feature_regression`` (each a per-sample mean over
    its batch), i.e. the per-sample mean over the mixed batch.

    TensorBoard (``run/tb``, step = env steps per task): ``distill/<task>/policy_loss``,
    ``…/feature_loss``, ``…/loss``, ``…/agreement`` (student's vs teacher's greedy action on
    the sampled states), ``…/episode_return`` (ε-greedy training episodes), ``…/eval_return``
    (greedy evaluation), and ``distill/loss``. The greedy-evaluation curves are also written to
    ``evaluations.json`` (task → env steps, mean, std).

    Resuming restores the latest ``checkpoints/distill_<steps>.safetensors`` (student, feature
    maps, optimizer) and refills each replay memory with ``learning_starts`` env steps (not
    counted; memories are not checkpointed).

    Args:
        student: the network, its tasks in the teachers' order.
        teachers: one per task.
        cfg: the config.
        seed: seed of envs, sampling and ε-greedy draws.
        run: the run folder.
        resume: continue from the latest training checkpoint, if any.
        quiet: no progress prints.

    Returns:
        ``{"env_steps": per task, "updates": gradient updates, "feature_map_parameters": int,
        "train_wall_s": seconds of this call, "env_steps_trained": env steps per task of this
        call}`` (the last two are timings: :func:`distill` keeps them in ``timing.json``).

    Raises:
        NumericalError: a loss or parameter became NaN or infinite.
        UserError: interrupted (SIGINT); a checkpoint is saved first.
    """
    from policyshare.logs import open_logger

    device = torch.device(cfg.device)
    student.to(device).train()
    n_tasks = len(teachers)
    maps = nn.ModuleList(nn.Linear(student.hidden_dim, t.hidden_dim) for t in teachers).to(device)
    optimizer = torch.optim.Adam([*student.parameters(), *maps.parameters()], lr=cfg.learning_rate)
    env_steps, updates = 0, 0
    ckpts = sorted(run.checkpoints_dir.glob("distill_*.safetensors"), key=_checkpoint_step)
    if resume and ckpts:
        env_steps, updates = load_training_checkpoint(ckpts[-1], student, maps, optimizer)
        if not quiet:
            print(f"resuming from {ckpts[-1]} at {env_steps} env steps per task")
    rng = np.random.default_rng(seed + env_steps)
    torch.manual_seed(seed + env_steps)
    # Events and progress.csv of a resumed run are cut at its checkpoint and continued (logs.py).
    logger = open_logger(run.tb_dir, env_steps if resume else None)
    curves_path = run.path / "evaluations.json"
    curves: dict[str, dict[str, list[float]]] = {t.task: {"timesteps": [], "mean": [], "std": []}
                                                 for t in teachers}
    if resume and curves_path.is_file():
        # Keep the evaluations up to the checkpoint the run continues from.
        for task, curve in read_json(curves_path, "evaluation curves").items():
            keep = sum(1 for t in curve["timesteps"] if t <= env_steps)
            curves[task] = {key: list(values[:keep]) for key, values in curve.items()}
    tags = [_task_tag(t.task) for t in teachers]
    venvs = [policy_vec_env(t.task, cfg.n_envs, seed + 1000 * k, cfg.vec_env)
             for k, t in enumerate(teachers)]
    memories = [TaskMemory(cfg.buffer_size, v.observation_space.shape, v.observation_space.dtype)
                for v in venvs]
    obs = [v.reset() for v in venvs]
    running = _Running([0.0] * n_tasks, [0.0] * n_tasks, [0.0] * n_tasks)
    refill = cfg.learning_starts if env_steps > 0 else 0
    next_log = (env_steps // cfg.log_freq + 1) * cfg.log_freq
    next_eval = (env_steps // cfg.eval.freq + 1) * cfg.eval.freq if cfg.eval.freq else math.inf
    next_ckpt = ((env_steps // cfg.checkpoint_freq + 1) * cfg.checkpoint_freq
                 if cfg.checkpoint_freq else math.inf)
    started = time.perf_counter()
    start_steps = env_steps
    rounds = 0

    def checkpoint() -> Path:
        path = save_training_checkpoint(run.checkpoints_dir / f"distill_{env_steps}.safetensors",
                                        student, maps, optimizer, env_steps, updates)
        for old in sorted(run.checkpoints_dir.glob("distill_*.safetensors"),
                          key=_checkpoint_step)[:-2]:
            old.unlink(missing_ok=True)
        return path

    try:
        while env_steps < cfg.steps:
            # 1. Act: the student, ε-greedy over each task's own actions, in every task.
            student.eval()
            with torch.no_grad():
                outs = student.forward_tasks([torch.as_tensor(o, device=device) for o in obs])
            for k, (venv, (scores, _)) in enumerate(zip(venvs, outs)):
                actions = student.local_actions(scores, k).cpu().numpy()
                explore = rng.random(len(actions)) < cfg.epsilon
                actions[explore] = rng.integers(venv.action_space.n, size=int(explore.sum()))
                memories[k].add(obs[k])
                obs[k], _, _, infos = venv.step(actions)
                for info in infos:
                    if "episode" in info:
                        logger.record_mean(f"distill/{tags[k]}/episode_return", float(info["episode"]["r"]))
            rounds += 1
            if refill > 0:
                refill -= cfg.n_envs
                continue
            env_steps += cfg.n_envs

            # 2. Learn: mixed minibatches of every task against the fixed teachers.
            if env_steps >= cfg.learning_starts and rounds % cfg.train_freq == 0:
                student.train()
                for _ in range(cfg.gradient_steps):
                    batches = [torch.as_tensor(m.sample(cfg.batch_size, rng), device=device)
                               for m in memories]
                    outs = student.forward_tasks(batches)
                    total = torch.zeros((), device=device)
                    for k, (teacher, batch, (scores, hidden)) in enumerate(zip(teachers, batches, outs)):
                        t_local, t_hidden = teacher.outputs(batch)
                        t_scores = to_common(t_local, teacher.action_map, student.n_common, fill=0.0)
                        mask = student.masks[k]
                        p_loss = policy_regression_loss(scores, t_scores, mask, cfg.tau, cfg.loss)
                        f_loss = (feature_regression_loss(maps[k](hidden), t_hidden) if cfg.beta > 0
                                  else torch.zeros((), device=device))
                        total = total + (p_loss + cfg.beta * f_loss) / n_tasks
                        running.policy[k] += float(p_loss.detach())
                        running.feature[k] += float(f_loss.detach())
                        running.agree[k] += agreement(scores.detach(), t_scores, mask)
                    if not torch.isfinite(total):
                        raise NumericalError(
                            f"distillation stopped at env step {env_steps} per task: the loss is "
                            f"{float(total)}; the last checkpoint is kept — lower learning_rate "
                            "and rerun with --resume")
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    nn.utils.clip_grad_norm_([*student.parameters(), *maps.parameters()],
                                             cfg.max_grad_norm)
                    optimizer.step()
                    updates += 1
                    running.count += 1

            # 3. Log, evaluate, checkpoint (every frequency in env steps per task).
            if env_steps >= next_log:
                next_log += cfg.log_freq
                if running.count:
                    for k, tag in enumerate(tags):
                        p, f = running.policy[k] / running.count, running.feature[k] / running.count
                        logger.record(f"distill/{tag}/policy_loss", p)
                        logger.record(f"distill/{tag}/feature_loss", f)
                        logger.record(f"distill/{tag}/loss", p + cfg.beta * f)
                        logger.record(f"distill/{tag}/agreement", running.agree[k] / running.count)
                    total_mean = sum(running.policy[k] + cfg.beta * running.feature[k]
                                     for k in range(n_tasks)) / (n_tasks * running.count)
                    logger.record("distill/loss", total_mean)
                    logger.record("distill/updates", updates)
                running = _Running([0.0] * n_tasks, [0.0] * n_tasks, [0.0] * n_tasks)
                logger.record("time/steps_per_s",
                              env_steps * n_tasks / max(time.perf_counter() - started, 1e-9))
                logger.dump(env_steps)
                if not quiet:
                    print(f"env steps per task {env_steps}/{cfg.steps}, updates {updates}", flush=True)
            if env_steps >= next_eval:
                next_eval += cfg.eval.freq
                for k, teacher in enumerate(teachers):
                    result = evaluate(StudentAgent(student, k), teacher.task, cfg.eval.episodes,
                                      seed + EVAL_SEED_OFFSET)
                    logger.record(f"distill/{tags[k]}/eval_return", result.mean)
                    curve = curves[teacher.task]
                    curve["timesteps"].append(env_steps)
                    curve["mean"].append(result.mean)
                    curve["std"].append(result.std)
                logger.dump(env_steps)
                atomic_write_json(curves_path, curves)
            if env_steps >= next_ckpt:
                next_ckpt += cfg.checkpoint_freq
                checkpoint()
    except KeyboardInterrupt:
        path = checkpoint()
        raise UserError(f"interrupted at env step {env_steps} per task; saved {path}; continue "
                        "with the same command and --resume") from None
    finally:
        for v in venvs:
            v.close()
        logger.close()
    for name, param in student.named_parameters():
        if not torch.isfinite(param).all():
            raise NumericalError(f"distillation produced a non-finite parameter {name}; lower "
                                 "learning_rate and rerun")
    student.eval()
    return {"env_steps": env_steps, "updates": updates,
            "feature_map_parameters": sum(p.numel() for p in maps.parameters()),
            "train_wall_s": round(time.perf_counter() - started, 3),
            "env_steps_trained": env_steps - start_steps}


# --------------------------------------------------------------------------------------------
# Final evaluation


class _AgreementProbe:
    """Acts as the student (greedy) and counts how often the teacher's greedy action agrees."""

    def __init__(self, agent: StudentAgent, teacher: Teacher) -> None:
        self.agent = agent
        self.teacher = teacher
        self.same = 0
        self.total = 0

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        actions, _ = self.agent.predict(observation, state, episode_start, deterministic)
        device = next(self.agent.student.parameters()).device
        t_scores, _ = self.teacher.outputs(torch.as_tensor(np.asarray(observation), device=device))
        t_actions = t_scores.argmax(-1).cpu().numpy()
        self.same += int((np.atleast_1d(actions) == t_actions).sum())
        self.total += len(t_actions)
        return actions, None


def _result_dict(r: EvalResult) -> dict[str, Any]:
    return {"mean": r.mean, "std": r.std, "returns": r.returns, "lengths": r.lengths}


def evaluate_task(student: Student, teacher: Teacher, k: int, episodes: int, random_episodes: int,
                  seed: int) -> dict[str, Any]:
    """Student, teacher and random returns on task ``k`` (same evaluation seeds), and the
    fraction of the student's visited states where its greedy action equals the teacher's.

    Units: returns are undiscounted episode returns; ``agreement_states`` counts env steps.
    """
    probe = _AgreementProbe(StudentAgent(student, k), teacher)
    s = evaluate(probe, teacher.task, episodes, seed)
    t = evaluate(teacher.model, teacher.task, episodes, seed)
    r = random_return(teacher.task, random_episodes, seed)
    return {"task": teacher.task, "episodes": episodes, "student": _result_dict(s),
            "teacher": _result_dict(t), "random": _result_dict(r),
            "expert_normalised": expert_normalised(s.mean, r.mean, t.mean),
            "agreement": probe.same / max(probe.total, 1), "agreement_states": probe.total}


# --------------------------------------------------------------------------------------------
# The command


@dataclass
class DistillResult:
    """What :func:`distill` produced."""

    run_dir: Path
    student_path: Path
    trunk_path: Path
    metrics: dict[str, Any]
    student: Student


def _compare_config(run: Path, resolved: Mapping[str, Any]) -> None:
    stored = read_yaml(run / "config.yaml")
    now = yaml.safe_load(yaml.safe_dump(dict(resolved), sort_keys=False))
    if stored != now:
        keys = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
        raise UserError(f"{run} was started with other settings ({', '.join(keys)} differ); "
                        "resume with the same teachers, config and --steps, or choose another "
                        "--run-dir")


def distill(teachers: Sequence[str], *, config: str | Path | None = None, steps: int | None = None,
            seed: int = 0, run_dir: str | Path | None = None,
            overrides: Mapping[str, Any] | None = None, resume: bool = False,
            quiet: bool = False, safe: bool = False) -> DistillResult:
    """Distill teachers into one student and write a complete run folder.

    Stages (a resumed run skips the finished ones): train the student
    (:func:`train_student`, checkpointed) → ``student.safetensors`` and ``trunk.safetensors``
    → per task, evaluate student, teacher and random policy (``evaluation/<task>.json``) →
    ``metrics.json``: per-task returns, expert-normalised score
    ``(student − random) / (teacher − random)``, its interquartile mean over tasks with a
    stratified bootstrap interval (tasks resampled; Agarwal et al. 2021), and the parameter
    counts of the student and of all teachers together. Same-seed reruns write the same
    ``metrics.json`` byte for byte (CPU); wall-clock figures go to ``timing.json``.

    Args:
        teachers: ``PATH`` or ``TASK=PATH`` per teacher (see :func:`load_teachers`).
        config: distillation config (default ``configs/actor_mimic.yaml``).
        steps: env steps per task (overrides the config).
        seed: seed of the student, its envs and its sampling; evaluation uses
            ``seed + 10000``.
        run_dir: run folder (default ``runs/distill/<tasks>__<method>__s<seed>``).
        overrides: nested config overrides (``--set``).
        resume: continue the unfinished run in ``run_dir``.
        quiet: no prints.
        safe: load the teachers without unpickling (see :func:`load_teachers`).

    Returns:
        A :class:`DistillResult`.

    Raises:
        UserError: bad teachers (same task twice, spaces that do not fit, mixed suites), bad
            config (also ``steps`` too few to reach ``learning_starts``: no update would run),
            a run folder that would be overwritten, a resume with other settings.
        NumericalError: a non-finite loss.
    """
    cfg = load_distill_config(config, overrides)
    if steps is not None:
        if steps <= 0:
            raise UserError(f"--steps must be > 0, got {steps}")
        cfg = replace(cfg, steps=steps)
    loaded = load_teachers(teachers, cfg.device, safe=safe)
    suite = loaded[0].suite
    for t in loaded:
        check_vec_env(t.task, cfg.vec_env)
    resolved = {"teachers": [{"task": t.task, "path": str(t.path)} for t in loaded], "seed": seed,
                "suite": suite.name, "method": method_name(cfg), **to_dict(cfg)}
    name = "_".join(t.task.split("/")[-1] for t in loaded)
    folder = Path(run_dir) if run_dir is not None else default_run_dir("distill", name, seed,
                                                                       method_name(cfg))
    if resume and (folder / "config.yaml").is_file():
        _compare_config(folder, resolved)
    run = RunFolder.open(folder, command="distill", config=resolved, seed=seed, resume=resume)
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(seed)
    student = build_student([task_info(t.task) for t in loaded], suite, cfg)
    student_path = run.path / "student.safetensors"
    train_info_path = run.path / "train_info.json"
    source = {"run": str(run.path), "seed": seed, "method": method_name(cfg),
              "teachers": resolved["teachers"]}

    # Stage 1: train (skipped when the student file exists).
    if student_path.is_file():
        student = load_student(student_path)
        train_info = read_json(train_info_path, "training summary")
    else:
        train_info = train_student(student, loaded, cfg, seed, run, resume=resume, quiet=quiet)
        # Wall-clock figures live apart from metrics.json, which same-seed reruns reproduce exactly.
        wall, trained = train_info.pop("train_wall_s"), train_info.pop("env_steps_trained")
        atomic_write_json(run.path / "timing.json", {
            "train_wall_s": wall, "env_steps_trained_per_task": trained,
            "train_steps_per_s": round(trained * len(loaded) / wall, 1) if wall > 0 else None})
        atomic_write_json(train_info_path, train_info)
        save_student(student, student_path, {**source, "env_steps": train_info["env_steps"]})

    # Stage 2: the shared trunk as a trunk file (transfer it with `policyshare transfer`).
    trunk_path = save_trunk(student.trunk, run.path / "trunk.safetensors",
                            alignment={**student.alignment_kwargs,
                                       "height": student.trunk.spec.height,
                                       "width": student.trunk.spec.width},
                            source={**source, "student": str(student_path),
                                    "tasks": [t.task for t in loaded]})

    # Stage 3: evaluate every task (student, teacher, random), one file per task.
    per_task: dict[str, dict[str, Any]] = {}
    for k, teacher in enumerate(loaded):
        path = run.path / "evaluation" / f"{slug(teacher.task)}.json"
        if path.is_file():
            per_task[teacher.task] = read_json(path, "task evaluation")
            continue
        result = evaluate_task(student, teacher, k, cfg.eval.final_episodes,
                               cfg.eval.random_episodes, seed + EVAL_SEED_OFFSET)
        atomic_write_json(path, result)
        per_task[teacher.task] = result
        if not quiet:
            print(f"{teacher.task}: student {result['student']['mean']:.2f}, teacher "
                  f"{result['teacher']['mean']:.2f}, random {result['random']['mean']:.2f}", flush=True)

    # Stage 4: metrics.json.
    scores = np.array([[per_task[t.task]["expert_normalised"] for t in loaded]], float)
    interval = iqm_intervals({"student": scores}, seed=seed, task_bootstrap=True)["student"]
    teacher_params = {t.task: t.n_parameters() for t in loaded}
    metrics: dict[str, Any] = {
        "tasks": [t.task for t in loaded], "seed": seed, "method": method_name(cfg),
        "env_steps_per_task": int(train_info["env_steps"]), "updates": int(train_info["updates"]),
        "eval_episodes": cfg.eval.final_episodes,
        "per_task": {task: {"student_return": r["student"]["mean"],
                            "student_std": r["student"]["std"],
                            "teacher_return": r["teacher"]["mean"],
                            "teacher_std": r["teacher"]["std"],
                            "random_return": r["random"]["mean"],
                            "expert_normalised": r["expert_normalised"],
                            "agreement": r["agreement"]} for task, r in per_task.items()},
        "expert_normalised_iqm": interval.as_dict(),
        "student_parameters": student.n_parameters(),
        "trunk_parameters": student.trunk.n_parameters(),
        "feature_map_parameters": int(train_info["feature_map_parameters"]),
        "teacher_parameters": sum(teacher_params.values()),
        "teacher_parameters_per_task": teacher_params,
        "student_to_teachers_ratio": student.n_parameters() / max(sum(teacher_params.values()), 1),
        "student": str(student_path), "trunk": str(trunk_path),
    }
    run.write_metrics(metrics)
    if not quiet:
        print(format_table(metrics))
        print(f"run folder:   {run.path}")
        print(f"student:      {student_path}  (policyshare evaluate {student_path} --task ID)")
        print(f"trunk:        {trunk_path}  (policyshare transfer --trunk {trunk_path} --env ID)")
        print(f"TensorBoard:  tensorboard --logdir {run.tb_dir}")
    return DistillResult(run.path, student_path, trunk_path, metrics, student)


def format_table(metrics: Mapping[str, Any]) -> str:
    """The per-task table, the IQM with its interval and the parameter counts, as text."""
    lines = [f"{'task':<28}{'student':>10}{'teacher':>10}{'random':>10}{'normalised':>12}{'agree':>8}"]
    for task, r in metrics["per_task"].items():
        lines.append(f"{task:<28}{r['student_return']:>10.2f}{r['teacher_return']:>10.2f}"
                     f"{r['random_return']:>10.2f}{r['expert_normalised']:>12.3f}{r['agreement']:>8.3f}")
    iv = metrics["expert_normalised_iqm"]
    lines.append(f"expert-normalised IQM over {len(metrics['per_task'])} tasks: {iv['point']:.3f} "
                 f"[{iv['low']:.3f}, {iv['high']:.3f}] (95% bootstrap over tasks)")
    lines.append(f"parameters: student {metrics['student_parameters']:,} (+ "
                 f"{metrics['feature_map_parameters']:,} training-only feature maps), teachers "
                 f"together {metrics['teacher_parameters']:,} (ratio "
                 f"{metrics['student_to_teachers_ratio']:.3f})")
    return "\n".join(lines)
