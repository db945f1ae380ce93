"""Text data (tokenizer, vocabulary, CSV builder), the RNN classifiers and the S4 text flow."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from runner import verify
from runner.errors import DataError
from runner.models.text import RNNClassifier
from runner.text.nusax import load_nusax
from runner.text.tokenizer import PAD_IDX, UNK_IDX, Vocabulary, tokenize
from tests.conftest import only_run_dir, run_cli

NUSAX = Path(__file__).resolve().parents[2] / "shared" / "data" / "nusax_senti_id"

WORDS = {
    "positive": ["enak", "bagus", "ramah", "suka", "mantap"],
    "negative": ["buruk", "jelek", "kecewa", "mahal", "lambat"],
    "neutral": ["ada", "pergi", "besok", "kantor", "jalan"],
}
FILLER = ["saya", "makan", "di", "sini", "tempat", "ini", "dan", "yang", "itu"]


def write_csv(path: Path, rows: list[dict], columns=("id", "text", "label")) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def sentiment_rows(n: int, seed: int, start: int = 0) -> list[dict]:
    """Short Indonesian-like sentences whose label follows its sentiment words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ("negative", "neutral", "positive")[i % 3]
        words = rng.sample(FILLER, 3) + rng.sample(WORDS[label], 2)
        rng.shuffle(words)
        rows.append({"id": start + i, "text": " ".join(words).capitalize() + ".", "label": label})
    return rows


def make_folder(root: Path, n_train: int = 90, with_valid: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_csv(root / "train.csv", sentiment_rows(n_train, 0))
    if with_valid:
        write_csv(root / "valid.csv", sentiment_rows(30, 1, 1000))
    write_csv(root / "test.csv", sentiment_rows(45, 2, 2000))
    return root


# ------------------------------------------------------------------ tokenizer / vocabulary


def test_tokenize_splits_words_and_punctuation() -> None:
    assert tokenize("Enak-enak, 10%!  Mantap") == [
        "enak",
        "-",
        "enak",
        ",",
        "10",
        "%",
        "!",
        "mantap",
    ]
    assert tokenize("Enak", lowercase=False) == ["Enak"]


def test_vocabulary_ids_padding_truncation_and_caps() -> None:
    texts = ["b a a", "c a b", "d"]
    vocab = Vocabulary.build(texts, max_length=4)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "b", "c", "d"]  # by count, ties alphabetical
    x = vocab.encode_batch(["a b zzz", "a a a a a a", ""])
    assert x.dtype == torch.int64 and x.shape == (3, 4)
    assert x.tolist() == [[2, 3, UNK_IDX, PAD_IDX], [2, 2, 2, 2], [0, 0, 0, 0]]
    assert Vocabulary.build(texts, vocab_size=4).tokens == ["<pad>", "<unk>", "a", "b"]
    assert Vocabulary.build(texts, min_freq=2).tokens == ["<pad>", "<unk>", "a", "b"]
    with pytest.raises(ValueError, match="vocab_size must be 0"):
        Vocabulary.build(texts, vocab_size=2)
    again = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again.tokens == vocab.tokens and again.max_length == 4
    assert again.decode(x[0].tolist()) == ["a", "b", "<unk>"]


def test_vocabulary_comes_from_the_training_split_only(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "csv")
    rows = sentiment_rows(45, 2, 2000)
    rows[0]["text"] = "Onlyintest " + rows[0]["text"]
    write_csv(folder / "test.csv", rows)
    data = load_nusax(path=str(folder), max_length=12, seed=0)
    tokens = data.artifacts["vocab.json"]["tokens"]
    assert "onlyintest" not in tokens
    assert data.test.x[0, 0].item() == UNK_IDX
    train_tokens = {t for r in sentiment_rows(90, 0) for t in tokenize(r["text"])}
    assert set(tokens[2:]) == train_tokens


# ------------------------------------------------------------------ CSV builder


