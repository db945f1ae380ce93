"""duplicates: identical inputs in two splits (``duplicates.csv``) — they inflate the
validation and test accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from runner.diagnostics.finding import diagnosis, pct
from runner.diagnostics.registry import RunContext, register_rule

SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}


@dataclass
class DuplicatesConf:
    enabled: bool = MISSING
    max_share: float = MISSING


def duplicates(context: RunContext, c: DuplicatesConf) -> list[dict[str, Any]]:
    """Any cross-split pair → a note; a warning when the copies are at least ``c.max_share``
    of the validation or test split."""
    pairs = context.duplicates
    if pairs is None or not len(pairs):
        return []
    sizes = {k: int(sum(v)) for k, v in context.class_counts.items()}
    later = pairs["split_b"].value_counts()  # the copy in the later split (train < val < test)
    parts, shares = [], {}
    for split, count in later.items():
        share = count / sizes[split] if sizes.get(split) else 0.0
        shares[split] = share
        parts.append(f"{count} {SPLIT_WORDS.get(split, split)} ({pct(share)} of that split)")
    example = pairs.iloc[0]
    message = (
        f"{len(pairs)} input(s) appear in two splits: " + ", ".join(parts) + " are identical "
        f"to inputs of an earlier split (e.g. {example['name_a']} = {example['name_b']}). They "
        "inflate validation and test accuracy."
    )
    worst = max(shares.get("val", 0.0), shares.get("test", 0.0))
    severity = "warning" if worst >= c.max_share else "info"
    advice = (
        "Remove or move the copies listed in duplicates.csv; if they are frames or photos of "
        "one object, split by group (dataset.group_regex or dataset.group_csv)."
    )
    fix = f"remove the {len(pairs)} cross-split copies listed in duplicates.csv"
    evidence = {"pairs": len(pairs), **{f"share_{k}": v for k, v in shares.items()}}
    see = ["duplicates.csv"]
    return [diagnosis("duplicates", severity, message, evidence, advice, fix=fix, see=see)]


register_rule(
    "duplicates",
    duplicates,
    DuplicatesConf,
    description="identical inputs in two splits",
)
