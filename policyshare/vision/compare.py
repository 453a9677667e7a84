"""The thesis table: for each trunk, probe accuracy, guided generation and texture distances.

:func:`compare` is the entry point (``policyshare vision compare`` and the end-to-end
experiment runner call it). Per trunk — ``random``, ``classify``, ``autoencoder``, or any trunk
file (an RL trunk, a distilled student, one written by ``policyshare vision pretrain``):

1. **probe** — linear-probe accuracy on the held-out test split (:mod:`.probe`);
2. **generate** — a noisy-image classifier on the frozen trunk guides the shared, cached DDPM
   prior (:mod:`.guidance`); the independent judge's accuracy on the samples and the
   classification accuracy score (:mod:`.evaluators`);
3. **texture** — Gram-only and Gram + shifted-Gram synthesis on the trunk's conv layers;
   scored by the ensemble texture judge (:class:`~policyshare.vision.evaluators.TextureJudge`),
   validated first on each texture, as the worst ratio over its evaluators to a held-out crop.

Reference rows make the figures readable: the unguided prior (scale 0), the judge on real
digits, a held-out crop of the same texture (1 by construction: as close as real texture), the
initial noise, and a synthesis on a trunk deep enough to carry a texture (``texture.deep_trunk``,
``image_deep``). ``report.md`` embeds the texture PNGs (source, held-out crop, Gram only,
Gram + shifts per trunk) with a legend.

Outputs in the run folder: ``metrics.json``, ``report.md`` (the Markdown table),
``<trunk>/samples.png`` and ``<trunk>/<image>_<variant>.png``, ``unguided.png`` (sample
grids: one row per class, labelled with its class), ``textures/`` (source, held-out crop and the
deep reference's syntheses), ``cache/`` (the diffusion
prior, unless ``diffusion.cache_dir`` is set or the run uses its default folder; see
:func:`~policyshare.vision.diffusion.cache_dir`), and TensorBoard events in ``tb/<trunk>/``
under ``vision/`` tags. A folder left unfinished by a failed or killed run is moved aside to
``.replaced/`` beside it and the run starts again (:func:`open_run`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from policyshare.config import to_dict
from policyshare.errors import UserError
from policyshare.io import slug
from policyshare.runs import RunFolder, default_run_dir
from policyshare.trunks import Trunk
from policyshare.vision.config import VisionConfig, load_vision_config
from policyshare.vision.data import (
    Splits,
    grid,
    label_rows,
    load_dataset,
    save_png,
    split,
    subsample,
    texture_crops,
    to_grayscale,
)
from policyshare.vision.diffusion import DDPM, load_or_train_prior
from policyshare.vision.evaluators import DigitJudge, TextureJudge, classification_accuracy_score
from policyshare.vision.guidance import Samples, clean_accuracy, generate, train_noisy_classifier
from policyshare.vision.probe import check_layer, linear_probe
from policyshare.vision.tb import VisionWriter, no_log
from policyshare.vision.texture import TextureFailure, TextureLoss, synthesize

log = logging.getLogger(__name__)


@dataclass
class Context:
    """The trunk-independent parts of a comparison, prepared once.

    Attributes:
        cfg: the config.
        seed: the run seed.
        splits: train / eval / test splits of the labelled data.
        judge: the independent classifier (trained on ``splits.eval``), for generation.
        prior: the cached diffusion prior (``None`` when generation is not needed).
        prior_info: where the prior came from (cache file, whether cached).
        textures: ``{name: (source, reference)}`` crops, each ``(1, C, size, size)``.
        timing: wall-clock seconds (``prior_s``); kept out of ``metrics.json``.
    """

    cfg: VisionConfig
    seed: int
    splits: Splits
    judge: DigitJudge | None = None
    prior: DDPM | None = None
    prior_info: dict[str, Any] = field(default_factory=dict)
    textures: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)


def load_splits(cfg: VisionConfig) -> Splits:
    """The configured dataset, subsampled and split (split seed from the config, not the run seed).

    Raises:
        UserError: unknown dataset, unreadable files, or too few images per class.
    """
    d = cfg.data
    data = subsample(load_dataset(d.dataset, image_size=d.image_size, grayscale=d.grayscale), d.max_images,
                     d.split_seed)
    return split(data, d.train_fraction, d.eval_fraction, d.split_seed)


def prepare(cfg: VisionConfig, seed: int, *, generation: bool = True, textures: bool = True,
            writer: VisionWriter | None = None, run_dir: Path | None = None) -> Context:
    """Load data, train the judge, load or train the prior and crop the textures (one ``INFO`` line
    per stage on the ``policyshare.vision.compare`` logger).

    Args:
        cfg: the config.
        seed: the run seed.
        generation: train the judge and load or train the prior.
        textures: crop the textures.
        writer: TensorBoard writer of the prior's training loss.
        run_dir: the run folder the user chose (``--run-dir``), where the prior is cached unless
            ``diffusion.cache_dir`` is set (``None``: the shared default cache; see
            :func:`~policyshare.vision.diffusion.cache_dir`).

    Raises:
        UserError: bad data or texture sources.
        NumericalError: the prior's training diverged.
    """
    ctx = Context(cfg, seed, load_splits(cfg))
    if generation:
        ctx.judge = DigitJudge(ctx.splits.eval, cfg.guidance.judge_c)
        log.info("diffusion prior: loading from cache or training (once per config)")
        t0 = time.perf_counter()
        prior, path, cached = load_or_train_prior(ctx.splits.train.images, cfg.diffusion, seed,
                                                  writer.logger("prior") if writer else no_log, run_dir)
        ctx.prior = prior
        ctx.prior_info = {"cache_file": str(path), "from_cache": cached}
        ctx.timing["prior_s"] = round(time.perf_counter() - t0, 1)
    if textures:
        ctx.textures = load_textures(cfg)
    return ctx


def load_textures(cfg: VisionConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{name: (source, held-out reference)}`` crops of every configured texture.

    Raises:
        UserError: unknown name, undecodable file, or a crop larger than the image.
    """
    t = cfg.texture
    return {name: texture_crops(name, t.resize, t.size) for name in t.images}


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Per-trunk steps (also used by the single-purpose commands)


