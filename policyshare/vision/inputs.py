"""How images enter a trunk, and how trunks are named on the command line.

**Channels.** A trunk reads ``spec.in_channels`` channels (10 for a MinAtar trunk, whose
games are zero-padded to the suite's maximum). An image's 1 (gray) or 3 (RGB) channels go
through the trunk's own :class:`~policyshare.alignment.InputAlignment`: ``pad`` puts them in
the first channels and zero-fills the rest — exactly how a MinAtar game with fewer channels is
fed — and ``stem`` maps them with a 1x1 convolution (seeded; trained when fine-tuning or
pretraining, fixed for linear probes, guidance and textures).

**Space.** Conv layers accept any height and width, so textures pass at their own size
(``fit="none"``). A dense layer needs the trunk's ``height x width``: ``pad`` centres the image
in a zero border, ``resize`` resamples it bilinearly (antialiased when shrinking) and ``auto``
pads when the target is at most twice the image's size (digits 8x8 → MinAtar 10x10: a
one-pixel border, pixels kept 1:1 as in the games' 10x10 grids) and resizes otherwise
(digits → Nature 84x84).

**Trunk references** (:func:`load_trunk_ref`): ``random`` (the configured spec, seeded),
``random:SPEC`` (another spec at its native input size), or a trunk file written by
``policyshare train`` / ``policyshare vision pretrain``. ``classify`` and ``autoencoder`` are
resolved by :func:`policyshare.vision.pretrain.resolve_trunk`, which trains them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from policyshare.alignment import InputAlignment
from policyshare.checkpoints import load_trunk
from policyshare.errors import CheckpointError, UserError
from policyshare.io import slug
from policyshare.trunks import TRUNK_SPECS, Trunk, TrunkSpec
from policyshare.vision.config import VisionTrunkConfig

Fit = Literal["auto", "pad", "resize", "none"]

#: Native input size (pixels, square) of each named spec, used by ``random:SPEC``.
NATIVE_SIZE: dict[str, int] = {"minatar": 10, "minatar_deep": 10, "nature": 84}

#: Trunk references that are trained on the digits rather than loaded.
PRETRAINED_REFS: tuple[str, ...] = ("classify", "autoencoder")


def fit_spatial(images: torch.Tensor, height: int, width: int, mode: Fit = "auto") -> torch.Tensor:
    """Bring ``(n, C, h, w)`` images to ``(n, C, height, width)``.

    Args:
        images: float images.
        height: target height (pixels).
        width: target width (pixels).
        mode: ``pad`` (centred zero border), ``resize`` (bilinear), ``auto`` (pad when
            ``h <= height <= 2h`` and ``w <= width <= 2w``, else resize) or ``none`` (unchanged).

    Raises:
        UserError: ``pad`` with images larger than the target.
    """
    h, w = int(images.shape[-2]), int(images.shape[-1])
    if mode == "none" or (h, w) == (height, width):
        return images
    if mode == "auto":
        mode = "pad" if h <= height <= 2 * h and w <= width <= 2 * w else "resize"
    if mode == "pad":
        if h > height or w > width:
            raise UserError(f"images of {h}x{w} do not fit the trunk's {height}x{width} input by padding; "
                            "set trunk.fit: resize")
        top, left = (height - h) // 2, (width - w) // 2
        return nn.functional.pad(images, (left, width - w - left, top, height - h - top))
    shrink = h > height or w > width
    return nn.functional.interpolate(images, size=(height, width), mode="bilinear", align_corners=False,
                                     antialias=shrink)


class ImageInput(nn.Module):
    """Images ``(n, image_channels, h, w)`` in [0, 1] → trunk input ``(n, spec.in_channels, H, W)``.

    ``H x W`` is the trunk's ``spec.height x spec.width`` unless ``fit`` is ``none`` (conv-only
    use, any size).

    Args:
        image_channels: 1 (gray) or 3 (RGB), or any count.
        spec: the trunk's spec.
        alignment: ``pad`` or ``stem`` (see the module docstring).
        fit: see :func:`fit_spatial`.
        seed: seed of the ``stem`` convolution's initial weights.

    Raises:
        UserError: ``pad`` with more image channels than the trunk reads.
    """

    def __init__(self, image_channels: int, spec: TrunkSpec, alignment: str = "pad", fit: Fit = "auto",
                 seed: int = 0) -> None:
        super().__init__()
        if alignment == "pad" and image_channels > spec.in_channels:
            raise UserError(f"images have {image_channels} channels but the trunk reads {spec.in_channels}; "
                            "set trunk.alignment: stem or data.grayscale: true")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.align = InputAlignment((image_channels, spec.height, spec.width), mode=alignment,
                                        channels_last=False, channels=spec.in_channels)
        self.height = spec.height
        self.width = spec.width
        self.fit: Fit = fit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.align(fit_spatial(images, self.height, self.width, self.fit))


def freeze(trunk: Trunk) -> Trunk:
    """Switch off gradients of every trunk parameter and set eval mode; returns the same trunk."""
    trunk.requires_grad_(False)
    return trunk.eval()


def random_trunk(cfg: VisionTrunkConfig, seed: int, spec_name: str | None = None) -> Trunk:
    """A freshly initialised trunk (PyTorch's default init) under a fixed seed.

    Args:
        cfg: the configured spec, channels, size and activation.
        seed: initialisation seed (the global RNG is left untouched).
        spec_name: another spec, at its native input size (:data:`NATIVE_SIZE`); ``None`` uses ``cfg``.

    Raises:
        ConfigError: unknown spec.
    """
    name = spec_name or cfg.spec
    if spec_name is None:
        height, width = cfg.height, cfg.width
    elif spec_name in NATIVE_SIZE:
        height = width = NATIVE_SIZE[spec_name]
    else:
        raise UserError(f"unknown trunk spec {name!r}; choose one of {', '.join(NATIVE_SIZE)}")
    spec = TrunkSpec(name=name, in_channels=cfg.in_channels, height=height, width=width,
                     activation=cfg.activation, theta=cfg.theta)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        trunk = Trunk(spec)
    trunk.header = {"source": {"kind": "random", "seed": seed}, "spec": spec.to_dict()}
    return trunk.eval()


def load_trunk_ref(ref: str, cfg: VisionTrunkConfig, seed: int) -> Trunk:
    """A trunk by reference: ``random``, ``random:SPEC`` or a trunk file.

    Raises:
        UserError: unknown reference (no such file).
        CheckpointError: a trunk file that is corrupt, not a trunk file, or of an unknown spec.
    """
    if ref == "random":
        return random_trunk(cfg, seed)
    if ref.startswith("random:"):
        name = ref.split(":", 1)[1]
        if name not in TRUNK_SPECS:
            raise UserError(f"unknown trunk spec {name!r} in {ref!r}; choose one of "
                            f"{', '.join('random:' + s for s in TRUNK_SPECS)}")
        return random_trunk(cfg, seed, name)
    if not Path(ref).exists():
        raise UserError(f"trunk {ref!r} not found; pass random, random:SPEC, "
                        f"{', '.join(PRETRAINED_REFS)} or a trunk file (.safetensors)")
    if Path(ref).is_dir():
        candidate = Path(ref) / "trunk.safetensors"
        if not candidate.is_file():
            raise CheckpointError(f"{ref} is a folder without trunk.safetensors; pass the trunk file")
        ref = str(candidate)
    return load_trunk(ref)


def trunk_label(ref: str) -> str:
    """A short, file-name-safe label for a trunk reference (a file's run folder name or stem)."""
    if ref == "random" or ref.startswith("random:") or ref in PRETRAINED_REFS:
        return slug(ref.replace(":", "-"))
    p = Path(ref)
    if p.is_dir():
        return slug(p.name)
    return slug(p.parent.name if p.stem == "trunk" and p.parent.name else p.stem)


def unique_labels(refs: list[str]) -> list[str]:
    """:func:`trunk_label` of each reference, suffixed ``-2``, ``-3`` … where labels repeat."""
    out: list[str] = []
    for ref in refs:
        base = trunk_label(ref)
        label, k = base, 2
        while label in out:
            label, k = f"{base}-{k}", k + 1
        out.append(label)
    return out
