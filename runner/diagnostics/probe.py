"""Forward hooks on activation modules: dead units, activation statistics and histograms.

A *unit* is a channel of a 4-D (N, C, H, W) activation or a feature (last dimension) of any
other shape. A unit is *dead* when it is never positive over the probe batch — for ReLU and
ReLU6 it then passes no gradient at all ("dying ReLU"). A value of a bounded activation
(sigmoid, tanh, hardtanh) is *saturated* when it lies within 2 % of the output range of a
bound, where the activation's gradient is nearly zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Softplus,
    nn.Tanh,
    nn.Sigmoid,
)
# Activations whose gradient is exactly zero where the output is not positive.
RELU_KINDS = ("ReLU", "ReLU6")
# Bounded activations: (low, high) of the output; saturated within 2 % of the range.
BOUNDS = {"Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0), "Hardtanh": (-1.0, 1.0)}
SATURATION_MARGIN = 0.02


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every activation module, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)]


class _Accumulator:
    """Running sums of one activation module's outputs over the probe chunks."""

    def __init__(self, sample_values: int, bounds: tuple[float, float] | None = None) -> None:
        self.unit_max: torch.Tensor | None = None
        self.total = self.total_sq = 0.0
        self.count = 0
        self.bounds, self.saturated = bounds, 0
        self.sample_values = sample_values
        self.samples: list[np.ndarray] = []

    def add(self, out: torch.Tensor) -> None:
        out = out.detach().float()
        if out.ndim == 4:
            units = out.transpose(0, 1).flatten(1)
        elif out.ndim >= 2:
            units = out.flatten(0, -2).T
        else:
            units = out.reshape(1, -1)
        unit_max = units.amax(1) if units.shape[1] else torch.zeros(units.shape[0])
        if self.unit_max is None:
            self.unit_max = unit_max
        elif self.unit_max.shape == unit_max.shape:  # a module applied twice at another width
            self.unit_max = torch.maximum(self.unit_max, unit_max)
        self.total += out.sum().item()
        self.total_sq += out.square().sum().item()
        self.count += out.numel()
        if self.bounds is not None:
            lo, hi = self.bounds
            margin = SATURATION_MARGIN * (hi - lo)
            self.saturated += int(((out <= lo + margin) | (out >= hi - margin)).sum().item())
        if self.sample_values:
            flat = out.flatten()
            step = max(1, flat.numel() // self.sample_values)
            self.samples.append(flat[::step].cpu().numpy())

    def row(self) -> dict[str, float]:
        n = max(self.count, 1)
        mean = self.total / n
        var = max(self.total_sq / n - mean * mean, 0.0)
        units = 0 if self.unit_max is None else int(self.unit_max.numel())
        dead = 0 if self.unit_max is None else int((self.unit_max <= 0).sum().item())
        return {
            "units": units,
            "dead_units": dead,
            "dead_share": dead / units if units else float("nan"),
            "saturated_share": self.saturated / n if self.bounds is not None else float("nan"),
            "mean": mean,
            "std": var**0.5,
        }


@contextmanager
def _hooked(model: nn.Module, sample_values: int) -> Iterator[dict[str, _Accumulator]]:
    accs: dict[str, _Accumulator] = {}
    handles = []
    for name, module in activation_modules(model):
        bounds = BOUNDS.get(type(module).__name__)
        if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
            bounds = (float(module.min_val), float(module.max_val))
        acc = accs.setdefault(name, _Accumulator(sample_values, bounds))
        handles.append(module.register_forward_hook(lambda _m, _i, out, acc=acc: acc.add(out)))
    try:
        yield accs
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def probe(
    model: nn.Module, batches: list[torch.Tensor], sample_values: int = 0
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Run ``batches`` through ``model`` in eval mode with hooks on its activation modules.

    Returns one row per activation module (layer, kind, units, dead_units, dead_share,
    saturated_share (NaN for unbounded activations), mean, std) and, when
    ``sample_values`` > 0, about that many output values per module per batch (for
    histograms). The model's train/eval mode is restored afterwards.
    """
    kinds = {name: type(m).__name__ for name, m in activation_modules(model)}
    if not kinds or not batches:
        return [], {}
    was_training = model.training
    model.eval()
    try:
        with _hooked(model, sample_values) as accs:
            for x in batches:
                model(x)
    finally:
        model.train(was_training)
    rows = [{"layer": name, "kind": kinds[name], **acc.row()} for name, acc in accs.items()]
    samples = {n: np.concatenate(a.samples) for n, a in accs.items() if a.samples}
    return rows, samples
