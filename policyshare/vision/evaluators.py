"""Held-out judges: metrics that never use the trunk that guided generation.

* **Texture distances** under :class:`EvaluatorNet`, a fixed-seed random conv net whose
  architecture differs from every trunk spec (5x5 kernels, average pooling, 32/64/128 maps).
  Random-weight conv nets are texture descriptors in their own right (Ustyuzhaninov et al.
  2017, "What does it take to generate natural textures?"), and no trunk shares its weights,
  so a trunk cannot score well by matching its own features. Distance per layer ``l``:
  ``||G_l(x) − G_l(s)||_F / ||G_l(s)||_F`` (relative Frobenius distance, ``hw``-normalised
  Gramians); the reported figure is the mean over layers (and over shifts and both directions
  for the shifted-Gram distance). 0 means identical statistics.
* **Digit judge** (:class:`DigitJudge`): an RBF support-vector classifier (scikit-learn
  ``SVC``) on raw 8x8 pixels, trained on the *eval* split that no trunk, head or diffusion
  prior saw. Guided-generation accuracy = the fraction of generated samples it assigns to
  their target class.
* **Classification accuracy score** (Ravuri & Vinyals 2019, "Classification Accuracy Score
  for conditional generative models"): the same classifier trained only on generated samples
  (labelled with their target class), tested on the real test split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from policyshare.errors import UserError
from policyshare.vision.data import ImageSet
from policyshare.vision.texture import gram, shifted_gram


class EvaluatorNet(nn.Module):
    """The held-out texture evaluator: conv 5x5 (32) → avg-pool 2 → conv 5x5 (64) → avg-pool 2 → conv 3x3 (128).

    ReLU after each conv; He-normal weights (fan-in), zero biases, drawn from ``seed`` only.
    Input ``(n, channels, H, W)`` in [0, 1], centred by subtracting 0.5; outputs the three
    post-ReLU maps ``e1, e2, e3``. Parameters never train.

    Args:
        channels: image channels.
        seed: weight seed.
    """

    names: tuple[str, ...] = ("e1", "e2", "e3")

    def __init__(self, channels: int, seed: int = 1234) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        convs = [nn.Conv2d(channels, 32, 5), nn.Conv2d(32, 64, 5), nn.Conv2d(64, 128, 3)]
        with torch.no_grad():
            for conv in convs:
                fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if conv.bias is not None:
                    conv.bias.zero_()
        self.convs = nn.ModuleList(convs)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images - 0.5
        outs = []
        for i, conv in enumerate(self.convs):
            if i:
                x = nn.functional.avg_pool2d(x, 2)
            x = torch.relu(conv(x))
            outs.append(x)
        return outs


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b).clamp_min(1e-12))


@torch.no_grad()
def texture_distances(image: torch.Tensor, source: torch.Tensor, evaluator: EvaluatorNet,
                      shifts: Sequence[int] = (2, 4)) -> dict[str, float]:
    """Gram and shifted-Gram distances of ``image`` to ``source`` under the held-out evaluator.

    Args:
        image: ``(1, C, H, W)`` in [0, 1].
        source: ``(1, C, H', W')`` in [0, 1] (sizes may differ: Gramians are ``hw``-normalised).
        evaluator: the held-out network.
        shifts: shifts (feature-map pixels) of the shifted-Gram distance, each used
            horizontally and vertically, at every evaluator layer.

    Returns:
        ``{"gram": mean_l d_l, "shifted_gram": mean_{l,δ,dir} d_{l,δ,dir}, "gram/e1": …}``.

    Raises:
        UserError: a shift not smaller than an evaluator feature map.
    """
    fx, fs = evaluator(image), evaluator(source)
    out: dict[str, float] = {}
    plain: list[float] = []
    shifted: list[float] = []
    for name, a, b in zip(evaluator.names, fx, fs):
        d = _rel(gram(a), gram(b))
        out[f"gram/{name}"] = d
        plain.append(d)
        size = min(a.shape[-2], a.shape[-1], b.shape[-2], b.shape[-1])
        for s in shifts:
            if s >= size:
                raise UserError(f"evaluator shift {s} is not smaller than evaluator layer {name}'s feature map "
                                f"({size} pixels); lower texture.evaluator_shifts or raise texture.size")
            for dy, dx in ((0, s), (s, 0)):
                shifted.append(_rel(shifted_gram(a, dy, dx), shifted_gram(b, dy, dx)))
    out["gram"] = float(np.mean(plain))
    out["shifted_gram"] = float(np.mean(shifted)) if shifted else float("nan")
    return out


def _flat(images: torch.Tensor) -> np.ndarray:
    return images.detach().float().reshape(len(images), -1).cpu().numpy()


class DigitJudge:
    """The independent classifier of generated images: an RBF SVM on raw pixels.

    Args:
        train: real images it learns from (the *eval* split; never seen by a trunk).
        c: the SVM's regularisation C (``gamma="scale"``).

    Raises:
        UserError: fewer than two classes in ``train``.
    """

    def __init__(self, train: ImageSet, c: float = 10.0) -> None:
        from sklearn.svm import SVC

        if len(set(train.labels.tolist())) < 2:
            raise UserError("the judge needs images of at least two classes")
        self.shape = tuple(train.images.shape[1:])
        self.svm = SVC(C=c, gamma="scale")
        self.svm.fit(_flat(train.images), train.labels.numpy())

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """Predicted classes ``(n,)`` of images ``(n, C, H, W)`` in [0, 1] (the training images' shape).

        Raises:
            UserError: images of another shape.
        """
        if tuple(images.shape[1:]) != self.shape:
            raise UserError(f"the judge reads images of shape {self.shape}, got {tuple(images.shape[1:])}")
        return np.asarray(self.svm.predict(_flat(images)))

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of ``images`` the judge assigns to ``labels``."""
        return float(np.mean(self.predict(images) == labels.numpy()))


def classification_accuracy_score(images: torch.Tensor, labels: torch.Tensor, test: ImageSet,
                                  c: float = 10.0) -> float:
    """Train the judge's classifier on generated ``images`` with their target ``labels``; accuracy on real ``test``.

    Args:
        images: generated ``(n, C, H, W)`` in [0, 1].
        labels: their target classes ``(n,)``.
        test: real held-out images of the same shape.
        c: the SVM's C.

    Returns:
        Test accuracy in [0, 1] (Ravuri & Vinyals 2019).
    """
    judge = DigitJudge(ImageSet(images, labels, list(test.classes), "generated"), c)
    return judge.accuracy(test.images, test.labels)
