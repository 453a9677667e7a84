"""Per-task TensorBoard tags beside SB3's: training episodes and greedy evaluations of each task.

Tags (step = env steps over all tasks, SB3's ``num_timesteps``):

* ``multitask/<task>/ep_rew_mean``, ``multitask/<task>/ep_len_mean`` — mean return and length of
  the task's last 100 training episodes (as SB3's ``rollout/ep_rew_mean``, which mixes all
  tasks), recorded at the end of every rollout;
* ``multitask/<task>/eval_return``, ``multitask/<task>/eval_std`` — greedy evaluation of the task
  on its own, separately seeded env, at step 0 and every ``eval.freq`` env steps; the curves go to
  ``evaluations.json`` (task → ``{"timesteps", "mean", "std"}``, as ``policyshare distill``'s).

``<task>`` is the env id made file-name safe (``MinAtar-Breakout-v1``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from policyshare.evaluate import evaluate
from policyshare.io import atomic_write_json, read_json
from policyshare.multitask.policy import TaskAgent
from policyshare.runs import slug


def task_tag(env_id: str, name: str) -> str:
    """``multitask/<env id, file-name safe>/<name>``."""
    return f"multitask/{slug(env_id)}/{name}"


class TaskEpisodeLog(BaseCallback):
    """Record each task's training-episode statistics (``info["episode"]`` of its envs).

    Args:
        tasks: the env ids, in task order.
        task_of_env: the task index of every env of the training ``VecEnv``.
        window: episodes per task averaged (SB3's ``stats_window_size``, 100).
    """

    def __init__(self, tasks: Sequence[str], task_of_env: Sequence[int], window: int = 100) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.task_of_env = [int(k) for k in task_of_env]
        self.episodes: list[deque[tuple[float, int]]] = [deque(maxlen=window) for _ in self.tasks]

    def _on_step(self) -> bool:
        for i, info in enumerate(self.locals.get("infos", [])):
            ep = info.get("episode")
            if ep is not None:
                self.episodes[self.task_of_env[i]].append((float(ep["r"]), int(ep["l"])))
        return True

    def _on_rollout_end(self) -> None:
        for task, eps in zip(self.tasks, self.episodes):
            if eps:
                self.logger.record(task_tag(task, "ep_rew_mean"), float(np.mean([r for r, _ in eps])))
                self.logger.record(task_tag(task, "ep_len_mean"), float(np.mean([n for _, n in eps])))


class TaskEvaluation(BaseCallback):
    """Evaluate every task greedily at env step 0 and every ``freq`` env steps (all tasks).

    Args:
        tasks: the env ids, in task order.
        action_maps: per task, its actions' indices in the common action space.
        freq: env steps between evaluations (> 0).
        episodes: episodes per task per evaluation.
        seed: evaluation seed (each task's own env, the same seed for every task).
        curve_path: ``evaluations.json``; an existing one (a resumed run) is continued.
    """

    def __init__(self, tasks: Sequence[str], action_maps: Sequence[Sequence[int]], freq: int, episodes: int,
                 seed: int, curve_path: Path) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.action_maps = [list(m) for m in action_maps]
        self.freq = freq
        self.episodes = episodes
        self.seed = seed
        self.curve_path = curve_path
        self.curves: dict[str, dict[str, list[float]]] = {t: {"timesteps": [], "mean": [], "std": []}
                                                          for t in self.tasks}
        if curve_path.is_file():
            self.curves.update(read_json(curve_path, "evaluation curves"))
        self._next = 0

    def _done(self) -> int:
        steps = self.curves[self.tasks[0]]["timesteps"]
        return int(steps[-1]) if steps else -1

    def _on_training_start(self) -> None:
        if self.num_timesteps == 0 and self._done() < 0:
            self.run_evaluation()
        self._next = (max(self.num_timesteps, self._done()) // self.freq + 1) * self.freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.freq + 1) * self.freq
            self.run_evaluation()
        return True

    def run_evaluation(self) -> None:
        """Evaluate every task now; log, and write the curves."""
        step = int(self.model.num_timesteps)
        for k, task in enumerate(self.tasks):
            result = evaluate(TaskAgent(self.model, k, task, self.action_maps[k]), task, self.episodes, self.seed)
            self.logger.record(task_tag(task, "eval_return"), result.mean)
            self.logger.record(task_tag(task, "eval_std"), result.std)
            curve = self.curves[task]
            curve["timesteps"].append(step)
            curve["mean"].append(result.mean)
            curve["std"].append(result.std)
        self.logger.dump(step)
        atomic_write_json(self.curve_path, self.curves)


def trim_curves(curve_path: Path, last_step: int) -> None:
    """Keep each task's evaluations up to env step ``last_step`` (a resumed run evaluates the rest again)."""
    if not curve_path.is_file():
        return
    curves = read_json(curve_path, "evaluation curves")
    trimmed = {}
    for task, curve in curves.items():
        keep = sum(1 for t in curve.get("timesteps", []) if t <= last_step)
        trimmed[task] = {key: list(values[:keep]) for key, values in curve.items()}
    atomic_write_json(curve_path, trimmed)
