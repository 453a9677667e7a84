"""The interface every batched MinAtar game implements.

A batched game holds ``n`` copies of one MinAtar game (Young & Tian 2019) as arrays with a
leading env axis and advances them together with array operations. It reproduces the reference
``minatar.environments.<game>.Env`` exactly: env ``i`` draws its random numbers from its own
``numpy.random.RandomState`` (``randoms[i]``), in the same order as the reference game draws
from ``Env.random``, so the same seeds and actions give the same states, rewards and
terminations. Sticky actions are not the game's business: the vectorised env
(:mod:`policyshare.batched_minatar.vecenv`) applies them before :meth:`BatchedGame.act`, as
``minatar.Environment.act`` does before ``Env.act``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class BatchedGame(Protocol):
    """``n`` copies of one MinAtar game advanced together.

    Attributes:
        n: number of envs (the leading axis of every array).
        channels: observation channels (Breakout 4, Asterix 4, Freeway 7, Seaquest 10,
            SpaceInvaders 6).
        minimal_actions: the game's minimal action set, indices into MinAtar's 6 actions
            (as ``Env.minimal_action_set()``).
    """

    n: int
    channels: int
    minimal_actions: list[int]

    def reset(self, idx: np.ndarray) -> None:
        """Start new episodes in the envs ``idx`` (int array of env indices), drawing from each
        env's RandomState exactly as the reference ``Env.reset`` does. Difficulty ramping
        restarts as in the reference."""

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every env one step.

        Args:
            actions: ``(n,)`` ints in ``0..5``, MinAtar's full action indices (``n``, ``l``,
                ``u``, ``r``, ``d``, ``f``), after sticky actions were applied.

        Returns:
            ``(reward, terminal)``: ``(n,)`` float32 and ``(n,)`` bool, as the reference
            ``Env.act`` returns per env. An env that is terminal stays as it is until
            :meth:`reset` (the vectorised env resets it at once).
        """
        ...

    def state(self) -> np.ndarray:
        """Observations ``(n, 10, 10, channels)`` bool, identical to the reference ``Env.state()``."""
        ...
