"""A regex word tokenizer and a vocabulary built from the training split only.

Tokens are runs of word characters (letters, digits, ``_``, any script) or a
single punctuation character: ``"Enak-enak, 10%!"`` → ``enak - enak , 10 % !``.
Ids: ``<pad>`` = 0, ``<unk>`` = 1, then the training tokens by falling
frequency (ties alphabetical, so the ids are deterministic). Sequences are
post-padded / truncated to ``max_length`` (the first tokens are kept), the
layout :class:`runner.models.text.RNNClassifier` expects.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

PAD, UNK = "<pad>", "<unk>"
PAD_IDX, UNK_IDX = 0, 1
TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split ``text`` into word and punctuation tokens (lower-cased when ``lowercase``)."""
    return TOKEN_PATTERN.findall(text.lower() if lowercase else text)


@dataclass
class Vocabulary:
    """Token ↔ id map plus the encoding settings, saved with a run as ``vocab.json``.

    tokens: id → token, ``<pad>`` and ``<unk>`` first.
    lowercase: lower-case text before tokenizing.
    max_length: tokens per encoded sequence (padding/truncation), >= 1.
    """

    tokens: list[str]
    lowercase: bool = True
    max_length: int = 128
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tokens[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {self.tokens[:2]}")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        self.index = {tok: i for i, tok in enumerate(self.tokens)}

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        vocab_size: int = 20000,
        min_freq: int = 1,
        lowercase: bool = True,
        max_length: int = 128,
    ) -> Vocabulary:
        """Vocabulary of ``texts`` (the training split only, so nothing leaks from val/test).

        vocab_size: ids in all, ``<pad>``/``<unk>`` included (0 = no cap; else >= 3).
        min_freq: fewest occurrences a token needs to get its own id (>= 1).
        """
        if vocab_size and vocab_size < 3:
            raise ValueError(f"vocab_size must be 0 (no cap) or >= 3, got {vocab_size}")
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts = Counter(tok for text in texts for tok in tokenize(text, lowercase))
        ranked = sorted(
            (t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t)
        )
        if vocab_size:
            ranked = ranked[: vocab_size - 2]
        return cls([PAD, UNK, *ranked], lowercase=lowercase, max_length=max_length)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``'s tokens (unknown → ``<unk>``), unpadded and untruncated."""
        return [self.index.get(tok, UNK_IDX) for tok in tokenize(text, self.lowercase)]

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """int64 ids (N, max_length): first ``max_length`` tokens, then ``<pad>``."""
        out = torch.full((len(texts), self.max_length), PAD_IDX, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = self.encode(text)[: self.max_length]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids``, padding dropped."""
        return [self.tokens[i] for i in ids if i != PAD_IDX]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the run directory's ``vocab.json``)."""
        return {
            "pad": PAD,
            "unk": UNK,
            "lowercase": self.lowercase,
            "max_length": self.max_length,
            "token_pattern": TOKEN_PATTERN.pattern,
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        """Inverse of :meth:`to_dict` (e.g. ``json.load`` of a run's ``vocab.json``)."""
        return cls(list(data["tokens"]), bool(data["lowercase"]), int(data["max_length"]))
