"""Errors the runner reports to the user as a short message, without a traceback."""


class RunnerError(Exception):
    """A problem the user can fix; its message says what and how."""


class ConfigError(RunnerError):
    """A config value is missing, misspelt, of the wrong type or out of range."""


class DataError(RunnerError):
    """Data is missing, unreadable or inconsistent."""


class CheckpointError(RunnerError):
    """A checkpoint cannot be read or does not fit the configured model."""


class RunDirError(RunnerError):
    """The run directory cannot take this run: it is busy, holds another run, or cannot
    be written (a file in the way, read-only, disk full)."""
