"""The algorithms: their registry, typed hyper-parameters, and building SB3 models on a trunk.

:data:`ALGOS` lists the algorithms policyshare trains (the one list: the CLI, configs and
checkpoint loading all take it from here); :func:`algo_class` gives the SB3 class of each and
:func:`infer_algo` tells which one saved a plain SB3 zip.

stable-baselines3 runs the RL algorithms; this module only turns a validated config into an SB3
``PPO``/``A2C``/``DQN`` whose features extractor is a :class:`~policyshare.trunks.TrunkExtractor`,
and finds that extractor again in any SB3 model (:func:`features_extractors`, the one place that
knows where each algorithm keeps it) to load or freeze its trunk.

Learning rates and PPO's clip range accept a number or ``"lin_<start>"`` (linear decay from
``start`` to 0 over training, rl-baselines3-zoo's notation, parsed — never evaluated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from policyshare.checkpoints import load_trunk_weights
from policyshare.config import SETTINGS, Settings, UnitInterval, from_dict, to_dict
from policyshare.errors import ConfigError, UserError
from policyshare.trunks import TrunkExtractor

_LIN = re.compile(r"^lin_([0-9.eE+-]+)$")

#: The algorithms policyshare trains (stable-baselines3's), by the name configs and the CLI use.
ALGOS = ("ppo", "a2c", "dqn")


def algo_class(algo: str) -> Any:
    """The SB3 class for ``ppo``, ``a2c`` or ``dqn``.

    Raises:
        UserError: unknown algorithm.
    """
    classes = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
    if algo not in classes:
        raise UserError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    return classes[algo]


def infer_algo(data: Mapping[str, Any]) -> str:
    """Which algorithm saved an SB3 zip, from its JSON ``data`` entry (for zips without a
    ``policyshare.json``, e.g. saved by plain SB3): DQN records an exploration rate and a target
    update interval, PPO a clip range and epochs; anything else is taken as A2C.

    Args:
        data: the zip's ``data`` entry, parsed as JSON (never unpickled).

    Returns:
        ``ppo``, ``a2c`` or ``dqn``.
    """
    if "exploration_rate" in data or "target_update_interval" in data:
        return "dqn"
    if "clip_range" in data or "n_epochs" in data:
        return "ppo"
    return "a2c"


def parse_schedule(value: float | str, name: str) -> float | LinearSchedule:
    """A constant or ``"lin_<start>"`` (linear decay to 0) as SB3 expects it.

    Raises:
        ConfigError: a string that is not ``lin_<number>``, or a value <= 0.
    """
    if isinstance(value, str):
        m = _LIN.match(value)
        try:
            start = float(m.group(1)) if m else float("nan")
        except ValueError:
            start = float("nan")
        if not m or not start > 0:
            raise ConfigError(f"{name}: expected a positive number or 'lin_<number>', got {value!r}")
        return LinearSchedule(start, 0.0, 1.0)
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return float(value)


@dataclass(config=SETTINGS)
class PPOParams(Settings):
    """PPO hyper-parameters (SB3 names). Units: ``n_steps`` env steps per env per rollout;
    ``batch_size`` transitions per minibatch; ``n_epochs`` passes over each rollout."""

    learning_rate: float | str = Field(default=2.5e-4, union_mode="left_to_right")
    n_steps: PositiveInt = 128
    batch_size: PositiveInt = 256
    n_epochs: PositiveInt = 4
    gamma: UnitInterval = 0.99
    gae_lambda: UnitInterval = 0.95
    clip_range: float | str = Field(default=0.1, union_mode="left_to_right")
    ent_coef: NonNegativeFloat = 0.01
    vf_coef: NonNegativeFloat = 0.5
    max_grad_norm: PositiveFloat = 0.5
    normalize_advantage: bool = True
    target_kl: float | None = None

    def __post_init__(self) -> None:
        _check_schedule(self.learning_rate, "learning_rate")
        _check_schedule(self.clip_range, "clip_range")


@dataclass(config=SETTINGS)
class A2CParams(Settings):
    """A2C hyper-parameters (SB3 names). ``n_steps``: env steps per env per update."""

    learning_rate: float | str = Field(default=7e-4, union_mode="left_to_right")
    n_steps: PositiveInt = 5
    gamma: UnitInterval = 0.99
    gae_lambda: UnitInterval = 1.0
    ent_coef: NonNegativeFloat = 0.01
    vf_coef: NonNegativeFloat = 0.25
    max_grad_norm: PositiveFloat = 0.5
    use_rms_prop: bool = True
    rms_prop_eps: PositiveFloat = 1e-5
    normalize_advantage: bool = False

    def __post_init__(self) -> None:
        _check_schedule(self.learning_rate, "learning_rate")


@dataclass(config=SETTINGS)
class DQNParams(Settings):
    """DQN hyper-parameters (SB3 names). Units: ``buffer_size`` transitions; ``learning_starts``,
    ``train_freq`` and ``target_update_interval`` env steps; ``exploration_fraction`` a fraction
    of the total env steps; ε values in [0, 1]."""

    learning_rate: float | str = Field(default=1e-4, union_mode="left_to_right")
    buffer_size: PositiveInt = 100_000
    learning_starts: NonNegativeInt = 5_000
    batch_size: PositiveInt = 32
    tau: UnitInterval = 1.0
    gamma: UnitInterval = 0.99
    train_freq: PositiveInt = 4
    gradient_steps: int = 1
    target_update_interval: PositiveInt = 1_000
    exploration_fraction: UnitInterval = 0.1
    exploration_initial_eps: UnitInterval = 1.0
    exploration_final_eps: UnitInterval = 0.01
    max_grad_norm: PositiveFloat = 10.0
    optimize_memory_usage: bool = False

    def __post_init__(self) -> None:
        _check_schedule(self.learning_rate, "learning_rate")


def _check_schedule(value: float | str, name: str) -> None:
    """:func:`parse_schedule`'s check, as the ``ValueError`` pydantic reports for a field."""
    try:
        parse_schedule(value, name)
    except ConfigError as e:
        raise ValueError(str(e)) from None


