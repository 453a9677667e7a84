"""Fault tests: nothing lost, nothing executed.

A killed, interrupted or failing ``policyshare train`` costs at most the work since its last
checkpoint, and ``--resume`` continues it exactly: the same final step, the same logged steps
(no gap, no repeat), the optimizer, the schedules and DQN's replay memory carried on. Bad input
ends with one line on stderr and exit status 2, without a traceback and without writing.

Real processes, real signals, real SB3 on MinAtar; tiny budgets. The faults and bad inputs
tried here are listed in the README's fault table.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import csv_steps, tensorboard_steps
from stable_baselines3.common.callbacks import BaseCallback

from policyshare.callbacks import checkpoint_step, load_replay
from policyshare.cli import main
from policyshare.console import console_logging
from policyshare.logs import events_files, read_events
from policyshare.sb3_files import load_sb3, read_sb3_header
from policyshare.train import train

ROOT = Path(__file__).resolve().parents[1]

#: PPO on MinAtar Breakout with 256 env steps per rollout (4 envs x 64 steps), 4 epochs of 4 minibatches.
PPO = ["--env", "MinAtar/Breakout-v1", "--set", "n_envs=4", "--set", "hyperparams.n_steps=64",
       "--set", "hyperparams.batch_size=64", "--set", "hyperparams.n_epochs=4", "--set", "eval.episodes=1",
       "--set", "eval.final_episodes=2", "--set", "eval.random_episodes=2", "--quiet"]
ROLLOUT = 256
#: DQN on MinAtar Breakout: one env, an update every 4 env steps after 300.
DQN = ["--env", "MinAtar/Breakout-v1", "--algo", "dqn", "--set", "hyperparams.learning_starts=300",
       "--set", "hyperparams.train_freq=4", "--set", "hyperparams.exploration_fraction=0.5",
       "--set", "eval.freq=0", "--set", "eval.final_episodes=2", "--set", "eval.random_episodes=2",
       "--quiet"]


# --------------------------------------------------------------------------------------------
# Helpers


def spawn(args: Sequence[str], log: Path, file_limit: int | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m policyshare ARGS`` with stdout/stderr in ``log``.{out,err}.

    ``file_limit`` sets RLIMIT_FSIZE in the child: a write beyond it fails with EFBIG, as a full
    disk fails with ENOSPC (Python ignores SIGXFSZ, so the write raises instead of killing).
    """
    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = dict(os.environ, PYTHONWARNINGS="ignore")
    with open(log.with_suffix(".out"), "wb") as out, open(log.with_suffix(".err"), "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "policyshare", *args], stdout=out, stderr=err,
                                cwd=ROOT, env=env, preexec_fn=limit)


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> tuple[int, str]:
    """Wait for ``proc``; its exit status and stderr."""
    rc = proc.wait(timeout=timeout)
    return rc, log.with_suffix(".err").read_text()


def wait_for(proc: subprocess.Popen[bytes], log: Path, condition: Callable[[], bool], what: str,
             timeout: float = 240, poll: float = 0.01) -> None:
    """Poll ``condition`` while ``proc`` runs; fail if it ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before {what}:\n"
                        f"{log.with_suffix('.err').read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(poll)


def freeze_when(proc: subprocess.Popen[bytes], log: Path, condition: Callable[[], bool], what: str) -> None:
    """Stop ``proc`` (SIGSTOP) at a moment when ``condition`` holds, judged on the frozen process."""
    while True:
        wait_for(proc, log, condition, what, poll=0.002)
        proc.send_signal(signal.SIGSTOP)
        if condition():
            return
        proc.send_signal(signal.SIGCONT)


def checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("ckpt_*.zip"), key=checkpoint_step)


def newest_step(run: Path) -> int:
    ckpts = checkpoints(run)
    return checkpoint_step(ckpts[-1]) if ckpts else -1


def writing(run: Path) -> bool:
    """Whether a checkpoint (or replay memory) is being written: its temporary file exists."""
    return any((run / "checkpoints").glob(".*.tmp"))


def writing_after(run: Path, step: int) -> bool:
    """Whether a checkpoint is being written and one beyond ``step`` exists."""
    return writing(run) and newest_step(run) > step


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    """Every ``(step, value)`` of ``tag`` in the run's events files, in file order (no purging)."""
    from tensorboard.compat.proto.event_pb2 import Event

    out = []
    for path in events_files(run / "tb"):
        for step, raw in read_events(path):
            out += [(step, v.simple_value) for v in Event.FromString(raw).summary.value if v.tag == tag]
    return out


def steps(run: Path, tag: str) -> list[int]:
    return [s for s, _ in scalars(run, tag)]


def stale_temporaries(run: Path) -> list[Path]:
    return sorted(run.rglob(".*.tmp"))


