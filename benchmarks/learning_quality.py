"""Learning quality at equal env steps: policyshare's new MinAtar defaults vs the old defaults.

For every game (``--games``) and seed (``--seeds``) two PPO runs of the same budget:

* **old**: plain stable-baselines3 with the old defaults (:mod:`plain_sb3`: 8 ``DummyVecEnv``
  envs, n_steps 128, minibatch 256, 4 epochs, lr 2.5e-4, clip 0.1; the MinAtar paper network);
* **new**: ``policyshare train`` with its default config for the game (``configs/ppo.yaml``).

Both are evaluated the same way: ``policyshare.evaluate.evaluate`` over ``--episodes`` complete
episodes, deterministic actions, on evaluation envs seeded ``seed + 10000`` (policyshare's
convention). The budget is rounded up to whole rollouts of both sides (a multiple of 8192 env
steps with the default configs) so that both train exactly the same number of env steps.

Prints a table of evaluation returns, mean over seeds (and each seed's), and new − old.
The acceptance run is ``--timesteps 1000000 --seeds 0 1 2`` over the five games (about 30
one-million-step runs: hours on 2 CPU cores); a smoke run is ``--timesteps 8192 --seeds 0
--games breakout --episodes 2``.

Usage:
    python benchmarks/learning_quality.py [--timesteps 1000000] [--seeds 0 1 2]
        [--games breakout asterix freeway seaquest space_invaders] [--episodes 20]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_sb3 import OLD_PPO, plain_model  # noqa: E402

from policyshare.envs import MINATAR_GAMES  # noqa: E402
from policyshare.evaluate import EVAL_SEED_OFFSET, evaluate  # noqa: E402
from policyshare.train import load_train_config, rollout_size  # noqa: E402

ID_OF = {module: f"MinAtar/{name}-v1" for name, module in MINATAR_GAMES.items()}


def equal_budget(env_id: str, timesteps: int) -> int:
    """``timesteps`` rounded up to whole rollouts of both the old and the new defaults."""
    cfg, params = load_train_config(env_id, "ppo")
    new = rollout_size("ppo", cfg.n_envs, params)
    old = OLD_PPO[0] * int(OLD_PPO[1]["n_steps"])
    both = new * old // math.gcd(new, old)
    return -(-timesteps // both) * both


def old_return(env_id: str, timesteps: int, seed: int, episodes: int) -> float:
    """Mean evaluation return of plain SB3 with the old defaults after ``timesteps`` env steps."""
    model = plain_model("ppo", env_id, seed)
    model.learn(timesteps)
    assert model.num_timesteps == timesteps, (model.num_timesteps, timesteps)
    model.env.close()
    return evaluate(model, env_id, episodes, seed + EVAL_SEED_OFFSET).mean


def new_return(env_id: str, timesteps: int, seed: int, episodes: int, folder: Path) -> float:
    """Mean evaluation return of ``policyshare train`` (default config) after ``timesteps`` env steps."""
    run = folder / f"new_{time.monotonic_ns()}"
    subprocess.run([sys.executable, "-m", "policyshare", "train", "--env", env_id, "--timesteps", str(timesteps),
                    "--seed", str(seed), "--run-dir", str(run), "--quiet", "--set", "checkpoint_freq=0",
                    "--set", "eval.freq=0", "--set", f"eval.final_episodes={episodes}",
                    "--set", "eval.random_episodes=1"], check=True)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["timesteps"] == timesteps, (metrics["timesteps"], timesteps)
    return float(metrics["eval_mean_return"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timesteps", type=int, default=1_000_000, help="env steps per run (rounded up)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--games", nargs="+", default=list(ID_OF), choices=list(ID_OF))
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per run")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for game in args.games:
            env_id = ID_OF[game]
            budget = equal_budget(env_id, args.timesteps)
            old: list[float] = []
            new: list[float] = []
            for seed in args.seeds:  # alternating, so that a long sweep's drift affects both alike
                new.append(new_return(env_id, budget, seed, args.episodes, Path(tmp)))
                old.append(old_return(env_id, budget, seed, args.episodes))
                print(f"{game} seed {seed}, {budget} env steps: old {old[-1]:.2f}, new {new[-1]:.2f}", flush=True)
            rows.append((game, budget, old, new))

    print()
    print("| game | env steps | old defaults (plain SB3) | new defaults (policyshare) | new - old |")
    print("|---|---:|---:|---:|---:|")
    for game, budget, old, new in rows:
        a, b = statistics.mean(old), statistics.mean(new)
        seeds_old = ", ".join(f"{v:.1f}" for v in old)
        seeds_new = ", ".join(f"{v:.1f}" for v in new)
        print(f"| {game} | {budget} | {a:.2f} ({seeds_old}) | {b:.2f} ({seeds_new}) | {b - a:+.2f} |")
    print(f"\nmean evaluation return over seeds {args.seeds} (each seed in brackets), {args.episodes} "
          "deterministic episodes per run on envs seeded seed + 10000")


if __name__ == "__main__":
    main()
