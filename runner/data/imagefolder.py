"""Image folders (torchvision ``ImageFolder`` conventions) as uint8 tensors.

Layout: ``<folder>/<class>/**/<image>`` — the class is the name of the top-level
sub-folder; any file PIL reads with an image extension (``.jpg .jpeg .png
.ppm .bmp .pgm .tif .tiff .webp``) counts; other files and hidden folders are
ignored. Class names lose surrounding whitespace; an empty name, or two folders
whose names differ only by case (``Cat``/``cat``) or whitespace, are refused.
Links are followed, but never back into a folder already visited or containing
the class folder (a symlink loop) and never twice to one file; FIFOs, sockets,
devices and broken links are skipped — each with a warning.

Splits: if ``<folder>`` has a ``train/`` sub-folder (and ``val/``, ``test/``;
each ``<split>/<class>/<image>``), those splits are used as they are and a
missing ``val/`` or ``test/`` is carved from train with its fraction; otherwise train,
val and test are stratified fractions drawn with ``seed`` — by group when
``group_regex`` or ``group_csv`` is given, so the frames of one fish or the
photos of one patient never straddle two splits.

Decoding: each image is converted to ``RGB`` (``channels: 3``) or ``L``
(``channels: 1``) — so grey-scale, palette and RGBA files mix freely with
colour ones (alpha is dropped) — then its *shorter side is resized* to
``image_size`` (bilinear, antialiased) and the centre ``image_size`` ×
``image_size`` square is cropped. 16-bit, 32-bit integer and float images are
brought to 8 bits by :func:`to_8bit` (16-bit values scaled by 1/257) instead of
PIL's clipping at 255. The decoded set is cached once
(:mod:`runner.data.cache`); later runs load it without decoding anything.

Data too big for memory (``streaming: true``, or ``auto`` when the decoded
size would exceed ``streaming_threshold_mb``) becomes :class:`StreamingSplit`
objects that decode batches on the fly through a ``torch`` DataLoader.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from runner.data import cache as cache_mod
from runner.data.base import DataBundle, Split
from runner.data.pixels import to_uint8
from runner.data.prepare import (
    BundleOptions,
    channel_stats,
    finish_bundle,
    stratified_split,
    subset_per_class,
)
from runner.data.splits import group_split, groups_from_csv, groups_from_regex
from runner.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

# ------------------------------------------------------------------ decoding


@dataclass(frozen=True)
class Decoding:
    """How image files become tensors.

    image_size: side in pixels of the square images (shorter side resized, centre crop).
    channels: 3 (RGB) | 1 (grey). skip_corrupt: leave out unreadable files (with a
    warning) instead of raising :class:`DataError`. workers: decoding threads (in
    memory) or DataLoader worker processes (streaming).
    """

    image_size: int
    channels: int
    skip_corrupt: bool = False
    workers: int = 0


def decode_image(path: Path, image_size: int, channels: int) -> tuple[torch.Tensor, str]:
    """One image as uint8 ``(channels, image_size, image_size)`` and its original PIL mode.

    Shorter side resized to ``image_size`` (bilinear, antialiased), then centre-cropped.
    """
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    mode = "RGB" if channels == 3 else "L"
    with Image.open(path) as img:
        original = img.mode
        img.draft(mode, (image_size, image_size))  # JPEG: decode at a reduced scale >= size
        img = to_8bit(img, path).convert(mode)
        img = TF.resize(img, image_size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        img = TF.center_crop(img, [image_size, image_size])
        arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()), original


def to_8bit(img: Any, path: Path | str) -> Any:
    """A PIL image of 16-bit, 32-bit integer or float samples as an 8-bit grey ``L`` image
    (others are returned as they are).

    PIL's own conversion clips such samples at 255, which turns a 16-bit image almost
    white; here they follow :mod:`runner.data.pixels`: ``I;16`` images are scaled by
    1/257, ``I`` (32-bit) images are read as 8-bit when every value is at most 255 and
    as 16-bit otherwise, ``F`` (float) images in [0, 1] are multiplied by 255; values
    outside these ranges are a :class:`DataError` naming the file.
    """
    from PIL import Image

    if not (img.mode.startswith("I") or img.mode == "F"):
        return img
    values = np.asarray(img)
    bits = 16 if img.mode.startswith("I;16") or (img.mode == "I" and values.max() > 255) else None
    return Image.fromarray(to_uint8(values, str(path), bits=bits))


def decode_all(
    folder: Path, files: Sequence[str], decoding: Decoding
) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Decode ``files`` (relative to ``folder``) into one uint8 tensor ``(N, C, S, S)``.

    Returns the tensor (rows of unreadable files left zero) and a list of
    ``(relative path, error)`` for every file that could not be read.
    """
    from tqdm.auto import tqdm

    image_size, channels = decoding.image_size, decoding.channels
    x = torch.zeros((len(files), channels, image_size, image_size), dtype=torch.uint8)
    failed: list[tuple[str, str]] = []
    modes: list[str] = [""] * len(files)

    def work(i: int) -> None:
        try:
            x[i], modes[i] = decode_image(folder / files[i], image_size, channels)
        except Exception as err:  # PIL raises many types for bad files
            failed.append((files[i], f"{type(err).__name__}: {err}"))

    log.info("decoding %d images from %s at %d px", len(files), folder, image_size)
    with ThreadPoolExecutor(max_workers=max(1, decoding.workers)) as pool:
        list(tqdm(pool.map(work, range(len(files))), total=len(files), disable=None, leave=False))
    wanted = "RGB" if channels == 3 else "L"
    converted = sum(m not in ("", wanted) for m in modes)
    if converted:
        log.info("converted %d image(s) of another colour mode to %s", converted, wanted)
    return x, sorted(failed)