def assert_checkpoints_sound(run: Path) -> None:
    """Every checkpoint left verifies, loads, and has its replay memory (DQN) intact."""
    found = checkpoints(run)
    assert found, "no checkpoint left"
    for ckpt in found:
        header = read_sb3_header(ckpt)
        model, _ = load_sb3(ckpt)
        assert model.num_timesteps == header["timesteps"] == checkpoint_step(ckpt)
        if header["algo"] == "dqn":
            assert load_replay(model, ckpt, header)
            assert model.replay_buffer.size() == checkpoint_step(ckpt)  # one env, memory not full


def one_line(rc: int, err: str, *fragments: str) -> str:
    """Assert exit status 2 and one line on stderr holding ``fragments``; return the line."""
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Crash(Exception):
    """Stands for a process dying mid-run (in-process tests)."""


class CrashAt(BaseCallback):
    """Raise :class:`Crash` once ``step`` env steps are done."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step:
            raise Crash(self.num_timesteps)
        return True


def overrides(args: Sequence[str]) -> dict[str, Any]:
    from policyshare.config import parse_overrides

    return parse_overrides([args[i + 1] for i, a in enumerate(args) if a == "--set"])


# --------------------------------------------------------------------------------------------
# 1. SIGKILL and SIGTERM mid-run, then --resume: exact steps, curves, optimizer and schedule


def test_sigkill_then_sigterm_then_resume_is_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    total = 12 * ROLLOUT
    args = ["train", *PPO, "--timesteps", str(total), "--run-dir", str(run), "--set", "checkpoint_freq=512",
            "--set", "eval.freq=1024", "--set", "hyperparams.learning_rate=lin_1e-3"]

    # SIGKILL once a checkpoint exists and the run has logged steps beyond it.
    proc = spawn(args, tmp_path / "p1")
    freeze_when(proc, tmp_path / "p1",
                lambda: newest_step(run) > 0 and max(steps(run, "time/fps"), default=0) > newest_step(run),
                "a checkpoint and logged steps beyond it")
    # While it runs (here: stopped), a second process may not write into the same folder.
    assert main([*args, "--resume"]) == 2
    one_line(2, capsys.readouterr().err, "in use by another running process")
    proc.kill()
    proc.wait()
    killed_at = newest_step(run)
    assert max(steps(run, "time/fps")) > killed_at  # steps the resume must not repeat
    assert_checkpoints_sound(run)

    # Resume; SIGTERM once it has made progress: a checkpoint is saved and the run stops.
    proc = spawn([*args, "--resume"], tmp_path / "p2")
    wait_for(proc, tmp_path / "p2", lambda: newest_step(run) > killed_at, "progress after the resume")
    proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc, tmp_path / "p2")
    line = one_line(rc, err, "interrupted (SIGTERM) at env step", "saved", "--resume")
    stopped_at = int(line.split("env step ")[1].split(";")[0])
    assert stopped_at % ROLLOUT == 0 and stopped_at == newest_step(run) > killed_at
    assert_checkpoints_sound(run)

    assert main([*args, "--resume"]) == 0  # the same command, in this process

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["timesteps"] == metrics["timesteps_requested"] == total
    # Logged steps: every rollout once, as an uninterrupted run logs them.
    rollouts = list(range(ROLLOUT, total + 1, ROLLOUT))
    evals = list(range(0, total + 1, 1024))  # from the step-0 evaluation
    assert steps(run, "time/fps") == tensorboard_steps(run, "time/fps") == rollouts
    assert steps(run, "train/loss") == tensorboard_steps(run, "train/loss") == rollouts[1:]
    assert steps(run, "eval/mean_reward") == tensorboard_steps(run, "eval/mean_reward") == evals
    assert json.loads((run / "evaluations.json").read_text())["timesteps"] == evals
    assert csv_steps(run) == sorted(rollouts + evals)  # an eval row and a rollout row per eval step
    # Schedule position: the update after the rollout ending at step t - 256 used lr(1 - (t-256)/total).
    for t, lr in scalars(run, "train/learning_rate"):
        assert lr == pytest.approx(1e-3 * (1 - (t - ROLLOUT) / total), rel=1e-5), t
    # Optimizer state: Adam counted every minibatch step of all 12 updates (4 epochs x 4 minibatches).
    model, _ = load_sb3(run / "model.zip")
    assert model._n_updates == 12 * 4
    assert {int(s["step"]) for s in model.policy.optimizer.state_dict()["state"].values()} == {12 * 4 * 4}
    assert len(json.loads((run / "meta.json").read_text())["invocations"]) == 3
    assert not stale_temporaries(run)


# --------------------------------------------------------------------------------------------
# 2. Signals during checkpoint writes leave loadable checkpoints


def test_sigint_during_a_checkpoint_write(tmp_path: Path) -> None:
    """Ctrl-C while a checkpoint is written: the write completes, a checkpoint is saved, resume ends exactly."""
    run = tmp_path / "run"
    args = ["train", *DQN, "--timesteps", "1000", "--run-dir", str(run), "--set", "checkpoint_freq=200",
            "--set", "hyperparams.buffer_size=20000"]
    proc = spawn(args, tmp_path / "p1")
    freeze_when(proc, tmp_path / "p1", lambda: writing(run), "a checkpoint write")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    rc, err = finish(proc, tmp_path / "p1")
    one_line(rc, err, "interrupted (SIGINT)", "saved")
    assert_checkpoints_sound(run)
    assert not stale_temporaries(run)
    assert main([*args, "--resume"]) == 0
    assert json.loads((run / "metrics.json").read_text())["timesteps"] == 1000


@pytest.mark.slow
def test_repeated_signals_during_checkpoint_writes(tmp_path: Path) -> None:
    """SIGKILL, SIGTERM and a double SIGTERM, each while a checkpoint is being written."""
    run = tmp_path / "run"
    total = 3000
    args = ["train", *DQN, "--timesteps", str(total), "--run-dir", str(run), "--set", "checkpoint_freq=200",
            "--set", "hyperparams.buffer_size=20000"]

    proc = spawn(args, tmp_path / "p1")
    freeze_when(proc, tmp_path / "p1", lambda: writing(run) and newest_step(run) > 0,
                "a checkpoint write after the first checkpoint")
    proc.kill()
    proc.wait()
    assert stale_temporaries(run)  # the torn write, never renamed over a checkpoint
    assert_checkpoints_sound(run)

    for round_, signals in enumerate([[signal.SIGTERM], [signal.SIGTERM, signal.SIGTERM]], start=2):
        log = tmp_path / f"p{round_}"
        before = newest_step(run)
        proc = spawn([*args, "--resume"], log)
        freeze_when(proc, log, functools.partial(writing_after, run, before), "a checkpoint write after the resume")
        proc.send_signal(signals[0])
        proc.send_signal(signal.SIGCONT)
        for s in signals[1:]:
            proc.send_signal(s)
        rc, err = finish(proc, log)
        one_line(rc, err, "interrupted")
        assert "saved" in err or "interrupted again" in err
        assert_checkpoints_sound(run)
        assert not stale_temporaries(run)

    rc, err = finish(spawn([*args, "--resume"], tmp_path / "p4"), tmp_path / "p4")
    assert rc == 0, err
    assert json.loads((run / "metrics.json").read_text())["timesteps"] == total
    for tag in ("rollout/exploration_rate", "train/loss"):
        logged = steps(run, tag)
        assert logged == sorted(set(logged)), f"{tag} repeats steps"
    for t, eps in scalars(run, "rollout/exploration_rate"):
        assert eps == pytest.approx(max(0.1, 1 - 0.9 * t / (0.5 * total)), abs=1e-5), t


def test_ctrl_c_after_training_resumes_from_the_final_model(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", *PPO, "--timesteps", "1024", "--run-dir", str(run), "--set", "eval.freq=768",
            "--set", "eval.final_episodes=20", "--set", "checkpoint_freq=512"]
    proc = spawn(args, tmp_path / "p1")
    freeze_when(proc, tmp_path / "p1",
                lambda: (run / "model.zip").is_file() and not (run / "metrics.json").is_file(),
                "the final model, before metrics.json")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    rc, err = finish(proc, tmp_path / "p1")
    assert rc == 130 and err.strip().splitlines()[-1] == (
        "policyshare train: interrupted (Ctrl-C); rerun the same command with --resume to continue"), err
    assert "Traceback" not in err and not (run / "metrics.json").exists()
    assert main([*args, "--resume"]) == 0
    assert json.loads((run / "metrics.json").read_text())["timesteps"] == 1024
    assert json.loads((run / "evaluations.json").read_text())["timesteps"] == [0, 768, 1024]
    assert json.loads((run / "timing.json").read_text())["env_steps_trained"] == 0  # nothing retrained


# --------------------------------------------------------------------------------------------
# 3. DQN: replay memory, exploration schedule and target updates continue


def test_dqn_resume_keeps_replay_memory_and_schedule(tmp_path: Path) -> None:
    run = tmp_path / "run"
    total = 1600
    args = [*DQN, "--set", "checkpoint_freq=400", "--set", "hyperparams.buffer_size=5000"]
    with pytest.raises(Crash):
        train("MinAtar/Breakout-v1", "dqn", timesteps=total, run_dir=run, overrides=overrides(args),
              extra_callbacks=[CrashAt(1000)])
    assert newest_step(run) == 800 and max(steps(run, "rollout/exploration_rate")) > 800
    result = train("MinAtar/Breakout-v1", "dqn", timesteps=total, run_dir=run, overrides=overrides(args),
                   resume=True)
    assert result.metrics["timesteps"] == total
    assert_checkpoints_sound(run)  # the memory of ckpt_1200 holds all 1200 transitions, not 400
    assert result.model.replay_buffer.size() == total
    eps = scalars(run, "rollout/exploration_rate")
    assert [s for s, _ in eps] == sorted({s for s, _ in eps})
    for t, e in eps:
        assert e == pytest.approx(max(0.1, 1 - 0.9 * t / (0.5 * total)), abs=1e-5), t
    # Gradient updates: one every 4 env steps from step 300 on, none lost or repeated.
    assert result.model._n_updates == len(range(304, total + 1, 4))


# --------------------------------------------------------------------------------------------
# 4. A failed write: one line, the previous checkpoint intact


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*PPO, "--set", "checkpoint_freq=512", "--set", "eval.freq=0"]
    with pytest.raises(Crash):
        train("MinAtar/Breakout-v1", timesteps=1280, run_dir=run, overrides=overrides(args),
              extra_callbacks=[CrashAt(800)])
    assert [checkpoint_step(c) for c in checkpoints(run)] == [512]
    before = snapshot(run / "checkpoints")
    size = (run / "checkpoints" / "ckpt_512.zip").stat().st_size
    # Files may not grow beyond half a checkpoint: the next checkpoint cannot be written.
    log = tmp_path / "p"
    rc, err = finish(spawn(["train", *args, "--timesteps", "1280", "--run-dir", str(run), "--resume"], log,
                           file_limit=size // 2), log)
    one_line(rc, err, "could not write", "ckpt_1024.zip", "File too large", "--resume", "previous file is kept")
    assert snapshot(run / "checkpoints") == before
    assert_checkpoints_sound(run)
    assert not stale_temporaries(run)
    # Space again: the resume goes on from the checkpoint that was kept.
    result = train("MinAtar/Breakout-v1", timesteps=1280, run_dir=run, overrides=overrides(args),
                   resume=True)
    assert result.metrics["timesteps"] == 1280


def test_failed_log_write_is_one_line(tmp_path: Path) -> None:
    """TensorBoard writes from a thread; its failure is reported once, by the command, without a traceback."""
    log = tmp_path / "p"
    rc, err = finish(spawn(["train", *PPO, "--timesteps", "2048", "--run-dir", str(tmp_path / "r"),
                            "--set", "eval.freq=0", "--set", "checkpoint_freq=0"], log, file_limit=1200), log)
    one_line(rc, err, "could not write the logs in", "File too large", "--resume")


# --------------------------------------------------------------------------------------------
# 5. Numerical faults


def test_infinite_loss_stops_with_step_and_loss_and_keeps_the_good_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    rc = main(["train", *DQN, "--timesteps", "2000", "--run-dir", str(run), "--set", "checkpoint_freq=100",
               "--set", "hyperparams.buffer_size=2000", "--set", "hyperparams.learning_rate=1e30"])
    line = one_line(rc, capsys.readouterr().err, "training stopped at env step", "train/loss",
                    "last good checkpoint", "ckpt_300.zip")
    assert "nan" in line or "inf" in line
    assert_checkpoints_sound(run)
    model, _ = load_sb3(run / "checkpoints" / "ckpt_300.zip")
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    assert not (run / "model.zip").exists() and not (run / "metrics.json").exists()


def test_diverging_policy_outputs_stop_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # PPO with an absurd learning rate: logits overflow inside an update (SB3 would raise a ValueError).
    run = tmp_path / "run"
    rc = main(["train", *PPO, "--timesteps", "1024", "--run-dir", str(run), "--set", "eval.freq=0",
               "--set", "hyperparams.learning_rate=1e30"])
    one_line(rc, capsys.readouterr().err, f"training stopped at env step {ROLLOUT}", "NaN or infinite",
             "largest parameter magnitude", "no checkpoint was written yet")


# --------------------------------------------------------------------------------------------
# 6. Determinism


def test_same_command_same_metrics(tmp_path: Path) -> None:
    """One run in a fresh process, one in this one (after other training): byte-identical results."""
    def command(run: Path) -> list[str]:
        return ["train", *PPO, "--timesteps", "1024", "--run-dir", str(run), "--set", "eval.freq=512", "--seed", "3"]

    rc, err = finish(spawn(command(tmp_path / "a"), tmp_path / "a"), tmp_path / "a")
    assert rc == 0, err
    assert main(command(tmp_path / "b")) == 0
    for name in ("metrics.json", "evaluations.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.slow
def test_same_command_same_metrics_dqn(tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        run = tmp_path / name
        rc, err = finish(spawn(["train", *DQN, "--timesteps", "1500", "--run-dir", str(run),
                                "--set", "hyperparams.buffer_size=2000", "--set", "eval.freq=500"],
                               tmp_path / name), tmp_path / name)
        assert rc == 0, err
        outputs.append([(run / f).read_bytes() for f in ("metrics.json", "evaluations.json")])
    assert outputs[0] == outputs[1]


@pytest.mark.slow
def test_resumes_from_one_checkpoint_agree(tmp_path: Path) -> None:
    """A resumed run is reproducible too: two resumes of copies of one killed run give the same metrics."""
    import shutil

    args = [*PPO, "--set", "checkpoint_freq=512", "--set", "eval.freq=512"]
    with pytest.raises(Crash):
        train("MinAtar/Breakout-v1", timesteps=2048, run_dir=tmp_path / "a", overrides=overrides(args),
              extra_callbacks=[CrashAt(1100)])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    outputs = []
    for name in ("a", "b"):
        log = tmp_path / f"{name}.log"
        rc, err = finish(spawn(["train", *args, "--timesteps", "2048", "--run-dir", str(tmp_path / name),
                                "--resume"], log), log)
        assert rc == 0, err
        outputs.append((tmp_path / name / "metrics.json").read_bytes())
    assert outputs[0] == outputs[1]


# --------------------------------------------------------------------------------------------
# 7. Resume faults


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    args = [*PPO, "--set", "checkpoint_freq=256", "--set", "eval.freq=0"]
    with pytest.raises(Crash):
        train("MinAtar/Breakout-v1", timesteps=1024, run_dir=run, overrides=overrides(args),
              extra_callbacks=[CrashAt(800)])
    newest = checkpoints(run)[-1]
    assert checkpoint_step(newest) == 768
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped bit pattern inside the policy weights
    newest.write_bytes(bytes(raw))
    for safe in ([], ["--safe"]):
        rc = main(["evaluate", str(newest), "--episodes", "1", *safe])
        one_line(rc, capsys.readouterr().err, "corrupt", "use an earlier checkpoint")
    with console_logging():  # the library logs; the command shows it (notes on stderr, progress on stdout)
        result = train("MinAtar/Breakout-v1", timesteps=1024, run_dir=run, overrides=overrides(args), resume=True)
    out = capsys.readouterr()
    assert f"skipping {newest}" in out.err and "corrupt" in out.err
    assert "resuming" in out.out and "at env step 512" in out.out
    assert result.metrics["timesteps"] == 1024


@pytest.fixture
def crashed_dqn(tmp_path: Path) -> Path:
    """An unfinished DQN run with checkpoints at 200 and 400."""
    run = tmp_path / "dqn"
    with pytest.raises(Crash):
        train("MinAtar/Breakout-v1", "dqn", timesteps=800, run_dir=run,
              overrides=overrides([*DQN, "--set", "checkpoint_freq=200", "--set", "hyperparams.buffer_size=1000"]),
              extra_callbacks=[CrashAt(500)])
    return run


def dqn_resume_args(run: Path) -> list[str]:
    return ["train", *DQN, "--timesteps", "800", "--run-dir", str(run), "--set", "checkpoint_freq=200",
            "--set", "hyperparams.buffer_size=1000", "--resume"]


def test_corrupt_replay_memory_is_refused(crashed_dqn: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replay = crashed_dqn / "checkpoints" / "replay_400.pkl"
    raw = bytearray(replay.read_bytes())
    raw[-100] ^= 0x01
    replay.write_bytes(bytes(raw))
    before = snapshot(crashed_dqn / "checkpoints")
    rc = main(dqn_resume_args(crashed_dqn))
    one_line(rc, capsys.readouterr().err, "replay memory", "replay_400.pkl", "corrupt", "delete ckpt_400.zip")
    assert snapshot(crashed_dqn / "checkpoints") == before
    replay.unlink()
    rc = main(dqn_resume_args(crashed_dqn))
    one_line(rc, capsys.readouterr().err, "replay_400.pkl", "is missing")


def test_resume_with_other_settings_is_refused(crashed_dqn: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(crashed_dqn)
    for change, named in ((["--set", "hyperparams.learning_rate=1e-3"], "hyperparams.learning_rate"),
                          (["--timesteps", "900"], "timesteps: 800 then, 900 now"),
                          (["--seed", "1"], "seed")):
        rc = main([*dqn_resume_args(crashed_dqn), *change])
        one_line(rc, capsys.readouterr().err, "cannot resume", named, "meta.json")
    assert snapshot(crashed_dqn) == before
    # Settings that do not change results may differ.
    assert main([*dqn_resume_args(crashed_dqn), "--set", "device=cpu", "--set", "progress_bar=false"]) == 0


# --------------------------------------------------------------------------------------------
# 8. Bad inputs: one line, exit status 2, nothing written

BAD_YAML = {
    "malformed": ("default:\n  n_envs: [1\n", "malformed YAML at line 2"),
    "not_a_mapping": ("- 1\n- 2\n", "expected a mapping keyed by env id"),
    "wrong_type": ("default: {n_envs: eight}\n", "n_envs: expected an integer"),
    "unknown_key": ("default: {timestep: 5}\n", "unknown key 'timestep' (did you mean 'timesteps'?)"),
    "negative_timesteps": ("default: {timesteps: -5}\n", "timesteps must be > 0"),
}

BAD_SETS = {
    "wrong_type_int": (["eval.freq=often"], "eval.freq: expected an integer"),
    "wrong_type_bool": (["progress_bar=maybe"], "expected true or false"),
    "wrong_type_float": (["hyperparams.gamma=high"], "gamma: expected a number"),
    "unknown_section_key": (["eval.frequency=5"], "unknown key 'frequency'"),
    "unknown_hyperparam": (["hyperparams.n_step=64"], "did you mean 'n_steps'"),
    "hyperparam_at_top_level": (["gamma=0.9"], "'gamma' is a hyper-parameter of PPO: put it under hyperparams"),
    "negative_timesteps": (["timesteps=-100"], "timesteps must be > 0"),
    "gamma_above_1": (["hyperparams.gamma=1.5"], "gamma must lie in [0, 1]"),
    "zero_envs": (["n_envs=0"], "n_envs must be > 0"),
    "negative_checkpoint_freq": (["checkpoint_freq=-1"], "checkpoint_freq must be >= 0"),
    "zero_eval_episodes": (["eval.episodes=0"], "episodes must be > 0"),
    "negative_learning_rate": (["hyperparams.learning_rate=-1e-3"], "learning_rate"),
    "batch_beyond_rollout": (["hyperparams.batch_size=100000"], "exceeds the rollout size"),
    "no_equals_sign": (["n_envs"], "expected key=value"),
}


@pytest.mark.parametrize("name", sorted(BAD_YAML))
def test_bad_config_file(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, expected = BAD_YAML[name]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    rc = main(["train", "--env", "MinAtar/Breakout-v1", "--config", str(cfg), "--run-dir", str(tmp_path / "r")])
    one_line(rc, capsys.readouterr().err, expected, str(cfg))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", sorted(BAD_SETS))
def test_bad_override(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sets, expected = BAD_SETS[name]
    rc = main(["train", "--env", "MinAtar/Breakout-v1", "--run-dir", str(tmp_path / "r"),
               *[a for s in sets for a in ("--set", s)]])
    one_line(rc, capsys.readouterr().err, expected)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--timesteps", "-5"], "--timesteps must be > 0"),
    (["--timesteps", "0"], "--timesteps must be > 0"),
    (["--algo", "dqn", "--set", "hyperparams.exploration_final_eps=1.5"], "exploration_final_eps must lie in [0, 1]"),
    (["--algo", "dqn", "--set", "hyperparams.exploration_initial_eps=-0.1"],
     "exploration_initial_eps must lie in [0, 1]"),
    (["--resume"], "nothing to resume"),
])
def test_bad_train_arguments(args: list[str], expected: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["train", "--env", "MinAtar/Breakout-v1", "--run-dir", str(tmp_path / "r"), *args])
    one_line(rc, capsys.readouterr().err, expected)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("sets", "expected"), [
    (["tau=0"], "tau must be > 0"),
    (["tau=-1"], "tau must be > 0"),
    (["epsilon=1.5"], "epsilon must lie in [0, 1]"),
    (["epsilon=-0.1"], "epsilon must lie in [0, 1]"),
])
def test_bad_distill_values(sets: list[str], expected: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["distill", "--teachers", str(tmp_path / "missing.zip"), "--run-dir", str(tmp_path / "r"),
               *[a for s in sets for a in ("--set", s)]])
    one_line(rc, capsys.readouterr().err, expected)
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------------------------
# 9. Every algorithm, option and failure path of train / transfer / evaluate

#: A few hundred env steps, no periodic evaluation or checkpoint, one-episode evaluations.
QUICK = ["--set", "eval.freq=0", "--set", "eval.final_episodes=1", "--set", "eval.random_episodes=1",
         "--set", "checkpoint_freq=0", "--quiet"]
QUICK_PPO = ["--timesteps", "128", "--set", "n_envs=2", "--set", "hyperparams.n_steps=32",
             "--set", "hyperparams.batch_size=64", *QUICK]
QUICK_DQN = ["--algo", "dqn", "--timesteps", "128", "--set", "n_envs=1", "--set", "hyperparams.learning_starts=32",
             "--set", "hyperparams.buffer_size=500", *QUICK]
#: transfer needs periodic evaluation: one every 1000 env steps, more than the budget.
QUICK_TRANSFER = ["--set", "eval.freq=1000", "--set", "eval.episodes=1"]


@pytest.fixture(scope="module")
def pad_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 128-step PPO run on Breakout (pad alignment, ReLU): its trunk.safetensors is the source."""
    run = tmp_path_factory.mktemp("source") / "pad"
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--run-dir", str(run), *QUICK_PPO]) == 0
    return run


