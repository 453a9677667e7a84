"""Freeway, batched: ``n`` games advanced together with array operations.

The same game as ``minatar.environments.freeway.Env`` (MinAtar 1.0.15; Young & Tian 2019): the
chicken starts on the bottom row (row 9, column 4) and moves up or down at most once every 3
env steps; reaching the top row gives +1, sends it back to the bottom and re-draws every car's
speed and direction. Eight cars, one per row 1..8, wrap around horizontally and move once every
``|speed| + 1`` env steps; a car on the chicken's cell sends it back to the bottom. The episode
ends after 2,500 env steps. Freeway has no difficulty ramping.

Randomness, per env and in the reference's order: ``randint(1, 6, 8)`` speeds then ``rand(8)``
directions, at :meth:`BatchedFreeway.reset` and at every crossing.
"""

from __future__ import annotations

import numpy as np

PLAYER_SPEED = 3     # env steps between two moves of the chicken
TIME_LIMIT = 2500    # env steps per episode (the episode ends when the timer goes below 0)
_CAR_Y = np.arange(1, 9)  # car k drives on row k + 1


class BatchedFreeway:
    """``n`` Freeway games (:class:`~policyshare.batched_minatar.game.BatchedGame`).

    Observations ``(n, 10, 10, 7)`` bool; channels chicken, car, and the trails ``speed1`` ..
    ``speed5`` (the trail's channel says how often its car moves, its side which way).

    Args:
        n: number of envs.
        randoms: one ``numpy.random.RandomState`` per env, kept by reference (not copied).
        ramping: accepted for the common signature; Freeway does not ramp.

    The constructor draws nothing; call ``reset(np.arange(n))`` before the first :meth:`act`.

    Raises:
        ValueError: ``len(randoms) != n``.
    """

    channels = 7
    minimal_actions = [0, 2, 4]  # n, u, d

    def __init__(self, n: int, randoms: list[np.random.RandomState], ramping: bool = True) -> None:
        if len(randoms) != n:
            raise ValueError(f"BatchedFreeway: {len(randoms)} RandomStates for {n} envs")
        self.n = n
        self.randoms = randoms
        self.ramping = ramping
        self.car_x = np.zeros((n, 8), dtype=np.int64)
        self.car_timer = np.ones((n, 8), dtype=np.int64)
        self.car_speed = np.ones((n, 8), dtype=np.int64)  # signed: > 0 moves right
        self.pos = np.full(n, 9, dtype=np.int64)
        self.move_timer = np.full(n, PLAYER_SPEED, dtype=np.int64)
        self.terminate_timer = np.full(n, TIME_LIMIT, dtype=np.int64)
        self.terminal = np.zeros(n, dtype=bool)
        self._rows = np.arange(n)

    def _draw_cars(self, idx: np.ndarray) -> None:
        """New speeds and directions for the cars of envs ``idx`` (timers restart)."""
        speeds = np.empty((len(idx), 8), dtype=np.int64)
        for k, i in enumerate(idx):
            rs = self.randoms[i]
            s = rs.randint(1, 6, 8)
            # np.sign of rand() - 0.5, as the reference (0 only if rand() is exactly 0.5).
            speeds[k] = s * np.sign(rs.random_sample(8) - 0.5).astype(int)  # = rand(8)
        self.car_speed[idx] = speeds
        self.car_timer[idx] = np.abs(speeds)

    def reset(self, idx: np.ndarray) -> None:
        """Start new episodes in the envs ``idx``: cars at column 0 with new speeds."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return
        self._draw_cars(idx)
        self.car_x[idx] = 0
        self.pos[idx] = 9
        self.move_timer[idx] = PLAYER_SPEED
        self.terminate_timer[idx] = TIME_LIMIT
        self.terminal[idx] = False

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every env one step (see :meth:`BatchedGame.act`); terminal envs stay put."""
        live = ~self.terminal
        ready = live & (self.move_timer == 0)
        up = ready & (actions == 2)
        down = ready & (actions == 4)
        pos = np.minimum(np.maximum(self.pos - up + down, 0), 9)
        self.move_timer[up | down] = PLAYER_SPEED
        win = pos == 0  # only a live env moves up
        if win.any():
            self._draw_cars(self._rows[win])
            pos[win] = 9

        # Cars of live envs: a car on the chicken's cell before or after it moves sends the
        # chicken back (only the car of the chicken's row can, and none on the bottom row, so
        # the reference's car-by-car order does not matter).
        x, timer, speed = self.car_x, self.car_timer, self.car_speed
        on_row = pos[:, None] == _CAR_Y
        before = on_row & (x == 4)
        moves = live[:, None] & (timer == 0)
        step = np.where(speed > 0, 1, -1)
        x = np.where(moves, (x + step) % 10, x)
        after = on_row & (x == 4)
        self.car_timer = np.where(moves, np.abs(speed), np.where(live[:, None], timer - 1, timer))
        self.car_x = x
        hit = live & (before | after).any(axis=1)
        pos[hit] = 9
        self.pos = pos

        self.move_timer -= live & (self.move_timer > 0)
        self.terminate_timer -= live
        self.terminal = self.terminal | (self.terminate_timer < 0)
        return win.astype(np.float32), self.terminal.copy()

    def state(self) -> np.ndarray:
        """Observations ``(n, 10, 10, 7)`` bool, as the reference ``Env.state()``."""
        s = np.zeros((self.n, 10, 10, 7), dtype=bool)
        rows = self._rows[:, None]
        s[self._rows, self.pos, 4, 0] = True
        s[rows, _CAR_Y, self.car_x, 1] = True
        back = (self.car_x - np.where(self.car_speed > 0, 1, -1)) % 10
        s[rows, _CAR_Y, back, 1 + np.abs(self.car_speed)] = True
        return s
