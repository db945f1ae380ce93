"""The dataset registry: a dataset format → its loader and config schema.

A dataset config names its entry with ``format`` (``conf/dataset/*.yaml``); the loader
gets every other key plus ``seed`` and returns a :class:`runner.data.base.DataBundle`.
Adding a dataset format: a loader module in ``runner/data/`` ending with one
:func:`register_dataset` call (or the call in your own module), a schema dataclass and a
YAML file in ``conf/dataset/`` (see README "Architecture").
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError, DataError
from runner.paths import register_resolvers
from runner.registry import Registry, resolve

register_resolvers()  # dataset.root / cache_dir of stored configs resolve here too

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset format. loader: ``(**config keys, seed) -> DataBundle`` (or
    ``"module:attr"``); schema: the dataclass typing its config; kind: image | text."""

    format: str
    loader: Callable[..., Any] | str
    schema: type
    kind: str = "image"


DATASETS: Registry[DatasetEntry] = Registry("dataset format", "dataset.format")


def register_dataset(
    format: str,
    loader: Callable[..., Any] | str,
    schema: type,
    *,
    kind: str = "image",
    preset: Any = None,
) -> DatasetEntry:
    """Register a dataset format (and its schema as ``schema/dataset/<format>``).

    ``preset``: an instance of ``schema`` with every value set, stored as the config
    ``dataset/<format>`` so ``dataset=<format>`` works without a YAML file.
    """
    from hydra.core.config_store import ConfigStore

    from runner.schema import register

    entry = DATASETS.register(format, DatasetEntry(format, loader, schema, kind))
    register("dataset", format, schema)
    if preset is not None:
        ConfigStore.instance().store(group="dataset", name=format, node=preset)
    return entry


def dataset_params(dataset_cfg: Mapping[str, Any] | DictConfig) -> tuple[DatasetEntry, dict]:
    """The entry and the loader's keyword arguments, checked against the format's schema."""
    from omegaconf.errors import OmegaConfBaseException

    node = (
        dataset_cfg if isinstance(dataset_cfg, DictConfig) else OmegaConf.create(dict(dataset_cfg))
    )
    entry = DATASETS.get(node.get("format"))
    try:
        typed = OmegaConf.merge(OmegaConf.structured(entry.schema), node)
        params = OmegaConf.to_container(typed, resolve=True, enum_to_str=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"dataset config does not fit format {entry.format!r}: {err}") from None
    missing = sorted(OmegaConf.missing_keys(typed))
    if missing:
        raise ConfigError(f"dataset config lacks {', '.join('dataset.' + k for k in missing)}")
    params.pop("format")
    return entry, params


def build_data(dataset_cfg: Mapping[str, Any] | DictConfig, seed: int):
    """The :class:`DataBundle` of ``dataset_cfg`` (split with ``seed``)."""
    entry, params = dataset_params(dataset_cfg)
    where = ""
    if "path" in params:  # a format that reads files: say where they are looked for
        path = str(params["path"])
        if path and Path(path).expanduser().is_absolute():
            where = f", data {path}"
        else:
            where = f", data root {params.get('root')} (path {path or '<root>/<name>'})"
    if params.get("cache") and params.get("cache_dir"):
        where += f", decode cache {params['cache_dir']}"
    log.info("dataset: %s (format %s)%s", params.get("name"), entry.format, where)
    folds = {k: params.pop(k, 0) for k in ("folds", "fold")}
    with warnings_as_log_lines():
        data = resolve(entry.loader)(seed=seed, **params)
    if folds["folds"]:
        from runner.data.prepare import fold_bundle

        data = fold_bundle(data, {**params, **folds}, seed)
        log.info("fold %d of %d: %d train, %d val", folds["fold"], folds["folds"],
                 len(data.train), len(data.val))  # fmt: skip
    check_bundle(data, params)
    return data


@contextlib.contextmanager
def warnings_as_log_lines() -> Iterator[None]:
    """While a dataset loads, the notices its loader raises as Python warnings (identical
    images across splits, skipped files, groups without a split) become one log warning
    each — the message alone, without the ``file:line: UserWarning`` and source line
    Python prints. The warnings filters still decide which are shown; each load starts
    afresh, so every run of a sweep says its own."""

    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        log.warning("warning: %s", message)

    with warnings.catch_warnings():  # restores showwarning and the filters afterwards
        warnings.showwarning = show
        yield


def check_bundle(data: Any, params: Mapping[str, Any]) -> None:
    """What every dataset must be, whatever its loader: training samples, at least two
    classes and labels that are class ids (a :class:`DataError` otherwise)."""
    if len(data.train) == 0:
        raise DataError(f"dataset {data.name!r} has no training samples")
    if data.num_classes < 2:
        fix = (
            "Set dataset.num_classes to 2 or more."
            if "num_classes" in params
            else "Add data of at least one more class (or check which column holds the labels)."
        )
        raise DataError(
            f"dataset {data.name!r} has {data.num_classes} class(es) "
            f"({', '.join(map(repr, data.classes)) or 'none'}): classification needs at least "
            f"two. {fix}"
        )
    for split in ("train", "val", "test"):
        y = getattr(data, split).y
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= data.num_classes):
            raise DataError(
                f"dataset {data.name!r}: {split} labels range {int(y.min())}..{int(y.max())} "
                f"but there are {data.num_classes} classes; the loader returned labels that "
                "are not class ids"
            )


def _register_builtins() -> None:
    from runner.schema import dataset as schema

    builtins = {
        "digits": ("runner.data.digits:load_digits", schema.DatasetConf, "image"),
        "synthetic": ("runner.data.synthetic:load_synthetic", schema.SyntheticConf, "image"),
        "cifar10": ("runner.data.cifar:load_cifar10", schema.CIFAR10Conf, "image"),
        "mnist": ("runner.data.mnist:load_mnist", schema.MNISTConf, "image"),
        "fashion_mnist": ("runner.data.mnist:load_fashion_mnist", schema.MNISTConf, "image"),
        "imagefolder": (
            "runner.data.imagefolder:load_image_folder",
            schema.ImageFolderConf,
            "image",
        ),
        "text_csv": ("runner.text.nusax:load_nusax", schema.TextCSVConf, "text"),
    }
    for name, (loader, conf, kind) in builtins.items():
        register_dataset(name, loader, conf, kind=kind)


_register_builtins()
