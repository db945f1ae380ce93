"""Python API for notebooks and scripts.

    import runner
    summary = runner.train(["model=custom_cnn", "trainer.max_epochs=5"])   # like the CLI
    run = runner.load_run(summary["run_dir"])
    run.metrics.plot(x="epoch", y=["train_acc", "val_acc"])
    run.predict("photos/")            # DataFrame: file, predicted_class, confidence, top-k
    run.predict(["enak sekali", "pelayanan lambat"])   # a text run: texts (or .csv/.txt files)

``train`` composes the packaged configs exactly as the ``runner`` command does
(same defaults, schemas and overrides) and writes the same run directory,
including ``.hydra/config.yaml`` and ``runner.log``; a composed ``DictConfig`` is
trained as it is.
"""

from __future__ import annotations

import datetime as _dt
import logging
import uuid
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.rundir import LOG

log = logging.getLogger("runner")


# ------------------------------------------------------------------ train


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The run config for ``overrides`` (``["model=resnet18", "optimizer.lr=0.01"]``), with
    its ``hydra`` node, composed from the packaged ``conf/`` (:func:`runner.cli.conf_dir`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module

    from runner.cli import conf_dir

    where = conf_dir()
    if where.startswith("pkg://"):
        init = initialize_config_module(where[len("pkg://") :], version_base="1.3")
    else:
        init = initialize_config_dir(config_dir=where, version_base="1.3")
    with init:
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=True)


def train(
    overrides: Sequence[str] | DictConfig = (), run_dir: str | Path | None = None
) -> dict[str, Any]:
    """Train one configuration; return its summary (``summary.json``) plus ``run_dir``.

    Args:
        overrides: command-line style overrides (``["dataset=food", "trainer.max_epochs=3"]``),
            composed like ``runner ...`` would; or an already composed ``DictConfig``
            (trained as it is, e.g. from :func:`compose` or a test).
        run_dir: where to write the run; default ``hydra.run.dir`` of the config
            (``outputs/runs/<time>_<model>_<dataset>_<id>`` under the working directory).
    """
    from runner.train import train as train_cfg

    if isinstance(overrides, str):
        raise TypeError("train() takes a list of overrides, e.g. ['model=resnet18'], not a str")
    composed = not isinstance(overrides, DictConfig)
    cfg = compose(overrides) if composed else overrides
    target = Path(run_dir) if run_dir else _default_run_dir(cfg)
    choices = _choices(cfg)
    with open_dict(cfg):
        cfg.pop("hydra", None)
        cfg.run_dir = str(target)
    if not composed:
        return {**train_cfg(cfg), "run_dir": str(target)}
    with _log_to(target / LOG):  # held until the run starts (nothing if it is refused)
        summary = train_cfg(cfg, overrides=list(overrides), choices=choices)
    return {**summary, "run_dir": str(target)}


def _default_run_dir(cfg: DictConfig) -> Path:
    """``cfg.run_dir`` if set, else ``hydra.run.dir`` (made unique), else a fresh default."""
    try:
        value = cfg.run_dir
    except Exception:  # ${runner_output_dir:} outside a Hydra app
        value = None
    if value and value != "???":
        return Path(value)
    if "hydra" in cfg:
        return _unique(Path.cwd() / cfg.hydra.run.dir)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    name = f"{stamp}_{cfg.model.name}_{cfg.dataset.name}_{uuid.uuid4().hex[:6]}"
    return Path.cwd() / "outputs" / "runs" / name


def _unique(path: Path) -> Path:
    """``path``, or ``path_2``, ``path_3``... when a run already lives there."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}_{n}")
    return candidate


def _choices(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's ``runtime.choices`` of a composed config (the member of each group)."""
    node = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    return {} if node is None else OmegaConf.to_container(node)


