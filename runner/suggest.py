"""Did-you-mean for what Hydra refuses while composing: a group, a member or a key.

Hydra's own messages name the problem but suggest ``+key=value`` for a misspelt key (which
then fails differently) and list a group's members one per line after the config search
path. :func:`explain` turns them into one message with the closest names: the keys come
from the typed schemas (:mod:`runner.schema`), the groups and members from ``conf/``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable
from pathlib import Path

_KEY = re.compile(r"Key '([^']+)' not in '(\w+)'")
_FULL_KEY = re.compile(r"full_key: (\S+)")
_MISSING_MEMBER = re.compile(r"Could not find '([^'/]+)/([^']+)'")
_UNKNOWN_GROUP = re.compile(r"Could not (?:override|append to config)[^']*'([^'.]+)'")
_PRESET_ORDER = re.compile(r"^In 'debug/\w+'")
_CHOICE = re.compile(r"Invalid value '([^']*)', expected one of \[([^\]]*)\]")


def closest(name: str, names: Iterable[str]) -> list[str]:
    """Up to three names close to ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, sorted(set(names)), n=3, cutoff=0.6)


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    close = closest(name, names)
    return f"did you mean {' or '.join(close)}? " if close else ""


def explain(text: str, argv: list[str], conf: Path) -> str | None:
    """A clearer message for Hydra's composition error ``text`` (``None``: keep Hydra's);
    ``argv``: the command line, ``conf``: the config folder (groups and members)."""
    for rule in (_preset_order, _member, _key, _choice, _group):
        message = rule(text, argv, conf)
        if message:
            return message
    return None


def _member(text: str, argv: list[str], conf: Path) -> str | None:
    """``optimizer=sdg``: a member that does not exist."""
    found = _MISSING_MEMBER.search(text)
    if not found:
        return None
    group, member = found.groups()
    members = _members(conf, group)
    if not members:
        return None
    return (
        f"no {group} named {member!r}; {_did_you_mean(member, members)}"
        f"choices: {', '.join(members)} (conf/{group}/)"
    )


def _key(text: str, argv: list[str], conf: Path) -> str | None:
    """``trainer.max_epoch=3``: a key the schema does not define."""
    found, full = _KEY.search(text), _FULL_KEY.search(text)
    if not found:
        return None
    key, schema = found.groups()
    full_key = full.group(1) if full else key
    fields = schema_fields(schema)
    if fields is None:
        return None
    if schema == "RunnerConf":
        return _top_level(full_key, argv, conf, fields)
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    where = f"{parent}." if parent else ""
    close = [f"{where}{name}" for name in closest(key, fields)]
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown key {full_key}; {guess}valid keys of {parent or 'the config'}: "
        f"{', '.join(sorted(fields))} (`runner --cfg job` prints them with their values)"
    )


def _choice(text: str, argv: list[str], conf: Path) -> str | None:
    """``trainer.precision=fp16``: a value outside a setting's choices."""
    found, full = _CHOICE.search(text), _FULL_KEY.search(text)
    if not found or not full:
        return None
    value, listed = found.groups()
    choices = [c.strip() for c in listed.split(",")]
    return (
        f"{full.group(1)}={value} is not one of its choices; "
        f"{_did_you_mean(value, choices)}choices: {', '.join(choices)}"
    )


def _group(text: str, argv: list[str], conf: Path) -> str | None:
    """``optimiser=sgd`` when Hydra reports it without a schema name."""
    found = _UNKNOWN_GROUP.search(text)
    if not found or "Key '" in text:
        return None
    from runner.schema import RunnerConf

    names = [f.name for f in dataclasses.fields(RunnerConf)]
    return _top_level(found.group(1), argv, conf, names)


def _top_level(name: str, argv: list[str], conf: Path, fields: list[str]) -> str:
    groups = _groups(conf)
    close = closest(name.lstrip("+~"), [*groups, *fields])
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown config group or key {name!r}; {guess}groups: {', '.join(groups)}; "
        "keys are written group.key=value (e.g. trainer.max_epochs=5)"
    )


def _preset_order(text: str, argv: list[str], conf: Path) -> str | None:
    """``+debug=smoke +experiment=NAME``: a debug form merged before the preset it shrinks."""
    if not _PRESET_ORDER.search(text):
        return None
    debug = [i for i, a in enumerate(argv) if a.lstrip("+").startswith("debug=")]
    preset = [i for i, a in enumerate(argv) if a.lstrip("+").startswith("experiment=")]
    if not debug or not preset or debug[0] > preset[-1]:
        return None
    order = [a for a in argv if not a.lstrip("+").startswith("debug=")] + [argv[debug[0]]]
    detail = _KEY.search(text)
    first = detail.group(0) if detail else text.strip().splitlines()[0]
    return (
        f"{argv[debug[0]]} must come after {argv[preset[-1]]}: appended configs merge in "
        f"command-line order, so the smoke form has to be last ({first}); run: runner "
        + " ".join(order)
    )


def _groups(conf: Path) -> list[str]:
    skip = {"common", "hydra"}
    return sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name not in skip)


def _members(conf: Path, group: str) -> list[str]:
    folder = conf / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def schema_fields(name: str) -> list[str] | None:
    """The field names of the schema dataclass called ``name`` (any group, nested ones
    included), ``None`` if there is none."""
    found = _schemas().get(name)
    return None if found is None else [f.name for f in dataclasses.fields(found)]


def _schemas() -> dict[str, type]:
    from runner.schema import SCHEMAS, RunnerConf

    seen: dict[str, type] = {}
    todo = [RunnerConf, *(cls for members in SCHEMAS.values() for cls in members.values())]
    while todo:
        cls = todo.pop()
        if cls.__name__ in seen:
            continue
        seen[cls.__name__] = cls
        for f in dataclasses.fields(cls):
            nested = f.default_factory if f.default_factory is not dataclasses.MISSING else None
            if isinstance(nested, type) and dataclasses.is_dataclass(nested):
                todo.append(nested)
    return seen
