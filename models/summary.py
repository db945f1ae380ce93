"""Parameter, FLOP and per-layer summary of any ``nn.Module`` (pure: no files, no logging).

FLOPs are those of one forward pass of ONE sample, where a multiply-add counts as 2
FLOPs (so torchvision's ResNet-18 at 224 px, listed as 1.81 GMACs, is 3.63 GFLOPs).
Two counters:

- :func:`summarize` runs :class:`torch.utils.flop_counter.FlopCounterMode` (every op
  torch has a formula for: matmuls, convolutions, attention; pooling, activations,
  normalisation and embedding lookups count 0; fused RNN kernels — oneDNN LSTM on
  CPU, cuDNN RNNs — get a formula here). Its first use imports ``torch._dynamo``,
  seconds of start-up, so the runner calls it after training.
- :func:`count_flops` counts convolutions, linear and recurrent layers from their
  shapes alone, in milliseconds and without that import: the number logged when a
  run starts. For networks built from those layers (every model of ``models/``)
  both counters agree exactly.

Token-id inputs are all id 1 (never the padding id 0), so a text model is counted
for a text that fills its whole length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


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
    """A batch of one: for integer dtypes every token id 1 (a real token in every position:
    id 0 pads), else randn from a private generator (counting FLOPs must not move the
    run's random numbers)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    shape = (1, *(int(s) for s in input_shape))
    if dtype.is_floating_point:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(shape, dtype=dtype, generator=generator).to(device)
    return torch.ones(shape, dtype=dtype, device=device)


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

    from torch.utils.flop_counter import FlopCounterMode  # ~1 s; its first use imports dynamo

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


# ------------------------------------------------------------------ cheap count


def format_flops(flops: int | float) -> str:
    """``4.44 GFLOPs``, ``293.1 MFLOPs``, ``49.2 kFLOPs``: never "0.0" for a small model."""
    for unit, scale in (("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if flops >= scale:
            return (
                f"{flops / scale:.3g} {unit}" if unit == "GFLOPs" else f"{flops / scale:.1f} {unit}"
            )
    return f"{int(flops)} FLOPs"


def conv_output_shape(conv: nn.Module, input_shape: Sequence[int]) -> list[int]:
    """Output shape of a (non-transposed) ``nn.Conv1d/2d/3d`` for an input of ``input_shape``
    (batched or not), from its kernel, stride, padding and dilation."""
    dims = len(conv.kernel_size)
    spatial = list(input_shape[-dims:])
    out = []
    for i, size in enumerate(spatial):
        if conv.padding == "same":
            out.append(size)
            continue
        pad = 0 if conv.padding == "valid" else conv.padding[i]
        reach = conv.dilation[i] * (conv.kernel_size[i] - 1) + 1
        out.append((size + 2 * pad - reach) // conv.stride[i] + 1)
    return [*input_shape[: -dims - 1], conv.out_channels, *out]


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd) and not module.transposed


def _rnn_weight_shapes(rnn: nn.RNNBase) -> list[list[int]]:
    return [list(w.shape) for w in rnn.parameters() if w.dim() == 2]


def count_flops(
    model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> int:
    """FLOPs of one forward pass of one sample through the convolutions, linear layers and
    recurrent layers of ``model`` (multiply-add = 2; biases, pooling, activations and
    normalisation count 0, as in :func:`summarize`).

    Convolutions and linear layers are not evaluated: for the one pass, each returns zeros
    of its output shape and adds ``2 × output elements × inputs per output`` (a conv's
    inputs per output: ``in_channels / groups × kernel elements``). Everything else runs on
    those zeros — elementwise work, milliseconds even for a 224-px ResNet — and recurrent
    layers run for real, adding ``2 × time steps × elements of every weight matrix``
    (:func:`_rnn_flops`, the formula of the fused kernels). Matmuls outside
    ``nn.Linear`` (e.g. attention scores) are not counted. Train/eval mode and the
    modules are restored afterwards; nothing else changes.
    """
    total = [0]

    def fake_conv(conv: nn.Module):
        def forward(x: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
            shape = conv_output_shape(conv, x.shape)
            per_output = conv.in_channels // conv.groups * math.prod(conv.kernel_size)
            total[0] += 2 * math.prod(shape) * per_output
            return x.new_zeros(shape)

        return forward

    def fake_linear(linear: nn.Linear):
        def forward(x: torch.Tensor) -> torch.Tensor:
            total[0] += 2 * math.prod(x.shape[:-1]) * linear.in_features * linear.out_features
            return x.new_zeros((*x.shape[:-1], linear.out_features))

        return forward

    def rnn_hook(rnn: nn.RNNBase, inputs: Any, _output: Any) -> None:
        x = inputs[0]  # (N, L, F) / (L, F), or a PackedSequence of (real steps, F)
        data = x.data if isinstance(x, nn.utils.rnn.PackedSequence) else x
        total[0] += _rnn_flops(list(data.shape), _rnn_weight_shapes(rnn))

    replaced: list[tuple[nn.Module, Any]] = []
    handles = []
    for module in model.modules():
        fake = (
            fake_conv(module)
            if _is_conv(module)
            else fake_linear(module)
            if isinstance(module, nn.Linear)
            else None
        )
        if fake is not None:
            replaced.append((module, module.__dict__.get("forward")))
            module.forward = fake  # an instance attribute: nn.Module.__call__ calls it
        elif isinstance(module, nn.RNNBase):
            handles.append(module.register_forward_hook(rnn_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(_example(model, input_shape, dtype))
    finally:
        for module, own in replaced:
            if own is None:
                del module.forward  # back to the class's forward
            else:
                module.forward = own
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return int(total[0])
