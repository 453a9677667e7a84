"""Classifier heads on a trunk: linear probe, fine-tuning, and classification pretraining.

* **Linear probe** (trunk frozen): the trunk's features at one layer, flattened and
  standardised with the training split's mean and standard deviation, feed a linear layer fit
  by full-batch L-BFGS on ``mean cross-entropy + λ/2 · ||W||²`` (multinomial logistic
  regression, as in the linear evaluations of representation-learning papers).
* **Fine-tuning**: the same classifier with the trunk's weights trained too, by Adam on the
  minibatch-mean cross-entropy; the trunk passed in is copied, never changed.
* **Classification pretraining**: fine-tuning a fresh random trunk; the trained trunk is the
  "classification-trained" trunk of the thesis table.

Accuracies are the fraction of correctly classified held-out images (test split).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from policyshare.errors import NumericalError, UserError
from policyshare.trunks import Trunk
from policyshare.vision.config import ProbeConfig, VisionTrunkConfig
from policyshare.vision.data import ImageSet
from policyshare.vision.inputs import ImageInput, freeze
from policyshare.vision.tb import ScalarLog, no_log


def check_layer(trunk: Trunk, layer: str | None) -> str:
    """The layer name to read (``None``: the last layer).

    Raises:
        UserError: the trunk has no layer of that name.
    """
    if layer is None:
        return trunk.layer_names[-1]
    if layer not in trunk.layer_names:
        raise UserError(f"the {trunk.spec.name} trunk has no layer {layer!r}; its layers are "
                        f"{', '.join(trunk.layer_names)}")
    return layer


class TrunkClassifier(nn.Module):
    """Images → :class:`ImageInput` → trunk up to ``layer`` → flatten → standardise → linear head.

    Input ``(n, image_channels, h, w)`` in [0, 1]; output logits ``(n, n_classes)``.

    Args:
        trunk: the trunk (used as is: freeze or copy it beforehand as needed).
        image_input: maps images into the trunk's input layout.
        n_classes: number of classes.
        layer: trunk layer whose output feeds the head; ``None``: the last layer.

    Raises:
        UserError: unknown layer.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, trunk: Trunk, image_input: ImageInput, n_classes: int, layer: str | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.input = image_input
        self.layer = check_layer(trunk, layer)
        shape = trunk.layer_shapes[trunk.layer_names.index(self.layer)]
        dim = 1
        for s in shape:
            dim *= s
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.head = nn.Linear(dim, n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Raw (unstandardised) features ``(n, dim)`` at ``self.layer``."""
        return self.trunk.forward_layers(self.input(images), upto=self.layer)[-1].flatten(1)

    def standardise_from(self, features: torch.Tensor) -> None:
        """Set the standardisation from training features ``(n, dim)`` (std floored at 1e-6)."""
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp_min(1e-6))

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, n_classes)`` from raw features ``(n, dim)``."""
        return self.head((features - self.mean) / self.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.features(images))


@dataclass
class ProbeResult:
    """Outcome of a probe or fine-tuning run.

    Attributes:
        mode: ``linear`` or ``finetune``.
        layer: the trunk layer read.
        accuracy: test-split accuracy (fraction in [0, 1]).
        train_accuracy: training-split accuracy.
        n_train: training images.
        n_test: test images.
        losses: the training loss per L-BFGS evaluation (linear) or per epoch (fine-tuning).
    """

    mode: str
    layer: str
    accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """Plain data for ``metrics.json``."""
        return asdict(self)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted classes ``(n,)`` of ``model`` (logits) on ``(n, C, H, W)`` images, in eval mode."""
    was = model.training
    model.eval()
    out = torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])
    model.train(was)
    return out


def accuracy(model: nn.Module, data: ImageSet) -> float:
    """Fraction of ``data`` that ``model`` classifies correctly."""
    return float((predict(model, data.images) == data.labels).float().mean())


def _check_finite(loss: torch.Tensor, what: str) -> None:
    if not torch.isfinite(loss):
        raise NumericalError(f"{what}: the loss became {float(loss.detach())}; lower the learning rate")


def linear_probe(trunk: Trunk, train: ImageSet, test: ImageSet, probe: ProbeConfig, trunk_cfg: VisionTrunkConfig,
                 seed: int = 0) -> tuple[ProbeResult, TrunkClassifier]:
    """Fit a linear classifier on frozen trunk features (multinomial logistic regression, L-BFGS).

    Loss: cross-entropy averaged over the training images plus ``probe.l2 / 2 · ||W||²`` (W the
    head's weight matrix; the bias is not penalised).

    Args:
        trunk: the trunk; it is frozen (``requires_grad`` off) in place.
        train: training images ``(n, C, h, w)``.
        test: held-out images.
        probe: layer, λ and L-BFGS iterations.
        trunk_cfg: alignment and spatial fit of images into the trunk.
        seed: seed of the head's initialisation and of a ``stem`` alignment.

    Returns:
        The result and the fitted classifier.

    Raises:
        UserError: unknown layer or channels that cannot be aligned.
        NumericalError: a non-finite loss.
    """
    freeze(trunk)
    image_input = ImageInput(train.channels, trunk.spec, trunk_cfg.alignment, trunk_cfg.fit, seed)
    image_input.requires_grad_(False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TrunkClassifier(trunk, image_input, len(train.classes), probe.layer)
    with torch.no_grad():
        feats = torch.cat([model.features(train.images[i:i + 512]) for i in range(0, len(train), 512)])
        model.standardise_from(feats)
        z = (feats - model.mean) / model.std
    head = model.head
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=probe.max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10, history_size=20)
    losses: list[float] = []
    ce = nn.CrossEntropyLoss(reduction="mean")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ce(head(z), train.labels) + 0.5 * probe.l2 * head.weight.pow(2).sum()
        _check_finite(loss, "linear probe")
        loss.backward()
        losses.append(float(loss.detach()))
        return loss

    opt.step(closure)
    result = ProbeResult("linear", model.layer, accuracy(model, test), accuracy(model, train), len(train),
                         len(test), losses)
    return result, model


def finetune(trunk: Trunk, train: ImageSet, test: ImageSet | None, probe: ProbeConfig, trunk_cfg: VisionTrunkConfig,
             seed: int = 0, epochs: int | None = None, log: ScalarLog = no_log
             ) -> tuple[ProbeResult, TrunkClassifier]:
    """Train a copy of the trunk and a linear head together (Adam, minibatch-mean cross-entropy).

    Args:
        trunk: the starting trunk (copied; the argument is left unchanged).
        train: training images.
        test: held-out images (``None``: accuracy is reported on ``train``).
        probe: layer, learning rate, batch size and default epochs.
        trunk_cfg: alignment and spatial fit.
        seed: seed of initialisation and minibatch order.
        epochs: passes over ``train`` (default ``probe.finetune_epochs``).
        log: receives ``finetune/loss`` per epoch.

    Returns:
        The result and the classifier, whose ``trunk`` is the trained copy.

    Raises:
        UserError: unknown layer or channels that cannot be aligned.
        NumericalError: a non-finite loss.
    """
    net = copy.deepcopy(trunk).train()
    net.requires_grad_(True)
    image_input = ImageInput(train.channels, net.spec, trunk_cfg.alignment, trunk_cfg.fit, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TrunkClassifier(net, image_input, len(train.classes), probe.layer)
    with torch.no_grad():
        model.standardise_from(model.features(train.images))
    opt = torch.optim.Adam(model.parameters(), lr=probe.lr)
    ce = nn.CrossEntropyLoss(reduction="mean")
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    n_epochs = probe.finetune_epochs if epochs is None else epochs
    for epoch in range(n_epochs):
        order = torch.randperm(len(train), generator=gen)
        total = 0.0
        for i in range(0, len(train), probe.batch_size):
            idx = order[i:i + probe.batch_size]
            loss = ce(model(train.images[idx]), train.labels[idx])
            _check_finite(loss, "fine-tuning")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(train))
        log("finetune/loss", losses[-1], epoch)
    net.eval()
    held_out = test if test is not None else train
    result = ProbeResult("finetune", model.layer, accuracy(model, held_out), accuracy(model, train), len(train),
                         len(held_out), losses)
    return result, model
