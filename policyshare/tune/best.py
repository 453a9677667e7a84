"""The best trial's config as YAML for ``configs/<algo>.yaml``, as rl-baselines3-zoo prints it.

One block keyed by the env id, with the agent's keys of the trial's resolved ``config.yaml``:
``n_envs``, the full ``hyperparams``, and ``vec_env``, ``policy`` and ``trunk`` where they differ
from :class:`~policyshare.train.TrainConfig`'s defaults, so that the block trains the same agent
pasted into ``configs/<algo>.yaml`` (over its ``default:``) or alone as ``--config FILE``. Run
settings (``timesteps``, ``eval``, ``checkpoint_freq`` …) are left to the file it goes into. A
comment above names the trials, budget, seed and score that chose it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from policyshare.config import to_dict
from policyshare.errors import CheckpointError
from policyshare.runs import command_line
from policyshare.tune.space import SearchSpace

#: Keys of a train config that make the agent (the rest are run settings).
AGENT_KEYS = ("n_envs", "vec_env", "policy", "trunk", "hyperparams")


def agent_block(resolved: dict[str, Any]) -> dict[str, Any]:
    """The agent's keys of a resolved train config (a run's ``config.yaml``): ``n_envs`` and
    ``hyperparams`` always, ``vec_env``/``policy``/``trunk`` where not the defaults."""
    from policyshare.train import TrainConfig

    defaults = to_dict(TrainConfig())
    out: dict[str, Any] = {}
    for key in AGENT_KEYS:
        if key not in resolved:
            continue
        if key in ("n_envs", "hyperparams") or resolved[key] != defaults.get(key):
            out[key] = resolved[key]
    return out


def best_config_yaml(run_dir: Path, *, best: Any, trials: Sequence[Any], budget: int, seed: int,
                     space: SearchSpace) -> str:
    """The YAML block of the best trial, with a comment saying how it was chosen.

    Args:
        run_dir: the best trial's run folder (its ``config.yaml`` and ``metrics.json`` are read).
        best: its :class:`~policyshare.tune.search.TrialOutcome`.
        trials: every trial's outcome.
        budget: env steps per trial.
        seed: the trials' seed.
        space: the search space (named in the comment).

    Raises:
        CheckpointError: the run folder's ``config.yaml`` or ``metrics.json`` is missing or corrupt.
    """
    from policyshare.io import read_json

    try:
        resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CheckpointError(f"cannot read the best trial's config {run_dir / 'config.yaml'}: {e}") from e
    metrics = read_json(run_dir / "metrics.json", "run metrics")
    env_id, algo = resolved["env_id"], resolved["algo"]
    counts = {s: sum(1 for t in trials if t.status == s) for s in ("finished", "stopped early", "failed", "error")}
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines = [
        f"# {env_id} {algo.upper()}: tuned by `policyshare tune` (Ray Tune, Optuna TPE sampler, ASHA early stopping)",
        f"# over {', '.join(d.name for d in space.dimensions) or 'nothing (all keys fixed)'} ({space.path}).",
        f"# Best of {len(trials)} trials ({tally}) of {budget} env steps each, seed {seed}: {best.name} with",
        f"# eval/mean_reward {metrics['eval_mean_return']:.2f} ± {metrics['eval_std_return']:.2f} over "
        f"{metrics['eval_episodes']} episodes after {metrics['timesteps']} env steps "
        f"(random policy {metrics['random_mean_return']:.2f}).",
        f"# Trials: {run_dir.parent}/trial_<k>/ (summary.json); command: {command_line()}",
    ]
    block = yaml.safe_dump({env_id: agent_block(resolved)}, sort_keys=False, default_flow_style=None)
    return "\n".join(lines) + "\n" + block
