"""Training-episode returns recorded beside greedy evaluation in ``evaluations.json`` (a tiny real
``policyshare train`` run), read back as the comparison's second curve, and kept consistent on
resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from policyshare.callbacks import NO_TRAINING_EPISODE, read_curve, trim_curve
from policyshare.cli import main
from policyshare.comparison import load_curve


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("train") / "run"
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--timesteps", "3000", "--run-dir", str(run), "--quiet",
                 "--set", "n_envs=8", "--set", "vec_env=dummy", "--set", "eval.freq=1000",
                 "--set", "eval.episodes=2", "--set", "eval.final_episodes=1", "--set", "eval.random_episodes=1",
                 "--set", "checkpoint_freq=0", "--set", "progress_bar=false"]) == 0
    return run


def test_a_real_run_records_training_episode_returns_beside_greedy_evaluation(tiny_run: Path) -> None:
    text = (tiny_run / "evaluations.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in evaluations.json"))
    steps = data["timesteps"]
    assert steps[0] == 0 and steps[1:4] == [1000, 2000, 3000] and steps[-1] >= 3000
    for key in ("mean", "std", "train_mean", "train_episodes"):
        assert len(data[key]) == len(steps), key
    # Step 0: no training episode has finished; null with the reason, never NaN.
    assert data["train_mean"][0] is None and data["train_episodes"][0] == 0
    assert data["train_mean_why"] == f"{NO_TRAINING_EPISODE} (null at 0)"
    # Breakout episodes are short: every later window holds finished training episodes.
    assert all(n > 0 for n in data["train_episodes"][1:4])
    assert all(isinstance(v, float) and v >= 0 for v in data["train_mean"][1:4])
    greedy, training = load_curve(tiny_run), load_curve(tiny_run, "training")
    assert greedy[0] == [float(t) for t in steps]
    assert not isinstance(training, str) and training[0][0] == 0.0
    assert training[1][0] == training[1][1] == data["train_mean"][1]  # step 0 stands for the first window


def test_trimming_on_resume_keeps_both_curves_aligned(tmp_path: Path) -> None:
    path = tmp_path / "evaluations.json"
    path.write_text(json.dumps({"timesteps": [0, 10, 20, 30], "mean": [0.0, 1.0, 2.0, 3.0], "std": [0.0] * 4,
                                "train_mean": [None, 0.5, None, 1.5], "train_episodes": [0, 2, 0, 1],
                                "train_mean_why": f"{NO_TRAINING_EPISODE} (null at 0, 2)"}))
    trim_curve(path, 20)
    data = json.loads(path.read_text())
    assert data == {"timesteps": [0, 10, 20], "mean": [0.0, 1.0, 2.0], "std": [0.0] * 3,
                    "train_mean": [None, 0.5, None], "train_episodes": [0, 2, 0],
                    "train_mean_why": f"{NO_TRAINING_EPISODE} (null at 0, 2)"}
    # A curve written before training returns were recorded is read with them missing (nan, 0 episodes).
    path.write_text(json.dumps({"timesteps": [0, 10], "mean": [0.0, 1.0], "std": [0.0, 0.0]}))
    curve = read_curve(path)
    assert curve["train_episodes"] == [0, 0] and all(math.isnan(v) for v in curve["train_mean"])
