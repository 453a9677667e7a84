"""Input and action alignment: how the games of one suite share one network.

Games of a suite differ in observation channels (MinAtar: Breakout 4, Asterix 4, Freeway 7,
Seaquest 10, SpaceInvaders 6) and in their action sets. A suite (``envs/*.yaml``) declares:

* an **input alignment** — ``pad``: zero-pad channels to the suite's maximum; ``stem``: a
  small per-task 1x1 convolution from the task's channels into the trunk's width; ``none``:
  feed the task's channels as they are (single-task use only);
* a **common action space** (MinAtar's full set of 6, Atari's 18) into which each task's
  (minimal) action set is mapped, with a per-task mask, as in Actor-Mimic (Parisotto et al.
  2016, Sec. 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from policyshare.errors import ConfigError

AlignmentMode = Literal["pad", "stem", "none"]
ALIGNMENT_MODES: tuple[str, ...] = ("pad", "stem", "none")


class InputAlignment(nn.Module):
    """Map a task's observations into the trunk's input layout.

    Input: a float batch ``(batch, H, W, C_task)`` when ``channels_last`` else
    ``(batch, C_task, H, W)``. Output: ``(batch, channels, H, W)`` where ``channels`` is the
    trunk's input width (``C_task`` for ``none``).

    Args:
        obs_shape: single observation shape, ``(H, W, C)`` or ``(C, H, W)``.
        mode: ``pad``, ``stem`` or ``none``.
        channels_last: whether observations are ``(H, W, C)`` (MinAtar) or ``(C, H, W)``
            (Atari after SB3's ``VecTransposeImage``).
        channels: the trunk's input channels for ``pad``/``stem``; ignored for ``none``.

    Raises:
        ConfigError: unknown mode, or ``pad`` with more task channels than ``channels``.
    """

    def __init__(self, obs_shape: Sequence[int], mode: str = "none", channels_last: bool = False,
                 channels: int | None = None) -> None:
        super().__init__()
        if mode not in ALIGNMENT_MODES:
            raise ConfigError(f"unknown input alignment {mode!r}; choose one of "
                              f"{', '.join(ALIGNMENT_MODES)}")
        if len(obs_shape) != 3:
            raise ConfigError(f"input alignment needs image observations, got shape {tuple(obs_shape)}")
        if channels_last:
            h, w, c = obs_shape
        else:
            c, h, w = obs_shape
        self.mode = mode
        self.channels_last = bool(channels_last)
        self.task_channels = int(c)
        self.height = int(h)
        self.width = int(w)
        target = int(channels) if channels is not None and mode != "none" else int(c)
        if mode == "pad" and target < c:
            raise ConfigError(f"cannot pad {c} observation channels to {target}; the suite's "
                              f"channel count must be at least every task's")
        self.out_channels = target
        self.stem: nn.Conv2d | None = (
            nn.Conv2d(int(c), target, kernel_size=1) if mode == "stem" else None)

    def layout(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as floats ``(batch, C_task, H, W)``: cast and channels first, no padding.

        A :class:`~policyshare.trunks.Trunk` reads such input as if zero-padded to its width
        (the missing channels are zero), at the cost of the task's channels only.

        Channels-last observations are copied into a contiguous channels-first tensor (one copy,
        which also casts): a permuted view would make the convolution return a channels-last
        tensor and the ReLU after it compute its backward pass on mixed memory layouts, about
        50x slower on CPU than on contiguous tensors (PyTorch 2.x, measured by
        ``benchmarks/profile_training.py``: most of PPO's gradient step on MinAtar).
        """
        if self.channels_last:
            return obs.permute(0, 3, 1, 2).to(dtype=torch.float32, memory_format=torch.contiguous_format)
        return obs.float()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.layout(obs)
        if self.stem is not None:
            return self.stem(x)
        if self.out_channels > self.task_channels:
            x = nn.functional.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.task_channels))
        return x

    def describe(self) -> dict[str, object]:
        """JSON description (mode, layout, task and trunk channels, spatial size)."""
        return {"mode": self.mode, "channels_last": self.channels_last,
                "task_channels": self.task_channels, "channels": self.out_channels,
                "height": self.height, "width": self.width}


def action_mask(local_to_common: Sequence[int], n_common: int) -> torch.Tensor:
    """Boolean mask ``(n_common,)`` of the common actions a task can take.

    Args:
        local_to_common: for each of the task's actions (its ``Discrete`` index), the index
            of the same action in the common action space.
        n_common: size of the common action space.

    Raises:
        ConfigError: an index outside ``[0, n_common)`` or a repeated index.
    """
    if len(set(local_to_common)) != len(local_to_common):
        raise ConfigError(f"action map {list(local_to_common)} repeats a common action")
    mask = torch.zeros(n_common, dtype=torch.bool)
    for i in local_to_common:
        if not 0 <= i < n_common:
            raise ConfigError(f"action index {i} outside the common action space of {n_common}")
        mask[i] = True
    return mask


def to_common(local_scores: torch.Tensor, local_to_common: Sequence[int], n_common: int,
              fill: float = float("-inf")) -> torch.Tensor:
    """Scatter per-task action scores ``(batch, n_local)`` into ``(batch, n_common)``.

    Actions the task does not have get ``fill`` (``-inf`` for logits, so their softmax
    probability is 0).
    """
    out = local_scores.new_full((local_scores.shape[0], n_common), fill)
    index = torch.as_tensor(list(local_to_common), dtype=torch.long, device=local_scores.device)
    out[:, index] = local_scores
    return out


def to_local(common_scores: torch.Tensor, local_to_common: Sequence[int]) -> torch.Tensor:
    """Gather a task's actions ``(batch, n_local)`` from common-space scores ``(batch, n_common)``."""
    index = torch.as_tensor(list(local_to_common), dtype=torch.long, device=common_scores.device)
    return common_scores[:, index]
