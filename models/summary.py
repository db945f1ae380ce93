"""Parameter, FLOP and per-layer summary of any ``nn.Module`` (pure: no files, no logging).

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` for one
forward pass of ONE sample, where a multiply-add counts as 2 FLOPs (so
torchvision's ResNet-18 at 224 px, listed as 1.81 GMACs, is 3.63 GFLOPs). Ops
torch has no formula for (pooling, activations, normalisation, embedding lookups, …)
count 0; fused RNN kernels (oneDNN LSTM on CPU, cuDNN RNNs) get a formula here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class ModelSummary:
    """``params``/``trainable_params`` in elements; ``flops`` per sample (multiply-add = 2).

    ``rows``: one dict per leaf module (no children, or parameters of its own, e.g. a
    positional embedding held by a container) — ``layer`` (qualified name),
    ``type`` (class name), ``output_shape`` (list of ints with batch 1, or ``None``
    if the module did not run; a tuple output shows its first tensor) and
    ``params`` (its own parameter count). Rows of modules that ran come in order of
    their first call; the rest follow in definition order.
    """

    params: int
    trainable_params: int
    flops: int
    rows: list[dict[str, Any]] = field(default_factory=list)


def _rnn_flops(input_shape: Sequence[int], weights: Sequence[Sequence[int]]) -> int:
    """2 × (time steps × batch) × (elements of every weight matrix): each matrix is one
    matmul per step, whatever the layer or direction."""
    steps = math.prod(input_shape[:-1])
    return 2 * steps * sum(math.prod(w) for w in weights if w is not None and len(w) == 2)


def _mkldnn_rnn_layer_flops(input, weight0, weight1, *args, out_shape=None, **kwargs) -> int:
    return _rnn_flops(input, (weight0, weight1))


def _cudnn_rnn_flops(input, weight, *args, out_shape=None, **kwargs) -> int:
    return _rnn_flops(input, weight)


# Fused RNN kernels torch has no formula for: nn.LSTM on CPU (oneDNN) and every
# nn.RNN/GRU/LSTM on CUDA (cuDNN). Other RNNs on CPU decompose into counted matmuls.
RNN_FLOP_FORMULAS = {
    torch.ops.aten.mkldnn_rnn_layer: _mkldnn_rnn_layer_flops,
    torch.ops.aten._cudnn_rnn: _cudnn_rnn_flops,
}


def _shape(output: Any) -> list[int] | None:
    if isinstance(output, torch.Tensor):
        return list(output.shape)
    if isinstance(output, (tuple, list)):
        for item in output:
            shape = _shape(item)
            if shape is not None:
                return shape
    return None


def _example(model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """A batch of one: zeros for integer dtypes (token id 0 is always valid), else randn from
    a private generator (counting FLOPs must not move the run's random numbers)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    shape = (1, *(int(s) for s in input_shape))
    if dtype.is_floating_point:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(shape, dtype=dtype, generator=generator).to(device)
    return torch.zeros(shape, dtype=dtype, device=device)


def summarize(
    model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> ModelSummary:
    """Summarise ``model`` for one input of ``input_shape`` (without the batch dimension).

    Args:
        model: any module; its train/eval mode is restored afterwards and nothing
            else is changed (the forward runs in eval mode under ``no_grad``).
        input_shape: e.g. ``(3, 32, 32)`` for images or ``(L,)`` for token ids.
        dtype: input dtype — ``torch.float32`` for images, ``torch.long`` for token ids.
    """
    leaves = [
        (n, m)
        for n, m in model.named_modules()
        if next(m.children(), None) is None or next(m.parameters(recurse=False), None) is not None
    ]
    shapes: dict[str, list[int] | None] = {}

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            shapes.setdefault(name, _shape(output))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in leaves]
    was_training = model.training
    x = _example(model, input_shape, dtype)
    try:
        model.eval()
        counter = FlopCounterMode(display=False, custom_mapping=RNN_FLOP_FORMULAS)
        with torch.no_grad(), counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    order = {name: i for i, name in enumerate(shapes)}
    rows = [
        {
            "layer": name or "(root)",
            "type": type(module).__name__,
            "output_shape": shapes.get(name),
            "params": sum(p.numel() for p in module.parameters(recurse=False)),
        }
        for name, module in sorted(leaves, key=lambda nm: order.get(nm[0], len(order)))
    ]
    params = list(model.parameters())
    return ModelSummary(
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        flops=int(counter.get_total_flops()),
        rows=rows,
    )
