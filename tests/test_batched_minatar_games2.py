"""Batched Seaquest and SpaceInvaders play the same game as MinAtar's reference envs.

Each test runs N reference ``minatar.environments.<game>.Env`` objects and one batched game in
lock step on the same actions (drawn from a generator of their own) and asserts identical
states, rewards and terminals at every step, resetting game-overs on both sides. The tests also
assert that the runs reached what they claim to cover: game-overs, difficulty ramping, and for
Seaquest the surfacing with six divers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from minatar.environments import seaquest, space_invaders

from policyshare.batched_minatar.seaquest import BatchedSeaquest
from policyshare.batched_minatar.space_invaders import BatchedSpaceInvaders

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Setup = Callable[[list, object, np.ndarray], None]


@dataclass
class Lockstep:
    """What a lock-step run saw (from the reference envs)."""

    game_overs: int = 0
    ramp_at_game_over: list[int] = field(default_factory=list)
    reward: float = 0.0
    diver_counts: set[int] = field(default_factory=set)
    returns: list[float] = field(default_factory=list)
    envs: list[int] = field(default_factory=list)


def assert_same_states(refs: list, batched, when: str) -> np.ndarray:
    """Assert the batched observations equal the reference ones; return them."""
    state = batched.state()
    expected = np.stack([env.state() for env in refs])
    assert state.shape == expected.shape and state.dtype == bool
    wrong = np.argwhere(state != expected)
    assert wrong.size == 0, f"{when}: states differ at [env, row, col, channel] {wrong[:5].tolist()}"
    return state


def lockstep(refs: list, batched, steps: int, policy: Policy, seed: int, setup: Setup | None = None) -> Lockstep:
    """Play ``refs`` and ``batched`` side by side for ``steps`` env steps; assert they agree
    (observations after every step, the last one of an episode included, and after resets)."""
    n = len(refs)
    actions_rng = np.random.default_rng(seed)
    seen = Lockstep()
    episode_return = np.zeros(n)
    if setup is not None:
        setup(refs, batched, np.arange(n))
    state = assert_same_states(refs, batched, "at the start")
    for step in range(steps):
        actions = policy(state, actions_rng)
        out = [env.act(int(a)) for env, a in zip(refs, actions)]
        reward, terminal = batched.act(actions)
        assert reward.dtype == np.float32 and terminal.dtype == bool
        np.testing.assert_array_equal(reward, [r for r, _ in out], err_msg=f"rewards at step {step}")
        np.testing.assert_array_equal(terminal, [t for _, t in out], err_msg=f"terminals at step {step}")
        state = assert_same_states(refs, batched, f"after step {step}")
        seen.reward += float(reward.sum())
        episode_return += reward
        if hasattr(refs[0], "diver_count"):
            seen.diver_counts.update(env.diver_count for env in refs)
        over = np.flatnonzero(terminal)
        if over.size == 0:
            continue
        for i in over:
            seen.ramp_at_game_over.append(refs[i].ramp_index)
            seen.returns.append(float(episode_return[i]))
            seen.envs.append(int(i))
            episode_return[i] = 0
            refs[i].reset()
        batched.reset(over)
        if setup is not None:
            setup(refs, batched, over)
        seen.game_overs += over.size
        state = assert_same_states(refs, batched, f"after the resets of step {step}")
    return seen


def uniform_actions(state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(6, size=len(state))


def seaquest_pair(n: int, seed: int, ramping: bool = True) -> tuple[list, BatchedSeaquest]:
    refs = []
    for i in range(n):
        env = seaquest.Env(ramping=ramping)
        env.random = np.random.RandomState(seed * 1000 + i)
        refs.append(env)
    batched = BatchedSeaquest(n, [np.random.RandomState(seed * 1000 + i) for i in range(n)], ramping=ramping)
    return refs, batched


@pytest.mark.parametrize("seed", [0, 1])
def test_seaquest_matches_the_reference_from_fresh_games(seed: int) -> None:
    refs, batched = seaquest_pair(12, seed)
    seen = lockstep(refs, batched, 1200, uniform_actions, seed=100 + seed)
    assert seen.game_overs > 200
    assert max(seen.ramp_at_game_over) >= 1, "no surfacing with divers ramped the difficulty"


def late_seaquest(refs: list, batched: BatchedSeaquest, idx: np.ndarray) -> None:
    """Start episodes late: six divers on board, fast spawns and moves, well into ramping (some
    envs one surfacing before the move interval's last step, some at both floors)."""
    for i in idx:
        refs[i].diver_count = 6
        refs[i].e_spawn_speed = 1 + i % 3
        refs[i].move_speed = 2 + i % 2
        refs[i].ramp_index = 7
    batched.diver_count[idx] = 6
    batched.e_spawn_speed[idx] = 1 + idx % 3
    batched.move_speed[idx] = 2 + idx % 2
    batched.ramp_index[idx] = 7


@pytest.mark.parametrize("seed", [3])
def test_seaquest_matches_the_reference_late_in_the_game(seed: int) -> None:
    refs, batched = seaquest_pair(16, seed)
    fire_often = [0.1, 0.1, 0.1, 0.1, 0.2, 0.4]

    def policy(state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(6, size=len(state), p=fire_often)

    seen = lockstep(refs, batched, 1200, policy, seed=200 + seed, setup=late_seaquest)
    assert seen.game_overs > 150
    assert -1 in seen.diver_counts, "no surfacing with six divers (which leaves the count at -1)"
    assert max(seen.ramp_at_game_over) > 7, "ramping did not advance from the late start"
    assert batched.e_active.shape[1] > 8, "enemies never crowded past the initial slot capacity"


def test_seaquest_without_ramping_matches_the_reference() -> None:
    refs, batched = seaquest_pair(8, seed=5, ramping=False)
    seen = lockstep(refs, batched, 1000, uniform_actions, seed=300, setup=late_seaquest)
    assert seen.game_overs > 50
    assert set(seen.ramp_at_game_over) == {7}
    assert -1 in seen.diver_counts


def dodge_and_fire(state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random SpaceInvaders policy that avoids enemy bullets about to land and fires often,
    so that waves get cleared (uniform random actions almost never clear one)."""
    actions = np.empty(len(state), np.int64)
    for i, obs in enumerate(state):
        pos = int(np.flatnonzero(obs[9, :, 0])[0])
        safe = [a for a, p in ((5, pos), (0, pos), (1, max(0, pos - 1)), (3, min(9, pos + 1)))
                if not obs[6:9, p, 5].any()]
        if not safe:
            actions[i] = rng.integers(6)
        elif 5 in safe and rng.random() < 0.6:
            actions[i] = 5
        else:
            actions[i] = rng.choice(safe)
    return actions


def space_invaders_pair(n: int, ramping: bool = True) -> tuple[list, BatchedSpaceInvaders]:
    refs = [space_invaders.Env(ramping=ramping) for _ in range(n)]
    return refs, BatchedSpaceInvaders(n, [np.random.RandomState(i) for i in range(n)], ramping=ramping)


@pytest.mark.parametrize("seed", [0])
def test_space_invaders_matches_the_reference(seed: int) -> None:
    refs, batched = space_invaders_pair(12)
    seen = lockstep(refs, batched, 1500, dodge_and_fire, seed=seed)
    assert seen.game_overs > 30
    ramps = [r for r in seen.ramp_at_game_over if r > 0] + [r for r in batched.ramp_index.tolist() if r > 0]
    assert ramps, "no wave was cleared, so ramping was not reached"


def near_the_ramp_floor(refs: list, batched: BatchedSpaceInvaders, idx: np.ndarray) -> None:
    """Start episodes with one row of aliens left (6), moving at the fastest ramped interval (6,
    even envs) or one above it (7, odd envs)."""
    for i in idx:
        refs[i].enemy_move_interval = 6 + i % 2
        refs[i].alien_map[0:3] = 0
    batched.enemy_move_interval[idx] = 6 + idx % 2
    batched.aliens[idx, 0:3] = False


@pytest.mark.parametrize("ramping", [True, False])
def test_space_invaders_matches_the_reference_at_the_ramp_floor(ramping: bool) -> None:
    refs, batched = space_invaders_pair(8, ramping=ramping)
    seen = lockstep(refs, batched, 1200, dodge_and_fire, seed=7, setup=near_the_ramp_floor)
    assert seen.game_overs > 15
    cleared = [(env % 2, ramp) for env, ramp, ret in zip(seen.envs, seen.ramp_at_game_over, seen.returns)
               if ret >= 6]
    assert {parity for parity, _ in cleared} == {0, 1}, "waves were not cleared from both intervals"
    if ramping:
        assert set(cleared) == {(0, 0), (1, 1)}, "interval 7 ramps once to 6; at 6 it stays"
    else:
        assert {ramp for _, ramp in cleared} == {0}


@pytest.mark.parametrize("make", [lambda n: seaquest_pair(n, seed=9), space_invaders_pair],
                         ids=["seaquest", "space_invaders"])
def test_an_env_that_is_over_stays_as_it_is_until_reset(make) -> None:
    refs, batched = make(4)
    rng = np.random.default_rng(0)
    over = np.zeros(4, bool)
    for _ in range(3000):
        actions = uniform_actions(batched.state(), rng)
        _, terminal = batched.act(actions)
        over |= terminal
        if over[0]:
            break
    assert over[0], "env 0 never ended"
    if isinstance(batched, BatchedSeaquest):
        batched.e_spawn_timer[0] = batched.d_spawn_timer[0] = 0  # spawns due: they must not draw
    frozen_state = batched.state()[0]
    frozen_draws = batched.randoms[0].get_state()[1].copy(), batched.randoms[0].get_state()[2]
    for _ in range(40):
        reward, terminal = batched.act(np.full(4, 5))
        assert reward[0] == 0 and terminal[0]
        np.testing.assert_array_equal(batched.state()[0], frozen_state)
    draws = batched.randoms[0].get_state()
    np.testing.assert_array_equal(draws[1], frozen_draws[0])
    assert draws[2] == frozen_draws[1], "a finished env drew random numbers"
    batched.reset(np.array([0]))
    assert not batched.act(np.zeros(4, np.int64))[1][0]


@pytest.mark.parametrize("game", [BatchedSeaquest, BatchedSpaceInvaders])
def test_one_random_state_per_env_is_required(game) -> None:
    with pytest.raises(ValueError, match="one RandomState per env"):
        game(3, [np.random.RandomState(0)])


def load_seaquest(batched: BatchedSeaquest, i: int, env: seaquest.Env) -> None:
    """Put the reference ``env``'s game into batched env ``i`` (list order kept as spawn order)."""
    for name in ("oxygen", "diver_count", "sub_x", "sub_y", "sub_or", "e_spawn_speed", "e_spawn_timer",
                 "d_spawn_timer", "move_speed", "ramp_index", "shot_timer", "surface", "terminal"):
        getattr(batched, name)[i] = getattr(env, name)
    for right, left, bullets in ((batched.f_right, batched.f_left, env.f_bullets),
                                 (batched.e_right, batched.e_left, env.e_bullets)):
        right[i] = left[i] = 0
        for x, y, lr in bullets:
            (right if lr else left)[i, y] |= 1 << x
    enemies = [(fish, False) for fish in env.e_fish] + [(sub, True) for sub in env.e_subs]
    assert len(enemies) <= batched.e_active.shape[1] and len(env.divers) <= batched.d_active.shape[1]
    batched.e_active[i] = batched.d_active[i] = False
    for k, (enemy, is_sub) in enumerate(enemies):
        batched.e_active[i, k], batched.e_sub[i, k] = True, is_sub
        batched.e_x[i, k], batched.e_y[i, k], batched.e_timer[i, k] = enemy[0], enemy[1], enemy[3]
        batched.e_dx[i, k] = 1 if enemy[2] else -1
        batched.e_shot[i, k] = enemy[4] if is_sub else 0
        batched.e_order[i, k] = k - len(enemies)
    for k, (x, y, lr, timer) in enumerate(env.divers):
        batched.d_active[i, k] = True
        batched.d_x[i, k], batched.d_y[i, k], batched.d_dx[i, k], batched.d_timer[i, k] = x, y, 1 if lr else -1, timer
        batched.d_order[i, k] = k - len(env.divers)


def seaquest_scenario(**fields: object) -> tuple[seaquest.Env, BatchedSeaquest]:
    """A reference Seaquest with ``fields`` set (no spawns for a while) and a batched copy of it."""
    env = seaquest.Env()
    env.e_spawn_timer = env.d_spawn_timer = 20
    for name, value in fields.items():
        setattr(env, name, value)
    batched = BatchedSeaquest(1, [np.random.RandomState(0)])
    load_seaquest(batched, 0, env)
    np.testing.assert_array_equal(batched.state()[0], env.state())
    return env, batched


def play_noops(env: seaquest.Env, batched: BatchedSeaquest, steps: int) -> float:
    """Step both with the no-op action; assert they agree every step; the reference's return."""
    total = 0.0
    for _ in range(steps):
        reward, terminal = env.act(0)
        got = batched.act(np.zeros(1, np.int64))
        assert (got[0][0], got[1][0]) == (reward, terminal)
        np.testing.assert_array_equal(batched.state()[0], env.state())
        total += reward
    return total


def test_seaquest_bullet_takes_the_first_fish_in_its_cell_before_any_sub() -> None:
    env, batched = seaquest_scenario(
        sub_x=1, sub_y=5, sub_or=True, f_bullets=[[3, 5, True]],
        e_fish=[[4, 5, False, 3], [4, 5, True, 2]], e_subs=[[4, 5, True, 3, 7]])
    assert play_noops(env, batched, 1) == 1
    assert env.e_fish == [[4, 5, True, 1]] and len(env.e_subs) == 1


def test_seaquest_subs_stepping_onto_a_bullet_latest_spawned_first_and_it_still_fires() -> None:
    env, batched = seaquest_scenario(
        sub_x=8, sub_y=2, f_bullets=[[5, 5, False]],
        e_subs=[[3, 5, True, 0, 6], [3, 5, True, 0, 0]], e_fish=[[5, 5, False, 0]])
    assert play_noops(env, batched, 1) == 1
    assert [sub[4] for sub in env.e_subs] == [5], "the earlier sub survives"
    assert env.e_fish and env.e_bullets, "the fish survives (the sub took the bullet); the dead sub fired"
    play_noops(env, batched, 8)  # the survivor fires when its own shot timer runs out


def test_seaquest_sub_with_room_for_one_diver_takes_the_latest_spawned() -> None:
    env, batched = seaquest_scenario(
        sub_x=4, sub_y=6, diver_count=5, divers=[[4, 6, True, 2], [3, 6, True, 0]])
    play_noops(env, batched, 1)
    assert env.diver_count == 6 and env.divers == [[4, 6, True, 1]]
    play_noops(env, batched, 2)  # the diver left behind moves on its own timer
    assert env.divers == [[5, 6, True, 5]]
