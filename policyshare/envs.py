"""Environments and task suites.

* **MinAtar** (Young & Tian 2019) is registered under ``MinAtar/<Game>-v0`` (all 6 actions) and
  ``MinAtar/<Game>-v1`` (the game's minimal action set) by :class:`MinAtarEnv`, a Gymnasium
  env around ``minatar.Environment`` that seeds through ``reset(seed=...)`` so that
  Gymnasium's env checker passes (MinAtar's own ``minatar.gym`` wrapper does not).
* **Atari** (ALE, ``ALE/<Game>-v5``) uses SB3's standard preprocessing (``AtariWrapper``:
  no-op reset, frame skip 4, 84x84 grayscale, episodic life, reward clipping) and frame stack 4.

A **suite** (``envs/<name>.yaml``) names the Gymnasium ids that form it, its observation layout,
its input alignment for sharing (``pad``/``stem``), its common action space and the wrappers
that apply. :func:`make_vec_env` builds the vectorised env SB3 trains on.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import field
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic.dataclasses import dataclass

from policyshare.config import SETTINGS, Settings, from_dict, read_settings
from policyshare.errors import ConfigError, UserError
from policyshare.paths import ENVS_DIR

MINATAR_GAMES: dict[str, str] = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}

#: Colours for rendering MinAtar channels (background first), RGB 0-255.
_PALETTE = np.array([
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
], dtype=np.uint8)


class MinAtarEnv(gym.Env[np.ndarray, np.int64]):
    """A MinAtar game as a Gymnasium env.

    Observations: ``bool`` grids of shape ``(10, 10, C)`` (channels last; C = 4 Breakout,
    4 Asterix, 7 Freeway, 10 Seaquest, 6 SpaceInvaders). Actions: ``Discrete(n)`` over the
    game's minimal action set (``-v1``) or all 6 MinAtar actions (``-v0``). Rewards as in
    MinAtar. Sticky actions (probability 0.1) and difficulty ramping as in the MinAtar paper.
    Episodes are truncated after ``max_episode_steps`` (registered as 10,000 env steps) as a
    safety net; MinAtar games end on their own long before that in practice.

    Args:
        game: MinAtar module name (``breakout``, ``space_invaders`` …).
        use_minimal_action_set: ``True`` for ``-v1``.
        sticky_action_prob: probability of repeating the previous action.
        difficulty_ramping: MinAtar's difficulty ramping.
        render_mode: ``None`` or ``rgb_array`` (a ``(10*scale, 10*scale, 3)`` uint8 frame).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, game: str, use_minimal_action_set: bool = True,
                 sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 render_mode: str | None = None, render_scale: int = 24) -> None:
        from minatar import Environment

        self.game = Environment(env_name=game, sticky_action_prob=sticky_action_prob,
                                difficulty_ramping=difficulty_ramping)
        all_actions = list(range(self.game.num_actions()))
        self.action_set: list[int] = (
            list(self.game.minimal_action_set()) if use_minimal_action_set else all_actions)
        self.action_space = spaces.Discrete(len(self.action_set))
        self.observation_space = spaces.Box(0, 1, shape=tuple(self.game.state_shape()), dtype=bool)
        self.render_mode = render_mode
        self.render_scale = render_scale

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not hasattr(self, "_seeded"):
            # MinAtar draws from its own RandomState; derive it from Gymnasium's np_random.
            self.game.seed(int(self.np_random.integers(2**31 - 1)))
            self._seeded = True
        self.game.reset()
        return self.game.state().astype(bool), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward, done = self.game.act(self.action_set[int(action)])
        return self.game.state().astype(bool), float(reward), bool(done), False, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return render_frame(self.game.state(), self.render_scale)


def render_frame(state: np.ndarray, scale: int = 24) -> np.ndarray:
    """A MinAtar observation ``(10, 10, C)`` as an RGB frame ``(10*scale, 10*scale, 3)`` uint8
    (each cell coloured by its highest set channel; black where none is set)."""
    n = state.shape[-1]
    index = np.max(state * np.arange(1, n + 1).reshape(1, 1, -1), axis=2)
    frame = _PALETTE[index % len(_PALETTE)]
    return np.repeat(np.repeat(frame, scale, 0), scale, 1)


def register_minatar() -> None:
    """Register ``MinAtar/<Game>-v0`` and ``-v1`` with Gymnasium (idempotent)."""
    for name, module in MINATAR_GAMES.items():
        for version, minimal in (("v0", False), ("v1", True)):
            env_id = f"MinAtar/{name}-{version}"
            if env_id in gym.registry and gym.registry[env_id].entry_point == "policyshare.envs:MinAtarEnv":
                continue
            gym.register(id=env_id, entry_point="policyshare.envs:MinAtarEnv",
                         kwargs={"game": module, "use_minimal_action_set": minimal},
                         max_episode_steps=10_000)


def register_atari() -> None:
    """Register ALE's ``ALE/*`` ids with Gymnasium (idempotent)."""
    import ale_py

    gym.register_envs(ale_py)


register_minatar()


