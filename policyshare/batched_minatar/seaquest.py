"""Seaquest, batched: ``n`` copies of MinAtar's Seaquest advanced with array operations.

The same game as ``minatar.environments.seaquest.Env`` (MinAtar 1.0.15; Young & Tian 2019): a
two-cell submarine shoots enemy fish and enemy subs (which shoot back), picks up divers, loses
oxygen under water and surfaces to refill it; every surfacing with divers on board ramps the
difficulty up (enemies spawn more often and move faster).

Randomness is reproduced exactly: env ``i`` draws from ``randoms[i]`` in the reference's order
(enemy spawn: direction, kind, row; then diver spawn: direction, row), in a Python loop over only
the envs that spawn this step. Everything else is array operations over the env axis.

Representation (``n`` envs):

* bullets as bit masks ``(n, 10)`` ``[env, row]`` (bit ``x`` set: a bullet in column ``x``),
  one per direction of travel, so a move is a shift (friendly bullets never share a cell, enemy
  bullets that share a cell and a direction move together for ever, so masks lose nothing);
* enemies (fish and subs) and divers as slot arrays ``(n, K)`` with an ``active`` mask and the
  env step at which each was spawned (``order``). The reference keeps them in lists and walks
  them in list (= spawn) order or reversed, which decides who wins when two objects meet one
  bullet or when the sub can take only some of the divers it touches; ``order`` reproduces
  those choices. ``K`` grows when an env runs out of slots.

Quirks of the reference kept on purpose (they change states or rewards, so exactness needs them):

* surfacing with 6 divers pays ``oxygen * 10 // 200`` and then leaves the diver count at -1
  (``diver_count = 0`` then ``diver_count -= 1``), so the next surfacing with no diver picked up
  does not end the game;
* an enemy sub fires on its shot timer even in the step a bullet removes it (from where it
  died); a sub that leaves the screen fires from off screen and that bullet vanishes at once;
* a bullet is matched first against fish, then subs, in spawn order; enemies that step onto a
  bullet take it subs first, latest spawned first;
* the oxygen check comes before the oxygen is used: an env with 0 oxygen ends on its next step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_OXYGEN = 200
"""Oxygen after surfacing, in env steps under water."""
INIT_SPAWN_SPEED = 20
"""Initial env steps between enemy spawns (ramped down to 1)."""
DIVER_SPAWN_SPEED = 30
"""Env steps between diver spawns."""
INIT_MOVE_INTERVAL = 5
"""Initial env steps an enemy waits between moves (ramped down to 2)."""
SHOT_COOL_DOWN = 5
"""Env steps between two shots of the player."""
ENEMY_SHOT_INTERVAL = 10
"""Env steps between two shots of an enemy sub."""
DIVER_MOVE_INTERVAL = 5
"""Env steps a diver waits between moves."""
MAX_DIVERS = 6
"""Divers the submarine can carry."""

_ROW = (1 << 10) - 1
_BITS = (np.arange(1 << 10)[:, None] >> np.arange(10)) & 1 == 1
"""``_BITS[mask]``: the 10 columns of a row bit mask, as bools."""
_OXYGEN_BAR = np.arange(10) < np.arange(11)[:, None]
"""``_OXYGEN_BAR[k]``: the bottom row with the first ``k`` cells lit."""
_DIVER_BAR = (np.arange(10) >= 9 - np.arange(MAX_DIVERS + 1)[:, None]) & (np.arange(10) < 9)
"""``_DIVER_BAR[k]``: the bottom row with ``k`` cells lit, ending at column 8."""
_CELLS = np.arange(10)
_MOVE_X = np.stack([_CELLS, np.maximum(_CELLS - 1, 0), _CELLS, np.minimum(_CELLS + 1, 9), _CELLS, _CELLS])
"""``_MOVE_X[action, x]``: the submarine's column after ``action`` (``l`` and ``r`` move it)."""
_MOVE_Y = np.stack([_CELLS, _CELLS, np.maximum(_CELLS - 1, 0), _CELLS, np.minimum(_CELLS + 1, 8), _CELLS])
"""``_MOVE_Y[action, y]``: the submarine's row after ``action`` (``u`` and ``d``; row 9 is the gauges')."""
_FACE = np.array([[False, True], [False, False], [False, True], [True, True], [False, True], [False, True]])
"""``_FACE[action, faces_right]``: whether the submarine faces right after ``action``."""
_PLAYER_FIELDS = ("oxygen", "diver_count", "sub_x", "sub_y", "sub_or", "e_spawn_speed", "e_spawn_timer",
                  "d_spawn_timer", "move_speed", "ramp_index", "shot_timer", "surface", "terminal",
                  "f_right", "f_left", "e_right", "e_left")