def probe_step(trunk: Trunk, ctx: Context, writer: VisionWriter | None = None) -> dict[str, Any]:
    """Linear-probe the frozen trunk; ``vision/probe/accuracy`` to TensorBoard.

    Raises:
        UserError: unknown ``probe.layer``.
    """
    result, _ = linear_probe(trunk, ctx.splits.train, ctx.splits.test, ctx.cfg.probe, ctx.cfg.trunk, ctx.seed)
    if writer:
        writer.scalar("probe/accuracy", result.accuracy)
    out = result.to_dict()
    out.pop("losses")
    return out


def samples_grid(samples: Samples, classes: Sequence[str], columns: int = 10, upscale: int = 4) -> torch.Tensor:
    """One row per class, the first ``columns`` samples of each, each row labelled with its class.

    Args:
        samples: ordered class by class, the same number per class.
        classes: class names, indexed by label (the labels written beside the rows).
        columns: samples shown per class.
        upscale: nearest-neighbour enlargement of the samples.

    Returns:
        ``(C, H', W')`` in [0, 1]: the enlarged grid with a label margin on its left.
    """
    n_classes = len(classes)
    per = len(samples.labels) // n_classes
    pick = torch.cat([torch.arange(k * per, k * per + min(columns, per)) for k in range(n_classes)])
    return label_rows(grid(samples.images[pick], min(columns, per)), [str(c) for c in classes], upscale)


def unguided_step(ctx: Context, out_dir: Path, writer: VisionWriter | None = None) -> dict[str, Any]:
    """Samples of the prior alone (scale 0): judge accuracy against arbitrary targets (chance) and CAS."""
    assert ctx.prior is not None and ctx.judge is not None, "prepare(generation=True) first"
    g = ctx.cfg.guidance
    n_classes = len(ctx.splits.train.classes)
    s = generate(ctx.prior, None, n_classes, g.per_class, 0.0, ctx.seed)
    image = samples_grid(s, ctx.splits.train.classes)
    save_png(out_dir / "unguided.png", image)
    acc = ctx.judge.accuracy(s.images, s.labels)
    cas = classification_accuracy_score(s.images, s.labels, ctx.splits.test, g.judge_c)
    if writer:
        writer.scalar("generate/accuracy", acc)
        writer.scalar("generate/cas", cas)
        writer.image("generate/samples", image)
    return {"scale": 0.0, "accuracy": acc, "cas": cas, "n_samples": len(s.labels)}


