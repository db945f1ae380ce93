"""Scenarios: real short runs, each a config anyone can rerun (``runner <overrides>``, the
command is in each scenario), that must produce their diagnosis — with advice that names the
setting at fault and never repeats one already set — and must not produce the listed wrong
ones. Figures are off (the rules read the recorded tables, not the pictures); the longer
scenarios are marked slow (``pytest -m slow tests/test_diagnosis_scenarios.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runner.train import train
from tests.conftest import SHARED_DATA, compose_cfg, run_cli

LEAN = [
    "diagnostics.figures=false",
    "diagnostics.interpret.enabled=false",
    "trainer.save=none",
]
FIT = {"chance_level", "underfitting", "plateau", "overfitting", "generalisation_gap"}
FISH = ["dataset=fish", f"dataset.root={SHARED_DATA}", "dataset.image_size=32"]


@dataclass
class Scenario:
    """``overrides``: the config; ``must``: codes that must be found (as a problem, i.e.
    warning or error, unless ``notes`` lists them); ``must_not``: codes that must not be
    found at any severity; ``check``: more assertions on the summary."""

    overrides: list[str]
    must: set[str]
    must_not: set[str]
    notes: set[str] = field(default_factory=set)
    check: Callable[[dict], None] | None = None
    slow: bool = False
    needs: Path | None = None


def by_code(summary: dict) -> dict[str, dict]:
    return {d["code"]: d for d in summary["diagnoses"]}


def _divergence(summary: dict) -> None:
    found = by_code(summary)
    assert summary["status"] == "diverged"
    assert summary["verdict"]["trained_well"] == "no"
    assert summary["verdict"]["next"] == "optimizer.lr=0.05"  # SGD's usual value
    assert "`optimizer.lr=1000` is 20,000× above" in found["diverged"]["message"]
    assert "trainer.precision" not in found["diverged"]["advice"]  # already 32


def _too_low_lr(summary: dict) -> None:
    found = by_code(summary)
    assert "`optimizer.lr=1e-6`" in found["chance_level"]["message"]
    assert summary["verdict"]["next"] == "optimizer.lr=0.001"


def _overfitting(summary: dict) -> None:
    found = by_code(summary)
    words = found["overfitting"]["message"]
    assert "only 200 training images" in words and "no augmentation" in words
    assert "early stopping is off" in words
    assert "trainer.early_stopping.enabled=true" in found["overfitting"]["advice"]


def _underfitting(summary: dict) -> None:
    found = by_code(summary)
    assert "`model.dropout=0.9`" in found["underfitting"]["message"]
    assert found["underfitting"]["fix"] == "model.dropout=0.3"


def _still_improving(summary: dict) -> None:
    assert summary["verdict"]["next"] == "trainer.max_epochs=6"


def _never_predicted(summary: dict) -> None:
    found = by_code(summary)
    assert "Class '3' was never predicted" in found["never_predicted"]["message"]
    assert "`trainer.class_weights` gives it a weight of 0" in found["never_predicted"]["message"]
    assert summary["verdict"]["next"] == "trainer.class_weights=balanced"


def _imbalanced(summary: dict) -> None:
    found = by_code(summary)["imbalance"]
    assert "'browntrout' has 153 images, 'burbot' 45" in found["message"]
    assert found["fix"] == "trainer.class_weights=balanced"


def _imbalanced_weighted(summary: dict) -> None:
    found = by_code(summary)["imbalance"]
    assert "`trainer.class_weights=balanced` compensates" in found["message"]
    assert "class_weights=balanced" not in found["advice"]  # already set: never advised


def _vanishing(summary: dict) -> None:
    found = by_code(summary)
    assert found["vanishing_gradients"]["fix"] == "model.activation=relu"
    assert summary["verdict"]["next"] == "model.activation=relu"


def _dead_relu(summary: dict) -> None:
    found = by_code(summary)["dead_relu"]
    assert "no BatchNorm" in found["message"]
    assert found["fix"] == "model.batch_norm=true"


def _healthy(summary: dict) -> None:
    assert summary["verdict"]["trained_well"] == "yes"
    assert summary["test_acc"] > 0.95


SCENARIOS = {
    "divergence": Scenario(
        [
            "model.batch_norm=false",
            "optimizer=sgd",
            "optimizer.lr=1000",
            "trainer.max_epochs=2",
            "diagnostics.interval=1",
        ],
        must={"diverged", "exploding_gradients", "learning_rate_high"},
        must_not={*FIT, "still_improving", "learning_rate_low"},
        check=_divergence,
    ),
    "too_low_lr": Scenario(
        ["optimizer.lr=1e-6", "trainer.max_epochs=3"],
        must={"chance_level", "learning_rate_low"},
        must_not={"underfitting", "overfitting", "generalisation_gap", "weak_class"}
        | {"never_predicted", "still_improving", "learning_rate_high"},
        check=_too_low_lr,
    ),
    "overfitting": Scenario(
        [
            "dataset.subset=20",
            "model.dropout=0",
            "scheduler=none",
            "trainer.max_epochs=40",
            "trainer.early_stopping.enabled=false",
        ],
        must={"overfitting"},
        must_not={"underfitting", "chance_level", "generalisation_gap", "plateau"},
        check=_overfitting,
        slow=True,
    ),
    "underfitting": Scenario(
        ["model.filters=[2]", "model.fc_neurons=[]", "model.dropout=0.9", "trainer.max_epochs=5"],
        must={"underfitting"},
        must_not={"overfitting", "generalisation_gap", "chance_level", "weak_class"},
        check=_underfitting,
    ),
    "still_improving": Scenario(
        ["trainer.max_epochs=3"],
        must={"still_improving"},
        must_not={*FIT, "weak_class", "never_predicted"},
        check=_still_improving,
    ),
    "never_predicted": Scenario(
        ["trainer.class_weights=[1,1,1,0,1,1,1,1,1,1]", "trainer.max_epochs=5"],
        must={"never_predicted"},
        must_not={"generalisation_gap", "chance_level", "weak_class"},
        check=_never_predicted,
    ),
    "imbalance": Scenario(
        [*FISH, "trainer.max_epochs=5"],
        must={"imbalance"},
        must_not={"chance_level"},
        check=_imbalanced,
        slow=True,
        needs=SHARED_DATA / "fish_egu2017",
    ),
    "imbalance_weighted": Scenario(
        [*FISH, "trainer.max_epochs=5", "trainer.class_weights=balanced"],
        must=set(),
        must_not={"chance_level"},
        notes={"imbalance"},
        check=_imbalanced_weighted,
        slow=True,
        needs=SHARED_DATA / "fish_egu2017",
    ),
    "vanishing_gradients": Scenario(
        [
            "model.activation=sigmoid",
            "model.batch_norm=false",
            "model.filters=[8,8,8]",
            "model.fc_neurons=[16,16,16,16,16,16]",
            "model.dropout=0",
            "trainer.max_epochs=3",
        ],
        must={"vanishing_gradients"},
        must_not={"dead_relu", "exploding_gradients", "overfitting", "generalisation_gap"},
        check=_vanishing,
    ),
    "dead_relu": Scenario(
        ["model.batch_norm=false", "optimizer=sgd", "optimizer.lr=0.3", "trainer.max_epochs=3"],
        must={"dead_relu"},
        must_not={"overfitting", "generalisation_gap", "exploding_gradients", "diverged"},
        check=_dead_relu,
    ),
    "healthy": Scenario(
        ["trainer.max_epochs=10"],
        must=set(),
        must_not=set(),
        check=_healthy,
        slow=True,
    ),
}


def _params():
    for name, s in SCENARIOS.items():
        marks = [pytest.mark.slow] if s.slow else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_params()))
def test_scenario_produces_its_diagnosis_and_no_wrong_one(name, tmp_path):
    scenario = SCENARIOS[name]
    if scenario.needs is not None and not scenario.needs.is_dir():
        pytest.skip(f"{scenario.needs} is not here")
    summary = train(compose_cfg([*scenario.overrides, *LEAN], tmp_path))
    command = "runner " + " ".join(scenario.overrides)
    found = by_code(summary)
    problems = {c for c, d in found.items() if d["severity"] != "info"}
    assert scenario.must <= problems, (command, summary["diagnoses"])
    assert scenario.notes <= set(found), (command, summary["diagnoses"])
    assert not scenario.must_not & set(found), (command, summary["diagnoses"])
    if name == "healthy":
        assert not problems, (command, summary["diagnoses"])  # no warning at all
    for d in summary["diagnoses"]:  # every finding says what to try and where to look
        assert d["advice"] and d["see"], d
    if scenario.check is not None:
        scenario.check(summary)


@pytest.mark.slow
def test_degradation_plain_vs_residual_twin_in_a_sweep(tmp_path):
    """``runner -m model=plain34,resnet34 'model.width=choice(8)' trainer.max_epochs=3``: the
    plain net trains far worse than its residual twin, and the sweep says so. (``choice``
    applies the width after each job's model is chosen; a plain ``model.width=8`` would be
    checked against the default model first.)"""
    args = [
        "-m",
        "model=plain34,resnet34",
        "model.width=choice(8)",
        "trainer.max_epochs=3",
        "diagnostics.figures=false",
        "diagnostics.interpret.enabled=false",
        "trainer.save=none",
    ]
    proc = run_cli(args, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary_md,) = (tmp_path / "outputs" / "sweeps").glob("*/summary.md")
    text = summary_md.read_text()
    assert (
        "**degradation** (warning): Degradation: plain34 trains worse than the residual resnet34"
        in text
    )
    jobs = sorted(summary_md.parent.glob("*/.hydra/overrides.yaml"))
    plain = next(p.parents[1] for p in jobs if "model=plain34" in p.read_text())
    assert "model.shortcut=true" in (plain / "summary.json").read_text()  # named at fault
