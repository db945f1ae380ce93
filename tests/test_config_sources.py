"""One source per setting: schemas hold types, the YAML files hold every value, once.

- every schema field is MISSING (the schema never holds a value, so it cannot disagree
  with the YAML);
- every member of every group composes to a config with no missing value (the YAML
  files hold them all);
- no YAML file repeats a value that a file it includes already sets to the same value
  (a repeated value is the first step of two values drifting apart).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import MISSING, OmegaConf

from runner.schema import SCHEMAS, RunnerConf
from tests.conftest import CONF, compose_cfg

GROUPS = ("model", "dataset", "optimizer", "scheduler", "trainer", "diagnostics", "logger")
# RunnerConf's composition frame: Hydra's defaults list and the optional groups' "absent"
FRAME = {"defaults", "diagnostics", "logger"}


def _fields_with_values(schema: type, prefix: str = "") -> list[str]:
    found = []
    for f in dataclasses.fields(schema):
        if f.default_factory is not dataclasses.MISSING:  # a nested schema: look inside
            nested = f.default_factory
            if dataclasses.is_dataclass(nested):
                found += _fields_with_values(nested, f"{prefix}{f.name}.")
                continue
            if f"{prefix}{f.name}" not in FRAME:
                found.append(f"{prefix}{f.name}")
        elif f.default is not MISSING and f"{prefix}{f.name}" not in FRAME:
            found.append(f"{prefix}{f.name} = {f.default!r}")
    return found


def _schemas() -> list[tuple[str, type]]:
    return [(f"{g}/{n}", cls) for g, members in SCHEMAS.items() for n, cls in members.items()]


@pytest.mark.parametrize(("name", "schema"), _schemas(), ids=lambda v: str(v))
def test_schemas_hold_no_values(name, schema):
    assert _fields_with_values(schema) == [], f"schema/{name} defines values"


def test_root_schema_holds_no_values():
    assert _fields_with_values(RunnerConf) == []


def members(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("group", "name"), [(g, n) for g in GROUPS for n in members(g)], ids=lambda v: str(v)
)
def test_every_member_sets_every_value(group, name):
    cfg = compose_cfg([f"{group}={name}"])
    node = cfg[group]
    if node is None:  # logger=none: no tracker
        return
    assert OmegaConf.missing_keys(node) == set(), f"{group}={name} leaves values unset"


def _included(path: Path) -> list[str]:
    raw = OmegaConf.load(path)
    return [str(d) for d in raw.get("defaults", []) if not str(d).startswith("/schema/")]


def _base_values(include: str, own_group: str) -> dict:
    """The values an ``@_here_`` include brings: a common file, or a composed member (of
    ``own_group`` when the include names no group)."""
    target = include.split("@")[0].lstrip("/")
    group, _, name = target.rpartition("/")
    group = group or own_group
    if group == "common":
        return OmegaConf.to_container(OmegaConf.load(CONF / f"{target}.yaml"))
    return OmegaConf.to_container(compose_cfg([f"{group}={name}"])[group], resolve=False)


def _own_values(path: Path) -> dict:
    raw = OmegaConf.to_container(OmegaConf.load(path))
    raw.pop("defaults", None)
    return raw


def _repeats(own: dict, base: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in own.items():
        if key not in base:
            continue
        if isinstance(value, dict) and isinstance(base[key], dict):
            out += _repeats(value, base[key], f"{prefix}{key}.")
        elif value == base[key] and key != "name":
            out.append(f"{prefix}{key}: {value!r}")
    return out


YAML_WITH_BASES = [
    p for g in (*GROUPS, "common") for p in sorted((CONF / g).glob("*.yaml")) if _included(p)
]


@pytest.mark.parametrize("path", YAML_WITH_BASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_yaml_repeats_what_it_includes(path):
    own = _own_values(path)
    for include in _included(path):
        if "@_here_" not in include:
            continue
        base = _base_values(include, path.parent.name)
        assert _repeats(own, base) == [], f"{path} repeats {include}"
