"""Shared fixtures: tiny real training runs (real MinAtar, real SB3), made once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Small networks: one thread is far faster than several on a shared 2-core machine.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]

# Tiny budgets: no periodic evaluation, short final evaluation, one checkpoint.
TINY = ["--set", "eval.freq=0", "--set", "eval.final_episodes=3", "--set", "eval.random_episodes=3",
        "--set", "checkpoint_freq=1024", "--quiet"]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m policyshare ARGS`` in a subprocess (the installed command's code path)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "policyshare", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def breakout_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished PPO run on MinAtar Breakout (2048 env steps)."""
    from policyshare.cli import main

    run = tmp_path_factory.mktemp("runs") / "breakout"
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--timesteps", "2048", "--run-dir", str(run),
                 *TINY]) == 0
    return run
