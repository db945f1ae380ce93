"""Fine-tuning controls, each proven on real training (the small CNN on the digits):
frozen parameters do not move, unfreezing at epoch k moves them from then on, parameter
groups carry the configured learning rates, frozen BatchNorm statistics stay fixed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from runner import build, zoo
from runner.callbacks import Callback
from runner.errors import ConfigError
from runner.finetune import build_finetune, partition
from runner.rundir import RunDir
from runner.train import train
from runner.validate import validate
from tests.conftest import compose_cfg, run_cli

CNN = [
    "model=custom_cnn",
    "model.filters=[8,16]",  # two feature stages: features.0.act, features.1.act
    "model.fc_neurons=[32]",
    "diagnostics=off",
    "trainer.early_stopping.enabled=false",
    "trainer.save=none",
]


class Snapshots(Callback):
    """Copies of every parameter and BatchNorm statistic before fit and after each epoch."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.norms_in_eval: list[list[str]] = []

    def _take(self, loop) -> None:
        self.states.append({k: v.detach().clone() for k, v in loop.model.state_dict().items()})

    def on_fit_start(self, loop) -> None:
        self._take(loop)

    def on_train_batch_end(self, loop, epoch, batch, loss) -> None:
        if batch == 0:  # after model.train(): which BatchNorm layers stayed in eval mode
            self.norms_in_eval.append(
                [
                    n
                    for n, m in loop.model.named_modules()
                    if isinstance(m, nn.BatchNorm2d) and not m.training
                ]
            )

    def on_epoch_end(self, loop, epoch, row) -> None:
        self._take(loop)


def fit(tmp_path, *overrides: str):
    """Train ``overrides`` through the runner's own build and loop, with :class:`Snapshots`."""
    cfg = compose_cfg([*CNN, *overrides], tmp_path / "run")
    validate(cfg)
    run = RunDir(cfg.run_dir)
    run.start()
    data = build.build_data(cfg)
    model = build.build_model(cfg, data)
    tuning = build_finetune(cfg, data.model_kwargs(), model)
    snaps = Snapshots()
    callbacks = [c for c in (tuning, snaps) if c is not None]
    built = build.build_run(cfg, data, model, torch.device("cpu"), run, callbacks)
    result = built.loop.fit()
    assert result.status == "completed"
    return built.loop, snaps


def changed(before: dict, after: dict, prefix: str) -> list[bool]:
    keys = [k for k in before if k.startswith(prefix) and "num_batches" not in k]
    assert keys, prefix
    return [not torch.equal(before[k], after[k]) for k in keys]


def test_stages_split_the_parameters_stem_first_classifier_last():
    cfg = compose_cfg(["model=resnet18", "model.width=8"])
    model = zoo.build_model(cfg.model, {"num_classes": 3, "in_channels": 3, "image_size": (32, 32)})
    plan = partition(model, zoo.feature_stages("resnet", model))
    assert plan.names == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert [n for n, _ in plan.stages[0]] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert [n for n, _ in plan.head] == ["fc.weight", "fc.bias"]
    grouped = [n for stage in plan.stages for n, _ in stage] + [n for n, _ in plan.head]
    assert grouped == [n for n, _ in model.named_parameters()]  # each once, in order


def test_frozen_parameters_and_batchnorm_statistics_do_not_change(tmp_path):
    loop, snaps = fit(tmp_path, "model.freeze=1", "trainer.max_epochs=1")
    start, end = snaps.states
    assert not any(changed(start, end, "features.0."))  # weights, BN affine and statistics
    assert all(changed(start, end, "features.1."))
    assert all(changed(start, end, "head.")) and all(changed(start, end, "classifier."))
    assert snaps.norms_in_eval == [["features.0.bn"]]  # model.train() left it in eval mode
    assert not any(p.requires_grad for p in loop.model.features[0].parameters())


def test_unfreezing_at_epoch_k_trains_the_backbone_from_then_on(tmp_path):
    _, snaps = fit(
        tmp_path, "model.freeze=backbone", "trainer.unfreeze_at_epoch=2", "trainer.max_epochs=3"
    )
    s0, s1, s2, s3 = snaps.states
    assert not any(changed(s0, s1, "features."))  # epoch 1: the classifier only
    assert all(changed(s0, s1, "classifier."))
    assert all(changed(s1, s2, "features.")) and all(changed(s2, s3, "features."))
    assert snaps.norms_in_eval == [["features.0.bn", "features.1.bn"], [], []]


