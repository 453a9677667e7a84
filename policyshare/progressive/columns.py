"""The columns of a progressive network: the stack, its fused frozen path, the cache, the heads.

Every column is a :class:`~policyshare.trunks.Trunk` built from one
:class:`~policyshare.trunks.TrunkSpec`; column ``k`` reads the earlier columns through
:class:`~policyshare.progressive.adapters.LateralAdapter` (Rusu et al. 2016, Eq. 2).
Earlier columns are frozen: they run without autograd, fused into a few wide ops however many
there are (:meth:`ColumnStack.frozen_activations`), and under PPO their activations are
computed once per observation and rollout (:class:`FrozenActivationCache`).
:class:`ColumnHead` is one column's policy and value heads, laid out as SB3's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from stable_baselines3.common.torch_layers import MlpExtractor
from torch import nn
from torch.nn import functional as F

from policyshare.alignment import InputAlignment
from policyshare.errors import CheckpointError
from policyshare.progressive.adapters import LateralAdapter, layer_width, pointwise_conv
from policyshare.progressive.config import AdapterConfig
from policyshare.trunks import LayerSpec, Trunk, TrunkSpec


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
                    width = layer_width(shapes[i - 1])
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


class FrozenActivationCache:
    """The frozen columns' activations by observation, kept while the policy trains.

    PPO passes over every rollout ``n_epochs`` times. The frozen columns' activations depend on
    the observation only (their weights never change; the cache is not used when an input stem
    trains), so the first pass computes and stores them and the later passes look them up:
    the frozen columns then cost one forward per observation in training instead of
    ``n_epochs``. A batch is served from the cache only when every observation in it is
    there; otherwise it is computed (and the new observations stored while room is left).
    :meth:`~policyshare.progressive.policy.ProgressivePolicy.set_training_mode` clears it when
    the policy leaves training mode, i.e. before every rollout, so it never holds more than one
    rollout.

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