def corrupt_report(failed: Sequence[tuple[str, str]], folder: Path, skip: bool) -> None:
    """Raise :class:`DataError` naming unreadable images, or warn when ``skip``."""
    if not failed:
        return
    listed = "\n".join(f"  {folder / rel}  ({err})" for rel, err in failed[:20])
    more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
    if skip:
        warnings.warn(
            f"skipping {len(failed)} unreadable image(s) (dataset.skip_corrupt=true):\n"
            f"{listed}{more}",
            stacklevel=2,
        )
        return
    raise DataError(
        f"{len(failed)} image(s) in {folder} cannot be read:\n{listed}{more}\n"
        "Replace or delete them, or set dataset.skip_corrupt=true to train without them."
    )


# ------------------------------------------------------------------ layout


@dataclass
class Layout:
    """The files of a folder: relative paths, class index, and split folder (if any)."""

    classes: list[str]
    files: list[str]
    labels: np.ndarray
    split_of: np.ndarray | None  # "train"/"val"/"test" per file, None without split folders

    def select(self, keep: np.ndarray) -> Layout:
        """The layout of the files at indices ``keep``."""
        split_of = None if self.split_of is None else self.split_of[keep]
        return Layout(self.classes, [self.files[i] for i in keep], self.labels[keep], split_of)


@dataclass
class LeftOut:
    """Files a scan did not take, reported once as warnings.

    special: FIFOs, sockets, devices and broken links among the images (opening a FIFO
    would wait forever). repeated: links that lead back to a folder or file already
    found — a symlink loop, or a second way to the same place.
    """

    special: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)

    def warn(self, folder: Path) -> None:
        special = "file(s) that are not regular files (FIFO, socket, device or broken link)"
        repeated = (
            "link(s) leading back to a folder or file already found (a symlink loop or a "
            "second link to the same place); not followed"
        )
        for items, what in ((self.special, special), (self.repeated, repeated)):
            if items:
                more = f"; … {len(items) - 10} more" if len(items) > 10 else ""
                listed = "; ".join(items[:10]) + more
                warnings.warn(f"{folder}: skipped {len(items)} {what}: {listed}", stacklevel=3)


