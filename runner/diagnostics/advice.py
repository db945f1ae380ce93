"""Advice that fits the config actually used.

Rules phrase what to try as :class:`Change` items (a setting and the value to try) mixed
with plain sentences; :func:`advise` drops every change the config already has (or goes
beyond: a weight decay already above the one suggested, a key this model does not have), so
advice never repeats what is set, and returns the first remaining change as the run's
``fix``. :class:`Settings` reads the run's config by dotted key; the ``*_suspects`` helpers
name the settings whose values most likely explain a finding (an extreme learning rate, no
augmentation, a weight of 0 in ``trainer.class_weights`` ...), each with its fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Usual starting learning rates per optimizer (PyTorch's defaults for the adaptive ones; the
# middle of the 0.01-0.1 range SGD with momentum is used with). A learning rate this many
# times above or below is "extreme" when the suspects are ranked.
USUAL_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}
EXTREME_LR = 10.0
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}
AUGMENT_WORDS = {
    "crop_padding": "random crops",
    "hflip": "horizontal flips",
    "random_resized_crop": "random resized crops",
    "rotation": "rotations",
    "color_jitter": "colour jitter",
    "cutout": "cutout",
}


_ABSENT = object()  # get()'s default when has() asks


class Settings:
    """The run's config (plain data) read by dotted key: ``settings.get("optimizer.lr")``."""

    def __init__(self, config: dict[str, Any] | None) -> None:
        self.config = config or {}

    def has(self, key: str) -> bool:
        return self.get(key, _ABSENT) is not _ABSENT

    def get(self, key: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def optimizer(self) -> str:
        """sgd | adam | adamw | rmsprop | the class name in lower case | "" unknown."""
        target = str(self.get("optimizer._target_", "") or "")
        return target.rsplit(".", 1)[-1].lower()

    @property
    def optimizer_name(self) -> str:
        return OPTIMIZER_NAMES.get(self.optimizer, self.optimizer or "the optimizer")

    @property
    def usual_lr(self) -> float | None:
        return USUAL_LR.get(self.optimizer)

    def lr_ratio(self, lr: float | None = None) -> float | None:
        """``lr`` (default: ``optimizer.lr``) divided by the usual one for this optimizer."""
        lr = self.get("optimizer.lr") if lr is None else lr
        usual = self.usual_lr
        if lr is None or usual is None or float(lr) <= 0:
            return None
        return float(lr) / usual

    def augmentations(self) -> list[str]:
        """The training augmentations switched on, in words."""
        augment = self.get("dataset.augment") or {}
        return [AUGMENT_WORDS.get(k, k) for k, v in augment.items() if v not in (None, False, 0)]

    @property
    def is_image(self) -> bool:
        return self.get("model.family") != "rnn"


@dataclass(frozen=True)
class Change:
    """Set ``key`` to ``value``; ``why`` says what it does in a few words.

    direction: set (skip when the config has exactly this value) | up (skip when the
    current value is already at least ``value``) | down (skip when it is at most it). A key
    the config does not have (e.g. ``model.dropout`` for a ResNet) is always skipped.
    """

    key: str
    value: Any
    why: str = ""
    direction: str = "set"

    def applies(self, settings: Settings) -> bool:
        if not settings.has(self.key):
            return False
        current = settings.get(self.key)
        if self.direction == "set" or current is None or isinstance(current, (bool, str, list)):
            return not _same(current, self.value)
        if self.direction == "up":
            return float(current) < float(self.value)
        return float(current) > float(self.value)

    @property
    def override(self) -> str:
        return f"{self.key}={fmt(self.value)}"

    def text(self) -> str:
        return f"`{self.override}`" + (f" ({self.why})" if self.why else "")


def advise(settings: Settings, items: list[Change | str | None]) -> tuple[str, str | None]:
    """The advice sentence from ``items`` without the changes the config already has, and
    the first change that remains (the ``fix``; None when only sentences remain)."""
    parts: list[str] = []
    fix = None
    seen: set[str] = set()
    for item in items:
        if item is None:
            continue
        if isinstance(item, str):
            parts.append(item)
        elif item.key not in seen and item.applies(settings):
            seen.add(item.key)
            parts.append(item.text())
            fix = fix or item.override
    text = "; ".join(parts)
    return (text[:1].upper() + text[1:] + "." if text else ""), fix


@dataclass(frozen=True)
class Suspect:
    """A setting whose value likely explains a finding: ``words`` (its value and why it is
    suspicious) and the ``change`` that would test it."""

    words: str
    change: Change | None


def lr_suspect(settings: Settings, lr: float | None, direction: str) -> Suspect | None:
    """The learning rate when it is :data:`EXTREME_LR` times below (``direction`` low) or
    above (high) the usual one for the optimizer; ``lr``: the one actually used (median
    over the steps), else ``optimizer.lr``."""
    set_lr = settings.get("optimizer.lr")
    ratio = settings.lr_ratio(lr if lr is not None else set_lr)
    if ratio is None:
        return None
    low = direction == "low" and ratio <= 1 / EXTREME_LR
    high = direction == "high" and ratio >= EXTREME_LR
    if not (low or high):
        return None
    set_ratio = settings.lr_ratio() or ratio
    words = (
        f"`optimizer.lr={fmt(set_lr)}` is {times(set_ratio)} {'below' if low else 'above'} the "
        f"usual {fmt(settings.usual_lr)} for {settings.optimizer_name}"
    )
    if lr is not None and set_lr is not None and not math.isclose(lr, float(set_lr), rel_tol=0.05):
        words += f" (the steps used a median {fmt(lr)})"
    return Suspect(words, Change("optimizer.lr", settings.usual_lr, "the usual value"))


def regularisation_suspects(settings: Settings) -> list[Suspect]:
    """Regularisation strong enough to keep a model from fitting its training data."""
    out = []
    dropout = settings.get("model.dropout")
    if isinstance(dropout, (int, float)) and dropout >= 0.7:
        out.append(
            Suspect(f"`model.dropout={fmt(dropout)}`", Change("model.dropout", 0.3, "", "down"))
        )
    wd = settings.get("optimizer.weight_decay")
    limit = 0.1 if settings.optimizer == "adamw" else 1e-2
    if isinstance(wd, (int, float)) and wd >= limit:
        out.append(
            Suspect(
                f"`optimizer.weight_decay={fmt(wd)}`",
                Change(
                    "optimizer.weight_decay",
                    5e-4 if settings.optimizer == "sgd" else 1e-4,
                    "",
                    "down",
                ),
            )
        )
    smoothing = settings.get("trainer.label_smoothing")
    if isinstance(smoothing, (int, float)) and smoothing >= 0.3:
        out.append(
            Suspect(
                f"`trainer.label_smoothing={fmt(smoothing)}`",
                Change("trainer.label_smoothing", 0.1, "", "down"),
            )
        )
    return out


def class_weight_suspect(settings: Settings, classes: list[str]) -> Suspect | None:
    """A list of class weights that gives some class (almost) no weight."""
    weights = settings.get("trainer.class_weights")
    if not isinstance(weights, list) or not weights:
        return None
    top = max(float(w) for w in weights)
    low = [i for i, w in enumerate(weights) if float(w) <= 0.01 * top]
    if not low:
        return None
    names = ", ".join(repr(classes[i]) if i < len(classes) else str(i) for i in low)
    return Suspect(
        f"`trainer.class_weights` gives {names} a weight of {fmt(float(weights[low[0]]))}",
        Change("trainer.class_weights", "balanced", "or null"),
    )


def times(ratio: float) -> str:
    """How many times above (ratio > 1) or below (ratio < 1) 1, to two significant digits:
    1528 → "1,500×", 0.01 → "100×"."""
    x = ratio if ratio >= 1 else 1 / ratio
    digits = max(0, 2 - len(str(int(x))))
    value = round(x, digits) if digits else round(x, 2 - len(str(int(x))))
    return f"{value:,.{digits}f}×" if digits else f"{int(value):,}×"


def fmt(value: Any) -> str:
    """A value as it is written on the command line: 1e-06, 0.001, 30, true, [1,2]."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e-3 or abs(value) >= 1e5:
            return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(fmt(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def _same(current: Any, value: Any) -> bool:
    if isinstance(current, (int, float)) and isinstance(value, (int, float)):
        return math.isclose(float(current), float(value), rel_tol=1e-6, abs_tol=1e-12)
    return str(current).lower() == str(value).lower()
