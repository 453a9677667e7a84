"""The zoo: expert checkpoints for the five MinAtar games, shipped with the package, several seeds each.

Each expert is a ``policyshare train`` run's final model (``<env-slug>__s<seed>.zip``, e.g.
``MinAtar-Breakout-v1__s0.zip``, an SB3 zip that plain ``PPO.load`` reads) with its provenance
beside it (``<env-slug>__s<seed>.json``): the env id, algorithm, seed, env steps, the resolved config
as the run used it, the command line(s), versions and git commit (and whether the tree had
uncommitted changes) of every invocation of the training run, and its final evaluation — mean and
std return over the run's final episodes with the evaluation seed, a 95 % bootstrap interval of the
mean, and the random-policy return. Returns are episode returns in the game's own reward units.

Seeds: an expert is named by its env id and training seed; ``seed=None`` everywhere means seed 0,
which every game of the shipped zoo has. Files under the older one-expert-per-game name
(``<env-slug>.zip``/``.json``) are still read, under the seed their provenance records.

The shipped zips keep the weights but not the optimizer's moment estimates (a fresh optimizer
state), which makes them about a third of the size (about 0.7 MB per expert); they act and
fine-tune, but do not resume the original run bit for bit.

How the zoo is trained (``make zoo``): for each game of Breakout, SpaceInvaders, Asterix, Freeway
and Seaquest and each seed 0, 1, 2, ``policyshare train --env MinAtar/<G>-v1 --seed <S> --timesteps
5000000 --run-dir runs/zoo/<G>__s<S> --set eval.freq=250000 --set eval.episodes=20 --set
eval.final_episodes=100 --set checkpoint_freq=500000`` (two runs at a time, ``--resume`` where the
folder exists), then ``policyshare zoo add`` of every run. ``zoo add`` refuses a run trained from a
tree with uncommitted changes unless told otherwise (``--allow-dirty``).

Example:
    >>> from policyshare import zoo
    >>> [(e.env_id, e.seed) for e in zoo.list_experts()]  # doctest: +SKIP
    [('MinAtar/Asterix-v1', 0), ('MinAtar/Asterix-v1', 1), ...]
    >>> model = zoo.load("MinAtar/Breakout-v1", seed=1)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policyshare.errors import UserError
from policyshare.io import atomic_write_json, read_json, slug
from policyshare.sb3_files import load_sb3, read_sb3_header, save_sb3

ZOO_DIR = Path(__file__).resolve().parent

#: The published return each MinAtar game's zoo should reach (mean over seeds, issue 11): PPO at
#: 10M env steps in gymnax's table for Breakout, Asterix, Freeway and SpaceInvaders; DQN at 5M
#: frames in the MinAtar paper's curves for Seaquest (gymnax lists none).
TARGETS: dict[str, float] = {"MinAtar/Breakout-v1": 28.0, "MinAtar/Asterix-v1": 15.0,
                             "MinAtar/Freeway-v1": 58.0, "MinAtar/Seaquest-v1": 20.0,
                             "MinAtar/SpaceInvaders-v1": 131.0}

_REF = re.compile(r"^(?P<env>.+?)(?:@s(?P<seed>[0-9]+))?$")


@dataclass(frozen=True)
class Expert:
    """One zoo entry: the checkpoint and its provenance.

    Attributes:
        env_id: the Gymnasium id it was trained on.
        seed: its training seed.
        path: the SB3 zip.
        provenance: the JSON beside it (see the module docstring).
    """

    env_id: str
    seed: int
    path: Path
    provenance: dict[str, Any]

    @property
    def eval_mean(self) -> float:
        """Mean return (game reward units) of its final evaluation."""
        return float(self.provenance["evaluation"]["mean"])

    @property
    def interval(self) -> tuple[float, float]:
        """95 % bootstrap interval of :attr:`eval_mean` over the evaluation's episodes."""
        low, high = self.provenance["evaluation"]["interval_95"]
        return float(low), float(high)

    @property
    def episodes(self) -> int:
        """Episodes of its final evaluation."""
        return int(self.provenance["evaluation"]["episodes"])


