"""Errors the runner reports to the user as a short message, without a traceback, and the
exit codes of every ``runner*`` command (README "What happens when…")."""

from enum import IntEnum


class Exit(IntEnum):
    """One exit code per kind of outcome, the same for every ``runner*`` command."""

    OK = 0  # done: the run finished (or had already finished), the files were written
    FAILED = 1  # the work ran but gave no result: an unexpected error (a bug), failed sweep
    #             jobs, no input readable (runner-predict), an export whose check failed
    REFUSED = 2  # refused before or while working, for a reason the message names and you
    #              can fix: config, data, checkpoint, paths, a busy run directory, disk full
    DIVERGED = 3  # the run diverged (its result is recorded, status diverged)
    INTERRUPTED = 4  # stopped by a signal (status interrupted; resume with trainer.resume=true)


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