class _log_to:
    """Send INFO records of the ``runner`` loggers to a file (and the console) for one call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handlers: list[logging.Handler] = []

    def __enter__(self) -> _log_to:
        from runner.rundir import RunLogHandler

        file = RunLogHandler(str(self.path))
        file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
        self.handlers = [file]
        if not log.handlers and not logging.getLogger().handlers:
            console = logging.StreamHandler()
            console.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
            self.handlers.append(console)
        self.level = log.level
        log.setLevel(logging.INFO)
        for handler in self.handlers:
            log.addHandler(handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for handler in self.handlers:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(self.level)


# ------------------------------------------------------------------ load_run


class Run:
    """A finished (or running) run directory, read lazily.

    Attributes: ``path``, ``summary`` (dict), ``metrics`` (DataFrame, one row per epoch),
    ``config`` (DictConfig), ``classes``, ``model`` (best weights, eval mode, CPU),
    ``preprocessing``, ``vocabulary`` (text runs); :meth:`predict` classifies images or
    texts.
    """

    def __init__(self, path: str | Path) -> None:
        from runner.rundir import RunDir

        self.path = Path(path)
        self.run = RunDir(self.path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no run directory at {self.path}")

    def __repr__(self) -> str:
        status = self.summary.get("status", "?")
        return f"Run({str(self.path)!r}, status={status!r})"

    @cached_property
    def summary(self) -> dict[str, Any]:
        """``summary.json`` ({} if the run has not written one)."""
        return self.run.summary()

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """``metrics.csv``: epoch, train_loss, train_acc, val_loss, val_acc, lr, ..."""
        metrics = self.run.metrics()
        return pd.DataFrame() if metrics is None else metrics

    @cached_property
    def config(self) -> DictConfig:
        """The run config as plain data (``.hydra/config.yaml``, else the checkpoint's),
        checked like every stored config: one naming anything but registry entries and
        torch optimizer/scheduler classes is refused (:class:`runner.errors.CheckpointError`)."""
        from runner.checkpoint import check_stored_config, stored_config
        from runner.rundir import CONFIG

        stored = self.run.config()
        if stored is None:
            return OmegaConf.create(stored_config(self.checkpoint(), self.path))
        check_stored_config(OmegaConf.to_container(stored, resolve=False), self.path / CONFIG)
        return stored

    @property
    def report(self) -> str:
        """``report.md`` as text."""
        return self.run.report_path.read_text()

    def checkpoint(self, which: str = "best") -> dict[str, Any]:
        """``checkpoints/<which>.pt`` (best | last) loaded with ``weights_only=True``."""
        from runner import checkpoint

        return checkpoint.load(checkpoint.checkpoint_path(self.path, which))

    @cached_property
    def _loaded(self) -> tuple[torch.nn.Module, Any]:
        from runner.checkpoint import load_model

        model, pre, _ = load_model(self.path, "best")
        return model, pre

    @property
    def model(self) -> torch.nn.Module:
        """The model with the best epoch's weights, in eval mode, on the CPU."""
        return self._loaded[0]

    @property
    def preprocessing(self) -> Any:
        """:class:`runner.checkpoint.Preprocessing`: image size, channels, mean, std, classes."""
        return self._loaded[1]

    @cached_property
    def vocabulary(self) -> Any:
        """A text run's :class:`runner.text.tokenizer.Vocabulary` (its ``vocab.json``)."""
        from runner.text.predict import load_vocabulary

        return load_vocabulary(self.path)

    @property
    def classes(self) -> list[str]:
        return list(self.summary.get("classes") or self.preprocessing.classes)

    def predict(
        self,
        images: Any,
        top_k: int = 3,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> pd.DataFrame:
        """Classify ``images``: a file or folder path, a list of paths, a PIL image or a list
        of them, or a uint8 tensor ``(N, C, H, W)`` at the run's image size.

        Returns one row per image: file, predicted_class, confidence, top1..topK class and
        probability. Unreadable files are skipped with a warning naming them.

        A text run takes texts: a string or a list of strings (``["enak sekali", ...]``),
        or the path of a ``.csv`` (the run's text column) or ``.txt`` file (one text per
        line); rows: source, text, predicted_class, confidence, top-k (+ ``true_class``,
        ``correct`` for a CSV with the run's label column).
        """
        from runner.predict import Predictor, image_files, pil_to_tensor

        if self.preprocessing.kind == "text":
            return self._predict_texts(images, top_k, batch_size, device)

        predictor = Predictor(self.model, self.preprocessing, device)
        if isinstance(images, torch.Tensor):
            x = images.unsqueeze(0) if images.dim() == 3 else images
            names = [f"image {i}" for i in range(len(x))]
            return predictor.table(predictor.probabilities(x), names, top_k)
        items = images if isinstance(images, (list, tuple)) else [images]
        if items and all(hasattr(i, "convert") for i in items):  # PIL images
            x = torch.stack([pil_to_tensor(i, self.preprocessing) for i in items])
            names = [getattr(i, "filename", "") or f"image {n}" for n, i in enumerate(items)]
            return predictor.table(predictor.probabilities(x), names, top_k)
        result = predictor.predict_files(image_files(items), batch_size, top_k, progress=None)
        if result.skipped:
            listed = "; ".join(f"{f} ({e})" for f, e in result.skipped[:10])
            message = f"skipped {len(result.skipped)} unreadable file(s): {listed}"
            warnings.warn(message, stacklevel=2)
        return result.table

    def _predict_texts(self, texts: Any, top_k: int, batch_size: int, device: str) -> Any:
        from runner.checkpoint import stored_config
        from runner.text.predict import TextPredictor, Texts

        dataset = stored_config(self.checkpoint()).get("dataset") or {}
        predictor = TextPredictor(
            self.model,
            self.preprocessing,
            self.vocabulary,
            device,
            str(dataset.get("text_column", "text")),
            str(dataset.get("label_column", "label")),
        )
        items = [texts] if isinstance(texts, (str, Path)) else list(texts)
        if items and all(_text_file(i) for i in items):
            return predictor.predict_files(items, top_k, batch_size)
        if not all(isinstance(i, str) for i in items):
            raise TypeError("a text run predicts strings, or .csv / .txt files of texts")
        names = [f"text {n}" for n in range(len(items))]
        return predictor.predict(Texts(items, names, [None] * len(items)), top_k, batch_size)


def _text_file(item: Any) -> bool:
    """A path (str or Path) of an existing .csv / .txt file."""
    if not isinstance(item, (str, Path)) or Path(item).suffix.lower() not in (".csv", ".txt"):
        return False
    try:
        return Path(item).is_file()
    except (OSError, ValueError):  # a long text or one with NUL is no file name
        return False


def load_run(path: str | Path) -> Run:
    """Open a run directory (``outputs/runs/...`` or a sweep job's folder)."""
    return Run(path)
