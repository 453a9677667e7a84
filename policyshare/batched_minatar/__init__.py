"""Batched MinAtar: the ``n`` envs of one MinAtar game advanced together with array operations.

Stepping many Python env objects one by one bounds how fast policyshare learns MinAtar on a few
CPU cores; here the ``n`` copies of a game live in numpy arrays with a leading env axis. Each
game reproduces the reference ``minatar.environments.<game>.Env`` (MinAtar 1.0.15; Young &
Tian 2019) exactly: env ``i`` draws from its own ``numpy.random.RandomState`` in the reference's
order, so the same seeds and actions give the same states, rewards and terminations (tested
step by step against the reference in ``tests/test_batched_minatar*.py``).

What lives where:

* :mod:`~policyshare.batched_minatar.game`: the :class:`BatchedGame` protocol every game
  implements (``reset(idx)``, ``act(actions)``, ``state()``). A game's constructor is
  ``Batched<Game>(n, randoms, ramping=True)``; it keeps ``randoms`` by reference and draws
  nothing (call ``reset(np.arange(n))`` before the first ``act``).
* :mod:`~policyshare.batched_minatar.breakout`, ``freeway``, ``asterix``, ``seaquest``,
  ``space_invaders``: one module per game.
* :mod:`~policyshare.batched_minatar.vecenv`: :class:`BatchedMinAtarVecEnv`, a game behind
  stable-baselines3's ``VecEnv`` API with sticky actions, auto-reset, the 10,000-step time limit
  and the seeding of ``policyshare.envs.make_vec_env`` (``vec_env: batched`` in a train config).
* this module: :data:`GAMES`, the registry of game modules, and :func:`game_class`, which
  imports a game's module only when it is asked for (a game whose module is missing does not
  break the others).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policyshare.batched_minatar.game import BatchedGame

#: MinAtar game module name (as ``minatar.environments.<name>``) -> class name in
#: ``policyshare.batched_minatar.<name>``.
GAMES: dict[str, str] = {
    "asterix": "BatchedAsterix",
    "breakout": "BatchedBreakout",
    "freeway": "BatchedFreeway",
    "seaquest": "BatchedSeaquest",
    "space_invaders": "BatchedSpaceInvaders",
}


def game_class(name: str) -> Callable[..., BatchedGame]:
    """The batched class of a MinAtar game, importing its module on first use.

    The class is called as ``cls(n, randoms, ramping=True)``.

    Args:
        name: MinAtar module name (``breakout``, ``space_invaders`` …).

    Raises:
        KeyError: ``name`` is not in :data:`GAMES`.
        ImportError: the game's module (or its class) is not there (yet).
    """
    if name not in GAMES:
        raise KeyError(f"no batched MinAtar game {name!r}; known: {', '.join(sorted(GAMES))}")
    module = import_module(f"{__name__}.{name}")
    cls = getattr(module, GAMES[name], None)
    if cls is None:
        raise ImportError(f"{module.__name__} defines no {GAMES[name]}")
    return cls


def available_games() -> list[str]:
    """The games of :data:`GAMES` whose module is there (sorted).

    Raises:
        ImportError: a game's module is there but fails to import (a bug, not a missing game).
    """
    out = []
    for name in sorted(GAMES):
        try:
            game_class(name)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            continue
        out.append(name)
    return out
