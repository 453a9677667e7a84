"""Batched MinAtar games vs ``n`` reference envs: env steps per second, measured in the same run.

For each game, one :mod:`policyshare.batched_minatar` game of ``n`` envs and ``n`` reference
``minatar.environments.<game>.Env`` objects play uniformly random actions (MinAtar's full set
of 6, from one numpy generator); a step is what a vectorised env does per step: act, reset the
envs that ended, read the observations (``state()``). No agent, no sticky actions. Rounds
alternate (reference, batched, reference, …) so that machine load affects both alike; the
median of each is compared. Games whose batched module is not there yet are skipped.

Prints env steps per second (steps × n ÷ wall time) and the ratio batched ÷ reference, and the
same from this process's CPU time (steadier than wall time on a shared machine).

Usage:
    python benchmarks/batched_minatar_games.py [--n 128] [--steps 300] [--rounds 3] [GAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

import numpy as np

GAMES = ("breakout", "asterix", "freeway", "seaquest", "space_invaders")


def reference_rate(game: str, n: int, steps: int, seed: int) -> tuple[float, float]:
    """Env steps per wall second and per CPU second of ``n`` reference envs stepped one by one."""
    module = importlib.import_module(f"minatar.environments.{game}")
    envs = [module.Env(ramping=True) for _ in range(n)]
    for i, env in enumerate(envs):
        env.random = np.random.RandomState(seed * 10_000 + i)
    rng = np.random.default_rng(seed)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        actions = rng.integers(6, size=n)
        for env, a in zip(envs, actions.tolist()):
            _, terminal = env.act(a)
            if terminal:
                env.reset()
        np.stack([env.state() for env in envs])
    return steps * n / (time.perf_counter() - start), steps * n / (time.process_time() - cpu)


def batched_rate(game: str, n: int, steps: int, seed: int) -> tuple[float, float]:
    """Env steps per wall second and per CPU second of one batched game of ``n`` envs."""
    module = importlib.import_module(f"policyshare.batched_minatar.{game}")
    cls = getattr(module, "Batched" + "".join(part.capitalize() for part in game.split("_")))
    batched = cls(n, [np.random.RandomState(seed * 10_000 + i) for i in range(n)], ramping=True)
    rng = np.random.default_rng(seed)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        _, terminal = batched.act(rng.integers(6, size=n))
        batched.reset(np.flatnonzero(terminal))
        batched.state()
    return steps * n / (time.perf_counter() - start), steps * n / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("games", nargs="*", default=list(GAMES), help="games to measure (default: all)")
    parser.add_argument("--n", type=int, default=128, help="envs per game")
    parser.add_argument("--steps", type=int, default=300, help="steps of all n envs per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating")
    args = parser.parse_args()
    for game in args.games:
        if importlib.util.find_spec(f"policyshare.batched_minatar.{game}") is None:
            print(f"{game}: no batched module yet, skipped")
            continue
        ref: list[tuple[float, float]] = []
        ours: list[tuple[float, float]] = []
        for r in range(args.rounds):
            ref.append(reference_rate(game, args.n, args.steps, r))
            ours.append(batched_rate(game, args.n, args.steps, r))
        for k, clock in enumerate(("wall", "CPU")):
            a, b = statistics.median(x[k] for x in ours), statistics.median(x[k] for x in ref)
            print(f"{game}: batched {a:,.0f} env steps per {clock} s, {args.n} reference envs {b:,.0f}, "
                  f"ratio {a / b:.1f} (median of {args.rounds})", flush=True)


if __name__ == "__main__":
    main()