PARAMS: dict[str, type] = {"ppo": PPOParams, "a2c": A2CParams, "dqn": DQNParams}


@dataclass(config=SETTINGS)
class PolicyConfig(Settings):
    """The layers above the trunk.

    Attributes:
        net_arch: hidden layer widths of the policy/value (or Q) heads above the trunk's
            features; ``[]`` gives linear heads, as in the MinAtar paper network.
        ortho_init: SB3's orthogonal initialisation (PPO/A2C).
    """

    net_arch: list[PositiveInt] = field(default_factory=list)
    ortho_init: bool = True


@dataclass(config=SETTINGS)
class TrunkConfig(Settings):
    """Which trunk and activation (see :mod:`policyshare.trunks`).

    Attributes:
        spec: named trunk spec; ``null`` takes the suite's default (MinAtar: ``minatar``,
            Atari: ``nature``).
        activation: ``relu``, ``trec`` or ``tlin``.
        theta: threshold θ of TRec/TLin.
        alignment: input alignment ``pad``/``stem``/``none``; ``null`` takes the suite's.
        width: multiplier of every trunk layer's channels or units (1: the spec as named); the
            ``capacity`` stage sizes shared networks with it.
    """

    spec: str | None = None
    activation: Literal["relu", "trec", "tlin"] = "relu"
    theta: NonNegativeFloat = 0.5
    alignment: Literal["pad", "stem", "none"] | None = None
    width: PositiveFloat = 1.0

    def trunk_kwargs(self, suite_trunk: str) -> dict[str, Any]:
        """``{"name", "activation", "theta"}`` (and ``"width"`` unless 1) for :func:`policyshare.trunks.spec_after`."""
        out: dict[str, Any] = {"name": self.spec or suite_trunk, "activation": self.activation, "theta": self.theta}
        if self.width != 1.0:
            out["width"] = self.width
        return out


