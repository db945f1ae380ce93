"""``trainer.precision=auto`` and ``trainer.channels_last=auto``: what the hardware does fast.

- precision ``auto`` → ``bf16`` (autocast) where the device computes bf16 natively
  (CUDA GPUs with bf16, Ampere and later; CPUs with AVX-512 BF16 or AMX —
  :func:`runner.runtime.native_bf16`), ``16-mixed`` (fp16 autocast + GradScaler) on CUDA
  GPUs without bf16, ``32`` elsewhere (CPUs without bf16 — where autocast emulates bf16
  many times slower than fp32 — MPS, and recurrent text models on the CPU, whose bf16
  speed was never measured faster: see the README's Performance section).
- channels_last ``auto`` → true for image models with convolutions when the resolved
  precision is bf16 or 16-mixed (oneDNN's and cuDNN's fast low-precision convolution
  kernels want NHWC: bf16 + channels_last trains the custom CNN 2.2x and ResNet-18 2.4x
  faster than fp32 on an AVX-512 BF16 CPU, bf16 alone 1.2–1.6x); false otherwise: at fp32
  no gain from it has been measured (benchmarks/README.md).

The resolved values are what the loop uses and what summary.json and report.md record.
"""

from __future__ import annotations

from typing import Any

import torch

LOW_PRECISION = ("bf16", "16-mixed")


def resolve_precision(setting: str, device: torch.device, kind: str, native_bf16: bool) -> str:
    """``32 | bf16 | 16-mixed`` for ``setting`` (those, or ``auto``) on ``device``;
    ``kind`` is the data's (image | text); ``native_bf16`` whether the device computes
    bf16 in hardware."""
    setting = str(setting)
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if native_bf16 else "16-mixed"
    if device.type == "cpu" and native_bf16 and kind == "image":
        return "bf16"
    return "32"


def has_conv(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def resolve_channels_last(setting: Any, precision: str, kind: str, conv: bool) -> bool:
    """channels_last for ``setting`` (true | false | auto): ``auto`` = image data, a
    model with convolutions and a low (bf16 / 16-mixed) resolved precision."""
    text = str(setting).lower()
    if text != "auto":
        return text == "true" and kind == "image"
    return kind == "image" and conv and precision in LOW_PRECISION


def resolve(
    trainer: Any, device: torch.device, kind: str, model: torch.nn.Module
) -> tuple[str, bool]:
    """(precision, channels_last) of ``trainer`` for this device, data and model."""
    from runner.runtime import native_bf16

    precision = resolve_precision(str(trainer.precision), device, kind, native_bf16(device))
    channels_last = resolve_channels_last(trainer.channels_last, precision, kind, has_conv(model))
    return precision, channels_last