# --------------------------------------------------------------------------------------------
# Suites


@dataclass(frozen=True, config=SETTINGS)
class ObservationLayout(Settings):
    """The suite's aligned observation: layout and the *maximum* size over its tasks."""

    layout: Literal["channels_last", "channels_first"] = "channels_last"
    channels: int = 1
    height: int = 10
    width: int = 10


@dataclass(frozen=True, config=SETTINGS)
class AtariOptions(Settings):
    """SB3 ``AtariWrapper`` options and frame stacking (used by the ``atari`` suite)."""

    noop_max: int = 30
    frame_skip: int = 4
    screen_size: int = 84
    terminal_on_life_loss: bool = True
    clip_reward: bool = True
    frame_stack: int = 4


@dataclass(frozen=True, config=SETTINGS)
class Suite(Settings):
    """A task suite: which Gymnasium ids form it and how they are aligned for sharing.

    Attributes:
        name: suite name (the YAML file's stem).
        description: one line for ``--help`` and reports.
        kind: ``minatar`` or ``atari`` (selects the env-building path).
        tasks: the Gymnasium ids of the suite.
        match: glob patterns of further ids that belong to the suite (e.g. ``ALE/*``).
        observation: the aligned observation layout (maximum channels over tasks).
        alignment: ``pad`` or ``stem`` (see :mod:`policyshare.alignment`).
        actions: names of the common action space (MinAtar: 6, Atari: 18).
        trunk: the default trunk spec name for this suite.
        atari: Atari preprocessing options (``kind: atari`` only).
    """

    name: str
    kind: Literal["minatar", "atari"]
    tasks: tuple[str, ...]
    actions: tuple[str, ...]
    observation: ObservationLayout
    description: str = ""
    match: tuple[str, ...] = ()
    alignment: Literal["pad", "stem"] = "pad"
    trunk: str = "minatar"
    atari: AtariOptions = field(default_factory=AtariOptions)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError(f"suite {self.name}: 'tasks' must list at least one env id")

    @property
    def channels_last(self) -> bool:
        return self.observation.layout == "channels_last"

    def contains(self, env_id: str) -> bool:
        """Whether ``env_id`` belongs to the suite (listed or matching a pattern)."""
        return env_id in self.tasks or any(fnmatch.fnmatchcase(env_id, p) for p in self.match)

    def alignment_kwargs(self, mode: str | None = None) -> dict[str, Any]:
        """Keyword arguments of :class:`~policyshare.alignment.InputAlignment` for this suite."""
        return {"mode": mode or self.alignment, "channels_last": self.channels_last,
                "channels": self.observation.channels}


def suite_files() -> list[Path]:
    """The suite YAML files under ``envs/``."""
    return sorted(ENVS_DIR.glob("*.yaml"))


@cache
def load_suite(name: str) -> Suite:
    """Load ``envs/<name>.yaml`` into a :class:`Suite`.

    Raises:
        ConfigError: unknown suite or invalid file.
    """
    path = ENVS_DIR / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(p.stem for p in suite_files())
        raise ConfigError(f"unknown suite {name!r}; available: {names}")
    raw, where = read_settings(path, expected="a mapping of suite settings (tasks, actions, observation, …)")
    return from_dict(Suite, {"name": name, **raw}, where)


def all_suites() -> list[Suite]:
    """Every suite under ``envs/``."""
    return [load_suite(p.stem) for p in suite_files()]


