"""Sweeps: summaries, effect plots and the ``runner-report`` command.

- :mod:`runner.sweep.runs`     find and read run directories (also of running sweeps)
- :mod:`runner.sweep.summary`  summary.csv/.md, effects.csv, seeds table
- :mod:`runner.sweep.figures`  curves.png, effects.png
- :mod:`runner.sweep.callback` the Hydra callback that writes them after ``runner -m``
- :mod:`runner.sweep.report`   ``runner-report PATH...``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.sweep.summary import SweepResult

__all__ = ["write_sweep_summary"]


def write_sweep_summary(*args, **kwargs) -> SweepResult:
    """See :func:`runner.sweep.summary.write_sweep_summary` (imported lazily)."""
    from runner.sweep.summary import write_sweep_summary as write

    return write(*args, **kwargs)
