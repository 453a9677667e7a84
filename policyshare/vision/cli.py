"""``policyshare vision probe|pretrain|texture|transfer|generate|compare``.

Each subcommand writes one run folder (``--run-dir``, default ``runs/vision/<sub>__<trunk>__s<seed>``)
holding ``config.yaml``, ``meta.json``, ``metrics.json``, PNGs and TensorBoard events under
``tb/`` with ``vision/`` tags. Bad input (an image that does not decode, a trunk file of an
unknown spec, a layer the trunk does not have, a shift larger than the feature map, a mirror axis
along a map too small to mirror, a content and a style image of different channel counts) ends with
one line on stderr and exit status 2, before the run folder is touched; so does a texture
synthesis that makes no progress, without writing its result or ``metrics.json``. Vision runs
keep no checkpoints: a folder left unfinished by a failed or killed run is moved aside to
``.replaced/`` beside it on the next run, with a note, so the same command works again.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from policyshare.errors import UserError

log = logging.getLogger(__name__)

TRUNK_HELP = ("random (the configured spec, seeded), random:SPEC (minatar, minatar_deep, nature, image_deep: six conv "
              "layers deep enough for textures and styles), zoo:ENV_ID (the trunk of the zoo's expert of training "
              "seed 0, e.g. zoo:MinAtar/Breakout-v1; zoo:ENV_ID@sN for seed N), classify or "
              "autoencoder (trained here on the digits' training split), or a trunk file (.safetensors, e.g. "
              "runs/train/…/trunk.safetensors)")


def add_vision_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``vision`` and its subcommands to the ``policyshare`` subparsers ``sub``."""
    p = sub.add_parser(
        "vision", help="reuse a trunk for images: probe, pretrain, texture, transfer, generate, compare",
        description="The vision side: the same trunk classifies digits (linear probe), synthesises textures from "
        "its Gramians and guides a diffusion model's class-conditional samples. Metrics never use the guiding "
        "trunk: an ensemble of held-out evaluators for textures, an independent SVM for digits.")
    vsub = p.add_subparsers(dest="vision_command", metavar="SUBCOMMAND", parser_class=parser_class, required=True)
    _probe(vsub)
    _pretrain(vsub)
    _texture(vsub)
    _transfer(vsub)
    _generate(vsub)
    _compare(vsub)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, metavar="YAML", help="vision config (default: configs/vision.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set guidance.scale=2 (repeatable)")
    p.add_argument("--run-dir", default=None, metavar="DIR",
                   help="run folder (default: runs/vision/<subcommand>__<trunk>__s<seed>); an unfinished run there "
                   "(failed or killed) is moved aside to .replaced/ beside it")
    p.add_argument("--seed", type=int, default=0, help="seed of trunks, heads, samplers, noise (default: 0)")


def _probe(sub: Any) -> None:
    p = sub.add_parser(
        "probe", help="classification accuracy of a linear probe (or fine-tuning) on a trunk",
        description="Fit a linear classifier on the frozen trunk's features (and, with --finetune, train trunk and "
        "head together) on the training split; report held-out test accuracy. Writes metrics.json and TensorBoard "
        "scalars vision/probe/accuracy; with --finetune also the fine-tuned trunk.safetensors.")
    p.add_argument("--trunk", required=True, metavar="TRUNK", help=TRUNK_HELP)
    p.add_argument("--data", default=None, metavar="SOURCE",
                   help="digits (default), mnist:DIR, cifar10:DIR (binary version) or a folder of class sub-folders")
    p.add_argument("--layer", default=None, metavar="NAME", help="trunk layer to read (default: the last)")
    p.add_argument("--finetune", action="store_true", help="also fine-tune trunk and head; save the trunk")
    _common(p)
    p.set_defaults(handler=_threads(_cmd_probe))


def _pretrain(sub: Any) -> None:
    p = sub.add_parser(
        "pretrain", help="train a trunk on digits by classification or as a denoising autoencoder",
        description="Train a fresh trunk (trunk.* of the config) on the digits' training split — by classification "
        "(cross-entropy with a linear head) or generatively as a denoising autoencoder (optionally with zero-bias "
        "TRec/TLin units via --activation) — and save it as trunk.safetensors, usable by every command that takes "
        "a trunk file. Also writes the linear-probe accuracy of the result to metrics.json.")
    p.add_argument("--method", required=True, choices=["classify", "autoencoder"], help="how to train")
    p.add_argument("--activation", default=None, choices=["relu", "trec", "tlin"],
                   help="the trunk's activation (default: trunk.activation of the config)")
    _common(p)
    p.set_defaults(handler=_threads(_cmd_pretrain))


