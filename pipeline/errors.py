"""Errors a user can act on; the CLI prints them without a traceback."""


class DstrainError(Exception):
    """Something the user can fix; the message says what and where."""


class ConfigError(DstrainError):
    """Bad settings, refused before any work starts."""


class StageError(DstrainError):
    """A stage could not finish; what it finished before stays done."""
