"""Name → layer registries shared by every model family.

Strings resolve once through a small registry; ``None``/``"none"`` resolves to
``None`` so callers need no branch; unknown names raise a ``ValueError`` that
lists the valid ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "mish": lambda: nn.Mish(inplace=True),
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}

ACTIVATIONS = tuple(_ACTIVATIONS)


def get_activation(name: str) -> nn.Module:
    """A new activation module by name: relu | leaky_relu | mish | gelu | silu | elu | tanh |
    sigmoid | identity."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}"
        ) from None


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation channel attention (Hu et al., 2018).

    Global average pool → 1×1 conv reduce (channels/reduction) → ReLU → 1×1 conv
    expand → sigmoid → rescale the input channels.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


_ATTENTION: dict[str, Callable[..., nn.Module]] = {"se": SqueezeExcite}
ATTENTIONS = ("none", *_ATTENTION)


def get_attention(name: str | None, channels: int, **kwargs) -> nn.Module | None:
    """Channel attention by name: none | se. ``None``/``"none"`` gives ``None``."""
    if name in (None, "none"):
        return None
    try:
        return _ATTENTION[name](channels, **kwargs)
    except KeyError:
        raise ValueError(
            f"unknown attention {name!r}; valid names: {', '.join(ATTENTIONS)}"
        ) from None


INITS = ("default", "kaiming", "xavier", "orthogonal")


def init_weights(model: nn.Module, scheme: str = "default", activation: str = "relu") -> None:
    """Re-initialise conv and linear weights: default (PyTorch's) | kaiming | xavier |
    orthogonal. Biases of conv and linear layers go to zero; BatchNorm is left as built."""
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; valid names: {', '.join(INITS)}")
    if scheme == "default":
        return
    nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
    gain = nn.init.calculate_gain("tanh") if activation == "tanh" else math.sqrt(2.0)
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity=nonlinearity)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.orthogonal_(module.weight, gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
