"""Optimizers torch does not ship in the form the runner's recipes need.

:class:`MuonSGD` — Muon (momentum, then each update orthogonalised by torch's own
Newton–Schulz iteration, ``torch.optim._muon``) for convolution filters, SGD with Nesterov
momentum for every other parameter. ``torch.optim.Muon`` takes 2-D parameters only; a conv
filter bank ``(out, in, k, k)`` is orthogonalised here as the ``(out, in·k·k)`` matrix it
is, as in Jordan's airbench94_muon. Biases, BatchNorm shifts and the classifier head keep
SGD, each kind with its own learning rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the quintic of Jordan's Muon (torch's default)


def orthogonalise(update: torch.Tensor, steps: int, eps: float = 1e-7) -> torch.Tensor:
    """The Newton–Schulz approximation of the nearest semi-orthogonal matrix to ``update``
    (2-D), computed in bf16 — torch's implementation where it has one — or in float32 on a
    device without native bf16 (emulated bf16 made one step of airbench's widest layer take
    1.5 s on an AVX2 CPU)."""
    if not _native_bf16(update.device):
        return _newton_schulz(update, steps, eps, torch.float32)
    try:
        from torch.optim._muon import _zeropower_via_newtonschulz
    except ImportError:  # a torch without Muon (before 2.9): the same iteration
        return _newton_schulz(update, steps, eps)
    return _zeropower_via_newtonschulz(update, NS_COEFFICIENTS, steps, eps)


_NATIVE_BF16: dict[torch.device, bool] = {}


def _native_bf16(device: torch.device) -> bool:
    if device not in _NATIVE_BF16:
        from runner.runtime import native_bf16

        _NATIVE_BF16[device] = native_bf16(device)
    return _NATIVE_BF16[device]


def _newton_schulz(
    update: torch.Tensor, steps: int, eps: float, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    a, b, c = NS_COEFFICIENTS
    x = update.to(dtype)
    tall = x.size(0) > x.size(1)
    x = x.T if tall else x
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):  # torch's own operations, so both round alike in bf16
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class MuonSGD(torch.optim.Optimizer):
    """Muon for 4-D weights (conv filters), SGD + Nesterov for the rest.

    Args:
        params: the model's trainable parameters (a flat iterable; the groups are made here).
        lr: Muon's step for the filters (each filter bank is renormalised to norm
            ``sqrt(out_channels)`` before its step, so lr is a relative size).
        momentum: Muon's momentum. nesterov: Nesterov momentum for both.
        bias_lr: SGD lr of 1-D parameters (biases, BatchNorm shifts).
        head_lr: SGD lr of the other parameters (the classifier's weight matrix).
        sgd_momentum: SGD's momentum.
        weight_decay: shrink of the SGD parameters per step at the initial lr (each group's
            torch weight decay is ``weight_decay / its lr``, so the shrink follows the
            schedule the same way in every group). ns_steps: Newton–Schulz iterations.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 0.24,
        momentum: float = 0.6,
        nesterov: bool = True,
        bias_lr: float = 0.053,
        head_lr: float = 0.67,
        sgd_momentum: float = 0.85,
        weight_decay: float = 0.0,
        ns_steps: int = 3,
    ) -> None:
        params = list(params)
        if any(isinstance(p, dict) for p in params):
            raise ValueError(
                "MuonSGD makes its own parameter groups (filters, biases, head): it cannot "
                "take fine-tuning's learning-rate groups (trainer.backbone_lr_ratio, "
                "trainer.stage_lr_multipliers)"
            )
        kinds = {
            "filters": ([p for p in params if p.ndim == 4], lr, momentum),
            "biases": ([p for p in params if p.ndim <= 1], bias_lr, sgd_momentum),
            "head": ([p for p in params if p.ndim in (2, 3)], head_lr, sgd_momentum),
        }
        groups = [
            {"params": ps, "lr": group_lr, "momentum": m, "kind": kind}
            | ({"weight_decay": weight_decay / group_lr} if kind != "filters" else {})
            for kind, (ps, group_lr, m) in kinds.items()
            if ps
        ]
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=0.0)
        super().__init__(groups, defaults | {"ns_steps": ns_steps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        grad = p.grad
        if group["kind"] != "filters" and group["weight_decay"]:
            grad = grad.add(p, alpha=group["weight_decay"])
        state = self.state[p]
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.zeros_like(p)
        buf.mul_(group["momentum"]).add_(grad)
        step = grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
        if group["kind"] != "filters":
            p.add_(step, alpha=-group["lr"])
            return
        p.mul_(len(p) ** 0.5 / p.norm().clamp(min=1e-12))
        update = orthogonalise(step.reshape(len(step), -1), group["ns_steps"])
        p.add_(update.view_as(p).to(p.dtype), alpha=-group["lr"])


# The runner's own optimizer classes an ``optimizer._target_`` may name (besides torch's):
# a fixed table, so a stored config naming one imports and calls nothing else.
RUNNER_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"runner.optim.MuonSGD": MuonSGD}
