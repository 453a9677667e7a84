"""Held-out judges: metrics that never use the trunk that guided generation.

* **Texture judge** (:class:`TextureJudge`): an *ensemble* of held-out texture descriptors of
  different architectures and depths, none of them a trunk spec, none sharing a trunk's weights:

  ========================  ==============================================================
  ``conv5-pool``            :class:`EvaluatorNet`: conv 5x5 32 → avg-pool 2 → conv 5x5 64 →
                            avg-pool 2 → conv 3x3 128 (three depths).
  ``conv3-vgg``             VGG-like: two conv 3x3 (24) → avg-pool → two conv 3x3 (48) →
                            avg-pool → conv 3x3 (96), Gramians after each block.
  ``shallow-7-11``          one wide layer of 7x7 and 11x11 filters (64 each): the shallow
                            multi-scale random net of Ustyuzhaninov et al. 2016.
  ``pyramid``               one conv 5x5 (48) applied to the image and to its 2x and 4x
                            average-pooled copies: multi-scale pooled statistics.
  ``gabor``                 not learned, not random: the energy (modulus of the complex
                            response) of a Gabor filter bank (scikit-image ``gabor_kernel``;
                            3 frequencies x 4 orientations) on the luma.
  ``histogram``             non-neural: per-channel 32-bin intensity histograms (plain) and
                            grey-level co-occurrence matrices at each shift (scikit-image
                            ``graycomatrix``, 16 levels; Haralick et al. 1973) as the "shifted"
                            statistic.
  ========================  ==============================================================

  Random-weight conv nets are texture descriptors in their own right (Ustyuzhaninov et al.
  2017, "What does it take to generate natural textures?"); their weights are He-normal with
  zero biases, drawn from a fixed seed, and their input is centred (``x − 0.5``). Distance under
  a net or the Gabor bank, per map ``l``: ``||G_l(x) − G_l(s)||_F / ||G_l(s)||_F`` (relative
  Frobenius distance of ``hw``-normalised Gramians), averaged over maps (and over shifts and
  both directions for the shifted-Gram distance); under ``histogram``: the total-variation
  distance ``½ Σ |p − q|`` of the histograms (of the co-occurrence matrices). 0 means identical
  statistics.

  Each evaluator's distances are on its own scale, so the judge reports them as **ratios to a
  held-out crop of the same texture**: ``d_e(x, s) / d_e(reference, s)`` — 1 is as close to the
  source as another piece of the real texture, above 1 is worse, below 1 means the evaluator
  prefers the image to real texture (it is fooled). The headline is the *largest* ratio over the
  evaluators — an image must look like the texture to every judge, and judges whose own
  statistics a synthesis has learnt to match (random conv nets fooled by a Gram synthesis)
  cannot carry it alone — reported with the median and the smallest as the spread.

  **Validated first** (:meth:`TextureJudge.validate`): an evaluator is used for a texture only if
  it scores the held-out crop closer to the source than crops of the other bundled textures
  and than the synthesis's starting noise, on both statistics; the rest are reported and left
  out of the summary.
* **Digit judge** (:class:`DigitJudge`): an RBF support-vector classifier (scikit-learn
  ``SVC``) on raw 8x8 pixels, trained on the *eval* split that no trunk, head or diffusion
  prior saw. Guided-generation accuracy = the fraction of generated samples it assigns to
  their target class.
* **Classification accuracy score** (Ravuri & Vinyals 2019, "Classification Accuracy Score
  for conditional generative models"): the same classifier trained only on generated samples
  (labelled with their target class), tested on the real test split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from policyshare.errors import UserError
from policyshare.vision.data import ImageSet
from policyshare.vision.texture import gram, shifted_gram

#: Names of the evaluators of :class:`TextureJudge`, in order.
EVALUATORS: tuple[str, ...] = ("conv5-pool", "conv3-vgg", "shallow-7-11", "pyramid", "gabor", "histogram")


def _he_conv(cin: int, cout: int, kernel: int, gen: torch.Generator) -> nn.Conv2d:
    """A conv layer with He-normal weights (fan-in) from ``gen`` and a zero bias, frozen."""
    conv = nn.Conv2d(cin, cout, kernel)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (cin * kernel * kernel)) ** 0.5)
        assert conv.bias is not None
        conv.bias.zero_()
    conv.requires_grad_(False)
    return conv


def _luma(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
        return (images * w).sum(1, keepdim=True)
    return images.mean(1, keepdim=True)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b).clamp_min(1e-12))


class TextureEvaluator(nn.Module):
    """A held-out texture descriptor: maps of an image whose Gramians are compared.

    Subclasses set :attr:`name` and :attr:`description` and implement :meth:`maps`; the
    histogram evaluator overrides :meth:`distances`. Parameters never train.
    """

    name: str = ""
    description: str = ""

    def maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps ``[(n, C_l, H_l, W_l), …]`` of images ``(n, channels, H, W)`` in [0, 1]."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.maps(images)

    @torch.no_grad()
    def distances(self, image: torch.Tensor, source: torch.Tensor, shifts: Sequence[int] = (2, 4)) -> dict[str, float]:
        """Gram and shifted-Gram distances of ``image`` to ``source`` (see the module docstring).

        Args:
            image: ``(1, C, H, W)`` in [0, 1].
            source: ``(1, C, H', W')`` in [0, 1] (sizes may differ: Gramians are ``hw``-normalised).
            shifts: shifts (map pixels), each used horizontally and vertically on every map.

        Returns:
            ``{"gram": mean_l d_l, "shifted_gram": mean_{l,δ,dir} d_{l,δ,dir}}``.

        Raises:
            UserError: a shift not smaller than one of the maps.
        """
        plain: list[float] = []
        shifted: list[float] = []
        for k, (a, b) in enumerate(zip(self.maps(image), self.maps(source))):
            plain.append(_rel(gram(a), gram(b)))
            size = min(a.shape[-2], a.shape[-1], b.shape[-2], b.shape[-1])
            for s in shifts:
                if s >= size:
                    raise UserError(f"evaluator shift {s} is not smaller than evaluator {self.name}'s map {k + 1} "
                                    f"({size} pixels); lower texture.evaluator_shifts or raise texture.size")
                for dy, dx in ((0, s), (s, 0)):
                    shifted.append(_rel(shifted_gram(a, dy, dx), shifted_gram(b, dy, dx)))
        return {"gram": float(np.mean(plain)), "shifted_gram": float(np.mean(shifted)) if shifted else float("nan")}


class EvaluatorNet(TextureEvaluator):
    """The ``conv5-pool`` evaluator: conv 5x5 (32) → avg-pool 2 → conv 5x5 (64) → avg-pool 2 → conv 3x3 (128).

    ReLU after each conv; He-normal weights (fan-in), zero biases, drawn from ``seed`` only.
    Input ``(n, channels, H, W)`` in [0, 1], centred by subtracting 0.5; outputs the three
    post-ReLU maps ``e1, e2, e3``. Parameters never train.

    Args:
        channels: image channels.
        seed: weight seed.
    """

    name = "conv5-pool"
    description = "random conv 5x5 32 → pool → 5x5 64 → pool → 3x3 128"
    names: tuple[str, ...] = ("e1", "e2", "e3")

    def __init__(self, channels: int, seed: int = 1234) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList([_he_conv(channels, 32, 5, gen), _he_conv(32, 64, 5, gen),
                                    _he_conv(64, 128, 3, gen)])
        self.requires_grad_(False)
        self.eval()

    def maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images - 0.5
        outs = []
        for i, conv in enumerate(self.convs):
            if i:
                x = nn.functional.avg_pool2d(x, 2)
            x = torch.relu(conv(x))
            outs.append(x)
        return outs


class VGGEvaluator(TextureEvaluator):
    """The ``conv3-vgg`` evaluator: [conv 3x3 24, conv 3x3 24] → pool → [conv 3x3 48, conv 3x3 48] → pool → conv 3x3 96.

    A random VGG-like net (Simonyan & Zisserman 2015's layout at a fraction of the width); maps
    after each block. ReLU, He-normal, zero biases, centred input.

    Args:
        channels: image channels.
        seed: weight seed.
    """

    name = "conv3-vgg"
    description = "random VGG-like: 2x conv 3x3 24 → pool → 2x conv 3x3 48 → pool → conv 3x3 96"

    def __init__(self, channels: int, seed: int = 1235) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.blocks = nn.ModuleList([
            nn.Sequential(_he_conv(channels, 24, 3, gen), nn.ReLU(), _he_conv(24, 24, 3, gen), nn.ReLU()),
            nn.Sequential(_he_conv(24, 48, 3, gen), nn.ReLU(), _he_conv(48, 48, 3, gen), nn.ReLU()),
            nn.Sequential(_he_conv(48, 96, 3, gen), nn.ReLU())])
        self.eval()

    def maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images - 0.5
        outs = []
        for i, block in enumerate(self.blocks):
            if i:
                x = nn.functional.avg_pool2d(x, 2)
            x = block(x)
            outs.append(x)
        return outs


class ShallowEvaluator(TextureEvaluator):
    """The ``shallow-7-11`` evaluator: one wide layer of 64 7x7 and 64 11x11 random filters.

    The shallow multi-scale random network of Ustyuzhaninov, Brendel, Gatys & Bethge 2016
    ("Texture synthesis using shallow convolutional networks with random filters"), narrowed.
    ReLU, He-normal, zero biases, centred input; two maps (one per filter size).

    Args:
        channels: image channels.
        seed: weight seed.
    """

    name = "shallow-7-11"
    description = "one random layer: 64 filters 7x7 + 64 filters 11x11"

    def __init__(self, channels: int, seed: int = 1236) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList([_he_conv(channels, 64, 7, gen), _he_conv(channels, 64, 11, gen)])
        self.eval()

    def maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images - 0.5
        return [torch.relu(conv(x)) for conv in self.convs]


class PyramidEvaluator(TextureEvaluator):
    """The ``pyramid`` evaluator: one random conv 5x5 (48) on the image and its 2x and 4x average-pooled copies.

    Multi-scale pooled statistics: the same filters see the texture at three scales. ReLU,
    He-normal, zero bias, centred input; three maps.

    Args:
        channels: image channels.
        seed: weight seed.
    """

    name = "pyramid"
    description = "random conv 5x5 48 on the image at scales 1, 1/2, 1/4 (average pooling)"

    def __init__(self, channels: int, seed: int = 1237) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = _he_conv(channels, 48, 5, gen)
        self.eval()

    def maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images - 0.5
        return [torch.relu(self.conv(x if k == 1 else nn.functional.avg_pool2d(x, k))) for k in (1, 2, 4)]


class GaborEvaluator(TextureEvaluator):
    """The ``gabor`` evaluator: energies of a Gabor filter bank on the luma (no learned or random weights).

    Complex Gabor kernels (scikit-image ``skimage.filters.gabor_kernel``, 2.5 standard
    deviations) at frequencies 0.4, 0.25 and 0.15 cycles/pixel and orientations 0°, 45°, 90°,
    135°; the map is the modulus of each complex response (the quadrature-pair energy of
    steerable-filter texture models), all 12 centre-cropped to the smallest, as one map.

    Args:
        channels: image channels (colour is converted to luma, ITU-R 601).
    """

    name = "gabor"
    description = "Gabor filter-bank energy: 3 frequencies x 4 orientations, on the luma"
    frequencies: tuple[float, ...] = (0.4, 0.25, 0.15)

    def __init__(self, channels: int) -> None:
        super().__init__()
        from skimage.filters import gabor_kernel

        self.kernels: list[tuple[torch.Tensor, torch.Tensor]] = []
        for f in self.frequencies:
            for theta in (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4):
                k = gabor_kernel(f, theta=theta, n_stds=2.5)
                self.kernels.append((torch.tensor(k.real, dtype=torch.float32)[None, None],
                                     torch.tensor(k.imag, dtype=torch.float32)[None, None]))

    def maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        y = _luma(images) - 0.5
        energies = [torch.sqrt(nn.functional.conv2d(y, re) ** 2 + nn.functional.conv2d(y, im) ** 2 + 1e-12)
                    for re, im in self.kernels]
        h = min(e.shape[-2] for e in energies)
        w = min(e.shape[-1] for e in energies)
        crops = [e[..., (e.shape[-2] - h) // 2:(e.shape[-2] - h) // 2 + h,
                   (e.shape[-1] - w) // 2:(e.shape[-1] - w) // 2 + w] for e in energies]
        return [torch.cat(crops, dim=1)]


class HistogramEvaluator(TextureEvaluator):
    """The ``histogram`` evaluator: intensity histograms and grey-level co-occurrence matrices (non-neural).

    Plain statistic: per-channel 32-bin histograms on [0, 1]; distance = total variation
    ``½ Σ |p − q|``, averaged over channels. Shifted statistic: the grey-level co-occurrence
    matrix (scikit-image ``skimage.feature.graycomatrix``, 16 levels of the luma, normalised) of
    pixel pairs ``δ`` apart horizontally and vertically; distance = its total variation, averaged
    over shifts and directions.

    Args:
        channels: image channels.
    """

    name = "histogram"
    description = "intensity histograms (32 bins) and grey-level co-occurrence matrices (16 levels)"
    bins: int = 32
    levels: int = 16

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def _hist(self, image: torch.Tensor) -> list[np.ndarray]:
        return [np.histogram(image[0, c].numpy(), bins=self.bins, range=(0.0, 1.0))[0] / image[0, c].numel()
                for c in range(image.shape[1])]

    def _glcm(self, image: torch.Tensor, s: int) -> np.ndarray:
        from skimage.feature import graycomatrix

        q = np.clip((_luma(image)[0, 0].numpy() * self.levels).astype(np.int64), 0, self.levels - 1).astype(np.uint8)
        m: np.ndarray = graycomatrix(q, distances=[s], angles=[0.0, math.pi / 2], levels=self.levels, normed=True)
        return m[:, :, 0, :]

    @torch.no_grad()
    def distances(self, image: torch.Tensor, source: torch.Tensor, shifts: Sequence[int] = (2, 4)) -> dict[str, float]:
        """Histogram and co-occurrence total-variation distances of ``image`` to ``source``.

        Raises:
            UserError: a shift not smaller than the image.
        """
        plain = float(np.mean([0.5 * np.abs(p - q).sum() for p, q in zip(self._hist(image), self._hist(source))]))
        size = min(image.shape[-2], image.shape[-1], source.shape[-2], source.shape[-1])
        shifted: list[float] = []
        for s in shifts:
            if s >= size:
                raise UserError(f"evaluator shift {s} is not smaller than the {size}-pixel image; lower "
                                "texture.evaluator_shifts or raise texture.size")
            a, b = self._glcm(image, s), self._glcm(source, s)
            shifted += [0.5 * float(np.abs(a[:, :, k] - b[:, :, k]).sum()) for k in range(a.shape[-1])]
        return {"gram": plain, "shifted_gram": float(np.mean(shifted)) if shifted else float("nan")}


def texture_evaluators(channels: int, seed: int = 1234) -> list[TextureEvaluator]:
    """The judge's evaluators (:data:`EVALUATORS`), the random ones seeded ``seed``, ``seed + 1`` …"""
    return [EvaluatorNet(channels, seed), VGGEvaluator(channels, seed + 1), ShallowEvaluator(channels, seed + 2),
            PyramidEvaluator(channels, seed + 3), GaborEvaluator(channels), HistogramEvaluator(channels)]


@torch.no_grad()
def texture_distances(image: torch.Tensor, source: torch.Tensor, evaluator: TextureEvaluator,
                      shifts: Sequence[int] = (2, 4)) -> dict[str, float]:
    """Gram and shifted-Gram distances of ``image`` to ``source`` under one held-out evaluator.

    Args:
        image: ``(1, C, H, W)`` in [0, 1].
        source: ``(1, C, H', W')`` in [0, 1] (sizes may differ: statistics are normalised).
        evaluator: a held-out evaluator (e.g. :class:`EvaluatorNet`).
        shifts: shifts (map pixels) of the shifted statistic, each horizontal and vertical.

    Returns:
        ``{"gram": …, "shifted_gram": …}``.

    Raises:
        UserError: a shift not smaller than an evaluator map.
    """
    return evaluator.distances(image, source, shifts)


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if values else float("nan")


class TextureJudge:
    """The ensemble of held-out texture evaluators (see the module docstring), validated per texture.

    Args:
        channels: image channels.
        seed: seed of the random evaluators.
        shifts: shifts (map pixels) of the shifted statistics.
    """

    def __init__(self, channels: int, seed: int = 1234, shifts: Sequence[int] = (2, 4)) -> None:
        self.evaluators = texture_evaluators(channels, seed)
        self.shifts = [int(s) for s in shifts]

    @property
    def names(self) -> list[str]:
        """Evaluator names, in order."""
        return [e.name for e in self.evaluators]

    def describe(self) -> dict[str, str]:
        """``{name: architecture}`` of every evaluator."""
        return {e.name: e.description for e in self.evaluators}

    def distances(self, image: torch.Tensor, source: torch.Tensor) -> dict[str, dict[str, float]]:
        """``{evaluator: {"gram", "shifted_gram"}}`` raw distances of ``image`` to ``source``.

        Raises:
            UserError: a shift not smaller than an evaluator's map.
        """
        return {e.name: e.distances(image, source, self.shifts) for e in self.evaluators}

    def validate(self, source: torch.Tensor, reference: torch.Tensor,
                 negatives: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """Check every evaluator ranks the held-out crop closer to the source than every negative.

        Args:
            source: ``(1, C, H, W)``.
            reference: a held-out crop of the same texture, ``(1, C, H, W)``.
            negatives: ``{name: (1, C, H, W)}``: crops of other textures, noise.

        Returns:
            ``{"reference": {evaluator: distances}, "negatives": {name: {evaluator: distances}},
            "passed": {evaluator: bool}, "validated": [evaluators that passed]}``. An evaluator
            passes when both its distances to the reference are below those of every negative.
        """
        ref = self.distances(reference, source)
        neg = {name: self.distances(img, source) for name, img in negatives.items()}
        passed = {e: all(ref[e][k] < neg[n][e][k] for n in neg for k in ("gram", "shifted_gram")) for e in self.names}
        return {"reference": ref, "negatives": neg, "passed": passed,
                "validated": [e for e in self.names if passed[e]]}

    def score(self, image: torch.Tensor, source: torch.Tensor, validation: Mapping[str, Any]) -> dict[str, Any]:
        """Distances of ``image`` to ``source`` as ratios to the held-out crop's, summarised over evaluators.

        Args:
            image: ``(1, C, H, W)`` in [0, 1].
            source: the source texture.
            validation: :meth:`validate`'s result for this source.

        Returns:
            ``{"gram", "shifted_gram"}`` (the largest ratio over the validated evaluators: the
            worst judge's verdict), ``{"gram_median", "gram_min", "shifted_gram_median",
            "shifted_gram_min"}`` (the spread),
            ``"per_evaluator"`` (``{evaluator: {"gram", "shifted_gram", "gram_ratio",
            "shifted_gram_ratio"}}``), ``"fooled"`` (validated evaluators that score the image at
            least as close as the held-out crop on either statistic) and ``"validated"``.
        """
        raw = self.distances(image, source)
        ref = validation["reference"]
        validated = list(validation["validated"])
        per: dict[str, dict[str, float]] = {}
        for e, d in raw.items():
            per[e] = {**d, **{f"{k}_ratio": d[k] / max(ref[e][k], 1e-12) for k in ("gram", "shifted_gram")}}
        out: dict[str, Any] = {}
        for k in ("gram", "shifted_gram"):
            ratios = [per[e][f"{k}_ratio"] for e in validated]
            out[k] = float(max(ratios)) if ratios else float("nan")
            out[f"{k}_median"] = _median(ratios)
            out[f"{k}_min"] = float(min(ratios)) if ratios else float("nan")
        out["per_evaluator"] = per
        out["fooled"] = [e for e in validated if min(per[e]["gram_ratio"], per[e]["shifted_gram_ratio"]) <= 1.0]
        out["validated"] = validated
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
