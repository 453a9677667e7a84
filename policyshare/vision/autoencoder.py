"""Generative pretraining of a trunk: a denoising autoencoder (the "other way around").

The trunk is the encoder; a linear decoder with a sigmoid maps its features back to the
image at the trunk's input size. Training corrupts each image with additive Gaussian noise
(standard deviation ``noise``, pixel units of [0, 1] images) and reconstructs the clean image
(Vincent et al. 2008, "Extracting and composing robust features with denoising autoencoders").
With ``activation: trec`` or ``tlin`` the trunk's layers have no bias and use the thresholded
units of Konda, Memisevic & Krueger 2015 ("Zero-bias autoencoders and the benefits of
co-adapting features"); the decoder keeps its bias.

Loss: squared error averaged over every pixel of every image in the minibatch
(``mean((x̂ − x)²)`` over ``n·C·H·W`` elements).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from policyshare.errors import NumericalError
from policyshare.trunks import Trunk
from policyshare.vision.config import PretrainConfig, VisionTrunkConfig
from policyshare.vision.data import ImageSet
from policyshare.vision.inputs import ImageInput, fit_spatial
from policyshare.vision.tb import ScalarLog, no_log


class DenoisingAutoencoder(nn.Module):
    """Encoder = :class:`ImageInput` + trunk; decoder = linear + sigmoid.

    Input ``(n, C, h, w)`` in [0, 1]; output the reconstruction ``(n, C, H, W)`` in (0, 1) at
    the trunk's input size ``H x W``.

    Args:
        trunk: the encoder trunk (trained in place).
        image_input: maps images into the trunk's layout.
        image_channels: channels C of the images.
    """

    def __init__(self, trunk: Trunk, image_input: ImageInput, image_channels: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.input = image_input
        self.shape = (image_channels, trunk.spec.height, trunk.spec.width)
        self.decoder = nn.Linear(trunk.features_dim, image_channels * trunk.spec.height * trunk.spec.width)

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """The clean images at the trunk's size ``(n, C, H, W)`` (what the decoder reconstructs)."""
        return fit_spatial(images, self.shape[1], self.shape[2], self.input.fit)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = self.trunk(self.input(images))
        return torch.sigmoid(self.decoder(z)).view(-1, *self.shape)


def train_autoencoder(trunk: Trunk, train: ImageSet, trunk_cfg: VisionTrunkConfig, cfg: PretrainConfig,
                      seed: int = 0, log: ScalarLog = no_log) -> tuple[Trunk, list[float]]:
    """Train a copy of ``trunk`` as a denoising autoencoder's encoder.

    Args:
        trunk: the starting trunk (copied; left unchanged).
        train: training images.
        trunk_cfg: alignment and spatial fit.
        cfg: epochs, noise level, learning rate and batch size.
        seed: seed of the decoder's initialisation, minibatch order and corruption noise.
        log: receives ``autoencoder/loss`` (mean squared error) per epoch.

    Returns:
        The trained trunk (eval mode) and the per-epoch mean training loss.

    Raises:
        NumericalError: a non-finite loss.
    """
    net = copy.deepcopy(trunk).train()
    net.requires_grad_(True)
    image_input = ImageInput(train.channels, net.spec, trunk_cfg.alignment, trunk_cfg.fit, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DenoisingAutoencoder(net, image_input, train.channels)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    for epoch in range(cfg.autoencoder_epochs):
        order = torch.randperm(len(train), generator=gen)
        total = 0.0
        for i in range(0, len(train), cfg.batch_size):
            x = train.images[order[i:i + cfg.batch_size]]
            noisy = x + cfg.noise * torch.randn(x.shape, generator=gen)
            loss = nn.functional.mse_loss(model(noisy), model.target(x), reduction="mean")
            if not torch.isfinite(loss):
                raise NumericalError(f"autoencoder training: the loss became {float(loss.detach())} in epoch {epoch}; "
                                     "lower pretrain.lr")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
        losses.append(total / len(train))
        log("autoencoder/loss", losses[-1], epoch)
    return net.eval(), losses
