"""Checking every job of a sweep before the first runs (the sweeper of ``runner -m``).

Hydra's :class:`BasicSweeper` composes the jobs of a batch before launching it, but the
runner's own checks (:func:`runner.validate.validate`: ranges, cross-key rules, registered
names) ran only when each job started, so ``optimizer.lr=0.001,0`` trained job 0 before job 1
was refused. This sweeper composes and checks every job of the sweep before any runs, in the
launching process, and refuses the whole sweep listing every invalid job — before the sweep
folder is made. The sweeper itself is ``hydra_plugins/runner_sweeper`` (Hydra loads
sweepers only from the ``hydra_plugins`` package); it replaces ``hydra/sweeper/basic``, so
it is the default, and other sweepers (Optuna) still check each trial when it starts.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig, open_dict

from runner.errors import ConfigError, RunnerError

SHOWN = 10  # invalid jobs listed in the message; the rest are counted


def check_jobs(jobs: list[list[str]], compose: Callable[[list[str]], DictConfig]) -> None:
    """Compose and validate each job (``compose(job) -> config``); raise one
    :class:`ConfigError` listing every invalid job, or return when all are valid."""
    from runner.validate import validate

    problems = []
    for num, job in enumerate(jobs):
        try:
            cfg = compose(job)
            with open_dict(cfg):
                cfg.pop("hydra", None)
            validate(cfg)
        except (RunnerError, ValueError, KeyError) as err:  # also OmegaConf's errors
            problems.append(f"job {num} ({' '.join(job) or 'no overrides'}): {_first(err)}")
    if not problems:
        return
    listed = problems[:SHOWN]
    if len(problems) > SHOWN:
        listed.append(f"... and {len(problems) - SHOWN} more")
    raise ConfigError(
        f"{len(problems)} of {len(jobs)} sweep jobs are invalid, so none was run:\n  "
        + "\n  ".join(listed)
        + "\nfix or remove those values and run the sweep again"
    )


def _first(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
