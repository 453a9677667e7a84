"""Training throughput of progressive columns: env steps/s for column k = 1, 2, 3, 4.

Each column trains exactly as ``policyshare progressive`` trains it: column 1 as a
``policyshare train`` model (one trunk), column k > 1 through
:func:`policyshare.progressive.column_model_factory` (k − 1 frozen columns, run fused and
without autograd, plus the new column with its Eq. 2 adapters, paper-sized by default). The frozen
columns are random here: throughput does not depend on their values. PPO with each env's
``configs/ppo.yaml`` entry (8 ``DummyVecEnv`` envs, n_steps 128, batch 256, 4 epochs — 10 for
Breakout —, the MinAtar paper trunk, 64-64 policy and value MLPs), one torch thread, no periodic
evaluation.

Besides the ratio to k = 1 it prints the ratio to k = 2, the first column with adapters: what
each further frozen column costs. With paper-sized adapters the trainable column's U into the
dense layer is as large as its own dense layer, which dominates the MinAtar network, so k = 2
already costs about twice k = 1; the frozen columns add comparatively little after that.

Rounds alternate k = 1, 2, 3, 4, 1, 2, … so that machine load affects every k alike; each k's
median over the rounds is compared with k = 1's, measured in the same run. Time is
``model.learn``'s wall time after a warm-up of one rollout.

Usage:
    python benchmarks/progressive.py [--envs MinAtar/Breakout-v1 MinAtar/SpaceInvaders-v1]
        [--timesteps 30000] [--rounds 3] [--columns 4] [--algo ppo] [--set adapter.reduction=4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from policyshare.algos import build_model
from policyshare.config import parse_overrides
from policyshare.envs import check_env_id, make_vec_env
from policyshare.progressive import column_model_factory, load_progressive_config
from policyshare.train import load_train_config


def build(env_id: str, algo: str, k: int, overrides: dict[str, Any], seed: int) -> Any:
    """The SB3 model that trains column ``k`` on ``env_id`` (random frozen columns)."""
    cfg = load_progressive_config(None, overrides)
    train_cfg, params = load_train_config(env_id, algo, cfg.train_config, {"eval": {"freq": 0}})
    suite = check_env_id(env_id)
    env = make_vec_env(env_id, train_cfg.n_envs, seed, train_cfg.vec_env)
    if k == 1:
        return build_model(algo, env, params, train_cfg.policy, train_cfg.trunk, suite, seed)
    trunk = {"name": train_cfg.trunk.spec or suite.trunk, "activation": train_cfg.trunk.activation,
             "theta": train_cfg.trunk.theta}
    return column_model_factory(algo, k, trunk, cfg.adapter)(env, train_cfg, params, suite, seed)


def steps_per_second(env_id: str, algo: str, k: int, timesteps: int, overrides: dict[str, Any],
                     seed: int) -> float:
    """Env steps/s of ``model.learn`` for column ``k`` (after a one-rollout warm-up)."""
    model = build(env_id, algo, k, overrides, seed)
    model.learn(model.n_steps * model.n_envs)
    start = time.perf_counter()
    model.learn(timesteps, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    model.get_env().close()
    return timesteps / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1"],
                        help="tasks to train the columns on (each measured separately)")
    parser.add_argument("--timesteps", type=int, default=30_000, help="env steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each k, alternating")
    parser.add_argument("--columns", type=int, default=4, help="largest k")
    parser.add_argument("--algo", default="ppo", choices=["ppo", "a2c"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override configs/progressive.yaml, e.g. --set adapter.reduction=4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = parse_overrides(args.overrides)
    ks = list(range(1, args.columns + 1))
    for env_id in args.envs:
        measured: dict[int, list[float]] = {k: [] for k in ks}
        for r in range(args.rounds):
            for k in ks:
                measured[k].append(steps_per_second(env_id, args.algo, k, args.timesteps, overrides, r))
            print(f"{env_id} round {r}: " + ", ".join(f"k={k} {measured[k][-1]:.0f}" for k in ks),
                  flush=True)
        base = statistics.median(measured[1])
        print(f"\n{env_id}, {args.algo}, {args.timesteps} env steps x {args.rounds} rounds "
              f"(median), adapters {load_progressive_config(None, overrides).adapter}")
        # ratio to k=2: what each further frozen column costs once the trainable column has its
        # adapters (k=2 is the first with laterals)
        two = statistics.median(measured[2]) if 2 in measured else None
        print(f"{'column k':>9} {'env steps/s':>12} {'ratio to k=1':>13}" + (f" {'ratio to k=2':>13}" if two else ""))
        for k in ks:
            med = statistics.median(measured[k])
            print(f"{k:>9} {med:>12.0f} {med / base:>13.3f}"
                  + (f" {med / two:>13.3f}" if two and k >= 2 else ""))
        print(flush=True)


if __name__ == "__main__":
    main()
