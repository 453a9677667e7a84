"""Training throughput: ``policyshare train`` vs plain stable-baselines3, measured in the same run.

Both train PPO on MinAtar Breakout with the MinAtar paper network (Conv 3x3x16 → dense 128) and
the heads and hyper-parameters of policyshare's default config for Breakout (read from
``configs/ppo.yaml``: 8 ``DummyVecEnv`` envs, n_steps 128, batch 256, 10 epochs, 64-64 policy and
value MLPs), one torch thread, no periodic evaluation. The plain-SB3 side is what a user
would write by hand: a features extractor that permutes the channels-last grid and runs the two
layers. Runs alternate (policyshare,
SB3, policyshare, SB3, …) so that machine load affects both alike; the median of each is
compared.

Prints env steps per second (training only: ``model.learn``'s wall time) and the ratio
policyshare ÷ SB3.

Usage:
    python benchmarks/throughput.py [--timesteps 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

ENV = "MinAtar/Breakout-v1"


class HandWrittenMinAtarCNN(BaseFeaturesExtractor):
    """The MinAtar paper network as a plain SB3 extractor: (B, 10, 10, C) → (B, 128)."""

    def __init__(self, observation_space: gym.spaces.Box) -> None:
        super().__init__(observation_space, features_dim=128)
        c = observation_space.shape[-1]
        self.net = nn.Sequential(nn.Conv2d(c, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 128),
                                 nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.permute(0, 3, 1, 2))


def plain_sb3(timesteps: int, seed: int) -> float:
    """Env steps/s of plain SB3 PPO (training only)."""
    from stable_baselines3.common.env_util import make_vec_env

    import policyshare.envs  # noqa: F401  (registers the MinAtar ids with Gymnasium)
    from policyshare.config import to_dict
    from policyshare.train import load_train_config

    # The very hyper-parameters policyshare's default config resolves to for this env.
    cfg, params = load_train_config(ENV, "ppo")
    torch.set_num_threads(1)
    env = make_vec_env(ENV, n_envs=cfg.n_envs, seed=seed)
    model = PPO("CnnPolicy", env, seed=seed, device="cpu", **to_dict(params),
                policy_kwargs={"features_extractor_class": HandWrittenMinAtarCNN,
                               "net_arch": list(cfg.policy.net_arch)})
    start = time.perf_counter()
    model.learn(timesteps)
    wall = time.perf_counter() - start
    env.close()
    return model.num_timesteps / wall


def policyshare_train(timesteps: int, seed: int, folder: Path) -> float:
    """Env steps/s of ``policyshare train`` (its own measure of ``model.learn``'s wall time)."""
    run = folder / f"ps_{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "policyshare", "train", "--env", ENV, "--timesteps", str(timesteps),
           "--seed", str(seed), "--run-dir", str(run), "--quiet", "--set", "eval.freq=0",
           "--set", "eval.final_episodes=1", "--set", "eval.random_episodes=1"]
    subprocess.run(cmd, check=True)
    return float(json.loads((run / "timing.json").read_text())["train_steps_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timesteps", type=int, default=100_000, help="env steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating")
    args = parser.parse_args()
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            ours.append(policyshare_train(args.timesteps, r, Path(tmp)))
            theirs.append(plain_sb3(args.timesteps, r))
            print(f"round {r}: policyshare {ours[-1]:.0f} steps/s, plain SB3 {theirs[-1]:.0f} steps/s",
                  flush=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"policyshare train: {a:.0f} env steps/s (median of {args.rounds})")
    print(f"plain SB3 PPO:     {b:.0f} env steps/s (median of {args.rounds})")
    print(f"ratio policyshare / SB3: {a / b:.3f}")


if __name__ == "__main__":
    main()
