"""Search spaces of ``policyshare tune``: ``configs/tune.yaml`` read, checked and sampled.

The file is data (``yaml.safe_load``, nothing evaluated). Its ``tuner:`` entry sets the search
(:class:`TunerSettings`); every other top-level key is an algorithm whose mapping mirrors a train
config (``configs/<algo>.yaml``): top-level train keys (``n_envs``, ``vec_env`` …) and
``hyperparams:``. Each leaf is a fixed value or one distribution (:data:`DISTRIBUTIONS`)::

    n_envs: {choice: [8, 16, 32, 64, 128]}
    hyperparams:
      learning_rate: {loguniform: [1.0e-5, 3.0e-3], schedule: [constant, linear]}

A searched key becomes one :class:`Dimension`, and a Ray Tune domain (``tune.choice``,
``tune.loguniform`` …) that Optuna's sampler draws from. A sampled trial turns back into the
``--set``-style overrides of one ``policyshare train`` run (:func:`trial_overrides`).

Every value a dimension can take (each choice, both bounds, with each schedule) is checked up
front against the train config it will override (:func:`check_search_space`), so a space that
cannot train is refused before any trial runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import Field, PositiveFloat, PositiveInt

from policyshare.config import SETTINGS, Settings, deep_merge, from_dict, read_yaml
from policyshare.errors import ConfigError
from policyshare.paths import default_config

#: Distributions of a searched key: ``{choice: [...]}``, ``{uniform: [low, high]}`` (float),
#: ``{loguniform: [low, high]}`` (float, low > 0), ``{int: [low, high]}`` and ``{logint: [low, high]}``
#: (integers, both bounds included).
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "logint")
#: Schedules of ``learning_rate`` (and PPO's ``clip_range``): constant, or linear decay to 0
#: (``lin_<value>``, see :func:`policyshare.algos.parse_schedule`).
SCHEDULES = ("constant", "linear")
#: Train keys the tuner sets itself: the budget and the evaluations ASHA decides on.
RESERVED = ("timesteps", "eval")
#: Significant digits sampled floats are rounded to (so a printed config is readable and exact).
DIGITS = 4


@pydantic.dataclasses.dataclass(config=SETTINGS)
class TunerSettings(Settings):
    """The ``tuner:`` entry of the search-space file.

    Attributes:
        trials: Optuna samples, one Ray Tune trial (one ``policyshare train`` run) each.
        timesteps: env steps each trial trains (summed over its envs).
        evaluations: periodic evaluations per trial (``eval.freq = timesteps // evaluations``
            env steps), each reported to Ray Tune as ``eval/mean_reward``.
        grace_period: fraction of ``timesteps`` before which ASHA stops no trial (in (0, 1]).
        reduction_factor: ASHA keeps the best ``1 / reduction_factor`` of trials at each of its
            decision points (> 1).
        cpus_per_trial: CPUs Ray reserves per trial.
    """

    trials: PositiveInt = 20
    timesteps: PositiveInt = 250_000
    evaluations: PositiveInt = 10
    grace_period: Annotated[float, Field(gt=0, le=1)] = 0.2
    reduction_factor: Annotated[float, Field(gt=1)] = 3.0
    cpus_per_trial: PositiveFloat = 1.0


@dataclass(frozen=True)
class Dimension:
    """One searched key of a train config.

    Attributes:
        path: the key's path in the train config, e.g. ``("hyperparams", "learning_rate")``.
        kind: one of :data:`DISTRIBUTIONS`.
        values: the choices (``choice``) or ``(low, high)``.
        schedules: for a learning rate or clip range, the schedules searched with it
            (a subset of :data:`SCHEDULES`); empty: the value is used as it is.
    """

    path: tuple[str, ...]
    kind: str
    values: tuple[Any, ...]
    schedules: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The dotted key, as ``--set`` spells it (``hyperparams.learning_rate``)."""
        return ".".join(self.path)

    @property
    def schedule_name(self) -> str:
        """The name of the schedule's own dimension (``hyperparams.learning_rate:schedule``)."""
        return f"{self.name}:schedule"

    @property
    def by_index(self) -> bool:
        """Whether choices are sampled by position: Optuna draws only scalars (not lists)."""
        return self.kind == "choice" and not all(isinstance(v, (bool, int, float, str)) or v is None
                                                 for v in self.values)

    def candidates(self) -> list[Any]:
        """Every value to check the train config with: each choice, or both bounds."""
        return list(self.values)

    def domains(self) -> dict[str, Any]:
        """Ray Tune search domains of this key (and of its schedule), by name."""
        from ray import tune

        lo, hi = (self.values + (None, None))[:2]
        if self.kind == "choice":
            domain = tune.choice(list(range(len(self.values))) if self.by_index else list(self.values))
        elif self.kind == "uniform":
            domain = tune.uniform(lo, hi)
        elif self.kind == "loguniform":
            domain = tune.loguniform(lo, hi)
        elif self.kind == "int":
            domain = tune.randint(lo, hi + 1)  # Tune's upper bound is exclusive
        else:
            domain = tune.lograndint(lo, hi + 1)
        out = {self.name: domain}
        if self.schedules:
            out[self.schedule_name] = tune.choice(list(self.schedules))
        return out

    def value(self, sampled: Mapping[str, Any]) -> Any:
        """The train-config value of a sampled trial (rounded, with its schedule applied)."""
        v = sampled[self.name]
        if self.by_index:
            v = self.values[int(v)]
        elif self.kind in ("uniform", "loguniform"):
            v = round_sig(float(v))
        elif self.kind in ("int", "logint"):
            v = int(v)
        schedule = sampled.get(self.schedule_name, "constant") if self.schedules else "constant"
        return f"lin_{v}" if schedule == "linear" else v