def test_load_nusax_bundle(tmp_path: Path) -> None:
    data = load_nusax(path=str(make_folder(tmp_path / "csv")), max_length=16, seed=0)
    assert data.kind == "text"
    assert data.classes == ["negative", "neutral", "positive"]  # sorted label strings
    assert data.train.x.shape == (90, 16) and data.val.x.shape == (30, 16)
    assert data.test.x.shape == (45, 16) and data.train.x.dtype == torch.int64
    assert data.split_counts()["train"] == [30, 30, 30]
    assert data.extra_model_kwargs == {
        "vocab_size": len(data.artifacts["vocab.json"]["tokens"]),
        "pad_idx": 0,
    }
    assert data.train.names[0] == "train.csv#0"
    assert data.model_kwargs()["num_classes"] == 3


def test_integer_labels_custom_columns_and_held_out_validation(tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    folder.mkdir()
    code = {"negative": 2, "neutral": 0, "positive": 1}
    for name, rows in (("train.csv", sentiment_rows(60, 0)), ("test.csv", sentiment_rows(9, 2))):
        rows = [{"sentence": r["text"], "y": code[r["label"]]} for r in rows]
        write_csv(folder / name, rows, columns=("sentence", "y"))
    data = load_nusax(
        path=str(folder), text_column="sentence", label_column="y", val_fraction=0.25, seed=3
    )
    assert data.classes == ["0", "1", "2"]
    assert (len(data.train), len(data.val), len(data.test)) == (45, 15, 9)
    assert data.split_counts()["val"] == [5, 5, 5]  # stratified hold-out
    assert load_nusax(
        path=str(folder), label_column="y", text_column="sentence", subset=4, seed=3
    ).split_counts()["train"] == [4, 4, 4]


def test_missing_data_errors_say_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*dataset.path"):
        load_nusax(path=str(tmp_path / "nowhere"))
    folder = make_folder(tmp_path / "csv", with_valid=False)
    with pytest.raises(DataError, match="no valid.csv / val.csv / dev.csv"):
        load_nusax(path=str(folder), val_fraction=0.0)
    with pytest.raises(DataError, match="no column 'sentence'; its columns are 'id', 'text'"):
        load_nusax(path=str(folder), text_column="sentence")
    rows = sentiment_rows(6, 2)
    rows[0]["label"] = "angry"
    write_csv(folder / "test.csv", rows)
    with pytest.raises(DataError, match=r"test split has labels \['angry'\]"):
        load_nusax(path=str(folder))


# ------------------------------------------------------------------ model


@pytest.mark.parametrize(
    ("cell", "bidirectional", "num_layers", "params"),
    [
        # embedding 50*8 + RNN 2 layers (8*6+6*6+12, 6*6+6*6+12) + classifier 6*3+3
        ("rnn", False, 2, 400 + 96 + 84 + 21),
        # embedding + LSTM both directions 2*(4*(8*6+6*6+12)) + classifier 12*3+3
        ("lstm", True, 1, 400 + 2 * 4 * 96 + 39),
        ("gru", False, 1, 400 + 3 * 96 + 21),
    ],
)
def test_rnn_classifier_shapes_and_parameters(cell, bidirectional, num_layers, params) -> None:
    model = RNNClassifier(
        num_classes=3,
        vocab_size=50,
        embed_dim=8,
        hidden_size=6,
        cell=cell,
        bidirectional=bidirectional,
        num_layers=num_layers,
    )
    x = torch.randint(0, 50, (4, 7))
    x[0] = 0  # an all-padding text still gets a prediction
    assert model(x).shape == (4, 3)
    assert sum(p.numel() for p in model.parameters()) == params


def test_rnn_classifier_rejects_unknown_choices() -> None:
    with pytest.raises(ValueError, match="unknown cell 'transformer'; valid: rnn, gru, lstm"):
        RNNClassifier(3, 10, cell="transformer")
    with pytest.raises(ValueError, match="unknown pooling 'first'; valid: last, mean, max"):
        RNNClassifier(3, 10, pooling="first")
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        RNNClassifier(3, 10, num_layers=0)


def test_keras_style_init_sets_forget_bias_and_keeps_pad_row_zero() -> None:
    model = RNNClassifier(3, 20, embed_dim=4, hidden_size=5, cell="lstm", init="xavier")
    bias = model.rnn.bias_ih_l0.detach()
    assert torch.equal(bias[5:10], torch.ones(5)) and bias[:5].abs().sum() == 0
    assert model.embedding.weight[0].abs().sum() == 0


# ------------------------------------------------------------------ through the CLI

TINY_TEXT = ["model.embed_dim=16", "model.hidden_size=8", "trainer.num_threads=1"]


def test_bilstm_trains_through_the_cli_and_numpy_agrees(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "csv")
    args = ["dataset=nusax_senti", f"dataset.path={folder}", "model=bilstm", "trainer.max_epochs=1"]
    proc = run_cli([*args, *TINY_TEXT], tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path)
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    vocab = json.loads((run / "vocab.json").read_text())
    assert vocab["tokens"][:2] == ["<pad>", "<unk>"] and vocab["max_length"] == 128

    assert verify.main([str(run), "--split", "test"]) == 0
    result = json.loads((run / "verify.json").read_text())
    assert result["n"] == 45 and result["agreement"] == 1.0
    assert result["max_abs_logit_diff"] < 1e-4
    assert result["torch_macro_f1"] == result["numpy_macro_f1"]


def test_s4_text_preset_smoke(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "csv")
    args = ["+experiment=s4_text", f"dataset.path={folder}", "trainer.max_epochs=2", *TINY_TEXT]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path)
    assert "bilstm_nusax_senti" in run.name
    metrics = pd.read_csv(run / "metrics.csv")
    assert len(metrics) == 2 and "val_macro_f1" in metrics.columns


