"""Style transfer: a content photo repainted with a style image's Gramians (Gatys, Ecker & Bethge 2016).

Gatys et al. 2016 ("Image style transfer using convolutional neural networks", CVPR, Eq. 1-7)
synthesise an image ``x`` whose deep features match a content photo ``c`` and whose Gramians
match a style image ``s``. Berger & Memisevic 2016 (arXiv 1606.01286) add shifted Gramians to the
style term, which keeps long-range structure, and show it on season and daytime transfer (a
summer photo painted with a winter one, day with night). Here, on a frozen trunk:

    L(x) = α · e_c(x) + β · L_style(x)

* content ``e_c(x) = mean (F_l(x) − F_l(c))² / mean F_l(c)²`` — the relative squared error of the
  deeper layer ``l``'s feature map (``content_layer``), averaged over its ``C·H·W`` entries;
* style ``L_style`` — :class:`~policyshare.vision.texture.TextureLoss` with the style image as
  its source: Gram terms on every style layer plus shifted-Gram terms (relative, ``hw``).

``x`` has the content photo's size; the style image may have another size (Gramians are
``hw``-normalised). Content and style must have the same number of channels. Synthesis starts
from noise (as Gatys et al. 2016) or from the content photo, with L-BFGS-B or Adam (pixels stay
in [0, 1]; :func:`~policyshare.vision.texture.synthesize`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from policyshare.errors import UserError
from policyshare.trunks import Trunk
from policyshare.vision.inputs import ImageInput
from policyshare.vision.tb import ScalarLog, no_log
from policyshare.vision.texture import SynthesisResult, TextureLoss, check_conv_layers, feature_hw, synthesize


def check_same_channels(content: torch.Tensor, style: torch.Tensor, content_name: str = "content",
                        style_name: str = "style") -> None:
    """Refuse a content and a style image of different channel counts.

    Raises:
        UserError: naming both counts and the fix.
    """
    c, s = int(content.shape[1]), int(style.shape[1])
    if c != s:
        kind = {1: "grayscale", 3: "RGB"}
        raise UserError(f"the content image {content_name} has {c} channel(s) ({kind.get(c, 'other')}) but the style "
                        f"image {style_name} has {s} ({kind.get(s, 'other')}); pass two RGB or two grayscale images, "
                        "or --grayscale to convert both")


class StyleTransferLoss(nn.Module):
    """``α · e_c(x) + β · L_style(x)`` on a frozen trunk (see the module docstring).

    Args:
        trunk: the trunk (frozen in place).
        content: the content photo ``(1, C, H, W)`` in [0, 1]; the result has its size.
        style: the style image ``(1, C, H', W')`` in [0, 1].
        content_layer: the conv layer whose features the content term matches.
        style_layers: conv layers of the style term (``None``: all).
        shifts: shifted-Gram shifts of the style term (every layer, or per layer).
        shift_weight: weight of the shifted-Gram terms within the style term.
        content_weight: ``α``.
        style_weight: ``β``.
        alignment: ``pad`` or ``stem``.
        seed: seed of a ``stem``.

    Raises:
        UserError: images of different channel counts; an unknown or dense layer; a shift not
            smaller than a style layer's map on the content's or the style's size.
        TextureFailure: all-zero features on the style image.
    """

    def __init__(self, trunk: Trunk, content: torch.Tensor, style: torch.Tensor, content_layer: str,
                 style_layers: Sequence[str] | None = None,
                 shifts: Mapping[str, Sequence[int]] | Sequence[int] = (), shift_weight: float = 1.0,
                 content_weight: float = 1.0, style_weight: float = 1.0, alignment: str = "pad",
                 seed: int = 0) -> None:
        super().__init__()
        check_same_channels(content, style)
        (self.content_layer,) = check_conv_layers(trunk, [content_layer])
        self.style = TextureLoss(trunk, style, style_layers, None, shifts, shift_weight, "hw", True, alignment, seed)
        h, w = int(content.shape[-2]), int(content.shape[-1])
        for layer in self.style.layers:
            fh, fw = feature_hw(trunk, layer, h, w)
            too_big = [s for s in self.style.shifts[layer] if s >= min(fh, fw)]
            if too_big:
                raise UserError(f"shift {too_big[0]} is not smaller than layer {layer}'s {fh}x{fw} feature map on the "
                                f"{h}x{w} content image; use shifts below {min(fh, fw)} or a larger --size")
        feature_hw(trunk, self.content_layer, h, w)
        self.trunk = self.style.trunk
        self.input: ImageInput = self.style.input
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        with torch.no_grad():
            self.target = self._features(content)
        self.scale = max(float(self.target.pow(2).mean()), 1e-30)

    def _features(self, image: torch.Tensor) -> torch.Tensor:
        outs = self.trunk.forward_layers(self.input(image), upto=self.content_layer)
        return outs[-1]

    def parts(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"content": e_c(x), "style": L_style(x)}`` for ``image`` ``(1, C, H, W)`` (weights not applied)."""
        content = (self._features(image) - self.target).pow(2).mean() / self.scale
        return {"content": content, "style": self.style(image)}

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The weighted loss ``L(x)`` (a scalar)."""
        p = self.parts(image)
        return self.content_weight * p["content"] + self.style_weight * p["style"]


@dataclass
class TransferResult:
    """A style transfer.

    Attributes:
        synthesis: the optimisation's result (image ``(1, C, H, W)``, loss curve, iterations).
        initial: ``{"content", "style"}`` terms of the starting image.
        final: the same for the result.
    """

    synthesis: SynthesisResult
    initial: dict[str, float]
    final: dict[str, float]


def style_transfer(loss: StyleTransferLoss, content: torch.Tensor, *, init: Literal["noise", "content"] = "noise",
                   optimizer: Literal["lbfgs", "adam"] = "lbfgs", steps: int = 150, lr: float = 0.05,
                   patience: int = 20, min_improvement: float = 0.01, seed: int = 0,
                   log: ScalarLog = no_log) -> TransferResult:
    """Optimise an image of the content's size under ``loss`` (Gatys et al. 2016, Sec. 2).

    Args:
        loss: the combined loss.
        content: the content photo ``(1, C, H, W)`` (the start when ``init`` is ``content``).
        init: ``noise`` (uniform in [0.25, 0.75], seeded) or ``content``.
        optimizer: ``lbfgs`` or ``adam``.
        steps: iterations.
        lr: Adam's learning rate.
        patience: see :func:`~policyshare.vision.texture.synthesize`.
        min_improvement: see :func:`~policyshare.vision.texture.synthesize`.
        seed: noise seed.
        log: receives the total loss per iteration.

    Returns:
        The result with its content and style terms before and after.

    Raises:
        UserError: unknown ``init`` or optimizer.
        TextureFailure: NaN, or a loss that does not fall.
    """
    if init not in ("noise", "content"):
        raise UserError(f"unknown start {init!r}; choose noise or content")
    start = content if init == "content" else None
    gen = torch.Generator().manual_seed(seed)
    x0 = start if start is not None else 0.25 + 0.5 * torch.rand(tuple(content.shape), generator=gen)
    with torch.no_grad():
        initial = {k: float(v) for k, v in loss.parts(x0).items()}
    res = synthesize(loss, tuple(content.shape), optimizer=optimizer, steps=steps, lr=lr, patience=patience,
                     min_improvement=min_improvement, seed=seed, log=log, init=x0)
    with torch.no_grad():
        final = {k: float(v) for k, v in loss.parts(res.image).items()}
    return TransferResult(res, initial, final)
