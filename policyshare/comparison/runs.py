"""Curves and final figures read back from run folders, and the target's reference returns.

A run's ``evaluations.json`` (:class:`~policyshare.callbacks.PeriodicEvaluation`) gives two
learning curves over the same evaluation points, both ``(env steps, mean return)``:

* **greedy evaluation** (``"greedy"``): the mean return of ``eval.episodes`` greedy episodes on a
  separately seeded env at each point, from the step-0 evaluation of the untrained agent on;
* **training episodes** (``"training"``): the mean return of the training episodes (SB3
  ``Monitor``'s, stochastic actions, whole episodes) that finished since the previous point —
  the curve whose area Rusu et al. 2016 report. No training episode has finished at env step 0,
  so its step-0 value is that of its first window (the episodes finished by the next point); a
  point with no finished episode is left out (its neighbours are interpolated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from policyshare.io import read_json
from policyshare.stats import seed_label

Curve = tuple[list[float], list[float]]
"""``(env steps, mean return)``, two lists of the same length ``n``."""

CurveKind = Literal["greedy", "training"]

#: What each curve is, in the words every table and plot uses.
CURVE_LABELS: dict[str, str] = {"greedy": "greedy evaluation", "training": "training episodes"}

#: Why a run has no training-episode curve (the short reason tables group seeds by).
NO_TRAINING_CURVE = "no training-episode returns recorded"


def _training_curve(data: Mapping[str, Any]) -> Curve | str:
    steps = [float(t) for t in data["timesteps"]]
    means = data.get("train_mean")
    if means is None:
        return NO_TRAINING_CURVE
    points = [(t, float(v)) for t, v in zip(steps, means) if v is not None and math.isfinite(float(v))]
    if not points:
        return NO_TRAINING_CURVE
    if points[0][0] > 0:  # no episode has finished at step 0: the first window's mean stands for it
        points.insert(0, (0.0, points[0][1]))
    if len(points) == 1:
        return NO_TRAINING_CURVE
    return [t for t, _ in points], [v for _, v in points]


@overload
def load_curve(run_dir: str | Path, kind: Literal["greedy"] = "greedy") -> Curve: ...


@overload
def load_curve(run_dir: str | Path, kind: Literal["training"]) -> Curve | str: ...


def load_curve(run_dir: str | Path, kind: CurveKind = "greedy") -> Curve | str:
    """One learning curve of a run folder's ``evaluations.json``.

    Args:
        run_dir: the run folder.
        kind: ``"greedy"`` (greedy evaluation) or ``"training"`` (training episodes; see the
            module docstring).

    Returns:
        ``(env steps, mean return)``; for ``"training"``, :data:`NO_TRAINING_CURVE` where the file
        holds no training-episode returns (written before they were recorded, or no episode
        finished).

    Raises:
        CheckpointError: the file is missing or corrupt.
        ValueError: an unknown kind.
    """
    data = read_json(Path(run_dir) / "evaluations.json", "evaluation curve")
    if kind == "greedy":
        return [float(t) for t in data["timesteps"]], [float(v) for v in data["mean"]]
    if kind == "training":
        return _training_curve(data)
    raise ValueError(f"unknown curve {kind!r}; use 'greedy' or 'training'")


@dataclass
class Runs:
    """The compared runs, read back from their run folders; every field is method → seed → value.

    Seeds are :data:`~policyshare.stats.SeedKey`: a target seed, or ``(upstream seed, target
    seed)``.

    Attributes:
        curves: the greedy-evaluation curve (``evaluations.json``).
        train_curves: the training-episode curve, or why there is none.
        metrics: the final figures (``metrics.json``: ``eval_mean_return``, ``timesteps``,
            ``random_mean_return``, ``n_parameters`` …).
        dirs: the run folder.
    """

    curves: dict[str, dict[Any, Curve]] = field(default_factory=dict)
    train_curves: dict[str, dict[Any, Curve | str]] = field(default_factory=dict)
    metrics: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=dict)
    dirs: dict[str, dict[Any, Path]] = field(default_factory=dict)

    def curves_of(self, kind: CurveKind) -> dict[str, dict[Any, Curve | str]]:
        """Every run's curve of one kind (``"greedy"`` or ``"training"``): method → seed → curve."""
        if kind == "training":
            return {m: dict(by_seed) for m, by_seed in self.train_curves.items()}
        return {m: dict(by_seed) for m, by_seed in self.curves.items()}

    def column(self, key: str) -> dict[str, dict[str, Any]]:
        """One field of every run's ``metrics.json``: method → seed (:func:`~policyshare.stats.seed_label`,
        a string as JSON keys are) → value (``None`` where the file has no such key)."""
        return {m: {seed_label(s): met.get(key) for s, met in by_seed.items()} for m, by_seed in self.metrics.items()}

    def finals(self) -> dict[str, dict[str, float]]:
        """Final mean evaluation return: method → seed (as a string) → return."""
        return {m: {seed_label(s): float(met["eval_mean_return"]) for s, met in by_seed.items()}
                for m, by_seed in self.metrics.items()}

    def seeds(self) -> list[Any]:
        """Every seed with a run of some method, sorted."""
        return sorted({s for by_seed in self.curves.values() for s in by_seed})

    def random_return(self) -> float | None:
        """The random policy's mean return on the target: the mean over runs of their
        ``metrics.json``'s ``random_mean_return`` (``None`` when no run records one)."""
        values = [float(met["random_mean_return"]) for by_seed in self.metrics.values() for met in by_seed.values()
                  if isinstance(met.get("random_mean_return"), (int, float))]
        return float(np.mean(values)) if values else None

    def budget(self) -> int | None:
        """The env steps every run reached: the smallest last evaluation step (``None``: no runs)."""
        ends = [int(c[0][-1]) for by_seed in self.curves.values() for c in by_seed.values() if c[0]]
        return min(ends) if ends else None