@dataclass
class SearchSpace:
    """An algorithm's search space and the tuner's settings.

    Attributes:
        algo: ``ppo``, ``a2c`` or ``dqn``.
        path: the file it was read from.
        dimensions: the searched keys.
        fixed: train-config values the file fixes for every trial (nested, as ``--set``).
        settings: the ``tuner:`` entry.
    """

    algo: str
    path: Path
    dimensions: list[Dimension] = field(default_factory=list)
    fixed: dict[str, Any] = field(default_factory=dict)
    settings: TunerSettings = field(default_factory=TunerSettings)

    def domains(self) -> dict[str, Any]:
        """Ray Tune's ``param_space``: a flat mapping of dimension names to search domains."""
        out: dict[str, Any] = {}
        for d in self.dimensions:
            out.update(d.domains())
        return out

    def without(self, overrides: Mapping[str, Any]) -> SearchSpace:
        """This space with the keys that ``overrides`` (``--set``) fixes taken out of the search."""
        fixed = {tuple(p) for p, _ in _leaves(overrides)}
        kept = [d for d in self.dimensions if not any(d.path[:len(f)] == f or f[:len(d.path)] == d.path
                                                          for f in fixed)]
        return SearchSpace(self.algo, self.path, kept, self.fixed, self.settings)

    def describe(self) -> dict[str, Any]:
        """Plain data of the space for ``config.yaml`` of the tune folder."""
        return {"algo": self.algo, "file": str(self.path),
                "dimensions": {d.name: {d.kind: list(d.values), **({"schedule": list(d.schedules)}
                                                                    if d.schedules else {})}
                               for d in self.dimensions},
                "fixed": self.fixed}


