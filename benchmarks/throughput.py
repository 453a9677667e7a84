"""Training throughput: ``policyshare train`` (new MinAtar defaults) vs plain SB3 (old defaults).

Two measurements, each interleaved so that machine load affects both sides alike:

1. **Training** on MinAtar Breakout and SpaceInvaders (``--games``): plain stable-baselines3 PPO
   with the old defaults (:mod:`plain_sb3`: 8 ``DummyVecEnv`` envs, n_steps 128, minibatch 256,
   4 epochs, the MinAtar paper network as a hand-written extractor, one torch thread) against
   ``policyshare train`` with its default config for the game (``configs/ppo.yaml``: the batched
   env, 64 envs, minibatch 1024 …; no periodic evaluation or checkpoints), run as the command in
   a subprocess. Rounds alternate (policyshare, SB3, policyshare, …); each side's median over
   ``--rounds`` is compared. Env steps per second are training only (``model.learn``'s wall time;
   policyshare's own ``timing.json``).
2. **Env only**, every game: the batched env (``vec_env: batched``) against ``--env-n``
   reference MinAtar envs in ``DummyVecEnv``, stepped with random actions
   (:func:`env_throughput.vec_env_stepper` and :func:`env_throughput.timed`).

Prints the env steps/s of each side and the ratios (target: policyshare ÷ SB3 >= 3 on both games).
Where the remaining time goes: ``benchmarks/profile_training.py``.

Usage:
    python benchmarks/throughput.py [--timesteps 65536] [--rounds 3] [--games breakout space_invaders]
                                    [--env-n 64] [--env-seconds 1.0] [--skip-env]
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from env_throughput import timed, vec_env_stepper  # noqa: E402
from plain_sb3 import plain_model  # noqa: E402

from policyshare.batched_minatar import available_games  # noqa: E402
from policyshare.envs import MINATAR_GAMES  # noqa: E402

ID_OF = {module: f"MinAtar/{name}-v1" for name, module in MINATAR_GAMES.items()}


def plain_sb3(env_id: str, timesteps: int, seed: int) -> float:
    """Env steps/s of plain SB3 PPO with the old defaults (training only)."""
    model = plain_model("ppo", env_id, seed)
    start = time.perf_counter()
    model.learn(timesteps)
    wall = time.perf_counter() - start
    model.env.close()
    return model.num_timesteps / wall


def policyshare_train(env_id: str, timesteps: int, seed: int, folder: Path) -> float:
    """Env steps/s of ``policyshare train`` with its defaults (its own measure of ``model.learn``)."""
    run = folder / f"ps_{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "policyshare", "train", "--env", env_id, "--timesteps", str(timesteps),
           "--seed", str(seed), "--run-dir", str(run), "--quiet", "--set", "eval.freq=0",
           "--set", "checkpoint_freq=0", "--set", "eval.final_episodes=1", "--set", "eval.random_episodes=1"]
    subprocess.run(cmd, check=True)
    return float(json.loads((run / "timing.json").read_text())["train_steps_per_s"])


def training(games: list[str], timesteps: int, rounds: int) -> list[tuple[str, float, float]]:
    """Median env steps/s of (game, policyshare, plain SB3), rounds interleaved."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for game in games:
            ours: list[float] = []
            theirs: list[float] = []
            for r in range(rounds):
                ours.append(policyshare_train(ID_OF[game], timesteps, r, Path(tmp)))
                theirs.append(plain_sb3(ID_OF[game], timesteps, r))
                print(f"{game} round {r}: policyshare {ours[-1]:,.0f} env steps/s, plain SB3 "
                      f"{theirs[-1]:,.0f} env steps/s, ratio {ours[-1] / theirs[-1]:.2f}", flush=True)
            out.append((game, statistics.median(ours), statistics.median(theirs)))
    return out


def env_only(games: list[str], n: int, seconds: float, rounds: int) -> list[tuple[str, float, float]]:
    """Median env steps/s of (game, reference ``DummyVecEnv``, batched) with ``n`` envs each."""
    out = []
    for game in games:
        actions = np.random.default_rng(0).integers(0, 6, size=(1024, n))
        steppers = {kind: vec_env_stepper(game, n, kind, actions) for kind in ("dummy", "batched")}
        speeds: dict[str, list[float]] = {"dummy": [], "batched": []}
        for _ in range(rounds):
            for kind in ("dummy", "batched"):
                speeds[kind].append(timed(steppers[kind], n, seconds))
        out.append((game, statistics.median(speeds["dummy"]), statistics.median(speeds["batched"])))
        print(f"{game} env only, {n} envs: reference {out[-1][1]:,.0f}, batched {out[-1][2]:,.0f} env steps/s",
              flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timesteps", type=int, default=65_536, help="env steps per training run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--games", nargs="+", default=["breakout", "space_invaders"], choices=list(ID_OF))
    parser.add_argument("--env-n", type=int, default=64, help="envs on each side of the env-only measurement")
    parser.add_argument("--env-seconds", type=float, default=1.0, help="seconds per env-only measurement")
    parser.add_argument("--skip-env", action="store_true", help="skip the env-only measurement")
    args = parser.parse_args()

    trained = training(args.games, args.timesteps, args.rounds)
    envs = [] if args.skip_env else env_only(available_games(), args.env_n, args.env_seconds, args.rounds)

    print()
    print("| game | policyshare train (new defaults) | plain SB3 PPO (old defaults) | ratio |")
    print("|---|---:|---:|---:|")
    for game, a, b in trained:
        print(f"| {game} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |")
    print(f"\nenv steps/s while training ({args.timesteps} env steps per run, rounded up to whole rollouts), "
          f"medians of {args.rounds} interleaved runs")
    if envs:
        print()
        print(f"| game | {args.env_n} reference envs (DummyVecEnv) | batched env | ratio |")
        print("|---|---:|---:|---:|")
        for game, ref, bat in envs:
            print(f"| {game} | {ref:,.0f} | {bat:,.0f} | {bat / ref:.1f}x |")
        print(f"\nenv only: env steps/s summed over {args.env_n} envs, random actions, medians of "
              f"{args.rounds} interleaved runs of {args.env_seconds} s")


if __name__ == "__main__":
    main()
