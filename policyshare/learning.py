"""One run's learning step: SB3's ``model.learn`` with the run's callbacks, signals and diagnosis.

:func:`learn` is the middle step of :func:`policyshare.train.train` (prepare → learn → finish):
it assembles the callbacks of :mod:`policyshare.callbacks` (finite-value guard, periodic
evaluation, atomic checkpoints), lets a first SIGINT/SIGTERM save a checkpoint and stop
(:func:`stop_on_signals`), and turns what stopped it into one line that says what to do next — a
signal (resume with ``--resume``) or a diverged network (:func:`numerical_advice`). Units: env
steps summed over the parallel envs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from policyshare.callbacks import (
    AtomicCheckpoint,
    FiniteGuard,
    Interrupt,
    PeriodicEvaluation,
    TrainingInterrupted,
    checkpoint_step,
)
from policyshare.errors import NumericalError, UserError
from policyshare.evaluate import EVAL_SEED_OFFSET, EvalResult
from policyshare.runs import RunFolder

log = logging.getLogger(__name__)


class _Interrupted(Exception):
    """A second SIGINT/SIGTERM: stop at once."""


def latest_checkpoint(run: RunFolder) -> Path | None:
    """The newest ``ckpt_<step>.zip`` of a run, or ``None``."""
    ckpts = sorted(run.checkpoints_dir.glob("ckpt_*.zip"), key=checkpoint_step)
    return ckpts[-1] if ckpts else None


def learn(model: Any, run: RunFolder, *, env_id: str, algo: str, seed: int, header: dict[str, Any],
          target: int, from_checkpoint: bool, eval_freq: int, eval_episodes: int, checkpoint_freq: int,
          progress_bar: bool, extra_callbacks: Sequence[Any] = (),
          on_evaluation: Callable[[int, EvalResult], None] | None = None) -> tuple[Any, float, int]:
    """``model.learn`` up to env step ``target`` with the run's callbacks: the finite-value guard,
    periodic evaluation (every ``eval_freq`` env steps, ``eval_episodes`` episodes; 0 turns it off)
    and atomic checkpoints (every ``checkpoint_freq`` env steps); a stop requested by SIGINT/SIGTERM
    saves a checkpoint first (:func:`stop_on_signals`).

    Args:
        model: the SB3 model, new or loaded from a checkpoint (``from_checkpoint``: its step count
            continues).
        run: the open run folder.
        env_id, algo, seed: the run's; evaluation uses ``seed + 10000``.
        header: what every SB3 zip of the run records.
        target: the env step the run ends on (whole rollouts).
        progress_bar: draw SB3's progress bar.
        extra_callbacks: SB3 callbacks added to the run's own.
        on_evaluation: called with ``(env step, result)`` after every periodic evaluation.

    Returns:
        ``(periodic evaluator or None, wall-clock seconds, env steps trained)``.

    Raises:
        UserError: stopped by a signal (naming the checkpoint to resume from).
        NumericalError: the network diverged (naming the step, the losses, the last good checkpoint).
    """
    guard = FiniteGuard()
    callbacks: list[Any] = [guard, *extra_callbacks]
    evaluator = None
    if eval_freq > 0:
        evaluator = PeriodicEvaluation(env_id, eval_freq, eval_episodes,
                                       seed + EVAL_SEED_OFFSET, run.path / "evaluations.json",
                                       run.path / "best_model.zip", header, on_evaluation)
        callbacks.append(evaluator)
    interrupt = Interrupt()
    checkpointer = AtomicCheckpoint(run.checkpoints_dir, checkpoint_freq, header,
                                    save_replay_buffer=algo == "dqn", interrupt=interrupt)
    callbacks.append(checkpointer)
    remaining = target - model.num_timesteps  # whole rollouts: the progress bar ends at its total
    start_step = int(model.num_timesteps)
    started = time.perf_counter()
    try:
        with stop_on_signals(interrupt):
            if remaining > 0:
                model.learn(remaining, callback=callbacks, reset_num_timesteps=not from_checkpoint,
                            progress_bar=progress_bar, tb_log_name="")
            if interrupt.signal is not None:  # arrived during the last update: training is complete
                checkpointer.init_callback(model)
                raise TrainingInterrupted(interrupt.signal, checkpointer.save(), model.num_timesteps)
    except TrainingInterrupted as e:
        raise UserError(f"interrupted ({e.signal}) at env step {e.step}; saved {e.path}; continue "
                        "with the same command and --resume") from None
    except (_Interrupted, KeyboardInterrupt) as e:
        last = latest_checkpoint(run)
        raise UserError(f"interrupted again ({e or 'SIGINT'}) at env step {model.num_timesteps} "
                        f"before a checkpoint was saved; the last checkpoint is "
                        f"{last or 'none (the run restarts)'}; continue with the same command and "
                        "--resume") from None
    except NumericalError as e:
        raise NumericalError(numerical_advice(str(e), run)) from None
    except (ValueError, RuntimeError) as e:
        # A policy whose outputs overflowed fails inside SB3 (e.g. Categorical(logits=nan)).
        if not _diverged(model, e):
            raise
        losses = ", ".join(f"{k} = {v:.4g}" for k, v in sorted(guard.last_losses.items())
                           if "loss" in k) or "none logged yet"
        raise NumericalError(numerical_advice(
            f"training stopped at env step {model.num_timesteps}: the network's outputs became NaN "
            f"or infinite during an update (largest parameter magnitude {_max_abs(model):.3g}; last "
            f"losses: {losses})", run)) from None
    return evaluator, time.perf_counter() - started, int(model.num_timesteps) - start_step


@contextmanager
def stop_on_signals(interrupt: Interrupt) -> Iterator[None]:
    """While the block runs, a first SIGINT/SIGTERM asks ``interrupt`` to save and stop at the next
    step; a second raises :class:`_Interrupted` at once.

    Signal handlers can only be set in the main thread; a run inside a worker thread (a Ray Tune
    trial) is stopped by its executor instead, and resumes from its last checkpoint.
    """
    def _request_stop(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if interrupt.signal is not None:  # a second signal: stop now, without saving
            raise _Interrupted(name)
        interrupt.request(name)
        # INFO (stdout, hidden by -q): stderr keeps the one line that ends the command.
        log.info(f"\n{name}: saving a checkpoint and stopping (send it again to stop at once, without saving)")

    in_main = threading.current_thread() is threading.main_thread()
    previous = ({s: signal.signal(s, _request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
                if in_main else {})
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def numerical_advice(message: str, run: RunFolder) -> str:
    """``message`` and what to do next: resume from the last good checkpoint, or start again."""
    last = latest_checkpoint(run)
    kept = (f"the last good checkpoint {last} is kept (continue from it with --resume, or lower "
            "the learning rate in a new run)" if last is not None else
            "no checkpoint was written yet; lower the learning rate and start again")
    return f"{message}; {kept}"


def _max_abs(model: Any) -> float:
    """The largest parameter magnitude of the policy."""
    return max((float(p.detach().abs().max()) for p in model.policy.parameters() if p.numel()),
               default=0.0)


def _diverged(model: Any, error: BaseException) -> bool:
    """Whether ``error`` comes from a diverged network rather than from a bug."""
    msg = str(error).lower()
    if "invalid values" in msg or ("nan" in msg and "inf" in msg):
        return True
    return any(not torch.isfinite(p).all() for p in model.policy.parameters())


__all__ = ["learn", "latest_checkpoint", "numerical_advice", "stop_on_signals"]
