"""policyshare: does sharing the lower conv layers across tasks pay off?

Progressive networks, Actor-Mimic distillation and trunk transfer on Gymnasium games (on top of
stable-baselines3), and the same trunk reused for image classification and guided generation.

Public entry points: :func:`load_trunk`, :func:`save_trunk`, :class:`Trunk`, :class:`TrunkSpec`,
:class:`TrunkExtractor`, the submodules (``policyshare.zoo``, ``policyshare.progressive``, …,
imported on first use), and the ``policyshare`` command (``policyshare --help``).

What lives where, imports going downward only (config → envs → networks → SB3 → run folder →
comparison → report): ``io`` (atomic writes, strict JSON, versions), ``config``, ``methods``
(the names of the compared methods), ``envs``,
``alignment``, ``trunks``, ``checkpoints`` (trunk files, safetensors), ``algos`` (the algorithm
registry, SB3 models on a trunk), ``sb3_files`` (SB3 zips, ``--safe`` loading), ``evaluate``
(episodes of any agent), ``runs`` (run folders), ``train``, ``metrics``, ``transfer_metrics`` and
``stats`` (scores and intervals), ``comparison`` (curves of run folders → scores, intervals, table,
plot), ``transfer``, ``progressive``,
``distill``, ``policies`` (any checkpoint as an agent), ``experiment``, ``report``, ``cli``.

Importing the package imports neither torch nor stable-baselines3 (the names above are loaded on
first use). It registers the MinAtar games with Gymnasium (``MinAtar/<Game>-v0`` and
``-v1``), so ``gym.make("MinAtar/Breakout-v1")`` works after ``import policyshare``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

import policyshare.envs  # noqa: F401  (registers MinAtar/<Game>-v0/-v1 with Gymnasium; no torch)

if TYPE_CHECKING:
    from policyshare.checkpoints import load_trunk, save_trunk
    from policyshare.trunks import Trunk, TrunkExtractor, TrunkSpec

__version__ = "0.1.0"

__all__ = ["Trunk", "TrunkExtractor", "TrunkSpec", "__version__", "load_trunk", "save_trunk"]

#: The public names above and the module each is imported from on first use, so that
#: ``import policyshare`` (and ``policyshare --help``) imports neither torch nor stable-baselines3.
_LAZY = {"load_trunk": "policyshare.checkpoints", "save_trunk": "policyshare.checkpoints",
         "Trunk": "policyshare.trunks", "TrunkExtractor": "policyshare.trunks", "TrunkSpec": "policyshare.trunks"}


def __getattr__(name: str) -> Any:
    """A public name of :data:`_LAZY`, or ``policyshare.<submodule>``, imported on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
