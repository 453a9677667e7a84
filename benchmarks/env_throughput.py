"""Env-only throughput: batched MinAtar vs ``n`` reference MinAtar envs, measured in the same run.

For every game with a batched version and every ``n`` in ``--n-envs`` (default 8, 64, 128), two
levels are timed under uniformly random actions (drawn before timing):

* **vec env**: what SB3 steps during training — ``policyshare.envs.make_vec_env(id, n, seed)``
  (``DummyVecEnv`` of ``MinAtarEnv`` under ``TimeLimit`` and ``Monitor``) against
  ``make_vec_env(..., vec_env="batched")`` (``BatchedMinAtarVecEnv`` under ``VecMonitor``), both
  with sticky actions, auto-reset and the observations SB3 receives;
* **game**: ``n`` reference ``minatar.environments.<game>.Env`` objects (``act`` + ``state``,
  resetting finished ones) against the batched game (``act`` + ``state`` + ``reset``).

The two sides alternate (reference, batched, reference, …; ``--rounds`` each), so that machine
load affects both alike; each cell is the median. Prints env steps per second (summed over the
``n`` envs) and the ratio batched ÷ reference.

Usage:
    python benchmarks/env_throughput.py [--seconds 1.0] [--rounds 3] [--n-envs 8 64 128]
                                        [--games breakout asterix …]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib import import_module

import numpy as np

from policyshare.batched_minatar import available_games, game_class
from policyshare.envs import MINATAR_GAMES, make_vec_env

ID_OF = {module: f"MinAtar/{name}-v0" for name, module in MINATAR_GAMES.items()}


def timed(step: Callable[[int], None], n: int, seconds: float) -> float:
    """Env steps/s of ``step(t)`` (one step of all ``n`` envs) run for about ``seconds``."""
    t, start = 0, time.perf_counter()
    while True:
        step(t)
        t += 1
        if t % 16 == 0 and time.perf_counter() - start >= seconds:
            return t * n / (time.perf_counter() - start)


def vec_env_stepper(game: str, n: int, kind: str, actions: np.ndarray) -> Callable[[int], None]:
    venv = make_vec_env(ID_OF[game], n, seed=0, vec_env=kind)
    venv.reset()
    return lambda t: venv.step(actions[t % len(actions)])


def game_stepper(game: str, n: int, kind: str, actions: np.ndarray) -> Callable[[int], None]:
    if kind == "dummy":
        cls = import_module(f"minatar.environments.{game}").Env
        envs = []
        for i in range(n):
            env = cls(ramping=True)
            env.random = np.random.RandomState(i)
            env.reset()
            envs.append(env)

        def step_reference(t: int) -> None:
            for env, a in zip(envs, actions[t % len(actions)], strict=True):
                _, done = env.act(int(a))
                env.state()
                if done:
                    env.reset()
        return step_reference

    batched = game_class(game)(n, [np.random.RandomState(i) for i in range(n)], ramping=True)
    batched.reset(np.arange(n))

    def step_batched(t: int) -> None:
        _, done = batched.act(actions[t % len(actions)])
        batched.state()
        batched.reset(np.flatnonzero(done))
    return step_batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per side and cell")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[8, 64, 128])
    parser.add_argument("--games", nargs="+", default=available_games())
    args = parser.parse_args()

    rows = []
    for game in args.games:
        for n in args.n_envs:
            actions = np.random.default_rng(0).integers(0, 6, size=(1024, n))
            cells = []
            for level, make in (("vec env", vec_env_stepper), ("game", game_stepper)):
                steppers = {kind: make(game, n, kind, actions) for kind in ("dummy", "batched")}
                speeds: dict[str, list[float]] = {"dummy": [], "batched": []}
                for _ in range(args.rounds):
                    for kind in ("dummy", "batched"):
                        speeds[kind].append(timed(steppers[kind], n, args.seconds))
                ref, bat = (statistics.median(speeds[k]) for k in ("dummy", "batched"))
                cells.append((level, ref, bat))
            rows.append((game, n, cells))
            print(f"{game} n={n}: " + "; ".join(f"{lv} {r:,.0f} -> {b:,.0f} steps/s" for lv, r, b in cells),
                  flush=True)

    print()
    print("| game | n | vec env: reference | batched | ratio | game: reference | batched | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for game, n, cells in rows:
        parts = [f"{r:,.0f} | {b:,.0f} | {b / r:.1f}x" for _, r, b in cells]
        print(f"| {game} | {n} | " + " | ".join(parts) + " |")
    print("\nenv steps/s summed over the n envs; medians of", args.rounds, "interleaved runs of",
          args.seconds, "s; random actions")


if __name__ == "__main__":
    main()
