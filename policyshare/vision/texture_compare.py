"""Texture synthesis inside ``vision compare``: every texture, every variant, scored by held-out judges.

Per trunk, :func:`texture_step` synthesises each configured texture with Gram matrices only
(Gatys et al. 2015) and with Gram + shifted Gramians (Berger & Memisevic 2016) and scores each
synthesis with the ensemble texture judge
(:class:`~policyshare.vision.evaluators.TextureJudge`), validated first on each texture
(:func:`texture_judge`), as the worst evaluator's ratio to a held-out crop.
:func:`texture_baselines` writes the reference rows (held-out crop, initial noise, a deep
reference trunk) and :func:`check_texture_setup` refuses bad layers and shifts before anything
trains. Their report cells and gallery live in :mod:`.texture_report`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from policyshare.io import slug
from policyshare.trunks import Trunk
from policyshare.vision.config import VisionConfig
from policyshare.vision.data import save_png, texture_crops, to_grayscale
from policyshare.vision.evaluators import TextureJudge
from policyshare.vision.tb import VisionWriter, no_log
from policyshare.vision.texture import TextureFailure, TextureLoss, synthesize


def load_textures(cfg: VisionConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{name: (source, held-out reference)}`` crops of every configured texture.

    Raises:
        UserError: unknown name, undecodable file, or a crop larger than the image.
    """
    t = cfg.texture
    return {name: texture_crops(name, t.resize, t.size) for name in t.images}


def texture_variants(cfg: VisionConfig) -> dict[str, Mapping[str, Sequence[int]] | Sequence[int]]:
    """``{"gram": no shifts}`` plus ``{"gram+shift": texture.shifts}`` when shifts are configured."""
    shifts = cfg.texture.shifts
    variants: dict[str, Mapping[str, Sequence[int]] | Sequence[int]] = {"gram": []}
    if (any(shifts.values()) if isinstance(shifts, Mapping) else len(shifts) > 0):
        variants["gram+shift"] = shifts
    return variants


def image_label(name: str) -> str:
    """File-name-safe label of a texture name or path."""
    return slug(Path(name).stem) if ("/" in name or "." in name) else slug(name)