def trunk_state(trunk: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trunk.state_dict().items()}


def test_dqn_trains_and_transfers_from_a_trunk_file(pad_run: Path, tmp_path: Path) -> None:
    """DQN keeps its extractors on q_net and q_net_target: both take the trunk, and both stay frozen."""
    from policyshare.algos import features_extractors
    from policyshare.checkpoints import load_trunk

    source = pad_run / "trunk.safetensors"
    run = tmp_path / "dqn"
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--init-trunk", str(source), "--freeze-trunk",
                 "--run-dir", str(run), *QUICK_DQN]) == 0
    model, _ = load_sb3(run / "model.zip")
    extractors = features_extractors(model)
    assert [ex is model.q_net.features_extractor for ex in extractors] == [True, False]
    assert extractors[1] is model.q_net_target.features_extractor
    expected = load_trunk(source).state_dict()
    for ex in extractors:  # trained, yet bit for bit the file's trunk
        assert ex.trunk.state_dict().keys() == expected.keys()
        assert all(torch.equal(ex.trunk.state_dict()[k], v) for k, v in expected.items())

    root = tmp_path / "transfer"
    assert main(["transfer", "--trunk", str(source), "--env", "MinAtar/Asterix-v1", "--seeds", "0",
                 "--run-dir", str(root), *QUICK_DQN, *QUICK_TRANSFER]) == 0
    assert (root / "metrics.json").is_file() and (root / "finetune__s0" / "metrics.json").is_file()


