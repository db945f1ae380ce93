"""Every config member composes; schemas and range checks reject bad input by name."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from runner import zoo
from runner.data.registry import DATASETS
from runner.errors import ConfigError
from runner.validate import validate
from tests.conftest import CONF, compose_cfg

GROUPS = ("model", "dataset", "optimizer", "scheduler", "trainer")


def members(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group,name", [(g, n) for g in GROUPS for n in members(g)], ids=lambda v: str(v)
)
def test_every_member_composes(group, name):
    cfg = compose_cfg([f"{group}={name}"])
    assert cfg[group] is not None
    if group == "model":
        # a hub member (torchvision, timm) is named after its architecture, so sweeps over
        # model.arch get one directory name per architecture
        label = cfg.model.arch if "arch" in cfg.model else name
        assert cfg.model.family in zoo.MODELS and cfg.model.name == label
    if group == "dataset":
        assert cfg.dataset.format in DATASETS and cfg.dataset.name == name
    validate(cfg)


def test_default_experiment_is_custom_cnn_on_digits():
    cfg = compose_cfg([])
    assert (cfg.model.name, cfg.dataset.name) == ("custom_cnn", "digits")


def test_unknown_member_lists_choices():
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["model=resnet99"])
    assert "resnet99" in str(err.value) and "custom_cnn" in str(err.value)


@pytest.mark.parametrize("override", ["trainer.max_epoch=3", "model.filter=[8]", "optimizer.lrr=1"])
def test_misspelt_key_is_named(override):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as err:
        compose_cfg([override])
    assert override.split("=")[0].split(".")[-1] in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize("override", ["trainer.max_epochs=many", "optimizer.lr=fast"])
def test_wrong_type_is_named(override):
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        compose_cfg([override])
    assert override.split("=")[0].split(".")[-1] in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize(
    ("override", "valid"),
    [
        ("trainer.precision=fp8", "bf16"),
        ("model.pooling=median", "avg"),
        ("trainer.tta=rotate", "flip"),
        ("dataset.normalize=zscore", "imagenet"),
        ("scheduler.interval=batch", "step"),
        ("trainer.early_stopping.mode=up", "max"),
    ],
)
def test_a_value_outside_its_choices_is_refused_while_composing(override, valid):
    """Enumerated settings are typed (runner.schema.base.Choice): refused by name, with the
    valid values, before any work."""
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg([override])
    text = str(err.value) + str(err.value.__cause__)
    assert override.split("=")[0] in text and valid in text


@pytest.mark.parametrize(
    "override,key",
    [
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("trainer.batch_size=-8", "trainer.batch_size"),
        ("model.dropout=1.0", "model.dropout"),
        ("trainer.early_stopping.patience=-1", "trainer.early_stopping.patience"),
        ("dataset.val_fraction=0.9", "dataset.val_fraction + dataset.test_fraction"),
        ("trainer.device=gpu", "trainer.device"),
    ],
)
def test_out_of_range_values_are_refused(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg([override]))
    assert key in str(err.value)
