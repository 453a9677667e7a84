"""policyshare: does sharing the lower conv layers across tasks pay off?

Progressive networks, Actor-Mimic distillation and trunk transfer on Gymnasium games (on top of
stable-baselines3), and the same trunk reused for image classification and guided generation.

Public entry points: :func:`load_trunk`, :func:`save_trunk`, :class:`Trunk`, :class:`TrunkSpec`,
:class:`TrunkExtractor`, the submodules (``policyshare.zoo``, ``policyshare.progressive``, …,
imported on first use), and the ``policyshare`` command (``policyshare --help``).

Importing the package registers the MinAtar games with Gymnasium (``MinAtar/<Game>-v0`` and
``-v1``), so ``gym.make("MinAtar/Breakout-v1")`` works after ``import policyshare``.
"""

import importlib
import importlib.util
from types import ModuleType

import policyshare.envs  # noqa: F401  (registers MinAtar/<Game>-v0/-v1 with Gymnasium)
from policyshare.checkpoints import load_trunk, save_trunk
from policyshare.trunks import Trunk, TrunkExtractor, TrunkSpec

__version__ = "0.1.0"

__all__ = ["Trunk", "TrunkExtractor", "TrunkSpec", "__version__", "load_trunk", "save_trunk"]

def __getattr__(name: str) -> ModuleType:
    """``policyshare.<submodule>`` without importing it first (PEP 562)."""
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
