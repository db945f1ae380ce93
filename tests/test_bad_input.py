"""Bad override strings through the real CLI: a short message, no traceback, nothing 'completed'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

TINY = [
    "dataset=synthetic",
    "dataset.num_samples=60",
    "dataset.image_size=8",
    "model.filters=[4]",
    "model.fc_neurons=[8]",
    "trainer.max_epochs=1",
]

# (override(s), a word the message must contain)
CASES = [
    # unknown keys and members
    (["trainer.max_epoch=3"], "max_epoch"),
    (["model.filter=[8]"], "filter"),
    (["optimizer.lrr=0.1"], "lrr"),
    (["trainer.early_stopping.patiense=3"], "patiense"),
    (["scheduler=step", "scheduler.gama=0.5"], "gama"),
    (["+trainer.foo=1"], "foo"),
    (["model=resnet99"], "resnet99"),
    (["optimizer=adamm"], "adamm"),
    # wrong types
    (["trainer.max_epochs=many"], "max_epochs"),
    (["optimizer.lr=fast"], "lr"),
    (["trainer.batch_size=1.5"], "batch_size"),
    (["model.batch_norm=maybe"], "batch_norm"),
    (["trainer.seed=x"], "seed"),
    (["dataset.val_fraction=half"], "val_fraction"),
    # out of range
    (["optimizer.lr=0"], "optimizer.lr"),
    (["optimizer.lr=-1"], "optimizer.lr"),
    (["trainer.max_epochs=0"], "trainer.max_epochs"),
    (["trainer.batch_size=0"], "trainer.batch_size"),
    (["model.dropout=1.5"], "model.dropout"),
    (["model.dropout=-0.1"], "model.dropout"),
    (["trainer.early_stopping.patience=-1"], "patience"),
    (["dataset.val_fraction=0.9"], "fractions"),
    (["trainer.precision=fp8"], "trainer.precision"),
    (["trainer.device=gpu"], "trainer.device"),
    (["trainer.device=cuda:7"], "cuda"),
    (["model.kernel_size=0"], "model.kernel_size"),
    (["model.pooling=median"], "model.pooling"),
    (["model.activation=swishy"], "swishy"),
    (["model.init=he"], "model.init"),
    (["optimizer=sgd", "optimizer.momentum=1.5"], "momentum"),
    (["scheduler.warmup_epochs=-1"], "warmup_epochs"),
    (["trainer.label_smoothing=1.0"], "label_smoothing"),
    (["trainer.tta=mirror"], "trainer.tta"),
    (["trainer.optimizer_impl=fast"], "optimizer_impl"),
    (["optimizer=rmsprop", "trainer.optimizer_impl=fused"], "no fused kernel"),
    (["trainer.bn_momentum=2"], "bn_momentum"),
    (["trainer.bn_eps=0"], "bn_eps"),
    (["trainer.ema_decay=1"], "ema_decay"),
    (["model.filters=[]"], "filters"),
    (["trainer.monitor=val_auc"], "trainer.monitor"),
    (["model.filters=[4,4,4,4,4]", "model.padding=valid", "model.kernel_size=3"], "too small"),
    # malformed sweeps / override syntax
    (["optimizer=sgd,adam"], "multirun"),
    (["-m", "optimizer=sgd,nope"], "nope"),
    (["-m", "optimizer.lr=0.01,abc"], "lr"),
    (["trainer.max_epochs=range(a)"], "range"),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> list[dict]:
    """All cases through ``runner.cli.main()`` in one subprocess (one start-up for all of them)."""
    root = tmp_path_factory.mktemp("bad")
    cases = []
    for overrides, _ in CASES:
        multirun = overrides[:1] == ["-m"]
        base = [*TINY, "trainer.progress_bar=false"]
        cases.append(["-m", *base, *overrides[1:]] if multirun else [*base, *overrides])
    (root / "cases.json").write_text(json.dumps(cases))
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.cli_driver",
            str(root / "cases.json"),
            str(root / "results.json"),
        ],
        cwd=ROOT,
        env=env,
        timeout=900,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((root / "results.json").read_text())


@pytest.mark.parametrize("index", range(len(CASES)), ids=[" ".join(c[0]) for c in CASES])
def test_bad_override(results, index):
    result, word = results[index], CASES[index][1]
    stderr = result["stderr"]
    assert result["code"] not in (0, 99), stderr
    assert word in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) <= 40, stderr
    for summary in Path(result["workdir"]).glob("outputs/**/summary.json"):
        assert json.loads(summary.read_text())["status"] != "completed", summary


def test_console_script_reports_bad_input_without_traceback(tmp_path):
    """The installed console script itself (not only main()) keeps errors short."""
    proc = run_cli([*TINY, "optimizer.lr=-1"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("runner: error: optimizer.lr")
    assert "Traceback" not in proc.stderr
