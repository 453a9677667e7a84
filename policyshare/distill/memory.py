"""The replay memory of distillation: one circular memory of observations per task.

Actor-Mimic (Parisotto et al. 2016, Sec. 3) keeps a replay memory per task and mixes one
minibatch from each in every update; teachers are fixed, so only states are stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class TaskMemory:
    """A circular replay memory of one task's observations (distillation needs only states).

    Args:
        capacity: transitions kept (older ones are overwritten).
        obs_shape: single observation shape.
        dtype: observation dtype (kept as the env gives it: bool for MinAtar, uint8 Atari).
    """

    def __init__(self, capacity: int, obs_shape: Sequence[int], dtype: Any) -> None:
        self.obs = np.zeros((capacity, *obs_shape), dtype=dtype)
        self.capacity = capacity
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray) -> None:
        """Append a batch ``(n, *obs_shape)``."""
        n = len(obs)
        keep = obs[-self.capacity:]  # a batch larger than the memory keeps its newest rows
        start = self.pos + n - len(keep)
        self.obs[(start + np.arange(len(keep))) % self.capacity] = keep
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` observations drawn uniformly with replacement, ``(n, *obs_shape)``.

        Raises:
            ValueError: if the memory is empty.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay memory")
        return self.obs[rng.integers(self.size, size=n)]

