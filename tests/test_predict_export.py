"""runner-predict, runner-export and the notebook API on a real image-folder run.

The run is one epoch at 32 px on the Indonesian food photos in shared/data (or, when
they are absent, on a small folder of real PNG files written here).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import runner
from runner import build
from runner.export import export_run
from runner.predict import Predictor
from runner.predict import main as predict_main
from runner.train import train
from tests.conftest import SHARED_DATA, compose_cfg

FOOD = SHARED_DATA / "food_id"
TINY = [
    "model.filters=[8,16]",
    "model.fc_neurons=[32]",
    "trainer.max_epochs=1",
    "diagnostics=off",
    "dataset.image_size=32",
    "dataset.cache=false",
]


def _write_folder(root: Path) -> Path:
    """Three classes of 24 real PNG files each (coloured shapes on noise)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    folder = root / "shapes"
    for c, (name, colour) in enumerate(
        {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}.items()
    ):
        (folder / name).mkdir(parents=True)
        for i in range(24):
            arr = rng.integers(0, 80, (48, 40, 3), dtype=np.uint8)
            img = Image.fromarray(arr)
            x, y = rng.integers(2, 16, 2)
            ImageDraw.Draw(img).ellipse([x, y, x + 20 + c, y + 20], fill=colour)
            img.save(folder / name / f"{name}_{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A finished 1-epoch run on an image folder and the folder it read."""
    root = tmp_path_factory.mktemp("predict")
    if FOOD.is_dir():
        data = ["dataset=food", f"dataset.root={SHARED_DATA}"]
        folder = FOOD
    else:
        folder = _write_folder(root)
        data = ["dataset=imagefolder", f"dataset.path={folder}"]
    cfg = compose_cfg([*data, *TINY], root / "run")
    summary = train(cfg)
    return {"run_dir": Path(cfg.run_dir), "folder": folder, "cfg": cfg, "summary": summary}


def _test_files(run) -> list[Path]:
    data = build.build_data(run["cfg"])
    return [run["folder"] / name for name in data.test.names], data


def test_predict_cli_writes_one_row_per_image_and_skips_corrupt(image_run, tmp_path, capsys):
    files, _ = _test_files(image_run)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for f in files[:5]:
        shutil.copy(f, inbox / f.name)
    (inbox / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    (inbox / "notes.txt").write_text("not an image, ignored in folders")
    out = tmp_path / "preds.csv"
    args = [str(image_run["run_dir"]), str(inbox), str(files[5]), "--out", str(out)]
    assert predict_main([*args, "--top-k", "2", "--batch-size", "4"]) == 0
    table = pd.read_csv(out)
    assert len(table) == 6
    classes = image_run["summary"]["classes"]
    assert set(table["predicted_class"]) <= set(classes)
    assert {"file", "confidence", "top1_class", "top2_prob"} <= set(table.columns)
    assert "top3_class" not in table.columns
    assert (table["top1_prob"] >= table["top2_prob"]).all()
    assert table["confidence"].between(0, 1).all()
    assert table["true_class"].notna().sum() == 1  # only the file inside its class folder
    skipped = pd.read_csv(tmp_path / "preds_skipped.csv")
    assert skipped["file"].tolist() == [str(inbox / "broken.jpg")]
    assert "broken.jpg" in capsys.readouterr().err


def test_predict_on_files_equals_the_runs_own_preprocessing(image_run):
    """Decoding files in runner-predict gives the same inputs, so the same probabilities,
    as the dataset the run was trained and tested on."""
    files, data = _test_files(image_run)
    predictor = Predictor.from_run(image_run["run_dir"], device="cpu")
    from_files = predictor.predict_files(files, batch_size=8, top_k=1, progress=False)
    from_data = predictor.probabilities(data.test.x)
    assert from_files.skipped == []
    assert from_files.table["confidence"].to_numpy() == pytest.approx(
        from_data.max(1).values.numpy(), abs=1e-6
    )
    assert from_files.table["correct"].mean() == pytest.approx(image_run["summary"]["test_acc"])


def test_predict_without_any_readable_image_fails_cleanly(image_run, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = tmp_path / "p.csv"
    assert predict_main([str(image_run["run_dir"]), str(bad), "--out", str(out)]) == 1
    assert not out.exists()
    assert predict_main([str(tmp_path / "no_run"), str(bad)]) == 2
    assert "no run directory" in capsys.readouterr().err


def _reference(run_dir: Path, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    run = runner.load_run(run_dir)
    files, _ = _test_files({"cfg": run.config, "folder": _folder(run)})
    x = Predictor(run.model, run.preprocessing).pre.normalise(
        torch.stack([runner.predict.decode(f, run.preprocessing) for f in files[:n]])
    )
    with torch.inference_mode():
        return x, run.model(x)


def _folder(run) -> Path:
    from runner.data.imagefolder import resolve_folder

    return resolve_folder(run.config.dataset.root, run.config.dataset.path, run.config.dataset.name)


def test_torchscript_export_matches_pytorch(image_run):
    check = export_run(image_run["run_dir"], "torchscript")
    out = Path(check["model_file"])
    assert check["passed"] and check["max_abs_diff"] <= 1e-4
    assert check["inputs"].startswith("test split")
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["classes"] == image_run["summary"]["classes"]
    assert meta["image_size"] == [32, 32] and len(meta["mean"]) == len(meta["std"]) == 3
    assert json.loads(Path(f"{out}.check.json").read_text())["passed"] is True
    extra = {"preprocessing.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["preprocessing.json"])["mean"] == meta["mean"]
    x, expected = _reference(image_run["run_dir"])
    assert (loaded(x) - expected).abs().max().item() <= 1e-4


def test_onnx_export_matches_pytorch(image_run):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    check = export_run(image_run["run_dir"], "onnx")
    assert check["passed"] and check["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(check["model_file"], providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["preprocessing"])
    assert meta["classes"] == image_run["summary"]["classes"]
    x, expected = _reference(image_run["run_dir"], n=5)  # another batch size than the export
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    assert (got - expected).abs().max().item() <= 1e-4


def test_load_run_gives_summary_metrics_config_model_and_predict(image_run):
    run = runner.load_run(image_run["run_dir"])
    assert run.summary["status"] == "completed"
    assert list(run.metrics["epoch"]) == [1]
    assert run.config.dataset.image_size == 32
    assert isinstance(run.model, torch.nn.Module) and not run.model.training
    files, data = _test_files(image_run)
    table = run.predict(files[:3], top_k=1)
    assert len(table) == 3 and set(table["predicted_class"]) <= set(run.classes)
    from_tensor = run.predict(data.test.x[:3], top_k=1)
    assert from_tensor["confidence"].to_numpy() == pytest.approx(
        table["confidence"].to_numpy(), abs=1e-6
    )
    from PIL import Image

    with Image.open(files[0]) as img:
        assert run.predict(img)["predicted_class"].iloc[0] == table["predicted_class"].iloc[0]


def test_train_api_composes_overrides_like_the_cli(tmp_path):
    overrides = [
        "dataset=synthetic",
        "dataset.num_samples=96",
        "dataset.image_size=8",
        "model.filters=[4]",
        "model.fc_neurons=[8]",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "diagnostics=off",
    ]
    summary = runner.train(overrides, run_dir=tmp_path / "api_run")
    assert summary["status"] == "completed" and summary["run_dir"] == str(tmp_path / "api_run")
    run = runner.load_run(summary["run_dir"])
    assert run.config.dataset.num_samples == 96
    assert (run.path / ".hydra" / "overrides.yaml").exists()
    assert "epoch 1/1" in (run.path / "runner.log").read_text()
    import runner.train as train_module  # the submodule import must not break runner.train(...)

    assert callable(runner.train) and train_module.train is train


def test_predict_applies_the_runs_flip_tta(image_run):
    """A run evaluated with trainer.tta=flip is predicted the same way (the checkpoint's
    config says so), so runner-predict reproduces its test metrics."""
    import dataclasses

    from runner.checkpoint import Preprocessing, checkpoint_path, load

    ckpt = load(checkpoint_path(image_run["run_dir"]))
    assert Preprocessing.from_checkpoint(ckpt).tta == "none"
    ckpt["config"]["trainer"]["tta"] = "flip"
    pre = Preprocessing.from_checkpoint(ckpt)
    assert pre.tta == "flip" and "mirror" in pre.as_dict()["test_time_augmentation"]

    plain = Predictor.from_run(image_run["run_dir"], device="cpu")
    flip = Predictor(plain.model, dataclasses.replace(plain.pre, tta="flip"))
    _, data = _test_files(image_run)
    x = data.test.x[:8]
    with torch.inference_mode():
        z = plain.pre.normalise(x)
        want = torch.softmax((plain.model(z) + plain.model(z.flip(-1))) / 2, dim=1)
    torch.testing.assert_close(flip.probabilities(x), want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain.probabilities(x), want)
