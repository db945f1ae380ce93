"""Recurrent text classifiers of SEEDS.md S4: SimpleRNN / GRU / LSTM, uni- or bidirectional.

token ids ``(N, L)`` → embedding → ``num_layers`` stacked ``nn.RNN`` / ``nn.GRU`` /
``nn.LSTM`` (batch first, packed by sequence length so padding never enters the
recurrence) → pooling over time → dropout → linear classifier.

Inputs are post-padded: the tokens of a sequence come first, then ``pad_idx``
up to ``L``. A sequence's length is its count of non-pad tokens (at least 1, so
an empty text runs one pad step). :mod:`runner.numpy_ref` reimplements this
forward pass in NumPy; change both together.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from runner.models.layers import INITS, init_weights

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
POOLINGS = ("last", "mean", "max")
NONLINEARITIES = ("tanh", "relu")


def sequence_lengths(x: torch.Tensor, pad_idx: int) -> torch.Tensor:
    """Non-pad tokens per row of post-padded ids ``x`` (N, L), clamped to >= 1 (int64, CPU)."""
    return (x != pad_idx).sum(dim=1).clamp(min=1).cpu()


class RNNClassifier(nn.Module):
    """Embedding → stacked recurrent layers → pooling → dropout → linear.

    Args:
        num_classes: output logits.
        vocab_size: embedding rows, ``<pad>`` and ``<unk>`` included (from the dataset).
        pad_idx: id of the padding token (its embedding stays zero).
        embed_dim: embedding width.
        cell: ``rnn`` (Elman / Keras SimpleRNN) | ``gru`` | ``lstm``.
        num_layers: stacked recurrent layers (>= 1).
        hidden_size: units per layer and direction.
        bidirectional: add a backward-reading layer beside each forward one; the
            features are the two directions concatenated (2 × hidden_size).
        dropout: dropout probability on the pooled features, in [0, 1).
        rnn_dropout: dropout between stacked recurrent layers (torch's ``dropout``), in [0, 1).
        embed_dropout: dropout on the embedded tokens, in [0, 1).
        pooling: ``last`` (forward direction: the state after the last real token;
            backward direction: the state after reading back to the first token — Keras'
            ``return_sequences=False``) | ``mean`` | ``max`` (over the real time steps).
        nonlinearity: ``tanh`` | ``relu`` (``cell="rnn"`` only).
        init: ``default`` (PyTorch's) | ``xavier`` | ``kaiming`` | ``orthogonal``; anything
            but default also gives Keras' recurrent scheme: input weights per the scheme,
            orthogonal recurrent weights, zero biases and LSTM forget-gate bias 1.
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        pad_idx: int = 0,
        embed_dim: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        hidden_size: int = 64,
        bidirectional: bool = False,
        dropout: float = 0.5,
        rnn_dropout: float = 0.0,
        embed_dropout: float = 0.0,
        pooling: str = "last",
        nonlinearity: str = "tanh",
        init: str = "default",
    ) -> None:
        super().__init__()
        _check_choice("cell", cell, CELLS)
        _check_choice("pooling", pooling, POOLINGS)
        _check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        _check_choice("init", init, INITS)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0 <= pad_idx < vocab_size:
            raise ValueError(f"pad_idx {pad_idx} is outside the vocabulary of {vocab_size}")
        self.pad_idx = pad_idx
        self.cell = cell
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)
        self.embed_dropout = nn.Dropout(embed_dropout)
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.rnn = CELLS[cell](
            embed_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=rnn_dropout if num_layers > 1 else 0.0,
            **extra,
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)
        if init != "default":
            init_weights(self, init, "tanh" if nonlinearity == "tanh" else "relu")
            _init_recurrent(self.rnn, init, cell)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled recurrent features (N, hidden_size × directions) of token ids ``x`` (N, L)."""
        lengths = sequence_lengths(x, self.pad_idx)
        emb = self.embed_dropout(self.embedding(x))
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        out, h_n = self.rnn(packed)
        if self.pooling == "last":
            h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # LSTM: (h, c)
            last = h_n[-2:] if self.bidirectional else h_n[-1:]  # top layer's directions
            return torch.cat(list(last), dim=1)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
        mask = mask.unsqueeze(-1)
        if self.pooling == "mean":
            return (out * mask).sum(dim=1) / lengths.to(out.device, out.dtype)[:, None]
        return out.masked_fill(~mask, float("-inf")).amax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


def _init_recurrent(rnn: nn.RNNBase, scheme: str, cell: str) -> None:
    """Keras-style recurrent init: input weights per ``scheme``, orthogonal recurrent weights,
    zero biases, LSTM forget-gate bias 1 (torch gate order i, f, g, o)."""
    for name, param in rnn.named_parameters():
        if name.startswith("weight_ih"):
            if scheme == "kaiming":
                nn.init.kaiming_uniform_(param, nonlinearity="linear")
            else:
                nn.init.xavier_uniform_(param)
        elif name.startswith("weight_hh"):
            nn.init.orthogonal_(param)
        elif name.startswith("bias"):
            nn.init.zeros_(param)
            if cell == "lstm" and name.startswith("bias_ih"):
                hidden = param.shape[0] // 4
                nn.init.ones_(param[hidden : 2 * hidden])


def _check_choice(key: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"unknown {key} {value!r}; valid: {', '.join(valid)}")
