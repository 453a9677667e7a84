"""Asterix, batched: ``n`` games advanced together with array operations.

The same game as ``minatar.environments.asterix.Env`` (MinAtar 1.0.15; Young & Tian 2019): the
player moves in the four directions (rows 1..8); enemies and gold spawn at either side of a
free row and cross the screen; +1 per gold picked up; touching an enemy ends the episode. With
difficulty ramping, every ~100 env steps entities spawn more often and (every second ramp)
move faster, until both happen every env step.

Randomness, per env and in the reference's order, at each spawn: ``rand()`` (side),
``rand()`` (gold or enemy), then ``randint(k)`` over the ``k`` free rows if there is one.
:meth:`BatchedAsterix.reset` draws nothing.
"""

from __future__ import annotations

import numpy as np

RAMP_INTERVAL = 100      # env steps between two ramps (the timer runs down past 0 first)
INIT_SPAWN_SPEED = 10    # env steps between spawns at the start of an episode
INIT_MOVE_INTERVAL = 5   # env steps between two moves of the entities at the start
_SLOT_Y = np.arange(1, 9)  # entity slot k lives on row k + 1
# The player's next column / row for each (column or row, full MinAtar action n, l, u, r, d, f).
_NEXT_X = np.clip(np.arange(10)[:, None] + np.array([0, -1, 0, 1, 0, 0]), 0, 9)
_NEXT_Y = np.clip(np.arange(10)[:, None] + np.array([0, 0, -1, 0, 1, 0]), 1, 8)


