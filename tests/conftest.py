"""Shared fixtures and helpers: tiny real training runs (real MinAtar, real SB3), made once per
session; the CLI in a subprocess and its one-line errors; observations of a game; SB3 zips
re-signed as an attacker could; the steps a run logged. Test modules import helpers from here,
never from one another."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

# Small networks: one thread is far faster than several on a shared 2-core machine.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]

BREAKOUT, ASTERIX, INVADERS = "MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "MinAtar/SpaceInvaders-v1"

# Tiny budgets: no periodic evaluation, short final evaluation, one checkpoint.
TINY = ["--set", "eval.freq=0", "--set", "eval.final_episodes=3", "--set", "eval.random_episodes=3",
        "--set", "checkpoint_freq=1024", "--quiet"]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m policyshare ARGS`` in a subprocess (the installed command's code path)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "policyshare", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=timeout, env=env)


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """The command failed on bad input: exit status 2, one line on stderr holding every fragment,
    no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def observations(task: str, n: int, seed: int = 3) -> np.ndarray:
    """Observations of ``task`` under uniformly random actions."""
    from policyshare.envs import make_vec_env

    venv = make_vec_env(task, 4, seed)
    venv.action_space.seed(seed)
    out = []
    obs = venv.reset()
    while sum(len(o) for o in out) < n:
        out.append(obs.copy())
        obs, *_ = venv.step(np.array([venv.action_space.sample() for _ in range(4)]))
    venv.close()
    return np.concatenate(out)[:n]


def rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    """Copy an SB3 zip, replacing entries, and re-sign its policyshare.json as an attacker could."""
    from policyshare.sb3_files import SB3_HEADER

    with zipfile.ZipFile(src) as zin:
        entries = {n: zin.read(n) for n in zin.namelist()}
    entries.update(replace)
    header = json.loads(entries[SB3_HEADER])
    header["entries_sha256"] = {n: hashlib.sha256(b).hexdigest() for n, b in sorted(entries.items())
                                if n != SB3_HEADER}
    entries[SB3_HEADER] = json.dumps(header).encode()
    with zipfile.ZipFile(dst, "w") as zout:
        for n, b in entries.items():
            zout.writestr(n, b)


def tensorboard_steps(run: Path, tag: str) -> list[int]:
    """The steps of ``tag`` as TensorBoard's own loader shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return [e.step for e in EventAccumulator(str(run / "tb")).Reload().Scalars(tag)]


def csv_steps(run: Path) -> list[int]:
    """The ``step`` column of a run's ``tb/progress.csv``."""
    import csv

    rows = list(csv.DictReader((run / "tb" / "progress.csv").open()))
    return [int(float(r["step"])) for r in rows]


@pytest.fixture(scope="session")
def breakout_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished PPO run on MinAtar Breakout (2048 env steps)."""
    from policyshare.cli import main

    run = tmp_path_factory.mktemp("runs") / "breakout"
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--timesteps", "2048", "--run-dir", str(run),
                 *TINY]) == 0
    return run
