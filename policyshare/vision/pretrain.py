"""Trunks trained on images, and resolving every kind of trunk reference.

``classify`` trains a fresh random trunk (the configured spec) with a linear head on the
training split by cross-entropy (:func:`policyshare.vision.probe.finetune`); ``autoencoder``
trains one as a denoising autoencoder (:mod:`policyshare.vision.autoencoder`). Both see only
the training split, so the held-out judge's split and the test split stay unseen. Trunk files
record what they were trained on in ``header["source"]``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from policyshare.checkpoints import save_trunk
from policyshare.errors import UserError
from policyshare.trunks import Trunk
from policyshare.vision.autoencoder import train_autoencoder
from policyshare.vision.config import VisionConfig
from policyshare.vision.data import ImageSet
from policyshare.vision.inputs import PRETRAINED_REFS, freeze, load_trunk_ref, random_trunk
from policyshare.vision.probe import finetune
from policyshare.vision.tb import ScalarLog, no_log


def pretrain_trunk(method: str, train: ImageSet, cfg: VisionConfig, seed: int = 0,
                   log: ScalarLog = no_log) -> tuple[Trunk, list[float]]:
    """Train a fresh trunk of ``cfg.trunk`` on ``train`` by ``classify`` or ``autoencoder``.

    Args:
        method: ``classify`` (cross-entropy with a linear head) or ``autoencoder`` (denoising).
        train: the training split.
        cfg: the trunk to build and the ``pretrain`` budget.
        seed: initialisation and minibatch seed.
        log: receives the per-epoch training loss.

    Returns:
        The trained trunk (eval mode, header ``source`` filled) and its per-epoch losses.

    Raises:
        UserError: unknown method.
    """
    start = random_trunk(cfg.trunk, seed)
    if method == "classify":
        probe = replace(cfg.probe, layer=None, lr=cfg.pretrain.lr, batch_size=cfg.pretrain.batch_size)
        result, model = finetune(start, train, None, probe, cfg.trunk, seed, epochs=cfg.pretrain.classify_epochs,
                                 log=log)
        trunk, losses = model.trunk, result.losses
    elif method == "autoencoder":
        trunk, losses = train_autoencoder(start, train, cfg.trunk, cfg.pretrain, seed, log)
    else:
        raise UserError(f"unknown pretraining method {method!r}; choose one of {', '.join(PRETRAINED_REFS)}")
    epochs = cfg.pretrain.classify_epochs if method == "classify" else cfg.pretrain.autoencoder_epochs
    trunk.header = {"spec": trunk.spec.to_dict(),
                    "source": {"kind": method, "data": train.name, "split": "train", "n_images": len(train),
                               "split_seed": cfg.data.split_seed, "seed": seed, "epochs": epochs,
                               "final_loss": losses[-1] if losses else None}}
    return trunk.eval(), losses


def save_vision_trunk(trunk: Trunk, path: str | Path, cfg: VisionConfig, image_channels: int) -> Path:
    """Save a trunk trained on images as a policyshare trunk file.

    The header records the image alignment (``pad``/``stem`` into ``in_channels``) and the
    ``source`` of :func:`pretrain_trunk`. Only the trunk is saved: a ``stem`` alignment is
    per-task (as in the RL suites) and a later use draws its own, so pretrain with ``pad``
    (the default) when the trunk is to be reused.

    Raises:
        CheckpointError: if the write fails.
    """
    alignment = {"mode": cfg.trunk.alignment, "channels_last": False, "task_channels": image_channels,
                 "channels": trunk.spec.in_channels, "height": trunk.spec.height, "width": trunk.spec.width,
                 "fit": cfg.trunk.fit}
    source = dict((trunk.header or {}).get("source", {}))
    return save_trunk(trunk, path, alignment=alignment,
                      observation_shape=(image_channels, trunk.spec.height, trunk.spec.width), source=source)


def resolve_trunk(ref: str, train: ImageSet, cfg: VisionConfig, seed: int = 0, log: ScalarLog = no_log) -> Trunk:
    """Any trunk reference → a frozen trunk: ``random``, ``random:SPEC``, ``classify``, ``autoencoder`` or a file.

    ``classify`` and ``autoencoder`` are trained here on ``train`` (see :func:`pretrain_trunk`).

    Raises:
        UserError: unknown reference.
        CheckpointError: an unreadable trunk file or one of an unknown spec.
    """
    if ref in PRETRAINED_REFS:
        trunk, _ = pretrain_trunk(ref, train, cfg, seed, log)
    else:
        trunk = load_trunk_ref(ref, cfg.trunk, seed)
    return freeze(trunk)
