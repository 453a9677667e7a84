"""Classifier guidance with a trunk: a noisy-image classifier built on the (frozen) trunk.

The guiding classifier ``p_φ(y | x_t, t)`` (Dhariwal & Nichol 2021, Sec. 4) reads a noisy
image ``x_t`` in [-1, 1], maps it to [0, 1] as ``(x_t + 1)/2``, feeds it through
:class:`~policyshare.vision.inputs.ImageInput` and the trunk (frozen: its weights never change,
so the guide is *the trunk's* features), standardises the features at the chosen layer, appends
a sinusoidal embedding of ``t`` and classifies with a one-hidden-layer head. The head is trained
on the training split with ``t`` uniform over the diffusion steps; loss: cross-entropy averaged
over the minibatch. Gradients of ``log p_φ(y | x_t, t)`` flow back through the trunk to the
pixels and steer :meth:`~policyshare.vision.diffusion.DDPM.sample`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from policyshare.errors import NumericalError
from policyshare.trunks import Trunk
from policyshare.vision.config import GuidanceConfig, VisionTrunkConfig
from policyshare.vision.data import ImageSet
from policyshare.vision.diffusion import DDPM, Guide, NoiseSchedule, timestep_embedding
from policyshare.vision.inputs import ImageInput, freeze
from policyshare.vision.probe import check_layer
from policyshare.vision.tb import ScalarLog, no_log

TIME_DIM = 32


class NoisyClassifier(nn.Module):
    """``p_φ(y | x_t, t)`` on a frozen trunk: logits ``(n, n_classes)`` of ``x_t`` ``(n, C, H, W)`` in [-1, 1].

    Args:
        trunk: the guiding trunk (frozen in place).
        image_input: maps [0, 1] images into the trunk's layout (frozen).
        n_classes: number of classes.
        timesteps: T of the diffusion schedule.
        hidden: hidden width of the head.
        layer: trunk layer read (``None``: the last).

    Raises:
        UserError: unknown layer.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, trunk: Trunk, image_input: ImageInput, n_classes: int, timesteps: int, hidden: int = 256,
                 layer: str | None = None) -> None:
        super().__init__()
        self.trunk = freeze(trunk)
        self.input = image_input.requires_grad_(False)
        self.layer = check_layer(trunk, layer)
        self.timesteps = timesteps
        dim = 1
        for s in trunk.layer_shapes[trunk.layer_names.index(self.layer)]:
            dim *= s
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.head = nn.Sequential(nn.Linear(dim + TIME_DIM, hidden), nn.SiLU(), nn.Linear(hidden, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Raw trunk features ``(n, dim)`` of ``x_t`` in [-1, 1]."""
        return self.trunk.forward_layers(self.input((x + 1) / 2), upto=self.layer)[-1].flatten(1)

    def forward(self, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        z = (self.features(x) - self.mean) / self.std
        return self.head(torch.cat([z, timestep_embedding(i, self.timesteps, TIME_DIM)], dim=1))

    def guide(self, labels: torch.Tensor) -> Guide:
        """The guide ``∇_{x_t} Σ_n log p_φ(y_n | x_t,n, t)`` for target ``labels`` ``(n,)``.

        Summing over the batch gives each sample its own gradient, as samples are independent.
        """

        def grad(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                logp = torch.log_softmax(self(xg, i), dim=1)
                selected = logp.gather(1, labels.view(-1, 1)).sum()
                (g,) = torch.autograd.grad(selected, xg)
            return g

        return grad


def train_noisy_classifier(trunk: Trunk, train: ImageSet, schedule: NoiseSchedule, trunk_cfg: VisionTrunkConfig,
                           cfg: GuidanceConfig, layer: str | None = None, seed: int = 0,
                           log: ScalarLog = no_log) -> NoisyClassifier:
    """Train the head of a :class:`NoisyClassifier` on noised training images (trunk frozen).

    Features are standardised with the mean and standard deviation over one noised pass of the
    training split. Adam on the minibatch-mean cross-entropy, ``t`` uniform in ``0 … T−1``.

    Args:
        trunk: the guiding trunk (frozen in place).
        train: training images ``(n, C, H, W)`` in [0, 1].
        schedule: the prior's noise schedule.
        trunk_cfg: alignment and spatial fit.
        cfg: head width, updates, batch size, learning rate.
        layer: trunk layer read (``None``: the last).
        seed: initialisation, minibatch and noise seed.
        log: receives ``loss`` (mean cross-entropy) every 100 updates.

    Raises:
        UserError: unknown layer or channels that cannot be aligned.
        NumericalError: a non-finite loss.
    """
    gen = torch.Generator().manual_seed(seed)
    image_input = ImageInput(train.channels, trunk.spec, trunk_cfg.alignment, trunk_cfg.fit, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = NoisyClassifier(trunk, image_input, len(train.classes), schedule.timesteps, cfg.head_hidden, layer)
    data = train.images * 2 - 1
    with torch.no_grad():
        i = torch.randint(0, schedule.timesteps, (len(data),), generator=gen)
        feats = model.features(schedule.q_sample(data, i, torch.randn(data.shape, generator=gen)))
        model.mean.copy_(feats.mean(0))
        model.std.copy_(feats.std(0).clamp_min(1e-6))
    opt = torch.optim.Adam(model.head.parameters(), lr=cfg.lr)
    ce = nn.CrossEntropyLoss(reduction="mean")
    running = 0.0
    for step in range(cfg.train_steps):
        idx = torch.randint(0, len(data), (cfg.batch_size,), generator=gen)
        i = torch.randint(0, schedule.timesteps, (cfg.batch_size,), generator=gen)
        xt = schedule.q_sample(data[idx], i, torch.randn(data[idx].shape, generator=gen))
        loss = ce(model(xt, i), train.labels[idx])
        value = float(loss.detach())
        if not torch.isfinite(loss):
            raise NumericalError(f"guiding classifier: the loss became {value} at update {step}; lower guidance.lr")
        opt.zero_grad()
        loss.backward()
        opt.step()
        running += value
        if (step + 1) % 100 == 0:
            log("loss", running / 100, step + 1)
            running = 0.0
    return model.eval()


@torch.no_grad()
def clean_accuracy(model: NoisyClassifier, data: ImageSet) -> float:
    """Accuracy of the guiding classifier on clean images (``t`` index 0), for reference."""
    i = torch.zeros(len(data), dtype=torch.long)
    return float((model(data.images * 2 - 1, i).argmax(1) == data.labels).float().mean())


@dataclass
class Samples:
    """Class-conditional samples.

    Attributes:
        images: ``(n, C, H, W)`` in [0, 1], ordered class by class.
        labels: ``(n,)`` target classes.
        scale: the guidance scale used.
    """

    images: torch.Tensor
    labels: torch.Tensor
    scale: float


def generate(prior: DDPM, classifier: NoisyClassifier | None, n_classes: int, per_class: int, scale: float,
             seed: int = 0, batch_size: int = 500) -> Samples:
    """``per_class`` samples of every class, guided by ``classifier`` at ``scale`` (0 or no classifier: unguided).

    Raises:
        NumericalError: non-finite samples (scale far too large).
    """
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, len(labels), batch_size):
        y = labels[start:start + batch_size]
        guide = classifier.guide(y) if classifier is not None and scale > 0 else None
        out.append(prior.sample(len(y), gen, guide, scale))
    return Samples(torch.cat(out), labels, scale)
