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

**Centring.** Image specs (:data:`IMAGE_SPECS`, e.g. ``image_deep``) read images centred on
0.5 (``x − 0.5``, :func:`input_center`), so a conv layer's response carries the image's
structure rather than its mean brightness; the RL specs read ``[0, 1]`` unchanged, as their games'
0/1 grids. A random trunk of an image spec is He-normal with zero biases (variance-preserving,
so every layer's Gramian carries structure); the RL specs keep PyTorch's default init.

**Trunk references** (:func:`load_trunk_ref`): ``random`` (the configured spec, seeded),
``random:SPEC`` (another spec at its native input size), ``zoo:ENV_ID`` (the trunk of the zoo's
expert for that game, training seed 0, :mod:`policyshare.zoo`; ``zoo:ENV_ID@s<seed>`` for another
seed), or a trunk file written by
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
NATIVE_SIZE: dict[str, int] = {"minatar": 10, "minatar_deep": 10, "nature": 84, "image_deep": 64}

#: Specs made for images (not RL games): centred input and He-normal random init.
IMAGE_SPECS: tuple[str, ...] = ("image_deep",)

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
        center: subtracted from every pixel first (0.5 for image specs, see :func:`input_center`).

    Raises:
        UserError: ``pad`` with more image channels than the trunk reads.
    """

    def __init__(self, image_channels: int, spec: TrunkSpec, alignment: str = "pad", fit: Fit = "auto",
                 seed: int = 0, center: float = 0.0) -> None:
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
        self.center = float(center)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = fit_spatial(images, self.height, self.width, self.fit)
        return self.align(x - self.center if self.center else x)


def input_center(trunk: Trunk) -> float:
    """The value subtracted from image pixels before ``trunk``: 0.5 for :data:`IMAGE_SPECS`, else 0."""
    return 0.5 if trunk.spec.name in IMAGE_SPECS else 0.0


def he_init(trunk: Trunk) -> Trunk:
    """He-normal weights (std ``sqrt(2 / fan_in)``, He et al. 2015) and zero biases, in place.

    ReLU layers then keep the variance of their input, so deep random layers neither vanish nor
    let biases dominate their Gramians. Uses the global torch RNG (seed it first).
    """
    with torch.no_grad():
        for layer in trunk.layers:
            assert isinstance(layer, (nn.Conv2d, nn.Linear))
            fan_in = layer.weight[0].numel()
            layer.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            if layer.bias is not None:
                layer.bias.zero_()
    return trunk


def freeze(trunk: Trunk) -> Trunk:
    """Switch off gradients of every trunk parameter and set eval mode; returns the same trunk."""
    trunk.requires_grad_(False)
    return trunk.eval()


def random_trunk(cfg: VisionTrunkConfig, seed: int, spec_name: str | None = None) -> Trunk:
    """A freshly initialised trunk under a fixed seed.

    PyTorch's default init for the RL specs; He-normal weights and zero biases for
    :data:`IMAGE_SPECS` (:func:`he_init`).

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
        if name in IMAGE_SPECS:
            he_init(trunk)
    trunk.header = {"source": {"kind": "random", "seed": seed}, "spec": spec.to_dict()}
    return trunk.eval()


def load_trunk_ref(ref: str, cfg: VisionTrunkConfig, seed: int) -> Trunk:
    """A trunk by reference: ``random``, ``random:SPEC``, ``zoo:ENV_ID[@s<seed>]`` or a trunk file.

    Raises:
        UserError: unknown reference (no such file; a zoo expert the zoo lacks, naming what it has).
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
    if ref.startswith("zoo:"):
        return zoo_trunk(ref.split(":", 1)[1])
    if not Path(ref).exists():
        raise UserError(f"trunk {ref!r} not found; pass random, random:SPEC, zoo:ENV_ID[@sSEED], "
                        f"{', '.join(PRETRAINED_REFS)} or a trunk file (.safetensors)")
    if Path(ref).is_dir():
        candidate = Path(ref) / "trunk.safetensors"
        if not candidate.is_file():
            raise CheckpointError(f"{ref} is a folder without trunk.safetensors; pass the trunk file")
        ref = str(candidate)
    return load_trunk(ref)


def zoo_trunk(ref: str) -> Trunk:
    """The trunk of a zoo expert, as the experiment's vision stage extracts it: the SB3 policy's
    features extractor's trunk.

    Args:
        ref: ``ENV_ID`` (the expert of training seed 0, e.g. ``MinAtar/Breakout-v1``) or
            ``ENV_ID@s<seed>`` (``MinAtar/Breakout-v1@s1``).

    Raises:
        UserError: a malformed reference; the zoo has no expert for that env (naming the ones it
            has) or none with that seed (naming the seeds it has).
    """
    from policyshare import zoo
    from policyshare.sb3_files import load_sb3

    env_id, seed = zoo.parse_ref(ref)
    expert = zoo.find_expert(env_id, seed)
    model, header = load_sb3(expert.path)
    trunk: Trunk = model.policy.features_extractor.trunk
    trunk.header = {"spec": trunk.spec.to_dict(),
                    "source": {"kind": "zoo", "env_id": env_id, "seed": expert.seed, "algo": header.get("algo"),
                               "copied_from": str(expert.path)}}
    return trunk.eval()


def trunk_label(ref: str) -> str:
    """A short, file-name-safe label for a trunk reference (a file's run folder name or stem)."""
    if ref == "random" or ref.startswith("random:") or ref in PRETRAINED_REFS:
        return slug(ref.replace(":", "-"))
    if ref.startswith("zoo:"):
        # zoo:ENV and zoo:ENV@s0 name the same expert: one label; other seeds add theirs.
        base, _, seed = ref.partition("@s")
        label = "expert-" + slug(base.split("/")[-1].split("-")[0].lower())
        return label if seed in ("", "0") else f"{label}-s{slug(seed)}"
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
