"""Every study preset composes, every value of its grid composes, and its smoke form trains."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from runner import zoo
from runner.train import train
from tests.conftest import CONF, FAST, compose_cfg, run_cli

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SEARCHES = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))
GRIDS = {"s1_mnist": 90, "s2_degradation": 4, "s2_relu_vs_mish": 2, "s3_cnn_grid": 2916}
GRIDS["s4_cnn"] = 54
GRIDS["s2_finetune"] = 2
GRIDS["fish_finetune"] = 3


def compose_hydra(overrides: list[str]) -> DictConfig:
    """The composed config with its ``hydra`` node (sweeper params, launcher)."""
    return compose_many([overrides])[0]


def compose_many(override_lists: list[list[str]]) -> list[DictConfig]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return [
            compose(config_name="config", overrides=o, return_hydra_config=True)
            for o in override_lists
        ]


def grid_of(cfg: DictConfig) -> dict[str, list[str]]:
    """{key: [value, ...]} of ``hydra.sweeper.params`` (the grid ``runner -m`` runs)."""
    params = cfg.hydra.sweeper.get("params") or {}
    parser = OverridesParser.create()
    grid = {}
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        grid[key] = list(override.sweep_string_iterator())
    return grid


def is_text(cfg: DictConfig) -> bool:
    return zoo.MODELS.get(cfg.model.family).kind == "text"


def write_text_csvs(folder: Path) -> Path:
    """A tiny train/valid/test CSV folder in the NusaX format (id,text,label)."""
    words = {"positive": "enak sekali bagus", "negative": "buruk mahal kecewa", "neutral": "ada"}
    folder.mkdir(parents=True)
    for split, n in (("train", 24), ("valid", 9), ("test", 9)):
        rows = [
            {"id": i, "text": f"{words[label]} nomor {i}", "label": label}
            for i, label in zip(range(n), list(words) * n)
        ]
        pd.DataFrame(rows).to_csv(folder / f"{split}.csv", index=False)
    return folder


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_and_every_grid_value_compose(preset):
    cfg = compose_hydra([f"+experiment={preset}"])
    assert cfg.hydra.sweeper.get("params") or preset not in GRIDS, preset
    grid = grid_of(cfg)
    if preset in GRIDS:
        size = 1
        for values in grid.values():
            size *= len(values)
        assert size == GRIDS[preset]
    # Each value of each swept key at least once (the i-th value of every key together).
    jobs = [
        [f"+experiment={preset}", *(f"{k}={v[i % len(v)]}" for k, v in grid.items())]
        for i in range(max((len(v) for v in grid.values()), default=0))
    ]
    for job in compose_many(jobs):
        assert job.model.name and job.dataset.name


def test_s2_preset_is_the_studys_recipe():
    cfg = compose_hydra(["+experiment=s2_degradation"])
    assert grid_of(cfg)["model"] == ["plain34", "resnet34", "se_resnet34", "mish_resnet34"]
    assert cfg.dataset.name == "food" and cfg.dataset.image_size == 224
    assert cfg.dataset.normalize == "imagenet" and cfg.dataset.augment.hflip
    assert cfg.optimizer._target_ == "torch.optim.AdamW"
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (1e-3, 1e-4)
    assert (cfg.trainer.batch_size, cfg.trainer.max_epochs) == (32, 10)


def test_s2_finetune_differs_from_the_s2_recipe_in_its_weights_only():
    cfg = compose_hydra(["+experiment=s2_finetune"])
    s2 = compose_hydra(["+experiment=s2_degradation"])
    assert grid_of(cfg) == {"model.weights": ["IMAGENET1K_V1", "null"]}
    for group in ("dataset", "optimizer", "scheduler", "trainer"):
        assert cfg[group] == s2[group], group
    assert cfg.model.name == "resnet34" and cfg.model.stem == "imagenet"


def test_s3_resnet18_has_the_published_parameter_count():
    cfg = compose_hydra(["+experiment=s3_resnet18"])
    model = zoo.build_model(cfg.model, dict(num_classes=10, in_channels=3, image_size=32))
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (
        0.1,
        0.9,
        5e-4,
    )
    assert cfg.scheduler.T_max == 60 and cfg.trainer.max_epochs == 60
    assert cfg.trainer.batch_size == 128 and cfg.trainer.early_stopping.patience == 15


def named_weights_offline(cfg: DictConfig, torch_home: Path) -> list[str]:
    """A preset that starts from torchvision weights: their file (seeded random values) in
    ``torch_home``, where torchvision's loader finds it without network; the smoke run keeps
    its 8-px images (model.preprocessing=dataset) and the weights' architecture."""
    from runner.hub.weights import named_weights
    from tests.test_hub import write_torchvision_cache

    named = named_weights(cfg.model)
    if named is None:
        return []
    arch = cfg.model.arch if "arch" in cfg.model else f"resnet{cfg.model.depth}"
    write_torchvision_cache(torch_home, arch, named.label.split(".")[1])
    return ["model.preprocessing=dataset"]


@pytest.mark.parametrize("preset", PRESETS)
def test_smoke_form_trains_end_to_end(preset, tmp_path, monkeypatch):
    cfg = compose_hydra([f"+experiment={preset}"])
    extra = [f"+debug={'smoke_text' if is_text(cfg) else 'smoke'}"]
    if is_text(cfg):
        extra.append(f"dataset.path={write_text_csvs(tmp_path / 'texts')}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    pretrained = named_weights_offline(cfg, tmp_path / "torch_home")
    extra += pretrained
    if "width" in cfg.model and not pretrained:
        extra.append("model.width=8")  # ResNet-34 even at 8 px is slow on a shared 2-core CI box
    if cfg.model.family == "airbench":  # the full widths are slow on a shared 2-core CI box
        extra += ["model.widths=[8,16,16]"]
    run = tmp_path / "run"
    summary = train(compose_cfg([f"+experiment={preset}", *extra], run))
    assert summary["status"] in ("completed", "early_stopped"), summary
    for name in ("summary.json", "metrics.csv", "report.md", "checkpoints/best.pt"):
        assert (run / name).exists(), name
    assert json.loads((run / "summary.json").read_text())["best_epoch"] == 1


@pytest.mark.slow  # one more runner process; the grids' composition is checked above
def test_preset_grid_runs_as_a_multirun_in_smoke_form(tmp_path):
    # The preset's own sweep params (pooling max,avg) with the command line narrowing the rest.
    args = ["-m", "+experiment=s4_cnn", "+debug=smoke", "model.filters=[8]", "model.kernel_size=3"]
    proc = run_cli([*args, *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout + proc.stderr).count("sweep of 2 jobs") == 1
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    table = pd.read_csv(sweep / "summary.csv")
    assert sorted(table["model.pooling"]) == ["avg", "max"]
    assert set(table["status"]) == {"completed"}
    assert (sweep / "effects.png").exists()


@pytest.mark.parametrize("search", SEARCHES)
def test_hparams_search_configs_compose(search):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    preset = ["+experiment=s3_cnn_grid"] if search.startswith("s3_") else []
    cfg = compose_hydra([*preset, f"+hparams_search={search}"])
    assert "optuna" in cfg.hydra.sweeper._target_
    assert cfg.hydra.sweeper.direction == (
        "minimize" if "loss" in cfg.trainer.monitor else "maximize"
    )
    assert cfg.hydra.sweeper.params, "an Optuna search needs a search space"


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_hydra(["hydra/launcher=slurm"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1
