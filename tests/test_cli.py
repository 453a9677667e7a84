"""The command line: smoke tests per command, and every bad input → one line, exit 2, nothing lost."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
from conftest import TINY, assert_user_error, run_cli

from policyshare.checkpoints import save_trunk
from policyshare.trunks import Trunk, TrunkSpec


def snapshot(folder: Path) -> dict[str, str]:
    """Hash of every file under ``folder`` (to prove nothing was overwritten)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_and_evaluate_smoke(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train", "--env", "MinAtar/Freeway-v1", "--timesteps", "1024", "--run-dir", str(run),
                   "--set", "eval.freq=512", "--set", "eval.episodes=1",
                   "--set", "eval.final_episodes=2", "--set", "eval.random_episodes=2",
                   "--set", "checkpoint_freq=512", "--set", "n_envs=8", "--set", "hyperparams.batch_size=256")
    assert proc.returncode == 0, proc.stderr
    assert "TensorBoard:" in proc.stdout and str(run / "model.zip") in proc.stdout
    for name in ("config.yaml", "meta.json", "model.zip", "best_model.zip", "trunk.safetensors",
                 "metrics.json", "evaluations.json"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt_*.zip"))
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("env_id", "algo", "seed", "timesteps", "eval_mean_return", "eval_std_return",
                "random_mean_return"):
        assert key in metrics
    assert metrics["timesteps"] >= 1024 and metrics["eval_episodes"] == 2
    meta = json.loads((run / "meta.json").read_text())
    assert meta["invocations"][0]["command_line"].startswith("policyshare train")
    assert "torch" in meta["invocations"][0]["versions"]

    proc = run_cli("evaluate", str(run), "--episodes", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["env_id"] == "MinAtar/Freeway-v1" and "random_mean_return" in out


def test_evaluate_writes_a_video(breakout_run: Path, tmp_path: Path) -> None:
    proc = run_cli("evaluate", str(breakout_run / "model.zip"), "--episodes", "1", "--video",
                   str(tmp_path / "ep.gif"))
    assert proc.returncode == 0, proc.stderr
    assert "MinAtar/Breakout-v1:" in proc.stdout and "video:" in proc.stdout
    assert (tmp_path / "ep.gif").read_bytes()[:3] == b"GIF"


def test_tensorboard_has_sb3_and_eval_tags(breakout_run: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb"
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--timesteps", "2048", "--run-dir", str(run),
                   "--set", "n_envs=8", "--set", "eval.freq=1024", "--set", "eval.episodes=1",
                   "--set", "eval.final_episodes=1", "--set", "eval.random_episodes=1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    acc = EventAccumulator(str(run / "tb")).Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"eval/mean_reward", "train/loss", "time/fps"} <= tags, tags
    assert [e.step for e in acc.Scalars("eval/mean_reward")] == [0, 1024, 2048]  # curves start at step 0


def test_unknown_env_id(tmp_path: Path) -> None:
    proc = run_cli("train", "--env", "MinAtar/Breakot-v1", "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "unknown env id 'MinAtar/Breakot-v1'", "did you mean 'MinAtar/Breakout-v1'")
    assert not (tmp_path / "r").exists()


def test_unknown_config_key_in_file_and_in_set(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("default:\n  hyperparams: {learnin_rate: 0.001}\n")
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--config", str(cfg), "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "unknown key 'learnin_rate'", "did you mean 'learning_rate'")
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--set", "hyperparams.n_step=64",
                   "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "unknown key 'n_step'", "did you mean 'n_steps'")
    assert not (tmp_path / "r").exists()


def test_mistyped_config_value(tmp_path: Path) -> None:
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--set", "n_envs=eight",
                   "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "n_envs: expected an integer")


def test_missing_and_corrupt_checkpoints(breakout_run: Path, tmp_path: Path) -> None:
    proc = run_cli("evaluate", str(tmp_path / "nope.zip"))
    assert_user_error(proc, "not found")
    bad = tmp_path / "bad.zip"
    raw = (breakout_run / "model.zip").read_bytes()
    bad.write_bytes(raw[: len(raw) // 3])
    proc = run_cli("evaluate", str(bad), "--env", "MinAtar/Breakout-v1")
    assert_user_error(proc, "truncated or corrupt")
    # A folder without a run's checkpoint but with zips (like the zoo's): the message names one.
    proc = run_cli("evaluate", str(tmp_path))
    assert_user_error(proc, "holds no checkpoint", f"pass one of its files, e.g. {bad}")


def test_trunk_of_other_shape_is_refused(tmp_path: Path) -> None:
    trunk_file = save_trunk(Trunk(TrunkSpec("minatar", 4, 10, 10)), tmp_path / "t4.safetensors")
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--init-trunk", str(trunk_file),
                   "--timesteps", "1024", "--run-dir", str(tmp_path / "r"), *TINY)
    assert_user_error(proc, "(16, 4, 3, 3) in the file but (16, 10, 3, 3) in the network")


def test_finished_run_is_never_overwritten(breakout_run: Path) -> None:
    before = snapshot(breakout_run)
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--timesteps", "1024", "--run-dir",
                   str(breakout_run), *TINY)
    assert_user_error(proc, "holds a finished run")
    assert snapshot(breakout_run) == before


def test_unfinished_run_needs_resume(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--run-dir", str(run), *TINY)
    assert_user_error(proc, "add --resume")
    assert snapshot(run) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}


@pytest.mark.parametrize("args", [
    ["train"],                                      # missing --env
    ["train", "--env", "MinAtar/Breakout-v1", "--algo", "sac"],
    ["train", "--env", "MinAtar/Breakout-v1", "--timesteps", "many"],
])
def test_argument_errors_are_one_line(args: list[str]) -> None:
    assert_user_error(run_cli(*args), "error:")


def test_negative_timesteps(tmp_path: Path) -> None:
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--timesteps", "-5", "--run-dir", str(tmp_path / "r"))
    assert_user_error(proc, "--timesteps must be > 0")


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every (sub)command of ``parser``, as the words that reach it."""
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += _command_paths(sub, (*prefix, name))
    return paths


def test_every_help_page_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` of the command and of every subcommand prints usage and exits 0."""
    from policyshare.cli import build_parser, main

    paths = _command_paths(build_parser())
    assert {("train",), ("progressive",), ("zoo", "list"), ("vision", "compare")} <= set(paths)
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0, path
        assert "usage: policyshare" in capsys.readouterr().out, path


# Each command also has a bad env id, checked after the seeds: where repeated seeds were
# accepted, the command still stops before training (and the test fails on the wrong message).
@pytest.mark.parametrize("command", [
    ["transfer", "--trunk", "trunk.safetensors", "--env", "MinAtar/Nope-v1", "--seeds", "0", "0"],
    ["progressive", "--tasks", "MinAtar/Nope-v1", "MinAtar/Asterix-v1", "--seeds", "0-2", "1"],
    ["sweep", "configs/quickstart.yaml", "--backend", "local", "--seeds", "0,0", "--set", "targets=[MinAtar/Nope-v1]"],
    ["run", "configs/quickstart.yaml", "--set", "seeds=[0, 0]", "--set", "targets=[MinAtar/Nope-v1]"],
])
def test_a_seed_given_twice_is_refused(command: list[str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Deduplicating silently reported "IQM over 1 seeds" for a user who asked for two.
    from policyshare.cli import main

    assert main([*command, "--run-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is given twice" in err[0] and "list each seed once" in err[0], err
    assert not (tmp_path / "out").exists()


def test_the_python_api_refuses_a_seed_given_twice(tmp_path: Path) -> None:
    from policyshare.errors import UserError
    from policyshare.transfer import transfer

    with pytest.raises(UserError, match="seed 1 is given twice"):
        transfer(tmp_path / "trunk.safetensors", "MinAtar/Breakout-v1", seeds=[1, 1], run_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_a_dqn_budget_below_learning_starts_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """SB3's DQN makes no gradient update until learning_starts env steps are collected: a shorter
    run would finish, save and report an untrained network."""
    run = tmp_path / "run"
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--algo", "dqn", "--timesteps", "1000",
                   "--run-dir", str(run))
    assert_user_error(proc, "trains nothing", "learning_starts 5000", "--set hyperparams.learning_starts=N")
    assert not run.exists()
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--algo", "dqn", "--timesteps", "1000",
                   "--set", "hyperparams.learning_starts=2000", "--run-dir", str(run))
    assert_user_error(proc, "learning_starts 2000")


def test_a_trunk_spec_too_deep_for_the_input_names_the_specs_that_fit(tmp_path: Path) -> None:
    proc = run_cli("train", "--env", "MinAtar/Breakout-v1", "--set", "trunk.spec=nature",
                   "--run-dir", str(tmp_path / "run"))
    assert_user_error(proc, "input 10x10 is too small", "trunk.spec: minatar or minatar_deep")
    assert not (tmp_path / "run").exists()


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """`policyshare zoo list | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "policyshare", "zoo", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