def judge_negatives(name: str, source: torch.Tensor, cfg: VisionConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """What a texture judge must rank below the held-out crop: crops of the other bundled textures and noise.

    Args:
        name: the texture (its own bundled texture is left out).
        source: its source crop ``(1, C, size, size)``; the others are brought to its channels.
        cfg: ``texture.resize`` and ``texture.size``.
        seed: seed of the noise (the synthesis's start: uniform in [0.25, 0.75]).

    Returns:
        ``{other texture: its held-out crop, "noise": noise}``, each shaped like ``source``.
    """
    from policyshare.vision.data import TEXTURES

    t = cfg.texture
    out: dict[str, torch.Tensor] = {}
    for other in TEXTURES:
        if other == name:
            continue
        crop = texture_crops(other, t.resize, t.size)[1][..., :source.shape[-2], :source.shape[-1]]
        if source.shape[1] == 1 and crop.shape[1] == 3:
            crop = to_grayscale(crop)
        elif source.shape[1] != crop.shape[1]:
            crop = crop[:, :1].expand(-1, source.shape[1], -1, -1)
        out[other] = crop.contiguous()
    gen = torch.Generator().manual_seed(seed)
    out["noise"] = 0.25 + 0.5 * torch.rand(source.shape, generator=gen)
    return out


def texture_judge(cfg: VisionConfig, textures: Mapping[str, tuple[torch.Tensor, torch.Tensor]], seed: int = 0
                  ) -> dict[str, tuple[TextureJudge, dict[str, Any]]]:
    """``{label: (judge, validation)}``: the ensemble judge of every texture, validated first.

    Raises:
        UserError: evaluator shifts too large for the texture size.
    """
    t = cfg.texture
    out: dict[str, tuple[TextureJudge, dict[str, Any]]] = {}
    for name, (source, reference) in textures.items():
        judge = TextureJudge(int(source.shape[1]), t.evaluator_seed, t.evaluator_shifts)
        out[image_label(name)] = (judge, judge.validate(source, reference, judge_negatives(name, source, cfg, seed)))
    return out


def _score(judge: TextureJudge, validation: Mapping[str, Any], image: torch.Tensor, source: torch.Tensor
           ) -> dict[str, Any]:
    sc = judge.score(image, source, validation)
    return {k: sc[k] for k in ("gram", "shifted_gram", "gram_median", "gram_min", "shifted_gram_median",
                               "shifted_gram_min", "fooled", "per_evaluator")}


def texture_step(trunk: Trunk, cfg: VisionConfig, textures: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                 out_dir: Path, writer: VisionWriter | None = None,
                 variants: Mapping[str, Mapping[str, Sequence[int]] | Sequence[int]] | None = None, seed: int = 0,
                 judges: Mapping[str, tuple[TextureJudge, Mapping[str, Any]]] | None = None,
                 ) -> dict[str, dict[str, dict[str, Any]]]:
    """Synthesise every texture with every variant; score it with the validated ensemble judge.

    Writes ``out_dir/<image>_<variant>.png`` (the result) and ``<image>_<variant>_pair.png``
    (source left, result right). A :class:`~policyshare.vision.texture.TextureFailure` (dead
    features, NaN, stalled loss) is recorded as ``{"error": message}`` for that cell and the
    rest goes on.

    Args:
        trunk: the guiding trunk (frozen in place).
        cfg: ``texture`` settings (mirror axes included) and the trunk's ``alignment``.
        textures: ``{name: (source, reference)}`` from :func:`load_textures`.
        out_dir: where PNGs go.
        writer: TensorBoard writer (``vision/texture/<image>/<variant>/…``).
        variants: ``{variant: shifts}`` (default :func:`texture_variants`).
        seed: initial-noise seed.
        judges: :func:`texture_judge`'s result (computed here when ``None``).

    Returns:
        ``{image: {variant: {"gram", "shifted_gram"`` (the worst evaluator's ratio to the held-out
        crop: 1 = as close as real texture, lower is better), ``"gram_median", "gram_min", …,
        "fooled", "per_evaluator", "layers", "initial_loss", "final_loss", "iterations", "stop"}}}``.

    Raises:
        UserError: unknown, dense or missing layers, wrong layer weights, shifts or mirror axes too large.
    """
    t = cfg.texture
    judges = judges if judges is not None else texture_judge(cfg, textures, seed)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, (source, _) in textures.items():
        label = image_label(name)
        judge, validation = judges[label]
        out[label] = {}
        for variant, shifts in (variants or texture_variants(cfg)).items():
            tag = f"texture/{label}/{variant}"
            try:
                loss = TextureLoss(trunk, source, t.layers, t.layer_weights, shifts, t.shift_weight, t.normalise,
                                   t.relative, cfg.trunk.alignment, seed, mirror=t.mirror,
                                   mirror_weight=t.mirror_weight)
                res = synthesize(loss, source.shape, optimizer=t.optimizer, steps=t.steps, lr=t.lr,
                                 patience=t.patience, min_improvement=t.min_improvement, seed=seed,
                                 log=writer.logger(tag) if writer else no_log)
            except TextureFailure as e:
                out[label][variant] = {"error": str(e)}
                continue
            d = _score(judge, validation, res.image, source)
            pair = torch.cat([source[0], torch.ones(source.shape[1], source.shape[2], 2), res.image[0]], dim=2)
            stem = f"{label}_{variant.replace('+', '_')}"
            save_png(out_dir / f"{stem}.png", res.image[0], upscale=2)
            save_png(out_dir / f"{stem}_pair.png", pair, upscale=2)
            if writer:
                writer.scalar(f"{tag}/gram_distance", d["gram"])
                writer.scalar(f"{tag}/shifted_gram_distance", d["shifted_gram"])
                writer.image(tag, pair)
            out[label][variant] = {**d, "layers": list(loss.layers), "initial_loss": res.initial_loss,
                                   "final_loss": res.final_loss, "iterations": res.iterations, "stop": res.stop}
    return out


def deep_texture_cfg(cfg: VisionConfig) -> VisionConfig:
    """``cfg`` for the deep reference trunk: every conv layer, ``texture.deep_shifts``, ``pad`` alignment."""
    import dataclasses

    t = dataclasses.replace(cfg.texture, layers=None, layer_weights=None, shifts=cfg.texture.deep_shifts, mirror=[])
    return dataclasses.replace(cfg, texture=t, trunk=dataclasses.replace(cfg.trunk, alignment="pad"))


def texture_baselines(textures: Mapping[str, tuple[torch.Tensor, torch.Tensor]], cfg: VisionConfig, out_dir: Path,
                      seed: int = 0, judges: Mapping[str, tuple[TextureJudge, Mapping[str, Any]]] | None = None,
                      deep: bool = True) -> dict[str, dict[str, Any]]:
    """The texture reference rows; writes source and held-out PNGs (and the deep reference's results).

    Per texture: the judge's validation (evaluators that rank the held-out crop above the other
    textures and noise), the held-out crop's and the noise's scores (ratios to the held-out
    crop, so the crop scores 1), and — with ``deep`` and ``texture.deep_trunk`` set — the
    syntheses on that deep trunk (``deep``: ``{variant: cell}``, PNGs ``<image>_deep_<variant>.png``).

    Raises:
        UserError: evaluator shifts too large for the texture size; a bad ``texture.deep_trunk``.
    """
    from policyshare.vision.inputs import load_trunk_ref

    judges = judges if judges is not None else texture_judge(cfg, textures, seed)
    out: dict[str, dict[str, Any]] = {}
    for name, (source, reference) in textures.items():
        label = image_label(name)
        judge, validation = judges[label]
        gen = torch.Generator().manual_seed(seed)
        noise = 0.25 + 0.5 * torch.rand(source.shape, generator=gen)
        save_png(out_dir / f"{label}_source.png", source[0], upscale=2)
        save_png(out_dir / f"{label}_reference.png", reference[0], upscale=2)
        out[label] = {"reference": _score(judge, validation, reference, source),
                      "noise": _score(judge, validation, noise, source),
                      "validation": {"passed": validation["passed"], "validated": validation["validated"],
                                     "evaluators": judge.describe()}}
    ref = cfg.texture.deep_trunk
    if deep and ref:
        dcfg = deep_texture_cfg(cfg)
        cells = texture_step(load_trunk_ref(ref, cfg.trunk, seed), dcfg, textures, out_dir, None,
                             texture_variants(dcfg), seed, judges)
        for label, variants in cells.items():
            out[label]["deep"] = {"trunk": ref, **variants}
            for variant in variants:
                stem = f"{label}_{variant.replace('+', '_')}"
                for suffix in (".png", "_pair.png"):
                    if (out_dir / f"{stem}{suffix}").is_file():
                        deep_stem = f"{label}_deep_{variant.replace('+', '_')}"
                        (out_dir / f"{stem}{suffix}").replace(out_dir / f"{deep_stem}{suffix}")
    return out


def check_texture_setup(trunk: Trunk, cfg: VisionConfig, textures: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                        variants: Mapping[str, Mapping[str, Sequence[int]] | Sequence[int]], seed: int = 0,
                        allow_dead: bool = True) -> None:
    """Build every texture loss once (one forward pass each) so bad layers or shifts fail before any work.

    Args:
        trunk: the trunk.
        cfg: texture settings.
        textures: ``{name: (source, reference)}``.
        variants: ``{variant: shifts}``.
        seed: seed of a ``stem`` alignment.
        allow_dead: let all-zero features pass (a comparison records them as a finding).

    Raises:
        UserError: unknown or dense layer, wrong layer weights, a shift not smaller than its
            feature map (trunk or evaluator), a mirror axis along a map too small to mirror.
        TextureFailure: all-zero features on a matched layer, unless ``allow_dead``.
    """
    t = cfg.texture
    for source, _ in textures.values():
        for shifts in variants.values():
            with contextlib.suppress(*((TextureFailure,) if allow_dead else ())):
                TextureLoss(trunk, source, t.layers, t.layer_weights, shifts, t.shift_weight, t.normalise,
                            t.relative, cfg.trunk.alignment, seed, mirror=t.mirror, mirror_weight=t.mirror_weight)
        TextureJudge(int(source.shape[1]), t.evaluator_seed, t.evaluator_shifts).distances(source, source)
