"""User-facing errors.

Anything a user can cause by their input (a bad flag, a mistyped config key, a missing or
corrupt checkpoint, mismatched shapes) is raised as :class:`UserError`. The command line
prints its message as one line on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit status 2.

    The message names the problem and, where possible, the fix.
    """

    exit_code = 2


class ConfigError(UserError):
    """An invalid configuration file, key, type or value."""


class CheckpointError(UserError):
    """A missing, corrupt, unsafe or mismatched checkpoint or trunk file."""


class NumericalError(UserError):
    """A NaN or infinite loss or parameter stopped training."""


class Interrupted(UserError):
    """The user stopped a command (Ctrl-C / SIGINT, SIGTERM) between or during jobs; what finished
    is kept. Reported as one line and exit status 130."""

    exit_code = 130
