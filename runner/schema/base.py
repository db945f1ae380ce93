"""What every schema module shares: the ``Choice`` enum type and the group registry.

One source per setting: the YAML files in ``conf/`` hold every value, with units and the
allowed choices in their comments; the dataclasses of :mod:`runner.schema` hold only
types. Every field is ``MISSING``, so a value can never be defined twice and drift
(``tests/test_config_sources.py`` proves it). Enumerated settings are :class:`Choice`
enums, so Hydra refuses ``trainer.precision=fp8`` while composing, naming the key and
the valid values; :mod:`runner.validate` keeps only ranges and checks across keys.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore

# {group: {schema name: dataclass}}; stored in Hydra's ConfigStore as schema/<group>/<name>
SCHEMAS: dict[str, dict[str, type]] = {}


class Choice(str, Enum):
    """A setting with a fixed set of string values.

    Members compare, hash, print and serialise as their value (``Precision("bf16") ==
    "bf16"``), so code reads them like the strings the YAML holds. Member names equal
    their values, which is what OmegaConf matches (``trainer.precision=16-mixed``); a
    number from the command line (``trainer.precision=32``) matches its text.
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def _missing_(cls, value: object) -> Choice | None:
        text = str(value)
        return next((member for member in cls if member.value == text), None)


def choice(name: str, values: tuple[str, ...] | list[str]) -> Any:
    """A :class:`Choice` enum called ``name`` whose members are ``values``."""
    return Choice(name, [(str(v), str(v)) for v in values])


def register(group: str, name: str, node: type) -> None:
    """Add the schema ``node`` to ``group`` (stored in Hydra as ``schema/<group>/<name>``)."""
    SCHEMAS.setdefault(group, {})[name] = node
    ConfigStore.instance().store(group=f"schema/{group}", name=name, node=node)


def register_group(group: str, members: dict[str, type]) -> None:
    for name, node in members.items():
        register(group, name, node)
