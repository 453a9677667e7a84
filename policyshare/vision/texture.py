"""Texture synthesis from a trunk's Gramians and shifted Gramians.

Gram matrix (Gatys, Ecker & Bethge 2015, "Texture synthesis using convolutional neural
networks", Eq. 1) of a feature map ``F`` with ``C`` channels over positions ``p``:

    G_ij = (1/Z) Σ_p F_i(p) F_j(p)

Shifted Gram matrix (Berger & Memisevic 2016, "Incorporating long-range consistency in
CNN-based texture generation", arXiv 1606.01286, Sec. 3): the product of the map with a copy
of itself shifted by ``δ = (dy, dx)``, over the positions where both lie inside the map
(cropped, never wrapped):

    G^δ_ij = (1/Z_δ) Σ_{p : p, p+δ inside} F_i(p) F_j(p + δ)

Mirrored Gram matrix (Berger & Memisevic 2016, Sec. 4, "symmetric textures"): the product of
the map with its mirror image ``m`` — horizontal ``m_h(y, x) = (y, W−1−x)`` or vertical
``m_v(y, x) = (H−1−y, x)`` — over all positions:

    G^m_ij = (1/Z) Σ_p F_i(p) F_j(m(p))

Its target is the source's *plain* Gram matrix ``G(s)``: the correlations a feature has with
itself are asked of it and its mirror image, so the result becomes mirror-symmetric about its
centre line while keeping the source's statistics.

Normalisation ``Z`` (``normalise``): ``hw`` — the number of positions summed
(``H·W``, or ``(H−dy)·(W−dx)`` when shifted), so Gramians of maps of different sizes compare;
``chw`` — that times ``C``; ``none`` — 1.

Loss (:class:`TextureLoss`), summed over the chosen layers ``l`` with weights ``w_l``:

    L(x) = Σ_l w_l [ e(G_l(x), G_l(s))
                     + λ Σ_{δ ∈ S_l} Σ_{dir ∈ {horizontal, vertical}} e(G^δ_l(x), G^δ_l(s))
                     + μ Σ_{m ∈ M_l} e(G^m_l(x), G_l(s)) ]

with ``s`` the source texture, ``S_l`` the shifts of layer ``l``, ``λ`` the shift weight,
``M_l ⊆ {h, v}`` the mirror axes of layer ``l`` and ``μ`` the mirror weight.
Each term ``e`` averages the squared difference over the ``C_l x C_l`` entries; with
``relative`` (the default) it is also divided by the same average of the target's squares:

    e(G, A) = mean_ij (G_ij − A_ij)² / mean_ij A_ij²        (relative)
    e(G, A) = mean_ij (G_ij − A_ij)²                         (not relative)

The relative form makes the loss independent of the scale of a trunk's activations, which
differs by orders of magnitude between random and trained trunks (a random MinAtar trunk's
absolute loss is ~1e-6, below L-BFGS's working range), and makes layer weights comparable.
Without it and with ``hw``, a Gram term is 4x Gatys et al.'s
``E_l = 1/(4 N_l² M_l²) Σ (G − A)²`` (their G is the unnormalised sum).

Images enter the trunk through :class:`~policyshare.vision.inputs.ImageInput`, centred on 0.5
for image specs such as ``image_deep`` (:func:`~policyshare.vision.inputs.input_center`).

Synthesis (:func:`synthesize`) optimises the pixels from uniform noise in [0.25, 0.75] (or a
given start, e.g. the content photo of a style transfer), with
L-BFGS-B under box constraints [0, 1] or with Adam on logits (``x = sigmoid(z)``), so every
pixel stays in range. A non-finite loss, or one that does not fall (within ``patience`` iterations,
and again at the end of the run however short), stops synthesis with a clear
error instead of returning a garbage image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from policyshare.errors import NumericalError, UserError
from policyshare.trunks import Trunk, conv_output_hw
from policyshare.vision.inputs import ImageInput, freeze, input_center
from policyshare.vision.tb import ScalarLog, no_log

Normalise = Literal["hw", "chw", "none"]

#: Mirror axes of the mirrored Gramians: ``h`` mirrors left-right, ``v`` top-bottom.
MIRROR_AXES: tuple[str, ...] = ("h", "v")


class TextureFailure(NumericalError):
    """Synthesis cannot give a meaningful image: dead features, a NaN, or a loss that does not fall.

    A result about the trunk rather than a typo: :func:`policyshare.vision.compare.compare`
    records it in the table and goes on; ``policyshare vision texture`` reports it (exit 2).
    """


def _norm(c: int, positions: int, normalise: str) -> float:
    if normalise == "hw":
        return float(positions)
    if normalise == "chw":
        return float(c * positions)
    if normalise == "none":
        return 1.0
    raise UserError(f"unknown Gram normalisation {normalise!r}; choose hw, chw or none")


def gram(features: torch.Tensor, normalise: str = "hw") -> torch.Tensor:
    """Gram matrices of feature maps (Gatys et al. 2015, Eq. 1).

    Args:
        features: ``(batch, C, H, W)``.
        normalise: ``hw`` (divide by ``H·W``), ``chw`` (by ``C·H·W``) or ``none``.

    Returns:
        ``(batch, C, C)``, ``G_ij = Σ_p F_i(p) F_j(p) / Z``.
    """
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / _norm(c, h * w, normalise)


def shifted_gram(features: torch.Tensor, dy: int, dx: int, normalise: str = "hw") -> torch.Tensor:
    """Gramians between a feature map and its copy shifted by ``(dy, dx)`` (Berger & Memisevic 2016).

    Cropped, not wrapped: only positions ``p`` with ``p`` and ``p + (dy, dx)`` inside the map are
    summed, and ``hw`` divides by their number ``(H − dy)·(W − dx)``.

    Args:
        features: ``(batch, C, H, W)``.
        dy: vertical shift, ``0 <= dy < H``.
        dx: horizontal shift, ``0 <= dx < W``.
        normalise: ``hw``, ``chw`` or ``none``.

    Returns:
        ``(batch, C, C)``, ``G_ij = Σ_p F_i(p) F_j(p + δ) / Z`` (not symmetric in general).

    Raises:
        UserError: a negative shift or one not smaller than the map.
    """
    b, c, h, w = features.shape
    if dy < 0 or dx < 0 or dy >= h or dx >= w:
        raise UserError(f"shift ({dy}, {dx}) does not fit a {h}x{w} feature map; use shifts from 1 to "
                        f"{min(h, w) - 1}")
    a = features[:, :, :h - dy, :w - dx].reshape(b, c, -1)
    s = features[:, :, dy:, dx:].reshape(b, c, -1)
    return a @ s.transpose(1, 2) / _norm(c, (h - dy) * (w - dx), normalise)


def mirrored_gram(features: torch.Tensor, axis: str, normalise: str = "hw") -> torch.Tensor:
    """Gramians between a feature map and its mirror image (Berger & Memisevic 2016, symmetric textures).

    Args:
        features: ``(batch, C, H, W)``.
        axis: ``h`` (mirror left-right: ``x → W−1−x``) or ``v`` (top-bottom: ``y → H−1−y``).
        normalise: ``hw`` (divide by ``H·W``), ``chw`` or ``none``.

    Returns:
        ``(batch, C, C)``, ``G_ij = Σ_p F_i(p) F_j(m(p)) / Z`` (symmetric: ``m`` is an involution).

    Raises:
        UserError: an unknown axis, or a map of fewer than 2 pixels along it (its mirror image
            is itself, so the mirrored Gramian would be the plain one).
    """
    b, c, h, w = features.shape
    if axis not in MIRROR_AXES:
        raise UserError(f"unknown mirror axis {axis!r}; choose h (left-right) or v (top-bottom)")
    size = w if axis == "h" else h
    if size < 2:
        raise UserError(f"a {h}x{w} feature map is too small to mirror {'left-right' if axis == 'h' else 'top-bottom'} "
                        "(it needs 2 pixels along the axis)")
    mirrored = features.flip(-1 if axis == "h" else -2)
    f = features.reshape(b, c, h * w)
    return f @ mirrored.reshape(b, c, h * w).transpose(1, 2) / _norm(c, h * w, normalise)


def resolve_mirror(mirror: Mapping[str, Sequence[str]] | Sequence[str], layers: Sequence[str]) -> dict[str, list[str]]:
    """Per-layer mirror axes from a list (every layer) or a mapping layer → list.

    Raises:
        UserError: a mapping key that is not among ``layers``, or an axis other than ``h``/``v``.
    """
    if isinstance(mirror, Mapping):
        unknown = sorted(set(mirror) - set(layers))
        if unknown:
            raise UserError(f"mirror axes given for {', '.join(unknown)}, which are not among the matched layers "
                            f"{', '.join(layers)}; add them to the layers or drop their mirror axes")
        out = {layer: [str(a) for a in mirror.get(layer, [])] for layer in layers}
    else:
        out = {layer: [str(a) for a in mirror] for layer in layers}
    for layer, axes in out.items():
        bad = [a for a in axes if a not in MIRROR_AXES]
        if bad:
            raise UserError(f"unknown mirror axis {bad[0]!r} for {layer}; choose h (left-right) or v (top-bottom)")
        out[layer] = list(dict.fromkeys(axes))
    return out


def resolve_shifts(shifts: Mapping[str, Sequence[int]] | Sequence[int], layers: Sequence[str]) -> dict[str, list[int]]:
    """Per-layer shift lists from a list (every layer) or a mapping layer → list.

    Raises:
        UserError: a mapping key that is not among ``layers``, or a shift below 1.
    """
    if isinstance(shifts, Mapping):
        unknown = sorted(set(shifts) - set(layers))
        if unknown:
            raise UserError(f"shifts given for {', '.join(unknown)}, which are not among the matched layers "
                            f"{', '.join(layers)}; add them to the layers or drop their shifts")
        out = {layer: [int(s) for s in shifts.get(layer, [])] for layer in layers}
    else:
        out = {layer: [int(s) for s in shifts] for layer in layers}
    for layer, values in out.items():
        bad = [s for s in values if s < 1]
        if bad:
            raise UserError(f"shifts must be >= 1 (a shift of 0 is the plain Gram matrix), got {bad} for {layer}")
    return out


def feature_hw(trunk: Trunk, layer: str, height: int, width: int) -> tuple[int, int]:
    """Spatial size of conv layer ``layer``'s output for an input of ``height x width``.

    Raises:
        UserError: the image is too small for the conv layers up to ``layer``.
    """
    h, w = height, width
    for spec in trunk.spec.layers:
        h, w = conv_output_hw(h, w, spec)
        if h <= 0 or w <= 0:
            raise UserError(f"a {height}x{width} image is too small for the {trunk.spec.name} trunk's layer "
                            f"{spec.name} (kernel {spec.kernel}, stride {spec.stride}); use a larger texture.size")
        if spec.name == layer:
            break
    return h, w


def check_conv_layers(trunk: Trunk, layers: Sequence[str] | None) -> list[str]:
    """The layers to match (``None``: every conv layer), checked.

    Raises:
        UserError: an unknown layer, a dense layer, or no layer at all.
    """
    convs = trunk.conv_names
    chosen = list(layers) if layers else convs
    for layer in chosen:
        if layer not in trunk.layer_names:
            raise UserError(f"the {trunk.spec.name} trunk has no layer {layer!r}; its conv layers are "
                            f"{', '.join(convs)}")
        if layer not in convs:
            raise UserError(f"layer {layer!r} of the {trunk.spec.name} trunk is dense; Gram losses need conv "
                            f"layers: {', '.join(convs)}")
    if not chosen:
        raise UserError(f"the {trunk.spec.name} trunk has no conv layer to match")
    return chosen


class TextureLoss(nn.Module):
    """Gram + shifted-Gram matching loss on a frozen trunk's conv layers (see the module docstring).

    Args:
        trunk: the guiding trunk (frozen in place).
        source: the source texture ``(1, C, H, W)`` in [0, 1]; the synthesised image has its size.
        layers: conv layers to match (``None``: all).
        layer_weights: ``w_l`` per layer (``None``: all 1).
        shifts: shifts δ (feature-map pixels) per layer, or one list for every layer; each is
            used horizontally ``(0, δ)`` and vertically ``(δ, 0)``.
        shift_weight: ``λ``.
        normalise: ``hw``, ``chw`` or ``none``.
        relative: divide each term by ``mean_ij A_ij²`` of its target (see the module docstring).
        alignment: ``pad`` or ``stem`` (how image channels enter the trunk).
        seed: seed of a ``stem``.
        mirror: mirror axes (``h``, ``v``) per layer, or one list for every layer: mirrored
            Gramians matched to the source's plain Gramian (symmetric textures).
        mirror_weight: ``μ``.
        center: subtracted from the pixels before the trunk (``None``: 0.5 for image specs, else
            0; :func:`~policyshare.vision.inputs.input_center`).

    Raises:
        UserError: unknown or dense layer, wrong number of weights, a shift not smaller than its
            layer's feature map, a mirror axis along which a layer's map has fewer than 2 pixels,
            or an image too small for the trunk.
        TextureFailure: a layer whose features are all zero on the source (nothing to match).
    """

    def __init__(self, trunk: Trunk, source: torch.Tensor, layers: Sequence[str] | None = None,
                 layer_weights: Sequence[float] | None = None,
                 shifts: Mapping[str, Sequence[int]] | Sequence[int] = (), shift_weight: float = 1.0,
                 normalise: Normalise = "hw", relative: bool = True, alignment: str = "pad",
                 seed: int = 0, mirror: Mapping[str, Sequence[str]] | Sequence[str] = (),
                 mirror_weight: float = 1.0, center: float | None = None) -> None:
        super().__init__()
        self.trunk = freeze(trunk)
        self.layers = check_conv_layers(trunk, layers)
        weights = list(layer_weights) if layer_weights is not None else [1.0] * len(self.layers)
        if len(weights) != len(self.layers):
            raise UserError(f"{len(weights)} layer weights for {len(self.layers)} layers "
                            f"({', '.join(self.layers)}); give one weight per layer")
        self.weights = dict(zip(self.layers, weights))
        self.shifts = resolve_shifts(shifts, self.layers)
        self.shift_weight = float(shift_weight)
        self.mirror = resolve_mirror(mirror, self.layers)
        self.mirror_weight = float(mirror_weight)
        self.normalise: Normalise = normalise
        self.relative = bool(relative)
        _norm(1, 1, normalise)
        h, w = int(source.shape[-2]), int(source.shape[-1])
        for layer in self.layers:
            fh, fw = feature_hw(trunk, layer, h, w)
            too_big = [s for s in self.shifts[layer] if s >= min(fh, fw)]
            if too_big:
                raise UserError(f"shift {too_big[0]} is not smaller than layer {layer}'s {fh}x{fw} feature map "
                                f"(for a {h}x{w} image); use shifts below {min(fh, fw)} or a larger image")
            for axis in self.mirror[layer]:
                if (fw if axis == "h" else fh) < 2:
                    raise UserError(f"layer {layer}'s {fh}x{fw} feature map (for a {h}x{w} image) is too small to "
                                    f"mirror {'left-right (h)' if axis == 'h' else 'top-bottom (v)'}; mirror earlier "
                                    "layers (--mirror LAYER:h,v) or use a larger image")
        self.center = input_center(trunk) if center is None else float(center)
        self.input = ImageInput(int(source.shape[1]), trunk.spec, alignment, fit="none", seed=seed,
                                center=self.center)
        self.input.requires_grad_(False)
        self.upto = max(self.layers, key=trunk.layer_names.index)
        with torch.no_grad():
            feats = self.feature_maps(source)
        for layer, f in feats.items():
            if not bool(f.abs().sum() > 0):
                raise TextureFailure(f"layer {layer} of the {trunk.spec.name} trunk gives all-zero features on "
                                     "this image (dead units), so there is nothing to match; choose other layers or "
                                     "a trunk with another activation")
        self.targets = {layer: self._grams(layer, f) for layer, f in feats.items()}
        self.scales = {layer: {k: max(float(a.pow(2).mean()), 1e-30) if self.relative else 1.0
                               for k, a in grams.items()} for layer, grams in self.targets.items()}
        # Mirrored Gramians are matched to the plain target (the module docstring).
        self.mirror_targets = {layer: self.targets[layer][(0, 0)] for layer in self.layers}

    def feature_maps(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The matched layers' outputs ``{layer: (1, C_l, H_l, W_l)}`` for ``image`` ``(1, C, H, W)``."""
        outs = self.trunk.forward_layers(self.input(image), upto=self.upto)
        return {name: outs[self.trunk.layer_names.index(name)] for name in self.layers}

    def _grams(self, layer: str, f: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """``{(dy, dx): Gram}`` of one layer's map: ``(0, 0)`` plain, then each shift both ways."""
        out = {(0, 0): gram(f, self.normalise)}
        for s in self.shifts[layer]:
            out[(0, s)] = shifted_gram(f, 0, s, self.normalise)
            out[(s, 0)] = shifted_gram(f, s, 0, self.normalise)
        return out

    def terms(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss's terms ``e``: ``{"<layer>/gram": …, "<layer>/shift_<dy>_<dx>": …, "<layer>/mirror_<h|v>": …}``
        (weights not applied)."""
        out: dict[str, torch.Tensor] = {}
        for layer, f in self.feature_maps(image).items():
            for (dy, dx), target in self.targets[layer].items():
                g = gram(f, self.normalise) if (dy, dx) == (0, 0) else shifted_gram(f, dy, dx, self.normalise)
                key = f"{layer}/gram" if (dy, dx) == (0, 0) else f"{layer}/shift_{dy}_{dx}"
                out[key] = (g - target).pow(2).mean() / self.scales[layer][(dy, dx)]
            for axis in self.mirror[layer]:
                g = mirrored_gram(f, axis, self.normalise)
                out[f"{layer}/mirror_{axis}"] = ((g - self.mirror_targets[layer]).pow(2).mean()
                                                 / self.scales[layer][(0, 0)])
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The weighted loss ``L(x)`` (a scalar) for ``image`` ``(1, C, H, W)``."""
        total = image.new_zeros(())
        for key, value in self.terms(image).items():
            layer, kind = key.split("/", 1)
            kind_weight = (1.0 if kind == "gram" else self.mirror_weight if kind.startswith("mirror")
                           else self.shift_weight)
            total = total + self.weights[layer] * kind_weight * value
        return total


@dataclass
class SynthesisResult:
    """A synthesised texture.

    Attributes:
        image: ``(1, C, H, W)`` in [0, 1], the iterate with the lowest loss.
        losses: ``losses[k]`` is the loss after ``k`` iterations (``losses[0]``: the initial noise).
        iterations: iterations run.
        stop: ``steps`` (ran them all), ``plateau`` (no new best for ``patience`` iterations) or
            ``optimizer: <message>`` (L-BFGS-B ended on its own after making progress).
    """

    image: torch.Tensor
    losses: list[float] = field(default_factory=list)
    iterations: int = 0
    stop: str = "steps"

    @property
    def initial_loss(self) -> float:
        """The loss of the initial noise."""
        return self.losses[0]

    @property
    def final_loss(self) -> float:
        """The lowest loss reached."""
        return min(self.losses)


class _Tracker:
    """Bookkeeping shared by both optimisers: the loss curve, the best image, stall and plateau rules."""

    def __init__(self, image: torch.Tensor, loss: float, patience: int, min_improvement: float,
                 log: ScalarLog) -> None:
        _check_finite(loss)
        self.result = SynthesisResult(image=image.clone(), losses=[loss])
        self.best, self.best_it = loss, 0
        self.patience, self.min_improvement, self.log = patience, min_improvement, log
        log("loss", loss, 0)

    def record(self, it: int, image: torch.Tensor, loss: float) -> bool:
        """Record the loss after ``it`` iterations; ``True`` means stop (plateau).

        Raises:
            TextureFailure: a non-finite loss, or a stall.
        """
        _check_finite(loss)
        r = self.result
        r.losses.append(loss)
        r.iterations = it
        self.log("loss", loss, it)
        if loss < self.best:
            self.best, self.best_it = loss, it
            r.image = image.detach().clone()
        initial = r.losses[0]
        if it >= self.patience and self.best > (1.0 - self.min_improvement) * initial:
            raise TextureFailure(f"texture synthesis stalled: the loss is {self.best:.4g} after {it} iterations, "
                                 f"not {self.min_improvement:.0%} below its initial {initial:.4g}; choose other "
                                 "--layers, another optimizer or --lr, or another trunk")
        if it - self.best_it >= self.patience:
            r.stop = "plateau"
            return True
        return False

    def finish(self, how: str = "") -> SynthesisResult:
        """The result, judged at the end of the run whatever the number of iterations.

        Args:
            how: why the optimiser ended, for the message (empty: it ran its steps or hit a plateau).

        Raises:
            TextureFailure: the best loss is not ``min_improvement`` below the initial one, so the
                "result" would be (close to) the starting noise.
        """
        r = self.result
        initial = r.losses[0]
        if self.best > (1.0 - self.min_improvement) * initial:
            ended = f" ({how})" if how else ""
            raise TextureFailure(f"texture synthesis stalled: the loss is {self.best:.4g} after {r.iterations} "
                                 f"iterations{ended}, not {self.min_improvement:.0%} below its initial "
                                 f"{initial:.4g}, so the result would be the starting noise; choose other --layers, "
                                 "another optimizer or --lr, more --steps, or another trunk")
        return r


def _check_finite(loss: float) -> None:
    if not math.isfinite(loss):
        raise TextureFailure(f"texture synthesis: the loss became {loss} (NaN or infinite); lower --lr, use "
                             "--optimizer lbfgs, or check the trunk file")


def synthesize(loss_fn: Callable[[torch.Tensor], torch.Tensor], shape: Sequence[int], *,
               optimizer: Literal["lbfgs", "adam"] = "lbfgs", steps: int = 100, lr: float = 0.05,
               patience: int = 20, min_improvement: float = 0.01, seed: int = 0,
               log: ScalarLog = no_log, init: torch.Tensor | None = None) -> SynthesisResult:
    """Optimise an image's pixels to minimise ``loss_fn`` (Gatys et al. 2015, Sec. 2).

    Both optimisers start from uniform noise in [0.25, 0.75] and keep every pixel in [0, 1]:

    * ``lbfgs`` — L-BFGS-B (SciPy) on the pixels with box constraints [0, 1], as Gatys et al.
      used L-BFGS; no learning rate.
    * ``adam`` — Adam (learning rate ``lr``) on logits ``z`` with ``x = sigmoid(z)``.

    Args:
        loss_fn: image ``(1, C, H, W)`` → scalar loss.
        shape: ``(1, C, H, W)``.
        optimizer: ``lbfgs`` or ``adam``.
        steps: iterations.
        lr: Adam's learning rate (L-BFGS-B needs none).
        patience: the loss must fall below ``(1 − min_improvement)`` × its initial value within
            this many iterations; and synthesis ends early when no new best appears for this many.
        min_improvement: relative decrease that counts as progress; the best loss must also be
            this far below the initial one at the end of the run, however few the iterations.
        seed: seed of the initial noise.
        log: receives ``loss`` per iteration (iteration 0: the initial noise).
        init: the starting image ``shape`` in [0, 1] instead of noise (clamped to
            [0.001, 0.999] for Adam's logits).

    Returns:
        The best image and the loss curve (``losses[k]``: after ``k`` iterations).

    Raises:
        TextureFailure: the loss or its gradient became NaN or infinite, or the loss stalled
            (did not fall by ``min_improvement`` within ``patience`` iterations, or by the end of
            a run shorter than that), e.g. dead features or a learning rate far too small or
            far too large.
        UserError: unknown optimizer.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise UserError(f"unknown optimizer {optimizer!r}; choose lbfgs or adam")
    if init is not None:
        if tuple(init.shape) != tuple(shape):
            raise UserError(f"the starting image has shape {tuple(init.shape)}, the result {tuple(shape)}")
        x0 = init.detach().float().clamp(0.0, 1.0).clone()
    else:
        gen = torch.Generator().manual_seed(seed)
        x0 = 0.25 + 0.5 * torch.rand(tuple(shape), generator=gen)
    if optimizer == "lbfgs":
        return _lbfgs(loss_fn, x0, steps, patience, min_improvement, log)
    return _adam(loss_fn, x0, steps, lr, patience, min_improvement, log)


def _adam(loss_fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int, lr: float, patience: int,
          min_improvement: float, log: ScalarLog) -> SynthesisResult:
    z = torch.logit(x0.clamp(0.001, 0.999)).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    image = torch.sigmoid(z)
    loss = loss_fn(image)
    tracker = _Tracker(image.detach(), float(loss.detach()), patience, min_improvement, log)
    for it in range(1, steps + 1):
        opt.zero_grad()
        loss.backward()
        opt.step()
        image = torch.sigmoid(z)
        loss = loss_fn(image)
        if tracker.record(it, image, float(loss.detach())):
            break
    return tracker.finish()


def _lbfgs(loss_fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int, patience: int,
           min_improvement: float, log: ScalarLog) -> SynthesisResult:
    import numpy as np
    from scipy.optimize import Bounds, OptimizeResult, minimize

    shape = tuple(x0.shape)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        image = torch.from_numpy(x).to(torch.float32).view(shape).requires_grad_(True)
        loss = loss_fn(image)
        value = float(loss.detach())
        _check_finite(value)
        (grad,) = torch.autograd.grad(loss, image)
        if not bool(torch.isfinite(grad).all()):
            raise TextureFailure("texture synthesis: the gradient became NaN or infinite; check the trunk file")
        return value, grad.double().numpy().ravel()

    start = x0.double().numpy().ravel()
    tracker = _Tracker(x0, fun(start)[0], patience, min_improvement, log)

    def callback(intermediate_result: OptimizeResult) -> None:
        image = torch.from_numpy(np.asarray(intermediate_result.x)).to(torch.float32).view(shape)
        if tracker.record(tracker.result.iterations + 1, image, float(intermediate_result.fun)):
            raise StopIteration

    res = minimize(fun, start, jac=True, method="L-BFGS-B", bounds=Bounds(0.0, 1.0), callback=callback,
                   options={"maxiter": steps, "maxfun": 20 * steps + 20, "ftol": 0.0, "gtol": 0.0, "maxcor": 50})
    r = tracker.result
    if r.stop == "steps" and r.iterations < steps:
        r.stop = f"optimizer: {res.message}"
        return tracker.finish(f"L-BFGS-B stopped: {res.message}")
    return tracker.finish()