def generation_step(trunk: Trunk, ctx: Context, out_dir: Path, writer: VisionWriter | None = None,
                    scale: float | None = None) -> dict[str, Any]:
    """Train the trunk's noisy classifier, sample with guidance, judge the samples.

    Writes ``out_dir/samples.png`` (one row per class, labelled). TensorBoard: ``vision/guide/loss``,
    ``vision/generate/accuracy``, ``vision/generate/cas``, ``vision/generate/samples``.

    Returns:
        ``{"scale", "accuracy", "cas", "guide_clean_accuracy", "judge_accuracy", "n_samples"}``: the
        judge's accuracy on the samples (against their targets), CAS, the guiding classifier's
        accuracy on clean test digits, and the judge's own accuracy on real test digits.

    Raises:
        UserError: unknown ``probe.layer``.
        NumericalError: diverging training or non-finite samples.
    """
    assert ctx.prior is not None and ctx.judge is not None, "prepare(generation=True) first"
    g = ctx.cfg.guidance
    s_value = g.scale if scale is None else scale
    n_classes = len(ctx.splits.train.classes)
    clf = train_noisy_classifier(trunk, ctx.splits.train, ctx.prior.schedule, ctx.cfg.trunk, g, ctx.cfg.probe.layer,
                                 ctx.seed, writer.logger("guide") if writer else no_log)
    s = generate(ctx.prior, clf, n_classes, g.per_class, s_value, ctx.seed)
    image = samples_grid(s, ctx.splits.train.classes)
    save_png(out_dir / "samples.png", image)
    acc = ctx.judge.accuracy(s.images, s.labels)
    cas = classification_accuracy_score(s.images, s.labels, ctx.splits.test, g.judge_c)
    if writer:
        writer.scalar("generate/accuracy", acc)
        writer.scalar("generate/cas", cas)
        writer.image("generate/samples", image)
    return {"scale": s_value, "accuracy": acc, "cas": cas, "guide_clean_accuracy": clean_accuracy(clf, ctx.splits.test),
            "judge_accuracy": ctx.judge.accuracy(ctx.splits.test.images, ctx.splits.test.labels),
            "n_samples": len(s.labels)}


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


# --------------------------------------------------------------------------------------------
# The table


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, float) and math.isfinite(v) else "—"


