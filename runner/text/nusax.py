"""NusaX-Senti — or any folder of train/valid/test CSV files — as token-id tensors.

The vocabulary is built from the training split only (after ``subset``), saved
with the run as ``vocab.json``, and every split is encoded with it: int64
``(N, max_length)`` ids, post-padded with ``<pad>`` = 0.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from runner.data.base import DataBundle, Split
from runner.data.prepare import stratified_split, subset_per_class
from runner.errors import DataError
from runner.rundir import VOCAB
from runner.text.tokenizer import PAD_IDX, Vocabulary

# The NusaX repository at the commit /work/shared/data/nusax_senti_id was taken from.
NUSAX_URL = (
    "https://raw.githubusercontent.com/IndoNLP/nusax/75b0be5d982348332509f296e10d9bf9cb66d60f/"
    "datasets/sentiment/indonesian/{split}.csv"
)
SPLIT_FILES = {
    "train": ("train.csv",),
    "val": ("valid.csv", "val.csv", "dev.csv"),
    "test": ("test.csv",),
}


def load_nusax(
    *,
    path: str,
    text_column: str = "text",
    label_column: str = "label",
    vocab_size: int = 20000,
    min_freq: int = 1,
    lowercase: bool = True,
    max_length: int = 128,
    val_fraction: float = 0.1,
    subset: float = 0.0,
    download: bool = False,
    seed: int = 42,
    name: str = "nusax_senti",
    **_: Any,
) -> DataBundle:
    """Read ``path``'s CSV files into a text :class:`DataBundle`.

    path: folder with ``train.csv``, ``test.csv`` and ``valid.csv`` (or ``val.csv`` /
        ``dev.csv``; without one, a stratified ``val_fraction`` of train, fixed by ``seed``).
    text_column / label_column: CSV columns; labels may be strings or integers, the
        classes are their sorted distinct values in train. String labels lose surrounding
        whitespace; an empty label, or labels differing only by case, are refused.
    vocab_size / min_freq / lowercase / max_length: see :meth:`Vocabulary.build`.
    subset: > 0 keeps this fraction (<= 1) or count (> 1) of each training class.
    download: fetch NusaX-Senti (Indonesian) into ``path`` when its files are missing.
    Raises :class:`DataError` when the folder, a file or a column is missing.
    """
    folder = Path(path).expanduser()
    if download and not (folder / "train.csv").is_file():
        _download(folder)
    frames = _read_splits(folder, text_column, label_column, val_fraction, seed)
    classes = sorted(frames["train"][label_column].unique().tolist())
    if subset:
        train = frames["train"]
        keep = subset_per_class(_label_ids(train, label_column, classes, "train"), subset, seed)
        frames["train"] = train.iloc[keep]
    vocab = Vocabulary.build(
        frames["train"][text_column], vocab_size, min_freq, lowercase, max_length
    )
    splits = {
        split: Split(
            vocab.encode_batch(frame[text_column].tolist()),
            torch.tensor(_label_ids(frame, label_column, classes, split)),
            frame["_source"].tolist(),
        )
        for split, frame in frames.items()
    }
    return DataBundle(
        name=name,
        classes=[str(c) for c in classes],
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        kind="text",
        extra_model_kwargs={"vocab_size": len(vocab), "pad_idx": PAD_IDX},
        artifacts={VOCAB: vocab.to_dict()},
    )


def _read_splits(
    folder: Path, text_column: str, label_column: str, val_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    if not folder.is_dir():
        raise DataError(
            f"text dataset folder {folder} does not exist. Point dataset.path at a folder with "
            "train.csv, valid.csv and test.csv (e.g. dataset.path=/work/shared/data/nusax_senti_id"
            ", or set RUNNER_DATA to the folder that holds nusax_senti_id/), or pass "
            f"dataset.download=true to fetch NusaX-Senti from {NUSAX_URL.format(split='*')}."
        )
    frames = {}
    for split, names in SPLIT_FILES.items():
        file = next((folder / n for n in names if (folder / n).is_file()), None)
        if file is None and split == "val" and val_fraction > 0:
            continue
        if file is None:
            raise DataError(
                f"{folder} has no {' / '.join(names)}; a text dataset folder needs train.csv, "
                "test.csv and valid.csv (or a dataset.val_fraction > 0 to hold out part of train)."
            )
        frames[split] = _read_csv(file, text_column, label_column)
    if "val" not in frames:
        frames["train"], frames["val"] = _hold_out(
            frames["train"], label_column, val_fraction, seed
        )
    return frames


def _read_csv(file: Path, text_column: str, label_column: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(file, dtype={text_column: str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(f"cannot read {file} as a UTF-8 CSV file: {err}") from err
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{file} has no column {', '.join(map(repr, missing))}; its columns are "
            f"{', '.join(map(repr, frame.columns))}. "
            "Set dataset.text_column / dataset.label_column."
        )
    ids = frame["id"].astype(str) if "id" in frame.columns else pd.Series(range(len(frame)))
    frame["_source"] = [f"{file.name}#{i}" for i in ids]
    frame[label_column] = _clean_labels(frame, file, label_column)
    return frame


def _clean_labels(frame: pd.DataFrame, file: Path, label_column: str) -> pd.Series:
    """The label column without surrounding whitespace (numbers as they are).

    An empty label, or two labels that differ only by case (``Positive``/``positive``),
    is a :class:`DataError` naming the file and rows: the runner does not guess whether
    case matters.
    """
    labels = frame[label_column]
    if pd.api.types.is_numeric_dtype(labels):  # integer or float labels
        return labels
    text = labels.astype(str).str.strip()
    empty = np.flatnonzero(text.eq("").to_numpy())
    if len(empty):
        first = ", ".join(f"data row {i + 1} ({frame['_source'].iloc[i]})" for i in empty[:5])
        raise DataError(
            f"{file}: {len(empty)} row(s) have an empty {label_column!r}: {first}"
            f"{', …' if len(empty) > 5 else ''}. Give every row a label or delete those rows."
        )
    spellings: dict[str, list[str]] = {}
    for value, count in text.value_counts(sort=False).items():
        spellings.setdefault(value.casefold(), []).append(f"{value!r} ({count} rows)")
    clashes = [" and ".join(sorted(v)) for v in spellings.values() if len(v) > 1]
    if clashes:
        raise DataError(
            f"{file}: labels in column {label_column!r} differ only by case: "
            f"{'; '.join(clashes)}. Use one spelling per class (the runner does not guess "
            "whether case matters)."
        )
    return text


def _hold_out(
    frame: pd.DataFrame, label_column: str, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified ``fraction`` of ``frame`` as validation (the rows scikit-learn's
    ``train_test_split(stratify=…, random_state=seed)`` would hold out), in file order."""
    labels = frame[label_column].to_numpy()
    train, val, _ = stratified_split(labels, fraction, 0.0, seed, noun="texts")
    return frame.iloc[train], frame.iloc[val]


def _label_ids(frame: pd.DataFrame, label_column: str, classes: list, split: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(frame[label_column]) - set(index), key=str)
    if unknown:
        folded = {str(c).casefold(): c for c in classes}
        near = [
            f"{u!r}/{folded[str(u).casefold()]!r}" for u in unknown if str(u).casefold() in folded
        ]
        hint = f"; {', '.join(near)} differ only by case: use one spelling" if near else ""
        raise DataError(
            f"the {split} split has labels {unknown} that train does not have "
            f"(train's classes: {classes}{hint})"
        )
    return frame[label_column].map(index).to_numpy(dtype=np.int64)


def _download(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        url = NUSAX_URL.format(split=split)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except OSError as err:
            raise DataError(f"could not download {url}: {err}") from err
        (folder / f"{split}.csv").write_bytes(data)
