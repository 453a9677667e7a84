"""Few-label probes: does a representation classify *new* classes from 1, 5 or 10 labels each?

The generation → classification direction of the thesis. Feature sources: a trunk (random,
classification-trained on *other* classes, autoencoder, RL) read at ``probe.layer``, and the
diffusion prior's own denoiser — the generative model of the comparison — read at its last
hidden layer for a clean image at timestep index ``thesis.denoiser_timestep``
(:meth:`~policyshare.vision.diffusion.Denoiser.features`; diffusion features as in Xiang et
al. 2023, "Denoising diffusion autoencoders are unified self-supervised learners").

Protocol, per seed and repeat: draw ``k`` training images per target class (the draw depends
only on the seed and repeat, so every feature source gets the same labelled images — the
comparison is paired); standardise features with the mean and standard deviation of *all*
training images of the target classes (their labels unused); fit an L2-regularised
multinomial logistic regression (scikit-learn ``LogisticRegression``, C = 1); report accuracy
on the test images of the target classes. Accuracies are averaged over the repeats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from policyshare.trunks import Trunk
from policyshare.vision.config import VisionTrunkConfig
from policyshare.vision.data import ImageSet
from policyshare.vision.diffusion import DDPM
from policyshare.vision.inputs import ImageInput, freeze
from policyshare.vision.probe import check_layer

#: ``features(images)``: images ``(n, C, H, W)`` in [0, 1] → features ``(n, d)``.
Features = Callable[[torch.Tensor], np.ndarray]


def trunk_features(trunk: Trunk, image_channels: int, trunk_cfg: VisionTrunkConfig, layer: str | None,
                   seed: int = 0) -> Features:
    """Flattened features of the frozen ``trunk`` at ``layer`` (``None``: the last).

    Raises:
        UserError: unknown layer or channels that cannot be aligned.
    """
    freeze(trunk)
    name = check_layer(trunk, layer)
    image_input = ImageInput(image_channels, trunk.spec, trunk_cfg.alignment, trunk_cfg.fit, seed).requires_grad_(False)

    @torch.no_grad()
    def f(images: torch.Tensor) -> np.ndarray:
        out = [trunk.forward_layers(image_input(images[i:i + 512]), upto=name)[-1].flatten(1)
               for i in range(0, len(images), 512)]
        return torch.cat(out).numpy()

    return f


def denoiser_features(prior: DDPM, timestep: int) -> Features:
    """The denoiser's last hidden layer ``(n, hidden)`` for clean images at timestep index ``timestep``."""

    @torch.no_grad()
    def f(images: torch.Tensor) -> np.ndarray:
        i = torch.full((len(images),), int(timestep), dtype=torch.long)
        return prior.denoiser.features(images * 2 - 1, i).numpy()

    return f


def draw(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices of ``shots`` examples of every class in ``labels`` (all of a class if it has fewer)."""
    rng = np.random.default_rng(seed)
    out = [rng.choice(np.flatnonzero(labels == c), size=min(shots, int((labels == c).sum())), replace=False)
           for c in np.unique(labels)]
    return np.sort(np.concatenate(out))


def few_label_accuracy(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                       test_labels: np.ndarray, shots: int, seed: int, repeats: int = 1) -> float:
    """Mean test accuracy over ``repeats`` draws of ``shots`` labelled training examples per class.

    Args:
        train_features: ``(n, d)`` features of every training image of the target classes.
        train_labels: ``(n,)``.
        test_features: ``(m, d)``.
        test_labels: ``(m,)``.
        shots: labels per class.
        seed: draw seed (draw ``r`` uses ``seed * 1000 + r``).
        repeats: draws averaged.

    Returns:
        Accuracy in [0, 1].
    """
    from sklearn.linear_model import LogisticRegression

    mean = train_features.mean(0)
    std = np.maximum(train_features.std(0), 1e-6)
    ztr, zte = (train_features - mean) / std, (test_features - mean) / std
    accs = []
    for r in range(repeats):
        idx = draw(train_labels, shots, seed * 1000 + r)
        clf = LogisticRegression(C=1.0, max_iter=2000)
        clf.fit(ztr[idx], train_labels[idx])
        accs.append(float((clf.predict(zte) == test_labels).mean()))
    return float(np.mean(accs))


def probe_table(features: Features, train: ImageSet, test: ImageSet, shots: Sequence[int], seed: int,
                repeats: int) -> dict[str, float]:
    """``{"<k>": accuracy}`` for every ``k`` in ``shots`` (train and test hold only the target classes)."""
    ftr, fte = features(train.images), features(test.images)
    ytr, yte = train.labels.numpy(), test.labels.numpy()
    return {str(k): few_label_accuracy(ftr, ytr, fte, yte, k, seed, repeats) for k in shots}