def test_every_extractor_of_a_policy_with_separate_actor_and_critic_takes_the_trunk(pad_run: Path) -> None:
    from stable_baselines3 import PPO

    from policyshare.algos import TrunkConfig, extractor_kwargs, features_extractors, load_trunk_into
    from policyshare.checkpoints import load_trunk
    from policyshare.envs import check_env_id, make_vec_env
    from policyshare.trunks import TrunkExtractor

    suite = check_env_id("MinAtar/Breakout-v1")
    env = make_vec_env("MinAtar/Breakout-v1", 1, 0)
    try:
        kwargs = extractor_kwargs(TrunkConfig(), suite)
        model = PPO("CnnPolicy", env, n_steps=32, batch_size=32, policy_kwargs={
            "features_extractor_class": TrunkExtractor, "features_extractor_kwargs": kwargs,
            "share_features_extractor": False})
        actor, critic = features_extractors(model)
        assert actor is model.policy.pi_features_extractor and critic is model.policy.vf_features_extractor
        load_trunk_into(model, pad_run / "trunk.safetensors")
    finally:
        env.close()
    expected = load_trunk(pad_run / "trunk.safetensors").state_dict()
    for ex in (actor, critic):
        assert all(torch.equal(ex.trunk.state_dict()[k], v) for k, v in expected.items())


