"""Atomic file writes: a reader (or a killed run) sees the old file or the new one, never a
torn one; a write that fails (disk full) leaves the old file and no temporary one. Files
get the permissions of an ordinary ``open()`` (``0o666`` minus the umask)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files
    finally:
        os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_csv(path: str | Path, frame: Any, **kwargs: Any) -> Path:
    """Write a pandas DataFrame as CSV atomically (index off unless asked)."""
    kwargs.setdefault("index", False)
    return atomic_write(path, lambda p: frame.to_csv(p, **kwargs))


def write_rows(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write dicts as CSV atomically (columns in first-seen order), without pandas: this
    runs every epoch and before the first step, where importing pandas would cost ~0.5 s."""
    import csv

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in rows)

    return atomic_write(path, write)


def _csv_value(value: Any) -> Any:
    """Floats as Python's repr (what pandas writes), NaN as an empty cell."""
    if isinstance(value, float):
        return "" if value != value else repr(value)
    return value


def save_torch(path: str | Path, obj: Any) -> Path:
    import torch

    def write(tmp: Path) -> None:
        # through a Python file: a full disk then surfaces as OSError (ENOSPC), which
        # torch's own writer would turn into an opaque RuntimeError
        with open(tmp, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as err:
                if isinstance(err.__context__, OSError):
                    raise err.__context__ from None
                raise

    return atomic_write(path, write)


def save_figure(path: str | Path, fig: Any, **kwargs: Any) -> Path:
    kwargs.setdefault("dpi", 120)
    kwargs.setdefault("bbox_inches", "tight")
    path = Path(path)
    return atomic_write(path, lambda p: fig.savefig(p, format=path.suffix[1:], **kwargs))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