def _texture(sub: Any) -> None:
    p = sub.add_parser(
        "texture", help="synthesise a texture from a trunk's Gram and shifted-Gram matrices",
        description="Match the Gram matrices (Gatys et al. 2015) and, with --shifts, the shifted Gram matrices "
        "(Berger & Memisevic 2016) of the trunk's conv layers — and, with --mirror, Gramians between the features "
        "and their mirror images (symmetric textures) — optimising the pixels with L-BFGS-B or Adam (pixels stay in "
        "[0, 1]). A one-conv-layer MinAtar trunk cannot carry a brick; random:image_deep can (with --shifts 2: its "
        "deepest maps are 4x4 at the default size, too small for the default shifts of 4 and 8). Writes "
        "<image>_source.png, <image>_reference.png (a held-out crop) and <image>_result.png, the loss curve and the "
        "scores of the ensemble texture judge (ratios to the held-out crop; lower is better, 1 = as close as real "
        "texture) to metrics.json, and TensorBoard.")
    p.add_argument("--trunk", required=True, metavar="TRUNK", help=TRUNK_HELP)
    p.add_argument("--image", nargs="+", default=None, metavar="NAME|PATH",
                   help="brick, grass, gravel, china, flower or image files (default: texture.images)")
    p.add_argument("--layers", nargs="+", default=None, metavar="NAME", help="conv layers (default: all)")
    p.add_argument("--shifts", nargs="*", default=None, metavar="S|LAYER:S,S",
                   help="shifts for every layer (2 4 8) or per layer (conv1:2,4 conv2:4); none given: no shifts "
                   "(default: texture.shifts)")
    p.add_argument("--mirror", nargs="*", default=None, metavar="AXIS|LAYER:AXES",
                   help="mirrored Gramians (symmetric textures): h (left-right) and/or v (top-bottom) on every layer, "
                   "or per layer (conv1:h,v conv2:h); none given: no mirror (default: texture.mirror)")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="optimiser iterations")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default=None, help="optimiser (default: lbfgs)")
    p.add_argument("--lr", type=float, default=None, help="Adam's learning rate (L-BFGS-B needs none)")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="source crop and result size (the texture is first resized to twice this, at least 128)")
    _common(p)
    p.set_defaults(handler=_threads(_cmd_texture))


def _transfer(sub: Any) -> None:
    p = sub.add_parser(
        "transfer", help="style transfer: a content photo painted with a style image's Gram and shifted-Gram matrices",
        description="Gatys et al. 2016 style transfer with Berger & Memisevic 2016's shifted Gramians (their season "
        "and daytime transfer): match the content photo's features on a deeper conv layer and the style image's Gram "
        "and shifted-Gram matrices on every conv layer. Images: scikit-image's and scikit-learn's bundled photos "
        "(astronaut, chelsea, coffee, rocket, hubble_deep_field, camera, china, flower), textures (brick, grass, "
        "gravel) or your files (a winter or night photo for season or daytime transfer). Writes content.png, "
        "style.png, result.png and transfer.png (the three side by side), metrics.json (content and style loss "
        "before and after) and TensorBoard.")
    p.add_argument("--content", required=True, metavar="NAME|PATH", help="the content photo")
    p.add_argument("--style", required=True, metavar="NAME|PATH", help="the style image")
    p.add_argument("--trunk", default="random:image_deep", metavar="TRUNK",
                   help=TRUNK_HELP + " (default: random:image_deep; a one-conv-layer trunk cannot carry a style)")
    p.add_argument("--content-layer", default=None, metavar="NAME", help="conv layer of the content term "
                   "(default: transfer.content_layer, conv4)")
    p.add_argument("--layers", nargs="+", default=None, metavar="NAME", help="conv layers of the style term "
                   "(default: all)")
    p.add_argument("--shifts", nargs="*", default=None, metavar="S|LAYER:S,S",
                   help="shifted-Gram shifts of the style term, as for texture (default: transfer.shifts)")
    p.add_argument("--style-weight", type=float, default=None, help="β, the style term's weight (default: 0.05)")
    p.add_argument("--init", choices=["content", "noise"], default=None,
                   help="start from the content photo (default) or from noise (Gatys et al. 2016)")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="optimiser iterations")
    p.add_argument("--size", type=int, default=None, metavar="PX", help="shorter side of content and style (pixels)")
    p.add_argument("--grayscale", action="store_true", help="convert content and style to one channel")
    _common(p)
    p.set_defaults(handler=_threads(_cmd_transfer))


