"""The console: the library logs through ``logging``; the command shows it once, at the level
``-q``/``-v`` chose (progress and summaries on stdout, notes on stderr, errors one line)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from policyshare.cli import main
from policyshare.console import ROOT_LOGGER, console_logging, inner_run, shows_progress
from policyshare.train import train

BREAKOUT = "MinAtar/Breakout-v1"
#: 128 env steps of PPO (2 envs x 64 steps), no periodic evaluation or checkpoint, no progress bar.
TINY: dict[str, Any] = {"n_envs": 2, "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
                        "eval": {"freq": 0, "final_episodes": 1, "random_episodes": 1},
                        "checkpoint_freq": 0, "progress_bar": False}
TINY_ARGS = ["--set", "n_envs=2", "--set", "hyperparams.n_steps=64", "--set", "hyperparams.batch_size=64",
             "--set", "hyperparams.n_epochs=1", "--set", "eval.freq=0", "--set", "eval.final_episodes=1",
             "--set", "eval.random_episodes=1", "--set", "checkpoint_freq=0", "--set", "progress_bar=false"]

log = logging.getLogger(f"{ROOT_LOGGER}.test_console")


def test_the_library_logs_its_summary_instead_of_printing_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=ROOT_LOGGER):
        result = train(BREAKOUT, timesteps=128, run_dir=tmp_path / "run", overrides=TINY)
    assert capsys.readouterr().out == ""  # nothing printed: the application decides what is shown
    summary = [r for r in caplog.records if r.name == "policyshare.train" and r.levelno == logging.INFO]
    assert any(f"run folder:   {result.run_dir}" == r.getMessage() for r in summary)
    assert any(r.getMessage().startswith("TensorBoard:  tensorboard --logdir") for r in summary)


def test_quiet_and_verbose_flags_go_before_or_after_the_command(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    train_args = ["train", "--env", BREAKOUT, "--timesteps", "128", *TINY_ARGS]
    assert main(["-q", *train_args, "--run-dir", str(tmp_path / "q")]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    assert main([*train_args, "--run-dir", str(tmp_path / "default")]) == 0
    out = capsys.readouterr().out
    assert f"run folder:   {tmp_path / 'default'}" in out and "TensorBoard:" in out
    assert main([*train_args, "--run-dir", str(tmp_path / "after"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    # The command attaches the console only while it runs.
    assert logging.getLogger(ROOT_LOGGER).handlers == []


@pytest.mark.parametrize("flags", [[], ["-q"], ["-v"], ["--verbose"]])
def test_a_user_error_is_one_line_at_every_verbosity(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*flags, "train", "--env", "MinAtar/NoSuchGame-v1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("policyshare train: error:") and "NoSuchGame" in err[0]


def test_quiet_and_verbose_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["-q", "-v", "zoo", "list"])
    assert stop.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_console_sends_progress_to_stdout_and_notes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with console_logging():
        log.debug("detail")
        log.info("progress")
        log.warning("note")
    out = capsys.readouterr()
    assert (out.out, out.err) == ("progress\n", "note\n")
    with console_logging(logging.WARNING):  # -q
        log.info("progress")
        log.warning("note")
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "note\n")
    with console_logging(logging.DEBUG, info_to_stderr=True):  # -v on a command whose stdout is data
        log.debug("detail")
        log.info("progress")
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "detail\nprogress\n")


def test_inner_runs_show_their_progress_with_verbose_only(capsys: pytest.CaptureFixture[str]) -> None:
    for level, inner_shown in ((logging.INFO, False), (logging.DEBUG, True)):
        with console_logging(level):
            log.info("outer")
            assert shows_progress(log)
            with inner_run():
                log.info("inner")
                log.warning("inner note")
                assert shows_progress(log) is inner_shown  # SB3's progress bar of the inner run
        out = capsys.readouterr()
        assert out.out.splitlines() == ["outer", *(["inner"] if inner_shown else [])]
        assert out.err.splitlines() == ["inner note"]
    assert not shows_progress(log)  # a library call with logging left alone draws no bar
