"""Schemas of the text datasets and recurrent models (read by ``runner.schema.register_all``)."""

from __future__ import annotations

from dataclasses import dataclass

from runner.schema import DatasetConf, ModelConf


@dataclass
class NusaxConf(DatasetConf):
    """A folder of CSV files ``train.csv``, ``valid.csv`` (or ``val.csv`` / ``dev.csv``;
    when absent, ``val_fraction`` of train is held out) and ``test.csv``.

    Defaults fit NusaX-Senti (columns id,text,label; labels negative/neutral/positive),
    but any such folder works: ``dataset.path=/work/shared/data/nusax_senti_id``, or
    ``RUNNER_DATA=/work/shared/data`` so that ``root`` holds ``nusax_senti_id/``.
    """

    _target_: str = "runner.text.nusax.load_nusax"
    name: str = "nusax_senti"
    path: str = "${.root}/nusax_senti_id"  # folder with the CSV files
    text_column: str = "text"
    label_column: str = "label"  # strings or integers; classes are the sorted distinct values
    vocab_size: int = 20000  # ids in all, <pad>/<unk> included; 0 = every training token
    min_freq: int = 1  # occurrences in train a token needs to get its own id
    lowercase: bool = True
    max_length: int = 128  # tokens per sequence; longer texts are truncated (end dropped)


@dataclass
class RNNConf(ModelConf):
    """models.text.RNNClassifier; vocab_size / pad_idx / num_classes come from the dataset."""

    _target_: str = "models.text.RNNClassifier"
    name: str = "rnn"
    cell: str = "rnn"  # rnn (SimpleRNN) | gru | lstm
    embed_dim: int = 128
    hidden_size: int = 64  # units per layer and direction
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.5  # on the pooled features, before the classifier
    rnn_dropout: float = 0.0  # between stacked layers
    embed_dropout: float = 0.0  # on the embedded tokens
    pooling: str = "last"  # last | mean | max
    nonlinearity: str = "tanh"  # tanh | relu (cell=rnn only)


@dataclass
class BiRNNConf(RNNConf):
    name: str = "birnn"
    bidirectional: bool = True


@dataclass
class GRUConf(RNNConf):
    name: str = "gru"
    cell: str = "gru"


@dataclass
class LSTMConf(RNNConf):
    name: str = "lstm"
    cell: str = "lstm"


@dataclass
class BiLSTMConf(LSTMConf):
    name: str = "bilstm"
    bidirectional: bool = True


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"nusax_senti": NusaxConf},
    "model": {
        "rnn": RNNConf,
        "birnn": BiRNNConf,
        "gru": GRUConf,
        "lstm": LSTMConf,
        "bilstm": BiLSTMConf,
    },
}