def _contains(outer: str, inner: str) -> bool:
    """Whether real path ``outer`` is ``inner`` or one of its ancestors."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    return "socket" if stat.S_ISSOCK(mode) else "device or other special file"


def _admit(path: Path, label: str, seen: dict[str, tuple[str, str]], left_out: LeftOut) -> bool:
    """Whether ``path`` is a regular file not already found (through any link)."""
    try:
        info = os.stat(path)
    except OSError as err:
        why = "broken link" if os.path.islink(path) else f"cannot be read: {err.strerror}"
        left_out.special.append(f"{path} ({why})")
        return False
    if not stat.S_ISREG(info.st_mode):
        left_out.special.append(f"{path} ({_kind(info.st_mode)})")
        return False
    real = os.path.realpath(path)
    if real in seen:
        other_label, other = seen[real]
        if other_label != label:
            raise DataError(
                f"{path} and {other} are the same file ({real}) under two classes, "
                f"{other_label!r} and {label!r}: an image has one label. Remove one of the links."
            )
        left_out.repeated.append(f"{path} (the same file as {other})")
        return False
    seen[real] = (label, str(path))
    return True


def images_under(
    directory: Path, label: str, seen: dict[str, tuple[str, str]], left_out: LeftOut
) -> list[Path]:
    """Image files under ``directory``, sorted, hidden folders skipped.

    Links to folders are followed, but never into a folder already visited or one that
    contains ``directory`` (a loop), and every file is taken once (by its real path;
    ``seen`` spans all classes of one split folder). Only regular files count.
    """
    top = os.path.realpath(directory)
    visited = {top}
    found = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            real = os.path.realpath(os.path.join(dirpath, d))
            if real in visited or _contains(real, top):
                left_out.repeated.append(f"{os.path.join(dirpath, d)} -> {real}")
                continue
            visited.add(real)
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.lower().endswith(IMG_EXTENSIONS) and _admit(path, label, seen, left_out):
                found.append(path)
    return found


def _class_dirs(directory: Path, left_out: LeftOut) -> dict[str, Path]:
    """Class name → folder for the sub-folders of ``directory`` (hidden ones skipped).

    The name is the folder's name without surrounding whitespace. A name that is then
    empty, or two names that differ only by case, are refused: the runner does not guess
    whether ``Cat`` and ``cat`` are one class. A linked folder containing ``directory``
    (a loop) is skipped.
    """
    top = os.path.realpath(directory)
    dirs = []
    for d in sorted(d for d in directory.iterdir() if d.is_dir() and not d.name.startswith(".")):
        if _contains(os.path.realpath(d), top):
            left_out.repeated.append(f"{d} -> {os.path.realpath(d)}")
        else:
            dirs.append(d)
    empty = [repr(d.name) for d in dirs if not d.name.strip()]
    if empty:
        raise DataError(
            f"class folder name(s) {', '.join(empty)} in {directory} are empty once surrounding "
            "whitespace is removed: a class needs a name. Rename the folder(s)."
        )
    by_fold: dict[str, list[str]] = {}
    for d in dirs:
        by_fold.setdefault(d.name.strip().casefold(), []).append(repr(d.name))
    clashes = [" and ".join(names) for names in by_fold.values() if len(names) > 1]
    if clashes:
        raise DataError(
            f"class folders in {directory} differ only by case or surrounding whitespace: "
            f"{'; '.join(clashes)}. Merge each set into one folder or give them distinct names."
        )
    return {d.name.strip(): d for d in dirs}


def _find_images(tops: dict[str, Path]) -> dict[str, dict[str, list[Path]]]:
    """Split → class → image files, for each split folder in ``tops``; warns once about
    special files and repeated links left out."""
    per_top = {}
    for split, top in tops.items():
        left_out, seen = LeftOut(), {}
        classes = _class_dirs(top, left_out)
        per_top[split] = {c: images_under(d, c, seen, left_out) for c, d in classes.items()}
        left_out.warn(top)
    return per_top


def scan(folder: Path) -> Layout:
    """Find classes and images; a clear :class:`DataError` for every layout problem."""
    split_dirs = {s: folder / s for s in SPLITS if (folder / s).is_dir()}
    use_splits = "train" in split_dirs
    tops = {s: d for s, d in split_dirs.items()} if use_splits else {"": folder}
    per_top = _find_images(tops)
    classes = sorted(per_top["train" if use_splits else ""])
    _check_classes(folder, tops, per_top, classes)
    files, labels, split_of = [], [], []
    for s, members in per_top.items():
        for c, paths in sorted(members.items()):
            files += [p.relative_to(folder).as_posix() for p in paths]
            labels += [classes.index(c)] * len(paths)
            split_of += [s] * len(paths)
    return Layout(
        classes=classes,
        files=files,
        labels=np.asarray(labels, dtype=np.int64),
        split_of=np.asarray(split_of) if use_splits else None,
    )


def _check_classes(
    folder: Path,
    tops: dict[str, Path],
    per_top: dict[str, dict[str, list[Path]]],
    classes: list[str],
) -> None:
    """A :class:`DataError` for no class, one class, an empty class or a class that
    a split has and train lacks."""
    where = tops.get("train", folder)
    expected = f"{where}/<class>/<image>"
    if not classes:
        loose = [p for p in where.iterdir() if p.suffix.lower() in IMG_EXTENSIONS]
        hint = f" ({len(loose)} images lie loose in it)" if loose else ""
        raise DataError(
            f"no class folders in {where}{hint}. An image folder dataset needs one sub-folder "
            f"per class: {expected}."
        )
    if len(classes) < 2:
        raise DataError(
            f"only one class folder ({classes[0]!r}) in {where}: classification needs at least "
            f"two, laid out as {expected}."
        )
    empty = [
        f"{tops[s] / c}" for s, members in per_top.items() for c, f in members.items() if not f
    ]
    if empty:
        raise DataError(
            f"class folder(s) with no images ({', '.join(IMG_EXTENSIONS)}): {', '.join(empty)}. "
            "Add images or remove the folder(s)."
        )
    for s, members in per_top.items():
        unknown = sorted(set(members) - set(classes))
        if unknown:
            raise DataError(
                f"{tops[s]} has class folder(s) {unknown} that {folder / 'train'} lacks; "
                "every split must use the training classes."
            )


def resolve_folder(root: str, path: str, name: str) -> Path:
    """``path`` if absolute, ``<root>/<path>`` if relative, ``<root>/<name>`` if empty."""
    p = Path(os.path.expanduser(path)) if path else Path(name)
    return p if p.is_absolute() else Path(root) / p


def missing_folder_error(folder: Path, name: str) -> DataError:
    return DataError(
        f"dataset {name!r}: no image folder at {folder}. Expected one sub-folder per class, "
        f"{folder}/<class>/<image>.jpg|png|... (or {folder}/train|val|test/<class>/<image>). "
        f"Image folders have no downloader: copy or link the folder there, point "
        f"dataset.path at it (absolute, or relative to dataset.root), or set dataset.root / "
        f"$RUNNER_DATA to the folder that contains {folder.name}/."
    )


# ------------------------------------------------------------------ splitting


def split_indices(
    layout: Layout,
    groups: list[str] | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Train/val/test indices into ``layout.files``: split folders, groups or stratified."""

    def carve(idx: np.ndarray, val: float, test: float) -> tuple[np.ndarray, ...]:
        y = layout.labels[idx]
        if groups is not None:
            parts = group_split(y, [groups[i] for i in idx], val, test, seed)
        else:
            parts = stratified_split(y, val, test, seed, classes=layout.classes)
        return tuple(idx[p] for p in parts)

    if layout.split_of is None:
        tr, va, te = carve(np.arange(len(layout.files)), val_fraction, test_fraction)
        return {"train": tr, "val": va, "test": te}
    out = {s: np.flatnonzero(layout.split_of == s) for s in SPLITS}
    missing = {s: f for s, f in (("val", val_fraction), ("test", test_fraction)) if not len(out[s])}
    if missing:
        log.info("no %s/ folder: carving %s from train", "/ ".join(missing), missing)
        tr, va, te = carve(out["train"], missing.get("val", 0.0), missing.get("test", 0.0))
        out["train"] = tr
        for s in missing:
            out[s] = va if s == "val" else te
    return out


