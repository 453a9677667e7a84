"""Diversity of generated samples under a held-out feature network.

Guidance trades diversity for accuracy: a larger scale pushes samples deeper into their
class, and at the extreme every sample of a class is the same prototype, which an accuracy
score rewards. So accuracies of trunks are compared at *matched diversity*, measured here.

:class:`FeatureNet` is the held-out feature network: a one-hidden-layer MLP (scikit-learn
``MLPClassifier``, ReLU) trained on raw pixels of the *eval* split — the judge's split, never
seen by a trunk, head or diffusion prior — with a fixed seed. Its hidden activations are the
features (the small-scale analogue of the Inception features of FID; Heusel et al. 2017).

Diversity of a labelled set = the mean over classes of the mean pairwise Euclidean distance
between the features of that class's samples (``scipy.spatial.distance.pdist``). Divided by
the same figure for real test images it is the *relative diversity*: 1 is as diverse as real
digits, 0 is one image per class.
"""

from __future__ import annotations

import numpy as np
import torch

from policyshare.errors import UserError
from policyshare.vision.data import ImageSet


def _flat(images: torch.Tensor) -> np.ndarray:
    return images.detach().float().reshape(len(images), -1).cpu().numpy()


class FeatureNet:
    """The held-out feature network: hidden ReLU features ``(n, hidden)`` of raw pixels.

    Args:
        train: real images it learns from (the eval split).
        hidden: hidden units.
        seed: initialisation seed (fixed: the judge is the same for every run seed).

    Raises:
        UserError: fewer than two classes in ``train``.
    """

    def __init__(self, train: ImageSet, hidden: int = 64, seed: int = 1234) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        if len(set(train.labels.tolist())) < 2:
            raise UserError("the diversity feature network needs images of at least two classes")
        import warnings

        self.shape = tuple(train.images.shape[1:])
        self.mlp = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=500, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.mlp.fit(_flat(train.images), train.labels.numpy())

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Hidden activations ``(n, hidden)`` of images ``(n, C, H, W)`` in [0, 1].

        Raises:
            UserError: images of another shape than the training images.
        """
        if tuple(images.shape[1:]) != self.shape:
            raise UserError(f"the feature network reads images of shape {self.shape}, got {tuple(images.shape[1:])}")
        x = _flat(images)
        return np.maximum(x @ self.mlp.coefs_[0] + self.mlp.intercepts_[0], 0.0)


def diversity(features: np.ndarray, labels: np.ndarray | torch.Tensor) -> float:
    """Mean over classes of the mean pairwise Euclidean distance within the class.

    Args:
        features: ``(n, d)``.
        labels: ``(n,)`` classes; classes with fewer than two samples are skipped.

    Returns:
        The diversity (feature units); ``nan`` when no class has two samples.
    """
    from scipy.spatial.distance import pdist

    y = np.asarray(labels)
    per = [float(pdist(features[y == c]).mean()) for c in np.unique(y) if int((y == c).sum()) >= 2]
    return float(np.mean(per)) if per else float("nan")
