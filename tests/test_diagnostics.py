"""Diagnostics: real short trainings that must (and must not) raise each diagnosis, metric
equality with scikit-learn, the sweep-level degradation rule and the interpretability path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import auc, precision_recall_fscore_support, roc_auc_score

from runner import build, interpret
from runner.callbacks import MetricsCSV
from runner.data.base import DataBundle, Split
from runner.diagnostics import build_callbacks, rules, sweep_diagnoses
from runner.diagnostics.schema import DiagnosticsConf
from runner.engine import Trainer
from runner.errors import ConfigError
from runner.evaluate import confident_errors, evaluate_logits, roc_curves
from runner.runtime import seed_everything
from runner.train import extra_callbacks, finish
from tests.conftest import compose_cfg

# Rule tests need the recorder and the rules, not the figures.
LEAN = [
    "diagnostics.figures=false",
    "diagnostics.evaluation=false",
    "diagnostics.interpret.enabled=false",
    "trainer.checkpointing=false",
]
SMALL = ["model.filters=[16,32]", "model.fc_neurons=[64]"]


def fit(cfg, data: DataBundle | None = None, patch=None) -> dict:
    """Train through the real Trainer and ``finish`` (as ``train`` does), optionally on
    hand-made data or with a modified model."""
    seed_everything(cfg.trainer.seed, False)
    data = data if data is not None else build.build_data(cfg)
    model = build.build_model(cfg.model, data)
    if patch is not None:
        patch(model)
    run_dir = Path(cfg.run_dir)
    callbacks = [MetricsCSV(run_dir / "metrics.csv"), *extra_callbacks(cfg, run_dir)]
    trainer = Trainer(cfg, model, data, torch.device("cpu"), run_dir, callbacks)
    status = trainer.fit()
    return finish(trainer, status, {"params": sum(p.numel() for p in model.parameters())})


def codes(summary: dict) -> set[str]:
    return {d["code"] for d in summary["diagnoses"] if d["severity"] != "info"}


# ----------------------------------------------------------------------------- real runs
def test_healthy_digits_run_raises_nothing_and_writes_tables(tmp_path):
    cfg = compose_cfg(["trainer.max_epochs=4", *SMALL, *LEAN], tmp_path)
    summary = fit(cfg)
    assert summary["test_acc"] > 0.9
    assert summary["diagnoses"] == [], summary["diagnoses"]
    d = tmp_path / "diagnostics"
    grads = pd.read_csv(d / "gradients.csv")
    layers = ["features.0.conv", "features.1.conv", "head.0", "classifier"]
    assert list(grads.drop_duplicates("index")["layer"]) == layers
    steps = pd.read_csv(d / "steps.csv")
    per_epoch = steps["epoch"].value_counts()
    assert list(per_epoch.sort_index().index) == [1, 2, 3, 4] and per_epoch.nunique() == 1
    assert steps["step"].tolist() == list(range(1, len(steps) + 1))
    assert steps["grad_norm"].notna().sum() == len(steps) // 5  # 20 steps an epoch: 4 records
    acts = pd.read_csv(d / "activations.csv")
    assert sorted(acts["epoch"].unique()) == [0, 1, 2, 3, 4]  # 0 = before training
    assert set(acts["kind"]) == {"ReLU"}
    assert set(pd.read_csv(d / "weight_hist.csv")["phase"]) == {"start", "end"}
    report = (tmp_path / "report.md").read_text()
    assert "No problems detected" in report


def test_deep_sigmoid_network_has_vanishing_gradients(tmp_path):
    deep = [
        "model.activation=sigmoid",
        "model.batch_norm=false",
        "model.filters=[8,8,8]",
        "model.fc_neurons=[16,16,16,16,16,16]",
        "model.dropout=0",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=6",
        "diagnostics.interval=1",
    ]
    summary = fit(compose_cfg([*deep, *LEAN], tmp_path))
    found = {d["code"]: d for d in summary["diagnoses"]}
    assert "vanishing_gradients" in found, summary["diagnoses"]
    assert found["vanishing_gradients"]["evidence"]["ratio"] < 1e-3


def test_large_negative_biases_kill_relus(tmp_path):
    def negative_biases(model):
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m is not model.classifier:
                torch.nn.init.constant_(m.bias, -10.0)

    cfg = compose_cfg(
        [
            "model.batch_norm=false",
            *SMALL,
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=4",
            *LEAN,
        ],
        tmp_path,
    )
    summary = fit(cfg, patch=negative_biases)
    dead = [d for d in summary["diagnoses"] if d["code"] == "dead_relu"]
    assert dead and dead[0]["severity"] == "error", summary["diagnoses"]
    assert "already dead before training" in dead[0]["message"]
    acts = pd.read_csv(tmp_path / "diagnostics/activations.csv")
    assert (acts["dead_share"] == 1.0).all()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["diagnoses"] == summary["diagnoses"]
    for d in saved["diagnoses"]:
        assert set(d) == {"code", "severity", "message", "evidence", "advice"}
        assert d["severity"] in ("info", "warning", "error")
        assert all(isinstance(v, (int, float)) or v is None for v in d["evidence"].values())
    assert "What to try next" in (tmp_path / "report.md").read_text()


def test_many_epochs_on_a_tiny_subset_overfit(tmp_path):
    cfg = compose_cfg(
        [
            "dataset.subset=5",
            *SMALL,
            "model.dropout=0",
            "scheduler=none",
            "trainer.max_epochs=15",
            "trainer.early_stopping.enabled=false",
            *LEAN,
        ],
        tmp_path,
    )
    summary = fit(cfg)
    found = {d["code"]: d for d in summary["diagnoses"]}
    assert found.get("overfitting", {}).get("severity") == "warning", summary["diagnoses"]
    assert found["overfitting"]["evidence"]["acc_gap"] > 0.1


def scramble_class(data: DataBundle, target: int, seed: int = 0) -> DataBundle:
    """Give every image labelled ``target`` the pixels of a random image of another class."""
    g = torch.Generator().manual_seed(seed)
    splits = []
    for split in (data.train, data.val, data.test):
        x = split.x.clone()
        members = torch.nonzero(split.y == target).flatten()
        others = torch.nonzero(split.y != target).flatten()
        x[members] = split.x[others[torch.randint(len(others), (len(members),), generator=g)]]
        splits.append(Split(x, split.y))
    return DataBundle(
        data.name, data.classes, *splits, kind=data.kind, mean=data.mean, std=data.std
    )


def test_class_with_scrambled_images_is_weak(tmp_path):
    cfg = compose_cfg(["trainer.max_epochs=4", *SMALL, *LEAN], tmp_path)
    data = scramble_class(build.build_data(cfg), target=3)
    summary = fit(cfg, data=data)
    weak = [
        d for d in summary["diagnoses"] if d["code"] == "weak_class" and d["severity"] != "info"
    ]
    assert [d["message"].split("'")[1] for d in weak] == ["3"], summary["diagnoses"]
    assert weak[0]["evidence"]["auc"] < weak[0]["evidence"]["median_auc_others"] - 0.2


def test_huge_learning_rate_diverges_with_exploding_gradients(tmp_path):
    cfg = compose_cfg(
        [
            "model.batch_norm=false",
            "optimizer=sgd",
            "optimizer.lr=1000",
            "trainer.max_epochs=2",
            "diagnostics.interval=1",
            *LEAN,
        ],
        tmp_path,
    )
    summary = fit(cfg)
    assert summary["status"] == "diverged"
    assert {"diverged", "exploding_gradients"} <= codes(summary), summary["diagnoses"]
    assert summary["diagnoses"][0]["severity"] == "error"


def test_text_run_skips_image_figures(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(240) % 3
    x = torch.randint(2, 50, (240, 12), generator=g)
    x[:, 0] = y + 2  # the first token gives the class away
    splits = [Split(x[i::3], y[i::3]) for i in range(3)]
    data = DataBundle("toy_text", ["neg", "neu", "pos"], *splits, kind="text")
    data.extra_model_kwargs = {"vocab_size": 50, "pad_idx": 0}
    full = ["diagnostics.figures=true", "diagnostics.evaluation=true"]  # whatever conftest says
    cfg = compose_cfg(
        ["model=lstm", "trainer.max_epochs=2", "diagnostics.interval=1", *full], tmp_path
    )
    summary = fit(cfg, data=data)
    assert summary["status"] == "completed"
    assert (tmp_path / "eval/roc_curves.png").is_file()
    assert (tmp_path / "diagnostics/gradient_flow.png").is_file()
    assert not (tmp_path / "eval/misclassified.png").exists()
    assert not (tmp_path / "interpret").exists()
    report = (tmp_path / "report.md").read_text()
    assert "not produced" not in report  # no diagnostics step failed


# ----------------------------------------------------------------------------- metrics
def test_per_class_metrics_roc_and_errors_match_sklearn():
    rng = np.random.default_rng(3)
    classes = ["cat", "dog", "fish", "bird"]
    y = rng.integers(0, 4, 300)
    logits = torch.tensor(rng.normal(size=(300, 4)), dtype=torch.float32)
    logits[torch.arange(150), torch.as_tensor(y[:150])] += 2.5
    result = evaluate_logits(logits, torch.as_tensor(y), classes)
    proba = torch.softmax(logits, 1).numpy()
    pred = proba.argmax(1)
    table = result.report.set_index("class")
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    for i, name in enumerate(classes):
        assert table.loc[name, ["precision", "recall", "f1"]].tolist() == pytest.approx(
            [p[i], r[i], f[i]]
        )
        assert table.loc[name, "support"] == s[i]
        assert table.loc[name, "auc"] == pytest.approx(roc_auc_score(y == i, proba[:, i]))
    macro_auc = roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert table.loc["macro avg", "auc"] == pytest.approx(macro_auc)
    weighted_auc = roc_auc_score(y, proba, multi_class="ovr", average="weighted")
    assert table.loc["weighted avg", "auc"] == pytest.approx(weighted_auc)
    roc = roc_curves(y, proba, classes)
    for _name, part in roc.groupby("class"):
        assert auc(part["fpr"], part["tpr"]) == pytest.approx(part["auc"].iloc[0])
    micro = roc_auc_score(np.eye(4)[y].ravel(), proba.ravel())
    assert roc[roc["class"] == "micro avg"]["auc"].iloc[0] == pytest.approx(micro)
    errors = confident_errors(proba, y, classes, 5)
    assert len(errors) == 5 and errors["confidence"].is_monotonic_decreasing
    assert all(pred[i] != y[i] for i in errors["index"])
    assert errors["confidence"].iloc[0] == pytest.approx(proba[pred != y].max(1).max())


# ----------------------------------------------------------------------------- rules
def history(train_acc, val_acc, train_loss=None, val_loss=None, lr=1e-3) -> pd.DataFrame:
    n = len(train_acc)
    return pd.DataFrame(
        {
            "epoch": range(1, n + 1),
            "train_acc": train_acc,
            "val_acc": val_acc,
            "train_loss": train_loss if train_loss is not None else np.linspace(1, 0.1, n),
            "val_loss": val_loss if val_loss is not None else np.linspace(1, 0.2, n),
            "lr": lr,
        }
    )


def test_curve_rules_fire_on_their_pattern_only():
    conf = DiagnosticsConf()
    summary = {"classes": list("abcdefghij"), "status": "completed"}
    overfit = history([0.7, 0.9, 0.98, 0.99], [0.6, 0.62, 0.62, 0.62])
    assert [d["code"] for d in rules.diagnose(conf, overfit, summary)] == ["overfitting"]
    rising = history(
        [0.9, 0.95, 0.97, 0.98, 0.99, 0.99],
        [0.94, 0.95, 0.95, 0.95, 0.95, 0.95],
        val_loss=[0.3, 0.2, 0.22, 0.26, 0.3, 0.35],
    )
    (mild,) = rules.diagnose(conf, rising, summary)
    assert (mild["code"], mild["severity"]) == ("overfitting", "info")
    stuck = history([0.12] * 6, [0.11] * 6, train_loss=[2.3, 2.301, 2.299, 2.3, 2.3, 2.3])
    assert {d["code"] for d in rules.diagnose(conf, stuck, summary)} == {"underfitting", "plateau"}
    cosine = stuck.assign(lr=np.linspace(1e-3, 1e-5, 6))  # lr moving: not a plateau
    assert {d["code"] for d in rules.diagnose(conf, cosine, summary)} == {"underfitting"}
    healthy = history([0.8, 0.95, 0.98], [0.85, 0.95, 0.97])
    assert rules.diagnose(conf, healthy, summary) == []


def test_gradient_rules_from_recorded_tables():
    c = DiagnosticsConf().gradients
    rows = [
        {
            "step": s,
            "epoch": 1,
            "layer": f"l{i}",
            "index": i,
            "numel": 10,
            "grad_norm": 0.0,
            "grad_rms": r,
        }
        for s in (10, 20)
        for i, r in enumerate([1e-9, 1e-7, 1e-5, 1e-3, 1e-2])
    ]
    grads = pd.DataFrame(rows)
    (vanish,) = rules.gradients_rule(c, grads, None)
    assert vanish["code"] == "vanishing_gradients"
    flipped = grads.assign(grad_rms=grads["grad_rms"].to_numpy()[::-1].copy())
    assert rules.gradients_rule(c, flipped, None)[0]["code"] == "exploding_gradients"
    steps = pd.DataFrame({"step": [1, 2, 3], "grad_norm": [1.0, 5e3, np.nan]})
    flat = grads.assign(grad_rms=1e-3)
    (big,) = rules.gradients_rule(c, flat, steps)
    assert big["code"] == "exploding_gradients" and big["evidence"]["max_grad_norm"] == 5e3
    inf_steps = pd.DataFrame({"step": [1, 2], "grad_norm": [1.0, np.inf]})
    assert rules.gradients_rule(c, flat, inf_steps, precision="16-mixed") == []
    assert rules.gradients_rule(c, flat, inf_steps, precision="32")[0]["severity"] == "error"


def test_weak_class_rule_needs_a_real_gap():
    table = pd.DataFrame(
        {
            "class": ["a", "b", "c", "d", "macro avg"],
            "precision": [0.9, 0.9, 0.9, 0.5, 0.8],
            "recall": [0.9, 0.9, 0.9, 0.4, 0.8],
            "f1": [0.9, 0.88, 0.91, 0.45, 0.8],
            "support": [30, 30, 30, 30, 120],
            "auc": [0.95, 0.93, 0.96, 0.55, 0.85],
        }
    )
    c = DiagnosticsConf().weak_class
    (weak,) = rules.weak_class(c, table)
    assert "'d'" in weak["message"] and weak["evidence"]["auc"] == 0.55
    assert rules.weak_class(c, table.assign(auc=[0.95, 0.93, 0.96, 0.85, 0.9], f1=0.9)) == []


def run(model: str, train_acc: list[float], status: str = "completed") -> dict:
    metrics = pd.DataFrame({"epoch": range(1, len(train_acc) + 1), "train_acc": train_acc})
    summary = {"status": status, "best_val_acc": train_acc[-1] - 0.05}
    return {"model": model, "summary": summary, "metrics": metrics}


def test_sweep_degradation_plain_vs_residual():
    runs = [
        run("plain34", [0.3, 0.5, 0.6027]),
        run("resnet34", [0.4, 0.7, 0.8409]),
        run("se_resnet34", [0.5, 0.8, 0.8905]),
        run("plain18", [0.5, 0.8, 0.82]),
        run("resnet18", [0.5, 0.8, 0.84]),
        run("plain50", [0.99], status="failed"),
    ]
    found = sweep_diagnoses(runs)
    pairs = {
        (d["code"], tuple(sorted(k for k in d["evidence"] if k.startswith("train_acc["))))
        for d in found
    }
    assert pairs == {
        ("degradation", ("train_acc[plain34]", "train_acc[resnet34]")),  # same depth, residual
        ("degradation", ("train_acc[plain18]", "train_acc[plain34]")),  # deeper plain is worse
    }
    assert all(d["severity"] == "warning" and d["advice"] for d in found)
    assert sweep_diagnoses([run("plain18", [0.82]), run("resnet18", [0.84])]) == []
    assert sweep_diagnoses([run("custom_cnn", [0.5]), run("resnet18", [0.9])]) == []


# ----------------------------------------------------------------------------- config
def test_config_group_and_errors(tmp_path):
    cfg = compose_cfg([], tmp_path)
    assert cfg.diagnostics.enabled and cfg.diagnostics.interval == 10
    assert len(build_callbacks(cfg, tmp_path)) == 1
    assert build_callbacks(compose_cfg(["diagnostics=off"], tmp_path), tmp_path) == []
    with pytest.raises(ConfigError, match="diagnostics.interval"):
        build_callbacks(compose_cfg(["diagnostics.interval=-1"], tmp_path), tmp_path)
    with pytest.raises(Exception, match="intervl"):
        compose_cfg(["diagnostics.intervl=3"], tmp_path)


# ----------------------------------------------------------------------------- interpret
def test_select_images_prefers_one_correct_and_one_wrong_per_class():
    y = np.array([0, 0, 0, 1, 1, 2, 2])
    proba = np.array(
        [
            [0.9, 0.05, 0.05],  # 0 correct, most confident
            [0.6, 0.2, 0.2],  # 0 correct
            [0.1, 0.8, 0.1],  # 0 wrong (→ 1)
            [0.2, 0.7, 0.1],  # 1 correct
            [0.1, 0.95, 0.05],  # 1 correct, most confident
            [0.1, 0.1, 0.8],  # 2 correct
            [0.3, 0.3, 0.4],  # 2 correct
        ]
    )
    chosen = interpret.select_images(proba, y, ["a", "b", "c"], cap=4)
    assert chosen["index"].tolist() == [0, 2, 4, 5]  # class a (has a mistake) first
    assert chosen["correct"].tolist() == [True, False, True, True]
    assert interpret.feature_map_slots(chosen, 2) == [0, 1]


def test_resnet_feature_maps_saliency_and_gradcam(tmp_path):
    pytest.importorskip("captum")
    from runner.models.resnet import ResNet

    torch.manual_seed(0)
    model = ResNet(num_classes=3, in_channels=3, image_size=32, depth=18, width=8).eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    inputs = images.float() / 255
    proba = torch.softmax(model(inputs), 1).detach().numpy()
    chosen = interpret.select_images(proba, np.array([0, 1, 2]), ["a", "b", "c"], cap=3)
    assert [n for n, _ in interpret.conv_stages(model)] == [
        "act1",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    order = torch.as_tensor(chosen["index"].tolist())
    written = interpret.explain(
        model, images[order], inputs[order], chosen, ["a", "b", "c"], tmp_path
    )
    assert {p.name for p in written} == {"feature_maps.png", "saliency_gradcam.png"}
    attr = pd.read_csv(tmp_path / "attributions.csv")
    assert set(attr["layer"]) == {"input", "layer4"}  # 4×4 maps: deepest usable stage
    maps = np.load(tmp_path / "attributions.npz")
    assert maps["saliency"].shape == maps["gradcam"].shape == (3, 32, 32)
    assert np.isfinite(maps["gradcam"]).all() and maps["saliency"].max() > 0
    assert all(getattr(m, "inplace", True) for m in model.modules() if hasattr(m, "inplace"))
