"""A small name → entry registry with did-you-mean errors (models, dataset formats, rules).

Like timm's model registry: adding a member is one ``register`` call in the member's own
file; everything else (the builder, ``--list-models``, rebuilding a stored run) looks the
name up here, so a name read from disk can only ever select a registered entry.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from runner.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name.

    Args:
        what: what the names are, for messages ("model family").
        key: the config key that selects an entry, for messages ("model.family").
    """

    def __init__(self, what: str, key: str) -> None:
        self.what, self.key = what, key
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add (or replace) ``name``; returns ``entry``."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.what} needs a non-empty name, got {name!r}")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T | None:
        """Remove ``name`` (tests that register a temporary entry); returns its entry."""
        return self._entries.pop(name, None)

    def get(self, name: Any) -> T:
        """The entry of ``name``; a :class:`ConfigError` naming close matches if unknown."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(self.unknown(name)) from None

    def unknown(self, name: Any) -> str:
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"unknown {self.what} {self.key}={name!r}{hint} Valid: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def resolve(target: Callable[..., Any] | str) -> Callable[..., Any]:
    """A callable, or ``"package.module:attribute"`` imported on first use (built-in entries
    name their code lazily so registering them stays cheap at start-up)."""
    if callable(target):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def resolve_class(
    target: Any, base: type | tuple[type, ...], what: str, key: str, *, load: bool = True
) -> type:
    """The class named ``target`` (``"package.module.Class"``), which must subclass ``base``.

    Nothing is called: a name that is not such a class (``os.system``,
    ``builtins.open``...) is a :class:`ConfigError` naming ``key``. ``load=False`` (names
    read from disk) imports nothing: the module must already be loaded (torch's are).
    """
    module_name, _, name = str(target).rpartition(".")
    module = sys.modules.get(module_name) if module_name else None
    if module is None and load and module_name:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ConfigError(f"{key}={target!r}: cannot import {module_name} ({err})") from None
    found = getattr(module, name, None) if module is not None else None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ConfigError(
            f"{key}={target!r} is not a {what} class; name one such as "
            f"{_example(base)} (nothing else is ever called from a config)"
        )
    return found


def _example(base: type | tuple[type, ...]) -> str:
    first = base[0] if isinstance(base, tuple) else base
    return {"Optimizer": "torch.optim.SGD", "LRScheduler": "torch.optim.lr_scheduler.StepLR"}.get(
        first.__name__, f"a subclass of {first.__module__}.{first.__name__}"
    )
