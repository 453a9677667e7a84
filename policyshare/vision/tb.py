"""TensorBoard output of the vision side: scalars and images under ``vision/`` tags.

Each trunk of a comparison writes to its own sub-folder ``tb/<trunk label>/`` with the same
tag names, so TensorBoard overlays the trunks by run name (as every compared run does).
Training loops take a :data:`ScalarLog` callback instead of a writer, so they run without one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

#: ``log(tag, value, step)``: record one scalar (``step`` in the loop's own units).
ScalarLog = Callable[[str, float, int], None]


def no_log(tag: str, value: float, step: int) -> None:
    """A :data:`ScalarLog` that drops everything."""


class VisionWriter:
    """A TensorBoard writer for one trunk (or run) that prefixes every tag with ``vision/``.

    Args:
        log_dir: the event-file folder.
    """

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer: Any = SummaryWriter(log_dir=str(log_dir))

    def scalar(self, tag: str, value: float, step: int = 0) -> None:
        """Record ``vision/<tag>``."""
        self._writer.add_scalar(f"vision/{tag}", float(value), step)

    def image(self, tag: str, image: torch.Tensor, step: int = 0) -> None:
        """Record ``vision/<tag>`` from a ``(C, H, W)`` image in [0, 1] (1 or 3 channels)."""
        img = image.detach().float().clamp(0, 1).cpu()
        if img.shape[0] not in (1, 3):
            img = img[:1]
        self._writer.add_image(f"vision/{tag}", img, step, dataformats="CHW")

    def logger(self, prefix: str) -> ScalarLog:
        """A :data:`ScalarLog` writing ``vision/<prefix>/<tag>``."""

        def log(tag: str, value: float, step: int) -> None:
            self.scalar(f"{prefix}/{tag}", value, step)

        return log

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.flush()
        self._writer.close()
