"""``runner --list-models [PATTERN]``: the built-in, torchvision and timm model names and
which have pretrained weights (``PATTERN``: a shell-style filter such as ``resnet*``, or a
plain substring; ``torchvision`` / ``timm`` / ``built-in`` lists one source only)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

SOURCES = ("built-in", "torchvision", "timm")


def _matches(name: str, pattern: str) -> bool:
    if not pattern:
        return True
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatch(name, pattern)
    return pattern in name


Row = tuple[str, str, str]  # name, weights names ("-" = none), a note


def builtin_rows(conf_dir: Path) -> list[Row]:
    """Every ``conf/model/*.yaml`` that is not a hub family (any image model also takes a
    run directory or weights file as model.weights)."""
    from omegaconf import OmegaConf

    rows = []
    for path in sorted(conf_dir.glob("model/*.yaml")):
        if path.stem in ("torchvision", "timm"):
            continue
        raw = OmegaConf.load(path)
        family = raw.get("family") or _family_of(conf_dir, raw)
        depth = raw.get("depth")
        if family == "resnet" and path.stem.startswith("resnet") and depth:
            weights = "torchvision's resnet weights: DEFAULT, IMAGENET1K_V1 …"
        else:
            weights = "-"
        rows.append((path.stem, weights, f"family {family}"))
    return rows


def _family_of(conf_dir: Path, raw: object) -> str:
    from omegaconf import OmegaConf

    for item in raw.get("defaults", []):  # type: ignore[attr-defined]
        text = str(item)
        if text.startswith("/common/"):
            common = OmegaConf.load(conf_dir / f"{text.split('@')[0].lstrip('/')}.yaml")
            if common.get("family"):
                return str(common.family)
    return "?"


def torchvision_rows() -> list[Row]:
    from torchvision.models import get_model_weights

    from runner.hub.torchvision import classification_models

    rows = []
    for arch in classification_models():
        enum = get_model_weights(arch)
        names = [w for w in enum.__members__ if w != "DEFAULT"]
        rows.append((arch, ", ".join(names), f"DEFAULT = {enum.DEFAULT.name}"))
    return rows


def timm_rows() -> list[Row] | str:
    try:
        import timm
    except ImportError:
        from runner.hub.timm import INSTALL

        return INSTALL
    tags: dict[str, list[str]] = {}
    for name in timm.list_pretrained():
        arch, _, tag = name.partition(".")
        tags.setdefault(arch, []).append(tag)
    return [(arch, ", ".join(tags.get(arch, [])) or "-", "") for arch in timm.list_models()]


def lines(conf_dir: Path, pattern: str = "") -> list[str]:
    """The listing as text lines."""
    only = pattern if pattern in SOURCES else ""
    pattern = "" if only else pattern
    out: list[str] = []
    sections = [
        ("built-in", "model=NAME [model.weights=…]", lambda: builtin_rows(conf_dir)),
        ("torchvision", "model=torchvision model.arch=NAME model.weights=…", torchvision_rows),
        ("timm", "model=timm model.arch=NAME model.weights=TAG", timm_rows),
    ]
    for source, usage, rows_of in sections:
        if only and source != only:
            continue
        rows = rows_of()
        if isinstance(rows, str):
            out += [f"{source}: {rows}", ""]
            continue
        shown = [row for row in rows if _matches(row[0], pattern)]
        with_weights = sum(1 for _, w, _ in shown if w != "-")
        out.append(f"{source} ({usage}): {len(shown)} models, {with_weights} with named weights")
        width = max((len(n) for n, _, _ in shown), default=0)
        out += [
            f"  {n.ljust(width)}  {w}" + (f"  ({note})" if note else "") for n, w, note in shown
        ]
        out.append("")
    out.append(
        "Any image model also takes model.weights=<run directory | checkpoint | state-dict file>."
    )
    return out
