"""Evaluation: mean ± std return over N episodes, next to the random-policy return.

Uses SB3's ``evaluate_policy`` (which reads true episode returns from the ``Monitor`` wrapper,
so Atari's episodic-life and reward clipping do not distort them). Evaluation envs are seeded
separately from training envs.

:func:`load_policy` turns any checkpoint (a run folder, an SB3 zip, or a policyshare tensor file
such as a progressive network or a distilled student) into something with SB3's ``predict``
for one task, so ``policyshare evaluate`` works on all of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.checkpoints import load_sb3, read_json, read_sb3_header
from policyshare.envs import make_vec_env
from policyshare.errors import CheckpointError, UserError

#: Offset added to a run's seed for its evaluation envs (kept apart from training seeds).
EVAL_SEED_OFFSET = 10_000


class RandomAgent:
    """Uniform random actions, with SB3's ``predict`` signature (for ``evaluate_policy``)."""

    def __init__(self, action_space: Any, seed: int) -> None:
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        n = len(observation) if isinstance(observation, np.ndarray) else 1
        return self.rng.integers(self.action_space.n, size=n), None


@dataclass
class EvalResult:
    """Returns of N evaluation episodes (undiscounted, unclipped)."""

    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def evaluate(agent: Any, env_id: str, episodes: int, seed: int, deterministic: bool = True,
             n_envs: int | None = None) -> EvalResult:
    """Run ``episodes`` evaluation episodes of ``agent`` on ``env_id``.

    Args:
        agent: anything with SB3's ``predict(obs, state, episode_start, deterministic)``.
        env_id: Gymnasium id.
        episodes: number of complete episodes.
        seed: base seed of the evaluation envs.
        deterministic: greedy actions.
        n_envs: parallel evaluation envs (default ``min(episodes, 5)``).

    Raises:
        UserError: unknown env id or ``episodes < 1``.
    """
    from stable_baselines3.common.evaluation import evaluate_policy

    if episodes < 1:
        raise UserError(f"the number of evaluation episodes must be >= 1, got {episodes}")
    venv = make_vec_env(env_id, n_envs or min(episodes, 5), seed)
    try:
        returns, lengths = evaluate_policy(agent, venv, n_eval_episodes=episodes,
                                           deterministic=deterministic, return_episode_rewards=True,
                                           warn=False)
    finally:
        venv.close()
    return EvalResult([float(r) for r in returns], [int(n) for n in lengths])  # type: ignore[union-attr]


def random_return(env_id: str, episodes: int, seed: int) -> EvalResult:
    """Return of the uniform random policy on ``env_id`` (same seeds as :func:`evaluate`)."""
    venv = make_vec_env(env_id, 1, seed)
    space = venv.action_space
    venv.close()
    return evaluate(RandomAgent(space, seed), env_id, episodes, seed, deterministic=False)


def check_video_path(path: str | Path) -> Path:
    """Refuse a ``--video`` file that cannot be written, before anything is evaluated.

    Returns:
        The path.

    Raises:
        UserError: a name that does not end in ``.gif`` (the only format written), or a folder
            that does not exist (it is not created: a mistyped path would be made silently).
    """
    out = Path(path)
    if out.suffix.lower() != ".gif":
        raise UserError(f"--video {out}: only animated GIF is supported; use a name ending in .gif")
    if not out.parent.is_dir():
        raise UserError(f"--video {out}: folder {out.parent} does not exist; create it first or "
                        "choose a file in an existing folder")
    return out


def record_video(agent: Any, env_id: str, path: str | Path, seed: int, max_steps: int = 5_000,
                 fps: int = 15) -> tuple[Path, float]:
    """Play one episode with greedy actions and write it as an animated GIF.

    Returns:
        ``(path, episode_return)``.

    Raises:
        UserError: see :func:`check_video_path`.
    """
    import io

    from PIL import Image

    from policyshare.checkpoints import atomic_write_bytes

    out = check_video_path(path)
    venv = make_vec_env(env_id, 1, seed, render_mode="rgb_array")
    frames = []
    total = 0.0
    try:
        obs = venv.reset()
        for _ in range(max_steps):
            frames.append(Image.fromarray(venv.get_images()[0]))
            action, _ = agent.predict(obs, deterministic=True)
            obs, _, dones, infos = venv.step(action)
            if dones[0] and "episode" in infos[0]:  # Monitor: the true end, not a lost life
                total = float(infos[0]["episode"]["r"])
                break
    finally:
        venv.close()
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                   duration=int(1000 / fps), loop=0)
    atomic_write_bytes(out, buf.getvalue())
    return out, total