def round_sig(x: float, digits: int = DIGITS) -> float:
    """``x`` rounded to ``digits`` significant digits (``0.000312345`` → ``0.0003123``)."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def _leaves(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for k, v in tree.items():
        if isinstance(v, Mapping) and v:
            yield from _leaves(v, (*prefix, str(k)))
        else:
            yield (*prefix, str(k)), v


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for part in reversed(path[:-1]):
        out = {part: out}
    return out


def _dimension(path: tuple[str, ...], spec: Mapping[str, Any], where: str) -> Dimension:
    """Parse ``{kind: values[, schedule: [...]]}`` at ``where``."""
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    extra = [k for k in spec if k not in DISTRIBUTIONS and k != "schedule"]
    if len(kinds) != 1 or extra:
        raise ConfigError(f"{where}: expected one distribution ({', '.join(DISTRIBUTIONS)}) and optionally "
                          f"'schedule', got keys {', '.join(map(str, spec))}")
    kind = kinds[0]
    values = spec[kind]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{kind}: expected a non-empty list, got {values!r}")
    if kind != "choice":
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{where}.{kind}: expected [low, high] (two numbers), got {values!r}")
        lo, hi = values
        if not lo < hi:
            raise ConfigError(f"{where}.{kind}: low ({lo}) must be below high ({hi}); for one value write it "
                              "without a distribution")
        if kind in ("loguniform", "logint") and not lo > 0:
            raise ConfigError(f"{where}.{kind}: a log scale needs low > 0, got {lo}")
        if kind in ("int", "logint") and not all(float(v).is_integer() for v in values):
            raise ConfigError(f"{where}.{kind}: expected integer bounds, got {values!r}")
        if kind in ("int", "logint"):
            values = [int(v) for v in values]
        else:
            values = [float(v) for v in values]
    schedules: tuple[str, ...] = ()
    if "schedule" in spec:
        raw = spec["schedule"]
        if (not isinstance(raw, list) or not raw or any(s not in SCHEDULES for s in raw)
                or len(set(raw)) != len(raw)):
            raise ConfigError(f"{where}.schedule: expected a list of {' and '.join(SCHEDULES)}, got {raw!r}")
        if kind in ("int", "logint") or not all(isinstance(v, (int, float)) and v > 0 for v in values):
            raise ConfigError(f"{where}.schedule: a schedule needs positive numbers to decay from, got "
                              f"{kind} {values!r}")
        schedules = tuple(raw)
    return Dimension(path, kind, tuple(values), schedules)


def _parse(tree: Mapping[str, Any], prefix: tuple[str, ...], where: str,
           dims: list[Dimension], fixed: dict[str, Any]) -> None:
    for key, value in tree.items():
        path = (*prefix, str(key))
        here = f"{where}.{key}"
        if not prefix and key in RESERVED:
            raise ConfigError(f"{here}: {key!r} is set by the tuner (tuner.timesteps, tuner.evaluations); "
                              "take it out of the search space")
        if isinstance(value, Mapping) and (prefix or any(k in DISTRIBUTIONS or k == "schedule" for k in value)):
            # Inside a section (hyperparams, policy, trunk) every mapping is a distribution.
            dims.append(_dimension(path, value, here))
        elif isinstance(value, Mapping) and value:
            _parse(value, path, here, dims, fixed)
        else:
            fixed.update(deep_merge(fixed, _nested(path, value)))


def load_search_space(algo: str, path: str | Path | None = None) -> SearchSpace:
    """Read ``algo``'s search space and the ``tuner:`` settings (default ``configs/tune.yaml``).

    Only the structure is checked here (distributions, bounds, schedules, settings); whether the
    values train is checked by :func:`check_search_space`.

    Raises:
        ConfigError: a missing or malformed file, no entry for ``algo`` (naming those there
            are), an unknown distribution, bad bounds, an unknown ``tuner:`` key or value
            out of range.
    """
    p = Path(path) if path is not None else default_config("tune")
    raw = read_yaml(p)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{p}: expected a mapping with a 'tuner:' entry and one search space per algorithm")
    spaces = [str(k) for k in raw if k != "tuner"]
    if algo not in raw:
        raise ConfigError(f"{p} has no search space for {algo!r}; it has: {', '.join(spaces) or 'none'}")
    tree = raw[algo]
    if not isinstance(tree, Mapping) or not tree:
        raise ConfigError(f"{p}: {algo}: expected a mapping of train keys to values or distributions")
    settings = from_dict(TunerSettings, raw.get("tuner"), f"{p}: tuner")
    dims: list[Dimension] = []
    fixed: dict[str, Any] = {}
    _parse(tree, (), f"{p}: {algo}", dims, fixed)
    return SearchSpace(algo, p, dims, fixed, settings)


def trial_overrides(space: SearchSpace, sampled: Mapping[str, Any],
                    overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The train-config overrides of one trial: the file's fixed values ← sampled ← ``overrides``.

    Args:
        space: the search space.
        sampled: the trial's values by dimension name (Ray Tune's trial config).
        overrides: keys fixed for every trial (``--set``); they win.

    Returns:
        Nested overrides for :func:`policyshare.train.train` (PPO's ``batch_size`` is not capped
        here; see :func:`cap_batch_size`).
    """
    out = dict(space.fixed)
    for d in space.dimensions:
        if d.name in sampled:
            out = deep_merge(out, _nested(d.path, d.value(sampled)))
    return deep_merge(out, overrides or {})