def _group_note(groups: list[str], regex: str, csv: str, column: str) -> str:
    """``Split by group (...): 480 groups of 1 234 files, e.g. '..._fish3'; ...``."""
    how = f"dataset.group_regex '{regex}' on file names" if regex else f"'{column}' of {csv}"
    distinct = list(dict.fromkeys(g for g in groups if not g.startswith("<file>")))
    example = f", e.g. {distinct[0]!r}" if distinct else ""
    return (
        f"split by group ({how}): {len(set(groups))} groups of {len(groups)} files{example}; "
        "the files of one group never lie in two splits"
    )


def _groups(layout: Layout, folder: Path, regex: str, csv: str, column: str, file_column: str):
    if regex and csv:
        raise ConfigError("set dataset.group_regex or dataset.group_csv, not both")
    if regex:
        return groups_from_regex(layout.files, regex)
    if csv:
        if not column:
            raise ConfigError("dataset.group_csv needs dataset.group_column (the group's column)")
        csv_path = Path(csv) if Path(csv).is_absolute() else folder / csv
        return groups_from_csv(layout.files, csv_path, column, file_column)
    return None


# ------------------------------------------------------------------ streaming


class _FileDataset(torch.utils.data.Dataset):
    """Decode-on-access dataset of image files (for :class:`StreamingSplit`)."""

    def __init__(self, files: Sequence[Path], labels: torch.Tensor, decoding: Decoding) -> None:
        self.files, self.labels, self.decoding = list(files), labels, decoding

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        try:
            img, _ = decode_image(self.files[i], self.decoding.image_size, self.decoding.channels)
        except Exception as err:
            if self.decoding.skip_corrupt:
                warnings.warn(f"skipping unreadable image {self.files[i]}: {err}", stacklevel=2)
                return None
            raise DataError(
                f"cannot read image {self.files[i]} ({type(err).__name__}: {err}); replace or "
                "delete it, or set dataset.skip_corrupt=true"
            ) from None
        return img, int(self.labels[i])


