"""README "Architecture": each extension point takes one registration, shown from a test
file alone — a model family, a dataset format and a sweep launcher (a diagnostic rule:
tests/test_diagnostics.py)."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import MISSING
from torch import nn

from runner import checkpoint, zoo
from runner.data.base import DataBundle, Split
from runner.data.registry import DATASETS, register_dataset
from runner.schema.dataset import AugmentConf, DatasetConf
from runner.schema.model import ModelConf
from runner.train import train
from tests.conftest import compose_cfg, run_cli

QUICK = ["diagnostics=off", "trainer.max_epochs=10", "trainer.early_stopping.enabled=false"]


class TinyMLP(nn.Module):
    """A new architecture: flatten -> hidden -> classes."""

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, num_classes)

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        return [("body", self.body)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class TinyMLPConf(ModelConf):
    hidden: int = MISSING


def test_a_model_family_registered_here_trains_and_reloads(tmp_path):
    zoo.register_model(
        "tiny_mlp", TinyMLP, TinyMLPConf, preset=TinyMLPConf("tiny_mlp", "tiny_mlp", 64)
    )
    assert "tiny_mlp" in zoo.MODELS.names()
    cfg = compose_cfg(["model=tiny_mlp", *QUICK], tmp_path)
    assert cfg.model.hidden == 64
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["test_acc"] > 0.85, summary
    model, pre, _ = checkpoint.load_model(tmp_path)  # rebuilt through the registry
    assert isinstance(model, TinyMLP) and pre.classes == [str(d) for d in range(10)]
    assert zoo.feature_stages("tiny_mlp", model)[0][0] == "body"


def load_two_blobs(*, seed: int, num_samples: int, **_: object) -> DataBundle:
    """A new data format: two Gaussian blobs as 1x4x4 uint8 images."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_samples) % 2
    x = torch.randn(num_samples, 1, 4, 4, generator=g) * 20 + 80 + 90 * y.view(-1, 1, 1, 1)
    x = x.clamp(0, 255).to(torch.uint8)
    n = num_samples // 5
    splits = [Split(x[a:b], y[a:b]) for a, b in ((2 * n, None), (0, n), (n, 2 * n))]
    return DataBundle("two_blobs", ["low", "high"], *splits, mean=(0.5,), std=(0.25,))


@dataclass
class TwoBlobsConf(DatasetConf):
    num_samples: int = MISSING


def test_a_dataset_format_registered_here_trains(tmp_path):
    off = AugmentConf(
        crop_padding=0, hflip=False, random_resized_crop=False, rotation=0, color_jitter=0,
        cutout=0, policy="none", policy_ops=2, policy_magnitude=9, random_erasing=0.0,
        translate=0, alternating_flip=False,
    )  # fmt: skip
    preset = TwoBlobsConf(
        format="two_blobs",
        name="two_blobs",
        root=str(tmp_path),
        download=False,
        val_fraction=0.2,
        test_fraction=0.2,
        normalize="none",
        subset=0.0,
        folds=0,
        fold=0,
        augment=off,
        num_samples=200,
    )
    register_dataset("two_blobs", load_two_blobs, TwoBlobsConf, preset=preset)
    assert "two_blobs" in DATASETS
    summary = train(compose_cfg(["dataset=two_blobs", *QUICK, "model.filters=[8]"], tmp_path))
    assert summary["status"] == "completed" and summary["test_acc"] == 1.0, summary


LAUNCHER = '''
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore


@dataclass
class MarkingLauncherConf:
    _target_: str = "hydra_plugins.marking_launcher.MarkingLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="marking", node=MarkingLauncherConf)


class MarkingLauncher(BasicLauncher):
    """Hydra's serial launcher that leaves a marker per launched batch of jobs."""

    def launch(self, job_overrides, initial_job_idx):
        sweep = Path(str(self.config.hydra.sweep.dir))
        sweep.mkdir(parents=True, exist_ok=True)
        (sweep / "launched_by_marking.txt").write_text(str(len(job_overrides)))
        return super().launch(job_overrides, initial_job_idx)
'''


def test_a_launcher_plugin_written_here_runs_a_sweep(tmp_path):
    """A launcher is a Hydra plugin (a module under ``hydra_plugins``) whose config it
    stores itself; the runner adds nothing, and its sweep summary still appears."""
    plugin = tmp_path / "plugins" / "hydra_plugins" / "marking_launcher" / "__init__.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text(textwrap.dedent(LAUNCHER))
    args = ["-m", "hydra/launcher=marking", "optimizer=sgd,adam", "dataset=synthetic"]
    small = ["dataset.num_samples=64", "dataset.image_size=8", "model.filters=[4]"]
    env = {"PYTHONPATH": f"{plugin.parents[2]}:{_pythonpath()}"}
    proc = run_cli([*args, *small, *QUICK[:2], "trainer.max_epochs=1"], tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    assert (sweep / "launched_by_marking.txt").read_text() == "2"
    assert (sweep / "summary.csv").is_file()
    statuses = [json.loads((sweep / j / "summary.json").read_text())["status"] for j in "01"]
    assert statuses == ["completed", "completed"]


def _pythonpath() -> str:
    import os

    return os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
