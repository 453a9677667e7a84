"""Trunks: the shared lower convolutional layers, built from a named spec.

A trunk is the part of a network that policyshare shares across tasks: a stack of conv
layers followed by dense layers, each followed by an activation. It reads images laid out as
``(batch, channels, height, width)`` floats and returns features ``(batch, features_dim)``.

Named specs (:data:`TRUNK_SPECS`):

* ``minatar`` — the MinAtar paper network (Young & Tian 2019): Conv 3x3, 16 maps, stride 1
  → dense 128.
* ``minatar_deep`` — a deeper variant: Conv 3x3 16 → Conv 3x3 32 → dense 128.
* ``nature`` — the DQN Atari network (Mnih et al. 2015) for 84x84 frames: Conv 8x8/4 32 →
  Conv 4x4/2 64 → Conv 3x3/1 64 → dense 512.
* ``image_deep`` — an image trunk deep enough to carry a texture or a style (64x64 input): six
  conv layers whose receptive fields grow 3, 6, 10, 16, 24, 36 pixels — Conv 3x3 32 → Conv
  4x4/2 64 → Conv 3x3 64 → Conv 4x4/2 128 → Conv 3x3 128 → Conv 4x4/2 128 → dense 128. The
  strided kernels are twice their stride, so every input pixel is covered evenly (a 3x3/2
  kernel leaves a checkerboard in synthesised images). Random multi-layer nets of this kind
  synthesise textures (Ustyuzhaninov, Brendel, Gatys & Bethge 2016, "Texture synthesis using
  shallow convolutional networks with random filters"; He, Wang & Hopcroft 2016).

Activations: ``relu``, and the zero-bias thresholded units of Konda, Memisevic & Krueger 2015
("Zero-bias autoencoders and the benefits of co-adapting features", ICLR 2015):
``trec`` (TRec, z · 1[z > θ]) and ``tlin`` (TLin, z · 1[|z| > θ]). With a zero-bias
activation the preceding layer has no bias.

:class:`TrunkExtractor` wraps a trunk (plus the input alignment of
:mod:`policyshare.alignment`) as a stable-baselines3 ``BaseFeaturesExtractor`` so PPO, A2C
and DQN can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from policyshare.alignment import InputAlignment
from policyshare.errors import ConfigError

Activation = Literal["relu", "trec", "tlin"]
ACTIVATIONS: tuple[str, ...] = ("relu", "trec", "tlin")


class TRec(nn.Module):
    """Thresholded rectifier, TRec (Konda, Memisevic & Krueger 2015, Eq. 4).

    ``TRec(z) = z · 1[z > θ]``: keeps a unit's input where it exceeds the threshold θ and
    zeroes it elsewhere. Meant to follow a layer *without* bias. Shape-preserving.

    Args:
        theta: the threshold θ (same units as the pre-activation), θ ≥ 0.
    """

    def __init__(self, theta: float = 1.0) -> None:
        super().__init__()
        self.theta = float(theta)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.where(z > self.theta, z, torch.zeros_like(z))

    def extra_repr(self) -> str:
        return f"theta={self.theta}"


class TLin(nn.Module):
    """Thresholded linear unit, TLin (Konda, Memisevic & Krueger 2015, Eq. 5).

    ``TLin(z) = z · 1[|z| > θ]``: keeps the input where its magnitude exceeds θ (both signs).
    Meant to follow a layer *without* bias. Shape-preserving.

    Args:
        theta: the threshold θ, θ ≥ 0.
    """

    def __init__(self, theta: float = 1.0) -> None:
        super().__init__()
        self.theta = float(theta)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.where(z.abs() > self.theta, z, torch.zeros_like(z))

    def extra_repr(self) -> str:
        return f"theta={self.theta}"


def make_activation(name: str, theta: float) -> nn.Module:
    """Build an activation module by name.

    Args:
        name: ``relu``, ``trec`` or ``tlin``.
        theta: threshold θ for ``trec``/``tlin`` (ignored for ``relu``).

    Raises:
        ConfigError: for an unknown name.
    """
    if name == "relu":
        return nn.ReLU()
    if name == "trec":
        return TRec(theta)
    if name == "tlin":
        return TLin(theta)
    raise ConfigError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


@dataclass(frozen=True)
class LayerSpec:
    """One trunk layer.

    Attributes:
        name: layer name (``conv1``, ``conv2``, ``fc1`` …), used by laterals, Gram losses
            and Fisher sensitivity.
        kind: ``conv`` (Conv2d) or ``fc`` (Linear on the flattened input).
        out: output channels (conv) or units (fc).
        kernel: square kernel size (conv only).
        stride: stride (conv only).
        padding: zero padding (conv only).
    """

    name: str
    kind: Literal["conv", "fc"]
    out: int
    kernel: int = 0
    stride: int = 1
    padding: int = 0


def _conv(name: str, out: int, kernel: int, stride: int = 1) -> LayerSpec:
    return LayerSpec(name=name, kind="conv", out=out, kernel=kernel, stride=stride)


def _fc(name: str, out: int) -> LayerSpec:
    return LayerSpec(name=name, kind="fc", out=out)


#: Named trunk architectures (layers only; input size and activation are chosen per use).
TRUNK_SPECS: dict[str, tuple[LayerSpec, ...]] = {
    "minatar": (_conv("conv1", 16, 3), _fc("fc1", 128)),
    "minatar_deep": (_conv("conv1", 16, 3), _conv("conv2", 32, 3), _fc("fc1", 128)),
    "nature": (
        _conv("conv1", 32, 8, 4),
        _conv("conv2", 64, 4, 2),
        _conv("conv3", 64, 3, 1),
        _fc("fc1", 512),
    ),
    "image_deep": (
        _conv("conv1", 32, 3),
        _conv("conv2", 64, 4, 2),
        _conv("conv3", 64, 3),
        _conv("conv4", 128, 4, 2),
        _conv("conv5", 128, 3),
        _conv("conv6", 128, 4, 2),
        _fc("fc1", 128),
    ),
}


@dataclass(frozen=True)
class TrunkSpec:
    """A fully determined trunk: named architecture, input size and activation.

    Attributes:
        name: key of :data:`TRUNK_SPECS`.
        in_channels: channels of the trunk's input, after input alignment.
        height: input height in pixels.
        width: input width in pixels.
        activation: ``relu``, ``trec`` or ``tlin``.
        theta: threshold θ of ``trec``/``tlin``.
        layers: the layer list (filled from ``name``).
    """

    name: str
    in_channels: int
    height: int
    width: int
    activation: str = "relu"
    theta: float = 0.5
    layers: tuple[LayerSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.name not in TRUNK_SPECS:
            raise ConfigError(
                f"unknown trunk spec {self.name!r}; choose one of {', '.join(TRUNK_SPECS)}"
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.theta < 0:
            raise ConfigError(f"activation threshold theta must be >= 0, got {self.theta}")
        for what, v in (("in_channels", self.in_channels), ("height", self.height),
                        ("width", self.width)):
            if v <= 0:
                raise ConfigError(f"trunk {what} must be positive, got {v}")
        if not self.layers:
            object.__setattr__(self, "layers", TRUNK_SPECS[self.name])

    @property
    def bias(self) -> bool:
        """Whether layers carry a bias: not before a zero-bias activation (TRec, TLin)."""
        return self.activation == "relu"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        d["layers"] = [asdict(layer) for layer in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrunkSpec:
        """Rebuild a spec from :meth:`to_dict` output.

        Raises:
            ConfigError: for an unknown spec name or missing fields.
        """
        try:
            layers = tuple(LayerSpec(**layer) for layer in d.get("layers", ()))
            return cls(
                name=str(d["name"]),
                in_channels=int(d["in_channels"]),
                height=int(d["height"]),
                width=int(d["width"]),
                activation=str(d.get("activation", "relu")),
                theta=float(d.get("theta", 0.5)),
                layers=layers,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"invalid trunk description ({e}); expected keys name, "
                              "in_channels, height, width, activation, theta, layers") from e


def conv_output_hw(height: int, width: int, layer: LayerSpec) -> tuple[int, int]:
    """Spatial size after one conv layer (PyTorch's formula, dilation 1)."""
    h = (height + 2 * layer.padding - layer.kernel) // layer.stride + 1
    w = (width + 2 * layer.padding - layer.kernel) // layer.stride + 1
    return h, w


def _fits(name: str, height: int, width: int) -> bool:
    """Whether every conv layer of the named spec leaves a non-empty map of a ``height x width`` input."""
    for layer in TRUNK_SPECS[name]:
        if layer.kind == "conv":
            height, width = conv_output_hw(height, width, layer)
            if height <= 0 or width <= 0:
                return False
    return True


class Trunk(nn.Module):
    """Shared lower layers built from a :class:`TrunkSpec`.

    Input ``(batch, spec.in_channels, spec.height, spec.width)`` float; output
    ``(batch, features_dim)`` where ``features_dim`` is the last dense layer's width.
    The conv part (:meth:`conv_layers`) accepts any spatial size at least the receptive
    field, which the vision side uses for images of any size.

    Attributes:
        spec: the spec the trunk was built from.
        layers: one ``nn.Conv2d`` or ``nn.Linear`` per layer spec, in order.
        activations: one activation module per layer.
        layer_names: ``spec.layers`` names, in order.
        layer_shapes: output shape (without batch) of each layer for the spec's input size.
        header: the JSON header when loaded from a trunk file, else ``None``.

    Raises:
        ConfigError: if the input is too small for the conv stack.
    """

    def __init__(self, spec: TrunkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.header: dict[str, Any] | None = None
        self.layers = nn.ModuleList()
        self.activations = nn.ModuleList()
        self.layer_names: list[str] = []
        self.layer_shapes: list[tuple[int, ...]] = []
        channels, h, w = spec.in_channels, spec.height, spec.width
        flat: int | None = None
        for layer in spec.layers:
            if layer.kind == "conv":
                if flat is not None:
                    raise ConfigError(f"trunk {spec.name}: conv layer {layer.name} after a dense layer")
                self.layers.append(nn.Conv2d(channels, layer.out, layer.kernel, layer.stride,
                                             layer.padding, bias=spec.bias))
                h, w = conv_output_hw(h, w, layer)
                if h <= 0 or w <= 0:
                    fit = [n for n in TRUNK_SPECS if n != spec.name and _fits(n, spec.height, spec.width)]
                    fix = (f"; choose a spec that fits (trunk.spec: {' or '.join(fit)})" if fit
                           else "; no named spec fits an input this small")
                    raise ConfigError(
                        f"trunk {spec.name}: input {spec.height}x{spec.width} is too small for "
                        f"layer {layer.name} (kernel {layer.kernel}, stride {layer.stride}){fix}")
                channels = layer.out
                self.layer_shapes.append((channels, h, w))
            else:
                n_in = flat if flat is not None else channels * h * w
                self.layers.append(nn.Linear(n_in, layer.out, bias=spec.bias))
                flat = layer.out
                self.layer_shapes.append((layer.out,))
            self.activations.append(make_activation(spec.activation, spec.theta))
            self.layer_names.append(layer.name)
        if flat is None:
            raise ConfigError(f"trunk {spec.name} must end with a dense layer")
        self.features_dim: int = flat

    @property
    def conv_names(self) -> list[str]:
        """Names of the conv layers, in order."""
        return [n for n, s in zip(self.layer_names, self.spec.layers) if s.kind == "conv"]

    def forward_layers(self, x: torch.Tensor, upto: str | None = None) -> list[torch.Tensor]:
        """All post-activation layer outputs.

        Args:
            x: ``(batch, in_channels, height, width)`` float input (fewer channels count as
                zero-padded, as in :meth:`forward`).
            upto: stop after this layer name (inclusive); ``None`` runs all layers. Stopping at
                a conv layer lets images of any size through.

        Returns:
            One tensor per layer run: ``(batch, C, H, W)`` for conv layers, ``(batch, units)``
            for dense layers.

        Raises:
            KeyError: if ``upto`` is not a layer name.
        """
        if upto is not None and upto not in self.layer_names:
            raise KeyError(upto)
        outs: list[torch.Tensor] = []
        for i, (name, spec, act) in enumerate(zip(self.layer_names, self.spec.layers, self.activations)):
            if spec.kind == "fc" and x.dim() > 2:
                x = x.flatten(1)
            x = act(self.apply_layer(i, x))
            outs.append(x)
            if name == upto:
                break
        return outs

    def apply_layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``i`` (no activation). The first conv layer reads input with fewer channels than
        the spec as zero-padded to it — by using only the weights of the channels present, which
        gives the same result as padding at a fraction of the cost."""
        layer = self.layers[i]
        if i == 0 and isinstance(layer, nn.Conv2d) and x.shape[1] < layer.in_channels:
            return nn.functional.conv2d(x, layer.weight[:, : x.shape[1]], layer.bias, layer.stride,
                                        layer.padding)
        out: torch.Tensor = layer(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(batch, features_dim)`` of ``(batch, C, H, W)`` input.

        ``C`` may be smaller than ``spec.in_channels``: the missing trailing channels count as
        zeros (the ``pad`` input alignment, without materialising the zeros).
        """
        for i, (spec, act) in enumerate(zip(self.spec.layers, self.activations)):
            if spec.kind == "fc" and x.dim() > 2:
                x = x.flatten(1)
            x = act(self.apply_layer(i, x))
        return x

    def n_parameters(self) -> int:
        """Number of scalar parameters."""
        return sum(p.numel() for p in self.parameters())


def spec_after(align: InputAlignment, trunk: Mapping[str, Any] | None = None) -> TrunkSpec:
    """The trunk spec that reads what ``align`` outputs: its input channels and size are the
    alignment's output ``(out_channels, height, width)``.

    Args:
        align: the input alignment in front of the trunk.
        trunk: ``{"name", "activation", "theta", "width"}`` (defaults: the ``minatar`` spec, ``relu``,
            θ = 0.5, width 1). ``width`` multiplies every layer's output channels or units (each
            rounded, at least 1): the one knob that sizes a network (``capacity`` stage).

    Raises:
        ConfigError: an unknown spec name or activation (from :class:`TrunkSpec`).
    """
    trunk = dict(trunk or {})
    name = str(trunk.get("name", "minatar"))
    scale = float(trunk.get("width", 1.0))
    if not scale > 0:
        raise ConfigError(f"trunk width must be > 0, got {scale}")
    layers = (tuple(replace(layer, out=max(1, round(layer.out * scale))) for layer in TRUNK_SPECS[name])
              if scale != 1.0 and name in TRUNK_SPECS else ())
    return TrunkSpec(name=name, in_channels=align.out_channels, height=align.height, width=align.width,
                     activation=str(trunk.get("activation", "relu")),
                     theta=float(trunk.get("theta", 0.5)), layers=layers)


def trunk_for_space(observation_space: gym.Space, trunk: Mapping[str, Any] | None = None,
                    alignment: Mapping[str, Any] | None = None, *,
                    user: str = "a trunk") -> tuple[InputAlignment, TrunkSpec]:
    """The input alignment and trunk spec for one task's observation space: the one place an
    observation space becomes a trunk (SB3 extractors, progressive columns).

    Args:
        observation_space: the single-env observation space, ``(H, W, C)`` or ``(C, H, W)``.
        trunk: ``{"name", "activation", "theta"}`` (see :func:`spec_after`).
        alignment: :class:`~policyshare.alignment.InputAlignment` kwargs.
        user: what needs the image observations, for the message.

    Raises:
        ConfigError: non-image observations, or an alignment that cannot map them.
    """
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 3:
        raise ConfigError(f"{user} needs image observations of rank 3, got {observation_space}")
    align = InputAlignment(tuple(observation_space.shape), **dict(alignment or {}))
    return align, spec_after(align, trunk)


class TrunkExtractor(BaseFeaturesExtractor):
    """A trunk as a stable-baselines3 features extractor (PPO, A2C, DQN).

    Observations arrive as SB3 preprocesses them: floats, uint8 images already divided by
    255 (Atari, channels first after ``VecTransposeImage``), boolean MinAtar grids cast to
    0/1 (channels last, ``(batch, 10, 10, C)``). The :class:`~policyshare.alignment.InputAlignment`
    puts them in ``(batch, trunk_channels, H, W)`` layout (pad or stem), then the trunk gives
    ``(batch, features_dim)``.

    All constructor arguments are plain data, so SB3 can save them and ``PPO.load`` can rebuild
    the extractor once policyshare is installed.

    Args:
        observation_space: the task's (single-env) observation space.
        trunk: ``{"name", "activation", "theta"}`` of the trunk spec.
        alignment: ``{"mode": "pad"|"stem"|"none", "channels_last": bool,
            "channels": trunk input channels}`` (see :class:`InputAlignment`).

    Raises:
        ConfigError: if the observation space is not an image-like ``Box`` or the alignment
            cannot map it.
    """

    def __init__(self, observation_space: gym.Space, trunk: Mapping[str, Any] | None = None,
                 alignment: Mapping[str, Any] | None = None) -> None:
        align, spec = trunk_for_space(observation_space, trunk, alignment)
        net = Trunk(spec)
        super().__init__(observation_space, features_dim=net.features_dim)
        self.alignment = align
        self.trunk = net

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if self.alignment.mode == "pad":  # the trunk reads the missing channels as zeros
            return self.trunk(self.alignment.layout(observations))
        return self.trunk(self.alignment(observations))
