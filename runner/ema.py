"""Exponential moving average of the model's weights (``trainer.ema_decay``).

Evaluating an average of the recent weights instead of the last ones smooths out the noise
of the final steps; fast-training recipes (airbench, timm's ``--model-ema``) use it.
After each optimizer step every floating-point parameter and buffer (BatchNorm running
statistics included) moves towards the trained model's::

    ema = decay_t * ema + (1 - decay_t) * weights,   decay_t = min(decay, (1 + n) / (10 + n))

where ``n`` is the number of optimizer steps so far: the warm-up of TensorFlow's
``ExponentialMovingAverage`` lets the average follow the fast early changes instead of
dragging the random initial weights along. Integer buffers (``num_batches_tracked``) are
copied.
"""

from __future__ import annotations

import copy

import torch


class WeightEMA:
    """A frozen copy of ``model`` whose weights follow the trained ones (see module doc)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairs = self._tensors(model)

    def _tensors(self, model: torch.nn.Module) -> tuple[list, list, list, list]:
        mine = dict(self.module.state_dict(keep_vars=True))
        floats_ema, floats, others_ema, others = [], [], [], []
        for name, tensor in model.state_dict(keep_vars=True).items():
            target = mine[name]
            if tensor.is_floating_point():
                floats_ema.append(target.data)
                floats.append(tensor.data)
            else:
                others_ema.append(target.data)
                others.append(tensor.data)
        return floats_ema, floats, others_ema, others

    def decay_at(self, step: int) -> float:
        """The decay used for the update after optimizer step ``step`` (0-based)."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the trained model's current weights."""
        floats_ema, floats, others_ema, others = self._pairs
        if floats_ema:
            torch._foreach_lerp_(floats_ema, floats, 1.0 - self.decay_at(step))
        for target, source in zip(others_ema, others):
            target.copy_(source)