def _collate(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
    batch = [b for b in batch if b is not None]
    if not batch:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])


class LazyImages:
    """Stands in for a split's uint8 ``(N, C, H, W)`` tensor; decodes only what is indexed.

    Supports ``len``, ``.shape``, ``.dtype`` and indexing by int, slice, list or
    tensor of indices — enough for code that looks at a few samples. It cannot be
    moved to a device as a whole: iterate :meth:`StreamingSplit.batches` instead.
    """

    dtype = torch.uint8

    def __init__(self, dataset: _FileDataset) -> None:
        self._ds = dataset
        size, channels = dataset.decoding.image_size, dataset.decoding.channels
        self.shape = torch.Size((len(dataset), channels, size, size))

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, slice):
            indices = list(range(len(self))[idx])
        else:
            t = torch.as_tensor(idx)
            if t.dtype == torch.bool:
                t = t.nonzero().flatten()
            if t.ndim == 0:  # one image (python or numpy integer, 0-d tensor)
                path, decoding = self._ds.files[int(t)], self._ds.decoding
                return decode_image(path, decoding.image_size, decoding.channels)[0]
            indices = t.tolist()
        if not indices:
            return torch.empty((0, *self.shape[1:]), dtype=torch.uint8)
        return torch.stack([self[int(i)] for i in indices])

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise DataError(
            f"this split streams {len(self)} images from disk and is not held in memory; "
            "iterate StreamingSplit.batches(...) instead of moving split.x to a device"
        )


