"""Space Invaders, batched: ``n`` copies of MinAtar's SpaceInvaders advanced with array operations.

The same game as ``minatar.environments.space_invaders.Env`` (MinAtar 1.0.15; Young & Tian
2019): the cannon on the bottom row shoots upward at a 4x6 block of aliens that sweeps sideways,
steps down and turns at an edge, and shoots back from the alien nearest the cannon. The reference
game draws no random numbers, so ``randoms`` is only kept for the common interface and every
env's trajectory is a function of its actions alone.

Representation: the alien, friendly-bullet and enemy-bullet maps are bool arrays
``(n, 10, 10)`` indexed ``[env, row, column]``; counters are ``(n,)`` int arrays. One step is a
fixed number of array operations whatever ``n``; the only per-env branching (which envs move
their aliens or shoot this step) is done on index subsets, without Python loops.

Quirks of the reference kept on purpose (they change states, so exactness needs them):

* aliens step down with ``np.roll``, so aliens on row 9 wrap to row 0 on the step that ends
  the game;
* the move interval is the smaller of the alien count *before* the move and the ramped
  interval, and a cleared wave is refilled in the same step without resetting the direction or
  the timers;
* a killing shot and a game-over can fall in the same step (the reward is still paid).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHOT_COOL_DOWN = 5
"""Env steps between two cannon shots (reference ``shot_cool_down``)."""
ENEMY_MOVE_INTERVAL = 12
"""Initial env steps between two alien moves (reference ``enemy_move_interval``)."""
ENEMY_SHOT_INTERVAL = 10
"""Env steps between two alien shots (reference ``enemy_shot_interval``)."""
MIN_MOVE_INTERVAL = 6
"""Difficulty ramping lowers the move interval, one per cleared wave, down to this value."""

_FIELDS = ("pos", "f_bullets", "e_bullets", "aliens", "alien_dir", "enemy_move_interval",
           "alien_move_timer", "alien_shot_timer", "ramp_index", "shot_timer", "terminal")


class BatchedSpaceInvaders:
    """``n`` SpaceInvaders games advanced together (the :class:`~policyshare.batched_minatar.game.BatchedGame`
    interface).

    Observation channels (as the reference): 0 cannon, 1 alien, 2 alien moving left, 3 alien
    moving right, 4 friendly bullet, 5 enemy bullet.

    Attributes (all ``(n,)`` unless stated; names as in the reference ``Env``):
        pos: cannon column, 0..9.
        f_bullets, e_bullets, aliens: bool maps ``(n, 10, 10)`` ``[env, row, column]``.
        alien_dir: -1 (left) or +1 (right).
        enemy_move_interval: env steps between alien moves for a full wave (12, ramped to 6).
        alien_move_timer, alien_shot_timer, shot_timer: countdowns in env steps.
        ramp_index: waves cleared while ramping lowered the move interval.
        terminal: whether the episode ended (the env stays as it is until :meth:`reset`).

    Args:
        n: number of envs, at least 1.
        randoms: one ``numpy.random.RandomState`` per env; unused (the game is deterministic)
            but required for the common interface.
        ramping: difficulty ramping (each cleared wave moves faster), as the reference's
            ``ramping``.

    Raises:
        ValueError: ``n < 1`` or ``len(randoms) != n``.
    """

    channels = 6
    minimal_actions = [0, 1, 3, 5]

    def __init__(self, n: int, randoms: Sequence[np.random.RandomState], ramping: bool = True) -> None:
        if n < 1:
            raise ValueError(f"need at least one env, got n={n}")
        if len(randoms) != n:
            raise ValueError(f"need one RandomState per env: n={n} but {len(randoms)} given")
        self.n = n
        self.randoms = list(randoms)
        self.ramping = bool(ramping)
        self._rows = np.arange(n)
        self._cols = np.arange(10)
        self.pos = np.zeros(n, np.int64)
        self.f_bullets = np.zeros((n, 10, 10), bool)
        self.e_bullets = np.zeros((n, 10, 10), bool)
        self.aliens = np.zeros((n, 10, 10), bool)
        self.alien_dir = np.zeros(n, np.int64)
        self.enemy_move_interval = np.zeros(n, np.int64)
        self.alien_move_timer = np.zeros(n, np.int64)
        self.alien_shot_timer = np.zeros(n, np.int64)
        self.ramp_index = np.zeros(n, np.int64)
        self.shot_timer = np.zeros(n, np.int64)
        self.terminal = np.zeros(n, bool)
        self.reset(self._rows)

    def reset(self, idx: np.ndarray) -> None:
        """Start new episodes in the envs ``idx`` (int array of env indices): the reference's
        ``Env.reset`` (cannon at column 5, a fresh wave moving left, ramping restarted)."""
        idx = np.asarray(idx, dtype=np.intp)
        if idx.size == 0:
            return
        self.pos[idx] = 5
        self.f_bullets[idx] = False
        self.e_bullets[idx] = False
        self.aliens[idx] = False
        self.aliens[idx[:, None, None], np.arange(4)[:, None], np.arange(2, 8)] = True
        self.alien_dir[idx] = -1
        self.enemy_move_interval[idx] = ENEMY_MOVE_INTERVAL
        self.alien_move_timer[idx] = ENEMY_MOVE_INTERVAL
        self.alien_shot_timer[idx] = ENEMY_SHOT_INTERVAL
        self.ramp_index[idx] = 0
        self.shot_timer[idx] = 0
        self.terminal[idx] = False

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every env one env step, as the reference ``Env.act`` does per env.

        Args:
            actions: ``(n,)`` ints in ``0..5`` (MinAtar's full action set; ``u``/``d`` do
                nothing here).

        Returns:
            ``(reward, terminal)``: ``(n,)`` float32 (aliens shot this step) and ``(n,)`` bool.
            Envs already terminal are left unchanged and get reward 0.
        """
        a = np.asarray(actions)
        frozen = np.flatnonzero(self.terminal)
        saved = {f: getattr(self, f)[frozen].copy() for f in _FIELDS} if frozen.size else None
        term = np.zeros(self.n, bool)

        self._move_cannon(a)
        term |= self._move_bullets()
        term |= self._move_aliens()
        self._aliens_shoot()
        reward = self._hit_aliens()
        self.shot_timer -= self.shot_timer > 0
        self.alien_move_timer -= 1
        self.alien_shot_timer -= 1
        self._refill_cleared_waves()

        self.terminal |= term
        if saved is not None:
            for f, value in saved.items():
                getattr(self, f)[frozen] = value
            reward[frozen] = 0
        return reward.astype(np.float32), self.terminal.copy()

    def _move_cannon(self, a: np.ndarray) -> None:
        """The cannon fires (if its cool-down is over) or moves, per action ``a`` ``(n,)``."""
        fire = np.flatnonzero((a == 5) & (self.shot_timer == 0))
        self.f_bullets[fire, 9, self.pos[fire]] = True
        self.shot_timer[fire] = SHOT_COOL_DOWN
        self.pos = np.where(a == 1, np.maximum(self.pos - 1, 0), self.pos)
        self.pos = np.where(a == 3, np.minimum(self.pos + 1, 9), self.pos)

    def _move_bullets(self) -> np.ndarray:
        """Friendly bullets rise one row (leaving at the top), enemy bullets fall one row.

        Returns:
            ``(n,)`` bool: an enemy bullet landed on the cannon (game over).
        """
        self.f_bullets[:, :9] = self.f_bullets[:, 1:]
        self.f_bullets[:, 9] = False
        self.e_bullets[:, 1:] = self.e_bullets[:, :9]
        self.e_bullets[:, 0] = False
        return self.e_bullets[self._rows, 9, self.pos]

    def _move_aliens(self) -> np.ndarray:
        """The aliens move when their timer is up: down (and turn) at an edge, else sideways.

        Returns:
            ``(n,)`` bool game over: an alien on the cannon's cell before or after the move, or a
            block that steps down from the bottom row.
        """
        ends = self.aliens[self._rows, 9, self.pos]
        move = np.flatnonzero(self.alien_move_timer == 0)
        if move.size:
            block = self.aliens[move]
            self.alien_move_timer[move] = np.minimum(block.sum(axis=(1, 2)), self.enemy_move_interval[move])
            d = self.alien_dir[move]
            at_edge = (block[:, :, 0].any(axis=1) & (d < 0)) | (block[:, :, 9].any(axis=1) & (d > 0))
            down = move[at_edge]
            self.alien_dir[down] = -self.alien_dir[down]
            ends[down] |= self.aliens[down, 9].any(axis=1)
            self.aliens[down] = np.roll(self.aliens[down], 1, axis=1)
            for step in (-1, 1):
                side = move[~at_edge & (d == step)]
                self.aliens[side] = np.roll(self.aliens[side], step, axis=2)
            ends[move] |= self.aliens[move, 9, self.pos[move]]
        return ends

    def _aliens_shoot(self) -> None:
        """When the shot timer is up, the alien nearest the cannon (column distance, ties to the
        left; lowest alien of that column) shoots."""
        shoot = np.flatnonzero(self.alien_shot_timer == 0)
        if shoot.size:
            self.alien_shot_timer[shoot] = ENEMY_SHOT_INTERVAL
            block = self.aliens[shoot]
            occupied = block.any(axis=1)
            distance = np.abs(self._cols[None, :] - self.pos[shoot, None]) * 10 + self._cols[None, :]
            column = np.argmin(np.where(occupied, distance, 1000), axis=1)
            lowest = 9 - np.argmax(block[np.arange(shoot.size), ::-1, column], axis=1)
            self.e_bullets[shoot, lowest, column] = True

    def _hit_aliens(self) -> np.ndarray:
        """Aliens and friendly bullets on the same cell remove each other.

        Returns:
            ``(n,)`` int aliens shot per env.
        """
        kills = self.aliens & self.f_bullets
        self.aliens &= ~kills
        self.f_bullets &= ~kills
        return kills.sum(axis=(1, 2))

    def _refill_cleared_waves(self) -> None:
        """A cleared wave is refilled at once; with ramping the next moves faster."""
        cleared = np.flatnonzero(~self.aliens.any(axis=(1, 2)))
        if cleared.size:
            if self.ramping:
                ramp = cleared[self.enemy_move_interval[cleared] > MIN_MOVE_INTERVAL]
                self.enemy_move_interval[ramp] -= 1
                self.ramp_index[ramp] += 1
            self.aliens[cleared[:, None, None], np.arange(4)[:, None], np.arange(2, 8)] = True

    def state(self) -> np.ndarray:
        """Observations ``(n, 10, 10, 6)`` bool ``[env, row, column, channel]``, identical to the
        reference ``Env.state()`` of each env."""
        s = np.zeros((self.n, 10, 10, self.channels), bool)
        s[self._rows, 9, self.pos, 0] = True
        s[..., 1] = self.aliens
        left = self.alien_dir < 0
        s[left, :, :, 2] = self.aliens[left]
        s[~left, :, :, 3] = self.aliens[~left]
        s[..., 4] = self.f_bullets
        s[..., 5] = self.e_bullets
        return s
