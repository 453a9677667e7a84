"""Evaluation: mean ± std return over N episodes, next to the random-policy return.

Uses SB3's ``evaluate_policy`` (which reads true episode returns from the ``Monitor`` wrapper,
so Atari's episodic-life and reward clipping do not distort them). Evaluation envs are seeded
separately from training envs.

It runs episodes of anything with SB3's ``predict``; turning a checkpoint file into such an agent
is :mod:`policyshare.policies`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.envs import make_vec_env
from policyshare.errors import UserError

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

    from policyshare.io import atomic_write_bytes

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