class StreamingSplit(Split):
    """A split whose images stay on disk and are decoded batch by batch.

    ``x`` is a :class:`LazyImages`; ``y`` (int64) and ``names`` are in memory as
    usual; ``streaming`` is True (in-memory splits have no such attribute). The
    training loop consumes it with :meth:`batches`, which yields ``(uint8 (B, C,
    H, W), int64 (B,))`` on the CPU exactly like ``(x[idx], y[idx])`` of an
    in-memory split, in the order the loop asks for; the loop then moves,
    augments and normalises them as it does for in-memory batches.
    """

    streaming = True

    def __init__(
        self, files: Sequence[Path], y: torch.Tensor, names: list[str] | None, decoding: Decoding
    ) -> None:
        self._dataset = _FileDataset(files, y, decoding)
        self.x = LazyImages(self._dataset)  # type: ignore[assignment]
        self.y = y
        self.names = names
        self.num_workers = decoding.workers
        self.__post_init__()

    def batches(
        self,
        batch_size: int,
        *,
        order: Sequence[int] | torch.Tensor | None = None,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``(uint8 (B, C, H, W), int64 (B,))`` of one pass, on the CPU.

        Args:
            order: the sample indices to visit, in order (e.g. the loop's own
                permutation, or one rank's shard of it); None = all samples,
                shuffled with a CPU generator seeded by ``seed`` if ``shuffle``.
            num_workers: DataLoader worker processes decoding in parallel (None =
                ``dataset.num_workers``).

        A batch may be short when ``skip_corrupt`` dropped unreadable files from it.
        """
        workers = self.num_workers if num_workers is None else num_workers
        sampler = None
        if order is not None:
            sampler = torch.as_tensor(order).cpu().tolist()
            shuffle = False
        loader = torch.utils.data.DataLoader(
            self._dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            generator=torch.Generator().manual_seed(seed) if shuffle else None,
            num_workers=workers,
            collate_fn=_collate,
            drop_last=drop_last,
            persistent_workers=False,
        )
        yield from loader


# ------------------------------------------------------------------ builder


def load_image_folder(
    *,
    name: str = "imagefolder",
    root: str = "data",
    cache_dir: str = "",
    path: str = "",
    download: bool = False,
    image_size: int = 64,
    channels: int = 3,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    normalize: str = "dataset",
    subset: float = 0.0,
    augment: Any = None,
    group_regex: str = "",
    group_csv: str = "",
    group_column: str = "",
    group_file_column: str = "",
    skip_corrupt: bool = False,
    cache: bool = True,
    check_duplicates: bool = True,
    streaming: Any = "auto",
    streaming_threshold_mb: float = 2048,
    num_workers: int = -1,
    seed: int = 42,
    **_: Any,
) -> DataBundle:
    """An image folder as a :class:`DataBundle` (keys as in ``ImageFolderConf``; see module doc).

    Args:
        path: the folder — absolute, relative to ``root``, or ``""`` = ``<root>/<name>``.
        cache_dir: where the decoded images are cached (with ``cache``); ``""`` = no cache.
        image_size: side in pixels of the square images (shorter side resized, centre crop).
        channels: 3 (RGB) | 1 (grey).
        streaming: auto (stream when the decoded set exceeds ``streaming_threshold_mb``
            MiB) | true | false.
        num_workers: decoding threads (in memory) / DataLoader workers (streaming);
            -1 = the CPU count, at most 8.
    """
    folder = _checked_folder(root, path, name, download, image_size, channels)
    layout = scan(folder)
    groups = _groups(layout, folder, group_regex, group_csv, group_column, group_file_column)
    notes = [] if groups is None else [_group_note(groups, group_regex, group_csv, group_column)]
    for note in notes:
        log.info("%s", note)
    workers = min(8, os.cpu_count() or 1) if num_workers < 0 else num_workers
    decoding = Decoding(image_size, channels, skip_corrupt, workers)
    options = BundleOptions(normalize, subset, seed, augment, check_duplicates)
    fractions = (val_fraction, test_fraction)
    decoded_mb = len(layout.files) * channels * image_size**2 / 2**20
    if _streams(streaming, decoded_mb, streaming_threshold_mb):
        log.info(
            "streaming %d images (%.0f MiB decoded) from %s", len(layout.files), decoded_mb, folder
        )
        parts = split_indices(layout, groups, *fractions, seed)
        bundle = _streaming_bundle(name, folder, layout, parts, decoding, options)
    else:
        target = _cache_target(cache_dir, name, folder, layout, decoding) if cache else None
        bundle = _memory_bundle(name, folder, layout, groups, target, decoding, options, fractions)
    bundle.notes[:0] = notes
    return bundle


def _checked_folder(
    root: str, path: str, name: str, download: bool, image_size: int, channels: int
) -> Path:
    """The dataset folder, after the checks of the decoding keys and of the folder."""
    if channels not in (1, 3):
        raise ConfigError(f"dataset.channels must be 1 or 3, got {channels}")
    if image_size < 1:
        raise ConfigError(
            f"dataset.image_size must be a positive number of pixels, got {image_size}"
        )
    folder = resolve_folder(root, path, name)
    if download:
        raise ConfigError(
            f"dataset.download=true: image folders have no downloader; put the images at {folder}"
        )
    if not folder.is_dir():
        raise missing_folder_error(folder, name)
    return folder


def _memory_bundle(
    name: str,
    folder: Path,
    layout: Layout,
    groups: list[str] | None,
    target: Path | None,
    decoding: Decoding,
    options: BundleOptions,
    fractions: tuple[float, float],
) -> DataBundle:
    """The bundle of in-memory splits: every image decoded (or loaded from the cache file
    ``target``), unreadable ones dropped when ``skip_corrupt`` allows, then split."""
    x, failed = _decoded(folder, layout, target, decoding)
    if failed:
        keep = np.flatnonzero(~np.isin(np.asarray(layout.files), [rel for rel, _ in failed]))
        x, layout = x[torch.as_tensor(keep)], layout.select(keep)
        groups = None if groups is None else [groups[i] for i in keep]
    parts = split_indices(layout, groups, *fractions, options.seed)
    y = torch.as_tensor(layout.labels)
    train, val, test = (
        Split(x[torch.as_tensor(i)], y[i], [layout.files[j] for j in i]) for i in parts.values()
    )
    artifacts = _skipped_artifact(failed)
    return finish_bundle(name, layout.classes, (train, val, test), options, artifacts=artifacts)


def _streams(streaming: Any, decoded_mb: float, threshold_mb: float) -> bool:
    value = str(streaming).lower()
    if value not in ("auto", "true", "false"):
        raise ConfigError(f"dataset.streaming must be auto, true or false, got {streaming!r}")
    return value == "true" or (value == "auto" and decoded_mb > threshold_mb)


def _cache_target(
    cache_dir: str, name: str, folder: Path, layout: Layout, decoding: Decoding
) -> Path | None:
    """Where the decoded set of ``layout`` is cached (:mod:`runner.data.cache`)."""
    if not cache_dir:
        return None
    size, channels = decoding.image_size, decoding.channels
    key = cache_mod.cache_key(folder, layout.files, size, channels, str(folder.resolve()))
    return cache_mod.cache_path(cache_dir, name, key, size, channels)


def _decoded(
    folder: Path, layout: Layout, target: Path | None, decoding: Decoding
) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """All images decoded (from the cache file ``target`` when it matches; None = no
    cache) and the unreadable ones.

    Returns the uint8 tensor of every file (rows of unreadable files are zero) and
    ``(relative path, error)`` of each unreadable file.
    """
    payload = cache_mod.load(target)
    if payload is None or payload["files"] != layout.files:
        x, failed = decode_all(folder, layout.files, decoding)
        payload = {"x": x, "files": layout.files, "failed": [list(f) for f in failed]}
        # cached even with unreadable files: their rows are dropped at load time, and
        # replacing a file changes the key
        cache_mod.save(target, payload)
    failed = [tuple(f) for f in payload["failed"]]
    corrupt_report(failed, folder, decoding.skip_corrupt)
    return payload["x"], failed


def _skipped_artifact(failed: list[tuple[str, str]]) -> dict[str, Any]:
    """``skipped_files.csv`` for the run directory when unreadable images were skipped."""
    if not failed:
        return {}
    import pandas as pd

    return {"skipped_files.csv": pd.DataFrame(failed, columns=["file", "error"])}


def _streaming_bundle(
    name: str,
    folder: Path,
    layout: Layout,
    parts: dict[str, np.ndarray],
    decoding: Decoding,
    options: BundleOptions,
) -> DataBundle:
    """The bundle of :class:`StreamingSplit` s. The subset is drawn on file indices and
    the statistics from up to 1 000 training images, so nothing is decoded up front; no
    duplicate check (that would decode every image)."""
    if options.subset:
        train = parts["train"]
        parts["train"] = train[subset_per_class(layout.labels[train], options.subset, options.seed)]
    y = torch.as_tensor(layout.labels)
    splits = {}
    for s, idx in parts.items():
        names = [layout.files[i] for i in idx]
        splits[s] = StreamingSplit([folder / n for n in names], y[idx], names, decoding)
    stats = None
    if options.normalize == "dataset":
        rng = np.random.default_rng(options.seed)
        n = len(splits["train"])
        sample = rng.choice(n, size=min(n, 1000), replace=False)
        stats = channel_stats(splits["train"].x[np.sort(sample).tolist()])
    done = replace(options, subset=0.0, check_duplicates=False)
    train, val, test = (splits[s] for s in SPLITS)
    return finish_bundle(name, layout.classes, (train, val, test), done, stats=stats)