def file_name(env_id: str, seed: int) -> str:
    """The zip's name in the zoo: ``<env-slug>__s<seed>.zip`` (``MinAtar-Breakout-v1__s0.zip``)."""
    return f"{slug(env_id)}__s{int(seed)}.zip"


def list_experts(folder: Path = ZOO_DIR) -> list[Expert]:
    """Every expert in the zoo — each (env id, seed) once — sorted by env id, then seed.

    A provenance file without its zip is skipped. Where a file under the old one-per-game name and
    one under the seeded name hold the same (env id, seed), the seeded one is listed.

    Raises:
        CheckpointError: a provenance file that is not JSON.
    """
    found: dict[tuple[str, int], Expert] = {}
    for meta in sorted(folder.glob("*.json")):
        zip_path = meta.with_suffix(".zip")
        if not zip_path.is_file():
            continue
        prov = read_json(meta, "zoo provenance")
        e = Expert(str(prov["env_id"]), int(prov.get("seed", 0)), zip_path, prov)
        key = (e.env_id, e.seed)
        if key not in found or zip_path.name == file_name(*key):
            found[key] = e
    return [found[k] for k in sorted(found)]


def seeds(env_id: str, folder: Path = ZOO_DIR) -> list[int]:
    """The training seeds the zoo holds for ``env_id`` (ascending; empty when it has none)."""
    return [e.seed for e in list_experts(folder) if e.env_id == env_id]


def find_expert(env_id: str, seed: int | None = None, folder: Path = ZOO_DIR) -> Expert:
    """The zoo entry of ``env_id`` trained with ``seed`` (``None`` means seed 0).

    Raises:
        UserError: no expert for that env (naming the envs there are), or none with that seed
            (naming the seeds there are).
    """
    want = 0 if seed is None else int(seed)
    experts = list_experts(folder)
    for e in experts:
        if e.env_id == env_id and e.seed == want:
            return e
    have = [e.seed for e in experts if e.env_id == env_id]
    if have:
        asked = "seed 0 (the default)" if seed is None else f"seed {want}"
        raise UserError(f"the zoo has no {asked} of {env_id!r}; its seeds: "
                        f"{', '.join(str(s) for s in have)} (pass one as seed=, or zoo:{env_id}@s<seed>)")
    envs = ", ".join(dict.fromkeys(e.env_id for e in experts)) or "none"
    raise UserError(f"the zoo has no expert for {env_id!r}; it has: {envs}")


def expert_path(env_id: str, seed: int | None = None, folder: Path = ZOO_DIR) -> Path:
    """The zoo checkpoint (SB3 zip) of ``env_id`` trained with ``seed``.

    Args:
        env_id: e.g. ``"MinAtar/Breakout-v1"``.
        seed: the expert's training seed; ``None`` means seed 0.
        folder: the zoo's folder.

    Raises:
        UserError: no expert for that env (naming the envs there are), or none with that seed
            (naming the seeds there are).
    """
    return find_expert(env_id, seed, folder).path


