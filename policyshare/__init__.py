"""policyshare: does sharing the lower conv layers across tasks pay off?

Progressive networks, Actor-Mimic distillation and trunk transfer on Gymnasium games (on top of
stable-baselines3), and the same trunk reused for image classification and guided generation.

Public entry points: :func:`load_trunk`, :func:`save_trunk`, :class:`Trunk`, :class:`TrunkSpec`,
:class:`TrunkExtractor`, and the ``policyshare`` command (``policyshare --help``).
"""

from policyshare.checkpoints import load_trunk, save_trunk
from policyshare.trunks import Trunk, TrunkExtractor, TrunkSpec

__version__ = "0.1.0"

__all__ = ["Trunk", "TrunkExtractor", "TrunkSpec", "__version__", "load_trunk", "save_trunk"]
