"""The diagnostics rule registry: a rule name → its function, thresholds dataclass and scope.

Adding a rule touches its own file and its YAML, nothing else: a module (the built-in ones
are in :mod:`runner.diagnostics.rules`, one per rule) defines the thresholds dataclass
(types only, every field ``MISSING``, like every schema) and the rule function, and ends
with one :func:`register_rule` call; ``conf/diagnostics/default.yaml`` gets a section of
the same name holding the values. A run-level rule is called as ``fn(context, conf)``
with a :class:`RunContext`; a sweep-level rule with a :class:`SweepContext`. Both return
a list of findings (:func:`runner.diagnostics.finding.diagnosis`).

How thresholds reach a rule: the schema of the ``diagnostics`` group (:func:`schema`) is
:class:`runner.schema.diagnostics.DiagnosticsBaseConf` plus one field per registered rule
that has a thresholds dataclass, typed by it; it is stored in Hydra's ConfigStore as
``schema/diagnostics/default`` again at every registration. ``default.yaml`` merges onto
it, so ``cfg.diagnostics.<rule>`` is the rule's YAML section, type-checked while the
config is composed (``diagnostics.<rule>.<key>=...`` works from the command line). When
the rules run, :func:`rule_conf` merges that section onto the rule's dataclass once more:

- a section in the config → its values;
- no section (the rule was registered from a test or a notebook and has no YAML, or a
  config written before the rule existed) → the dataclass's own defaults; a rule meant
  to run without YAML gives its dataclass defaults;
- a key that neither sets is a :class:`ConfigError` naming ``diagnostics.<rule>.<key>``
  (raised before training, by :func:`check_rules`);
- a rule registered with ``thresholds=None`` gets ``conf=None`` and always runs.

The ``conf`` a rule receives is an OmegaConf node typed by its dataclass (read it by
attribute, ``conf.acc_gap``).

A thresholds dataclass with an ``enabled`` field switches its rule: ``enabled: false``
skips it. ``diagnostics.enabled=false`` skips every rule.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.diagnostics.context import RunContext, SweepContext
from runner.diagnostics.finding import by_severity
from runner.errors import ConfigError
from runner.registry import Registry, resolve
from runner.schema.diagnostics import DiagnosticsBaseConf

__all__ = [
    "RunContext",
    "SweepContext",
    "diagnose",
    "register_rule",
    "registered_rules",
    "sweep_diagnoses",
    "unregister_rule",
]

SCOPES = ("run", "sweep")
BUILTINS = "runner.diagnostics.rules"  # the package whose modules register the built-in rules

Finding = dict[str, Any]
Guard = Callable[[str, Callable[[], Any], Any], Any]


@dataclass(frozen=True)
class RuleEntry:
    """One rule.

    fn: ``(context, conf) -> list of findings`` (or ``"module:attr"``).
    thresholds: the dataclass typing the rule's section ``diagnostics.<name>``; None = the
        rule has no settings (it gets ``conf=None``).
    scope: run (after each run, :func:`diagnose`) | sweep (over a sweep's runs,
        :func:`sweep_diagnoses`).
    check: ``conf -> None``, range checks the dataclass's types cannot express; raises
        :class:`ConfigError`. Runs before training.
    """

    name: str
    fn: Callable[[Any, Any], list[Finding]] | str
    thresholds: type | None
    scope: str = "run"
    check: Callable[[Any], None] | None = None
    description: str = ""


RULES: Registry[RuleEntry] = Registry("diagnostics rule", "diagnostics.<rule>")


def register_rule(
    name: str,
    fn: Callable[[Any, Any], list[Finding]] | str,
    thresholds: type | None = None,
    *,
    scope: str = "run",
    check: Callable[[Any], None] | None = None,
    description: str = "",
) -> RuleEntry:
    """Register (or replace) the rule ``name``; its thresholds become ``diagnostics.<name>``.

    Registering after the config schemas were stored updates the stored ``diagnostics``
    schema, so configs composed afterwards have the rule's section.
    """
    if scope not in SCOPES:
        raise ValueError(f"rule {name!r}: unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    reserved = {f.name for f in fields(DiagnosticsBaseConf)}
    if name in reserved:
        raise ValueError(
            f"rule name {name!r} is a diagnostics setting; reserved: {sorted(reserved)}"
        )
    entry = RULES.register(name, RuleEntry(name, fn, thresholds, scope, check, description))
    _restore_schema()
    return entry


def unregister_rule(name: str) -> None:
    """Remove the rule ``name`` (and its section from the stored schema)."""
    RULES.unregister(name)
    _restore_schema()


def registered_rules(scope: str | None = None) -> list[RuleEntry]:
    """The registered rules of ``scope`` (all when None), by name."""
    _load_builtins()
    entries = [RULES.get(n) for n in RULES]
    return [e for e in entries if scope is None or e.scope == scope]


# ----------------------------------------------------------------------------- schema
def schema() -> type:
    """The ``diagnostics`` group's schema: the general keys plus one section per registered
    rule with a thresholds dataclass (its default is that dataclass's own defaults)."""
    sections = [
        (e.name, e.thresholds, field(default_factory=e.thresholds))
        for e in registered_rules()
        if e.thresholds is not None
    ]
    return make_dataclass(
        "DiagnosticsConf",
        sections,
        bases=(DiagnosticsBaseConf,),
        namespace={"__doc__": "The diagnostics group: general keys and one section per rule."},
    )


def _restore_schema() -> None:
    """Store the schema again once the group's schemas are stored (``register_all``)."""
    from runner.schema.base import SCHEMAS, register

    if "default" in SCHEMAS.get("diagnostics", {}):
        register("diagnostics", "default", schema())


_builtins_loaded = False


def _load_builtins() -> None:
    """Import the built-in rule modules (each registers itself) once."""
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True  # first: the modules call register_rule while importing
        importlib.import_module(BUILTINS)


def default_conf() -> DictConfig:
    """``conf/diagnostics/default.yaml`` typed by :func:`schema`: the values a stored
    config lacks (sweeps of runs written without a ``diagnostics`` node)."""
    values = _default_yaml()
    values.pop("defaults", None)
    return OmegaConf.merge(OmegaConf.structured(schema()), values)


def _default_yaml() -> DictConfig:
    """The checkout's ``conf/`` (editable installs) or the packaged copy."""
    checkout = Path(__file__).resolve().parents[2] / "conf" / "diagnostics" / "default.yaml"
    if checkout.exists():
        return OmegaConf.load(checkout)
    from importlib.resources import files

    packaged = files("runner.conf") / "diagnostics" / "default.yaml"
    return OmegaConf.create(packaged.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- running
def rule_conf(entry: RuleEntry, diagnostics: Any) -> tuple[bool, Any]:
    """``(enabled, conf)`` of ``entry`` from the ``diagnostics`` config (rules: module
    docstring). A key without a value is a :class:`ConfigError` naming it."""
    if entry.thresholds is None:
        return True, None
    section = _section(diagnostics, entry.name)
    conf = OmegaConf.structured(entry.thresholds)
    if section is not None:
        conf = OmegaConf.merge(conf, section)
    if "enabled" in conf and not OmegaConf.is_missing(conf, "enabled") and not conf.enabled:
        return False, conf
    missing = sorted(OmegaConf.missing_keys(conf))
    if missing:
        keys = ", ".join(f"diagnostics.{entry.name}.{k}" for k in missing)
        verb = "has" if len(missing) == 1 else "have"
        raise ConfigError(
            f"{keys} {verb} no value: set it in conf/diagnostics/default.yaml (section "
            f"{entry.name}:) or on the command line"
        )
    return True, conf


def _section(diagnostics: Any, name: str) -> Any:
    if diagnostics is None:
        return None
    if isinstance(diagnostics, (DictConfig, dict)):
        return diagnostics.get(name)
    return getattr(diagnostics, name, None)


def check_rules(diagnostics: Any) -> None:
    """Every rule's section has its values and passes the rule's own checks (before any
    training, so a bad threshold never costs a run)."""
    for entry in registered_rules():
        enabled, conf = rule_conf(entry, diagnostics)
        if enabled and entry.check is not None:
            entry.check(conf)


def diagnose(diagnostics: Any, context: RunContext, guard: Guard | None = None) -> list[Finding]:
    """Every registered, enabled run-level rule on ``context``, most severe first.

    diagnostics: the ``diagnostics`` config (``cfg.diagnostics``); None =
        :func:`default_conf`.
    guard: ``(what, fn, default) -> fn() or default`` to isolate each rule (the callback
        logs a failing rule and goes on); None = a failing rule raises.
    """
    return _run("run", diagnostics, context, guard)


def sweep_diagnoses(
    runs: list[dict[str, Any]], diagnostics: Any = None, guard: Guard | None = None
) -> list[Finding]:
    """Every registered, enabled sweep-level rule (e.g. degradation) over a sweep's runs
    (:class:`SweepContext`); ``diagnostics`` as in :func:`diagnose`."""
    return _run("sweep", diagnostics, SweepContext(list(runs)), guard)


def _run(scope: str, diagnostics: Any, context: Any, guard: Guard | None) -> list[Finding]:
    diagnostics = default_conf() if diagnostics is None else diagnostics
    if _section(diagnostics, "enabled") is False:
        return []
    found: list[Finding] = []
    for entry in registered_rules(scope):

        def apply(entry: RuleEntry = entry) -> list[Finding]:
            enabled, conf = rule_conf(entry, diagnostics)
            return list(resolve(entry.fn)(context, conf)) if enabled else []

        found += apply() if guard is None else guard(f"diagnosis rule {entry.name}", apply, [])
    return by_severity(found)
