"""Model families from libraries: any torchvision or timm classifier by name, pretrained.

- ``model=torchvision model.arch=<name>``: every classification model of
  ``torchvision.models`` (:mod:`runner.hub.torchvision`);
- ``model=timm model.arch=<name>``: timm's models, with timm installed (the ``hub``
  extra; :mod:`runner.hub.timm`).

Both register here through :func:`runner.zoo.register_model`, lazily: nothing of
torchvision.models or timm is imported until a model is built. Their weights, and run
directories or files as ``model.weights``: :mod:`runner.hub.weights`; the weights'
preprocessing: :mod:`runner.hub.preprocess`.
"""

from __future__ import annotations

from typing import Any


def register_hub_families() -> None:
    from runner.schema.model import TimmConf, TorchvisionConf
    from runner.zoo import register_model

    register_model(
        "torchvision",
        "runner.hub.torchvision:build",
        TorchvisionConf,
        stages=_lazy("torchvision", "stages"),
        named_weights=_lazy("torchvision", "named_weights"),
        check=_lazy("torchvision", "check"),
        description="any classification model of torchvision.models (model.arch)",
    )
    register_model(
        "timm",
        "runner.hub.timm:build",
        TimmConf,
        stages=_lazy("timm", "stages"),
        named_weights=_lazy("timm", "named_weights"),
        check=_lazy("timm", "check"),
        description="timm's models (model.arch; pip install 'runner[hub]')",
    )


def _lazy(module: str, name: str) -> Any:
    """``runner.hub.<module>.<name>``, imported on first call."""

    def call(*args: Any, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(f"runner.hub.{module}"), name)(*args, **kwargs)

    call.__name__ = name
    return call