def _num(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else "—"


def markdown_table(metrics: Mapping[str, Any]) -> str:
    """The thesis table (Markdown) from :func:`compare`'s metrics."""
    results: Mapping[str, Any] = metrics["results"]
    base = metrics["baselines"]
    images = list(base.get("texture", {}))
    variants = list(metrics.get("texture_variants", []))
    scale = metrics.get("guidance_scale")
    head = ["trunk", "probe acc.", f"guided acc. (s={scale})", "CAS"]
    for img in images:
        for v in variants:
            head += [f"{img} Gram d. [{v}]", f"{img} shifted d. [{v}]"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for label, r in results.items():
        cells = [f"`{label}`", _pct(r.get("probe", {}).get("accuracy")), _pct(r.get("generate", {}).get("accuracy")),
                 _pct(r.get("generate", {}).get("cas"))]
        for img in images:
            for v in variants:
                cell = r.get("texture", {}).get(img, {}).get(v, {})
                if "error" in cell:
                    cells += ["failed", "failed"]
                else:
                    cells += [_num(cell.get("gram")), _num(cell.get("shifted_gram"))]
        rows.append("| " + " | ".join(cells) + " |")
    ung = base.get("unguided", {})
    tex = base.get("texture", {})
    deep_ref = next((tex[i]["deep"]["trunk"] for i in images if "deep" in tex.get(i, {})), None)
    for label, acc, cas, key in (("unguided prior (s=0)", ung.get("accuracy"), ung.get("cas"), None),
                                 ("real digits", base.get("judge_accuracy"), base.get("real_cas"), None),
                                 ("held-out crop of the source", None, None, "reference"),
                                 ("initial noise", None, None, "noise"),
                                 (f"deep texture trunk {deep_ref}", None, None, "deep")):
        if key == "deep" and deep_ref is None:
            continue
        cells = [f"*{label}*", "—", _pct(acc), _pct(cas)]
        for img in images:
            for v in variants:
                cells += _texture_reference_cells(tex.get(img, {}), key, v)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _texture_reference_cells(tex: Mapping[str, Any], key: str | None, variant: str) -> list[str]:
    """The two texture cells of a reference row (``reference``, ``noise`` or ``deep`` per variant)."""
    d = tex.get(key, {}) if key else {}
    if key == "deep":
        d = d.get(variant, {})
        if "error" in d:
            return ["failed", "failed"]
    return [_num(d.get("gram")), _num(d.get("shifted_gram"))]


TEXTURE_LEGEND = (
    "* **Gram d. / shifted d.** (texture): how far a synthesis is from its source texture under an ensemble of "
    "held-out judges of different architectures and depths (random conv nets with 3x3, 5x5 and 7x7/11x11 kernels, "
    "a multi-scale pyramid, Gabor filter-bank energies, intensity histograms and co-occurrence matrices), never the "
    "trunk that generated it. Each judge's distance is divided by its distance for a held-out crop of the same "
    "texture, and the cell is the **worst** judge's ratio: 1 means as close as another piece of the real texture, "
    "above 1 is worse — **lower is better, 1 is the floor a perfect synthesis reaches**. A judge is used for a "
    "texture only after it ranks the held-out crop above the other bundled textures and noise. [gram]: synthesis "
    "matched Gramians only (Gatys et al. 2015); [gram+shift]: also shifted Gramians (Berger & Memisevic 2016).")


def texture_gallery_markdown(metrics: Mapping[str, Any], prefix: str = "") -> str:
    """The texture PNGs as a Markdown table with a legend: source and held-out crop, then per trunk each variant.

    Args:
        metrics: :func:`compare`'s metrics.
        prefix: prepended to every image path (the vision run folder relative to the report).
    """
    base = metrics["baselines"].get("texture", {})
    variants = list(metrics.get("texture_variants", []))
    if not base:
        return ""
    names = {"gram": "Gram only", "gram+shift": "Gram + shifts"}
    lines = ["## Textures", "",
             "Columns: **source** — the crop every synthesis matches; **held-out crop** — another piece of the same "
             "texture, the best a synthesis can look; then, per trunk, **Gram only** (Gatys et al. 2015) and "
             "**Gram + shifts** (Berger & Memisevic 2016): syntheses from noise on the trunk's conv layers. Under "
             "each synthesis: the worst judge's ratio to the held-out crop (1 = as close as real texture; lower "
             "is better) and the judges it fooled (scored it at least as close as the held-out crop), if any.", ""]
    for img, b in base.items():
        lines += [f"### {img}", "",
                  "| source | held-out crop |", "|:---:|:---:|",
                  f"| ![source]({prefix}textures/{img}_source.png) | "
                  f"![held-out]({prefix}textures/{img}_reference.png) |",
                  "", "| trunk | " + " | ".join(names.get(v, v) for v in variants) + " |",
                  "|---|" + "|".join([":---:"] * len(variants)) + "|"]
        rows: list[tuple[str, str, Mapping[str, Any]]] = [
            (label, f"{label}/{img}_", r.get("texture", {}).get(img, {})) for label, r in metrics["results"].items()]
        if "deep" in b:
            rows.append((f"{b['deep']['trunk']} (deep reference)", f"textures/{img}_deep_", b["deep"]))
        for label, stem, cells in rows:
            out = [f"`{label}`"]
            for v in variants:
                cell = cells.get(v, {})
                if "error" in cell or not cell:
                    out.append("failed" if "error" in cell else "—")
                    continue
                fooled = f" fooled: {', '.join(cell['fooled'])}" if cell.get("fooled") else ""
                out.append(f"![{label} {v}]({prefix}{stem}{v.replace('+', '_')}.png)<br>{_num(cell.get('gram'))} / "
                           f"{_num(cell.get('shifted_gram'))}{fooled}")
            lines.append("| " + " | ".join(out) + " |")
        failed = [e for e, ok in b.get("validation", {}).get("passed", {}).items() if not ok]
        lines += ["", f"Judges validated on {img}: {', '.join(b.get('validation', {}).get('validated', []))}"
                  + (f"; left out (did not rank the held-out crop first): {', '.join(failed)}" if failed else "") + ".",
                  ""]
    return "\n".join(lines) + "\n"


def report_markdown(metrics: Mapping[str, Any], wall_seconds: float | None = None) -> str:
    """``report.md``: the table plus what each column means (and the wall time, if given)."""
    data = metrics["data"]
    lines = [
        "# Vision comparison: classification, guided generation and texture synthesis per trunk",
        "",
        markdown_table(metrics),
        f"Data: {data['dataset']} — train {data['train']} (trunks, heads, prior), eval {data['eval']} (judge only), "
        f"test {data['test']} (every accuracy). Probe and texture columns: seed {metrics['seed']}"
        + (f"; wall time {wall_seconds:.0f} s." if wall_seconds is not None else "."),
        "",
        "* **probe acc.**: linear probe on the frozen trunk's features, test split.",
        "* **guided acc.**: share of class-conditional samples of the classes no trunk was labelled with "
        "(thesis.target_classes; prior guided by a noisy classifier on the frozen trunk, at the trunk's best swept "
        "scale, mean over seeds) that an independent RBF-SVM, trained on the eval split, assigns to their target "
        "class. Intervals, matched diversity and paired differences: the sections below.",
        "* **CAS**: classification accuracy score — the same SVM trained on the generated samples only, tested on "
        "real test digits of those classes.",
        TEXTURE_LEGEND,
        "* Reference rows: the prior unguided (targets are arbitrary, so chance); real digits (the judge on real test "
        "digits, and the CAS classifier trained on the real training split); a held-out crop of the same texture "
        "(1 by construction: what a perfect synthesis scores), the initial noise, and syntheses on a trunk deep "
        "enough to carry a texture (texture.deep_trunk).",
        "",
        texture_gallery_markdown(metrics),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry point


def open_run(path: str | Path, command: str, cfg: VisionConfig, seed: int) -> RunFolder:
    """Open a vision run folder; an unfinished run found there is moved aside, with a note.

    Vision runs keep no checkpoints, so a run that failed or was killed cannot be resumed: its
    folder goes to ``<parent>/.replaced/<time>-<name>`` (:func:`policyshare.runs.move_aside`)
    and the same command starts afresh. ``config.yaml`` is the resolved config, reusable with
    ``--config``.

    Raises:
        UserError: the folder holds a finished run, or another running process writes to it.
    """
    run = RunFolder.open(path, command=command, config=to_dict(cfg), seed=seed, restart=True)
    if run.replaced is not None:
        log.info(f"note: {run.path} held an unfinished run (failed or killed; vision runs keep no checkpoints); "
                 f"moved it aside to {run.replaced}")
    return run


def preflight(trunks: Sequence[str], cfg: VisionConfig, seed: int) -> None:
    """Check every trunk reference, texture, layer and shift in seconds, before anything trains.

    ``classify`` and ``autoencoder`` are checked on an untrained trunk of the configured spec.

    Raises:
        UserError: unknown reference, texture, layer or layer weight count; a shift not smaller
            than its feature map (trunk or evaluator).
        CheckpointError: an unreadable trunk file or one of an unknown spec.
    """
    from policyshare.vision.inputs import PRETRAINED_REFS, load_trunk_ref, random_trunk

    textures = load_textures(cfg)
    for ref in trunks:
        trunk = random_trunk(cfg.trunk, seed) if ref in PRETRAINED_REFS else load_trunk_ref(ref, cfg.trunk, seed)
        check_texture_setup(trunk, cfg, textures, texture_variants(cfg), seed)
        check_layer(trunk, cfg.probe.layer)
    if cfg.texture.deep_trunk:
        dcfg = deep_texture_cfg(cfg)
        check_texture_setup(load_trunk_ref(cfg.texture.deep_trunk, cfg.trunk, seed), dcfg, textures,
                            texture_variants(dcfg), seed)


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


def compare(trunks: Sequence[str], config: VisionConfig | str | Path | None = None,
            run_dir: str | Path | None = None, seed: int = 0,
            seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Run the thesis table over ``trunks`` and write it to a run folder.

    The generation side runs over ``seeds`` (:mod:`.thesis`): per seed a prior, the trunks, a
    guidance-scale sweep, few-label probes and battles; per trunk the figures with intervals,
    paired differences and two verdicts. Probe and texture columns come from the first seed.
    Each stage is logged in one ``INFO`` line.

    Args:
        trunks: references: ``random``, ``random:SPEC``, ``classify``, ``autoencoder`` (trained
            here on the training split) or trunk files.
        config: a :class:`VisionConfig`, a YAML path, or ``None`` for ``configs/vision.yaml``.
        run_dir: the run folder (default ``runs/vision/compare__s<seed>``); a finished run is never
            overwritten, an unfinished one is moved aside (:func:`open_run`). The diffusion prior
            is cached in ``run_dir/cache`` unless ``diffusion.cache_dir`` is set (default folder:
            the shared ``runs/vision/cache``).
        seed: seeds trunks, heads, samplers and texture noise (not the data split) when ``seeds``
            is not given.
        seeds: the seeds of the generation side (``--seeds 0-4``); the first one also seeds the
            probe and texture columns. Default ``[seed]``.

    Returns:
        The metrics written to ``metrics.json``: ``results`` per trunk label (``probe``,
        ``generate``, ``texture``, ``source``), ``baselines``, ``data``,
        ``thesis`` (:func:`~policyshare.vision.thesis.aggregate`), ``thesis_seeds`` (each seed's
        curves, probes and battle counts), ``seeds`` …, plus ``run_dir`` and
        ``timing`` (what ``timing.json`` holds: ``wall_s``, ``prior_s``, ``trunks_s`` per label;
        wall-clock seconds stay out of ``metrics.json``, which same-seed reruns reproduce).

    Raises:
        UserError: no trunks, no seeds, a bad trunk reference, data, layer, shift or thesis class; a run folder that
            holds a finished run or is in use (an unfinished one is moved aside, see
            :func:`open_run`).
        CheckpointError: an unreadable trunk file or one of an unknown spec.
        NumericalError: diverging training.
    """
    start = time.perf_counter()
    if not trunks:
        raise UserError("no trunks to compare; pass --trunks random classify autoencoder [TRUNK_FILE …]")
    seed_list = list(dict.fromkeys(seeds)) if seeds is not None else [seed]
    if not seed_list:
        raise UserError("no seeds to run; pass --seeds 0-4 (a range whose start is not above its end) or --seed N")
    cfg = config if isinstance(config, VisionConfig) else load_vision_config(config)
    with torch_threads(cfg.threads):
        return _compare(list(trunks), cfg, run_dir, seed_list, start)


def _compare(trunks: list[str], cfg: VisionConfig, run_dir: str | Path | None, seeds: list[int],
             start: float) -> dict[str, Any]:
    """:func:`compare` once its arguments are checked: baselines, the seeds' generation side, one
    row per trunk, then the report."""
    from policyshare.vision.inputs import unique_labels
    from policyshare.vision.thesis import aggregate, check_classes, make_judges, run_seed
    from policyshare.vision.thesis_report import plot_guidance_curves, thesis_markdown

    seed = seeds[0]
    labels = unique_labels(list(trunks))
    preflight(trunks, cfg, seed)  # bad input is refused before the folder is touched
    check_classes(cfg, len(load_splits(cfg).train.classes), cfg.data.dataset)
    default = (default_run_dir("vision", "compare", seed) if len(seeds) == 1
               else default_run_dir("vision", "compare", method="seeds-" + "_".join(str(s) for s in seeds)))
    run = open_run(run_dir or default, "vision compare", cfg, seed)
    ctx, baselines, judges = _baselines(cfg, seed, run, run_dir is not None)
    metrics: dict[str, Any] = {"command": "vision compare", "seed": seed, "seeds": seeds,
                               "trunks": dict(zip(labels, trunks)), "data": ctx.splits.describe(),
                               "guidance_scale": "best", "texture_variants": list(texture_variants(cfg)),
                               "prior": ctx.prior_info, "baselines": baselines, "results": {}}
    # The generation side over seeds: trunks, guidance sweeps, few-label probes, battles.
    gen_judges = make_judges(ctx.splits, cfg, ctx.judge)
    cache_run = run.path if run_dir is not None else None
    seed_runs = [run_seed(trunks, labels, cfg, s, ctx.splits, gen_judges, ctx.prior if s == seed else None, cache_run)
                 for s in seeds]
    first = seed_runs[0]
    per_seed = [r.result for r in seed_runs]
    metrics["thesis"] = aggregate(per_seed, labels, cfg)
    metrics["thesis_seeds"] = per_seed
    plot_guidance_curves(per_seed, labels, run.path / "guidance_curves.png")
    target_names = [ctx.splits.train.classes[c] for c in cfg.thesis.target_classes]
    if first.unguided is not None:
        save_png(run.path / "unguided_targets.png", samples_grid(first.unguided, target_names))
    trunk_seconds: dict[str, float] = {}
    for label, ref in zip(labels, trunks):
        t0 = time.perf_counter()
        row = _trunk_row(label, ref, first, ctx, metrics["thesis"], run, target_names, judges)
        seconds = round(time.perf_counter() - t0, 1)
        trunk_seconds[label] = seconds
        metrics["results"][label] = row
        log.info(f"{label}: probe {row['probe']['accuracy']:.3f}, guided {row['generate']['accuracy']:.3f}, "
                 f"CAS {row['generate']['cas']:.3f} ({seconds:.0f} s)")
    from policyshare.io import atomic_write_json, atomic_write_text

    wall = round(time.perf_counter() - start, 1)
    timing: dict[str, Any] = {"wall_s": wall, **ctx.timing, "trunks_s": trunk_seconds,
                              "seeds": {str(r.result["seed"]): r.timing for r in seed_runs}}
    atomic_write_json(run.path / "timing.json", timing)
    atomic_write_text(run.path / "report.md",
                      report_markdown(metrics, wall) + "\n" + thesis_markdown(metrics["thesis"], cfg))
    run.write_metrics(metrics)
    metrics["run_dir"] = str(run.path)
    metrics["timing"] = timing
    return metrics


def _baselines(cfg: VisionConfig, seed: int, run: RunFolder, cache_in_run: bool
               ) -> tuple[Context, dict[str, Any], dict[str, tuple[TextureJudge, dict[str, Any]]]]:
    """The shared context (data, judge, prior, textures) and the baselines every trunk is read
    against — the judge's accuracy on real test digits, the real data's classification accuracy
    score, the unguided prior, held-out texture crops: ``(context, baselines, texture judges)``."""
    base_writer = VisionWriter(run.tb_dir / "baselines")
    try:
        ctx = prepare(cfg, seed, writer=base_writer, run_dir=run.path if cache_in_run else None)
        log.info("baselines: unguided prior, held-out texture crops")
        (run.path / "textures").mkdir(exist_ok=True)
        baselines: dict[str, Any] = {
            "judge_accuracy": ctx.judge.accuracy(ctx.splits.test.images, ctx.splits.test.labels) if ctx.judge else None,
            "real_cas": classification_accuracy_score(ctx.splits.train.images, ctx.splits.train.labels,
                                                      ctx.splits.test, cfg.guidance.judge_c),
            "unguided": unguided_step(ctx, run.path, base_writer),
            "texture": texture_baselines(ctx.textures, cfg, run.path / "textures", seed,
                                         judges := texture_judge(cfg, ctx.textures, seed))}
    finally:
        base_writer.close()
    return ctx, baselines, judges


def _trunk_row(label: str, ref: str, first: Any, ctx: Context, thesis: Mapping[str, Any], run: RunFolder,
               target_names: list[str], judges: Mapping[str, tuple[TextureJudge, Mapping[str, Any]]]
               ) -> dict[str, Any]:
    """One trunk's row of the table, from the first seed's trunk: linear probe, the thesis's
    generation figures (best guidance scale, samples), texture synthesis; written under
    ``<run>/<label>/`` and its TensorBoard run."""
    from policyshare.vision.thesis import thesis_generation_row

    out_dir = run.path / label
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = VisionWriter(run.tb_dir / label)
    try:
        trunk = first.trunks[label]  # the first seed's trunk (classify: trained on thesis.pretrain_classes)
        log.info(f"{label}: linear probe")
        row: dict[str, Any] = {"ref": ref, "spec": trunk.spec.to_dict()["name"],
                               "activation": trunk.spec.activation,
                               "source": (trunk.header or {}).get("source", {})}
        row["probe"] = probe_step(trunk, ctx, writer)
        row["generate"] = thesis_generation_row(thesis, first.result["trunks"][label], label)
        if label in first.best_samples:
            image = samples_grid(first.best_samples[label], target_names)
            save_png(out_dir / "samples.png", image)
            writer.image("generate/samples", image)
        writer.scalar("generate/accuracy", row["generate"]["accuracy"])
        writer.scalar("generate/cas", row["generate"]["cas"])
        log.info(f"{label}: texture synthesis")
        row["texture"] = texture_step(trunk, ctx.cfg, ctx.textures, out_dir, writer, seed=ctx.seed, judges=judges)
    finally:
        writer.close()
    return row
