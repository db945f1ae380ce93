"""Bad input through the real CLI: config abuse, crafted run directories and checkpoints,
faults and missing data. Every case: the exit code, no traceback, a message naming the
problem, no run wrongly marked completed, no earlier result changed.

The cases run through ``runner.cli.main()`` in one subprocess per group
(:mod:`tests.cli_driver`): the config cases by default, the ones that need a trained run,
data or training under ``-m slow``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, compose_cfg, run_cli

TINY = [
    "dataset=synthetic",
    "dataset.num_samples=60",
    "dataset.image_size=8",
    "model.filters=[4]",
    "model.fc_neurons=[8]",
    "trainer.max_epochs=1",
]

# (override(s), a word the message must contain); all exit with code 2
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
    # numbers no setting takes
    (["optimizer.lr=inf"], "optimizer.lr=inf is invalid: must be a finite number"),
    (["optimizer.weight_decay=inf"], "optimizer.weight_decay=inf"),
    (["optimizer.lr=nan"], "optimizer.lr"),
    (["trainer.grad_clip=inf"], "trainer.grad_clip"),
    (["trainer.class_weights=[1,-1,1,1]"], "trainer.class_weights"),
    (["trainer.class_weights=[0,0,0,0]"], "at least one > 0"),
    (["trainer.class_weights=heavy"], "trainer.class_weights"),
    (["trainer.seed=-1"], "trainer.seed=-1 is invalid"),
    (["trainer.seed=4294967296"], "trainer.seed"),
    (["model.fc_neurons=[-5]"], "model.fc_neurons=[-5] is invalid"),
    (["dataset.num_classes=0"], "dataset.num_classes"),
    # configs that name code
    (["optimizer._target_=os.system"], "optimizer._target_='os.system' is not a torch optimizer"),
    (["optimizer._target_=builtins.open"], "not a torch optimizer"),
    (["scheduler._target_=shutil.copyfile"], "scheduler._target_='shutil.copyfile' is not"),
    (["optimizer._target_=no.such.Module"], "cannot import"),
    (["+model._target_=os.system"], "unknown key model._target_"),
    (["+dataset._target_=builtins.open"], "unknown key dataset._target_"),
    # config files and places
    (["--config-path", "{BADYAML}", "--config-name", "broken"], "YAML syntax error in"),
    (["--config-name", "nope"], "Cannot find primary config 'nope'"),
    (["hydra.run.dir={FILE}"], "cannot create or write"),
    (["-m", "hydra.sweep.dir={FILE}"], "cannot create or write"),
    (["trainer.resume=/nonexistent/last.pt"], "no such checkpoint file"),
]

# Cases that need a trained run, data or a short training (``-m slow``): (arguments,
# exit code, words of the message, placeholders of runs that must stay byte-identical).
# {RUN} a finished run; {NOLAST} one without checkpoints; {CRAFTED} one whose stored
# config names os.system; {TRUNC}, {NOTCKPT}, {PAYLOAD} broken checkpoint files.
RESUME = ["trainer.resume=true", "trainer.max_epochs=3"]
SLOW_CASES = [
    # refused commands against a finished run
    (["hydra.run.dir={RUN}", "optimizer.lr=-1"], 2, ["optimizer.lr"], ["RUN"]),
    (["hydra.run.dir={RUN}"], 2, ["already holds a run", "trainer.resume=true"], ["RUN"]),
    (["hydra.run.dir={RUN}", "optimizer=sgd"], 2, ["already holds a run"], ["RUN"]),
    (["hydra.run.dir={RUN}", *RESUME, "model.filters=[6]"], 2, ["model.filters"], ["RUN"]),
    (["hydra.run.dir={RUN}", *RESUME, "model.batch_norm=false"], 2, ["model.batch_norm"], ["RUN"]),
    (
        ["hydra.run.dir={RUN}", *RESUME, "dataset.num_samples=80"],
        2,
        ["dataset.num_samples"],
        ["RUN"],
    ),
    (["hydra.run.dir={RUN}", *RESUME, "dataset.image_size=12"], 2, ["dataset.image_size"], ["RUN"]),
    (["hydra.run.dir={RUN}", *RESUME, "trainer.seed=7"], 2, ["trainer.seed"], ["RUN"]),
    (["hydra.run.dir={RUN}", *RESUME, "optimizer=sgd"], 2, ["optimizer._target_"], ["RUN"]),
    (["hydra.run.dir={RUN}", *RESUME, "scheduler=step"], 2, ["scheduler.name"], ["RUN"]),
    (
        ["hydra.run.dir={RUN}", "trainer.resume=true", "optimizer.lr=0.5"],
        2,
        ["already finished", "optimizer.lr"],
        ["RUN"],
    ),
    (
        ["hydra.run.dir={RUN}", *RESUME, "trainer.class_weights=[0,0,0,0]"],
        2,
        ["class_weights"],
        ["RUN"],
    ),
    (["hydra.run.dir={NOLAST}", *RESUME], 2, ["cannot be continued"], ["NOLAST"]),
    # crafted and broken checkpoints
    (["hydra.run.dir={CRAFTED}", *RESUME], 2, ["refusing", "os.system"], ["CRAFTED"]),
    (["trainer.resume={CRAFTED}/checkpoints/last.pt"], 2, ["refusing"], ["CRAFTED"]),
    (["trainer.resume={PAYLOAD}"], 2, ["cannot be read"], []),
    (["trainer.resume={TRUNC}"], 2, ["truncated"], []),
    (["trainer.resume={NOTCKPT}"], 2, ["cannot be read"], []),
    # runs that start and end truthfully
    (
        [
            "optimizer=sgd",
            "optimizer.lr=1e12",
            "optimizer.momentum=0",
            "model.batch_norm=false",
            "scheduler=none",
            "trainer.batch_size=4",
        ],
        3,
        ["runner: diverged", "No epoch finished"],
        [],
    ),
    (["trainer.class_weights=[1,2]"], 2, ["lists 2 weights", "4 classes"], []),
    (["dataset.val_fraction=0"], 2, ["no validation samples", "dataset.val_fraction"], []),
    (["dataset.num_classes=1"], 2, ["at least two"], []),
    # missing data (the data loaders' own messages)
    (["dataset=imagefolder", "dataset.path=/nonexistent/x"], 2, ["no image folder at"], []),
    (["dataset=imagefolder", "dataset.path={EMPTY}"], 2, ["no class folders"], []),
    (["dataset=cifar10", "dataset.path=/nonexistent/c"], 2, ["CIFAR-10 not found"], []),
    (["dataset=mnist", "dataset.path=/nonexistent/m"], 2, ["MNIST not found"], []),
    (["dataset=nusax_senti", "dataset.path=/nonexistent/n"], 2, ["does not exist"], []),
]


def _run_driver(root: Path, cases: list) -> list[dict]:
    """All cases through ``runner.cli.main()`` in one subprocess (one start-up for all)."""
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
        timeout=1200,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((root / "results.json").read_text())


def _fill(args: list[str], places: dict[str, str]) -> list[str]:
    out = []
    for arg in args:
        for key, value in places.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


def _base(args: list[str]) -> list[str]:
    """TINY plus the case (data cases choose their own dataset)."""
    data = any(a.startswith("dataset=") for a in args)
    tiny = TINY[3:] if data else TINY
    base = [*tiny, "trainer.progress_bar=false", "diagnostics=off"]
    if args[:1] == ["-m"]:
        return ["-m", *base, *args[1:]]
    return [*base, *args]


def _check(result: dict, code: int, words: list[str]) -> None:
    stderr = result["stderr"]
    assert result["code"] == code, stderr
    for word in words:
        assert word in stderr, stderr
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr
    assert len(stderr.strip().splitlines()) <= 40, stderr
    for summary in Path(result["workdir"]).glob("outputs/**/summary.json"):
        assert json.loads(summary.read_text())["status"] != "completed", summary


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """Files and folders the config cases point at."""
    root = tmp_path_factory.mktemp("places")
    (root / "file").write_text("not a directory\n")
    (root / "yaml").mkdir()
    (root / "yaml" / "broken.yaml").write_text(
        "defaults:\n  - config\n  - _self_\ntrainer:\n  max_epochs: [1,\n"
    )
    return {"FILE": str(root / "file"), "BADYAML": str(root / "yaml")}


@pytest.fixture(scope="module")
def results(tmp_path_factory, places) -> list[dict]:
    cases = [_fill(_base(args), places) for args, _ in CASES]
    return _run_driver(tmp_path_factory.mktemp("bad"), cases)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[" ".join(c[0]) for c in CASES])
def test_bad_override(results, index):
    _check(results[index], 2, [CASES[index][1]])


class _Payload:
    """Unpickled without weights_only, this would run ``touch <marker>``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def slow_places(tmp_path_factory, places) -> dict[str, str]:
    """A finished run and its damaged copies."""
    root = tmp_path_factory.mktemp("runs")
    run = root / "run"
    tiny = [*TINY, "diagnostics=off"]
    assert compose_and_train(tiny, run)["status"] == "completed"
    nolast = root / "nolast"
    shutil.copytree(run, nolast)
    shutil.rmtree(nolast / "checkpoints")
    crafted = root / "crafted"
    shutil.copytree(run, crafted)
    marker = root / "MARKER"
    for path in (crafted / "checkpoints").glob("*.pt"):
        ckpt = torch.load(path, weights_only=True)
        ckpt["config"]["model"]["family"] = "os.system"
        ckpt["config"]["optimizer"].update(_target_="os.system", command=f"touch {marker}")
        torch.save(ckpt, path)
    last = (run / "checkpoints" / "last.pt").read_bytes()
    (root / "trunc.pt").write_bytes(last[: len(last) // 2])
    (root / "notckpt.pt").write_text("weights: none\n")
    with open(root / "payload.pt", "wb") as f:
        pickle.dump({"model": _Payload(str(marker))}, f, protocol=2)
    (root / "empty").mkdir()
    return {
        **places,
        "RUN": str(run),
        "NOLAST": str(nolast),
        "CRAFTED": str(crafted),
        "TRUNC": str(root / "trunc.pt"),
        "NOTCKPT": str(root / "notckpt.pt"),
        "PAYLOAD": str(root / "payload.pt"),
        "EMPTY": str(root / "empty"),
        "MARKER": str(marker),
    }


def compose_and_train(overrides: list[str], run: Path) -> dict:
    from runner.train import train

    return train(compose_cfg([*overrides, "trainer.max_epochs=1"], run))


@pytest.fixture(scope="module")
def slow_results(tmp_path_factory, slow_places) -> tuple[list[dict], dict]:
    from tests.cli_driver import tree_hashes

    before = {key: tree_hashes(Path(slow_places[key])) for key in ("RUN", "NOLAST", "CRAFTED")}
    cases = [
        {"args": _fill(_base(args), slow_places), "watch": [slow_places[w] for w in watch]}
        for args, _, _, watch in SLOW_CASES
    ]
    return _run_driver(tmp_path_factory.mktemp("slow"), cases), before


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SLOW_CASES)), ids=[" ".join(c[0]) for c in SLOW_CASES])
def test_bad_run_dir_checkpoint_fault_or_data(slow_results, slow_places, index):
    results, before = slow_results
    args, code, words, watch = SLOW_CASES[index]
    result = results[index]
    _check(result, code, [_fill([w], slow_places)[0] for w in words])
    for key in watch:  # the earlier result is byte-identical
        assert result["hashes"][slow_places[key]] == before[key], key
    assert not Path(slow_places["MARKER"]).exists()


def test_console_script_reports_bad_input_without_traceback(tmp_path):
    """The installed console script itself (not only main()) keeps errors short."""
    proc = run_cli([*TINY, "optimizer.lr=-1"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("runner: error: optimizer.lr")
    assert "Traceback" not in proc.stderr
