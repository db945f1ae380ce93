"""runner — a config-driven deep-learning experiment runner.

Python API (see :mod:`runner.api`)::

    import runner
    summary = runner.train(["model=custom_cnn", "trainer.max_epochs=5"])  # overrides, as the CLI
    summary = runner.train(cfg)               # or a composed DictConfig
    run = runner.load_run(summary["run_dir"])  # .summary .metrics .config .model .predict()
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"


def train(cfg: Any, run_dir: Any = None) -> dict:
    """Train a composed ``DictConfig`` or a list of overrides; see :func:`runner.api.train`."""
    from runner.api import train as _train

    return _train(cfg, run_dir)


_train = train  # the package attribute `train` becomes the submodule once it is imported


def __getattr__(name: str) -> Any:
    if name in ("load_run", "Run", "compose"):
        from runner import api

        return getattr(api, name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """``runner.train`` once the module ``runner/train.py`` is imported: calling it still trains
    (importing a submodule replaces the package attribute of the same name)."""

    def __call__(self, cfg: Any, run_dir: Any = None) -> dict:
        return _train(cfg, run_dir)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