def test_transfer_shorter_than_one_evaluation_interval_gives_a_result(
        pad_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """128 env steps per run, evaluations every 1000: every curve is the step-0 and the last evaluation."""
    root = tmp_path / "short"
    assert main(["transfer", "--trunk", str(pad_run / "trunk.safetensors"), "--env", "MinAtar/Asterix-v1",
                 "--seeds", "0", "--run-dir", str(root), *QUICK_PPO, *QUICK_TRANSFER]) == 0
    for name in ("finetune__s0", "scratch__s0"):
        assert json.loads((root / name / "evaluations.json").read_text())["timesteps"] == [0, 128]
    summary = json.loads((root / "summary.json").read_text())
    assert set(summary["transfer_percent"]["per_seed"]) == {"0"}


def test_nan_explained_variance_is_not_a_numerical_fault(tmp_path: Path) -> None:
    """A2C with TRec on Asterix: returns that do not vary make SB3 log explained variance NaN."""
    import math

    class ExplainedVariance(BaseCallback):
        """The ``train/explained_variance`` SB3 logged for each update."""

        def __init__(self) -> None:
            super().__init__()
            self.values: list[float] = []

        def _on_rollout_start(self) -> None:
            value = self.model.logger.name_to_value.get("train/explained_variance")
            if value is not None:
                self.values.append(float(value))

        def _on_step(self) -> bool:
            return True

    seen = ExplainedVariance()
    result = train("MinAtar/Asterix-v1", "a2c", timesteps=400, run_dir=tmp_path / "a2c",
                   overrides=overrides(["--set", "trunk.activation=trec", *QUICK]), extra_callbacks=[seen])
    assert any(math.isnan(v) for v in seen.values)  # the case this test is about did occur
    assert result.metrics["timesteps"] == 400


def test_trunk_of_another_input_alignment_is_refused_before_anything_is_written(
        pad_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = str(pad_run / "trunk.safetensors")
    stem = ["--set", "trunk.alignment=stem"]
    for command in (["train", "--init-trunk", source, "--env", "MinAtar/Breakout-v1", *QUICK_PPO],
                    ["transfer", "--trunk", source, "--env", "MinAtar/Asterix-v1", *QUICK_PPO, *QUICK_TRANSFER]):
        rc = main([*command, "--run-dir", str(tmp_path / "r"), *stem])
        one_line(rc, capsys.readouterr().err, "trained with 'pad' input alignment, the network uses 'stem'",
                 "--set trunk.alignment=pad")
        assert not (tmp_path / "r").exists()


def test_refused_init_trunk_writes_nothing_so_the_corrected_command_runs(
        pad_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from policyshare.checkpoints import save_trunk
    from policyshare.trunks import Trunk, TrunkSpec

    narrow = save_trunk(Trunk(TrunkSpec("minatar", 4, 10, 10)), tmp_path / "narrow.safetensors")
    run = tmp_path / "run"
    args = ["train", "--env", "MinAtar/Breakout-v1", "--run-dir", str(run), *QUICK_PPO]
    one_line(main([*args, "--init-trunk", str(narrow)]), capsys.readouterr().err, "(16, 4, 3, 3) in the file")
    assert not run.exists()
    # So is a network that cannot be built for the env.
    one_line(main([*args, "--set", "trunk.spec=nature"]), capsys.readouterr().err, "too small")
    assert not run.exists()
    assert main([*args, "--init-trunk", str(pad_run / "trunk.safetensors")]) == 0


def test_a_trunk_file_of_another_spec_suggests_only_a_fix_that_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from policyshare.checkpoints import save_trunk
    from policyshare.trunks import Trunk, TrunkSpec

    args = ["train", "--env", "MinAtar/Breakout-v1", "--run-dir", str(tmp_path / "r"), *QUICK_PPO]
    # An Atari trunk cannot read MinAtar's 10x10 input: no setting would make it fit.
    nature = save_trunk(Trunk(TrunkSpec("nature", 4, 84, 84)), tmp_path / "nature.safetensors")
    line = one_line(main([*args, "--init-trunk", str(nature)]), capsys.readouterr().err,
                    "holds a 'nature' trunk", "4x84x84", "10x10x10")
    assert "set trunk.spec" not in line
    # A deeper MinAtar trunk can: the suggested setting is followed and the run finishes.
    deep = save_trunk(Trunk(TrunkSpec("minatar_deep", 10, 10, 10)), tmp_path / "deep.safetensors")
    one_line(main([*args, "--init-trunk", str(deep)]), capsys.readouterr().err,
             "holds a 'minatar_deep' trunk", "set trunk.spec: minatar_deep")
    assert main([*args, "--init-trunk", str(deep), "--set", "trunk.spec=minatar_deep"]) == 0


def test_trunk_from_a_student_file_or_an_sb3_zip(pad_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from policyshare.distill import build_student, load_distill_config, save_student, task_info
    from policyshare.envs import load_suite

    torch.manual_seed(0)
    student = build_student([task_info("MinAtar/Breakout-v1"), task_info("MinAtar/Asterix-v1")],
                            load_suite("minatar"), load_distill_config())
    path = save_student(student, tmp_path / "student.safetensors", {"run": "test"})
    # A student file gives its shared trunk (here frozen, so the run ends with it bit for bit).
    run = tmp_path / "from_student"
    assert main(["train", "--env", "MinAtar/Seaquest-v1", "--init-trunk", str(path), "--freeze-trunk",
                 "--run-dir", str(run), *QUICK_PPO]) == 0
    model, _ = load_sb3(run / "model.zip")
    got = model.policy.features_extractor.trunk.state_dict()
    assert all(torch.equal(got[k], v) for k, v in student.trunk.state_dict().items())
    # An SB3 zip is named as one, with the trunk file of its run.
    rc = main(["transfer", "--trunk", str(pad_run / "model.zip"), "--env", "MinAtar/Asterix-v1",
               "--run-dir", str(tmp_path / "r"), *QUICK_PPO, *QUICK_TRANSFER])
    one_line(rc, capsys.readouterr().err, "is an SB3 zip", f"pass the trunk.safetensors of its run folder "
             f"({pad_run / 'trunk.safetensors'})")
    assert not (tmp_path / "r").exists()


def test_evaluate_checks_the_video_path_first_and_names_run_folders(
        pad_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope" / "deeper" / "ep.gif"
    # Checked before the checkpoint is even read (here it does not exist).
    one_line(main(["evaluate", str(tmp_path / "missing.zip"), "--video", str(missing)]), capsys.readouterr().err,
             f"folder {missing.parent} does not exist")
    assert not (tmp_path / "nope").exists()
    one_line(main(["evaluate", str(tmp_path / "missing.zip"), "--video", str(tmp_path / "ep.mp4")]),
             capsys.readouterr().err, "only animated GIF", ".gif")
    # An experiment folder (progressive DIR/s<seed>, transfer <method>__s<seed>) names its run folders.
    exp = tmp_path / "exp"
    for seed in ("s0", "s1"):
        (exp / seed).mkdir(parents=True)
        shutil.copy(pad_run / "model.zip", exp / seed / "model.zip")
    one_line(main(["evaluate", str(exp), "--task", "MinAtar/Breakout-v1"]), capsys.readouterr().err,
             f"pass one of its run folders: {exp / 's0'}, {exp / 's1'}")


def test_printed_tensorboard_command_is_shell_quoted(pad_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    verbose = [a for a in QUICK_PPO if a != "--quiet"] + ["--set", "progress_bar=false"]
    run = tmp_path / "my runs" / "it's one"
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--run-dir", str(run), *verbose]) == 0
    root = tmp_path / "my transfer"
    assert main(["transfer", "--trunk", str(pad_run / "trunk.safetensors"), "--env", "MinAtar/Breakout-v1",
                 "--run-dir", str(root), *verbose, *QUICK_TRANSFER, "--set", "eval.freq=64"]) == 0
    out = capsys.readouterr().out
    commands = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("TensorBoard:")]
    assert [shlex.split(c) for c in commands] == [["tensorboard", "--logdir", str(run / "tb")],
                                                  ["tensorboard", "--logdir", str(root)]]
