"""Classify texts with a finished text run: its model, its tokenizer and vocabulary.

The vocabulary is the run's ``vocab.json`` (built from its training split, saved when it
trained), so a text is encoded exactly as the run's own data was: tokenised, lower-cased
when the run did, unknown words → ``<unk>``, cut or padded to ``max_length``.

Inputs: a list of strings, or files — ``.csv`` (the run's text column, ``dataset.text_column``,
unless told otherwise; a label column, ``dataset.label_column``, adds ``true_class`` and
``correct``) or any other file read as one text per non-empty line (``.txt``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from runner.errors import CheckpointError, DataError
from runner.text.tokenizer import Vocabulary


@dataclass
class Texts:
    """Texts to classify: ``texts``, where each came from (``sources``: ``file:row``) and
    the label given with it (``labels``; ``None`` where there is none)."""

    texts: list[str]
    sources: list[str]
    labels: list[str | None]


def load_vocabulary(run: str | Path) -> Vocabulary:
    """The ``vocab.json`` of a run directory (or of the run a checkpoint file lies in)."""
    from runner.rundir import VOCAB

    path = Path(run)
    folder = path if path.is_dir() else path.parent.parent  # <run>/checkpoints/best.pt
    file = folder / VOCAB
    try:
        return Vocabulary.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CheckpointError(
            f"{file} does not exist: a text run's predictions need the vocabulary it trained "
            "with; pass the run directory (or a checkpoint inside it)"
        ) from None
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{file} is not a runner vocabulary: {err}") from None


def read_texts(
    paths: Sequence[str | Path], text_column: str = "text", label_column: str = "label"
) -> Texts:
    """Texts of CSV files (``text_column``; ``label_column`` when present) and of other files
    (one text per non-empty line, e.g. ``.txt``)."""
    out = Texts([], [], [])
    for item in paths:
        path = Path(item)
        if not path.is_file():
            raise DataError(f"{path}: no such file (give .csv or .txt files of texts)")
        if path.suffix.lower() == ".csv":
            _read_csv(path, text_column, label_column, out)
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if line.strip():
                out.texts.append(line)
                out.sources.append(f"{path}:{number}")
                out.labels.append(None)
    return out


def _read_csv(path: Path, text_column: str, label_column: str, out: Texts) -> None:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(f"cannot read {path} as a UTF-8 CSV file: {err}") from err
    if text_column not in frame.columns:
        raise DataError(
            f"{path} has no column {text_column!r} (the run's text column); its columns are "
            f"{', '.join(map(repr, frame.columns))}. Choose one with --text-column."
        )
    labels = frame[label_column].str.strip() if label_column in frame.columns else None
    for row, text in enumerate(frame[text_column].tolist()):
        out.texts.append(text)
        out.sources.append(f"{path}:{row + 2}")  # the file's line: 1 is the header
        out.labels.append(None if labels is None or not labels.iloc[row] else labels.iloc[row])


class TextPredictor:
    """A text run's model, vocabulary and classes on one device."""

    def __init__(
        self,
        model: torch.nn.Module,
        pre: Any,
        vocab: Vocabulary,
        device: str | torch.device = "cpu",
        text_column: str = "text",
        label_column: str = "label",
    ) -> None:
        from runner.predict import _device

        if pre.kind != "text":
            raise CheckpointError(f"text prediction needs a text run; this run's is {pre.kind}")
        self.device = _device(device)
        self.model, self.pre, self.vocab = model.to(self.device).eval(), pre, vocab
        self.text_column, self.label_column = text_column, label_column

    @classmethod
    def from_run(
        cls, run: str | Path, which: str = "best", device: str | torch.device = "auto"
    ) -> TextPredictor:
        from runner.checkpoint import load_model

        return cls.from_loaded(run, *load_model(run, which), device)

    @classmethod
    def from_loaded(
        cls, run: str | Path, model: torch.nn.Module, pre: Any, ckpt: dict, device: Any = "auto"
    ) -> TextPredictor:
        """From :func:`runner.checkpoint.load_model`'s result for ``run``."""
        from runner.checkpoint import stored_config

        dataset = stored_config(ckpt).get("dataset") or {}
        text, label = dataset.get("text_column", "text"), dataset.get("label_column", "label")
        return cls(model, pre, load_vocabulary(run), device, str(text), str(label))

    @torch.inference_mode()
    def probabilities(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Softmax probabilities (CPU) of ``texts``, encoded with the run's vocabulary."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            ids = self.vocab.encode_batch(list(texts[start : start + batch_size]))
            chunks.append(torch.softmax(self.model(ids.to(self.device)).float(), dim=1).cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, len(self.pre.classes))

    def predict(self, texts: Texts, top_k: int = 3, batch_size: int = 256) -> pd.DataFrame:
        """One row per text: source, text, predicted_class, confidence, top-k classes and
        probabilities; ``true_class`` and ``correct`` where a label came with the text."""
        from runner.predict import top_k_table

        probs = self.probabilities(texts.texts, batch_size)
        truth = texts.labels if any(label is not None for label in texts.labels) else None
        frame = top_k_table(self.pre.classes, probs, texts.sources, top_k, "source", truth)
        frame.insert(1, "text", texts.texts)
        return frame

    def predict_files(
        self, paths: Sequence[str | Path], top_k: int = 3, batch_size: int = 256
    ) -> pd.DataFrame:
        """:meth:`predict` of the texts of ``paths`` (see :func:`read_texts`)."""
        texts = read_texts(paths, self.text_column, self.label_column)
        return self.predict(texts, top_k, batch_size)
