"""``hydra/sweeper=runner``: Hydra's basic sweeper that checks every job before the first.

Only :class:`CheckedSweeper` is defined here (Hydra registers every plugin class a module
in ``hydra_plugins`` holds); the checking is :func:`runner.sweep.sweeper.check_jobs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hydra._internal.core_plugins.basic_sweeper as basic
from hydra.core.override_parser import overrides_parser


class CheckedSweeper(basic.BasicSweeper):
    """:class:`BasicSweeper` (same options: ``max_batch_size``) that composes every job of
    the sweep and runs :func:`runner.validate.validate` on it before launching the first."""

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