def cap_batch_size(env_id: str, algo: str, train_config: str | Path | None,
                   overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with PPO's ``batch_size`` capped at the rollout size ``n_steps * n_envs``.

    A search samples ``batch_size``, ``n_steps`` and ``n_envs`` independently; rl-baselines3-zoo
    caps the minibatch at the rollout likewise. Other algorithms are returned unchanged.

    Raises:
        ConfigError: the overrides do not make a valid train config for another reason.
    """
    if algo != "ppo":
        return dict(overrides)
    from policyshare.algos import PPOParams
    from policyshare.config import resolve_env_entry
    from policyshare.train import load_train_config

    # The rollout size, from a config whose minibatch fits any rollout (this also checks the rest).
    probe = deep_merge(overrides, {"hyperparams": {"batch_size": 1}})
    cfg, params = load_train_config(env_id, algo, train_config, probe)
    p = Path(train_config) if train_config is not None else default_config(algo)
    hyper = deep_merge(resolve_env_entry(read_yaml(p), env_id, p), overrides).get("hyperparams") or {}
    batch = hyper.get("batch_size", PPOParams.batch_size) if isinstance(hyper, Mapping) else PPOParams.batch_size
    rollout = params.n_steps * cfg.n_envs
    if isinstance(batch, (int, float)) and batch > rollout:
        return deep_merge(overrides, {"hyperparams": {"batch_size": rollout}})
    return dict(overrides)


def check_search_space(space: SearchSpace, env_id: str, train_config: str | Path | None,
                       overrides: Mapping[str, Any] | None = None) -> None:
    """Refuse, before any trial runs, a space with a value that cannot train on ``env_id``.

    Each value a dimension can take (every choice, both bounds, each schedule) is put, with the
    file's fixed values and ``overrides``, into the train config (``configs/<algo>.yaml`` or
    ``train_config``) and validated as ``policyshare train`` would: unknown keys (with a "did you
    mean"), types, ranges, and ``vec_env`` against the env.

    Raises:
        ConfigError: naming the search-space key, the value and what the train config says.
        UserError: a ``vec_env`` the env cannot run (e.g. ``batched`` for a game without it).
    """
    from policyshare.envs import check_vec_env
    from policyshare.train import load_train_config

    base = deep_merge(space.fixed, overrides or {})
    probes: list[tuple[str, Any, dict[str, Any]]] = [("", None, base)]
    for d in space.dimensions:
        for v in d.candidates():
            for schedule in d.schedules or ("constant",):
                sampled = {d.name: d.values.index(v) if d.by_index else v, d.schedule_name: schedule}
                probes.append((d.name, d.value(sampled), deep_merge(base, _nested(d.path, d.value(sampled)))))
    for name, value, probe in probes:
        try:
            cfg, _ = load_train_config(env_id, space.algo, train_config, cap_batch_size(
                env_id, space.algo, train_config, probe))
        except ConfigError as e:
            what = f"{space.algo}.{name} = {value!r}" if name else f"{space.algo} (its fixed values and --set)"
            raise ConfigError(f"{space.path}: {what} does not make a valid train config: {e}") from None
        check_vec_env(env_id, cfg.vec_env)
