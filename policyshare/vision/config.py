"""Typed configuration of the vision side (``configs/vision.yaml``).

The file is one mapping whose keys are the sections below; every section and key is optional
(missing ones take the defaults documented here) and an unknown or mistyped key is refused by
:func:`policyshare.config.load_config` (pydantic). Command-line ``--set section.key=value`` overrides are
merged on top.

Units: ``epochs`` are passes over the training split; ``steps`` are optimiser updates;
image sizes are pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass

from policyshare.config import SETTINGS, Settings, UnitInterval, load_config
from policyshare.paths import default_config
from policyshare.trunks import ACTIVATIONS, TRUNK_SPECS

#: A fraction that cannot be zero: a number in (0, 1].
Fraction = Annotated[float, Field(gt=0, le=1)]


@dataclass(config=SETTINGS)
class DataConfig(Settings):
    """Which labelled images the probes, pretraining and generation use, and how they split.

    Attributes:
        dataset: ``digits`` (scikit-learn, 8x8), ``mnist:DIR`` (IDX files), ``cifar10:DIR``
            (the binary version) or a folder with one sub-folder of images per class.
        train_fraction: share of the images that train trunks, heads and the diffusion prior.
        eval_fraction: share held out to train the independent judge (never seen by a trunk).
            The rest is the test split on which every accuracy is reported.
        split_seed: seed of the stratified split; fixed across run seeds so runs share a test set.
        max_images: use at most this many images (a stratified subsample); 0 keeps all.
        image_size: resize folder images to this square size; 0 keeps their size (they must agree).
        grayscale: convert images to one channel.
    """

    dataset: str = "digits"
    train_fraction: Fraction = 0.6
    eval_fraction: Fraction = 0.2
    split_seed: int = 0
    max_images: NonNegativeInt = 0
    image_size: NonNegativeInt = 0
    grayscale: bool = False

    def __post_init__(self) -> None:
        if self.train_fraction + self.eval_fraction >= 1.0:
            raise ValueError("data.train_fraction + data.eval_fraction must be < 1 so a test split "
                             f"remains, got {self.train_fraction} + {self.eval_fraction}")


@dataclass(config=SETTINGS)
class VisionTrunkConfig(Settings):
    """The trunk built for ``random``, ``classify`` and ``autoencoder``, and how images enter trunks.

    The defaults equal a MinAtar RL trunk (``minatar`` spec, 10 input channels, 10x10), so the
    random, image-trained and RL trunks of one comparison have the same architecture.

    Attributes:
        spec: a key of :data:`policyshare.trunks.TRUNK_SPECS`.
        in_channels: trunk input channels (images are zero-padded up to it, see ``alignment``).
        height: trunk input height for dense layers (pixels).
        width: trunk input width (pixels).
        activation: ``relu``, ``trec`` or ``tlin`` (zero-bias units, Konda et al. 2015).
        theta: threshold of ``trec``/``tlin``.
        alignment: ``pad`` puts an image's channels first and zero-pads the rest (the trunk's
            own :class:`~policyshare.alignment.InputAlignment`); ``stem`` maps them through a
            1x1 convolution (seeded; trained when fine-tuning or pretraining, fixed otherwise).
        fit: how an image reaches the trunk's height x width when a dense layer needs it:
            ``pad`` centres it in a zero border, ``resize`` resamples it bilinearly, ``auto``
            pads when the trunk's size is at most twice the image's (digits 8x8 → MinAtar
            10x10: a one-pixel border, pixels 1:1 as in the games' grids) and resizes otherwise.
    """

    spec: str = "minatar"
    in_channels: PositiveInt = 10
    height: PositiveInt = 10
    width: PositiveInt = 10
    activation: str = "relu"
    theta: NonNegativeFloat = 0.5
    alignment: Literal["pad", "stem"] = "pad"
    fit: Literal["auto", "pad", "resize"] = "auto"

    def __post_init__(self) -> None:
        if self.spec not in TRUNK_SPECS:
            raise ValueError(f"trunk.spec: unknown spec {self.spec!r}; choose one of {', '.join(TRUNK_SPECS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"trunk.activation: unknown {self.activation!r}; choose one of "
                             f"{', '.join(ACTIVATIONS)}")


@dataclass(config=SETTINGS)
class ProbeConfig(Settings):
    """Classifier heads on a trunk.

    Attributes:
        layer: trunk layer whose (flattened) output feeds the head; ``null`` means the last layer.
        l2: L2 penalty λ of the linear probe, ``λ/2 · ||W||²`` added to the mean cross-entropy.
        max_iter: L-BFGS iterations of the linear probe (full batch).
        finetune_epochs: epochs of fine-tuning (trunk and head) with Adam.
        lr: Adam learning rate of fine-tuning.
        batch_size: minibatch size of fine-tuning.
    """

    layer: str | None = None
    l2: NonNegativeFloat = 1e-3
    max_iter: PositiveInt = 200
    finetune_epochs: PositiveInt = 30
    lr: PositiveFloat = 1e-3
    batch_size: PositiveInt = 64


@dataclass(config=SETTINGS)
class PretrainConfig(Settings):
    """Training trunks on the digits' training split: by classification or as a denoising autoencoder.

    Attributes:
        classify_epochs: epochs of classification training (trunk + linear head, Adam).
        autoencoder_epochs: epochs of denoising-autoencoder training.
        noise: standard deviation of the autoencoder's additive Gaussian corruption (pixel units, [0, 1] images).
        lr: Adam learning rate.
        batch_size: minibatch size.
    """

    classify_epochs: PositiveInt = 30
    autoencoder_epochs: PositiveInt = 60
    noise: NonNegativeFloat = 0.3
    lr: PositiveFloat = 1e-3
    batch_size: PositiveInt = 64


@dataclass(config=SETTINGS)
class TextureConfig(Settings):
    """Texture synthesis by Gram (Gatys et al. 2015) and shifted-Gram (Berger & Memisevic 2016) matching.

    Attributes:
        images: texture names (``brick``, ``grass``, ``gravel``, ``china``, ``flower``) or image files.
        resize: the texture is first resized so its shorter side has this many pixels.
        size: the source is the top-left ``size x size`` crop of the resized texture, and the
            synthesised image has this size; the bottom-right crop is the held-out reference.
        layers: trunk conv layers whose Gramians are matched; ``null`` means every conv layer.
        layer_weights: one weight per layer (default: all 1).
        normalise: Gram normalisation: ``hw`` divides by the number of positions, ``chw`` also
            by the channels, ``none`` leaves the sum.
        relative: divide each loss term by the mean square of its target Gram matrix (scale-free;
            see :mod:`policyshare.vision.texture`).
        shifts: shifts δ (feature-map pixels) of the shifted Gramians: a list for every layer or a
            mapping layer → list; each shift is used horizontally and vertically; empty: none.
        shift_weight: weight of the shifted-Gram terms relative to the plain Gram terms.
        mirror: mirror axes of mirrored Gramians (symmetric textures, Berger & Memisevic 2016):
            ``h`` (left-right) and/or ``v`` (top-bottom), a list for every layer or a mapping
            layer → list; empty: none.
        mirror_weight: weight of the mirrored-Gram terms relative to the plain Gram terms.
        optimizer: ``lbfgs`` or ``adam``.
        steps: optimiser iterations.
        lr: Adam's learning rate (on logits; L-BFGS-B needs none).
        patience: iterations within which the loss must fall by ``min_improvement`` (relative)
            below its initial value; otherwise synthesis stops with an error.
        min_improvement: relative decrease counted as progress (0.01 = 1 %).
        evaluator_seed: seed of the held-out random evaluators of the texture judge.
        evaluator_shifts: shifts of the judge's shifted statistics (evaluator-map pixels).
        deep_trunk: a trunk deep enough to carry a texture, synthesised in ``vision compare`` as
            a reference row beside the compared trunks (``null``: none).
        deep_shifts: the shifts of that reference's ``gram+shift`` synthesis (its deeper maps
            are small: ``image_deep``'s conv6 map is 4x4 on a 64-pixel texture).
    """

    images: list[str] = field(default_factory=lambda: ["brick"])
    resize: PositiveInt = 128
    size: PositiveInt = 64
    layers: list[str] | None = None
    layer_weights: list[float] | None = None
    normalise: Literal["hw", "chw", "none"] = "hw"
    relative: bool = True
    shifts: dict[str, list[int]] | list[int] = field(default_factory=lambda: [2, 4, 8])
    shift_weight: NonNegativeFloat = 1.0
    mirror: dict[str, list[str]] | list[str] = field(default_factory=list)
    mirror_weight: NonNegativeFloat = 1.0
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    steps: PositiveInt = 150
    lr: PositiveFloat = 0.05
    patience: PositiveInt = 20
    min_improvement: NonNegativeFloat = 0.01
    evaluator_seed: int = 1234
    evaluator_shifts: list[int] = field(default_factory=lambda: [2, 4])
    deep_trunk: str | None = "random:image_deep"
    deep_shifts: dict[str, list[int]] | list[int] = field(
        default_factory=lambda: {"conv2": [4, 8], "conv4": [2, 4], "conv5": [2, 4]})

    def __post_init__(self) -> None:
        axes = [a for v in (self.mirror.values() if isinstance(self.mirror, dict) else [self.mirror]) for a in v]
        bad = [a for a in axes if a not in ("h", "v")]
        if bad:
            raise ValueError(f"texture.mirror: unknown axis {bad[0]!r}; use h (left-right) and/or v (top-bottom)")
        if self.size > self.resize:
            raise ValueError(f"texture.size ({self.size}) must not exceed texture.resize ({self.resize})")
        if not self.images:
            raise ValueError("texture.images must name at least one texture, e.g. [brick]")


@dataclass(config=SETTINGS)
class TransferConfig(Settings):
    """Style transfer (Gatys et al. 2016) with shifted Gramians (Berger & Memisevic 2016): ``vision transfer``.

    Attributes:
        size: the content photo is resized so its shorter side has this many pixels (the result's size).
        style_size: the same for the style image.
        grayscale: convert both images to one channel.
        content_layer: the (deeper) conv layer whose features the content term matches.
        layers: conv layers of the style term; ``null``: every conv layer.
        shifts: shifted-Gram shifts of the style term (every layer, or a mapping layer → list).
        shift_weight: weight of the shifted-Gram terms within the style term.
        content_weight: ``α``, the content term's weight.
        style_weight: ``β``, the style term's weight (the terms are relative errors; the style
            term starts about 20 times larger than the content term from noise).
        init: ``content`` (start from the photo: clean results in few steps) or ``noise`` (Gatys
            et al. 2016's start).
        optimizer: ``lbfgs`` or ``adam``.
        steps: optimiser iterations.
        lr: Adam's learning rate.
        patience: iterations within which the loss must fall (see ``texture.patience``).
    """

    size: PositiveInt = 96
    style_size: PositiveInt = 96
    grayscale: bool = False
    content_layer: str = "conv4"
    layers: list[str] | None = None
    shifts: dict[str, list[int]] | list[int] = field(default_factory=lambda: [2])
    shift_weight: NonNegativeFloat = 1.0
    content_weight: NonNegativeFloat = 1.0
    style_weight: NonNegativeFloat = 0.05
    init: Literal["content", "noise"] = "content"
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    steps: PositiveInt = 100
    lr: PositiveFloat = 0.05
    patience: PositiveInt = 20


@dataclass(config=SETTINGS)
class DiffusionConfig(Settings):
    """The DDPM prior on the digits (Ho et al. 2020), trained once per config and cached.

    Attributes:
        timesteps: diffusion steps T (cosine noise schedule, Nichol & Dhariwal 2021).
        hidden: width of the denoiser MLP.
        train_steps: Adam updates.
        batch_size: minibatch size.
        lr: Adam learning rate (cosine-decayed to 0).
        ema: decay of the exponential moving average of the weights used for sampling.
        cache_dir: where trained priors are kept (``null``: ``cache/`` inside the run folder given
            with ``--run-dir`` or the experiment's ``vision/`` folder; ``runs/vision/cache`` for runs
            in their default folders).
    """

    timesteps: PositiveInt = 100
    hidden: PositiveInt = 256
    train_steps: PositiveInt = 10000
    batch_size: PositiveInt = 256
    lr: PositiveFloat = 1e-3
    ema: UnitInterval = 0.999
    cache_dir: str | None = None


@dataclass(config=SETTINGS)
class GuidanceConfig(Settings):
    """Classifier guidance (Dhariwal & Nichol 2021, Algorithm 1) with a noisy-image classifier on the trunk.

    Attributes:
        scale: guidance scale s; 0 samples from the unguided prior.
        per_class: samples generated per class.
        head_hidden: hidden width of the classifier's head (trunk features ⊕ time embedding → hidden → classes).
        train_steps: Adam updates of the head (the trunk stays frozen).
        batch_size: minibatch size.
        lr: Adam learning rate.
        judge_c: regularisation C of the independent RBF-SVM judge and of the CAS classifier.
    """

    scale: NonNegativeFloat = 4.0
    per_class: PositiveInt = 50
    head_hidden: PositiveInt = 256
    train_steps: PositiveInt = 3000
    batch_size: PositiveInt = 256
    lr: PositiveFloat = 1e-3
    judge_c: PositiveFloat = 10.0


@dataclass(config=SETTINGS)
class ThesisConfig(Settings):
    """The generation side of ``vision compare`` over seeds: disjoint classes, scale sweeps, probes, battles.

    Both directions of the thesis are measured on classes no trunk was *labelled* with:
    ``classify`` and ``autoencoder`` are pretrained on the images of ``pretrain_classes`` only
    (with and without their labels); guidance and few-label probes work on ``target_classes``.
    The diffusion prior is trained on every training image, without labels, as it must generate
    the target classes (so its denoiser's features have seen their images).

    Attributes:
        pretrain_classes: label indices whose images (and, for ``classify``, labels) pretrain trunks.
        target_classes: label indices that are generated and few-label probed; disjoint from
            ``pretrain_classes``, at least two.
        scales: guidance scales swept per trunk; must include 0 (the unguided prior, the
            reference of matched diversity).
        matched_diversity: trunks are compared where their samples' recall (Kynkäänniemi et al.
            2019: the share of real digits of the class the samples cover, under the held-out
            feature network) falls to this fraction of the unguided prior's (same seed, same
            prior); in (0, 1]. Recall rather than mean pairwise distance, which counts noise as
            diversity.
        shots: labels per class of the few-label probes.
        probe_repeats: draws of the few labels per seed (their accuracies are averaged).
        verdict_shots: labels per class whose probe decides the generation → classification verdict.
        denoiser_timestep: timestep index at which the diffusion denoiser reads clean images
            for its probe features (0 … ``diffusion.timesteps`` − 1).
        bootstrap_reps: bootstrap resamples of every interval over seeds.
        confidence: interval size (0.95: 95 %).
        battle_tolerance: a battle has a winner only when ``|r_test − 1| <= battle_tolerance``.
        feature_hidden: hidden units of the held-out feature network that measures diversity,
            precision and recall.
    """

    pretrain_classes: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    target_classes: list[int] = field(default_factory=lambda: [5, 6, 7, 8, 9])
    scales: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    matched_diversity: Fraction = 0.9
    shots: list[int] = field(default_factory=lambda: [1, 5, 10])
    probe_repeats: PositiveInt = 5
    verdict_shots: int = 5
    denoiser_timestep: NonNegativeInt = 5
    bootstrap_reps: PositiveInt = 2000
    confidence: UnitInterval = 0.95
    battle_tolerance: NonNegativeFloat = 0.2
    feature_hidden: PositiveInt = 64

    def __post_init__(self) -> None:
        if not self.pretrain_classes or len(self.target_classes) < 2:
            raise ValueError("thesis.pretrain_classes needs at least one class and thesis.target_classes at least "
                             f"two, got {self.pretrain_classes} and {self.target_classes}")
        both = sorted(set(self.pretrain_classes) & set(self.target_classes))
        if both:
            raise ValueError(f"thesis.pretrain_classes and thesis.target_classes must be disjoint; both hold {both}")
        if min(self.pretrain_classes + self.target_classes) < 0:
            raise ValueError("thesis.pretrain_classes and thesis.target_classes are label indices >= 0")
        if 0.0 not in [float(s) for s in self.scales] or min(self.scales) < 0:
            raise ValueError(f"thesis.scales must hold 0 (the unguided reference) and no negative scale, got "
                             f"{self.scales}")
        if not self.shots or min(self.shots) < 1:
            raise ValueError(f"thesis.shots must be labels per class >= 1, got {self.shots}")
        if self.verdict_shots not in self.shots:
            raise ValueError(f"thesis.verdict_shots ({self.verdict_shots}) must be one of thesis.shots {self.shots}")


@dataclass(config=SETTINGS)
class VisionConfig(Settings):
    """The whole vision config (``configs/vision.yaml``); see each section's class.

    Attributes:
        threads: torch CPU threads while a vision command runs. The networks are tiny, so one
            thread is fastest; more threads spin against each other on a shared machine. In
            ``vision compare``, each seed worker uses this many threads too.
        jobs: worker processes in which ``vision compare --seeds`` runs its seeds side by side
            (one seed per worker at a time, at most one worker per seed; 1: one seed after another
            in the command's own process). Results do not depend on it; ``jobs × threads`` should
            not exceed the CPU cores.
    """

    threads: PositiveInt = 1
    jobs: PositiveInt = 2
    data: DataConfig = field(default_factory=DataConfig)
    trunk: VisionTrunkConfig = field(default_factory=VisionTrunkConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    thesis: ThesisConfig = field(default_factory=ThesisConfig)

    def __post_init__(self) -> None:
        if self.thesis.denoiser_timestep >= self.diffusion.timesteps:
            raise ValueError(f"thesis.denoiser_timestep ({self.thesis.denoiser_timestep}) must be below "
                             f"diffusion.timesteps ({self.diffusion.timesteps})")


def load_vision_config(path: str | Path | None = None,
                       overrides: Mapping[str, Any] | None = None) -> VisionConfig:
    """Read ``configs/vision.yaml`` (or ``path``), apply overrides, validate.

    Args:
        path: a YAML file; ``None`` uses ``configs/vision.yaml`` of the source tree when it
            exists, else the defaults.
        overrides: nested mapping merged on top (from ``--set key=value``).

    Raises:
        ConfigError: missing or malformed file, unknown key, wrong type or value.
    """
    optional = path is None  # the defaults when the source tree has no configs/vision.yaml
    return load_config(VisionConfig, default_config("vision") if path is None else path, overrides=overrides,
                       expected="a mapping of sections (data, trunk, probe, …)", optional=optional)
