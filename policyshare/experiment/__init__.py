"""The end-to-end sharing experiment (being split into modules; see runner)."""

from policyshare.experiment.runner import *  # noqa: F403
from policyshare.experiment.runner import __all__  # noqa: F401
