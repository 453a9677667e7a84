"""Every MinAtar game and two Atari games train through ``policyshare train`` with PPO and DQN.

Small budgets (a few thousand env steps): these prove the pipeline runs end to end on the real
envs and leaves a finished run folder, not that it learns (``benchmarks/`` measures that).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policyshare.cli import main

MINATAR = ["MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "MinAtar/Freeway-v1", "MinAtar/Seaquest-v1",
           "MinAtar/SpaceInvaders-v1"]
# Atari on a CPU is a smoke test only (~1 minute per run here): Pong in the fast suite, Breakout slow.
ATARI = ["ALE/Pong-v5", pytest.param("ALE/Breakout-v5", marks=pytest.mark.slow)]
SHORT = ["--set", "eval.freq=0", "--set", "eval.final_episodes=1", "--set", "eval.random_episodes=1",
         "--set", "checkpoint_freq=1000", "--quiet"]
ALGO_SETS = {
    "ppo": ["--set", "n_envs=4", "--set", "hyperparams.n_steps=128", "--set", "hyperparams.batch_size=128"],
    "dqn": ["--set", "hyperparams.learning_starts=500", "--set", "hyperparams.buffer_size=5000",
            "--set", "hyperparams.train_freq=4"],
}


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
@pytest.mark.parametrize("env_id", MINATAR + ATARI)
def test_train_runs(env_id: str, algo: str, tmp_path: Path) -> None:
    steps = 2048
    run = tmp_path / "run"
    extra = []
    if algo == "dqn" and env_id.startswith("ALE/"):  # a few gradient updates on the big network
        extra = ["--set", "hyperparams.learning_starts=1536"]
    assert main(["train", "--env", env_id, "--algo", algo, "--timesteps", str(steps), "--run-dir", str(run),
                 *SHORT, *ALGO_SETS[algo], *extra]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["env_id"] == env_id and metrics["algo"] == algo and metrics["timesteps"] >= steps
    assert (run / "model.zip").is_file() and (run / "trunk.safetensors").is_file()
    assert list((run / "checkpoints").glob("ckpt_*.zip"))
    if env_id.startswith("ALE/"):
        assert metrics["trunk_parameters"] > 1_000_000  # the Nature DQN network
