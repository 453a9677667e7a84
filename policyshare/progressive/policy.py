"""SB3 glue: the columns as a features extractor, the policy that trains one column, its logger.

:class:`ProgressiveExtractor` trains column ``k`` of a :class:`~policyshare.progressive.columns.ColumnStack`
with columns ``1..k-1`` frozen; :class:`ProgressivePolicy` is SB3's actor-critic policy whose
optimizer holds only the trainable parameters; :class:`LateralScalarLogger` logs the lateral
scalars α to TensorBoard; :func:`column_model_factory` builds the SB3 model of one column for
:func:`policyshare.train.train` and loads the frozen columns after SB3's ``ortho_init``.

SB3 pickles the policy and extractor classes by module path: models saved before the package
split record ``policyshare.progressive.ProgressivePolicy``/``ProgressiveExtractor``, which the
package still resolves (``policyshare.progressive.__init__``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import partial
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from policyshare.errors import ConfigError, UserError
from policyshare.progressive.columns import ColumnStack, FrozenActivationCache, columns_input
from policyshare.progressive.config import ALGOS, RANDOM_COLUMN_SEED_OFFSET, AdapterConfig
from policyshare.trunks import Trunk, trunk_for_space


class ProgressiveExtractor(BaseFeaturesExtractor):
    """The columns of a progressive network as an SB3 features extractor (training column k).

    Columns ``1..k-1`` and their adapters are frozen (``requires_grad`` off, run without
    autograd); column ``k`` (the last) and its adapters train. Input: observations as SB3
    preprocesses them (MinAtar: ``(batch, 10, 10, C)`` floats); output: column ``k``'s features
    ``(batch, features_dim)`` (its last layer, plus the head lateral).

    All constructor arguments are plain data, so SB3 saves them and ``PPO.load`` rebuilds the
    extractor (frozen weights then come from the saved state).

    Args:
        observation_space: the task's (single-env) observation space.
        trunk: ``{"name", "activation", "theta"}`` of the column spec.
        alignment: input alignment kwargs (see :class:`~policyshare.alignment.InputAlignment`).
        n_columns: ``k``, the number of columns including the trainable one.
        adapter: :class:`AdapterConfig` fields.
        cache_rows: observations whose frozen activations are kept while the policy trains
            (:class:`FrozenActivationCache`; PPO's rollout size, ``n_steps * n_envs``); 0 turns
            the cache off (A2C, which uses each rollout once). Unused with a ``stem``
            alignment, whose trainable stem feeds the frozen columns.

    Attributes:
        stack: the :class:`ColumnStack`.
        alignment: the current task's input alignment (its stem, if any, trains with column k).

    Raises:
        ConfigError: non-image observations, an alignment that cannot map them, ``n_columns < 1``.
    """

    def __init__(self, observation_space: gym.Space, trunk: Mapping[str, Any] | None = None,
                 alignment: Mapping[str, Any] | None = None, n_columns: int = 1,
                 adapter: Mapping[str, Any] | None = None, cache_rows: int = 0) -> None:
        if n_columns < 1:
            raise ConfigError(f"a progressive network needs at least one column, got {n_columns}")
        align, spec = trunk_for_space(observation_space, trunk, alignment, user="a progressive network")
        stack = ColumnStack(spec, n_columns, AdapterConfig(**dict(adapter or {})))
        super().__init__(observation_space, features_dim=stack.features_dim(n_columns - 1))
        self.alignment = align
        self.stack = stack
        self.n_columns = n_columns
        use_cache = cache_rows > 0 and n_columns > 1 and align.stem is None  # a stem trains: no memo
        self.cache = FrozenActivationCache(cache_rows) if use_cache else None
        for c in range(n_columns - 1):
            for module in stack.column_modules(c):
                module.requires_grad_(False)

    @property
    def trunk(self) -> Trunk:
        """The trainable column's trunk (what ``policyshare train`` exports as its trunk file)."""
        return self.stack.column(self.n_columns - 1)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = columns_input(self.alignment, observations)
        k = self.n_columns - 1
        if self.cache is not None and self.training and not x.requires_grad:
            def frozen() -> list[torch.Tensor]:
                with torch.no_grad():
                    return self.stack.frozen_activations(x, k)

            earlier = self.cache.get(observations, frozen)
            own = self.stack.column_activations(k, x, earlier)
        else:
            earlier, own = self.stack.forward_column(x, k)
        return self.stack.column_features(earlier, own, k)

    def clear_cache(self) -> None:
        """Forget the cached frozen activations (the policy leaves training mode)."""
        if self.cache is not None:
            self.cache.clear()


class ProgressivePolicy(ActorCriticPolicy):
    """SB3's actor-critic policy whose optimizer holds only the trainable parameters.

    After SB3 builds the networks (and applies ``ortho_init``), the optimizer is rebuilt over
    the parameters that require grad: the new column, its adapters and input stem, and the
    heads. Frozen columns stay out of it, so SB3 checkpoints of a column load and resume
    with the same optimizer layout. Leaving training mode (before every rollout) clears the
    extractor's :class:`FrozenActivationCache`.
    """

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        optimizer_class: Any = self.optimizer_class
        self.optimizer = optimizer_class([p for p in self.parameters() if p.requires_grad],
                                         lr=lr_schedule(1), **self.optimizer_kwargs)

    def set_training_mode(self, mode: bool) -> None:
        """SB3's train/eval switch; leaving training mode clears the frozen-activation cache."""
        super().set_training_mode(mode)
        extractor = self.features_extractor
        if not mode and isinstance(extractor, ProgressiveExtractor):
            extractor.clear_cache()


class LateralScalarLogger(BaseCallback):
    """Log the trainable column's lateral scalars α after every rollout.

    Tags: ``progressive/column_<k>/alpha/<layer>`` (``<layer>`` is the layer the adapter feeds,
    or ``head``), and ``progressive/column_<k>/lateral_norm/<layer>``, the Frobenius norm of the
    adapter's reduction V.
    """

    def _on_rollout_end(self) -> None:
        extractor = self.model.policy.features_extractor
        if not isinstance(extractor, ProgressiveExtractor):
            return
        k = extractor.n_columns
        for name, adapter in extractor.stack.adapters(k - 1).items():
            self.logger.record(f"progressive/column_{k}/alpha/{name}", adapter.alpha.item())
            norm = float(torch.linalg.vector_norm(adapter.reduce.weight.detach()))
            self.logger.record(f"progressive/column_{k}/lateral_norm/{name}", norm)

    def _on_step(self) -> bool:
        return True


class FrozenColumns(Protocol):
    """What :func:`column_model_factory` needs of a trained network: its columns to freeze.

    :class:`~policyshare.progressive.network.ProgressiveNetwork` is one.
    """

    def load_frozen_into(self, extractor: ProgressiveExtractor) -> None:
        """Copy the trained columns and adapters into the frozen part of ``extractor``."""


def column_model_factory(algo: str, n_columns: int, trunk: Mapping[str, Any], adapter: AdapterConfig,
                         network: FrozenColumns | None = None
                         ) -> Callable[[Any, Any, Any, Any, int], Any]:
    """A ``model_factory`` for :func:`policyshare.train.train` that trains column ``n_columns``.

    The SB3 model (PPO or A2C, :class:`ProgressivePolicy`) is built first — SB3's ``ortho_init``
    then initialises every column — the new column's first layer gets the initialisation
    :func:`~policyshare.algos.init_padded_input_layer` gives a single column (zero weights on
    zero-padded channels), and the frozen columns are loaded from ``network`` afterwards.
    Without a network, the frozen columns are random (Rusu et al. 2016's baseline 4): drawn as
    a single column is initialised, from ``seed + RANDOM_COLUMN_SEED_OFFSET`` so that they
    differ from the initialisation a column-1 run of the same seed starts from.

    Args:
        algo: ``ppo`` or ``a2c``.
        n_columns: ``k``, the columns of the model including the trainable one.
        trunk: ``{"name", "activation", "theta"}`` of the column spec.
        adapter: lateral adapter settings.
        network: the trained network of ``k - 1`` columns, or ``None`` for random frozen ones.

    Returns:
        ``factory(env, train_config, hyperparams, suite, seed) -> model``.

    Raises:
        UserError: (at once) an algorithm other than PPO/A2C.
        CheckpointError: (when called) the network does not fit the model.
    """
    if algo not in ALGOS:
        raise UserError(f"progressive columns train with {' or '.join(ALGOS)}, not {algo!r}")

    def build(env: Any, cfg: Any, params: Any, suite: Any, seed: int) -> Any:
        from policyshare.algos import build_model, init_padded_input_layer

        reuse = algo == "ppo" and params.n_epochs > 1  # A2C uses each rollout once
        kwargs = {"trunk": dict(trunk), "alignment": suite.alignment_kwargs(cfg.trunk.alignment),
                  "n_columns": n_columns, "adapter": asdict(adapter),
                  "cache_rows": params.n_steps * cfg.n_envs if reuse else 0}
        model = build_model(algo, env, params, cfg.policy, cfg.trunk, suite, seed, cfg.device,
                            policy_class=ProgressivePolicy,
                            features_extractor=(ProgressiveExtractor, kwargs))
        extractor = model.policy.features_extractor
        ortho = cfg.policy.ortho_init
        # The new column starts as a single column does (build_model's init of a padded input).
        init_padded_input_layer(extractor.trunk, extractor.alignment, ortho)
        if network is not None:
            network.load_frozen_into(extractor)
        else:  # a fresh draw, independent of the one every column-1 run of this seed starts from
            with torch.random.fork_rng():
                torch.manual_seed(seed + RANDOM_COLUMN_SEED_OFFSET)
                for c in range(n_columns - 1):
                    for module in extractor.stack.column_modules(c):
                        module.apply(partial(ActorCriticPolicy.init_weights, gain=np.sqrt(2)))
                    init_padded_input_layer(extractor.stack.column(c), extractor.alignment, True)
        return model

    return build