def load(env_id: str, seed: int | None = None, safe: bool = False, device: str = "cpu",
         folder: Path = ZOO_DIR) -> Any:
    """Load the zoo expert of ``env_id`` as an SB3 model (its checksum verified).

    Args:
        env_id: e.g. ``"MinAtar/Breakout-v1"``.
        seed: the expert's training seed; ``None`` means seed 0.
        safe: rebuild from JSON and load weights only (never unpickle).
        device: torch device.
        folder: the zoo's folder.

    Raises:
        UserError: no expert for that env, or none with that seed (naming the seeds there are).
        CheckpointError: a corrupt file.
    """
    model, _ = load_sb3(expert_path(env_id, seed, folder), device=device, safe=safe)
    return model


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``ENV_ID`` or ``ENV_ID@s<seed>`` (what follows ``zoo:`` in a trunk reference) → (env id, seed).

    ``MinAtar/Breakout-v1`` → ``("MinAtar/Breakout-v1", None)`` (seed 0);
    ``MinAtar/Breakout-v1@s2`` → ``("MinAtar/Breakout-v1", 2)``.

    Raises:
        UserError: an ``@`` not followed by ``s`` and a whole number.
    """
    m = _REF.match(ref)
    if m is None or "@" in m["env"]:
        raise UserError(f"zoo expert {ref!r}: write ENV_ID or ENV_ID@s<seed>, e.g. MinAtar/Breakout-v1@s1")
    return m["env"], None if m["seed"] is None else int(m["seed"])


def bootstrap_interval(returns: list[float], reps: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of per-episode returns (same units)."""
    r = np.asarray(returns, float)
    rng = np.random.default_rng(seed)
    means = r[rng.integers(len(r), size=(reps, len(r)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def tree_problem(invocations: Sequence[dict[str, Any]]) -> str | None:
    """Why a run's code is not one clean commit, from its ``meta.json`` invocations; ``None`` if it is.

    Every invocation (the first and each ``--resume``) must record a git commit and a tree without
    uncommitted changes to tracked files.
    """
    if not invocations:
        return "has no recorded invocations (meta.json)"
    gits = [inv.get("git") or {} for inv in invocations]
    if any(not g.get("commit") for g in gits):
        return "recorded no git commit (trained outside a source checkout)"
    dirty = [str(g["commit"])[:12] for g in gits if g.get("dirty")]
    if dirty:
        return f"was trained from a tree with uncommitted changes (on commit {dirty[0]})"
    return None


def check_run(run_dir: str | Path, allow_dirty: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's ``metrics.json`` and ``meta.json`` once it is fit for the zoo.

    Raises:
        UserError: the run is not finished, or was not trained from one clean commit
            (:func:`tree_problem`) and ``allow_dirty`` is off.
        CheckpointError: unreadable ``metrics.json`` or ``meta.json``.
    """
    run = Path(run_dir)
    if not (run / "metrics.json").is_file():
        raise UserError(f"{run} is not a finished policyshare train run (no metrics.json)")
    metrics = read_json(run / "metrics.json", "metrics")
    meta = read_json(run / "meta.json", "run metadata")
    problem = tree_problem(meta.get("invocations", []))
    if problem and not allow_dirty:
        raise UserError(f"{run} {problem}; the zoo's provenance needs a clean commit: commit, retrain the "
                        "run from the clean tree, then add it (or pass --allow-dirty to add it anyway)")
    return metrics, meta


def add_expert(run_dir: str | Path, folder: Path = ZOO_DIR, allow_dirty: bool = False) -> Expert:
    """Copy a finished ``policyshare train`` run into the zoo as ``<env-slug>__s<seed>.zip`` + ``.json``.

    The seed is the run's (its ``metrics.json``); an expert already there for the same env and
    seed is replaced. The optimizer's state is replaced by a fresh one (see the module docstring).
    The provenance keeps the resolved config (the run's ``config.yaml``), every invocation's
    command line, versions and git commit (``training``), whether they form one clean commit
    (``trained_from_clean_commit``) and the final evaluation with its 95 % bootstrap interval.

    Args:
        run_dir: the finished run's folder.
        folder: the zoo's folder.
        allow_dirty: add a run trained from a tree with uncommitted changes (or outside a git
            checkout) anyway; the provenance says so.

    Raises:
        UserError: the run is not finished, or not trained from a clean commit (without
            ``allow_dirty``).
        CheckpointError: missing or corrupt files.
    """
    import yaml

    run = Path(run_dir)
    metrics, meta = check_run(run, allow_dirty)
    model, header = load_sb3(run / "model.zip")
    opt = model.policy.optimizer
    model.policy.optimizer = type(opt)(model.policy.parameters(), **opt.defaults)
    env_id, train_seed = str(metrics["env_id"]), int(metrics["seed"])
    target = folder / file_name(env_id, train_seed)
    save_sb3(model, target, {**header, "zoo": True})
    seed = train_seed + 10_000
    invocations = meta["invocations"]
    provenance = {
        "env_id": env_id, "algo": metrics["algo"], "seed": train_seed,
        "timesteps": metrics["timesteps"],
        "evaluation": {"mean": metrics["eval_mean_return"], "std": metrics["eval_std_return"],
                       "episodes": metrics["eval_episodes"], "seed": seed,
                       "returns": metrics["eval_returns"],
                       "interval_95": list(bootstrap_interval(metrics["eval_returns"]))},
        "random_mean_return": metrics["random_mean_return"],
        "config": yaml.safe_load((run / "config.yaml").read_text()),
        "training": invocations,
        "trained_from_clean_commit": tree_problem(invocations) is None,
        "source_run": str(run),
        "checkpoint_sha256": read_sb3_header(target)["entries_sha256"],
        "evaluate_with": f"policyshare evaluate {target.name} --episodes {metrics['eval_episodes']} "
                         f"--seed {seed}",
    }
    atomic_write_json(target.with_suffix(".json"), provenance)
    return Expert(env_id, train_seed, target, provenance)


def describe(expert: Expert) -> str:
    """One line: env id, seed, score with its interval, env steps, algorithm."""
    low, high = expert.interval
    return (f"{expert.env_id:28s} s{expert.seed:<3d} {expert.eval_mean:8.2f} [{low:.2f}, {high:.2f}]  "
            f"{expert.episodes} episodes  {expert.provenance['algo']} "
            f"{int(expert.provenance['timesteps']):,} env steps  "
            f"(random {expert.provenance['random_mean_return']:.2f})")


@dataclass(frozen=True)
class GameSummary:
    """One game's experts taken together.

    Attributes:
        env_id: the game.
        seeds: the experts' training seeds.
        mean: mean over seeds of each expert's evaluation mean (game reward units).
        interval: 95 % Student-t interval of that mean over seeds (the seeds' spread, not the
            episodes'), or ``None`` with fewer than 2 seeds.
        target: the published return of :data:`TARGETS`, or ``None`` for a game without one.
    """

    env_id: str
    seeds: tuple[int, ...]
    mean: float
    interval: tuple[float, float] | None
    target: float | None

    @property
    def needs(self) -> float | None:
        """What the mean still lacks to reach :attr:`target` (0 when reached; ``None`` without one)."""
        return None if self.target is None else max(0.0, self.target - self.mean)


def summarise(experts: Sequence[Expert]) -> list[GameSummary]:
    """Per game (sorted by env id): the mean over its seeds, its 95 % t-interval, the published target."""
    from scipy import stats

    out = []
    for env_id in sorted({e.env_id for e in experts}):
        group = [e for e in experts if e.env_id == env_id]
        means = np.array([e.eval_mean for e in group], float)
        mean = float(means.mean())
        interval = None
        if len(means) >= 2:
            half = float(stats.t.ppf(0.975, len(means) - 1)) * float(means.std(ddof=1)) / math.sqrt(len(means))
            interval = (mean - half, mean + half)
        out.append(GameSummary(env_id, tuple(e.seed for e in group), mean, interval, TARGETS.get(env_id)))
    return out


def describe_game(s: GameSummary) -> str:
    """One line: the game's mean over seeds with its interval, its target and what it still needs."""
    n = len(s.seeds)
    if s.interval is None:
        score = f"{s.mean:8.2f} (one seed: no interval over seeds)"
    else:
        score = f"{s.mean:8.2f} [{s.interval[0]:.2f}, {s.interval[1]:.2f}] (95% t-interval over {n} seeds)"
    if s.target is None:
        goal = "no published target"
    elif s.needs == 0:
        goal = f"target {s.target:g}: reached"
    else:
        goal = f"target {s.target:g}: needs +{s.needs:.2f}"
    return f"{s.env_id:28s} {score}  {goal}"


__all__ = ["TARGETS", "ZOO_DIR", "Expert", "GameSummary", "add_expert", "check_run", "describe", "describe_game",
           "expert_path", "file_name", "find_expert", "list_experts", "load", "parse_ref", "seeds", "summarise",
           "tree_problem"]
