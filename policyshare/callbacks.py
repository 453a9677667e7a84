"""SB3 callbacks that policyshare adds: periodic evaluation with an atomic learning curve (greedy
evaluation returns and the returns of the training episodes between evaluations),
atomic checkpoints at rollout boundaries (also on an interrupt), and a guard against
non-finite losses and parameters.

All frequencies are in **env steps** (summed over the vectorised envs), as ``total_timesteps``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback

from policyshare.errors import CheckpointError, NumericalError
from policyshare.evaluate import EvalResult, evaluate
from policyshare.io import atomic_write_bytes, atomic_write_json, read_json
from policyshare.sb3_files import read_sb3_header, save_sb3

#: Why a point of the training-episode curve in ``evaluations.json`` is ``null``.
NO_TRAINING_EPISODE = "no training episode finished since the previous evaluation"

_CURVE_KEYS = ("timesteps", "mean", "std", "train_mean", "train_episodes")


def read_curve(path: Path) -> dict[str, list[float]]:
    """``evaluations.json`` as lists of the same length (``null`` → ``nan``; ``*_why`` notes dropped).

    A file written before training-episode returns were recorded gets ``train_mean`` ``nan`` and
    ``train_episodes`` 0 at its points.

    Raises:
        CheckpointError: missing or corrupt file.
    """
    data = read_json(path, "evaluation curve")
    n = len(data.get("timesteps", []))
    curve = {k: [math.nan if v is None else v for v in data.get(k, [])] for k in _CURVE_KEYS}
    curve["train_mean"] += [math.nan] * (n - len(curve["train_mean"]))
    curve["train_episodes"] += [0] * (n - len(curve["train_episodes"]))
    return curve


def write_curve(path: Path, curve: dict[str, list[float]]) -> None:
    """Write ``evaluations.json`` atomically; a ``nan`` training mean is ``null`` with its reason."""
    atomic_write_json(path, curve, why={"train_mean": NO_TRAINING_EPISODE})


class PeriodicEvaluation(BaseCallback):
    """Evaluate at env step 0 and every ``freq`` env steps; log ``eval/mean_reward``; keep the best model.

    Writes ``evaluations.json`` atomically after every evaluation; on resume it continues the
    existing curve. Its lists, one entry per evaluation point:

    * ``timesteps`` — env steps of the point;
    * ``mean``, ``std`` — greedy evaluation return over ``episodes`` episodes on a separately
      seeded env;
    * ``train_mean`` — mean return (SB3 ``Monitor``'s ``info["episode"]["r"]``, undiscounted,
      whole episodes) of the *training* episodes that finished since the previous point, ``null``
      (with ``train_mean_why``) where none did — always at step 0; the areas of Rusu et al. 2016
      are over training episodes;
    * ``train_episodes`` — how many training episodes that mean is over.

    A resumed run's first window counts only the episodes finished after the resume (the
    envs restart their episodes there).

    The curve starts with a step-0 evaluation of the untrained network, as learning curves
    compared by area do (:mod:`policyshare.comparison`; an initialised trunk's head start counts),
    so with the evaluation :func:`~policyshare.train.train` adds at its last step every curve has
    at least two points, even when the budget is shorter than ``freq``.

    Args:
        env_id: env to evaluate on (a fresh, separately seeded vec env each time).
        freq: env steps between evaluations (> 0).
        episodes: episodes per evaluation.
        seed: evaluation seed.
        curve_path: the ``evaluations.json`` file.
        best_path: where to save the best model (atomically), or ``None``.
        header: header stored with the best model.
        on_result: called after every evaluation (also one run outside ``learn``) with its env
            step and :class:`~policyshare.evaluate.EvalResult`, once the curve is written
            (e.g. ``policyshare tune`` reports it to Ray Tune).
    """

    def __init__(self, env_id: str, freq: int, episodes: int, seed: int, curve_path: Path,
                 best_path: Path | None, header: dict[str, Any],
                 on_result: Callable[[int, EvalResult], None] | None = None) -> None:
        super().__init__()
        self.on_result = on_result
        self.env_id = env_id
        self.freq = freq
        self.episodes = episodes
        self.seed = seed
        self.curve_path = curve_path
        self.best_path = best_path
        self.header = header
        self.curve: dict[str, list[float]] = {k: [] for k in _CURVE_KEYS}
        if curve_path.is_file():
            self.curve = read_curve(curve_path)
        self.train_returns: list[float] = []  # training episodes finished since the last point
        self.best_mean = max(self.curve["mean"], default=-math.inf)
        if best_path is not None and best_path.is_file():
            # A resumed run keeps the best model on disk unless it evaluates better; it may come
            # from after the checkpoint the run continues from (its header names the step).
            with contextlib.suppress(CheckpointError):
                saved = read_sb3_header(best_path).get("eval_mean")
                if isinstance(saved, (int, float)):
                    self.best_mean = max(self.best_mean, float(saved))
        self._next = 0

    def _on_training_start(self) -> None:
        if self.num_timesteps == 0 and not self.curve["timesteps"]:
            self.run_evaluation()  # step 0: the curve's start
        done = int(self.curve["timesteps"][-1]) if self.curve["timesteps"] else 0
        self._next = (max(self.num_timesteps, done) // self.freq + 1) * self.freq

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")  # Monitor / VecMonitor: a whole episode just ended
            if episode is not None:
                self.train_returns.append(float(episode["r"]))
        if self.num_timesteps >= self._next:
            self._next += self.freq * max(1, (self.num_timesteps - self._next) // self.freq + 1)
            self.run_evaluation()
        return True

    def run_evaluation(self) -> None:
        """Evaluate now, log, update the curve (with the training episodes since the last point)
        and the best model."""
        step = int(self.model.num_timesteps)  # also right when called outside learn()
        result = evaluate(self.model, self.env_id, self.episodes, self.seed)
        self.logger.record("eval/mean_reward", result.mean)
        self.logger.record("eval/std_reward", result.std)
        self.logger.record("eval/mean_ep_length", sum(result.lengths) / len(result.lengths))
        self.logger.dump(step)
        self.curve["timesteps"].append(step)
        self.curve["mean"].append(result.mean)
        self.curve["std"].append(result.std)
        self.curve["train_mean"].append(sum(self.train_returns) / len(self.train_returns)
                                        if self.train_returns else math.nan)
        self.curve["train_episodes"].append(len(self.train_returns))
        self.train_returns = []
        write_curve(self.curve_path, self.curve)
        if result.mean > self.best_mean and self.best_path is not None:
            self.best_mean = result.mean
            save_sb3(self.model, self.best_path, {**self.header, "timesteps": step, "eval_mean": result.mean})
        if self.on_result is not None:
            self.on_result(step, result)


def trim_curve(curve_path: Path, last_step: int) -> None:
    """Keep the evaluations of ``evaluations.json`` up to env step ``last_step`` (on resume).

    A run killed after its last checkpoint may have evaluated beyond it; the resumed run
    evaluates those steps again, so the curve neither repeats nor skips a step.
    """
    if not curve_path.is_file():
        return
    curve = read_curve(curve_path)
    keep = sum(1 for t in curve["timesteps"] if t <= last_step)
    if keep < len(curve["timesteps"]):
        write_curve(curve_path, {k: list(v[:keep]) for k, v in curve.items()})


class Interrupt:
    """A request to stop training, set by a signal handler and honoured by
    :class:`AtomicCheckpoint` at the next point where the model is consistent.

    Attributes:
        signal: name of the signal that asked to stop (``SIGINT``, ``SIGTERM``), or ``None``.
    """

    def __init__(self) -> None:
        self.signal: str | None = None

    def request(self, name: str) -> None:
        """Ask training to stop (from a signal handler: only sets a flag)."""
        self.signal = name


class TrainingInterrupted(Exception):
    """Raised by :class:`AtomicCheckpoint` once it saved a checkpoint after an interrupt.

    Attributes:
        signal: the signal's name.
        path: the checkpoint just saved.
        step: its env step.
    """

    def __init__(self, signal: str, path: Path, step: int) -> None:
        super().__init__(f"{signal} at env step {step}; saved {path}")
        self.signal = signal
        self.path = path
        self.step = step


class AtomicCheckpoint(BaseCallback):
    """Save ``ckpt_<env steps>.zip`` every ``freq`` env steps, atomically, at rollout boundaries.

    A checkpoint is taken when a rollout starts (or training ends) once ``freq`` env steps have
    passed since the last, i.e. after the gradient updates on everything collected so far, so it
    holds a consistent state: parameters, optimizer, schedule positions
    (``_current_progress_remaining``, ``_n_updates``), the step counter, and the logged values
    SB3 has recorded but not yet written (:func:`policyshare.logs.pending_values`). A run that
    starts at step 0 therefore checkpoints at whole rollouts (multiples of ``n_steps * n_envs``
    for PPO/A2C, of ``train_freq * n_envs`` for DQN), and a resumed run ends on the same step as
    an uninterrupted one.

    DQN's replay memory is saved beside each checkpoint as ``replay_<step>.pkl``, its SHA-256 in
    the checkpoint's header, when ``save_replay_buffer`` is set.

    On an :class:`Interrupt`, an on-policy model is saved at once as it was when the current
    rollout started (collecting a rollout changes no parameter; the partial rollout is dropped);
    an off-policy model at the next rollout start (at most ``train_freq * n_envs`` env steps
    later). Then :class:`TrainingInterrupted` is raised.

    Args:
        folder: the checkpoints folder.
        freq: env steps between checkpoints; 0: none (but still one on an interrupt).
        header: header stored in each checkpoint.
        keep: how many recent checkpoints to keep (older ones and their replay files are deleted).
        save_replay_buffer: also save the replay buffer (off-policy algorithms).
        interrupt: the stop request to honour, if any.
    """

    def __init__(self, folder: Path, freq: int, header: dict[str, Any], keep: int = 3,
                 save_replay_buffer: bool = False, interrupt: Interrupt | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.freq = freq
        self.header = header
        self.keep = keep
        self.save_replay_buffer = save_replay_buffer
        self.interrupt = interrupt
        self._next: float = math.inf
        self._snapshot: dict[str, Any] | None = None

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.freq + 1) * self.freq if self.freq > 0 else math.inf

    def _on_rollout_start(self) -> None:
        self._snapshot = self._take_snapshot()
        if self.interrupt is not None and self.interrupt.signal is not None:
            self._stop(self.save())
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.freq + 1) * self.freq
            self.save()

    def _on_step(self) -> bool:
        if (self.interrupt is not None and self.interrupt.signal is not None
                and self._snapshot is not None and self._on_policy()):
            self._stop(self.save(rewind=True))
        return True

    def _on_training_end(self) -> None:
        # After the last update: as consistent as a rollout start.
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.freq + 1) * self.freq
            self.save()

    def _on_policy(self) -> bool:
        from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

        return isinstance(self.model, OnPolicyAlgorithm)

    def _take_snapshot(self) -> dict[str, Any]:
        from policyshare.logs import pending_values

        m = self.model
        return {"num_timesteps": m.num_timesteps, "_episode_num": m._episode_num,
                "ep_info_buffer": copy.copy(m.ep_info_buffer),
                "ep_success_buffer": copy.copy(m.ep_success_buffer),
                "pending_log": pending_values(m.logger)}

    def _stop(self, path: Path) -> None:
        assert self.interrupt is not None and self.interrupt.signal is not None
        raise TrainingInterrupted(self.interrupt.signal, path, checkpoint_step(path))

    def save(self, rewind: bool = False) -> Path:
        """Save a checkpoint now (``rewind``: as the model was when this rollout started)."""
        from policyshare.logs import pending_values

        snap = self._snapshot if rewind and self._snapshot is not None else self._take_snapshot()
        pending = snap["pending_log"] if rewind else pending_values(self.model.logger)
        current = {k: getattr(self.model, k) for k in snap if k != "pending_log"}
        try:
            for k, v in snap.items():
                if k != "pending_log":
                    setattr(self.model, k, v)
            path = save_checkpoint(self.model, self.folder, self.header, self.save_replay_buffer,
                                   pending_log=pending)
        finally:
            for k, v in current.items():
                setattr(self.model, k, v)
        ckpts = sorted(self.folder.glob("ckpt_*.zip"), key=checkpoint_step)
        for old in ckpts[: max(0, len(ckpts) - self.keep)]:
            old.unlink(missing_ok=True)
            replay_path(self.folder, checkpoint_step(old)).unlink(missing_ok=True)
        return path


def checkpoint_step(path: Path) -> int:
    """The env step encoded in ``ckpt_<step>.zip``."""
    try:
        return int(path.stem.split("_")[1])
    except (IndexError, ValueError):
        return -1


def replay_path(folder: Path, step: int) -> Path:
    """The replay memory saved with ``ckpt_<step>.zip``: ``replay_<step>.pkl``."""
    return folder / f"replay_{step}.pkl"


def check_finite(model: Any) -> None:
    """Raise :class:`NumericalError` if a parameter of ``model.policy`` is NaN or infinite."""
    for name, p in model.policy.named_parameters():
        if not torch.isfinite(p).all():
            raise NumericalError(f"training stopped at env step {model.num_timesteps}: parameter "
                                 f"{name} is not finite")


def save_checkpoint(model: Any, folder: Path, header: dict[str, Any],
                    save_replay_buffer: bool = False, pending_log: dict[str, Any] | None = None) -> Path:
    """Save ``folder/ckpt_<num_timesteps>.zip`` (and ``replay_<step>.pkl``) atomically.

    The replay memory is written first and its SHA-256 goes into the checkpoint's header, so a
    checkpoint is only ever paired with the memory of its own step.

    Args:
        model: the SB3 model.
        folder: the checkpoints folder.
        header: header stored in the zip (``timesteps`` is added).
        save_replay_buffer: also save the replay buffer, if the model has one.
        pending_log: logged values not yet written (:func:`policyshare.logs.pending_values`).

    Raises:
        NumericalError: a parameter is not finite (nothing is written).
        CheckpointError: a write failed (the previous checkpoint is kept).
    """
    check_finite(model)
    full = {**header, "timesteps": model.num_timesteps}
    if pending_log is not None:
        full["pending_log"] = pending_log
    if save_replay_buffer and getattr(model, "replay_buffer", None) is not None:
        buf = io.BytesIO()
        model.save_replay_buffer(buf)
        data = buf.getvalue()
        replay = atomic_write_bytes(replay_path(folder, model.num_timesteps), data)
        full["replay_buffer"] = {"file": replay.name, "sha256": hashlib.sha256(data).hexdigest()}
    return save_sb3(model, folder / f"ckpt_{model.num_timesteps}.zip", full)


def load_replay(model: Any, checkpoint: Path, header: dict[str, Any]) -> bool:
    """Load the replay memory saved with ``checkpoint`` into ``model``, after verifying it.

    Checkpoints written before replay files were per step fall back to ``replay_buffer.pkl``.

    Returns:
        Whether a memory was loaded.

    Raises:
        CheckpointError: the memory named in the header is missing or does not match its
            checksum.
    """
    info = header.get("replay_buffer")
    if not isinstance(info, dict):
        legacy = checkpoint.parent / "replay_buffer.pkl"
        if legacy.is_file():
            model.load_replay_buffer(str(legacy))
            return True
        return False
    path = checkpoint.parent / str(info.get("file"))
    if not path.is_file():
        raise CheckpointError(f"the replay memory {path} of {checkpoint} is missing; delete "
                              f"{checkpoint.name} to resume from an earlier checkpoint")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise CheckpointError(f"the replay memory {path} of {checkpoint} is corrupt (checksum "
                              f"mismatch); delete {checkpoint.name} to resume from an earlier "
                              "checkpoint")
    model.load_replay_buffer(io.BytesIO(data))
    return True


def is_loss(key: str) -> bool:
    """Whether a logged SB3 value is a loss (``train/loss``, ``train/value_loss``,
    ``train/policy_gradient_loss`` …), as opposed to a diagnostic such as
    ``train/explained_variance``, which SB3 reports as NaN when a rollout's returns do not vary
    (1 − Var[y − ŷ] / Var[y] with Var[y] = 0) without anything having diverged."""
    return key.startswith("train/") and key.endswith("loss")


class FiniteGuard(BaseCallback):
    """Stop training when a parameter or a logged loss (:func:`is_loss`) is NaN or infinite.

    Checked after every rollout (on-policy), i.e. after the gradient updates that could have
    produced the fault, and before any checkpoint of that rollout is saved (keep this callback
    first). Off-policy rollouts are a few env steps: there the logged losses are checked after
    every rollout and the parameters every ``check_freq`` env-step calls
    (:func:`save_checkpoint` also refuses non-finite parameters).

    Attributes:
        last_losses: the losses seen at the last check (for messages).

    Raises:
        NumericalError: naming the env step, and the loss or parameter that is not finite.
    """

    def __init__(self, check_freq: int = 1000) -> None:
        super().__init__()
        self.check_freq = check_freq
        self.last_losses: dict[str, float] = {}

    def _check(self) -> None:
        self._check_losses()
        check_finite(self.model)

    def _check_losses(self) -> None:
        logged = getattr(self.model.logger, "name_to_value", {})
        for key, value in logged.items():
            if is_loss(key) and isinstance(value, (float, int)):
                if not math.isfinite(value):
                    self._fail(f"loss {key} = {value}")
                self.last_losses[key] = float(value)

    def _fail(self, what: str) -> None:
        raise NumericalError(f"training stopped at env step {self.num_timesteps}: {what}")

    def _on_rollout_start(self) -> None:
        # Off-policy "rollouts" are train_freq env steps (DQN: one): scanning every parameter that
        # often took a fifth of a DQN run's time. The logged losses are checked at each one (cheap),
        # the parameters every check_freq calls, and save_checkpoint checks them before writing.
        from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

        if isinstance(self.model, OnPolicyAlgorithm):
            self._check()
        else:
            self._check_losses()

    def _on_step(self) -> bool:
        if self.n_calls % self.check_freq == 0:
            self._check()
        return True

    def _on_training_end(self) -> None:
        self._check()