def algo_params(algo: str, raw: Any, where: str) -> Any:
    """Validate ``hyperparams`` for ``algo`` into its typed object.

    Raises:
        ConfigError: unknown algorithm, unknown key, wrong type, out of range.
    """
    if algo not in PARAMS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of {', '.join(PARAMS)}")
    return from_dict(PARAMS[algo], raw, where)


def extractor_kwargs(trunk: TrunkConfig, suite: Any) -> dict[str, Any]:
    """Plain-data kwargs of :class:`TrunkExtractor` for a trunk config and suite."""
    return {"trunk": trunk.trunk_kwargs(suite.trunk),
            "alignment": suite.alignment_kwargs(trunk.alignment)}


def build_model(algo: str, env: Any, params: Any, policy: PolicyConfig, trunk: TrunkConfig,
                suite: Any, seed: int, device: str = "cpu", verbose: int = 0,
                policy_class: str | type = "CnnPolicy",
                features_extractor: tuple[type, Mapping[str, Any]] | None = None) -> Any:
    """An SB3 model on a trunk.

    Args:
        algo: ``ppo``, ``a2c`` or ``dqn``.
        env: the (vectorised) training env.
        params: typed hyper-parameters (:data:`PARAMS`).
        policy: heads above the trunk.
        trunk: trunk config.
        suite: the task's :class:`~policyshare.envs.Suite` (alignment, default trunk).
        seed: SB3 seed.
        device: torch device.
        policy_class: SB3 policy (name or class); the default is SB3's ``CnnPolicy``.
        features_extractor: ``(class, plain-data kwargs)`` of another features extractor
            (e.g. a progressive network's); default: :class:`TrunkExtractor` for ``trunk``.

    Returns:
        The SB3 ``BaseAlgorithm``.
    """
    kwargs = to_dict(params)
    kwargs["learning_rate"] = parse_schedule(params.learning_rate, "learning_rate")
    if algo == "ppo":
        kwargs["clip_range"] = parse_schedule(params.clip_range, "clip_range")
    extractor_class, extractor_kw = features_extractor or (TrunkExtractor, extractor_kwargs(trunk, suite))
    policy_kwargs: dict[str, Any] = {
        "features_extractor_class": extractor_class,
        "features_extractor_kwargs": dict(extractor_kw),
        "net_arch": list(policy.net_arch),
    }
    if algo in ("ppo", "a2c"):
        policy_kwargs["ortho_init"] = policy.ortho_init
    cls = algo_class(algo)
    model = cls(policy_class, env, policy_kwargs=policy_kwargs, seed=seed, device=device,
                verbose=verbose, **kwargs)
    if features_extractor is None:
        ortho = algo in ("ppo", "a2c") and policy.ortho_init
        for ex in features_extractors(model, targets=False):
            init_padded_input_layer(ex.trunk, ex.alignment, ortho)
        sync_targets(model)
    return model


def features_extractors(model: Any, targets: bool = True) -> list[BaseFeaturesExtractor]:
    """Every features extractor of an SB3 model, the one that acts first.

    SB3 keeps them in different places per algorithm: PPO/A2C on ``policy.features_extractor``
    (one shared by actor and critic, SB3's default) or ``policy.pi_features_extractor`` and
    ``policy.vf_features_extractor`` (``share_features_extractor=False``); DQN on
    ``policy.q_net`` and ``policy.q_net_target`` (its ``policy.features_extractor`` is
    ``None``). This walks the policy's modules, so every policy finds them the same way.

    Args:
        model: an SB3 ``BaseAlgorithm`` (or anything with a ``policy`` module).
        targets: include the extractors of target networks (``*_target`` modules, e.g. DQN's
            ``q_net_target``), which follow the online network by copy, not by gradient.

    Returns:
        The extractors, each once, in the order the policy registers them: the acting one
        (actor, online Q-network) first.

    Raises:
        UserError: the model has no features extractor.
    """
    found: list[BaseFeaturesExtractor] = []

    def walk(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, BaseFeaturesExtractor):
                if all(child is not f for f in found):
                    found.append(child)
            elif targets or not name.endswith("_target"):
                walk(child)

    walk(model.policy)
    if not found:
        raise UserError(f"{type(model).__name__} has no features extractor; policyshare needs a "
                        "policy on a trunk (PPO, A2C or DQN built by policyshare train)")
    return found