def _generate(sub: Any) -> None:
    p = sub.add_parser(
        "generate", help="class-conditional digits from the diffusion prior guided by a classifier on the trunk",
        description="Train a noisy-image classifier on the frozen trunk and use its gradient to guide the cached "
        "DDPM prior (trained once per config) towards each class (Dhariwal & Nichol 2021); --scale 0 is the "
        "unguided baseline. Writes samples.png and unguided.png (one row per class, labelled with it) and "
        "metrics.json: accuracy of "
        "an independent SVM on the samples and the classification accuracy score (train on generated, test on "
        "real).")
    p.add_argument("--trunk", required=True, metavar="TRUNK", help=TRUNK_HELP)
    p.add_argument("--scale", type=float, default=None, help="guidance scale (default: guidance.scale)")
    p.add_argument("--per-class", type=int, default=None, metavar="N", help="samples per class")
    _common(p)
    p.set_defaults(handler=_threads(_cmd_generate))


def _compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare", help="the thesis table: probe, guided generation and texture per trunk, over seeds",
        description="For each trunk: linear-probe accuracy and texture syntheses (Gram only and Gram + shifted Gram) "
        "scored by an ensemble of held-out judges as multiples of a held-out crop's distance, beside a deep image_deep "
        "reference; and, over --seeds, the thesis in both directions on classes no trunk was "
        "labelled with: guided generation swept over guidance scales (judged accuracy, classification accuracy "
        "score, diversity; at each trunk's best scale and at matched diversity), few-label probes of the trunks and "
        "of the diffusion prior's denoiser, and generator battles (Im et al. 2016), with intervals over seeds, "
        "paired differences and one verdict per direction. Writes metrics.json, report.md (with the texture PNGs "
        "and a legend), guidance_curves.png, PNGs per trunk and TensorBoard events tb/<trunk>/ under vision/ tags.")
    p.add_argument("--trunks", nargs="+", required=True, metavar="TRUNK", help=TRUNK_HELP)
    p.add_argument("--seeds", nargs="+", default=None, metavar="S",
                   help="seeds of the generation side, e.g. 0-4 (>= 5 seeds give bootstrap intervals and verdicts; "
                   "default: --seed)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes that run the seeds side by side, each with `threads` torch threads "
                   "(default: the config's jobs, 2; 1: one seed after another; results do not depend on it)")
    _common(p)
    p.set_defaults(handler=_threads(_cmd_compare))


# --------------------------------------------------------------------------------------------
# Handlers


def _config(a: argparse.Namespace, extra: dict[str, Any] | None = None) -> Any:
    from policyshare.config import deep_merge, parse_overrides
    from policyshare.vision.config import load_vision_config

    # Dedicated flags (--scale, --shifts …) win over --set.
    overrides = deep_merge(parse_overrides(a.overrides), extra or {})
    return load_vision_config(a.config, overrides)


