"""Text runs after training: runner-predict and run.predict with the run's tokenizer and
vocabulary, and a clean ONNX export of the recurrent family."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

import runner
from runner.checkpoint import load_model, stored_config
from runner.data.registry import build_data
from runner.predict import main as predict_main
from runner.train import train
from tests.conftest import compose_cfg
from tests.test_text import make_folder

TINY_TEXT = ["model.embed_dim=16", "model.hidden_size=8", "trainer.max_epochs=3",
             "trainer.batch_size=16", "diagnostics=off"]  # fmt: skip


def _console(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A finished BiLSTM run on a folder of train/valid/test CSV files, and that folder."""
    root = tmp_path_factory.mktemp("text")
    folder = make_folder(root / "csv")
    cfg = compose_cfg(
        ["dataset=nusax_senti", f"dataset.path={folder}", "model=bilstm", *TINY_TEXT],
        root / "run",
    )
    summary = train(cfg)
    assert summary["status"] in ("completed", "early_stopped"), summary
    return root / "run", folder, summary


def _run_test_predictions(run: Path) -> list[str]:
    """The run's own predictions of its test split: its model on its data, rebuilt."""
    model, pre, ckpt = load_model(run)
    config = stored_config(ckpt)
    data = build_data(config["dataset"], seed=int(config["trainer"]["seed"]))
    with torch.inference_mode():
        predicted = model(data.test.x).argmax(1).tolist()
    return [pre.classes[i] for i in predicted]


def test_predict_cli_reproduces_the_runs_test_predictions_from_the_test_csv(text_run, tmp_path):
    """``runner-predict RUN test.csv`` encodes the texts with the run's vocab.json and gives
    exactly the run's test predictions, accuracy and macro-F1; stderr stays empty."""
    run, folder, summary = text_run
    out = tmp_path / "predictions.csv"
    proc = subprocess.run(
        [_console("runner-predict"), str(run), str(folder / "test.csv"), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    table = pd.read_csv(out)
    assert len(table) == 45
    assert table["source"].iloc[0] == f"{folder / 'test.csv'}:2"
    assert table["text"].tolist() == pd.read_csv(folder / "test.csv")["text"].tolist()
    assert table["predicted_class"].tolist() == _run_test_predictions(run)
    assert table["correct"].mean() == pytest.approx(summary["test_acc"], abs=1e-12)
    macro_f1 = f1_score(table["true_class"], table["predicted_class"], average="macro")
    assert macro_f1 == pytest.approx(summary["test_macro_f1"], abs=1e-12)
    assert f"accuracy on the 45 labelled: {summary['test_acc']:.4f}" in proc.stdout
    probs = table[[c for c in table.columns if c.endswith("_prob")]].sum(axis=1)
    assert probs.round(5).eq(1).all()  # 3 classes, top-3: every probability


def test_run_predict_takes_texts_and_text_files(text_run, tmp_path):
    """``run.predict(["kalimat ..."])`` and a .txt file (one text per line) give the same
    classes as the CSV rows with the same texts."""
    run_dir, folder, _ = text_run
    run = runner.load_run(run_dir)
    csv = run.predict(str(folder / "test.csv"), top_k=1)
    texts = csv["text"].tolist()[:6]
    listed = run.predict(texts)
    assert listed["source"].tolist() == [f"text {i}" for i in range(6)]
    assert listed["predicted_class"].tolist() == csv["predicted_class"].tolist()[:6]
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts[:3]) + "\n\n", encoding="utf-8")
    from_file = run.predict(lines)
    assert from_file["source"].tolist() == [f"{lines}:{i}" for i in (1, 2, 3)]
    assert from_file["predicted_class"].tolist() == csv["predicted_class"].tolist()[:3]
    one = run.predict("Saya suka tempat ini, makanannya enak sekali!")
    assert len(one) == 1 and one["predicted_class"].iloc[0] in run.classes
    assert run.vocabulary.tokens[:2] == ["<pad>", "<unk>"]


def test_predict_cli_names_a_missing_text_column(text_run, tmp_path):
    run, _, _ = text_run
    other = tmp_path / "other.csv"
    other.write_text("kalimat\nenak sekali\n", encoding="utf-8")
    proc = subprocess.run(
        [_console("runner-predict"), str(run), str(other), "--out", str(tmp_path / "p.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "has no column 'text'" in proc.stderr and "--text-column" in proc.stderr
    assert "Traceback" not in proc.stderr
    out = tmp_path / "p.csv"
    assert predict_main([str(run), str(other), "--text-column", "kalimat", "--out", str(out)]) == 0
    assert pd.read_csv(out)["text"].tolist() == ["enak sekali"]


def test_onnx_export_of_a_bilstm_is_clean_and_passes_its_check(text_run, tmp_path):
    """The recurrent family goes through the TorchScript-based exporter (torch.export cannot
    trace packed sequences): no "export failed" wall, nothing on stderr, the check passes."""
    pytest.importorskip("onnxruntime")
    run, _, _ = text_run
    out = tmp_path / "model.onnx"
    proc = subprocess.run(
        [_console("runner-export"), str(run), "--format", "onnx", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    check = json.loads(Path(f"{out}.check.json").read_text())
    assert check["passed"] and check["argmax_agreement"] == 1.0
    assert check["inputs"] == "test split of nusax_senti" and check["samples"] == 45