_ENEMY_FIELDS = ("e_active", "e_x", "e_y", "e_dx", "e_sub", "e_timer", "e_shot", "e_order")
_DIVER_FIELDS = ("d_active", "d_x", "d_y", "d_dx", "d_timer", "d_order")


def _bit(masks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Whether bit ``x`` is set in ``masks`` (same shapes; ``x`` in ``0..9``), as bools."""
    return ((masks >> x) & 1).astype(bool)


def _on_screen(x: np.ndarray) -> np.ndarray:
    """Whether columns ``x`` (int64) lie in ``0..9``: one comparison, as negative ints read as
    huge unsigned ones."""
    return x.view(np.uint64) < 10


def _one_per_cell(candidates: np.ndarray, cell: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Among ``candidates`` ``(n, K)`` bool, keep per ``(env, cell)`` only the one of lowest ``rank``.

    Args:
        candidates: ``(n, K)`` bool, objects that claim the thing at their cell.
        cell: ``(n, K)`` int, the cell each object is on (``row * 10 + column``).
        rank: ``(n, K)`` int, lower wins; distinct within an env and cell.

    Returns:
        ``(n, K)`` bool winners, one per claimed ``(env, cell)``.
    """
    env, slot = np.nonzero(candidates)
    winners = np.zeros_like(candidates)
    if env.size == 0:
        return winners
    key = env * 100 + cell[env, slot]
    order = np.lexsort((rank[env, slot], key))
    key = key[order]
    first = np.ones(key.size, bool)
    first[1:] = key[1:] != key[:-1]
    winners[env[order[first]], slot[order[first]]] = True
    return winners


class BatchedSeaquest:
    """``n`` Seaquest games advanced together (the :class:`~policyshare.batched_minatar.game.BatchedGame`
    interface).

    Observation channels (as the reference): 0 sub front, 1 sub back, 2 friendly bullet,
    3 trail (where each enemy and diver was last), 4 enemy bullet, 5 enemy fish, 6 enemy sub,
    7 oxygen gauge, 8 diver gauge, 9 diver.

    Attributes (``(n,)`` arrays unless stated; names as in the reference ``Env``):
        sub_x, sub_y: the submarine's front cell (column 0..9, row 0..8; row 0 is the surface).
        sub_or: the submarine faces right.
        oxygen: env steps of oxygen left (200 after surfacing).
        diver_count: divers on board (0..6; -1 and below after a full surfacing, see the module
            docstring).
        e_spawn_speed, move_speed: env steps between enemy spawns and between enemy moves,
            lowered by ramping.
        e_spawn_timer, d_spawn_timer, shot_timer: countdowns in env steps.
        ramp_index: surfacings that ramped the difficulty up.
        surface: the submarine has surfaced and not dived since.
        terminal: the episode ended (the env stays as it is until :meth:`reset`).
        f_right, f_left, e_right, e_left: friendly and enemy bullets moving right / left,
            int bit masks ``(n, 10)`` ``[env, row]``, bit ``x`` for column ``x``.
        e_*: enemies, ``(n, K)``: ``active``, ``x``, ``y``, ``dx`` (+1 moving right, -1 left), ``sub``
            (a sub, else a fish), ``timer`` (env steps to its next move), ``shot`` (env steps
            to its next shot, subs only), ``order`` (env step of spawning).
        d_*: divers, ``(n, D)``: ``active``, ``x``, ``y``, ``dx``, ``timer``, ``order``.

    Args:
        n: number of envs, at least 1.
        randoms: one ``numpy.random.RandomState`` per env, drawn from as the reference's
            ``Env.random``.
        ramping: difficulty ramping, as the reference's ``ramping``.

    Raises:
        ValueError: ``n < 1`` or ``len(randoms) != n``.
    """

    channels = 10
    minimal_actions = [0, 1, 2, 3, 4, 5]

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
        self._clock = 0
        ints = ("oxygen", "diver_count", "sub_x", "sub_y", "e_spawn_speed", "e_spawn_timer", "d_spawn_timer",
                "move_speed", "ramp_index", "shot_timer")
        for name in ints:
            setattr(self, name, np.zeros(n, np.int64))
        self.sub_or = np.zeros(n, bool)
        self.surface = np.zeros(n, bool)
        self.terminal = np.zeros(n, bool)
        self.f_right = np.zeros((n, 10), np.int64)
        self.f_left = np.zeros((n, 10), np.int64)
        self.e_right = np.zeros((n, 10), np.int64)
        self.e_left = np.zeros((n, 10), np.int64)
        self._make_slots(_ENEMY_FIELDS, 8)
        self._make_slots(_DIVER_FIELDS, 4)
        self.reset(self._rows)

    # Declared for type checkers; created by the loops above.
    oxygen: np.ndarray
    diver_count: np.ndarray
    sub_x: np.ndarray
    sub_y: np.ndarray
    e_spawn_speed: np.ndarray
    e_spawn_timer: np.ndarray
    d_spawn_timer: np.ndarray
    move_speed: np.ndarray
    ramp_index: np.ndarray
    shot_timer: np.ndarray
    e_active: np.ndarray
    e_x: np.ndarray
    e_y: np.ndarray
    e_dx: np.ndarray
    e_sub: np.ndarray
    e_timer: np.ndarray
    e_shot: np.ndarray
    e_order: np.ndarray
    d_active: np.ndarray
    d_x: np.ndarray
    d_y: np.ndarray
    d_dx: np.ndarray
    d_timer: np.ndarray
    d_order: np.ndarray

    def _make_slots(self, fields: tuple[str, ...], capacity: int) -> None:
        for name in fields:
            kind = bool if name.endswith(("active", "sub")) else np.int64
            setattr(self, name, np.zeros((self.n, capacity), kind))

    def _grow(self, fields: tuple[str, ...]) -> None:
        """Double the slot capacity of one kind of object (enemies or divers)."""
        for name in fields:
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros_like(old)], axis=1))

    def reset(self, idx: np.ndarray) -> None:
        """Start new episodes in the envs ``idx`` (int array of env indices), as the reference's
        ``Env.reset`` (no random draws; ramping restarts)."""
        idx = np.asarray(idx, dtype=np.intp)
        if idx.size == 0:
            return
        self.oxygen[idx] = MAX_OXYGEN
        self.diver_count[idx] = 0
        self.sub_x[idx] = 5
        self.sub_y[idx] = 0
        self.sub_or[idx] = False
        for grid in (self.f_right, self.f_left, self.e_right, self.e_left):
            grid[idx] = 0
        self.e_active[idx] = False
        self.d_active[idx] = False
        self.e_spawn_speed[idx] = INIT_SPAWN_SPEED
        self.e_spawn_timer[idx] = INIT_SPAWN_SPEED
        self.d_spawn_timer[idx] = DIVER_SPAWN_SPEED
        self.move_speed[idx] = INIT_MOVE_INTERVAL
        self.ramp_index[idx] = 0
        self.shot_timer[idx] = 0
        self.surface[idx] = True
        self.terminal[idx] = False

    def _spawn_enemies(self, envs: np.ndarray) -> None:
        """Reference ``_spawn_enemy`` for each env in ``envs``: a fish or sub at a random row,
        entering from a random side, unless the row holds an enemy going the other way."""
        values: list[float] = []
        for i in envs.tolist():
            r = self.randoms[i]
            values += r.random_sample(2).tolist()
            values.append(r.randint(low=1, high=9))
        draws = np.array(values).reshape(-1, 3)
        dx = np.where(draws[:, 0] < 1 / 2, 1, -1)
        sub = draws[:, 1] < 1 / 3
        y = draws[:, 2].astype(np.int64)
        blocked = (self.e_active[envs] & (self.e_y[envs] == y[:, None]) & (self.e_dx[envs] != dx[:, None])).any(1)
        envs, dx, sub, y = envs[~blocked], dx[~blocked], sub[~blocked], y[~blocked]
        slot = np.argmin(self.e_active[envs], axis=1)
        self.e_active[envs, slot] = True
        self.e_x[envs, slot] = np.where(dx > 0, 0, 9)
        self.e_y[envs, slot] = y
        self.e_dx[envs, slot] = dx
        self.e_sub[envs, slot] = sub
        self.e_timer[envs, slot] = self.move_speed[envs]
        self.e_shot[envs, slot] = ENEMY_SHOT_INTERVAL
        self.e_order[envs, slot] = self._clock

    def _spawn_divers(self, envs: np.ndarray) -> None:
        """Reference ``_spawn_diver`` for each env in ``envs``: a diver at a random row, entering
        from a random side."""
        values: list[float] = []
        for i in envs.tolist():
            r = self.randoms[i]
            values += (r.random_sample(), r.randint(low=1, high=9))
        draws = np.array(values).reshape(-1, 2)
        right = draws[:, 0] < 1 / 2
        slot = np.argmin(self.d_active[envs], axis=1)
        self.d_active[envs, slot] = True
        self.d_x[envs, slot] = np.where(right, 0, 9)
        self.d_y[envs, slot] = draws[:, 1].astype(np.int64)
        self.d_dx[envs, slot] = np.where(right, 1, -1)
        self.d_timer[envs, slot] = DIVER_MOVE_INTERVAL
        self.d_order[envs, slot] = self._clock

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every env one env step, as the reference ``Env.act`` does per env.

        Args:
            actions: ``(n,)`` ints in ``0..5`` (MinAtar's full action set ``n l u r d f``).

        Returns:
            ``(reward, terminal)``: ``(n,)`` float32 (enemies shot, plus the oxygen bonus of a
            surfacing with 6 divers) and ``(n,)`` bool. Envs already terminal are left
            unchanged and get reward 0.
        """
        a = np.asarray(actions)
        self._make_room()
        frozen = np.flatnonzero(self.terminal)
        saved = ({f: getattr(self, f)[frozen].copy() for f in _PLAYER_FIELDS + _ENEMY_FIELDS + _DIVER_FIELDS}
                 if frozen.size else None)
        live = ~self.terminal
        reward = np.zeros(self.n, np.int64)
        term = np.zeros(self.n, bool)
        self._clock += 1

        self._spawn(live)
        self._move_player(a)
        px, py = self.sub_x[:, None], self.sub_y[:, None]
        bullets = self._move_friendly_bullets()
        reward += self._shoot_enemies(bullets)
        self._move_divers(px, py)
        shot, ends = self._move_enemies(px, py, bullets)
        reward += shot
        term |= ends
        term |= self._move_enemy_bullets()
        ends, bonus = self._breathe()
        term |= ends
        reward += bonus

        self.terminal |= term
        if saved is not None:
            for f, value in saved.items():
                getattr(self, f)[frozen] = value
            reward[frozen] = 0
        return reward.astype(np.float32), self.terminal.copy()

    def _make_room(self) -> None:
        """Room for one more enemy and one more diver in every env (:meth:`act` calls it before it
        saves the finished envs)."""
        if self.e_active.all(axis=1).any():
            self._grow(_ENEMY_FIELDS)
        if self.d_active.all(axis=1).any():
            self._grow(_DIVER_FIELDS)

    def _spawn(self, live: np.ndarray) -> None:
        """Spawns (the only random draws) in the ``live`` envs whose timers are up, enemy before
        diver as in the reference."""
        spawn = np.flatnonzero(live & (self.e_spawn_timer == 0))
        if spawn.size:
            self._spawn_enemies(spawn)
            self.e_spawn_timer[spawn] = self.e_spawn_speed[spawn]
        spawn = np.flatnonzero(live & (self.d_spawn_timer == 0))
        if spawn.size:
            self._spawn_divers(spawn)
            self.d_spawn_timer[spawn] = DIVER_SPAWN_SPEED

    def _move_player(self, a: np.ndarray) -> None:
        """The player fires (if its cool-down is over) or moves, per action ``a`` ``(n,)``."""
        fire = np.flatnonzero((a == 5) & (self.shot_timer == 0))
        if fire.size:
            grid = np.where(self.sub_or[fire], 1, 0)
            for g, bullets in enumerate((self.f_left, self.f_right)):
                f = fire[grid == g]
                bullets[f, self.sub_y[f]] |= 1 << self.sub_x[f]
            self.shot_timer[fire] = SHOT_COOL_DOWN
        self.sub_or = _FACE[a, self.sub_or.view(np.int8)]
        self.sub_x = _MOVE_X[a, self.sub_x]
        self.sub_y = _MOVE_Y[a, self.sub_y]

    def _move_friendly_bullets(self) -> np.ndarray:
        """Friendly bullets move one column.

        Returns:
            ``(n, 10)`` int bit masks of all friendly bullets, both directions (a new array that
            :meth:`_spend_bullets` updates as bullets are spent).
        """
        self.f_right = (self.f_right << 1) & _ROW
        self.f_left >>= 1
        return self.f_right | self.f_left

    def _shoot_enemies(self, bullets: np.ndarray) -> np.ndarray:
        """A friendly bullet that meets an enemy (before the enemies move) removes it (fish first,
        then subs, each in spawn order) and is spent.

        Returns:
            ``(n,)`` int enemies shot per env.
        """
        ex, ey = np.where(self.e_active, self.e_x, 0), self.e_y
        hit = self.e_active & _bit(bullets[self._rows[:, None], ey], ex)
        if not hit.any():
            return np.zeros(self.n, np.int64)
        shot = _one_per_cell(hit, ey * 10 + ex, (self.e_sub.astype(np.int64) << 40) + self.e_order)
        self._spend_bullets(shot, ey, ex, bullets)
        self.e_active &= ~shot
        return shot.sum(axis=1)

    def _move_enemies(self, px: np.ndarray, py: np.ndarray, bullets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Enemies: touching the player ``(px, py)`` ends the game; on their move timer they step
        (leaving the screen at the sides); one that steps onto a bullet dies with it (subs before
        fish, latest spawned first, as the reference's reversed walks); subs fire on their shot
        timer. (Timers of free slots run on below zero; a spawn sets them again.)

        Returns:
            ``(shot, ends)``: ``(n,)`` int enemies shot per env and ``(n,)`` bool game over.
        """
        alive = self.e_active
        in_row = alive & (self.e_y == py)
        touching = in_row & (self.e_x == px)
        moves = alive & (self.e_timer == 0)
        self.e_timer = np.where(moves, self.move_speed[:, None], self.e_timer - 1)
        self.e_x = np.where(moves, self.e_x + self.e_dx, self.e_x)
        landed = moves & _on_screen(self.e_x)
        gone = moves & ~landed
        on_player = landed & in_row & (self.e_x == px)
        ends = (touching | on_player).any(axis=1)
        ex, ey = np.where(landed, self.e_x, 0), self.e_y
        hit = landed & ~on_player & _bit(bullets[self._rows[:, None], ey], ex)
        shot_count = np.zeros(self.n, np.int64)
        if hit.any():
            shot = _one_per_cell(hit, ey * 10 + ex, -((self.e_sub.astype(np.int64) << 40) + self.e_order))
            self._spend_bullets(shot, ey, ex, bullets)
            shot_count = shot.sum(axis=1)
            gone |= shot
        self._subs_fire(alive)
        self.e_active = alive & ~gone
        return shot_count, ends

    def _subs_fire(self, alive: np.ndarray) -> None:
        """Enemy subs among ``alive`` ``(n, K)`` fire on their shot timer, from where they are now
        (a bullet fired from off screen vanishes at once)."""
        fires = alive & self.e_sub & (self.e_shot == 0)
        self.e_shot = np.where(fires, ENEMY_SHOT_INTERVAL, self.e_shot - 1)
        fires &= _on_screen(self.e_x)
        if fires.any():
            env, slot = np.nonzero(fires)
            right = self.e_dx[env, slot] > 0
            for bullets_dir, sel in ((self.e_right, right), (self.e_left, ~right)):
                np.bitwise_or.at(bullets_dir, (env[sel], self.e_y[env[sel], slot[sel]]),
                                 1 << self.e_x[env[sel], slot[sel]])

    def _move_enemy_bullets(self) -> np.ndarray:
        """Enemy bullets move one column; touching the player before or after the move ends the game.

        Returns:
            ``(n,)`` bool game over.
        """
        ends = _bit((self.e_right | self.e_left)[self._rows, self.sub_y], self.sub_x)
        self.e_right = (self.e_right << 1) & _ROW
        self.e_left >>= 1
        ends |= _bit((self.e_right | self.e_left)[self._rows, self.sub_y], self.sub_x)
        return ends

    def _breathe(self) -> tuple[np.ndarray, np.ndarray]:
        """Timers count down, oxygen is checked (before it is used) and used under water, and a
        submarine arriving at the surface ends the game without divers, else surfaces.

        Returns:
            ``(ends, bonus)``: ``(n,)`` bool game over and ``(n,)`` int surfacing rewards.
        """
        self.e_spawn_timer -= self.e_spawn_timer > 0
        self.d_spawn_timer -= self.d_spawn_timer > 0
        self.shot_timer -= self.shot_timer > 0
        ends = self.oxygen <= 0
        under = self.sub_y > 0
        self.oxygen -= under
        self.surface &= ~under
        arriving = ~under & ~self.surface
        ends |= arriving & (self.diver_count == 0)
        bonus = np.zeros(self.n, np.int64)
        surfacing = np.flatnonzero(arriving & (self.diver_count != 0))
        if surfacing.size:
            bonus[surfacing] = self._surface(surfacing)
        return ends, bonus

    def _spend_bullets(self, shot: np.ndarray, ey: np.ndarray, ex: np.ndarray, bullets: np.ndarray) -> None:
        """Remove the friendly bullets at the cells of the enemies ``shot`` ``(n, K)`` bool."""
        env, slot = np.nonzero(shot)
        row, keep = (env, ey[env, slot]), ~(1 << ex[env, slot])
        for mask in (self.f_right, self.f_left, bullets):
            np.bitwise_and.at(mask, row, keep)

    def _move_divers(self, px: np.ndarray, py: np.ndarray) -> None:
        """Reference diver walk: the submarine picks up divers it touches, before or after their
        move, while it has room (latest spawned first); the others move on their timer and
        leave the screen at the sides."""
        alive = self.d_active
        if not alive.any():
            return
        moves = alive & (self.d_timer == 0)
        moved_x = self.d_x + self.d_dx
        in_row = alive & (self.d_y == py)
        touched = in_row & ((self.d_x == px) | (moves & (moved_x == px)))
        picked = np.zeros_like(alive)
        if touched.any():
            later = (touched[:, None, :] & (self.d_order[:, None, :] > self.d_order[:, :, None])).sum(axis=2)
            picked = touched & (later < (MAX_DIVERS - self.diver_count)[:, None])
            self.diver_count += picked.sum(axis=1)
        rest = alive & ~picked
        moves &= rest
        self.d_timer = np.where(moves, DIVER_MOVE_INTERVAL, self.d_timer - 1)  # free slots run on below zero
        self.d_x = np.where(moves, moved_x, self.d_x)
        self.d_active = rest & _on_screen(self.d_x)

    def _surface(self, envs: np.ndarray) -> np.ndarray:
        """Reference ``_surface`` for ``envs`` (surfacing with divers on board): oxygen refilled,
        one diver dropped (all six with a bonus of ``oxygen * 10 // 200``), difficulty ramped.

        Returns:
            ``(len(envs),)`` int rewards.
        """
        self.surface[envs] = True
        full = self.diver_count[envs] == MAX_DIVERS
        bonus = np.where(full, self.oxygen[envs] * 10 // MAX_OXYGEN, 0)
        self.diver_count[envs[full]] = 0
        self.oxygen[envs] = MAX_OXYGEN
        self.diver_count[envs] -= 1
        if self.ramping:
            ramp = envs[(self.e_spawn_speed[envs] > 1) | (self.move_speed[envs] > 2)]
            faster = ramp[(self.move_speed[ramp] > 2) & (self.ramp_index[ramp] % 2 == 1)]
            self.move_speed[faster] -= 1
            self.e_spawn_speed[ramp] -= self.e_spawn_speed[ramp] > 1
            self.ramp_index[ramp] += 1
        return bonus

    def state(self) -> np.ndarray:
        """Observations ``(n, 10, 10, 10)`` bool ``[env, row, column, channel]``, identical to
        the reference ``Env.state()`` of each env."""
        s = np.zeros((self.n, 10, 10, self.channels), bool)
        s[self._rows, self.sub_y, self.sub_x, 0] = True
        s[self._rows, self.sub_y, np.where(self.sub_or, self.sub_x - 1, self.sub_x + 1), 1] = True
        s[..., 2] = _BITS[self.f_right | self.f_left]
        s[..., 4] = _BITS[self.e_right | self.e_left]
        s[:, 9, :, 7] = _OXYGEN_BAR[np.maximum(self.oxygen, 0) * 10 // MAX_OXYGEN]
        s[:, 9, :, 8] = _DIVER_BAR[np.maximum(self.diver_count, 0)]  # none lit at -1 and below
        for active, x, y, dx, kind in ((self.e_active, self.e_x, self.e_y, self.e_dx, np.where(self.e_sub, 6, 5)),
                                       (self.d_active, self.d_x, self.d_y, self.d_dx, None)):
            env, slot = np.nonzero(active)
            ox, oy = x[env, slot], y[env, slot]
            s[env, oy, ox, 9 if kind is None else kind[env, slot]] = True
            back = ox - dx[env, slot]
            seen = _on_screen(back)
            s[env[seen], oy[seen], back[seen], 3] = True
        return s
