"""Decode an image folder once: a uint8 tensor file reused by every later run.

The cache file is ``<cache dir>/<name>-<size>px-<channels>ch-<key>.pt`` where
``key`` hashes the list of (relative path, size in bytes, mtime in ns) of every
image plus ``image_size``, ``channels`` and the decoder version: adding,
removing, replacing or touching an image, or changing the size, makes a new
file (old ones can be deleted at will). It is written atomically (temporary
file + :func:`os.replace`), so an interrupted run never leaves a half file, and
read with ``torch.load(weights_only=True)``.

The cache directory is ``dataset.cache_dir``: ``$RUNNER_CACHE``, else
``$XDG_CACHE_HOME/runner`` (``~/.cache/runner``) — a per-user cache folder, never the
dataset's own folder, which may be shared or read-only. When it is not writable the
run decodes every time, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# Bump when decoding/resizing changes, so old cache files are not reused.
DECODER_VERSION = 2


def cache_key(
    folder: Path, files: Sequence[str], image_size: int, channels: int, extra: str = ""
) -> str:
    """Hash of (relative path, size, mtime) of every file plus the decode settings."""
    h = hashlib.blake2b(digest_size=10)
    h.update(f"v{DECODER_VERSION}|{image_size}|{channels}|{extra}".encode())
    for rel in files:
        st = (folder / rel).stat()
        h.update(f"\n{rel}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _writable(directory: Path) -> bool:
    """Whether files can be created in ``directory`` (made if absent).

    A folder whose permission bits grant nobody write access (a read-only data
    share) counts as read-only even for root, who could write there anyway.
    """
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return False
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def cache_path(directory: str | Path, name: str, key: str, size: int, ch: int) -> Path | None:
    """Where the cache file for these settings lives in ``directory`` (made if absent), or
    None (with a warning: every run decodes) when it cannot be written."""
    directory = Path(directory).expanduser()
    if not _writable(directory):
        log.warning(
            "cache folder %s is not writable: decoding the images on every run; set "
            "RUNNER_CACHE or dataset.cache_dir to a folder of your own",
            directory,
        )
        return None
    return directory / f"{name}-{size}px-{ch}ch-{key}.pt"


def load(path: Path | None) -> dict[str, Any] | None:
    """The cached payload, or None if absent or unreadable (then it is rebuilt)."""
    if path is None or not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file is rebuilt, not fatal
        warnings.warn(f"ignoring unreadable cache file {path}: {err}", stacklevel=2)
        return None
    log.info("loaded %d images from cache %s", len(payload["x"]), path)
    return payload


def save(path: Path | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors, lists of str/int) atomically to ``path``."""
    if path is None:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; others may share the cache
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("cached %d decoded images in %s", len(payload["x"]), path)
