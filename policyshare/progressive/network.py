"""Progressive neural networks over a sequence of tasks (Rusu et al. 2016, arXiv 1606.04671).

A progressive network grows one **column** per task. Every column is a trunk built from the same
:class:`~policyshare.trunks.TrunkSpec`; column ``k``'s layer ``i`` reads, besides its own layer
``i-1``, the layer ``i-1`` activations of every earlier column through a lateral **adapter**
(paper Eq. 2)::

    h_i^(k) = σ( W_i^(k) h_{i-1}^(k) + U_i^(k) σ( V_i^(k) (α_{i-1}^(k) · [h_{i-1}^(1), …, h_{i-1}^(k-1)]) ) )

with α a learned scalar (its initial value is configurable; the paper searched {1, 0.1, 0.01}),
V a dimensionality reduction (1x1 convolution when layer ``i-1`` is convolutional, dense
otherwise), σ the trunk's non-linearity and U the projection into layer ``i`` (a convolution of
layer ``i``'s kernel and stride, or a dense map). The policy and value heads are layer ``L+1``:
with ``adapter.heads`` on, column ``k``'s features are ``[h_L^(k), σ(V (α [h_L^(<k)]))]`` and
SB3's linear heads on them play ``W`` and ``U`` of Eq. 2 for the output layer.

Earlier columns and their adapters are **frozen**: ``requires_grad`` is off, they run without
autograd, fused into a few wide ops however many there are (:meth:`ColumnStack.frozen_activations`),
and under PPO their activations are computed once per observation and rollout rather than once
per epoch (:class:`FrozenActivationCache`). The optimizer is rebuilt to hold exactly the new
column's trunk, adapters, input stem (``stem`` alignment) and heads. Because SB3's
``ortho_init`` re-initialises the features extractor while the policy is built, frozen weights
are loaded *after* the model is built (:meth:`ProgressiveNetwork.load_frozen_into`).

Each column keeps its own policy/value heads (over its task's own action set), so the whole
network acts in every task it has learned given the task id (:meth:`ProgressiveNetwork.agent`).
The network saves as one ``network.safetensors`` (format ``policyshare.progressive``) and every
column exports as a trunk file that :func:`~policyshare.checkpoints.load_trunk` reads.

:func:`run_progressive` (``policyshare progressive``) trains a sequence and the controls of the
paper on the target (last) task, with the same seeds: ``scratch`` (baseline 1, a single column
from scratch), ``finetune`` (baseline 3, the first task's column fine-tuned with fresh heads) and
``random_column`` (baseline 4, a two-column network whose first column is random and frozen).
Transfer % per seed is the area under the target's learning curve ÷ that of ``scratch``
(paper Table 1), aggregated as an IQM with a bootstrap interval; Average Fisher Sensitivity
(paper Sec. 5, :mod:`policyshare.fisher`) tells which columns and layers the target relies on.

Units: ``timesteps`` and evaluation frequencies are env steps summed over the parallel envs;
evaluations are complete episodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, MlpExtractor
from torch import nn
from torch.nn import functional as F

from policyshare.alignment import InputAlignment
from policyshare.checkpoints import (
    atomic_write_json,
    atomic_write_text,
    load_sb3,
    load_state_checked,
    load_tensors,
    read_json,
    save_tensors,
    save_trunk,
)
from policyshare.config import check_positive, check_seeds, deep_merge, from_dict, read_yaml, to_dict
from policyshare.errors import CheckpointError, ConfigError, UserError
from policyshare.paths import default_config
from policyshare.trunks import LayerSpec, Trunk, TrunkExtractor, TrunkSpec, make_activation

#: Header ``format`` of a saved progressive network.
NETWORK_FORMAT = "policyshare.progressive"
#: File name of the network inside an experiment's per-seed folder.
NETWORK_FILE = "network.safetensors"
#: Algorithms a column can be trained with (actor-critic policies with SB3 heads).
ALGOS = ("ppo", "a2c")
#: The controls of Rusu et al. 2016 that ``policyshare progressive`` trains on the target task.
CONTROLS = ("scratch", "finetune", "random_column")
#: Offset added to a seed for the envs that sample Fisher-sensitivity observations.
FISHER_SEED_OFFSET = 20_000
#: Offset added to a seed for the random frozen column of the ``random_column`` control.
RANDOM_COLUMN_SEED_OFFSET = 30_000


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class AdapterConfig:
    """Lateral adapters (Rusu et al. 2016, Eq. 2).

    Attributes:
        alpha_init: initial value of the learned scalar α that multiplies the earlier columns'
            activations (the paper searched {1, 0.1, 0.01}).
        reduction: channels (conv) or units (dense) after the reduction V; ``None`` reduces to
            one column's width of the source layer, as in the paper.
        heads: also feed the earlier columns' last layer into the new column's policy and
            value heads (the paper's laterals into the output layer).
    """

    alpha_init: float = 1.0
    reduction: int | None = None
    heads: bool = True

    def __post_init__(self) -> None:
        if not np.isfinite(self.alpha_init):
            raise ConfigError(f"alpha_init must be a finite number, got {self.alpha_init}")
        if self.reduction is not None:
            check_positive("", reduction=self.reduction)


@dataclass
class ControlsConfig:
    """Controls trained on the target task with the same seeds (Rusu et al. 2016, Sec. 4).

    Attributes:
        scratch: baseline 1, a single column trained from scratch (the transfer % reference).
        finetune: baseline 3, the first task's column fine-tuned on the target, fresh heads.
        random_column: baseline 4, a two-column network whose first column is random and
            frozen (separates extra capacity from transfer).
    """

    scratch: bool = True
    finetune: bool = True
    random_column: bool = True


@dataclass
class FisherConfig:
    """Average Fisher Sensitivity on the target task (Rusu et al. 2016, Sec. 5).

    Attributes:
        enabled: compute it.
        samples: target-task observations, collected by running the target column's
            stochastic policy (env steps summed over 8 envs).
        batch_size: observations per backward pass.
    """

    enabled: bool = True
    samples: int = 2048
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_positive("", samples=self.samples, batch_size=self.batch_size)


@dataclass
class ProgressiveConfig:
    """An experiment config (``configs/progressive.yaml``).

    Attributes:
        algo: ``ppo`` or ``a2c``.
        train_config: the per-env training config (default ``configs/<algo>.yaml``).
        timesteps: env steps per column and per control run; ``None`` takes each task's
            ``timesteps`` from the training config.
        adapter: lateral adapters.
        controls: which controls to train on the target task.
        fisher: Average Fisher Sensitivity.
        train: overrides applied to every run's training config (same keys as an entry of
            ``configs/<algo>.yaml``, e.g. ``eval: {freq: 10000}``).
    """

    algo: Literal["ppo", "a2c"] = "ppo"
    train_config: str | None = None
    timesteps: int | None = None
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    fisher: FisherConfig = field(default_factory=FisherConfig)
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.timesteps is not None:
            check_positive("", timesteps=self.timesteps)


def load_progressive_config(path: str | Path | None = None,
                            overrides: Mapping[str, Any] | None = None) -> ProgressiveConfig:
    """Read ``configs/progressive.yaml`` (or ``path``) strictly, with ``--set`` overrides.

    Raises:
        ConfigError: missing/malformed file, unknown key, wrong type or out-of-range value.
    """
    p = Path(path) if path is not None else default_config("progressive")
    raw = read_yaml(p) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{p}: expected a mapping of settings")
    if overrides:
        raw = deep_merge(raw, overrides)
    return from_dict(ProgressiveConfig, raw, str(p))


# --------------------------------------------------------------------------------------------
# Columns and lateral adapters


def pointwise_conv(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution computed as one matmul over the channels.

    The same function and gradients as ``F.conv2d(h, weight, bias)``; PyTorch's CPU convolution
    kernels spend about a millisecond on a 1x1 kernel over a 256-batch of 8x8 maps that this
    matmul does in a tenth of that.

    Args:
        h: ``(batch, C_in, H, W)``.
        weight: ``(C_out, C_in, 1, 1)``.
        bias: ``(C_out,)`` or ``None``.

    Returns:
        ``(batch, C_out, H, W)``.
    """
    b, c, height, width = h.shape
    z = torch.matmul(weight.reshape(weight.shape[0], c), h.reshape(b, c, height * width))
    if bias is not None:
        z = z + bias.view(1, -1, 1)
    return z.view(b, -1, height, width)


def columns_input(alignment: InputAlignment, observations: torch.Tensor) -> torch.Tensor:
    """Observations as the columns read them: ``(batch, C, H, W)`` floats, contiguous.

    With the ``pad`` alignment the task's own channels only (each column's first layer reads the
    missing channels as zeros, :meth:`~policyshare.trunks.Trunk.apply_layer`); with a ``stem``,
    the stem's output. Contiguous channels-first input keeps every conv output contiguous, so
    flattening before a dense layer copies nothing.
    """
    if alignment.mode == "pad":
        return alignment.layout(observations).contiguous()
    return alignment(observations)


def _width(shape: tuple[int, ...]) -> int:
    """Channels of a conv output ``(C, H, W)`` or units of a dense one ``(units,)``."""
    return shape[0]