def test_a_resumed_run_past_the_unfreezing_epoch_trains_everything(tmp_path):
    common = [*CNN[:-1], "model.freeze=backbone", "trainer.unfreeze_at_epoch=2"]
    cfg = compose_cfg([*common, "trainer.max_epochs=1"], tmp_path / "run")
    train(cfg)
    cfg = compose_cfg([*common, "trainer.max_epochs=2", "trainer.resume=true"], tmp_path / "run")
    summary = train(cfg)
    assert summary["epochs_run"] == 2
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Unfrozen at epoch 2" in report


def test_parameter_groups_carry_the_configured_learning_rates(tmp_path):
    loop, _ = fit(
        tmp_path, "trainer.backbone_lr_ratio=0.1", "scheduler=none", "trainer.max_epochs=1"
    )
    groups = {g["name"]: g["lr"] for g in loop.optimizer.param_groups}
    assert groups == pytest.approx({"head": 1e-3, "features.0.act": 1e-4, "features.1.act": 1e-4})
    assert loop.optimizer.param_groups[0]["name"] == "head"  # the logged lr is the head's
    in_groups = [id(p) for g in loop.optimizer.param_groups for p in g["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in loop.model.parameters())


def test_per_stage_multipliers_keep_their_ratios_under_a_schedule(tmp_path):
    loop, _ = fit(
        tmp_path,
        "trainer.stage_lr_multipliers=[0.01,0.1]",
        "scheduler=onecycle",
        "trainer.max_epochs=1",
    )
    lrs = {g["name"]: g["lr"] for g in loop.optimizer.param_groups}
    assert lrs["features.0.act"] / lrs["head"] == pytest.approx(0.01)
    assert lrs["features.1.act"] / lrs["head"] == pytest.approx(0.1)
    assert lrs["head"] != pytest.approx(1e-3)  # one-cycle moved every group, ratios kept


def test_the_report_and_summary_state_what_was_frozen(tmp_path):
    cfg = compose_cfg([*CNN, "model.freeze=1", "trainer.max_epochs=1"], tmp_path / "run")
    summary = train(cfg)
    model = zoo.build_model(cfg.model, {"num_classes": 10, "in_channels": 1, "image_size": (8, 8)})
    frozen = sum(p.numel() for p in model.features[0].parameters())
    assert summary["trainable_params"] == summary["params"] - frozen
    assert summary["frozen"] == "1 of 2 stages (features.0.act)"
    report = (tmp_path / "run" / "report.md").read_text()
    assert "- Frozen: 1 of 2 stages (features.0.act); 1 BatchNorm layers kept in eval mode" in (
        report
    )
    assert f"- Trainable parameters: {summary['trainable_params']:,} of" in report


def test_freezing_beyond_the_stages_is_refused_with_their_number(tmp_path):
    result = run_cli(["model=resnet18", "model.width=8", "model.freeze=6"], tmp_path)
    assert result.returncode == 2
    assert "model.freeze=6 is invalid: resnet18 has 5 feature stages" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ([*CNN, "model.freeze=some"], "valid values: none, backbone, or N"),
        ([*CNN, "trainer.unfreeze_at_epoch=2"], "nothing to unfreeze"),
        ([*CNN, "trainer.backbone_lr_ratio=0"], "must be > 0"),
        ([*CNN, "trainer.stage_lr_multipliers=[1,-1]"], "one positive multiple"),
        (
            [*CNN, "trainer.backbone_lr_ratio=0.1", "trainer.stage_lr_multipliers=[1,1]"],
            "not both",
        ),
        (["model=lstm", "trainer.backbone_lr_ratio=0.1"], "no feature stages"),
    ],
)
def test_bad_fine_tuning_settings_are_refused(overrides, words):
    with pytest.raises(ConfigError, match=words):
        validate(compose_cfg(overrides))


def test_multipliers_must_match_the_number_of_stages(tmp_path):
    with pytest.raises(ConfigError, match="lists 3 values but the model has 2 feature stages"):
        fit(tmp_path, "trainer.stage_lr_multipliers=[1,1,1]", "trainer.max_epochs=1")