@pytest.mark.slow
def test_s4_bilstm_reaches_070_macro_f1_on_nusax(tmp_path: Path) -> None:
    """SEEDS.md S4: the Keras BiLSTM reached test macro-F1 0.72 on NusaX-Senti (Indonesian)."""
    if not (NUSAX / "train.csv").is_file():
        pytest.skip(f"NusaX-Senti not found at {NUSAX}")
    proc = run_cli(["+experiment=s4_text", f"dataset.path={NUSAX}"], tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_macro_f1"] >= 0.70, summary
    assert verify.main([str(run)]) == 0
    result = json.loads((run / "verify.json").read_text())
    assert result["agreement"] == 1.0 and result["numpy_macro_f1"] == pytest.approx(
        summary["test_macro_f1"], abs=1e-9
    )


# ------------------------------------------------------------------ defaults for text


def test_text_dataset_brings_the_text_recipe_without_a_preset() -> None:
    """``dataset=nusax_senti model=bilstm`` composes the S4 preset's recipe from the parts'
    own defaults (the text trainer, min_freq, the recurrent family's pooling and dropout);
    the preset adds only its optimiser. Command-line values still win."""
    from tests.conftest import compose_cfg

    plain = compose_cfg(["dataset=nusax_senti", "model=bilstm"])
    preset = compose_cfg(["+experiment=s4_text"])
    for key in ("trainer", "model", "dataset", "scheduler"):
        assert plain[key] == preset[key], key
    assert plain.trainer.monitor == plain.trainer.early_stopping.monitor == "val_macro_f1"
    assert (plain.trainer.batch_size, plain.trainer.max_epochs) == (32, 40)
    assert (plain.model.pooling, plain.model.embed_dropout, plain.dataset.min_freq) == (
        "mean",
        0.5,
        2,
    )
    assert preset.optimizer._target_ == "torch.optim.AdamW"
    image = compose_cfg(["dataset=digits"])
    assert image.trainer.monitor == "val_loss" and image.trainer.batch_size == 64
    own = compose_cfg(["dataset=nusax_senti", "trainer.monitor=val_loss", "trainer=default"])
    assert own.trainer.monitor == "val_loss" and own.trainer.batch_size == 64


@pytest.mark.slow
def test_plain_bilstm_on_nusax_reaches_068_macro_f1_without_a_preset(tmp_path: Path) -> None:
    """What a new user types first: no preset, only the dataset and the model."""
    if not (NUSAX / "train.csv").is_file():
        pytest.skip(f"NusaX-Senti not found at {NUSAX}")
    args = ["dataset=nusax_senti", "model=bilstm", f"dataset.path={NUSAX}"]
    proc = run_cli(args, tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["test_macro_f1"] >= 0.68, summary
