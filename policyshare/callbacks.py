"""SB3 callbacks that policyshare adds: periodic evaluation with an atomic learning curve,
atomic checkpoints, and a guard against non-finite losses and parameters.

All frequencies are in **env steps** (summed over the vectorised envs), as ``total_timesteps``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback

from policyshare.checkpoints import atomic_write_json, read_json, save_sb3
from policyshare.errors import NumericalError
from policyshare.evaluate import evaluate


class PeriodicEvaluation(BaseCallback):
    """Evaluate every ``freq`` env steps; log ``eval/mean_reward``; keep the best model.

    Writes ``evaluations.json`` (``{"timesteps": [...], "mean": [...], "std": [...]}``)
    atomically after every evaluation; on resume it continues the existing curve.

    Args:
        env_id: env to evaluate on (a fresh, separately seeded vec env each time).
        freq: env steps between evaluations (> 0).
        episodes: episodes per evaluation.
        seed: evaluation seed.
        curve_path: the ``evaluations.json`` file.
        best_path: where to save the best model (atomically), or ``None``.
        header: header stored with the best model.
    """

    def __init__(self, env_id: str, freq: int, episodes: int, seed: int, curve_path: Path,
                 best_path: Path | None, header: dict[str, Any]) -> None:
        super().__init__()
        self.env_id = env_id
        self.freq = freq
        self.episodes = episodes
        self.seed = seed
        self.curve_path = curve_path
        self.best_path = best_path
        self.header = header
        self.curve: dict[str, list[float]] = {"timesteps": [], "mean": [], "std": []}
        if curve_path.is_file():
            self.curve = read_json(curve_path, "evaluation curve")
        self.best_mean = max(self.curve["mean"], default=-math.inf)
        self._next = 0

    def _on_training_start(self) -> None:
        done = int(self.curve["timesteps"][-1]) if self.curve["timesteps"] else 0
        self._next = (max(self.num_timesteps, done) // self.freq + 1) * self.freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.freq * max(1, (self.num_timesteps - self._next) // self.freq + 1)
            self.run_evaluation()
        return True

    def run_evaluation(self) -> None:
        """Evaluate now, log, update the curve and the best model."""
        result = evaluate(self.model, self.env_id, self.episodes, self.seed)
        self.logger.record("eval/mean_reward", result.mean)
        self.logger.record("eval/std_reward", result.std)
        self.logger.record("eval/mean_ep_length", sum(result.lengths) / len(result.lengths))
        self.logger.dump(self.num_timesteps)
        self.curve["timesteps"].append(self.num_timesteps)
        self.curve["mean"].append(result.mean)
        self.curve["std"].append(result.std)
        atomic_write_json(self.curve_path, self.curve)
        if result.mean > self.best_mean and self.best_path is not None:
            self.best_mean = result.mean
            save_sb3(self.model, self.best_path,
                     {**self.header, "timesteps": self.num_timesteps, "eval_mean": result.mean})


class AtomicCheckpoint(BaseCallback):
    """Save ``ckpt_<env steps>.zip`` every ``freq`` env steps, atomically.

    DQN's replay buffer is saved beside the latest checkpoint (``replay_buffer.pkl``) when
    ``save_replay_buffer`` is set, so a resumed run continues with its memory.

    Args:
        folder: the checkpoints folder.
        freq: env steps between checkpoints (> 0).
        header: header stored in each checkpoint.
        keep: how many recent checkpoints to keep (older ones are deleted).
        save_replay_buffer: also save the replay buffer (off-policy algorithms).
    """

    def __init__(self, folder: Path, freq: int, header: dict[str, Any], keep: int = 3,
                 save_replay_buffer: bool = False) -> None:
        super().__init__()
        self.folder = folder
        self.freq = freq
        self.header = header
        self.keep = keep
        self.save_replay_buffer = save_replay_buffer
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.freq + 1) * self.freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.freq + 1) * self.freq
            self.save()
        return True

    def save(self) -> Path:
        """Save a checkpoint at the current step now."""
        path = save_checkpoint(self.model, self.folder, self.header, self.save_replay_buffer)
        ckpts = sorted(self.folder.glob("ckpt_*.zip"), key=checkpoint_step)
        for old in ckpts[: max(0, len(ckpts) - self.keep)]:
            old.unlink(missing_ok=True)
        return path


def checkpoint_step(path: Path) -> int:
    """The env step encoded in ``ckpt_<step>.zip``."""
    try:
        return int(path.stem.split("_")[1])
    except (IndexError, ValueError):
        return -1


def save_checkpoint(model: Any, folder: Path, header: dict[str, Any],
                    save_replay_buffer: bool = False) -> Path:
    """Save ``folder/ckpt_<num_timesteps>.zip`` (and the replay buffer) atomically."""
    import io

    from policyshare.checkpoints import atomic_write_bytes

    if save_replay_buffer and getattr(model, "replay_buffer", None) is not None:
        buf = io.BytesIO()
        model.save_replay_buffer(buf)
        atomic_write_bytes(folder / "replay_buffer.pkl", buf.getvalue())
    return save_sb3(model, folder / f"ckpt_{model.num_timesteps}.zip",
                    {**header, "timesteps": model.num_timesteps})


class FiniteGuard(BaseCallback):
    """Stop training when a parameter or a logged loss is NaN or infinite.

    Checked after every rollout (on-policy) or every ``check_freq`` calls (off-policy), i.e.
    after the gradient updates that could have produced the fault.

    Raises:
        NumericalError: naming the env step, and the loss or parameter that is not finite.
    """

    def __init__(self, check_freq: int = 1000) -> None:
        super().__init__()
        self.check_freq = check_freq

    def _check(self) -> None:
        logged = getattr(self.model.logger, "name_to_value", {})
        for key, value in logged.items():
            if key.startswith("train/") and isinstance(value, float) and not math.isfinite(value):
                self._fail(f"loss {key} = {value}")
        for name, p in self.model.policy.named_parameters():
            if not torch.isfinite(p).all():
                self._fail(f"parameter {name} is not finite")

    def _fail(self, what: str) -> None:
        raise NumericalError(
            f"training stopped at env step {self.num_timesteps}: {what}; the last good checkpoint "
            "is kept — lower the learning rate and rerun with --resume")

    def _on_rollout_start(self) -> None:
        self._check()

    def _on_step(self) -> bool:
        if self.n_calls % self.check_freq == 0:
            self._check()
        return True

    def _on_training_end(self) -> None:
        self._check()
