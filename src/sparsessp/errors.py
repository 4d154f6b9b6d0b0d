"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, config or files: reported in one line, never a traceback."""

    exit_code = 2


class ConfigError(UserError):
    """An unknown config key, an impossible value or an impossible combination."""


class InputError(UserError):
    """A data file that cannot be used as given (corrupt, wrong shape, NaN, ...)."""


class CheckpointError(UserError):
    """A checkpoint that does not belong to this model, or that would need unpickling."""
