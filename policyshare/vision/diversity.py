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
digits, 0 is one image per class. It counts noise as diversity: samples that break down into
noise lie far apart, so they read as *more* diverse than real digits.

Precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for
assessing generative models", Sec. 2) separate the two: the real images' features span a
manifold estimated as the union of balls around each real feature with radius the distance to
its k-th nearest real neighbour, likewise for the generated set. **Precision** = the share of
generated samples inside the real manifold (realism: noise scores 0); **recall** = the share of
real images inside the generated manifold (how much of the real variation the samples cover: one
prototype per class scores near 0). Here both are per class (generated samples of a class
against real test images of that class) and averaged over classes, with k = 3 (their choice).
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


#: Neighbours of the k-NN manifold estimate (Kynkäänniemi et al. 2019 use k = 3).
PR_NEIGHBOURS = 3


def _radii(points: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point ``(n, d)`` to its k-th nearest other point ``(n,)``."""
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return dist[:, k]  # column 0 is the point itself (distance 0)


def _inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Whether each of ``points`` ``(m, d)`` lies in some ball (centre, radius) ``(n, d)``, ``(n,)``."""
    from scipy.spatial.distance import cdist

    return (cdist(points, centres) <= radii[None, :]).any(axis=1)


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall of ``generated`` against ``real`` (Kynkäänniemi et al. 2019, Eq. 1–2).

    Args:
        real: real features ``(n, d)``.
        generated: generated features ``(m, d)``.
        k: the k-th nearest neighbour sets each ball's radius; lowered to ``size − 1`` for a
            set with no more than ``k`` points.

    Returns:
        ``(precision, recall)`` in [0, 1]: the share of generated points inside the real
        manifold, the share of real points inside the generated manifold. ``(nan, nan)`` when
        either set has fewer than two points (no radius).
    """
    if len(real) < 2 or len(generated) < 2:
        return float("nan"), float("nan")
    r_real = _radii(real, min(k, len(real) - 1))
    r_gen = _radii(generated, min(k, len(generated) - 1))
    return float(_inside(generated, real, r_real).mean()), float(_inside(real, generated, r_gen).mean())


def class_precision_recall(real: np.ndarray, real_labels: np.ndarray | torch.Tensor, generated: np.ndarray,
                           labels: np.ndarray | torch.Tensor, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """:func:`precision_recall` per class (samples of a class against real images of that class), averaged.

    Args:
        real: real features ``(n, d)`` with classes ``real_labels`` ``(n,)``.
        generated: generated features ``(m, d)`` with target classes ``labels`` ``(m,)``.
        k: see :func:`precision_recall`.

    Returns:
        Mean precision and mean recall over the classes with two or more points on both sides;
        ``nan`` when there is none.
    """
    yr, yg = np.asarray(real_labels), np.asarray(labels)
    pairs = [precision_recall(real[yr == c], generated[yg == c], k) for c in np.unique(yg)
             if int((yr == c).sum()) >= 2 and int((yg == c).sum()) >= 2]
    if not pairs:
        return float("nan"), float("nan")
    return float(np.mean([p for p, _ in pairs])), float(np.mean([r for _, r in pairs]))