# --------------------------------------------------------------------------------------------
# Loading any checkpoint as a policy for one task

#: Tensor-file formats and the function that loads them as ``(agent, env_id)`` for a task:
#: ``loader(path, header, task) -> (agent, env_id)``. Filled by the modules that define them.
POLICY_LOADERS: dict[str, str] = {
    "policyshare.progressive": "policyshare.progressive:load_policy",
    "policyshare.student": "policyshare.distill:load_policy",
}


def _resolve(ref: str) -> Callable[..., Any]:
    module, name = ref.split(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return fn


def load_policy(path: str | Path, task: str | None = None, safe: bool = False) -> tuple[Any, str, dict[str, Any]]:
    """Load a checkpoint as a policy for one task.

    Args:
        path: a run folder (its ``model.zip`` or ``student``/``progressive`` file), an SB3
            zip, or a policyshare ``.safetensors`` file.
        task: env id to act in; required where the checkpoint holds several tasks, optional
            where it holds one.
        safe: load SB3 zips without unpickling (:func:`~policyshare.checkpoints.load_sb3_safe`);
            policyshare's own ``.safetensors`` files never unpickle anyway.

    Returns:
        ``(agent, env_id, header)``: ``agent.predict`` acts in ``env_id``.

    Raises:
        CheckpointError: missing or unreadable checkpoint.
        UserError: ``task`` not among the checkpoint's tasks.
    """
    p = Path(path)
    if p.is_dir():
        candidates = [p / "model.zip", p / "network.safetensors", p / "student.safetensors"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            others = sorted(c.name for c in p.glob("*.zip"))
            runs = sorted((d for d in p.iterdir()
                           if d.is_dir() and any((d / c.name).is_file() for c in candidates)),
                          key=lambda d: d.name)
            if runs:  # an experiment folder (progressive: DIR/s<seed>, transfer: <method>__s<seed>)
                more = ", …" if len(runs) > 6 else ""
                hint = f"pass one of its run folders: {', '.join(str(d) for d in runs[:6])}{more}"
            elif others:
                hint = f"pass one of its files, e.g. {p / others[0]}"
            else:
                hint = "pass a run folder of a finished run"
            raise CheckpointError(f"{p} holds no checkpoint (model.zip, network.safetensors or "
                                  f"student.safetensors); {hint}")
        p = found[0]
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} not found; check the path")
    if p.suffix == ".safetensors":
        from policyshare.checkpoints import load_tensors

        _, header = load_tensors(p)
        fmt = str(header.get("format"))
        if fmt not in POLICY_LOADERS:
            raise CheckpointError(f"{p} is a {fmt!r} file, which cannot act; pass a model, "
                                  "progressive network or student checkpoint")
        agent, env_id = _resolve(POLICY_LOADERS[fmt])(p, header, task)
        return agent, env_id, header
    header = read_sb3_header(p)
    if header.get("method") == "multitask_ppo":  # a multi-task model (policyshare multitask): one of its tasks
        from policyshare.multitask.policy import load_task_agent

        agent, env_id = load_task_agent(p, header, task, safe)
        return agent, env_id, header
    env_id = header.get("env_id")
    if env_id is None:
        meta = p.parent / "metrics.json"
        env_id = read_json(meta).get("env_id") if meta.is_file() else None
    if task is not None and env_id is not None and task != env_id:
        raise UserError(f"{p} was trained on {env_id}, not {task}; drop --task/--env or pass a "
                        "checkpoint of that task")
    env_id = env_id or task
    if env_id is None:
        raise UserError(f"cannot tell which env {p} acts in; pass --env ID")
    model, header = load_sb3(p, safe=safe)
    return model, str(env_id), header