class BatchedAsterix:
    """``n`` Asterix games (:class:`~policyshare.batched_minatar.game.BatchedGame`).

    Observations ``(n, 10, 10, 4)`` bool; channels player, enemy, trail, gold.

    Args:
        n: number of envs.
        randoms: one ``numpy.random.RandomState`` per env, kept by reference (not copied).
        ramping: MinAtar's difficulty ramping (``ramp_index`` counts the ramps of each env).

    The constructor draws nothing; call ``reset(np.arange(n))`` before the first :meth:`act`.

    Raises:
        ValueError: ``len(randoms) != n``.
    """

    channels = 4
    minimal_actions = [0, 1, 2, 3, 4]  # n, l, u, r, d

    def __init__(self, n: int, randoms: list[np.random.RandomState], ramping: bool = True) -> None:
        if len(randoms) != n:
            raise ValueError(f"BatchedAsterix: {len(randoms)} RandomStates for {n} envs")
        self.n = n
        self.randoms = randoms
        self.ramping = ramping
        self.player_x = np.full(n, 5, dtype=np.int64)
        self.player_y = np.full(n, 5, dtype=np.int64)
        self.alive = np.zeros((n, 8), dtype=bool)   # slot k holds an entity
        self.ent_x = np.zeros((n, 8), dtype=np.int64)
        self.ent_right = np.zeros((n, 8), dtype=bool)  # moving right (spawned on the left)
        self.ent_gold = np.zeros((n, 8), dtype=bool)
        self.spawn_speed = np.full(n, INIT_SPAWN_SPEED, dtype=np.int64)
        self.spawn_timer = self.spawn_speed.copy()
        self.move_speed = np.full(n, INIT_MOVE_INTERVAL, dtype=np.int64)
        self.move_timer = self.move_speed.copy()
        self.ramp_timer = np.full(n, RAMP_INTERVAL, dtype=np.int64)
        self.ramp_index = np.zeros(n, dtype=np.int64)
        self.terminal = np.zeros(n, dtype=bool)
        self._rows = np.arange(n)

    def reset(self, idx: np.ndarray) -> None:
        """Start new episodes in the envs ``idx`` (no draws)."""
        idx = np.asarray(idx, dtype=np.int64)
        self.player_x[idx] = 5
        self.player_y[idx] = 5
        self.alive[idx] = False
        self.spawn_speed[idx] = INIT_SPAWN_SPEED
        self.spawn_timer[idx] = INIT_SPAWN_SPEED
        self.move_speed[idx] = INIT_MOVE_INTERVAL
        self.move_timer[idx] = INIT_MOVE_INTERVAL
        self.ramp_timer[idx] = RAMP_INTERVAL
        self.ramp_index[idx] = 0
        self.terminal[idx] = False

    def _spawn(self, idx: np.ndarray) -> None:
        """Spawn one entity in each env of ``idx`` (nothing if its rows are all taken; the
        side and kind are drawn all the same, as in the reference)."""
        free = ~self.alive[idx]
        counts = free.sum(axis=1)
        side: list[float] = []
        kind: list[float] = []
        picks: list[int] = []
        randoms = self.randoms
        for i, c in zip(idx.tolist(), counts.tolist(), strict=True):
            rs = randoms[i]
            side.append(rs.random_sample())  # = rand(), without its wrapper
            kind.append(rs.random_sample())
            picks.append(rs.randint(c) if c else 0)
        draws = np.array([side, kind]).T
        pick = np.array(picks, dtype=np.int64)
        ok = counts > 0
        # The pick-th free slot: the first slot where the running count of free slots passes pick.
        slot = np.argmax(np.cumsum(free, axis=1) > pick[:, None], axis=1)
        e, s = idx[ok], slot[ok]
        right = draws[ok, 0] < 1 / 2
        self.alive[e, s] = True
        self.ent_right[e, s] = right
        self.ent_gold[e, s] = draws[ok, 1] < 1 / 3
        self.ent_x[e, s] = np.where(right, 0, 9)

    def _collide(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entities on the player's cell: gold is picked up (removed); returns (gold count,
        enemy touched) per env."""
        on = (self.alive & live[:, None] & (self.ent_x == self.player_x[:, None])
              & (self.player_y[:, None] == _SLOT_Y))
        gold = on & self.ent_gold
        self.alive &= ~gold
        return gold.sum(axis=1), (on & ~self.ent_gold).any(axis=1)

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every env one step (see :meth:`BatchedGame.act`); terminal envs stay put."""
        live = ~self.terminal
        spawn = live & (self.spawn_timer == 0)
        if spawn.any():
            idx = self._rows[spawn]
            self._spawn(idx)
            self.spawn_timer[idx] = self.spawn_speed[idx]

        self.player_x = np.where(live, _NEXT_X[self.player_x, actions], self.player_x)
        self.player_y = np.where(live, _NEXT_Y[self.player_y, actions], self.player_y)
        reward, dead = self._collide(live)

        moves = live & (self.move_timer == 0)
        if moves.any():
            self.move_timer[moves] = self.move_speed[moves]
            m = moves[:, None] & self.alive
            x = self.ent_x + np.where(self.ent_right, 1, -1)
            self.ent_x = np.where(m, x, self.ent_x)
            self.alive &= ~(m & ((x < 0) | (x > 9)))
            r2, d2 = self._collide(moves)
            reward += r2
            dead |= d2

        self.spawn_timer -= live
        self.move_timer -= live
        if self.ramping:
            ramps = live & ((self.spawn_speed > 1) | (self.move_speed > 1))
            wait = ramps & (self.ramp_timer >= 0)
            self.ramp_timer -= wait
            now = ramps & ~wait
            if now.any():
                self.move_speed -= now & (self.move_speed > 1) & (self.ramp_index % 2 == 1)
                self.spawn_speed -= now & (self.spawn_speed > 1)
                self.ramp_index += now
                self.ramp_timer[now] = RAMP_INTERVAL
        self.terminal = self.terminal | dead
        return reward.astype(np.float32), self.terminal.copy()

    def state(self) -> np.ndarray:
        """Observations ``(n, 10, 10, 4)`` bool, as the reference ``Env.state()``."""
        s = np.zeros((self.n, 10, 10, 4), dtype=bool)
        s[self._rows, self.player_y, self.player_x, 0] = True
        e, k = np.nonzero(self.alive)
        x = self.ent_x[e, k]
        right = self.ent_right[e, k]
        s[e, k + 1, x, np.where(self.ent_gold[e, k], 3, 1)] = True
        back = x - np.where(right, 1, -1)
        inside = (back >= 0) & (back <= 9)
        s[e[inside], k[inside] + 1, back[inside], 2] = True
        return s
