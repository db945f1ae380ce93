"""runner — a config-driven deep-learning experiment runner.

``from runner import train`` runs one composed config (see :func:`runner.train.train`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def train(cfg: Any) -> dict:
    """Train one composed config; see :func:`runner.train.train`."""
    from runner.train import train as _train

    return _train(cfg)