def sync_targets(model: Any) -> None:
    """Copy DQN's online Q-network into its target network (``q_net_target``), as SB3 does when it
    builds one; no-op for models without a target network. Call after changing ``q_net`` in
    place outside training (initialising or loading its trunk)."""
    policy = model.policy
    if isinstance(getattr(policy, "q_net_target", None), nn.Module):
        policy.q_net_target.load_state_dict(policy.q_net.state_dict())


def load_trunk_into(model: Any, path: str | Path) -> dict[str, Any]:
    """Initialise the trunk of every features extractor of ``model`` from a trunk file.

    Every extractor (PPO/A2C's shared or separate ones, DQN's online and target Q-networks)
    gets the same weights; the heads are left as they are. Call it *after* the SB3 model is
    built (SB3's ``ortho_init`` re-initialises extractors at construction).

    Args:
        model: an SB3 model whose extractors are :class:`~policyshare.trunks.TrunkExtractor`.
        path: a trunk file (``trunk.safetensors``) or a student file (its trunk is taken),
            see :func:`~policyshare.checkpoints.load_trunk_weights`.

    Returns:
        The file's header.

    Raises:
        CheckpointError: a file that is missing, corrupt, not a trunk, or does not fit
            (another spec, activation, input alignment or shape; the message names both).
        UserError: the model has no trunk extractor.
    """
    header: dict[str, Any] = {}
    for ex in features_extractors(model):
        if not isinstance(ex, TrunkExtractor):
            raise UserError(f"a trunk file initialises a policyshare trunk, but this model's "
                            f"extractor is a {type(ex).__name__}")
        header = load_trunk_weights(ex.trunk, path, alignment=ex.alignment.describe())
    return header


def init_padded_input_layer(trunk: Any, alignment: Any, ortho: bool) -> None:
    """Initialise the first trunk layer as if its input had only the task's channels.

    Zero-padding a task's C channels to the suite's C_max makes the initialiser spread the
    first layer's weight over C_max · k² inputs instead of C · k², shrinking the effective
    initial weights on the real channels by about sqrt(C / C_max). That measurably slowed
    learning (MinAtar Breakout: 4 of 10 channels real). Here the real channels get the
    initialisation an unpadded layer would get — orthogonal with gain sqrt(2), as SB3's
    ``ortho_init``, or PyTorch's default — and the padded channels get zeros, so the padded
    network starts as the same function as an unpadded one. Call after the SB3 model is built
    (SB3 initialises extractors at construction).

    Args:
        trunk: the :class:`~policyshare.trunks.Trunk`.
        alignment: its :class:`~policyshare.alignment.InputAlignment`.
        ortho: orthogonal (SB3 ``ortho_init``) rather than PyTorch's default initialisation.
    """
    import math

    import torch
    from torch import nn

    first = trunk.layers[0]
    c = alignment.task_channels
    if alignment.mode != "pad" or not isinstance(first, nn.Conv2d) or c >= first.in_channels:
        return
    w = torch.empty(first.out_channels, c, *first.kernel_size)
    if ortho:
        nn.init.orthogonal_(w, gain=math.sqrt(2))
    else:
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:, :c] = w