class LateralAdapter(nn.Module):
    """One lateral connection into a layer of column ``k`` (Rusu et al. 2016, Eq. 2).

    ``U σ(V (α · h))`` where ``h`` concatenates the earlier columns' layer ``i-1`` activations
    along channels (conv: ``(batch, n·C, H, W)``) or units (dense: ``(batch, n·units)``), α is a
    learned scalar, V reduces the dimension (1x1 conv or dense), σ is the trunk's activation and
    U projects into layer ``i`` (conv with layer ``i``'s kernel/stride; dense after flattening).
    Into the heads (``target=None``) U is left to the heads themselves: the adapter returns
    ``σ(V (α · h))`` flattened, ``(batch, reduced)``.

    α is applied to V's weight (``(αV) h = V (α h)``): the same function and gradient, at the
    cost of scaling a small matrix instead of the wide input.

    Args:
        source_shape: shape of one column's layer ``i-1`` output without batch, ``(C, H, W)``
            or ``(units,)``.
        n_sources: number of earlier columns (``k - 1``).
        target: layer ``i``'s spec, or ``None`` for the heads.
        reduced: width after V (``None``: one column's width of the source layer).
        alpha_init: initial α.
        activation: σ (``relu``, ``trec``, ``tlin``), as the trunk's.
        theta: threshold of ``trec``/``tlin``.
        bias: whether V has a bias (not before a zero-bias activation).
    """

    def __init__(self, source_shape: tuple[int, ...], n_sources: int, target: LayerSpec | None,
                 reduced: int | None, alpha_init: float, activation: str, theta: float,
                 bias: bool) -> None:
        super().__init__()
        width = _width(source_shape)
        r = reduced or width
        self.reduced = r
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init)))  # shape (1,): α
        self.reduce: nn.Conv2d | nn.Linear
        self.project: nn.Conv2d | nn.Linear | None
        conv_source = len(source_shape) == 3
        if conv_source:
            self.reduce = nn.Conv2d(n_sources * width, r, kernel_size=1, bias=bias)
        else:
            self.reduce = nn.Linear(n_sources * width, r, bias=bias)
        self.act = make_activation(activation, theta)
        flat = r * (source_shape[1] * source_shape[2] if conv_source else 1)
        if target is None:
            self.project = None
            self.out_features = flat
        elif target.kind == "conv":
            self.project = nn.Conv2d(r, target.out, target.kernel, target.stride, target.padding,
                                     bias=False)
            self.out_features = target.out
        else:
            self.project = nn.Linear(flat, target.out, bias=False)
            self.out_features = target.out

    def scaled_reduce_weight(self) -> torch.Tensor:
        """α·V: conv ``(reduced, n·C, 1, 1)`` or dense ``(reduced, n·units)``."""
        return self.reduce.weight * self.alpha

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Lateral input of layer ``i``.

        Args:
            h: the earlier columns' layer ``i-1`` activations concatenated in column order,
                ``(batch, n·C, H, W)`` or ``(batch, n·units)``.

        Returns:
            The pre-activation contribution to layer ``i``: ``(batch, out, H', W')`` or
            ``(batch, out)``; into the heads ``(batch, reduced)``.
        """
        w = self.scaled_reduce_weight()
        z = self.act(pointwise_conv(h, w, self.reduce.bias) if h.dim() == 4 else F.linear(h, w, self.reduce.bias))
        if self.project is None:
            return z.flatten(1)
        if isinstance(self.project, nn.Linear) and z.dim() > 2:
            z = z.flatten(1)
        out: torch.Tensor = self.project(z)
        return out


@dataclass
class _WideLayer:
    """One layer of the frozen columns fused into wide ops (see :meth:`ColumnStack.frozen_layers`)."""

    spec: LayerSpec
    weight: torch.Tensor
    bias: torch.Tensor | None
    reduce_weight: torch.Tensor | None = None
    reduce_bias: torch.Tensor | None = None
    project_weight: torch.Tensor | None = None


class ColumnStack(nn.Module):
    """The columns of a progressive network and their lateral adapters.

    ``columns[c]`` is a :class:`~policyshare.trunks.Trunk`; ``laterals[c]`` maps layer names
    (and ``"head"``) to the :class:`LateralAdapter` feeding column ``c`` (0-based) from
    columns ``0..c-1``; it is empty for column 0, which is a plain trunk.

    Running column ``c`` (:meth:`forward_column`) computes the frozen columns ``0..c-1``
    without autograd and *fused*: every layer of all of them is one wide op (layer 1: one conv
    whose output channels are all columns'; later layers: a grouped conv or a batched matmul,
    plus one block-triangular 1x1 reduction and one grouped projection for their laterals).
    That gives their activations already concatenated in column order, which is what column
    ``c``'s adapters read, and costs a few ops however many columns there are.

    Args:
        spec: the trunk spec every column is built from.
        n_columns: initial number of columns.
        adapter: adapter settings.
    """

    def __init__(self, spec: TrunkSpec, n_columns: int, adapter: AdapterConfig) -> None:
        super().__init__()
        self.spec = spec
        self.adapter = adapter
        self.columns = nn.ModuleList()
        self.laterals = nn.ModuleList()
        self._wide_key: tuple[Any, ...] | None = None
        self._wide: list[_WideLayer] = []
        for _ in range(n_columns):
            self.add_column()

    def __len__(self) -> int:
        return len(self.columns)

    def add_column(self) -> None:
        """Append a freshly initialised column and its adapters (PyTorch's default init)."""
        c = len(self.columns)
        trunk = Trunk(self.spec)
        laterals = nn.ModuleDict()
        if c > 0:
            for i in range(1, len(self.spec.layers)):
                laterals[self.spec.layers[i].name] = self._adapter(trunk.layer_shapes[i - 1], c,
                                                                   self.spec.layers[i])
            if self.adapter.heads:
                laterals["head"] = self._adapter(trunk.layer_shapes[-1], c, None)
        self.columns.append(trunk)
        self.laterals.append(laterals)

    def _adapter(self, source: tuple[int, ...], n: int, target: LayerSpec | None) -> LateralAdapter:
        return LateralAdapter(source, n, target, self.adapter.reduction, self.adapter.alpha_init,
                              self.spec.activation, self.spec.theta, self.spec.bias)

    def column(self, c: int) -> Trunk:
        """Column ``c``'s trunk (0-based)."""
        return cast(Trunk, self.columns[c])

    def adapters(self, c: int) -> dict[str, LateralAdapter]:
        """Column ``c``'s adapters by the layer they feed (``"head"`` for the heads)."""
        return cast(dict[str, LateralAdapter], dict(cast(nn.ModuleDict, self.laterals[c]).items()))

    def features_dim(self, column: int) -> int:
        """Width of column ``column``'s features: its last layer plus the head lateral."""
        head = self.adapters(column).get("head")
        return self.column(column).features_dim + (head.out_features if head is not None else 0)

    def column_modules(self, column: int) -> list[nn.Module]:
        """The modules that belong to one column: its trunk and its adapters."""
        return [self.columns[column], self.laterals[column]]

    # ---- forward ---------------------------------------------------------------------------

    def forward_column(self, x: torch.Tensor, column: int
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run column ``column`` with its earlier columns frozen.

        The earlier columns run fused and without autograd when ``x`` needs no gradient
        (their outputs then depend on nothing trainable); otherwise (an input stem that
        trains) they run column by column with autograd, their weights still frozen.

        Args:
            x: aligned input ``(batch, in_channels, H, W)``.
            column: 0-based column index.

        Returns:
            ``(earlier, own)``: per layer, the earlier columns' activations concatenated in
            column order (``(batch, c·C, H, W)`` or ``(batch, c·units)``; empty for column 0),
            and the column's own activations (``(batch, C, H, W)`` or ``(batch, units)``).
        """
        earlier: list[torch.Tensor] = []
        if column > 0:
            if x.requires_grad:
                per_column: list[list[torch.Tensor]] = []
                for c in range(column):
                    per_column.append(self.column_activations(c, x, self.concat_columns(per_column), None))
                earlier = self.concat_columns(per_column)
            else:
                with torch.no_grad():
                    earlier = self.frozen_activations(x, column)
        return earlier, self.column_activations(column, x, earlier, None)

    def activations(self, x: torch.Tensor, n: int,
                    probes: list[list[torch.Tensor]] | None = None) -> list[list[torch.Tensor]]:
        """Every layer output of columns ``0..n-1``, column by column (the reference path).

        Args:
            x: aligned input ``(batch, in_channels, H, W)``.
            n: how many columns to run.
            probes: if given, a zero tensor that requires grad is added to every layer output
                and appended to ``probes[c]``: its ``.grad`` after a backward pass is the
                gradient with respect to that activation (Fisher sensitivity).

        Returns:
            ``acts[c][i]``: ``(batch, C, H, W)`` for conv layers, ``(batch, units)`` for dense.
        """
        acts: list[list[torch.Tensor]] = []
        for c in range(n):
            acts.append(self.column_activations(c, x, self.concat_columns(acts), None if probes is None else probes[c]))
        return acts

    @staticmethod
    def concat_columns(acts: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Per layer, the columns' activations concatenated in column order (``acts[c][i]``)."""
        if not acts:
            return []
        return [a[0] if len(acts) == 1 else torch.cat(list(a), dim=1) for a in zip(*acts)]

    def column_activations(self, c: int, x: torch.Tensor, earlier: list[torch.Tensor],
                           probes: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Column ``c``'s layer outputs given the earlier columns' (Eq. 2).

        Args:
            c: 0-based column index.
            x: aligned input ``(batch, in_channels, H, W)``.
            earlier: per layer, columns ``0..c-1``'s activations concatenated in column order.
            probes: see :meth:`activations`.
        """
        trunk = self.column(c)
        laterals = self.adapters(c)
        outs: list[torch.Tensor] = []
        h = x
        for i, (spec, act) in enumerate(zip(self.spec.layers, trunk.activations)):
            if spec.kind == "fc" and h.dim() > 2:
                h = h.flatten(1)
            z = trunk.apply_layer(i, h)
            if i > 0 and c > 0:  # Eq. 2: U σ(V α [h_{i-1}^(<k)])
                z = z + laterals[spec.name](earlier[i - 1])
            h = act(z)
            if probes is not None:
                probe = torch.zeros_like(h, requires_grad=True)
                probes.append(probe)
                h = h + probe
            outs.append(h)
        return outs

    def column_features(self, earlier: list[torch.Tensor], own: list[torch.Tensor],
                        column: int) -> torch.Tensor:
        """Column features ``(batch, features_dim(column))``: its last layer and head lateral."""
        head = self.adapters(column).get("head")
        if column > 0 and head is not None:
            return torch.cat([own[-1], head(earlier[-1])], 1)
        return own[-1]

    # ---- frozen columns, fused -------------------------------------------------------------

    def frozen_layers(self, m: int) -> list[_WideLayer]:
        """The first ``m`` columns' weights fused into wide ops (rebuilt when weights change).

        Per layer ``i``: the own weights of all ``m`` columns concatenated (layer 1, which reads
        the shared input) or stacked for a grouped conv / batched matmul (later layers); the
        adapters' α·V of columns ``1..m-1`` as one block-lower-triangular reduction over all
        ``m`` columns' concatenated layer ``i-1`` (column ``j`` reads the first ``j`` blocks);
        their U concatenated (conv, grouped) or stacked (dense).
        """
        params = [p for c in range(m) for mod in self.column_modules(c) for p in mod.parameters()]
        key = (m, *((p.data_ptr(), p._version) for p in params))
        if key == self._wide_key:
            return self._wide
        with torch.no_grad():
            wide: list[_WideLayer] = []
            shapes = self.column(0).layer_shapes
            for i, spec in enumerate(self.spec.layers):
                layers = [cast(nn.Conv2d | nn.Linear, self.column(c).layers[i]) for c in range(m)]
                biases = [ly.bias for ly in layers]
                bias = torch.cat([b for b in biases if b is not None]) if biases[0] is not None else None
                if spec.kind == "fc" and i > 0:
                    weight = torch.stack([ly.weight.t() for ly in layers])  # (m, in, out)
                else:
                    weight = torch.cat([ly.weight for ly in layers])  # (m·out, in[, k, k])
                entry = _WideLayer(spec, weight, bias)
                if i > 0 and m > 1:
                    adapters = [self.adapters(c)[spec.name] for c in range(1, m)]
                    width = _width(shapes[i - 1])
                    blocks = []
                    for j, a in enumerate(adapters, start=1):
                        v = a.scaled_reduce_weight()
                        pad = torch.zeros((v.shape[0], (m - j) * width, *v.shape[2:]), dtype=v.dtype)
                        blocks.append(torch.cat([v, pad], dim=1))
                    entry.reduce_weight = torch.cat(blocks)
                    rb = [a.reduce.bias for a in adapters]
                    entry.reduce_bias = torch.cat([b for b in rb if b is not None]) if rb[0] is not None else None
                    us = [cast(nn.Conv2d | nn.Linear, a.project).weight for a in adapters]
                    entry.project_weight = (torch.stack([u.t() for u in us]) if spec.kind == "fc"
                                            else torch.cat(us))  # (m-1, in, out) / (·, r, k, k)
                wide.append(entry)
        self._wide_key, self._wide = key, wide
        return wide

    def frozen_activations(self, x: torch.Tensor, m: int) -> list[torch.Tensor]:
        """Layer outputs of columns ``0..m-1``, concatenated in column order, via wide ops.

        The same function as :meth:`activations` followed by concatenation (up to float
        rounding), at a few ops per layer whatever ``m``. No autograd: call it on frozen
        columns only.

        Args:
            x: aligned input ``(batch, in_channels, H, W)``.
            m: how many leading columns.

        Returns:
            Per layer ``(batch, m·C, H, W)`` or ``(batch, m·units)``.
        """
        outs: list[torch.Tensor] = []
        h = x
        act = self.column(0).activations
        for i, w in enumerate(self.frozen_layers(m)):
            s = w.spec
            b = h.shape[0]
            if s.kind == "conv":
                weight = w.weight[:, : h.shape[1]] if i == 0 else w.weight  # fewer channels: padded
                z = F.conv2d(h, weight, w.bias, s.stride, s.padding, groups=1 if i == 0 else m)
            elif i == 0:
                z = F.linear(h.flatten(1), w.weight, w.bias)
            else:  # per-column dense layers as one batched matmul: (m, batch, in) @ (m, in, out)
                z = torch.bmm(h.reshape(b, m, -1).transpose(0, 1), w.weight)
                z = z.transpose(0, 1)
                if w.bias is not None:
                    z = z + w.bias.view(m, -1)
            if w.reduce_weight is not None and w.project_weight is not None:
                v = (pointwise_conv(h, w.reduce_weight, w.reduce_bias) if h.dim() == 4
                     else F.linear(h, w.reduce_weight, w.reduce_bias))
                v = act[i](v)
                if s.kind == "conv":
                    lat = F.conv2d(v, w.project_weight, None, s.stride, s.padding, groups=m - 1)
                    z = torch.cat([z[:, : s.out], z[:, s.out:] + lat], dim=1)
                else:
                    lat = torch.bmm(v.reshape(b, m - 1, -1).transpose(0, 1),
                                    w.project_weight).transpose(0, 1)
                    z = torch.cat([z[:, :1], z[:, 1:] + lat], dim=1)
            h = act[i](z.reshape(b, -1) if s.kind == "fc" else z)
            outs.append(h)
        return outs


def _spec_for(observation_space: gym.Space, trunk: Mapping[str, Any] | None,
              alignment: Mapping[str, Any] | None) -> tuple[InputAlignment, TrunkSpec]:
    """Input alignment and trunk spec for an observation space (as :class:`TrunkExtractor`)."""
    trunk = dict(trunk or {"name": "minatar"})
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 3:
        raise ConfigError(f"a progressive network needs image observations of rank 3, got "
                          f"{observation_space}")
    align = InputAlignment(tuple(observation_space.shape), **dict(alignment or {}))
    spec = TrunkSpec(name=str(trunk.get("name", "minatar")), in_channels=align.out_channels,
                     height=align.height, width=align.width,
                     activation=str(trunk.get("activation", "relu")),
                     theta=float(trunk.get("theta", 0.5)))
    return align, spec


class FrozenActivationCache:
    """The frozen columns' activations by observation, kept while the policy trains.

    PPO passes over every rollout ``n_epochs`` times. The frozen columns' activations depend on
    the observation only (their weights never change; the cache is not used when an input stem
    trains), so the first pass computes and stores them and the later passes look them up:
    the frozen columns then cost one forward per observation in training instead of
    ``n_epochs``. A batch is served from the cache only when every observation in it is
    there; otherwise it is computed (and the new observations stored while room is left).
    :meth:`ProgressivePolicy.set_training_mode` clears it when the policy leaves training mode,
    i.e. before every rollout, so it never holds more than one rollout.

    Args:
        capacity: observations kept (PPO: ``n_steps * n_envs``).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.index: dict[bytes, int] = {}
        self.buffers: list[torch.Tensor] = []
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Forget every stored observation."""
        self.index.clear()

    def get(self, observations: torch.Tensor, compute: Callable[[], list[torch.Tensor]]
            ) -> list[torch.Tensor]:
        """The frozen activations of a batch: looked up, or ``compute()``-d and stored.

        Args:
            observations: the batch as the extractor receives it, ``(batch, *obs_shape)``.
            compute: returns the activations of the whole batch, per layer
                ``(batch, m·C, H, W)`` or ``(batch, m·units)``.
        """
        flat = observations.detach().cpu().numpy().reshape(len(observations), -1)
        keys = [row.tobytes() for row in flat]
        rows = [self.index.get(k, -1) for k in keys]
        if self.buffers and min(rows, default=-1) >= 0:
            self.hits += 1
            index = torch.as_tensor(rows, device=self.buffers[0].device)
            return [b.index_select(0, index) for b in self.buffers]
        self.misses += 1
        acts = compute()
        if not self.buffers:
            self.buffers = [a.new_empty((self.capacity, *a.shape[1:])) for a in acts]
        new_at, new_rows = [], []
        for i, k in enumerate(keys):
            if k not in self.index and len(self.index) < self.capacity:
                self.index[k] = len(self.index)
                new_at.append(i)
                new_rows.append(self.index[k])
        if new_at:
            src = torch.as_tensor(new_at, device=acts[0].device)
            dst = torch.as_tensor(new_rows, device=acts[0].device)
            for b, a in zip(self.buffers, acts):
                b.index_copy_(0, dst, a.index_select(0, src))
        return acts


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
        align, spec = _spec_for(observation_space, trunk, alignment)
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


# --------------------------------------------------------------------------------------------
# The whole network: columns, adapters, per-task alignment and heads


_HEAD_ACTIVATIONS: dict[str, type[nn.Module]] = {"Tanh": nn.Tanh, "ReLU": nn.ReLU}


class ColumnHead(nn.Module):
    """One column's policy and value heads, laid out as in SB3's ``ActorCriticPolicy``.

    ``mlp_extractor`` (SB3's ``MlpExtractor``, identity for ``net_arch: []``), ``action_net``
    (logits over the task's own actions) and ``value_net``: the state-dict names match the SB3
    policy's, so a trained column's heads copy over by name.

    Args:
        features_dim: width of the column's features.
        net_arch: hidden widths above the features (SB3 ``net_arch``).
        activation: ``Tanh`` or ``ReLU`` (SB3's ``activation_fn``).
        n_actions: size of the task's ``Discrete`` action space.

    Raises:
        CheckpointError: an activation other than ``Tanh``/``ReLU``.
    """

    def __init__(self, features_dim: int, net_arch: Any, activation: str, n_actions: int) -> None:
        super().__init__()
        if activation not in _HEAD_ACTIVATIONS:
            raise CheckpointError(f"unsupported head activation {activation!r}; policyshare "
                                  f"heads use {', '.join(_HEAD_ACTIVATIONS)}")
        self.mlp_extractor = MlpExtractor(features_dim, net_arch, _HEAD_ACTIVATIONS[activation])
        self.action_net = nn.Linear(self.mlp_extractor.latent_dim_pi, n_actions)
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (batch, n_actions), values (batch, 1))`` of ``(batch, features_dim)``."""
        latent_pi, latent_vf = self.mlp_extractor(features)
        return self.action_net(latent_pi), self.value_net(latent_vf)


@dataclass
class ColumnInfo:
    """What a column was trained on (stored in the network file's header).

    Attributes:
        task: the Gymnasium id of the column's task.
        n_actions: the task's number of actions (its own, minimal set).
        action_map: each of the task's actions as an index into the suite's common action space.
        observation_shape: the task's single observation shape.
        alignment: the task's input alignment (``InputAlignment.describe()``).
        net_arch: SB3 ``net_arch`` of the heads.
        head_activation: SB3 ``activation_fn`` of the heads (``Tanh``/``ReLU``).
        source: provenance: run folder, seed, env steps, and the evaluation right after the
            column was trained (``eval_seed``, ``eval_episodes``, ``eval_returns``).
    """

    task: str
    n_actions: int
    action_map: list[int]
    observation_shape: list[int]
    alignment: dict[str, Any]
    net_arch: Any = field(default_factory=list)
    head_activation: str = "Tanh"
    source: dict[str, Any] = field(default_factory=dict)


def _alignment_from(describe: Mapping[str, Any]) -> InputAlignment:
    """Rebuild an :class:`InputAlignment` from its ``describe()`` output."""
    c, h, w = int(describe["task_channels"]), int(describe["height"]), int(describe["width"])
    last = bool(describe["channels_last"])
    return InputAlignment((h, w, c) if last else (c, h, w), mode=str(describe["mode"]),
                          channels_last=last, channels=int(describe["channels"]))


def _describe_spec(spec: TrunkSpec) -> str:
    return (f"{spec.name!r} trunk ({spec.activation}, {spec.in_channels} input channels, "
            f"{spec.height}x{spec.width})")


class ProgressiveNetwork(nn.Module):
    """A progressive network that acts in every task it has learned.

    Attributes:
        stack: the columns and lateral adapters (:class:`ColumnStack`).
        alignments: each column's task input alignment (``alignments[c]``).
        heads: each column's :class:`ColumnHead`.
        info: each column's :class:`ColumnInfo`.
        algo: the algorithm the columns were trained with.

    Args:
        spec: the columns' trunk spec.
        adapter: lateral adapter settings.
        algo: ``ppo`` or ``a2c`` (recorded).
    """

    def __init__(self, spec: TrunkSpec, adapter: AdapterConfig, algo: str = "ppo") -> None:
        super().__init__()
        self.stack = ColumnStack(spec, 0, adapter)
        self.alignments = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.info: list[ColumnInfo] = []
        self.algo = algo

    def __len__(self) -> int:
        return len(self.stack)

    @property
    def tasks(self) -> list[str]:
        """The task of each column, in order."""
        return [i.task for i in self.info]

    def column_index(self, task: str) -> int:
        """The 0-based column trained on ``task``.

        Raises:
            UserError: ``task`` is not one of the network's tasks.
        """
        if task not in self.tasks:
            raise UserError(f"task {task!r} is not in this progressive network; its tasks are "
                            f"{', '.join(self.tasks)} — pass one of them with --task")
        return self.tasks.index(task)

    def add_column(self, info: ColumnInfo) -> None:
        """Append a column (trunk, adapters, alignment, heads) with fresh weights for ``info``."""
        self.stack.add_column()
        c = len(self.stack) - 1
        self.alignments.append(_alignment_from(info.alignment))
        self.heads.append(ColumnHead(self.stack.features_dim(c), info.net_arch,
                                     info.head_activation, info.n_actions))
        self.info.append(info)
        self.requires_grad_(False)

    def add_column_from_model(self, model: Any, task: str, source: Mapping[str, Any]) -> None:
        """Append the column an SB3 model trained (its trunk, adapters, alignment and heads).

        Column 1 comes from a single-trunk model (``policyshare train``, a
        :class:`~policyshare.trunks.TrunkExtractor`); column ``k > 1`` from a model whose
        :class:`ProgressiveExtractor` has ``k`` columns, the first ``k-1`` of which must equal
        this network's, bit for bit.

        Raises:
            CheckpointError: the model is not a PPO/A2C policy on a trunk, has another trunk
                spec or adapter layout, has the wrong number of columns, or its frozen columns
                differ from this network's.
        """
        from policyshare.envs import task_action_map

        policy = model.policy
        if not isinstance(policy, ActorCriticPolicy):
            raise CheckpointError(f"a progressive column needs a PPO or A2C policy, got "
                                  f"{type(policy).__name__}")
        ex = policy.features_extractor
        c = len(self)
        laterals: nn.Module | None = None
        if isinstance(ex, ProgressiveExtractor):
            if ex.n_columns != c + 1:
                raise CheckpointError(f"the model has {ex.n_columns} columns; a network of {c} "
                                      f"columns can only take a model of {c + 1}")
            if ex.stack.adapter != self.stack.adapter:
                raise CheckpointError(f"the model's adapters {asdict(ex.stack.adapter)} differ "
                                      f"from the network's {asdict(self.stack.adapter)}")
            for j in range(c):
                for mine, theirs in zip(self.stack.column_modules(j), ex.stack.column_modules(j)):
                    theirs_state = theirs.state_dict()
                    if any(not torch.equal(v, theirs_state[k]) for k, v in mine.state_dict().items()):
                        raise CheckpointError(f"the model's frozen column {j + 1} differs from "
                                              "the network's; it was trained on another network")
            trunk, laterals = ex.stack.column(c), ex.stack.laterals[c]
        elif isinstance(ex, TrunkExtractor):
            if c != 0:
                raise CheckpointError("a single-trunk model can only be column 1 of a network")
            trunk = ex.trunk
        else:
            raise CheckpointError(f"a progressive column needs a policyshare trunk extractor, got "
                                  f"{type(ex).__name__}")
        if trunk.spec != self.stack.spec:
            raise CheckpointError(f"the model has a {_describe_spec(trunk.spec)} but the network "
                                  f"uses a {_describe_spec(self.stack.spec)}")
        info = ColumnInfo(task=task, n_actions=int(model.action_space.n),
                          action_map=task_action_map(task),
                          observation_shape=[int(d) for d in policy.observation_space.shape or ()],
                          alignment=ex.alignment.describe(), net_arch=policy.net_arch,
                          head_activation=policy.activation_fn.__name__, source=dict(source))
        self.add_column(info)
        what = f"column {c + 1} ({task})"
        load_state_checked(self.stack.columns[c], trunk.state_dict(), what)
        if laterals is not None:
            load_state_checked(self.stack.laterals[c], laterals.state_dict(), what)
        load_state_checked(self.alignments[c], ex.alignment.state_dict(), what)
        heads = {k: v for k, v in policy.state_dict().items()
                 if k.startswith(("mlp_extractor.", "action_net.", "value_net."))}
        load_state_checked(self.heads[c], heads, what)

    def extractor_kwargs(self, alignment: Mapping[str, Any]) -> dict[str, Any]:
        """Plain-data kwargs of the :class:`ProgressiveExtractor` that trains the next column.

        Args:
            alignment: the new task's input alignment kwargs (``Suite.alignment_kwargs``).
        """
        spec = self.stack.spec
        return {"trunk": {"name": spec.name, "activation": spec.activation, "theta": spec.theta},
                "alignment": dict(alignment), "n_columns": len(self) + 1,
                "adapter": asdict(self.stack.adapter)}

    def load_frozen_into(self, extractor: ProgressiveExtractor) -> None:
        """Copy this network's columns and adapters into the frozen part of ``extractor``.

        Call it *after* the SB3 model is built: SB3's ``ortho_init`` re-initialises the
        extractor while the policy is built.

        Raises:
            CheckpointError: ``extractor`` does not have exactly one column more than this
                network, or another spec or adapter layout (the message names both).
        """
        if extractor.n_columns != len(self) + 1:
            raise CheckpointError(f"an extractor of {extractor.n_columns} columns cannot take a "
                                  f"network of {len(self)} as its frozen part")
        if extractor.stack.spec != self.stack.spec:
            raise CheckpointError(f"the extractor has a {_describe_spec(extractor.stack.spec)} but "
                                  f"the network a {_describe_spec(self.stack.spec)}")
        for c in range(len(self)):
            for theirs, mine in zip(extractor.stack.column_modules(c), self.stack.column_modules(c)):
                load_state_checked(theirs, mine.state_dict(), f"frozen column {c + 1}")

    def forward(self, observations: torch.Tensor, column: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Act with one column.

        Args:
            observations: the column's task observations as its env gives them (MinAtar:
                ``(batch, 10, 10, C)``), any dtype.
            column: 0-based column index.

        Returns:
            ``(logits (batch, n_actions), values (batch, 1))``.
        """
        x = columns_input(cast(InputAlignment, self.alignments[column]), observations)
        earlier, own = self.stack.forward_column(x, column)
        logits, values = self.heads[column](self.stack.column_features(earlier, own, column))
        return logits, values

    def agent(self, task: str, seed: int = 0) -> ProgressiveAgent:
        """An agent with SB3's ``predict`` that acts in ``task`` with its column.

        Raises:
            UserError: ``task`` is not in the network.
        """
        return ProgressiveAgent(self, self.column_index(task), seed)

    def header(self) -> dict[str, Any]:
        """The JSON header of the network file."""
        return {"format": NETWORK_FORMAT, "format_version": 1, "spec": self.stack.spec.to_dict(),
                "adapter": asdict(self.stack.adapter), "algo": self.algo, "tasks": self.tasks,
                "columns": [asdict(i) for i in self.info]}

    def save(self, path: str | Path) -> Path:
        """Save the whole network (columns, adapters, alignments, heads, task ids) atomically.

        Raises:
            CheckpointError: if the write fails.
        """
        return save_tensors(path, self.state_dict(), self.header())

    def export_columns(self, folder: str | Path, network_path: str | Path | None = None) -> list[Path]:
        """Write every column's trunk as ``column_<k>__<task>.safetensors`` (``load_trunk`` reads it).

        A column ``k > 1`` was trained with lateral inputs: its trunk file holds its own
        weights only.
        """
        from policyshare.runs import slug

        paths = []
        for c, info in enumerate(self.info):
            source = {**info.source, "progressive_network": str(network_path or ""), "column": c + 1,
                      "task": info.task}
            paths.append(save_trunk(self.stack.column(c),
                                    Path(folder) / f"column_{c + 1}__{slug(info.task)}.safetensors",
                                    alignment=info.alignment,
                                    observation_shape=tuple(info.observation_shape), source=source))
        return paths


def load_network(path: str | Path) -> ProgressiveNetwork:
    """Load a network file written by :meth:`ProgressiveNetwork.save` (nothing is unpickled).

    Raises:
        CheckpointError: missing, corrupt, not a progressive network, or tensors that do not
            fit the header's layout (the message names both shapes).
    """
    tensors, header = load_tensors(path, NETWORK_FORMAT)
    try:
        spec = TrunkSpec.from_dict(header["spec"])
        adapter = from_dict(AdapterConfig, header["adapter"], f"{path} adapter")
        network = ProgressiveNetwork(spec, adapter, str(header.get("algo", "ppo")))
        for i, col in enumerate(header["columns"]):
            network.add_column(from_dict(ColumnInfo, col, f"{path} column {i + 1}"))
    except (KeyError, TypeError, UserError) as e:
        raise CheckpointError(f"{path}: unusable progressive network header ({e}); use another "
                              "checkpoint") from None
    load_state_checked(network, tensors, f"progressive network {path}")
    return network.eval()


class ProgressiveAgent:
    """One column of a :class:`ProgressiveNetwork` with SB3's ``predict`` signature.

    Args:
        network: the network.
        column: 0-based column index.
        seed: seed of the action sampling (``deterministic=False``).
    """

    def __init__(self, network: ProgressiveNetwork, column: int, seed: int = 0) -> None:
        self.network = network
        self.column = column
        self.task = network.info[column].task
        self.generator = torch.Generator().manual_seed(seed)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        """Actions ``(batch,)`` (task-local indices) for observations ``(batch, *obs_shape)``.

        A single unbatched observation gives a 0-d array. Greedy when ``deterministic``
        (argmax of the logits, as SB3's categorical ``mode``), else sampled.
        """
        obs = torch.as_tensor(np.asarray(observation))
        single = obs.dim() == len(self.network.info[self.column].observation_shape)
        if single:
            obs = obs.unsqueeze(0)
        with torch.no_grad():
            logits, _ = self.network(obs, self.column)
            if deterministic:
                actions = logits.argmax(dim=1)
            else:
                actions = torch.multinomial(torch.softmax(logits, 1), 1, generator=self.generator)[:, 0]
        out = actions.numpy()
        return (out[0] if single else out), None


def load_policy(path: str | Path, header: Mapping[str, Any], task: str | None
                ) -> tuple[ProgressiveAgent, str]:
    """Load a network file as a policy for one of its tasks (``policyshare evaluate --task``).

    Args:
        path: the ``network.safetensors`` file.
        header: its header (already read by :func:`policyshare.evaluate.load_policy`).
        task: the env id to act in; may be omitted only when the network has one column.

    Returns:
        ``(agent, env_id)``.

    Raises:
        CheckpointError: an unreadable network file.
        UserError: no ``task`` for a multi-task network, or ``task`` not in the network.
    """
    network = load_network(path)
    if task is None:
        if len(network) != 1:
            raise UserError(f"{path} holds a progressive network for {', '.join(network.tasks)}; "
                            "pass the one to act in with --task ID")
        task = network.tasks[0]
    try:
        return network.agent(task), task
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


# --------------------------------------------------------------------------------------------
# Training columns with SB3


def column_model_factory(algo: str, n_columns: int, trunk: Mapping[str, Any], adapter: AdapterConfig,
                         network: ProgressiveNetwork | None = None
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


# --------------------------------------------------------------------------------------------
# The experiment: a sequence of columns and the controls on the target task


@dataclass
class _Plan:
    """A validated experiment: everything resolved before any folder is written."""

    tasks: list[str]
    algo: str
    cfg: ProgressiveConfig
    timesteps: int | None
    overrides: dict[str, Any]
    runs: dict[str, dict[str, Any]]
    trunk: dict[str, Any]
    spec: TrunkSpec
    controls: list[str]
    seeds: list[int]
    quiet: bool

    @property
    def target(self) -> str:
        return self.tasks[-1]

    def resolved(self, init_from: str | None) -> dict[str, Any]:
        # The command line's choices (algo, timesteps, controls) win over the config file's.
        return {**to_dict(self.cfg), "tasks": self.tasks, "target": self.target, "algo": self.algo,
                "seeds": self.seeds, "timesteps": self.timesteps, "init_from": init_from,
                "controls": self.controls, "spec": self.spec.to_dict(), "train": self.overrides,
                "runs": self.runs}


def _plan(tasks: Sequence[str], config: str | Path | None, algo: str | None, timesteps: int | None,
          seeds: Sequence[int], controls: Sequence[str] | None,
          overrides: Mapping[str, Any] | None, quiet: bool) -> _Plan:
    from policyshare.envs import check_env_id, make_env
    from policyshare.train import load_train_config

    tasks = list(tasks)
    if len(tasks) < 2:
        raise UserError(f"--tasks needs at least two env ids (the source tasks, then the target), "
                        f"got {len(tasks)}: {' '.join(tasks) or 'none'}")
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        raise UserError(f"--tasks lists {', '.join(repeated)} more than once; each column learns "
                        "a different task")
    suites = [check_env_id(t) for t in tasks]
    if len({s.name for s in suites}) > 1:
        raise UserError(f"--tasks mixes suites ({', '.join(sorted({s.name for s in suites}))}); "
                        "the columns of one network read one suite's aligned observations")
    cfg = load_progressive_config(config, overrides)
    algo = algo or cfg.algo
    if algo not in ALGOS:
        raise UserError(f"progressive columns train with {' or '.join(ALGOS)}, not {algo!r}")
    if timesteps is not None and timesteps <= 0:
        raise UserError(f"--timesteps must be > 0, got {timesteps}")
    timesteps = timesteps or cfg.timesteps
    first, _ = load_train_config(tasks[0], algo, cfg.train_config, cfg.train)
    suite = suites[0]
    mode = first.trunk.alignment or suite.alignment
    if mode == "none":
        raise ConfigError("progressive networks need input alignment 'pad' or 'stem' (the "
                          "columns read every task's observations); set train.trunk.alignment")
    trunk_cfg = {"spec": first.trunk.spec or suite.trunk, "activation": first.trunk.activation,
                 "theta": first.trunk.theta, "alignment": mode}
    run_overrides = deep_merge(cfg.train, {"trunk": trunk_cfg})
    resolved_runs = {t: load_train_config(t, algo, cfg.train_config, run_overrides) for t in tasks}
    runs = {t: {**to_dict(c), "hyperparams": to_dict(h)} for t, (c, h) in resolved_runs.items()}
    target = resolved_runs[tasks[-1]][0]  # the target's runs are the ones compared
    steps = timesteps or target.timesteps
    if not 0 < 2 * target.eval.freq <= steps:
        raise ConfigError(f"transfer is measured on learning curves of at least two evaluations: "
                          f"set train.eval.freq (now {target.eval.freq}) to at most half the "
                          f"target's {steps} env steps")
    trunk = {"name": trunk_cfg["spec"], "activation": trunk_cfg["activation"],
             "theta": trunk_cfg["theta"]}
    env = make_env(tasks[0])
    try:
        _, spec = _spec_for(env.observation_space, trunk, suite.alignment_kwargs(mode))
    finally:
        env.close()
    _check_spec_fits(spec, suite.name)
    chosen = [c for c in CONTROLS if getattr(cfg.controls, c)] if controls is None else list(controls)
    unknown = [c for c in chosen if c not in CONTROLS]
    if unknown:
        raise UserError(f"unknown control {unknown[0]!r}; choose from {', '.join(CONTROLS)}")
    if not seeds:
        raise UserError("no seeds given; pass --seeds 0 1 2")
    check_seeds(seeds)
    return _Plan(tasks, algo, cfg, timesteps, run_overrides, runs, trunk, spec, chosen, list(seeds),
                 quiet)


def _check_spec_fits(spec: TrunkSpec, suite: str) -> None:
    """Refuse a trunk spec whose layers do not fit the suite's observations (before training).

    Raises:
        ConfigError: naming the layer that does not fit and the specs that do.
    """
    from policyshare.trunks import TRUNK_SPECS

    def fits(name: str) -> bool:
        try:
            Trunk(TrunkSpec(name, spec.in_channels, spec.height, spec.width, spec.activation, spec.theta))
        except ConfigError:
            return False
        return True

    if not fits(spec.name):
        try:
            Trunk(spec)
        except ConfigError as e:
            raise ConfigError(f"{e}; set train.trunk.spec to one that fits {suite}'s "
                              f"{spec.height}x{spec.width} observations: "
                              f"{', '.join(n for n in TRUNK_SPECS if fits(n))}") from None


def _say(plan: _Plan, text: str) -> None:
    if not plan.quiet:
        print(text, flush=True)


def _stage(plan: _Plan, run_dir: Path, task: str, seed: int, method: str, **kwargs: Any
           ) -> tuple[dict[str, Any], Any]:
    """Train one run of the experiment, or read it back if it finished (stage-level resume).

    Returns:
        ``(metrics, model)``; ``model`` is ``None`` for a run finished earlier.
    """
    from policyshare.runs import RunFolder
    from policyshare.train import train

    run = RunFolder(run_dir)
    if run.finished:
        _say(plan, f"[s{seed}] {method} on {task}: finished earlier ({run_dir})")
        return read_json(run.metrics_path, "run metrics"), None
    resume = run.meta_path.is_file()
    _say(plan, f"[s{seed}] {method} on {task}: {'resuming' if resume else 'training'} → {run_dir}")
    started = time.perf_counter()
    result = train(task, plan.algo, config=plan.cfg.train_config, timesteps=plan.timesteps,
                   seed=seed, run_dir=run_dir, overrides=plan.runs[task], resume=resume,
                   run_name=method, quiet=True, **kwargs)
    m = result.metrics
    _say(plan, f"[s{seed}] {method} on {task}: eval return {m['eval_mean_return']:.2f} ± "
               f"{m['eval_std_return']:.2f} after {m['timesteps']} env steps "
               f"({time.perf_counter() - started:.0f} s)")
    return m, result.model


def _source(metrics: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """A column's provenance and the evaluation taken right after it was trained."""
    from policyshare.evaluate import EVAL_SEED_OFFSET

    return {"run": str(run_dir), "seed": metrics["seed"], "timesteps": metrics["timesteps"],
            "eval_seed": int(metrics["seed"]) + EVAL_SEED_OFFSET,
            "eval_episodes": metrics["eval_episodes"], "eval_returns": metrics["eval_returns"],
            "eval_mean_return": metrics["eval_mean_return"]}


def network_from_checkpoint(path: str | Path, task: str, spec: TrunkSpec, adapter: AdapterConfig,
                            algo: str, safe: bool = False) -> ProgressiveNetwork:
    """Column 1 from a single-task checkpoint (``--init-from``).

    Args:
        path: a ``policyshare train`` run folder or its ``model.zip`` (PPO or A2C).
        task: the first task; the checkpoint must have been trained on it.
        spec: the trunk spec of the network to build.
        adapter: lateral adapter settings.
        algo: the algorithm the next columns train with (recorded).
        safe: never unpickle (:func:`~policyshare.checkpoints.load_sb3_safe`): rebuild the
            model from the zip's ``policyshare.json`` and load only tensors.

    Raises:
        CheckpointError: missing, unreadable, not an actor-critic policy on a trunk, or another
            trunk spec (the message names both); with ``safe``, a zip without a policyshare
            description or holding more than tensors.
        UserError: a checkpoint of another task.
    """
    from policyshare.checkpoints import read_sb3_header
    from policyshare.evaluate import EVAL_SEED_OFFSET, evaluate

    p = Path(path)
    if p.is_dir():
        p = p / "model.zip"
    if p.suffix != ".zip":
        raise CheckpointError(f"--init-from {path}: column 1 needs its heads too; pass a "
                              "`policyshare train` run folder or its model.zip")
    header = read_sb3_header(p)
    env_id = header.get("env_id")
    if env_id is not None and env_id != task:
        raise UserError(f"--init-from {path} was trained on {env_id}, but the first task is "
                        f"{task}; list {env_id} first in --tasks or pass a checkpoint of {task}")
    model, _ = load_sb3(p, safe=safe)
    ex = getattr(model.policy, "features_extractor", None)
    if not isinstance(ex, TrunkExtractor):
        raise CheckpointError(f"--init-from {path} is not a PPO/A2C policy on a policyshare trunk; "
                              "pass a `policyshare train` run of --algo ppo or a2c")
    if ex.trunk.spec != spec:
        raise CheckpointError(f"--init-from {path} holds a {_describe_spec(ex.trunk.spec)}, but the "
                              f"progressive network uses a {_describe_spec(spec)}; pass a checkpoint "
                              f"of that spec or set train.trunk.spec: {ex.trunk.spec.name}")
    metrics_path = p.parent / "metrics.json"
    metrics = read_json(metrics_path, "run metrics") if metrics_path.is_file() else None
    if metrics is not None and metrics.get("eval_returns") and metrics.get("env_id") == task:
        source = _source(metrics, p.parent)
    else:
        result = evaluate(model, task, 10, EVAL_SEED_OFFSET)
        source = {"run": str(p.parent), "eval_seed": EVAL_SEED_OFFSET, "eval_episodes": 10,
                  "eval_returns": result.returns, "eval_mean_return": result.mean}
    source["init_from"] = str(p)
    network = ProgressiveNetwork(spec, adapter, algo)
    network.add_column_from_model(model, task, source)
    return network


def _column_dir(seed_dir: Path, k: int, task: str) -> Path:
    from policyshare.runs import slug

    return seed_dir / f"column_{k}__{slug(task)}"


def _method_dirs(plan: _Plan, seed_dir: Path) -> dict[str, Path]:
    """The target-task run of every compared method (the progressive column and the controls)."""
    from policyshare.runs import slug

    dirs = {"progressive": _column_dir(seed_dir, len(plan.tasks), plan.target)}
    dirs.update({c: seed_dir / f"{c}__{slug(plan.target)}" for c in plan.controls})
    return dirs


def _grow(plan: _Plan, seed_dir: Path, seed: int, init: ProgressiveNetwork | None
          ) -> ProgressiveNetwork:
    """Train (or read back) every column of one seed; the network file grows column by column."""
    import copy

    net_path = seed_dir / NETWORK_FILE
    network: ProgressiveNetwork | None = None
    if net_path.is_file():
        network = load_network(net_path)
        if network.tasks != plan.tasks[:len(network)]:
            raise CheckpointError(f"{net_path} holds columns for {', '.join(network.tasks)}, not "
                                  f"the first tasks of {', '.join(plan.tasks)}; choose another "
                                  "--run-dir")
    elif init is not None:
        network = copy.deepcopy(init)
        network.save(net_path)
    adapter = plan.cfg.adapter
    for k in range(len(network) if network is not None else 0, len(plan.tasks)):
        task = plan.tasks[k]
        run_dir = _column_dir(seed_dir, k + 1, task)
        method = f"column_{k + 1}"
        if network is None:
            metrics, model = _stage(plan, run_dir, task, seed, method)
        else:
            describe = {"progressive": {"column": k + 1, "tasks": plan.tasks[:k + 1],
                                        "adapter": asdict(adapter), "frozen_from": str(net_path)}}
            metrics, model = _stage(plan, run_dir, task, seed, method,
                                    model_factory=column_model_factory(plan.algo, k + 1, plan.trunk, adapter,
                                                                        network),
                                    extra_callbacks=[LateralScalarLogger()], extra_config=describe)
        if model is None:
            model, _ = load_sb3(run_dir / "model.zip")
        if network is None:
            network = ProgressiveNetwork(plan.spec, adapter, plan.algo)
        network.add_column_from_model(model, task, _source(metrics, run_dir))
        network.save(net_path)
    if network is None:  # unreachable: plan.tasks has at least two entries
        raise UserError("no tasks to train")
    network.export_columns(seed_dir / "columns", net_path)
    return network


def _controls(plan: _Plan, seed_dir: Path, seed: int) -> None:
    """Train the selected controls on the target task (same seed, same config, same steps)."""
    from policyshare.runs import slug

    target = plan.target
    first_trunk = seed_dir / "columns" / f"column_1__{slug(plan.tasks[0])}.safetensors"
    dirs = _method_dirs(plan, seed_dir)
    for control in plan.controls:
        if control == "scratch":  # baseline 1
            _stage(plan, dirs[control], target, seed, control)
        elif control == "finetune":  # baseline 3
            _stage(plan, dirs[control], target, seed, control, init_trunk=first_trunk)
        else:  # baseline 4: a random, frozen first column
            _stage(plan, dirs[control], target, seed, control,
                   model_factory=column_model_factory(plan.algo, 2, plan.trunk, plan.cfg.adapter),
                   extra_callbacks=[LateralScalarLogger()],
                   extra_config={"progressive": {"column": 2, "random_frozen_columns": 1,
                                                 "adapter": asdict(plan.cfg.adapter)}})


def check_no_forgetting(network: ProgressiveNetwork) -> dict[str, dict[str, Any]]:
    """Evaluate every column but the last on its own task, as right after it was trained.

    Each column's ``source`` records the evaluation taken when it was trained (seed, episodes,
    returns); the whole network, acting with that column, is evaluated again with the same
    seed and episodes. Frozen columns never change, so the returns must be identical.

    Returns:
        task → ``{"before", "after", "identical", "episodes", "seed"}`` (returns are lists).
    """
    from policyshare.evaluate import evaluate

    out: dict[str, dict[str, Any]] = {}
    for info in network.info[:-1]:
        src = info.source
        result = evaluate(network.agent(info.task), info.task, int(src["eval_episodes"]),
                          int(src["eval_seed"]))
        before = [float(r) for r in src["eval_returns"]]
        out[info.task] = {"before": before, "after": result.returns,
                          "identical": before == result.returns,
                          "episodes": int(src["eval_episodes"]), "seed": int(src["eval_seed"])}
    return out


def _seed_analysis(plan: _Plan, seed_dir: Path, seed: int, network: ProgressiveNetwork
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """No-forgetting check and Fisher sensitivity of one seed (cached in the seed folder)."""
    from policyshare.fisher import average_fisher_sensitivity, collect_observations

    path = seed_dir / "no_forgetting.json"
    if path.is_file():
        forgetting = read_json(path, "no-forgetting check")
    else:
        forgetting = check_no_forgetting(network)
        atomic_write_json(path, forgetting)
    fisher = None
    if plan.cfg.fisher.enabled:
        path = seed_dir / "fisher.json"
        if path.is_file():
            fisher = read_json(path, "Fisher sensitivity")
        else:
            obs = collect_observations(network, plan.target, plan.cfg.fisher.samples,
                                       seed + FISHER_SEED_OFFSET)
            fisher = average_fisher_sensitivity(network, plan.target, obs,
                                                plan.cfg.fisher.batch_size).as_dict()
            atomic_write_json(path, fisher)
    return forgetting, fisher


def run_progressive(tasks: Sequence[str], *, config: str | Path | None = None,
                    algo: str | None = None, timesteps: int | None = None,
                    seeds: Sequence[int] = (0,), run_dir: str | Path | None = None,
                    init_from: str | Path | None = None, controls: Sequence[str] | None = None,
                    overrides: Mapping[str, Any] | None = None, resume: bool = False,
                    quiet: bool = False, safe: bool = False) -> dict[str, Any]:
    """Grow a progressive network over ``tasks`` and measure transfer to the last one.

    For every seed: column 1 is trained on the first task (or taken from ``init_from``), each
    next column on the next task with the earlier ones frozen; then the controls train on the
    target. Every run is a ``policyshare train`` run folder under ``<run_dir>/s<seed>/`` (so
    TensorBoard overlays them by name, ``tensorboard --logdir <run_dir>``); the growing network
    is ``s<seed>/network.safetensors`` and its columns ``s<seed>/columns/*.safetensors``. A run
    that finished is never redone: re-run with ``resume`` to continue after an interruption.
    Every task's training config is resolved once, recorded in the experiment's ``config.yaml``
    (``runs``) and passed whole to every run, so all runs of the experiment — resumed ones
    too — train with the settings it started with, whatever later edits to the config files.

    At the root: ``metrics.json`` (transfer % per seed and its IQM with a 95 % bootstrap
    interval per method, final returns, the no-forgetting check, lateral scalars, Average
    Fisher Sensitivity), ``report.md``, ``curves.png`` and ``fisher.{md,json,png}``.

    Args:
        tasks: Gymnasium ids, source tasks first, the target last (at least two).
        config: experiment config (default ``configs/progressive.yaml``).
        algo: ``ppo`` or ``a2c`` (default: the config's).
        timesteps: env steps per column and per control (default: the config's).
        seeds: seeds; every method of a seed uses that seed.
        run_dir: experiment folder (default ``runs/progressive/<tasks>__<algo>``).
        init_from: a ``policyshare train`` run folder or model.zip of the first task: column 1.
        controls: subset of :data:`CONTROLS` (default: the config's).
        overrides: nested overrides of the experiment config (``--set``).
        resume: continue an unfinished experiment in ``run_dir``.
        quiet: no progress lines.
        safe: load ``init_from`` without unpickling (see :func:`network_from_checkpoint`).

    Returns:
        The contents of ``metrics.json``.

    Raises:
        UserError: fewer than two tasks, an unknown or repeated id, a seed given twice, tasks
            of different suites, an unsupported algorithm, a bad config, an ``init_from`` of
            another task or spec, or a run folder that would be overwritten.
    """
    import yaml

    from policyshare.runs import RunFolder, default_run_dir, slug

    plan = _plan(tasks, config, algo, timesteps, seeds, controls, overrides, quiet)
    init = (network_from_checkpoint(init_from, plan.tasks[0], plan.spec, plan.cfg.adapter, plan.algo,
                                    safe=safe) if init_from is not None else None)
    resolved = plan.resolved(str(init_from) if init_from is not None else None)
    folder = Path(run_dir) if run_dir is not None else default_run_dir(
        "progressive", "__".join(slug(t) for t in plan.tasks), None, plan.algo)
    exp = RunFolder.open(folder, command="progressive", config=resolved, resume=resume)
    if resume:
        saved = read_yaml(exp.config_path)
        now = yaml.safe_load(yaml.safe_dump(resolved, sort_keys=False))
        changed = sorted(k for k in set(saved) | set(now) if k != "runs" and saved.get(k) != now.get(k))
        if changed:
            raise UserError(f"{folder} was started with other settings ({', '.join(changed)}); "
                            "resume with the same command or choose another --run-dir")
        plan.runs = saved["runs"]  # the training configs the experiment started with
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in plan.seeds:
        seed_dir = exp.path / f"s{seed}"
        network = _grow(plan, seed_dir, seed, init)
        _controls(plan, seed_dir, seed)
        forgetting, fisher = _seed_analysis(plan, seed_dir, seed, network)
        per_seed[seed] = {"network": network, "no_forgetting": forgetting, "fisher": fisher,
                          "dir": seed_dir}
    metrics = _summarise(plan, exp.path, per_seed, resolved)
    exp.write_metrics(metrics)
    if not plan.quiet:
        print(_summary_text(metrics, exp.path))
    return metrics


#: How each compared method is labelled in plots and reports (Rusu et al. 2016's baselines).
METHOD_LABELS: dict[str, str] = {
    "progressive": "progressive net",
    "scratch": "baseline 1: single column from scratch",
    "finetune": "baseline 3: column 1 fine-tuned",
    "random_column": "baseline 4: random frozen column 1",
}


def _short(task: str) -> str:
    """``MinAtar/Breakout-v1`` → ``Breakout-v1`` (for plot titles)."""
    return task.rsplit("/", 1)[-1]


def _write_tensorboard(run_dir: Path, scalars: Mapping[str, float], step: int) -> None:
    """Add scalars to a run's TensorBoard folder (a new event file beside SB3's)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir / "tb"))
    try:
        for tag, value in scalars.items():
            if np.isfinite(value):
                writer.add_scalar(tag, value, step)
    finally:
        writer.close()


def _summarise(plan: _Plan, root: Path, per_seed: Mapping[int, Mapping[str, Any]],
               resolved: Mapping[str, Any]) -> dict[str, Any]:
    """Transfer %, curves plot, Fisher table and heat map, TensorBoard scalars, report."""
    from policyshare.curves import Curve, load_curve, plot_curves, transfer_summary
    from policyshare.fisher import fisher_table, plot_fisher_heatmap

    methods = ["progressive", *plan.controls]
    curves: dict[str, dict[int, Curve]] = {m: {} for m in methods}
    finals: dict[str, dict[str, float]] = {m: {} for m in methods}
    runs: dict[str, dict[str, str]] = {m: {} for m in methods}
    steps: dict[str, dict[str, int]] = {m: {} for m in methods}
    random_return: dict[str, float] = {}
    for seed, d in per_seed.items():
        for m, path in _method_dirs(plan, d["dir"]).items():
            curves[m][seed] = load_curve(path)
            met = read_json(path / "metrics.json", "run metrics")
            finals[m][str(seed)] = float(met["eval_mean_return"])
            runs[m][str(seed)] = str(path)
            steps[m][str(seed)] = int(met["timesteps"])
            random_return[str(seed)] = float(met["random_mean_return"])
    transfer = transfer_summary(curves, "scratch") if "scratch" in methods else {}
    for seed, d in per_seed.items():
        for m, path in _method_dirs(plan, d["dir"]).items():
            value = transfer.get(m, {}).get("per_seed", {}).get(str(seed))
            if value is not None:
                _write_tensorboard(path, {"progressive/transfer_percent": value}, steps[m][str(seed)])
    plot_curves({METHOD_LABELS[m]: [curves[m][s] for s in per_seed] for m in methods},
                root / "curves.png",
                f"{_short(plan.target)} after {' → '.join(map(_short, plan.tasks[:-1]))}\n"
                f"({plan.algo}, seeds {' '.join(map(str, per_seed))}; bands: 95% bootstrap CI)")
    k = len(plan.tasks)
    alphas = {str(s): {name: a.alpha.item() for name, a in d["network"].stack.adapters(k - 1).items()}
              for s, d in per_seed.items()}
    forgetting = {str(s): d["no_forgetting"] for s, d in per_seed.items()}
    fisher: dict[str, Any] | None = None
    fishers = {str(s): d["fisher"] for s, d in per_seed.items() if d["fisher"] is not None}
    if fishers:
        first = next(iter(fishers.values()))
        layers, columns = list(first["layers"]), list(first["columns"])
        arr = np.array([[[f["afs"][c][layer] for layer in layers] for c in columns]
                        for f in fishers.values()])
        mean, std = arr.mean(axis=0), arr.std(axis=0)
        table = fisher_table(mean, columns, layers, std if len(fishers) > 1 else None)
        atomic_write_text(root / "fisher.md",
                          f"# Average Fisher Sensitivity on {plan.target}\n\n(Rusu et al. 2016, "
                          f"Sec. 5; mean ± std over seeds {', '.join(fishers)}; each layer sums "
                          f"to 1 over columns)\n\n{table}")
        plot_fisher_heatmap(mean, columns, layers, root / "fisher.png",
                            f"AFS on {_short(plan.target)}\n(mean of {len(fishers)} seeds)")
        fisher = {"target": plan.target, "layers": layers, "columns": columns,
                  "afs_mean": {c: dict(zip(layers, map(float, row))) for c, row in zip(columns, mean)},
                  "afs_std": {c: dict(zip(layers, map(float, row))) for c, row in zip(columns, std)},
                  "per_seed": fishers, "table": table}
        atomic_write_json(root / "fisher.json", fisher)
        for s, f in fishers.items():
            path = _method_dirs(plan, per_seed[int(s)]["dir"])["progressive"]
            _write_tensorboard(path, {f"progressive/column_{c + 1}/afs/{layer}": f["afs"][col][layer]
                                      for c, col in enumerate(columns) for layer in layers},
                               steps["progressive"][s])
    metrics: dict[str, Any] = {
        "tasks": plan.tasks, "target": plan.target, "algo": plan.algo,
        "seeds": [int(s) for s in per_seed], "controls": plan.controls,
        "transfer_baseline": "scratch" if transfer else None,
        "transfer_definition": "100 * AUC(target curve) / AUC(scratch curve) per seed (Rusu et al. "
                               "2016, Table 1); IQM over seeds with a 95% stratified bootstrap CI",
        "methods": {m: {"label": METHOD_LABELS[m], "runs": runs[m], "timesteps": steps[m],
                        "final_eval_mean_return": finals[m],
                        "final_eval_mean_return_over_seeds": float(np.mean(list(finals[m].values()))),
                        "transfer_percent": transfer.get(m)} for m in methods},
        "target_random_mean_return": random_return,
        "no_forgetting": forgetting,
        "no_forgetting_all_identical": all(v["identical"] for f in forgetting.values() for v in f.values()),
        "lateral_alpha": alphas,
        "fisher": fisher,
        "config": dict(resolved),
        "files": {"curves": "curves.png", "report": "report.md",
                  **({"fisher_table": "fisher.md", "fisher_json": "fisher.json",
                      "fisher_heatmap": "fisher.png"} if fisher else {})},
        "tensorboard": f"tensorboard --logdir {root}",
    }
    atomic_write_text(root / "report.md", _report(metrics))
    return metrics


def _transfer_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    from policyshare.metrics import format_interval, format_number

    rows = []
    for m, d in metrics["methods"].items():
        t = d["transfer_percent"]
        interval = format_interval(t["iqm"], t["low"], t["high"]) if t else "n/a"
        per_seed = ", ".join(f"s{s}: {format_number(v)}" for s, v in t["per_seed"].items()) if t else "n/a"
        rows.append((m, interval, per_seed, f"{d['final_eval_mean_return_over_seeds']:.2f}"))
    return rows


def _summary_text(metrics: Mapping[str, Any], root: Path) -> str:
    """The figures ``policyshare progressive`` prints at the end."""
    lines = [f"target {metrics['target']} after {' → '.join(metrics['tasks'][:-1])}, "
             f"{metrics['algo']}, seeds {' '.join(map(str, metrics['seeds']))}",
             f"{'method':<15} {'transfer % IQM [95% CI]':<26} {'per seed':<34} final return"]
    for m, interval, per_seed, final in _transfer_rows(metrics):
        lines.append(f"{m:<15} {interval:<26} {per_seed:<34} {final}")
    lines.append("earlier columns' returns unchanged after training later ones: "
                 f"{'yes' if metrics['no_forgetting_all_identical'] else 'NO'}")
    if metrics["fisher"]:
        lines.append("Average Fisher Sensitivity on the target (rows: columns; mean ± std over seeds):")
        lines.append(metrics["fisher"]["table"].rstrip())
    lines.append(f"metrics: {root / 'metrics.json'}  report: {root / 'report.md'}  "
                 f"curves: {root / 'curves.png'}")
    lines.append(f"TensorBoard: {metrics['tensorboard']}")
    return "\n".join(lines)


def _report(metrics: Mapping[str, Any]) -> str:
    """``report.md``: settings, transfer table, no-forgetting check, lateral scalars, Fisher."""
    cfg = metrics["config"]
    steps = sorted({n for d in metrics["methods"].values() for n in d["timesteps"].values()})
    out = [f"# Progressive network: {' → '.join(metrics['tasks'])}", "",
           f"Algorithm {metrics['algo']}; seeds {', '.join(map(str, metrics['seeds']))}; "
           f"env steps per target run: {', '.join(map(str, steps))}; adapters {cfg['adapter']}.", "",
           "## Transfer to the target (Rusu et al. 2016, Table 1)", "",
           f"{metrics['transfer_definition']}.", "",
           "| method | transfer % IQM [95% CI] | per seed | final eval return (mean over seeds) |",
           "|---|---|---|---|"]
    for m, interval, per_seed, final in _transfer_rows(metrics):
        out.append(f"| {metrics['methods'][m]['label']} | {interval} | {per_seed} | {final} |")
    randoms = ", ".join(f"s{s}: {v:.2f}" for s, v in metrics["target_random_mean_return"].items())
    out += ["", f"Random policy on the target: {randoms}.", "", "![learning curves](curves.png)", "",
            "## No forgetting", "",
            "Every earlier column, evaluated through the whole network on its own task with the "
            "seeds and episodes of its evaluation right after training: "
            f"{'identical returns' if metrics['no_forgetting_all_identical'] else 'RETURNS DIFFER'}.",
            ""]
    for seed, checks in metrics["no_forgetting"].items():
        for task, c in checks.items():
            out.append(f"- s{seed} {task}: before {np.mean(c['before']):.2f}, after "
                       f"{np.mean(c['after']):.2f} over {c['episodes']} episodes "
                       f"({'identical' if c['identical'] else 'different'})")
    out += ["", "## Lateral scalars α of the target column", ""]
    for seed, alphas in metrics["lateral_alpha"].items():
        out.append(f"- s{seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in alphas.items()))
    if metrics["fisher"]:
        out += ["", "## Average Fisher Sensitivity (Rusu et al. 2016, Sec. 5)", "",
                metrics["fisher"]["table"], "![Fisher sensitivity](fisher.png)"]
    out += ["", f"TensorBoard: `{metrics['tensorboard']}`", ""]
    return "\n".join(out)
