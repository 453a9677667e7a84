"""The training loop of distillation: :func:`train_student` and its training checkpoints.

Data (Actor-Mimic, Parisotto et al. 2016, Sec. 3): the *student* acts ε-greedily (fixed ε) in
every task through vectorised envs; each task has its own replay memory of observations
(:class:`~policyshare.distill.memory.TaskMemory`); every gradient update mixes one minibatch from
each task. Teachers are fixed, so their outputs are computed on the sampled observations at
update time. The loop reads top to bottom in :func:`train_student`; each of its steps (act,
learn, log, evaluate, checkpoint) is one method of :class:`_Training`.

Units: every frequency is in env steps per task; ``gradient_steps`` are gradient updates.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.logger import Logger
from torch import nn

from policyshare.alignment import to_common
from policyshare.checkpoints import load_state_checked, load_tensors, save_tensors
from policyshare.distill.config import DistillConfig
from policyshare.distill.losses import agreement, feature_regression_loss, policy_regression_loss
from policyshare.distill.memory import TaskMemory
from policyshare.distill.student import Student, StudentAgent
from policyshare.distill.teachers import Teacher
from policyshare.distill.vec_envs import policy_vec_env
from policyshare.errors import NumericalError, UserError
from policyshare.evaluate import EVAL_SEED_OFFSET, evaluate
from policyshare.io import atomic_write_json, read_json
from policyshare.logs import open_logger
from policyshare.runs import RunFolder, slug

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "policyshare.distill_checkpoint"


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

    @classmethod
    def zeros(cls, n_tasks: int) -> _Running:
        """Empty sums for ``n_tasks`` tasks."""
        return cls([0.0] * n_tasks, [0.0] * n_tasks, [0.0] * n_tasks)


def _task_tag(env_id: str) -> str:
    return slug(env_id)


def train_student(student: Student, teachers: Sequence[Teacher], cfg: DistillConfig, seed: int,
                  run: RunFolder, resume: bool = False) -> dict[str, Any]:
    """Distill ``teachers`` into ``student`` (in place): act, remember, regress.

    Each collection round steps every env of every task once with the student's ε-greedy
    action; each task's observations go to its own :class:`~policyshare.distill.memory.TaskMemory`. After
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

    Returns:
        ``{"env_steps": per task, "updates": gradient updates, "feature_map_parameters": int,
        "train_wall_s": seconds of this call, "env_steps_trained": env steps per task of this
        call}`` (the last two are timings: :func:`distill` keeps them in ``timing.json``).

    Raises:
        NumericalError: a loss or parameter became NaN or infinite.
        UserError: interrupted (SIGINT); a checkpoint is saved first.
    """
    eval_freq, ckpt_freq = cfg.eval.freq, cfg.checkpoint_freq
    t = _Training(student, teachers, cfg, seed, run, resume)
    next_log = (t.env_steps // cfg.log_freq + 1) * cfg.log_freq
    next_eval = (t.env_steps // eval_freq + 1) * eval_freq if eval_freq else math.inf
    next_ckpt = (t.env_steps // ckpt_freq + 1) * ckpt_freq if ckpt_freq else math.inf
    try:
        while t.env_steps < cfg.steps:
            # 1. Act: the student, ε-greedy over each task's own actions, in every task.
            t.act()
            if t.refill > 0:  # a resumed run refills its memories first (not counted)
                t.refill -= cfg.n_envs
                continue
            t.env_steps += cfg.n_envs
            # 2. Learn: mixed minibatches of every task against the fixed teachers.
            if t.env_steps >= cfg.learning_starts and t.rounds % cfg.train_freq == 0:
                t.learn()
            # 3. Log, evaluate, checkpoint (every frequency in env steps per task).
            if t.env_steps >= next_log:
                next_log += cfg.log_freq
                t.log()
            if t.env_steps >= next_eval:
                next_eval += eval_freq
                t.evaluate()
            if t.env_steps >= next_ckpt:
                next_ckpt += ckpt_freq
                t.checkpoint()
    except KeyboardInterrupt:
        path = t.checkpoint()
        raise UserError(f"interrupted at env step {t.env_steps} per task; saved {path}; continue "
                        "with the same command and --resume") from None
    finally:
        t.close()
    return t.finish()


class _Training:
    """The state one :func:`train_student` call shares between its steps: the networks and
    their optimizer, the envs and replay memories, the logger and the counters (env steps per
    task, gradient updates, collection rounds)."""

    def __init__(self, student: Student, teachers: Sequence[Teacher], cfg: DistillConfig, seed: int,
                 run: RunFolder, resume: bool) -> None:
        self.student, self.teachers, self.cfg, self.seed, self.run = student, teachers, cfg, seed, run
        self.device = torch.device(cfg.device)
        student.to(self.device).train()
        self.n_tasks = len(teachers)
        self.maps = nn.ModuleList(nn.Linear(student.hidden_dim, t.hidden_dim)
                                  for t in teachers).to(self.device)
        self.optimizer = torch.optim.Adam([*student.parameters(), *self.maps.parameters()],
                                          lr=cfg.learning_rate)
        self.env_steps, self.updates = self._restore(resume)
        self.rng = np.random.default_rng(seed + self.env_steps)
        torch.manual_seed(seed + self.env_steps)
        # Events and progress.csv of a resumed run are cut at its checkpoint and continued (logs.py).
        self.logger: Logger = open_logger(run.tb_dir, self.env_steps if resume else None)
        self.curves_path = run.path / "evaluations.json"
        self.curves = self._curves(resume)
        self.tags = [_task_tag(t.task) for t in teachers]
        self.venvs = [policy_vec_env(t.task, cfg.n_envs, seed + 1000 * k, cfg.vec_env)
                      for k, t in enumerate(teachers)]
        self.memories = [TaskMemory(cfg.buffer_size, v.observation_space.shape,
                                    v.observation_space.dtype) for v in self.venvs]
        self.obs = [v.reset() for v in self.venvs]
        self.running = _Running.zeros(self.n_tasks)
        self.refill = cfg.learning_starts if self.env_steps > 0 else 0
        self.started = time.perf_counter()
        self.start_steps = self.env_steps
        self.rounds = 0

    def _restore(self, resume: bool) -> tuple[int, int]:
        """``(env steps per task, updates)`` of the latest training checkpoint when resuming
        (restored into the student, maps and optimizer), else ``(0, 0)``."""
        ckpts = sorted(self.run.checkpoints_dir.glob("distill_*.safetensors"), key=_checkpoint_step)
        if not (resume and ckpts):
            return 0, 0
        env_steps, updates = load_training_checkpoint(ckpts[-1], self.student, self.maps,
                                                      self.optimizer)
        log.info(f"resuming from {ckpts[-1]} at {env_steps} env steps per task")
        return env_steps, updates

    def _curves(self, resume: bool) -> dict[str, dict[str, list[float]]]:
        """The greedy-evaluation curves so far: empty, or on resume those in
        ``evaluations.json`` up to the checkpoint the run continues from."""
        curves: dict[str, dict[str, list[float]]] = {
            t.task: {"timesteps": [], "mean": [], "std": []} for t in self.teachers}
        if resume and self.curves_path.is_file():
            for task, curve in read_json(self.curves_path, "evaluation curves").items():
                keep = sum(1 for t in curve["timesteps"] if t <= self.env_steps)
                curves[task] = {key: list(values[:keep]) for key, values in curve.items()}
        return curves

    def act(self) -> None:
        """One collection round: every env of every task steps once with the student's
        ε-greedy action; each task's observations go to its replay memory."""
        student, rng = self.student, self.rng
        student.eval()
        with torch.no_grad():
            outs = student.forward_tasks([torch.as_tensor(o, device=self.device) for o in self.obs])
        for k, (venv, (scores, _)) in enumerate(zip(self.venvs, outs)):
            actions = student.local_actions(scores, k).cpu().numpy()
            explore = rng.random(len(actions)) < self.cfg.epsilon
            actions[explore] = rng.integers(venv.action_space.n, size=int(explore.sum()))
            self.memories[k].add(self.obs[k])
            self.obs[k], _, _, infos = venv.step(actions)
            for info in infos:
                if "episode" in info:
                    self.logger.record_mean(f"distill/{self.tags[k]}/episode_return",
                                            float(info["episode"]["r"]))
        self.rounds += 1

    def learn(self) -> None:
        """``gradient_steps`` Adam updates, each on one minibatch of every task."""
        self.student.train()
        for _ in range(self.cfg.gradient_steps):
            self._update()

    def _update(self) -> None:
        """One update: minimise the mean over tasks of ``policy_regression + β ·
        feature_regression`` on ``batch_size`` sampled observations per task."""
        cfg, student, device, running = self.cfg, self.student, self.device, self.running
        batches = [torch.as_tensor(m.sample(cfg.batch_size, self.rng), device=device)
                   for m in self.memories]
        outs = student.forward_tasks(batches)
        total = torch.zeros((), device=device)
        for k, (teacher, batch, (scores, hidden)) in enumerate(zip(self.teachers, batches, outs)):
            t_local, t_hidden = teacher.outputs(batch)
            t_scores = to_common(t_local, teacher.action_map, student.n_common, fill=0.0)
            mask = student.masks[k]
            p_loss = policy_regression_loss(scores, t_scores, mask, cfg.tau, cfg.loss)
            f_loss = (feature_regression_loss(self.maps[k](hidden), t_hidden) if cfg.beta > 0
                      else torch.zeros((), device=device))
            total = total + (p_loss + cfg.beta * f_loss) / self.n_tasks
            running.policy[k] += float(p_loss.detach())
            running.feature[k] += float(f_loss.detach())
            running.agree[k] += agreement(scores.detach(), t_scores, mask)
        if not torch.isfinite(total):
            raise NumericalError(
                f"distillation stopped at env step {self.env_steps} per task: the loss is "
                f"{float(total)}; the last checkpoint is kept — lower learning_rate "
                "and rerun with --resume")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_([*student.parameters(), *self.maps.parameters()],
                                 cfg.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        running.count += 1

    def log(self) -> None:
        """Dump the mean losses and agreement since the last dump, and the speed."""
        cfg, running, logger = self.cfg, self.running, self.logger
        if running.count:
            for k, tag in enumerate(self.tags):
                p, f = running.policy[k] / running.count, running.feature[k] / running.count
                logger.record(f"distill/{tag}/policy_loss", p)
                logger.record(f"distill/{tag}/feature_loss", f)
                logger.record(f"distill/{tag}/loss", p + cfg.beta * f)
                logger.record(f"distill/{tag}/agreement", running.agree[k] / running.count)
            total_mean = sum(running.policy[k] + cfg.beta * running.feature[k]
                             for k in range(self.n_tasks)) / (self.n_tasks * running.count)
            logger.record("distill/loss", total_mean)
            logger.record("distill/updates", self.updates)
        self.running = _Running.zeros(self.n_tasks)
        logger.record("time/steps_per_s",
                      self.env_steps * self.n_tasks / max(time.perf_counter() - self.started, 1e-9))
        logger.dump(self.env_steps)
        log.info(f"env steps per task {self.env_steps}/{cfg.steps}, updates {self.updates}")

    def evaluate(self) -> None:
        """Greedy evaluation of the student in every task (``eval.episodes`` episodes each),
        logged and appended to ``evaluations.json``."""
        for k, teacher in enumerate(self.teachers):
            result = evaluate(StudentAgent(self.student, k), teacher.task, self.cfg.eval.episodes,
                              self.seed + EVAL_SEED_OFFSET)
            self.logger.record(f"distill/{self.tags[k]}/eval_return", result.mean)
            curve = self.curves[teacher.task]
            curve["timesteps"].append(self.env_steps)
            curve["mean"].append(result.mean)
            curve["std"].append(result.std)
        self.logger.dump(self.env_steps)
        atomic_write_json(self.curves_path, self.curves)

    def checkpoint(self) -> Path:
        """Save a training checkpoint at the current env step; keep the newest two."""
        folder = self.run.checkpoints_dir
        path = save_training_checkpoint(folder / f"distill_{self.env_steps}.safetensors",
                                        self.student, self.maps, self.optimizer,
                                        self.env_steps, self.updates)
        for old in sorted(folder.glob("distill_*.safetensors"), key=_checkpoint_step)[:-2]:
            old.unlink(missing_ok=True)
        return path

    def close(self) -> None:
        """Close the envs and the logger."""
        for v in self.venvs:
            v.close()
        self.logger.close()

    def finish(self) -> dict[str, Any]:
        """Refuse a non-finite student; the summary :func:`train_student` returns."""
        for name, param in self.student.named_parameters():
            if not torch.isfinite(param).all():
                raise NumericalError(f"distillation produced a non-finite parameter {name}; lower "
                                     "learning_rate and rerun")
        self.student.eval()
        return {"env_steps": self.env_steps, "updates": self.updates,
                "feature_map_parameters": sum(p.numel() for p in self.maps.parameters()),
                "train_wall_s": round(time.perf_counter() - self.started, 3),
                "env_steps_trained": self.env_steps - self.start_steps}
