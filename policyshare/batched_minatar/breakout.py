"""Breakout, batched: ``n`` games advanced together with array operations.

The same game as ``minatar.environments.breakout.Env`` (MinAtar 1.0.15; Young & Tian 2019):
the player moves a paddle on the bottom row; the ball travels along diagonals, is reflected by
walls and bricks and bounced by the paddle (to the left or right depending on the side hit);
+1 per brick broken; a new set of 3 brick rows appears when the ball reaches the bottom row
with no bricks left; the episode ends when the ball reaches the bottom row past the paddle.
Breakout has no difficulty ramping.

Randomness: only :meth:`BatchedBreakout.reset` draws, one ``randint(2)`` per env (the side the
ball starts from), as the reference does.
"""

from __future__ import annotations

import numpy as np

# Ball directions 0..3: up-left, up-right, down-right, down-left (the reference's ball_dir).
_DX = np.array([-1, 1, 1, -1])
_DY = np.array([-1, -1, 1, 1])
_FLIP_X = np.array([1, 0, 3, 2])       # reflect off a side wall
_FLIP_Y = np.array([3, 2, 1, 0])       # reflect off the top, a brick, or the paddle's near side
_FLIP_XY = np.array([2, 3, 0, 1])      # bounced back by the paddle's far corner


def _wall_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each ``(ball_y * 10 + ball_x) * 4 + ball_dir``: the next cell and direction after
    the side and top walls (bricks and the paddle come later). A ball on the bottom row moving
    down (only in a finished game, whose step is discarded) stays on the bottom row."""
    y, x, d = (a.ravel() for a in np.meshgrid(np.arange(10), np.arange(10), np.arange(4), indexing="ij"))
    nx, ny = x + _DX[d], y + _DY[d]
    side = (nx < 0) | (nx > 9)
    d = np.where(side, _FLIP_X[d], d)
    top = ny < 0
    d = np.where(top, _FLIP_Y[d], d)
    return np.clip(nx, 0, 9), np.clip(ny, 0, 9), d


_NEXT_X, _NEXT_Y, _NEXT_DIR = _wall_tables()
# The paddle's next column for each (column, full MinAtar action index n, l, u, r, d, f).
_PADDLE = np.clip(np.arange(10)[:, None] + np.array([0, -1, 0, 1, 0, 0]), 0, 9)


class BatchedBreakout:
    """``n`` Breakout games (:class:`~policyshare.batched_minatar.game.BatchedGame`).

    Observations ``(n, 10, 10, 4)`` bool; channels paddle, ball, trail, brick.

    Args:
        n: number of envs.
        randoms: one ``numpy.random.RandomState`` per env, kept by reference (not copied): the
            game draws from ``randoms[i]`` for env ``i``.
        ramping: accepted for the common signature; Breakout does not ramp.

    The constructor draws nothing; call ``reset(np.arange(n))`` before the first :meth:`act`.

    Raises:
        ValueError: ``len(randoms) != n``.
    """

    channels = 4
    minimal_actions = [0, 1, 3]  # n, l, r

    def __init__(self, n: int, randoms: list[np.random.RandomState], ramping: bool = True) -> None:
        if len(randoms) != n:
            raise ValueError(f"BatchedBreakout: {len(randoms)} RandomStates for {n} envs")
        self.n = n
        self.randoms = randoms
        self.ramping = ramping
        self.ball_x = np.zeros(n, dtype=np.int64)
        self.ball_y = np.full(n, 3, dtype=np.int64)
        self.ball_dir = np.full(n, 2, dtype=np.int64)
        self.pos = np.full(n, 4, dtype=np.int64)
        self.bricks = np.zeros((n, 10, 10), dtype=bool)
        self.bricks[:, 1:4, :] = True
        self.strike = np.zeros(n, dtype=bool)
        self.last_x = self.ball_x.copy()
        self.last_y = self.ball_y.copy()
        self.terminal = np.zeros(n, dtype=bool)
        self._rows = np.arange(n)

    def reset(self, idx: np.ndarray) -> None:
        """Start new episodes in the envs ``idx``: one ``randint(2)`` draw each."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return
        start = np.array([self.randoms[i].randint(2) for i in idx], dtype=np.int64)
        self.ball_y[idx] = 3
        self.ball_x[idx] = np.where(start == 0, 0, 9)
        self.ball_dir[idx] = np.where(start == 0, 2, 3)
        self.pos[idx] = 4
        self.bricks[idx] = False
        self.bricks[idx, 1:4, :] = True
        self.strike[idx] = False
        self.last_x[idx] = self.ball_x[idx]
        self.last_y[idx] = self.ball_y[idx]
        self.terminal[idx] = False

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every env one step (see :meth:`BatchedGame.act`); terminal envs stay put."""
        rows = self._rows
        pos = _PADDLE[self.pos, actions]
        key = (self.ball_y * 10 + self.ball_x) * 4 + self.ball_dir
        new_x, new_y, d = _NEXT_X[key], _NEXT_Y[key], _NEXT_DIR[key]
        # Bricks never lie on the top row, so the reference's "top wall, else brick" needs no test.
        brick = self.bricks[rows, new_y, new_x]
        hit = brick & ~self.strike                    # a brick broken this step
        bottom = ~brick & (new_y == 9)
        near = bottom & (self.ball_x == pos)          # paddle under the ball's column
        far = bottom & ~near & (new_x == pos)         # paddle under the ball's landing column
        bounce = hit | near | far
        brick_y = new_y
        if bounce.any():
            d = np.where(hit | near, _FLIP_Y[d], np.where(far, _FLIP_XY[d], d))
            new_y = np.where(bounce, self.ball_y, new_y)
        lost = bottom & ~near & ~far

        last_x, last_y = self.ball_x, self.ball_y
        live = ~self.terminal
        if not live.all():  # finished games stay as they are (the vec env resets them at once)
            hit &= live
            bottom &= live
            lost &= live
            new_x, new_y, d, pos, brick, last_x, last_y = (np.where(live, a, b) for a, b in (
                (new_x, self.ball_x), (new_y, self.ball_y), (d, self.ball_dir), (pos, self.pos),
                (brick, self.strike), (last_x, self.last_x), (last_y, self.last_y)))
        if hit.any():
            self.bricks[rows[hit], brick_y[hit], new_x[hit]] = False
        if bottom.any():
            r = rows[bottom]
            empty = ~self.bricks[r].any(axis=(1, 2))
            self.bricks[r[empty], 1:4, :] = True
        self.last_x, self.last_y = last_x, last_y
        self.ball_x, self.ball_y, self.ball_dir, self.pos = new_x, new_y, d, pos
        self.strike = brick  # in a brick's cell this step
        self.terminal = self.terminal | lost
        return hit.astype(np.float32), self.terminal.copy()

    def state(self) -> np.ndarray:
        """Observations ``(n, 10, 10, 4)`` bool, as the reference ``Env.state()``."""
        s = np.zeros((self.n, 10, 10, 4), dtype=bool)
        rows = self._rows
        s[rows, self.ball_y, self.ball_x, 1] = True
        s[rows, 9, self.pos, 0] = True
        s[rows, self.last_y, self.last_x, 2] = True
        s[..., 3] = self.bricks
        return s
