"""Lateral connections of a progressive network (Rusu et al. 2016, Eq. 2).

Column ``k``'s layer ``i`` reads the earlier columns' layer ``i-1`` through an adapter::

    U_i^(k) σ( V_i^(k) (α_{i-1}^(k) · [h_{i-1}^(1), …, h_{i-1}^(k-1)]) )

with α a learned scalar, V a dimensionality reduction (1x1 convolution when layer ``i-1`` is
convolutional, dense otherwise), σ the trunk's non-linearity and U the projection into layer
``i``. :func:`pointwise_conv` is the 1x1 convolution as one matmul, shared with the fused
frozen path of :class:`~policyshare.progressive.columns.ColumnStack`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from policyshare.trunks import LayerSpec, make_activation


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


def layer_width(shape: tuple[int, ...]) -> int:
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
        width = layer_width(source_shape)
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