def _threads(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a handler with the config's ``threads`` torch CPU threads, then restore the previous count."""

    def run(a: argparse.Namespace) -> int:
        from policyshare.vision.steps import torch_threads

        with torch_threads(_config(a).threads):
            return handler(a)

    return run


def _open(a: argparse.Namespace, sub: str, label: str, cfg: Any) -> Any:
    """The run folder (an unfinished one is moved aside, see :func:`~policyshare.vision.compare.open_run`)."""
    from policyshare.runs import default_run_dir
    from policyshare.vision.compare import open_run

    path = a.run_dir or default_run_dir("vision", sub, a.seed, label)
    return open_run(path, f"vision {sub}", cfg, a.seed)


def _cmd_probe(a: argparse.Namespace) -> int:
    from policyshare.vision.inputs import trunk_label
    from policyshare.vision.pretrain import resolve_trunk, save_vision_trunk
    from policyshare.vision.probe import check_layer, finetune, linear_probe
    from policyshare.vision.steps import load_splits
    from policyshare.vision.tb import VisionWriter

    extra: dict[str, Any] = {}
    if a.data:
        extra.setdefault("data", {})["dataset"] = a.data
    if a.layer:
        extra.setdefault("probe", {})["layer"] = a.layer
    cfg = _config(a, extra)
    splits = load_splits(cfg)
    trunk = resolve_trunk(a.trunk, splits.train, cfg, a.seed)
    check_layer(trunk, cfg.probe.layer)
    run = _open(a, "probe", trunk_label(a.trunk), cfg)
    writer = VisionWriter(run.tb_dir)
    try:
        linear, _ = linear_probe(trunk, splits.train, splits.test, cfg.probe, cfg.trunk, a.seed)
        writer.scalar("probe/accuracy", linear.accuracy)
        out: dict[str, Any] = {"trunk": a.trunk, "data": splits.describe(), "linear": linear.to_dict()}
        if a.finetune:
            tuned, model = finetune(trunk, splits.train, splits.test, cfg.probe, cfg.trunk, a.seed,
                                    log=writer.logger("probe"))
            writer.scalar("probe/finetune_accuracy", tuned.accuracy)
            out["finetune"] = tuned.to_dict()
            model.trunk.header = {"source": {"kind": "finetune", "from": a.trunk, "data": splits.train.name,
                                             "split": "train", "split_seed": cfg.data.split_seed, "seed": a.seed}}
            out["trunk_file"] = str(save_vision_trunk(model.trunk, run.path / "trunk.safetensors", cfg,
                                                      splits.train.channels))
    finally:
        writer.close()
    run.write_metrics(out)
    print(f"linear probe on {a.trunk} (layer {linear.layer}): test accuracy {linear.accuracy:.3f} "
          f"({linear.n_test} held-out images)")
    if a.finetune:
        print(f"fine-tuned: test accuracy {out['finetune']['accuracy']:.3f}; trunk: {out['trunk_file']}")
    print(f"run folder: {run.path}")
    return 0


def _cmd_pretrain(a: argparse.Namespace) -> int:
    from policyshare.vision.pretrain import pretrain_trunk, save_vision_trunk
    from policyshare.vision.probe import linear_probe
    from policyshare.vision.steps import load_splits
    from policyshare.vision.tb import VisionWriter

    cfg = _config(a, {"trunk": {"activation": a.activation}} if a.activation else None)
    splits = load_splits(cfg)
    label = a.method if cfg.trunk.activation == "relu" else f"{a.method}-{cfg.trunk.activation}"
    run = _open(a, "pretrain", label, cfg)
    writer = VisionWriter(run.tb_dir)
    try:
        trunk, losses = pretrain_trunk(a.method, splits.train, cfg, a.seed, writer.logger("pretrain"))
        path = save_vision_trunk(trunk, run.path / "trunk.safetensors", cfg, splits.train.channels)
        probe, _ = linear_probe(trunk, splits.train, splits.test, cfg.probe, cfg.trunk, a.seed)
        writer.scalar("probe/accuracy", probe.accuracy)
    finally:
        writer.close()
    run.write_metrics({"method": a.method, "activation": cfg.trunk.activation, "data": splits.describe(),
                       "losses": losses, "probe": probe.to_dict(), "trunk_file": str(path)})
    print(f"{a.method} trunk ({cfg.trunk.spec}, {cfg.trunk.activation}): final loss {losses[-1]:.4f}, linear-probe "
          f"test accuracy {probe.accuracy:.3f}")
    print(f"trunk: {path}")
    return 0


def parse_shifts(items: Sequence[str]) -> dict[str, list[int]] | list[int]:
    """``["2", "4"]`` → ``[2, 4]``; ``["conv1:2,4", "conv2:4"]`` → ``{"conv1": [2, 4], "conv2": [4]}``.

    Raises:
        UserError: an item that is not an integer or ``LAYER:INT[,INT…]``, or a mix of both forms.
    """
    per_layer = [i for i in items if ":" in i]
    if per_layer and len(per_layer) != len(items):
        raise UserError(f"--shifts {' '.join(items)}: use either plain shifts (2 4) or per-layer ones "
                        "(conv1:2,4 conv2:4), not both")
    try:
        if per_layer:
            out: dict[str, list[int]] = {}
            for item in items:
                layer, values = item.split(":", 1)
                out[layer] = [int(v) for v in values.split(",") if v]
            return out
        return [int(i) for i in items]
    except ValueError:
        raise UserError(f"--shifts {' '.join(items)}: shifts must be integers, e.g. --shifts 2 4 8 or "
                        "--shifts conv1:2,4") from None


def parse_mirror(items: Sequence[str]) -> dict[str, list[str]] | list[str]:
    """``["h", "v"]`` → ``["h", "v"]``; ``["conv1:h,v", "conv2:h"]`` → ``{"conv1": ["h", "v"], "conv2": ["h"]}``.

    Raises:
        UserError: an axis other than ``h``/``v``, or a mix of both forms.
    """
    per_layer = [i for i in items if ":" in i]
    if per_layer and len(per_layer) != len(items):
        raise UserError(f"--mirror {' '.join(items)}: use either plain axes (h v) or per-layer ones "
                        "(conv1:h,v conv2:h), not both")
    out: dict[str, list[str]] | list[str]
    if per_layer:
        out = {}
        for item in items:
            layer, values = item.split(":", 1)
            out[layer] = [v for v in values.split(",") if v]
        axes = [x for v in out.values() for x in v]
    else:
        out = list(items)
        axes = out
    bad = [x for x in axes if x not in ("h", "v")]
    if bad:
        raise UserError(f"--mirror {' '.join(items)}: unknown axis {bad[0]!r}; use h (left-right) and/or v "
                        "(top-bottom), e.g. --mirror h v or --mirror conv1:h")
    return out


def _cmd_texture(a: argparse.Namespace) -> int:
    from policyshare.vision.inputs import PRETRAINED_REFS, load_trunk_ref, trunk_label
    from policyshare.vision.pretrain import resolve_trunk
    from policyshare.vision.steps import load_splits
    from policyshare.vision.tb import VisionWriter
    from policyshare.vision.texture_compare import (
        check_texture_setup,
        image_label,
        load_textures,
        texture_baselines,
        texture_judge,
        texture_step,
    )

    t: dict[str, Any] = {}
    for key, value in (("images", a.image), ("layers", a.layers), ("steps", a.steps), ("optimizer", a.optimizer),
                       ("lr", a.lr), ("size", a.size)):
        if value is not None:
            t[key] = value
    if a.size is not None:
        t["resize"] = max(128, 2 * a.size)
    if a.shifts is not None:
        t["shifts"] = parse_shifts(a.shifts)
    if a.mirror is not None:
        t["mirror"] = parse_mirror(a.mirror)
    cfg = _config(a, {"texture": t})
    textures = load_textures(cfg)
    if a.trunk in PRETRAINED_REFS:
        trunk = resolve_trunk(a.trunk, load_splits(cfg).train, cfg, a.seed)
    else:
        trunk = load_trunk_ref(a.trunk, cfg.trunk, a.seed)
    variants = {"result": cfg.texture.shifts}
    check_texture_setup(trunk, cfg, textures, variants, a.seed, allow_dead=False)
    run = _open(a, "texture", trunk_label(a.trunk), cfg)
    writer = VisionWriter(run.tb_dir)
    try:
        layers = ", ".join(cfg.texture.layers or trunk.conv_names)
        log.info(f"texture synthesis on {a.trunk} ({trunk.spec.name} trunk, layers {layers})")
        judges = texture_judge(cfg, textures, a.seed)
        results = texture_step(trunk, cfg, textures, run.path, writer, variants, a.seed, judges)
    finally:
        writer.close()
    for label, cells in results.items():
        if "error" in cells["result"]:
            raise UserError(f"{label}: {cells['result']['error']} (no result written; the unfinished {run.path} is "
                            "moved aside when the command is run again)")
    baselines = texture_baselines(textures, cfg, run.path, a.seed, judges, deep=False)
    run.write_metrics({"trunk": a.trunk, "mirror": cfg.texture.mirror,
                       "results": {k: v["result"] for k, v in results.items()}, "baselines": baselines})
    for name in textures:
        label = image_label(name)
        c, noise = results[label]["result"], baselines[label]["noise"]
        fooled = f"; fooled: {', '.join(c['fooled'])}" if c["fooled"] else ""
        print(f"{label}: loss {c['initial_loss']:.4g} -> {c['final_loss']:.4g} in {c['iterations']} iterations "
              f"({c['stop']}); texture judge, worst evaluator's distance as a multiple of a held-out crop's (1 = as "
              f"close as real texture, lower is better): Gram {c['gram']:.2f} (median {c['gram_median']:.2f}), "
              f"shifted {c['shifted_gram']:.2f}; the starting noise: {noise['gram']:.2f}, {noise['shifted_gram']:.2f}"
              f"{fooled}")
        print(f"  {run.path / (label + '_source.png')} -> {run.path / (label + '_result.png')}")
    return 0


def _cmd_transfer(a: argparse.Namespace) -> int:
    import torch

    from policyshare.vision.data import load_image, resize_short_side, save_png
    from policyshare.vision.inputs import PRETRAINED_REFS, load_trunk_ref, trunk_label
    from policyshare.vision.pretrain import resolve_trunk
    from policyshare.vision.style import StyleTransferLoss, check_same_channels, style_transfer
    from policyshare.vision.tb import VisionWriter
    from policyshare.vision.texture_compare import image_label

    t: dict[str, Any] = {}
    for key, value in (("content_layer", a.content_layer), ("layers", a.layers), ("style_weight", a.style_weight),
                       ("init", a.init), ("steps", a.steps), ("size", a.size), ("style_size", a.size)):
        if value is not None:
            t[key] = value
    if a.grayscale:
        t["grayscale"] = True
    if a.shifts is not None:
        t["shifts"] = parse_shifts(a.shifts)
    cfg = _config(a, {"transfer": t})
    tc = cfg.transfer
    content = resize_short_side(load_image(a.content, tc.grayscale), tc.size).unsqueeze(0)
    style = resize_short_side(load_image(a.style, tc.grayscale), tc.style_size).unsqueeze(0)
    check_same_channels(content, style, a.content, a.style)
    if a.trunk in PRETRAINED_REFS:
        from policyshare.vision.steps import load_splits

        trunk = resolve_trunk(a.trunk, load_splits(cfg).train, cfg, a.seed)
    else:
        trunk = load_trunk_ref(a.trunk, cfg.trunk, a.seed)
    loss = StyleTransferLoss(trunk, content, style, tc.content_layer, tc.layers, tc.shifts, tc.shift_weight,
                             tc.content_weight, tc.style_weight, cfg.trunk.alignment, a.seed)
    label = f"{image_label(a.content)}-{image_label(a.style)}-{trunk_label(a.trunk)}"
    run = _open(a, "transfer", label, cfg)
    writer = VisionWriter(run.tb_dir)
    try:
        log.info(f"style transfer on {a.trunk}: content {a.content} ({tc.content_layer}), style {a.style} "
                 f"(layers {', '.join(loss.style.layers)})")
        res = style_transfer(loss, content, init=tc.init, optimizer=tc.optimizer, steps=tc.steps, lr=tc.lr,
                             patience=tc.patience, seed=a.seed, log=writer.logger("transfer"))
    except Exception:
        writer.close()
        raise
    image = res.synthesis.image
    h = int(content.shape[-2])
    shown = torch.nn.functional.interpolate(style, size=(h, max(1, round(style.shape[-1] * h / style.shape[-2]))),
                                            mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    gap = torch.ones(content.shape[1], h, 3)
    save_png(run.path / "content.png", content[0])
    save_png(run.path / "style.png", style[0])
    save_png(run.path / "result.png", image[0])
    save_png(run.path / "transfer.png", torch.cat([content[0], gap, shown[0], gap, image[0]], dim=2))
    writer.image("transfer/result", torch.cat([content[0], gap, image[0]], dim=2))
    writer.close()
    run.write_metrics({"trunk": a.trunk, "content": a.content, "style": a.style, "content_layer": tc.content_layer,
                       "style_layers": list(loss.style.layers), "init": tc.init, "initial": res.initial,
                       "final": res.final, "losses": res.synthesis.losses, "iterations": res.synthesis.iterations,
                       "stop": res.synthesis.stop})
    print(f"style transfer {a.content} <- {a.style} on {a.trunk}: content loss {res.initial['content']:.4g} -> "
          f"{res.final['content']:.4g}, style loss {res.initial['style']:.4g} -> {res.final['style']:.4g} in "
          f"{res.synthesis.iterations} iterations (start: {tc.init})")
    print(f"content | style | result: {run.path / 'transfer.png'}")
    return 0


def _cmd_generate(a: argparse.Namespace) -> int:
    from policyshare.vision.inputs import PRETRAINED_REFS, freeze, load_trunk_ref, random_trunk, trunk_label
    from policyshare.vision.pretrain import resolve_trunk
    from policyshare.vision.probe import check_layer
    from policyshare.vision.steps import generation_step, prepare, unguided_step
    from policyshare.vision.tb import VisionWriter

    extra: dict[str, Any] = {}
    if a.per_class is not None:
        extra.setdefault("guidance", {})["per_class"] = a.per_class
    if a.scale is not None:
        extra.setdefault("guidance", {})["scale"] = a.scale
    cfg = _config(a, extra)
    # Check the trunk before the prior (minutes on first use) is trained.
    pretrained = a.trunk in PRETRAINED_REFS
    early = random_trunk(cfg.trunk, a.seed) if pretrained else load_trunk_ref(a.trunk, cfg.trunk, a.seed)
    check_layer(early, cfg.probe.layer)
    run = _open(a, "generate", trunk_label(a.trunk), cfg)
    writer = VisionWriter(run.tb_dir)
    try:
        ctx = prepare(cfg, a.seed, textures=False, writer=writer, run_dir=run.path if a.run_dir else None)
        trunk = (resolve_trunk(a.trunk, ctx.splits.train, cfg, a.seed, writer.logger("pretrain"))
                 if pretrained else freeze(early))
        log.info(f"guided sampling at scale {cfg.guidance.scale}")
        guided = generation_step(trunk, ctx, run.path, writer)
        unguided_writer = VisionWriter(run.tb_dir / "unguided")
        try:
            unguided = unguided_step(ctx, run.path, unguided_writer)
        finally:
            unguided_writer.close()
    finally:
        writer.close()
    judge = guided["judge_accuracy"]
    from policyshare.io import atomic_write_json

    atomic_write_json(run.path / "timing.json", ctx.timing)  # wall-clock figures stay out of metrics.json
    run.write_metrics({"trunk": a.trunk, "guided": guided, "unguided": unguided, "judge_accuracy": judge,
                       "prior": ctx.prior_info, "data": ctx.splits.describe()})
    print(f"guided by {a.trunk} at scale {guided['scale']}: judge accuracy {guided['accuracy']:.3f}, CAS "
          f"{guided['cas']:.3f}; unguided: {unguided['accuracy']:.3f}, CAS {unguided['cas']:.3f}; judge on real "
          f"test digits {judge:.3f}")
    print(f"samples: {run.path / 'samples.png'}")
    return 0


def _cmd_compare(a: argparse.Namespace) -> int:
    from policyshare.train import parse_seeds
    from policyshare.vision.compare import compare
    from policyshare.vision.compare_report import markdown_table
    from policyshare.vision.config import VisionConfig

    seeds = parse_seeds(a.seeds) if a.seeds is not None else None  # an empty range is refused before any work
    cfg: VisionConfig = _config(a, {"jobs": a.jobs} if a.jobs is not None else None)
    metrics = compare(a.trunks, cfg, a.run_dir, a.seed, seeds=seeds)
    print(markdown_table(metrics))
    print(f"wall time {metrics['timing']['wall_s']:.0f} s; run folder: {metrics['run_dir']}")
    log.info(json.dumps({k: {"probe": v["probe"]["accuracy"], "guided": v["generate"]["accuracy"],
                             "cas": v["generate"]["cas"]} for k, v in metrics["results"].items()}))
    return 0