def read_runs(folders: Mapping[str, Mapping[Any, str | Path]], *, finished_only: bool = False) -> Runs:
    """Read the learning curves and final figures of every compared run.

    Args:
        folders: method → seed (a target seed or ``(upstream, target)``) → run folder.
        finished_only: skip runs without a ``metrics.json`` (not finished yet) instead of
            refusing them; a method left with no run is left out.

    Returns:
        The runs, in the order of ``folders`` (methods, then seeds).

    Raises:
        CheckpointError: a run's ``evaluations.json`` or ``metrics.json`` is missing (unless
            ``finished_only``) or corrupt.
    """
    out = Runs()
    for method, by_seed in folders.items():
        for seed, folder in by_seed.items():
            path = Path(folder)
            if finished_only and not (path / "metrics.json").is_file():
                continue
            out.metrics.setdefault(method, {})[seed] = read_json(path / "metrics.json", "run metrics")
            data = read_json(path / "evaluations.json", "evaluation curve")
            out.curves.setdefault(method, {})[seed] = ([float(t) for t in data["timesteps"]],
                                                       [float(v) for v in data["mean"]])
            out.train_curves.setdefault(method, {})[seed] = _training_curve(data)
            out.dirs.setdefault(method, {})[seed] = path
    return out


def zoo_expert_return(env_id: str) -> tuple[float | None, str]:
    """The expert return of ``env_id`` and where it comes from: the shipped zoo experts' recorded
    greedy evaluations (:mod:`policyshare.zoo`; no new evaluation), averaged over the zoo's seeds
    of that game.

    Returns:
        ``(mean return, "zoo expert <file>[, <file> …] (greedy, … episodes each, seed …)")``, or
        ``(None, reason)`` where the zoo has no expert for the env.
    """
    from policyshare import zoo

    experts = [e for e in zoo.list_experts() if e.env_id == env_id]
    if not experts:
        return None, f"the zoo has no expert for {env_id}"
    episodes = sorted({str(e.provenance.get("evaluation", {}).get("episodes", "?")) for e in experts})
    seeds = sorted({str(e.provenance.get("evaluation", {}).get("seed", "?")) for e in experts})
    mean = float(np.mean([e.eval_mean for e in experts]))
    return mean, (f"zoo expert {', '.join(e.path.name for e in experts)} (greedy, {'/'.join(episodes)} episodes "
                  f"each, seed {'/'.join(seeds)}{', mean over the seeds' if len(experts) > 1 else ''})")


def mean_over_seeds(values: Mapping[Any, float]) -> float:
    """The plain mean of per-seed values (e.g. final returns)."""
    return float(np.mean(list(values.values())))
