"""The zoo: expert checkpoints for the five MinAtar games, shipped with the package.

Each expert is a ``policyshare train`` run's final model (``<env>.zip``, an SB3 zip that plain
``PPO.load`` reads) with its provenance beside it (``<env>.json``): the env id, algorithm, seed,
env steps, the resolved config, the command line, versions and git commit of the training run,
and its evaluation — mean and std return over N episodes with the evaluation seed, a 95 %
bootstrap interval of the mean, and the random-policy return.

The shipped zips keep the weights but not the optimizer's moment estimates (a fresh optimizer
state), which makes them about a third of the size; they act and fine-tune, but do not resume
the original run bit for bit.

Example:
    >>> from policyshare import zoo
    >>> [e.env_id for e in zoo.list_experts()]  # doctest: +SKIP
    ['MinAtar/Asterix-v1', 'MinAtar/Breakout-v1', ...]
    >>> model = zoo.load("MinAtar/Breakout-v1")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.errors import UserError
from policyshare.io import atomic_write_json, read_json, slug
from policyshare.sb3_files import load_sb3, read_sb3_header, save_sb3

ZOO_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Expert:
    """One zoo entry: the checkpoint and its provenance."""

    env_id: str
    path: Path
    provenance: dict[str, Any]

    @property
    def eval_mean(self) -> float:
        return float(self.provenance["evaluation"]["mean"])

    @property
    def interval(self) -> tuple[float, float]:
        low, high = self.provenance["evaluation"]["interval_95"]
        return float(low), float(high)


def list_experts(folder: Path = ZOO_DIR) -> list[Expert]:
    """Every expert in the zoo, sorted by env id."""
    out = []
    for meta in sorted(folder.glob("*.json")):
        prov = read_json(meta, "zoo provenance")
        out.append(Expert(str(prov["env_id"]), meta.with_suffix(".zip"), prov))
    return sorted(out, key=lambda e: e.env_id)


def expert_path(env_id: str, folder: Path = ZOO_DIR) -> Path:
    """The zoo checkpoint of ``env_id``.

    Raises:
        UserError: no expert for that env (naming the ones there are).
    """
    path = folder / f"{slug(env_id)}.zip"
    if not path.is_file():
        have = ", ".join(e.env_id for e in list_experts(folder)) or "none"
        raise UserError(f"the zoo has no expert for {env_id!r}; it has: {have}")
    return path


def load(env_id: str, safe: bool = False, device: str = "cpu") -> Any:
    """Load the zoo expert of ``env_id`` as an SB3 model (its checksum verified).

    Args:
        env_id: e.g. ``"MinAtar/Breakout-v1"``.
        safe: rebuild from JSON and load weights only (never unpickle).
        device: torch device.

    Raises:
        UserError: no expert for that env.
        CheckpointError: a corrupt file.
    """
    model, _ = load_sb3(expert_path(env_id), device=device, safe=safe)
    return model


def bootstrap_interval(returns: list[float], reps: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of per-episode returns."""
    r = np.asarray(returns, float)
    rng = np.random.default_rng(seed)
    means = r[rng.integers(len(r), size=(reps, len(r)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def add_expert(run_dir: str | Path, folder: Path = ZOO_DIR) -> Expert:
    """Copy a finished ``policyshare train`` run into the zoo, with its provenance.

    The optimizer's state is replaced by a fresh one (see the module docstring).

    Raises:
        UserError: the run is not finished.
        CheckpointError: missing or corrupt files.
    """
    import yaml

    run = Path(run_dir)
    if not (run / "metrics.json").is_file():
        raise UserError(f"{run} is not a finished policyshare train run (no metrics.json)")
    metrics = read_json(run / "metrics.json", "metrics")
    meta = read_json(run / "meta.json", "run metadata")
    model, header = load_sb3(run / "model.zip")
    opt = model.policy.optimizer
    model.policy.optimizer = type(opt)(model.policy.parameters(), **opt.defaults)
    env_id = str(metrics["env_id"])
    target = folder / f"{slug(env_id)}.zip"
    save_sb3(model, target, {**header, "zoo": True})
    seed = int(metrics["seed"]) + 10_000
    provenance = {
        "env_id": env_id, "algo": metrics["algo"], "seed": metrics["seed"],
        "timesteps": metrics["timesteps"],
        "evaluation": {"mean": metrics["eval_mean_return"], "std": metrics["eval_std_return"],
                       "episodes": metrics["eval_episodes"], "seed": seed,
                       "returns": metrics["eval_returns"],
                       "interval_95": list(bootstrap_interval(metrics["eval_returns"]))},
        "random_mean_return": metrics["random_mean_return"],
        "config": yaml.safe_load((run / "config.yaml").read_text()),
        "training": meta["invocations"],
        "source_run": str(run),
        "checkpoint_sha256": read_sb3_header(target)["entries_sha256"],
        "evaluate_with": f"policyshare evaluate {target.name} --episodes {metrics['eval_episodes']} "
                         f"--seed {seed}",
    }
    atomic_write_json(target.with_suffix(".json"), provenance)
    return Expert(env_id, target, provenance)


def describe(expert: Expert) -> str:
    """One line: env id, score with its interval, env steps, algorithm."""
    low, high = expert.interval
    return (f"{expert.env_id:28s} {expert.eval_mean:8.2f} [{low:.2f}, {high:.2f}]  "
            f"{expert.provenance['algo']} {int(expert.provenance['timesteps']):,} env steps  "
            f"(random {expert.provenance['random_mean_return']:.2f})")


__all__ = ["ZOO_DIR", "Expert", "add_expert", "describe", "expert_path", "list_experts", "load"]
