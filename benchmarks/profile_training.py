"""Where one training second goes: PPO and DQN on MinAtar, old defaults vs policyshare's.

For each game and algorithm two runs are timed phase by phase:

* **old**: plain stable-baselines3 with the old defaults (:mod:`plain_sb3`: PPO with 8
  ``DummyVecEnv`` envs, n_steps 128, batch 256, 4 epochs; DQN with 1 env, the MinAtar paper's);
* **new**: ``policyshare.train.train`` with the resolved ``configs/<algo>.yaml`` (its callbacks
  included; periodic evaluation and checkpoints off).

The phases are wall-clock timers put around SB3's own methods for the duration of
``model.learn`` by a callback (:class:`PhaseTimers`; SB3 itself is not modified or forked).
Each timer counts *exclusive* time (a nested timed call is charged to its own phase):

=====================  =======================================================================
env step               ``VecEnv.step_async``/``step_wait`` of the training env (all wrappers:
                       ``Monitor``/``VecMonitor``, auto-reset, the games)
obs conversion         numpy → torch (``obs_as_tensor``), SB3's ``preprocess_obs`` (bool →
                       float), ``VecTransposeImage`` (not used by MinAtar's bool grids), the
                       trunk's channels-last → channels-first layout
policy forward         the network during collection (PPO ``policy.forward`` and
                       ``predict_values``; DQN ``policy.predict``)
buffer                 rollout buffer ``add``/GAE/flatten/minibatch gathers; replay ``add``/
                       ``sample``
gradient steps         ``model.train`` (losses, backward, optimizer), minus the above
collect loop           the rest of ``collect_rollouts`` (SB3's loop, callbacks, episode infos)
other                  the rest of ``learn`` (logging, schedules)
=====================  =======================================================================

Budgets are small on purpose (``--ppo-steps``, ``--dqn-steps``); DQN's ``learning_starts`` is
lowered to 1,000 so that most of its budget is spent learning. ``--threads`` sets torch's
intra-op threads on both sides. ``--inference-mode`` also times the policy's forward pass on a
collection batch under ``torch.no_grad`` (what SB3 uses) vs ``torch.inference_mode``.

Usage:
    python benchmarks/profile_training.py [--games breakout space_invaders …] [--algos ppo dqn]
        [--ppo-steps 32768] [--dqn-steps 6000] [--threads 1] [--inference-mode]
        [--new-set hyperparams.batch_size=512 …]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common import on_policy_algorithm, policies
from stable_baselines3.common.callbacks import BaseCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_sb3 import plain_model  # noqa: E402

from policyshare.envs import MINATAR_GAMES  # noqa: E402

PHASES = ("env step", "obs conversion", "policy forward", "buffer", "gradient steps", "collect loop", "other")
ID_OF = {module: f"MinAtar/{name}-v1" for name, module in MINATAR_GAMES.items()}


class PhaseTimers(BaseCallback):
    """Wall-clock time per training phase, by timers wrapped around SB3's methods.

    The timers are installed when training starts and removed when it ends; ``seconds`` maps
    each of :data:`PHASES` to exclusive seconds and ``total`` is the wall time of the training
    loop (env steps in ``steps``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[float] = []
        self._undo: list[tuple[Any, str, Any]] = []
        self.total = 0.0
        self.steps = 0

    def _wrap(self, fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            self._stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[phase] += elapsed - self._stack.pop()
                if self._stack:
                    self._stack[-1] += elapsed
        return timed

    def _patch(self, owner: Any, name: str, phase: str) -> None:
        if not hasattr(owner, name):
            return
        had_own = name in vars(owner) if not isinstance(owner, type(sys)) else True
        self._undo.append((owner, name, getattr(owner, name) if had_own else None))
        setattr(owner, name, self._wrap(getattr(owner, name), phase))

    def _on_training_start(self) -> None:
        m = self.model
        env = m.env
        self._patch(env, "step_async", "env step")
        self._patch(env, "step_wait", "env step")
        venv = env
        while venv is not None:  # SB3's image transposition, when an env is wrapped in it
            if type(venv).__name__ == "VecTransposeImage":
                self._patch(venv, "transpose_observations", "obs conversion")
            venv = getattr(venv, "venv", None)
        for module in (on_policy_algorithm, policies):
            self._patch(module, "obs_as_tensor", "obs conversion")
        self._patch(policies, "preprocess_obs", "obs conversion")
        extractors = [getattr(m.policy, "features_extractor", None),
                      getattr(getattr(m, "q_net", None), "features_extractor", None),
                      getattr(getattr(m, "q_net_target", None), "features_extractor", None)]
        for ex in extractors:
            if ex is not None and hasattr(ex, "alignment"):
                self._patch(ex.alignment, "layout", "obs conversion")
        if hasattr(m, "rollout_buffer"):
            self._patch(m.policy, "forward", "policy forward")
            self._patch(m.policy, "predict_values", "policy forward")
            buf = m.rollout_buffer
            for name in ("add", "compute_returns_and_advantage", "swap_and_flatten", "_get_samples"):
                self._patch(buf, name, "buffer")
        else:
            self._patch(m.policy, "predict", "policy forward")
            for name in ("add", "sample"):
                self._patch(m.replay_buffer, name, "buffer")
        self._patch(m, "train", "gradient steps")
        self._patch(m, "collect_rollouts", "collect loop")
        self._steps0 = m.num_timesteps
        self._stack.append(0.0)
        self._start = time.perf_counter()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.total = time.perf_counter() - self._start
        self.seconds["other"] += self.total - self._stack.pop()
        self.steps = self.model.num_timesteps - self._steps0
        for owner, name, original in reversed(self._undo):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._undo.clear()


def profile_old(algo: str, game: str, steps: int, threads: int) -> PhaseTimers:
    """Plain SB3 with the old defaults, timed by phase."""
    overrides = {"learning_starts": 1000} if algo == "dqn" else {}
    model = plain_model(algo, ID_OF[game], seed=0, overrides=overrides)
    torch.set_num_threads(threads)
    timers = PhaseTimers()
    model.learn(steps, callback=timers)
    model.env.close()
    return timers


def profile_new(algo: str, game: str, steps: int, threads: int, folder: Path,
                sets: list[str] | None = None) -> PhaseTimers:
    """``policyshare.train.train`` with the resolved config (and ``--new-set`` overrides), timed by phase."""
    from policyshare.config import deep_merge, parse_overrides
    from policyshare.train import train

    timers = PhaseTimers()
    overrides: dict[str, Any] = {"torch_threads": threads, "checkpoint_freq": 0, "progress_bar": False,
                                 "eval": {"freq": 0, "final_episodes": 1, "random_episodes": 1}}
    if algo == "dqn":
        overrides["hyperparams"] = {"learning_starts": 1000}
    overrides = deep_merge(overrides, parse_overrides(sets or []))
    train(ID_OF[game], algo, timesteps=steps, seed=0, run_dir=folder / f"{algo}_{game}_{time.monotonic_ns()}",
          overrides=overrides, extra_callbacks=[timers])
    return timers


def inference_mode_check(game: str, n: int, repeats: int = 300) -> tuple[float, float]:
    """Seconds per forward pass of policyshare's PPO policy on ``n`` observations under
    ``torch.no_grad`` and under ``torch.inference_mode`` (interleaved, medians)."""
    import statistics

    from policyshare.algos import build_model
    from policyshare.envs import check_env_id, make_vec_env
    from policyshare.train import load_train_config

    env_id = ID_OF[game]
    cfg, params = load_train_config(env_id, "ppo")
    env = make_vec_env(env_id, n, 0, cfg.vec_env)
    model = build_model("ppo", env, params, cfg.policy, cfg.trunk, check_env_id(env_id), 0)
    obs = torch.as_tensor(env.reset())
    times: dict[str, list[float]] = {"no_grad": [], "inference_mode": []}
    contexts = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}
    for _ in range(repeats):
        for name, ctx in contexts.items():
            start = time.perf_counter()
            with ctx():
                model.policy(obs)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["no_grad"]), statistics.median(times["inference_mode"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", nargs="+", default=list(ID_OF), choices=list(ID_OF))
    parser.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"])
    parser.add_argument("--ppo-steps", type=int, default=32_768, help="env steps per PPO run")
    parser.add_argument("--dqn-steps", type=int, default=6_000, help="env steps per DQN run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--new-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of the new side's config, as `policyshare train --set`")
    parser.add_argument("--inference-mode", action="store_true",
                        help="also time the policy forward under no_grad vs inference_mode")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            steps = args.ppo_steps if algo == "ppo" else args.dqn_steps
            for game in args.games:
                for side in ("old", "new"):
                    t = (profile_old(algo, game, steps, args.threads) if side == "old"
                         else profile_new(algo, game, steps, args.threads, Path(tmp), args.new_set))
                    rows.append((algo, game, side, t))
                    print(f"{algo} {game} {side}: {t.steps / t.total:,.0f} env steps/s", flush=True)

    print()
    print("| algo | game | defaults | env steps/s | " + " | ".join(PHASES) + " |")
    print("|---|---|---|---:|" + "---:|" * len(PHASES))
    for algo, game, side, t in rows:
        shares = " | ".join(f"{100 * t.seconds.get(p, 0.0) / t.total:.0f}%" for p in PHASES)
        print(f"| {algo} | {game} | {side} | {t.steps / t.total:,.0f} | {shares} |")
    print(f"\nshare of the training loop's wall time; torch threads {args.threads}; "
          f"PPO {args.ppo_steps} / DQN {args.dqn_steps} env steps per run (rounded up to whole rollouts)")

    if args.inference_mode:
        for game in args.games[:1]:
            for n in (8, 128):
                a, b = inference_mode_check(game, n)
                print(f"policy forward on {n} {game} observations: no_grad {a * 1e6:.0f} µs, "
                      f"inference_mode {b * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