def suite_for(env_id: str) -> Suite:
    """The suite an env id belongs to.

    Raises:
        UserError: if the id is in no suite (with the ids that are), or if there are no suites at
            all (``envs/`` missing or empty, e.g. a ``POLICYSHARE_HOME`` without it).
    """
    suites = all_suites()
    if not suites:
        fix = ("POLICYSHARE_HOME points there: give it an envs/ folder (a copy of policyshare's) or unset it"
               if os.environ.get("POLICYSHARE_HOME") else "reinstall policyshare, whose envs/*.yaml are missing")
        raise UserError(f"unknown env id {env_id!r}: no task suites (envs/*.yaml) in {ENVS_DIR}; {fix}")
    for s in suites:
        if s.contains(env_id):
            return s
    known = [t for s in suites for t in s.tasks]
    import difflib

    close = difflib.get_close_matches(env_id, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserError(f"unknown env id {env_id!r}{hint}; known ids: {', '.join(known)}")


def check_env_id(env_id: str) -> Suite:
    """Validate an env id: it must belong to a suite and be registered with Gymnasium.

    Raises:
        UserError: unknown id.
    """
    suite = suite_for(env_id)
    if suite.kind == "atari":
        register_atari()
    if env_id not in gym.registry:
        raise UserError(f"env id {env_id!r} is not registered with Gymnasium; "
                        f"check the spelling (suite {suite.name})")
    return suite


def _atari_single(env_id: str, opts: AtariOptions, render_mode: str | None = None) -> gym.Env:
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    register_atari()
    # ALE v5 skips 4 frames itself; AtariWrapper does the skipping (and max-pooling) instead.
    env = gym.make(env_id, render_mode=render_mode, frameskip=1)
    # Episodic life is a training device: it turns a lost life into a fake episode end and
    # makes reset() continue the game, which breaks reset(seed=...) on purpose. It is applied by
    # make_vec_env for training, not here.
    return AtariWrapper(env, noop_max=opts.noop_max, frame_skip=opts.frame_skip,
                        screen_size=opts.screen_size, terminal_on_life_loss=False,
                        clip_reward=opts.clip_reward)


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One (unvectorised) env with the suite's per-env wrappers, for checks and videos.

    MinAtar: the registered env. Atari: the ALE env (``frameskip=1``) under SB3's
    ``AtariWrapper`` without episodic life (frame stacking and episodic life are applied to
    the vectorised training env by :func:`make_vec_env`).

    Raises:
        UserError: unknown env id.
    """
    suite = check_env_id(env_id)
    if suite.kind == "atari":
        return _atari_single(env_id, suite.atari, render_mode)
    return gym.make(env_id, render_mode=render_mode)


def _make_minatar(env_id: str, render_mode: str | None = None) -> gym.Env:
    register_minatar()
    return gym.make(env_id, render_mode=render_mode)


def check_vec_env(env_id: str, vec_env: str) -> None:
    """Refuse, before anything runs, a ``vec_env`` that cannot run ``env_id``: ``batched``
    exists for the MinAtar games only.

    Raises:
        UserError: ``batched`` with an env of another suite, or a MinAtar game without a
            batched version.
    """
    if vec_env != "batched":
        return
    suite = suite_for(env_id)
    if suite.kind != "minatar":
        raise UserError(f"vec_env 'batched' runs MinAtar games only, not {env_id!r} "
                        f"({suite.name} suite); use vec_env=dummy or vec_env=subproc")
    from policyshare.batched_minatar import available_games

    game = gym.registry[env_id].kwargs["game"] if env_id in gym.registry else None
    if game not in available_games():
        raise UserError(f"vec_env 'batched' has no batched version of {env_id!r} yet "
                        f"(batched: {', '.join(available_games())}); use vec_env=dummy")


def make_vec_env(env_id: str, n_envs: int, seed: int, vec_env: str = "dummy",
                 render_mode: str | None = None) -> Any:
    """The vectorised env SB3 trains and evaluates on, each sub-env wrapped in ``Monitor``.

    Sub-env ``i`` is seeded with ``seed + i`` (SB3's convention). Atari gets SB3's
    ``make_atari_env`` and ``VecFrameStack`` with the suite's frame stack.

    Args:
        env_id: a Gymnasium id of a suite.
        n_envs: number of parallel envs.
        seed: base seed.
        vec_env: ``dummy`` (``DummyVecEnv``, one process), ``subproc`` (``SubprocVecEnv``) or
            ``batched`` (MinAtar only: the ``n_envs`` games stepped together with array
            operations, :class:`~policyshare.batched_minatar.vecenv.BatchedMinAtarVecEnv` under
            SB3's ``VecMonitor``; the same observations, rewards and dones as ``dummy`` for the
            same seed and actions).
        render_mode: passed to the envs (``rgb_array`` for videos).

    Raises:
        UserError: unknown env id; ``batched`` with an env that is not MinAtar.
    """
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack

    suite = check_env_id(env_id)
    if vec_env == "batched":
        check_vec_env(env_id, vec_env)
        from policyshare.batched_minatar.vecenv import make_batched_vec_env

        return make_batched_vec_env(env_id, n_envs, seed, render_mode=render_mode)
    cls = SubprocVecEnv if vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    if suite.kind == "atari":
        o = suite.atari
        venv = make_atari_env(env_id, n_envs=n_envs, seed=seed, vec_env_cls=cls,
                              env_kwargs={"render_mode": render_mode, "frameskip": 1},
                              wrapper_kwargs={"noop_max": o.noop_max, "frame_skip": o.frame_skip,
                                              "screen_size": o.screen_size,
                                              "terminal_on_life_loss": o.terminal_on_life_loss,
                                              "clip_reward": o.clip_reward})
        return VecFrameStack(venv, n_stack=o.frame_stack)
    factory: Callable[[], gym.Env] = partial(_make_minatar, env_id, render_mode)
    return sb3_make_vec_env(factory, n_envs=n_envs, seed=seed, vec_env_cls=cls)


def task_action_map(env_id: str) -> list[int]:
    """For each of a task's actions, its index in the suite's common action space.

    MinAtar ``-v1``: the minimal action set's indices into MinAtar's 6 actions. ALE: the
    minimal action set's indices into the full 18.

    Raises:
        UserError: unknown env id.
    """
    env = make_env(env_id)
    try:
        base = env.unwrapped
        if isinstance(base, MinAtarEnv):
            return list(base.action_set)
        action_set = getattr(base, "_action_set", None)
        if action_set is None:
            raise ConfigError(f"cannot tell how {env_id}'s actions map to its suite's actions")
        return [int(getattr(a, "value", a)) for a in action_set]
    finally:
        env.close()
