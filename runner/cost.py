"""What one sample costs the configured model, said when a run starts.

:class:`ModelCost` (a callback) counts the model's FLOPs per image (or per text of the
run's full length) before the first epoch with the cheap shape-based counter
(:func:`runner.models.summary.count_flops`: convolutions, linear and recurrent layers,
milliseconds, no ``torch._dynamo`` import), logs them with a ResNet's stem and how it was
chosen, and warns when the configuration costs at least :data:`WARN_RATIO` times the
FLOPs of its obvious alternative — for a ResNet, the stem that ``stem=auto`` picks for
this image size (``model.stem=cifar`` at 64 px costs 15x ``imagenet``). The figures go
to summary.json (``stem``, ``cost_warning``) and a "Model cost" section of report.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from runner.callbacks import Callback
from runner.data.base import DataBundle
from runner.models.summary import count_flops, format_flops

log = logging.getLogger(__name__)

WARN_RATIO = 10.0  # warn when a configuration costs this many times its obvious alternative


@dataclass(frozen=True)
class Cost:
    """FLOPs per sample of the configured model and, where there is one, of its obvious
    alternative (``alternative``: the override that gives it, e.g. ``model.stem=imagenet``)."""

    flops: int
    per: str  # "image (3x64x64)" | "text of 128 tokens"
    stem: str | None = None
    stem_reason: str = ""
    alternative: str | None = None
    alternative_flops: int | None = None

    @property
    def ratio(self) -> float | None:
        if not self.alternative_flops:
            return None
        return self.flops / self.alternative_flops

    def line(self) -> str:
        """``4.44 GFLOPs per image (3x64x64), stem cifar (model.stem=cifar; ...)``."""
        text = f"{format_flops(self.flops)} per {self.per}"
        if self.stem:
            text += f", stem {self.stem} ({self.stem_reason})"
        return text

    def warning(self) -> str | None:
        """The ≥ :data:`WARN_RATIO` × warning, or None."""
        ratio = self.ratio
        if ratio is None or ratio < WARN_RATIO:
            return None
        return (
            f"this configuration costs {ratio:.1f}x the FLOPs of {self.alternative} "
            f"({format_flops(self.flops)} vs {format_flops(self.alternative_flops or 0)} per "
            f"{self.per.split(' ')[0]}), and every epoch about that much more time; set "
            f"{self.alternative} unless the extra cost is what you want"
        )


def measure(model_cfg: DictConfig, model: torch.nn.Module, data: DataBundle) -> Cost:
    """The :class:`Cost` of ``model`` (built from ``model_cfg``) on ``data``'s inputs."""
    text = data.kind == "text"
    shape = tuple(int(s) for s in data.input_shape())
    dtype = torch.long if text else torch.float32
    flops = count_flops(model, shape, dtype)
    per = f"text of {shape[0]} tokens" if text else f"image ({'x'.join(map(str, shape))})"
    stem = getattr(model, "stem", None) if "stem" in model_cfg else None
    if stem is None:
        return Cost(flops, per)
    from runner.models.resnet import CIFAR_STEM_BELOW, resolve_stem

    side = min(data.image_size)
    auto = resolve_stem("auto", data.image_size)
    relation = "<" if side < CIFAR_STEM_BELOW else ">="
    if str(model_cfg.stem) == "auto":
        reason = f"model.stem=auto: {side} px {relation} {CIFAR_STEM_BELOW}"
        return Cost(flops, per, stem, reason)
    reason = f"model.stem={stem}; auto would pick {auto} at {side} px"
    if auto == stem:
        return Cost(flops, per, stem, reason)
    alternative = f"model.stem={auto}"
    other = _build_variant(model_cfg, data, stem=auto)
    return Cost(flops, per, stem, reason, alternative, count_flops(other, shape, dtype))


def _build_variant(model_cfg: DictConfig, data: DataBundle, **changes: Any) -> torch.nn.Module:
    from runner.zoo import build_model

    variant = OmegaConf.merge(model_cfg, changes)
    return build_model(variant, data.model_kwargs(), announce=False)


class ModelCost(Callback):
    """Logs the model's cost before the first epoch (and warns, see the module doc); adds
    ``stem`` and ``cost_warning`` to summary.json and a "Model cost" section to report.md."""

    def __init__(self, model_cfg: DictConfig, data: DataBundle) -> None:
        self.model_cfg, self.data = model_cfg, data
        self.cost: Cost | None = None

    def on_fit_start(self, loop: Any) -> None:
        if self.cost is not None:
            return
        try:
            self.cost = measure(self.model_cfg, loop.model, self.data)
        except Exception as err:  # a counting failure must not cost the run
            log.warning("could not count the model's FLOPs before training: %s", err)
            return
        log.info("model cost: %s", self.cost.line())
        warning = self.cost.warning()
        if warning:
            log.warning("model cost: %s", warning)

    def on_summary(self, loop: Any, summary: dict[str, Any], test: Any) -> list[str]:
        if self.cost is None:
            return []
        if self.cost.stem:
            summary["stem"] = self.cost.stem
        warning = self.cost.warning()
        if warning:
            summary["cost_warning"] = warning
        lines = ["## Model cost", "", f"{self.cost.line()[0].upper()}{self.cost.line()[1:]}."]
        lines += [
            "",
            "Counted before training over convolutions, linear and recurrent layers "
            "(a multiply-add is 2 FLOPs); `flops` in summary.json counts every op torch "
            "has a formula for.",
        ]
        if warning:
            lines += ["", f"**Warning:** {warning[0].upper()}{warning[1:]}."]
        return [*lines, ""]
