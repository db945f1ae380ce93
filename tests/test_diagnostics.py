"""Diagnostics: the recorder's tables from real short trainings, each rule on the numbers
that must (and must not) raise it, advice that fits the config, the verdict, the
sweep-level degradation rule, the rule registry (a rule registered from this file alone)
and the interpretability path. Whole scenarios, as a user runs them:
tests/test_diagnosis_scenarios.py."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import MISSING
from sklearn.metrics import auc, precision_recall_fscore_support, roc_auc_score

from runner import build, interpret, zoo
from runner.data.base import DataBundle, Split
from runner.diagnostics import build_callbacks, registry, sweep_diagnoses
from runner.diagnostics.advice import Change, Settings, advise
from runner.diagnostics.finding import diagnosis
from runner.diagnostics.registry import RunContext, diagnose
from runner.diagnostics.rules.gradients import gradients
from runner.diagnostics.rules.weak_class import weak_class
from runner.diagnostics.verdict import rank, verdict
from runner.errors import ConfigError
from runner.evaluate import confident_errors, evaluate_logits, roc_curves
from runner.rundir import RunDir
from runner.runtime import seed_everything
from runner.train import extra_callbacks, finish, train
from tests.conftest import ROOT, compose_cfg

# Rule tests need the recorder and the rules, not the figures.
LEAN = [
    "diagnostics.figures=false",
    "diagnostics.evaluation=false",
    "diagnostics.interpret.enabled=false",
    "trainer.save=none",
]
SMALL = ["model.filters=[16,32]", "model.fc_neurons=[64]"]
# runner.train.train's sizes for a seconds-long real run (tests/test_train.py).
SMOKE = [
    "dataset=synthetic",
    "dataset.num_samples=160",
    "dataset.image_size=16",
    "model.filters=[8,16]",
    "model.fc_neurons=[32]",
    "trainer.batch_size=32",
]
FINDING_KEYS = {"code", "severity", "message", "evidence", "advice", "fix", "see"}


def fit(cfg, data: DataBundle | None = None, patch=None) -> dict:
    """Build and run the real loop, then ``finish`` (as ``train`` does), optionally on
    hand-made data or with a modified model."""
    seed_everything(cfg.trainer.seed, False)
    data = data if data is not None else build.build_data(cfg)
    model = build.build_model(cfg, data)
    if patch is not None:
        patch(model)
    run = RunDir(cfg.run_dir)
    run.start()
    extra = extra_callbacks(cfg, run, data)
    built = build.build_run(cfg, data, model, torch.device("cpu"), run, extra)
    return finish(cfg, run, built, data, built.loop.fit())


def codes(summary: dict) -> set[str]:
    return {d["code"] for d in summary["diagnoses"] if d["severity"] != "info"}


# ----------------------------------------------------------------------------- real runs
def test_recorded_tables_of_a_short_digits_run(tmp_path):
    cfg = compose_cfg(["trainer.max_epochs=4", *SMALL, *LEAN], tmp_path)
    summary = fit(cfg)
    assert summary["test_acc"] > 0.9
    assert codes(summary) <= {"still_improving"}, summary["diagnoses"]
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
    assert set(acts["kind"]) == {"ReLU"} and acts["saturated_share"].isna().all()
    assert set(pd.read_csv(d / "weight_hist.csv")["phase"]) == {"start", "end"}
    report = (tmp_path / "report.md").read_text()
    assert report.index("## Verdict") < report.index("**Outcome:**")


def test_recording_keeps_pandas_off_the_path_to_the_first_step():
    """Building the diagnostics callback and its first probe (everything before the first
    training step) imports neither pandas nor matplotlib, scikit-learn or captum."""
    code = (
        "import sys, tempfile, pathlib, torch\n"
        "from runner import build\n"
        "from runner.rundir import RunDir\n"
        "from runner.train import extra_callbacks\n"
        "from tests.conftest import compose_cfg\n"
        "run_dir = pathlib.Path(tempfile.mkdtemp())\n"
        "cfg = compose_cfg(['trainer.max_epochs=1'], run_dir)\n"
        "data = build.build_data(cfg)\n"
        "model = build.build_model(cfg, data)\n"
        "extra = extra_callbacks(cfg, RunDir(run_dir), data)\n"
        "cpu = torch.device('cpu')\n"
        "loop = build.build_run(cfg, data, model, cpu, RunDir(run_dir), extra).loop\n"
        "extra[0].on_fit_start(loop)\n"
        "loop.train_loader.limit_batches = 2\n"
        "loop.train_epoch(1)\n"
        "heavy = [m for m in ('pandas', 'sklearn', 'matplotlib', 'captum') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]


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
    vanishing = found["vanishing_gradients"]
    assert vanishing["evidence"]["ratio"] < 1e-3
    assert "`model.activation=sigmoid`" in vanishing["message"]  # the setting at fault
    assert vanishing["fix"] == "model.activation=relu"
    assert "model.batch_norm=true" in vanishing["advice"]
    acts = pd.read_csv(tmp_path / "diagnostics/activations.csv")
    assert acts[acts["kind"] == "Sigmoid"]["saturated_share"].between(0, 1).all()


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
    assert "model.batch_norm=true" in dead[0]["advice"]  # it is off in this config
    acts = pd.read_csv(tmp_path / "diagnostics/activations.csv")
    assert (acts["dead_share"] == 1.0).all()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["diagnoses"] == summary["diagnoses"]
    assert saved["verdict"]["trained_well"] == "no"
    for d in saved["diagnoses"]:
        assert set(d) == FINDING_KEYS
        assert d["severity"] in ("info", "warning", "error")
        assert all(isinstance(v, (int, float)) or v is None for v in d["evidence"].values())
    assert "What to try next" in (tmp_path / "report.md").read_text()


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
    per_class = ("weak_class", "never_predicted")
    weak = [d for d in summary["diagnoses"] if d["code"] in per_class and d["severity"] != "info"]
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
    found = {d["code"]: d for d in summary["diagnoses"]}
    assert {"diverged", "exploding_gradients", "learning_rate_high"} <= set(found)
    assert summary["diagnoses"][0]["code"] == "diverged"  # ranked first
    assert found["diverged"]["fix"] == "optimizer.lr=0.05"  # SGD's usual lr, named
    assert "`optimizer.lr=1000`" in found["diverged"]["message"]
    assert "trainer.precision" not in found["diverged"]["advice"]  # 32 already
    report = (tmp_path / "report.md").read_text()
    assert "Try a lower" not in report  # the stop reason's generic advice gives way


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


def conf():
    """The diagnostics values of ``conf/diagnostics/default.yaml``."""
    return registry.default_conf()


SUMMARY = {"classes": list("abcdefghij"), "status": "completed", "monitor": "val_loss"}


def found(hist, summary=SUMMARY, config=None, **context) -> dict[str, dict]:
    context = RunContext(hist, dict(summary), config=config or {}, **context)
    return {d["code"]: d for d in diagnose(conf(), context)}


FIT = {"chance_level", "underfitting", "plateau", "overfitting", "generalisation_gap"}


def fit_codes(by_code: dict) -> set[str]:
    return set(by_code) & FIT


def test_fit_decides_one_verdict_from_the_curves():
    gap = history([0.7, 0.9, 0.98, 0.99], [0.6, 0.62, 0.62, 0.62])
    assert fit_codes(found(gap)) == {"generalisation_gap"}
    rising = history(
        [0.9, 0.95, 0.97, 0.98, 0.99, 0.99],
        [0.94, 0.95, 0.95, 0.95, 0.95, 0.95],
        val_loss=[0.3, 0.2, 0.22, 0.26, 0.3, 0.35],
    )
    (mild,) = [d for d in found(rising).values() if d["code"] in FIT]
    assert (mild["code"], mild["severity"]) == ("overfitting", "info")  # a 4-point gap
    stuck = history([0.12] * 6, [0.11] * 6, train_loss=[2.3, 2.301, 2.299, 2.3, 2.3, 2.3])
    assert fit_codes(found(stuck)) == {"underfitting"}  # not also plateau: one decision
    flat = history([0.8] * 6, [0.78] * 6, train_loss=[0.6, 0.601, 0.6, 0.599, 0.6, 0.6])
    assert fit_codes(found(flat)) == {"plateau"}
    assert fit_codes(found(flat.assign(lr=np.linspace(1e-3, 1e-5, 6)))) == set()  # lr moving
    # the BiLSTM case: poor on train and worse on validation is underfitting, not both
    both = history([0.4, 0.5, 0.55], [0.3, 0.3, 0.32], val_loss=[1.1, 1.09, 1.1])
    three = {**SUMMARY, "classes": ["neg", "neu", "pos"]}
    assert fit_codes(found(both, three)) == {"underfitting"}
    healthy = history([0.8, 0.95, 0.98], [0.85, 0.95, 0.97])
    assert fit_codes(found(healthy)) == set()
    off = conf()
    off.fit.enabled = False  # a section's switch skips its rule
    assert fit_codes({d["code"]: d for d in diagnose(off, RunContext(stuck, SUMMARY))}) == set()
    off = conf()
    off.enabled = False  # the group's switch skips them all
    assert diagnose(off, RunContext(stuck, SUMMARY)) == []


def test_chance_level_is_judged_against_the_majority_rate():
    counts = {"train": [60] * 10, "val": [10] * 10, "test": [27] * 9 + [30]}
    summary = {**SUMMARY, "test_acc": 0.12}
    hist = history([0.1, 0.11, 0.11], [0.1, 0.1, 0.1], train_loss=[2.31, 2.3, 2.3])
    config = {"optimizer": {"_target_": "torch.optim.Adam", "lr": 1e-6}}
    result = found(hist, summary, config, class_counts=counts)
    chance = result["chance_level"]
    assert chance["severity"] == "error" and "underfitting" not in result
    assert chance["evidence"]["majority_rate"] == pytest.approx(30 / 273)
    assert "`optimizer.lr=1e-6` is 1,000× below" in chance["message"]  # the setting at fault
    assert chance["fix"] == "optimizer.lr=0.001"
    better = found(hist, {**summary, "test_acc": 0.5}, config, class_counts=counts)
    assert "chance_level" not in better


def test_still_improving_needs_the_best_epoch_last_and_a_real_trend():
    rising = history([0.8, 0.9, 0.95], [0.8, 0.9, 0.94], val_loss=[0.9, 0.5, 0.3])
    config = {"trainer": {"max_epochs": 3}, "scheduler": {"name": "cosine", "T_max": 0}}
    finding = found(rising, config=config)["still_improving"]
    assert finding["severity"] == "warning" and finding["fix"] == "trainer.max_epochs=6"
    assert "cosine schedule stretches" in finding["advice"]
    early = {**SUMMARY, "status": "early_stopped"}
    assert "still_improving" not in found(rising, early)
    flat = history([0.8, 0.9, 0.95], [0.8, 0.9, 0.94], val_loss=[0.9, 0.3, 0.299])
    assert "still_improving" not in found(flat)
    by_acc = {**SUMMARY, "monitor": "val_acc"}
    assert found(rising, by_acc)["still_improving"]["evidence"]["improvement"] == pytest.approx(
        (0.94 - 0.8) / 0.2
    )


def steps_table(loss, lr) -> pd.DataFrame:
    n = len(loss)
    return pd.DataFrame(
        {"step": range(1, n + 1), "epoch": 1, "lr": lr, "loss": loss, "grad_norm": np.nan}
    )


def test_learning_rate_needs_an_extreme_value_and_the_loss_curve():
    adam = {"optimizer": {"_target_": "torch.optim.Adam", "lr": 1e-6}}
    flat = steps_table(np.full(40, 2.3), 1e-6)
    context = {"steps": flat}
    low = found(history([0.1] * 2, [0.1] * 2), config=adam, **context)["learning_rate_low"]
    assert low["fix"] == "optimizer.lr=0.001" and "1,000× below" in low["message"]
    falling = steps_table(np.linspace(2.3, 0.5, 40), 1e-6)  # it learns: no finding
    assert "learning_rate_low" not in found(
        history([0.9] * 2, [0.9] * 2), config=adam, steps=falling
    )
    usual = {"optimizer": {"_target_": "torch.optim.Adam", "lr": 1e-3}}
    assert not any(
        c.startswith("learning_rate")
        for c in found(
            history([0.1] * 2, [0.1] * 2), config=usual, steps=steps_table(np.full(40, 2.3), 1e-3)
        )
    )
    sgd = {"optimizer": {"_target_": "torch.optim.SGD", "lr": 5.0}, "trainer": {"grad_clip": 0.0}}
    rising = steps_table(np.linspace(2.3, 2.6, 40), 5.0)
    high = found(history([0.1] * 2, [0.1] * 2), config=sgd, steps=rising)["learning_rate_high"]
    assert high["fix"] == "optimizer.lr=0.05" and "trainer.grad_clip=1" in high["advice"]


def test_gradient_rules_from_recorded_tables():
    c = conf().gradients
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

    def run(table, steps=None, precision="32"):
        context = RunContext(gradients=table, steps=steps, summary={"precision": precision})
        return gradients(context, c)

    (vanish,) = run(grads)
    assert vanish["code"] == "vanishing_gradients"
    flipped = grads.assign(grad_rms=grads["grad_rms"].to_numpy()[::-1].copy())
    assert run(flipped)[0]["code"] == "exploding_gradients"
    steps = pd.DataFrame({"step": [1, 2, 3], "grad_norm": [1.0, 5e3, np.nan]})
    flat = grads.assign(grad_rms=1e-3)
    (big,) = run(flat, steps)
    assert big["code"] == "exploding_gradients" and big["evidence"]["max_grad_norm"] == 5e3
    inf_steps = pd.DataFrame({"step": [1, 2], "grad_norm": [1.0, np.inf]})
    assert run(flat, inf_steps, precision="16-mixed") == []
    assert run(flat, inf_steps, precision="32")[0]["severity"] == "error"


def report_table(f1, auc_, recall, precision, support=30) -> pd.DataFrame:
    names = list("abcd")
    return pd.DataFrame(
        {
            "class": [*names, "macro avg"],
            "precision": [*precision, 0.8],
            "recall": [*recall, 0.8],
            "f1": [*f1, 0.8],
            "support": [support] * 4 + [4 * support],
            "auc": [*auc_, 0.85],
        }
    )


def test_weak_class_decides_never_predicted_too_rarely_or_too_often_once():
    c = conf().weak_class
    table = report_table(
        [0.9, 0.88, 0.91, 0.45], [0.95, 0.93, 0.96, 0.55], [0.9] * 3 + [0.4], [0.9] * 3 + [0.5]
    )
    (weak,) = weak_class(RunContext(report=table), c)
    assert weak["severity"] == "warning" and "'d'" in weak["message"]
    fine = table.assign(auc=[0.95, 0.93, 0.96, 0.85, 0.9], f1=0.9)
    assert weak_class(RunContext(report=fine), c) == []
    assert RunContext(report=table).num_classes == 4  # the average rows are no class
    # recall and precision both 0, but never predicted: not "too often"
    never = report_table(
        [0.9, 0.9, 0.9, 0.0], [0.95, 0.95, 0.95, 0.84], [0.9, 0.9, 0.9, 0.0], [0.7, 0.7, 0.7, 0.0]
    )
    confusion = np.diag([27, 27, 27, 0])
    confusion[3, 0] = 30
    summary = {"classes": list("abcd")}
    counts = {"train": [64, 64, 64, 64]}
    context = RunContext(report=never, confusion=confusion, summary=summary, class_counts=counts)
    (finding,) = weak_class(context, c)
    assert (
        finding["code"] == "never_predicted"
        and "(most went to 'a': 30 of 30)" in finding["message"]
    )
    assert "class_weights" not in finding["advice"]  # balanced classes: no class weights
    weighted = RunContext(
        report=never,
        confusion=confusion,
        summary=summary,
        class_counts=counts,
        config={"trainer": {"class_weights": [1, 1, 1, 0]}},
    )
    (finding,) = weak_class(weighted, c)
    assert "gives it a weight of 0" in finding["message"]
    assert finding["fix"] == "trainer.class_weights=balanced"
    often = report_table(
        [0.9, 0.9, 0.9, 0.5], [0.95, 0.95, 0.95, 0.93], [0.9, 0.9, 0.9, 0.95], [0.9, 0.9, 0.9, 0.34]
    )
    (finding,) = weak_class(RunContext(report=often), c)
    assert "predicted too often" in finding["message"] and finding["severity"] == "info"
    # a model at chance: one class always predicted is not "weaker" than the rest
    chance = RunContext(
        report=never, summary={**summary, "test_acc": 0.25}, class_counts={"test": [30] * 4}
    )
    assert weak_class(chance, c) == []


def test_imbalance_with_and_without_class_weights():
    counts = {"train": [150, 140, 45, 100]}
    summary = {"classes": ["a", "b", "c", "d"]}
    recall = report_table([0.9] * 4, [0.9] * 4, [0.9, 0.9, 0.3, 0.9], [0.9] * 4)
    plain = found(
        history([0.9] * 3, [0.9] * 3),
        summary,
        {"trainer": {"class_weights": None}},
        class_counts=counts,
        report=recall,
    )
    finding = plain["imbalance"]
    assert finding["severity"] == "warning" and finding["fix"] == "trainer.class_weights=balanced"
    assert "'a' has 150 images, 'c' 45 (3.3×)" in finding["message"]
    balanced = {"trainer": {"class_weights": "balanced"}}
    good = report_table([0.9] * 4, [0.9] * 4, [0.9] * 4, [0.9] * 4)
    note = found(
        history([0.9] * 3, [0.9] * 3), summary, balanced, class_counts=counts, report=good
    )["imbalance"]
    assert note["severity"] == "info" and "class_weights=balanced" not in note["advice"]
    even = {"train": [64] * 4}
    assert "imbalance" not in found(history([0.9] * 3, [0.9] * 3), summary, class_counts=even)


def test_duplicates_across_splits():
    pairs = pd.DataFrame(
        {
            "hash": ["h1", "h2"],
            "split_a": ["train", "train"],
            "name_a": ["x.jpg", "y.jpg"],
            "split_b": ["val", "test"],
            "name_b": ["x2.jpg", "y2.jpg"],
        }
    )
    counts = {"train": [64] * 4, "val": [8] * 4, "test": [8] * 4}
    finding = found(
        history([0.9] * 3, [0.9] * 3),
        {"classes": list("abcd")},
        class_counts=counts,
        duplicates=pairs,
    )["duplicates"]
    assert finding["severity"] == "warning" and finding["evidence"]["share_test"] == pytest.approx(
        1 / 32
    )
    assert "x.jpg = x2.jpg" in finding["message"]
    none = pairs.iloc[:0]
    assert "duplicates" not in found(
        history([0.9] * 3, [0.9] * 3),
        {"classes": list("abcd")},
        class_counts=counts,
        duplicates=none,
    )


# ----------------------------------------------------------------------------- advice
def test_advice_never_repeats_what_is_set_or_names_a_missing_key():
    resnet = Settings(
        {
            "model": {"family": "resnet", "activation": "relu"},
            "optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 5e-4},
            "dataset": {"augment": {"hflip": True, "crop_padding": 0}},
            "trainer": {"precision": "32", "grad_clip": 0.0},
        }
    )
    items = [
        Change("model.dropout", 0.5, "", "up"),  # no such key for a ResNet
        Change("optimizer.weight_decay", 1e-4, "", "up"),  # already above
        Change("dataset.augment.hflip", True),  # already on
        Change("trainer.precision", "32"),  # already set
        Change("trainer.grad_clip", 1.0),
        "collect more images",
    ]
    text, fix = advise(resnet, items)
    assert text == "`trainer.grad_clip=1`; collect more images."
    assert fix == "trainer.grad_clip=1"
    assert resnet.augmentations() == ["horizontal flips"] and resnet.optimizer_name == "AdamW"
    assert advise(resnet, [Change("model.dropout", 0.5)]) == ("", None)


def test_verdict_ranks_causes_before_symptoms_and_says_so():
    def f(code, severity, fix=None):
        return diagnosis(code, severity, code, {}, "", fix=fix, see=["curves.png"])

    findings = [
        f("still_improving", "info", "trainer.max_epochs=6"),
        f("underfitting", "warning"),
        f("learning_rate_low", "warning", "optimizer.lr=0.001"),
    ]
    assert [d["code"] for d in rank(findings)] == [
        "learning_rate_low",
        "underfitting",
        "still_improving",
    ]
    v = verdict(findings, {"test_acc": 0.4, "status": "completed"}, None)
    assert v["trained_well"] == "partly" and v["next"] == "optimizer.lr=0.001"
    assert "and 1 more problem below" in v["headline"]
    calm = verdict([findings[0]], {"test_acc": 0.98, "status": "completed"}, None)
    assert calm["trained_well"] == "yes" and calm["next"] == "trainer.max_epochs=6"
    assert verdict([], {"test_acc": 0.98, "status": "completed"}, None)["next"] is None


# ----------------------------------------------------------------------------- sweeps
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
    sweep = sweep_diagnoses(runs)
    pairs = {
        (d["code"], tuple(sorted(k for k in d["evidence"] if k.startswith("train_acc["))))
        for d in sweep
    }
    assert pairs == {
        ("degradation", ("train_acc[plain34]", "train_acc[resnet34]")),  # same depth, residual
        ("degradation", ("train_acc[plain18]", "train_acc[plain34]")),  # deeper plain is worse
    }
    assert all(d["severity"] == "warning" and d["advice"] for d in sweep)
    assert sweep_diagnoses([run("plain18", [0.82]), run("resnet18", [0.84])]) == []
    assert sweep_diagnoses([run("custom_cnn", [0.5]), run("resnet18", [0.9])]) == []


# ----------------------------------------------------------------------------- config
def test_config_group_and_errors(tmp_path):
    cfg = compose_cfg([], tmp_path)
    assert cfg.diagnostics.enabled and cfg.diagnostics.interval == 10
    assert cfg.diagnostics == conf()  # the composed group is default.yaml, nothing else
    data = build.build_data(cfg)
    assert len(build_callbacks(cfg, tmp_path, data)) == 1
    assert build_callbacks(compose_cfg(["diagnostics=off"], tmp_path), tmp_path, data) == []
    for bad in ("interval=-1", "roc_table_auc=1.5", "interpret.min_map_size=0"):
        with pytest.raises(ConfigError, match=f"diagnostics.{bad.split('=')[0]}"):
            build_callbacks(compose_cfg([f"diagnostics.{bad}"], tmp_path), tmp_path, data)
    with pytest.raises(ConfigError, match="diagnostics.gradients.edge_layers"):  # a rule's check
        cfg = compose_cfg(["diagnostics.gradients.edge_layers=0.9"], tmp_path)
        build_callbacks(cfg, tmp_path, data)
    with pytest.raises(Exception, match="intervl"):
        compose_cfg(["diagnostics.intervl=3"], tmp_path)
    with pytest.raises(Exception, match="acc_gapp"):  # rule sections are typed too
        compose_cfg(["diagnostics.fit.acc_gapp=3"], tmp_path)


# ----------------------------------------------------------------------------- registry
@dataclass
class ShoutConf:
    """Thresholds of a rule that lives only in this file: its defaults are its values."""

    enabled: bool = True
    word: str = "hello"
    min_epochs: int = 1


def shout(context: RunContext, c: ShoutConf) -> list[dict]:
    """Reads the history, the summary, the config and its own thresholds."""
    if len(context.history) < c.min_epochs:
        return []
    model = context.config["model"]["name"]
    message = f"Shout: {c.word} from {model} after {len(context.history)} epochs."
    evidence = {"epochs": len(context.history), "classes": context.num_classes}
    return [diagnosis("shout", "warning", message, evidence, "Nothing to do.")]


def whisper(context: RunContext, c: None) -> list[dict]:
    """A rule without thresholds: it gets conf=None."""
    assert c is None
    status = context.summary["status"]
    return [diagnosis("whisper", "info", f"Whisper: status {status}.", {}, "")]


@dataclass
class NoValuesConf:
    enabled: bool = True
    limit: float = MISSING  # no default and no YAML section


@pytest.fixture
def temporary_rules():
    """Register rules from this file; unregister them afterwards (the registry is global)."""
    names = []

    def register(name, fn, thresholds=None, **kwargs):
        names.append(name)
        return registry.register_rule(name, fn, thresholds, **kwargs)

    yield register
    for name in names:
        registry.unregister_rule(name)


def test_a_rule_registered_from_a_test_shows_in_a_real_run(tmp_path, temporary_rules):
    temporary_rules("shout", shout, ShoutConf)
    temporary_rules("whisper", whisper)
    overrides = [*SMOKE, "trainer.max_epochs=2", "diagnostics.shout.word=bonjour", *LEAN]
    cfg = compose_cfg(overrides, tmp_path)
    assert cfg.diagnostics.shout == {"enabled": True, "word": "bonjour", "min_epochs": 1}
    summary = train(cfg)
    saved = json.loads((tmp_path / "summary.json").read_text())
    by_code = {d["code"]: d for d in saved["diagnoses"]}
    assert {"shout", "whisper"} <= set(by_code), saved["diagnoses"]
    assert by_code["shout"]["message"] == "Shout: bonjour from custom_cnn after 2 epochs."
    assert by_code["shout"]["evidence"] == {"epochs": 2, "classes": 4}
    assert by_code["whisper"]["message"] == f"Whisper: status {summary['status']}."
    report = (tmp_path / "report.md").read_text()
    assert "Shout: bonjour from custom_cnn after 2 epochs." in report
    assert "Whisper: status" in report

    registry.unregister_rule("shout")  # a config that has its section, the rule gone: fine
    context = RunContext(summary={"status": "completed"})
    assert [d["code"] for d in diagnose(cfg.diagnostics, context)] == ["whisper"]


def test_rule_sections_resolve_from_yaml_or_dataclass(tmp_path, temporary_rules):
    temporary_rules("shout", shout, ShoutConf)
    entry = registry.RULES.get("shout")
    defaults = {"enabled": True, "word": "hello", "min_epochs": 1}
    for no_section in ({"enabled": True}, None):  # e.g. a config stored before the rule existed
        assert registry.rule_conf(entry, no_section) == (True, defaults)
    yaml = {"shout": {"word": "hi"}}  # a section: its values, the dataclass's for the rest
    assert registry.rule_conf(entry, yaml) == (True, {**defaults, "word": "hi"})
    assert not registry.rule_conf(entry, {"shout": {"enabled": False}})[0]
    temporary_rules("no_values", lambda context, c: [], NoValuesConf)
    cfg = compose_cfg([], tmp_path)
    with pytest.raises(ConfigError, match="diagnostics.no_values.limit"):  # before training
        build_callbacks(cfg, tmp_path, build.build_data(cfg))
    cfg = compose_cfg(["diagnostics.no_values.limit=0.5"], tmp_path)
    assert registry.rule_conf(registry.RULES.get("no_values"), cfg.diagnostics)[1].limit == 0.5
    with pytest.raises(ValueError, match="reserved"):
        registry.register_rule("interval", shout, ShoutConf)
    with pytest.raises(ConfigError, match="did you mean shout"):
        registry.RULES.get("shuot")


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
    words = interpret.describe_selection(chosen)
    assert (
        words
        == "4 test images: a correct and a wrong one of class 'a'; a correct one of 'b' and 'c'"
    )


def test_resnet_feature_maps_saliency_and_gradcam_skip_small_maps(tmp_path):
    pytest.importorskip("captum")
    from captum.attr import Saliency

    from runner.models.resnet import ResNet

    torch.manual_seed(0)
    model = ResNet(num_classes=3, in_channels=3, image_size=32, depth=18, width=8).eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    inputs = images.float() / 255
    proba = torch.softmax(model(inputs), 1).detach().numpy()
    chosen = interpret.select_images(proba, np.array([0, 1, 2]), ["a", "b", "c"], cap=3)
    stages_of = zoo.MODELS.get("resnet").feature_stages  # the model registry's stages
    assert [n for n, _ in stages_of(model)] == ["act1", "layer1", "layer2", "layer3", "layer4"]
    order = torch.as_tensor(chosen["index"].tolist())
    done = interpret.explain(
        model, stages_of, images[order], inputs[order], chosen, ["a", "b", "c"], tmp_path
    )
    assert {p.name for p in done.figures} == {"feature_maps.png", "saliency_gradcam.png"}
    assert done.stages == ["act1", "layer1", "layer2", "layer3"]  # 32, 32, 16, 8 px
    assert done.skipped == {"layer4": "4×4"} and done.gradcam == "layer3"
    attr = pd.read_csv(tmp_path / "attributions.csv")
    assert set(attr["layer"]) == {"input", "layer3"}
    maps = np.load(tmp_path / "attributions.npz")
    assert maps["saliency"].shape == maps["gradcam"].shape == (3, 32, 32)
    assert np.isfinite(maps["gradcam"]).all() and maps["saliency"].max() > 0
    targets = torch.as_tensor([["a", "b", "c"].index(p) for p in chosen["pred"]])
    reference = Saliency(interpret._no_inplace(model)).attribute(
        inputs[order].clone().requires_grad_(True), target=targets, abs=True
    )
    np.testing.assert_allclose(maps["saliency"], reference.amax(1).numpy(), rtol=1e-4, atol=1e-7)
    assert all(getattr(m, "inplace", True) for m in model.modules() if hasattr(m, "inplace"))
    small = interpret.explain(  # every stage below the minimum: saliency only
        model,
        stages_of,
        images[order],
        inputs[order],
        chosen,
        ["a", "b", "c"],
        tmp_path / "s",
        min_map_size=64,
    )
    assert [p.name for p in small.figures] == ["saliency.png"] and small.gradcam is None
