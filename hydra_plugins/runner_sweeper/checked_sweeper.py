"""``hydra/sweeper=basic`` for ``runner -m``: Hydra's basic sweeper, every job checked first.

:class:`CheckedSweeper` is Hydra's :class:`BasicSweeper` (same options) that composes every
job of the sweep and runs :func:`runner.sweep.sweeper.check_jobs` on them before launching
the first. Its config replaces Hydra's own ``hydra/sweeper/basic`` node in the ConfigStore
(:func:`register`, called by ``runner.cli`` after Hydra's plugin scan), so it is the default
sweeper while presets that pick another one (``+hparams_search=optuna``) still can.
(No ``from __future__ import annotations``: Hydra's plugin scan imports this module in a way
that leaves dataclasses unable to resolve string annotations.)
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hydra._internal.core_plugins.basic_sweeper as basic
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser import overrides_parser


class CheckedSweeper(basic.BasicSweeper):
    """:class:`BasicSweeper` that checks every job's composed config before the first runs."""

    def sweep(self, arguments: list[str]) -> Any:
        from runner.sweep.sweeper import check_jobs

        loader = self.hydra_context.config_loader
        params = self._parse_config() + list(arguments)
        parser = overrides_parser.OverridesParser.create(config_loader=loader)
        jobs = [job for batch in self.split_arguments(parser.parse_overrides(params), None)
                for job in batch]  # fmt: skip
        check_jobs(jobs, lambda job: loader.load_sweep_config(self.config, list(job)))
        return super().sweep(arguments)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing left to do: :meth:`sweep` composed and checked every job already."""


@dataclass
class CheckedSweeperConf(basic.BasicSweeperConf):
    _target_: str = "hydra_plugins.runner_sweeper.checked_sweeper.CheckedSweeper"


def register() -> None:
    """Make :class:`CheckedSweeper` the ``hydra/sweeper/basic`` of the ConfigStore. Call it
    after Hydra's plugin scan, which re-runs the basic sweeper's module and its entry."""
    ConfigStore.instance().store(
        group="hydra/sweeper", name="basic", node=CheckedSweeperConf, provider="runner"
    )


register()
