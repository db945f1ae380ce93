"""Schemas of the experiment trackers in ``conf/logger/`` (picked up by
:func:`runner.schema.register_all`).

``cfg.logger`` is a mapping *tracker name → settings*; each file in
``conf/logger/`` adds one entry, typed by the dataclass below, so
``logger=[csv,tensorboard]`` (or ``logger=many``) turns on several at once and
``logger.tensorboard.every_n_steps=10`` fails loudly if misspelt. Names allowed:
``csv``, ``tensorboard``, ``mlflow`` (see :data:`runner.tracking.LOGGERS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CSVLoggerConf:
    """Plain files in the run directory: ``logs/steps.csv`` and ``logs/hparams.csv``."""

    log_steps: bool = True  # one row per logged optimizer step: step, epoch, loss, lr
    every_n_steps: int = 0  # optimizer steps between rows; 0 = trainer.log_every_n_steps
    hparams: bool = True  # logs/hparams.csv: flattened config + final metrics, one row


@dataclass
class TensorBoardConf:
    """``torch.utils.tensorboard`` event files; view with ``tensorboard --logdir outputs``."""

    log_dir: str = "tensorboard"  # relative to the run directory, or absolute
    log_steps: bool = True  # per-step scalars step/train_loss and step/lr
    every_n_steps: int = 0  # optimizer steps between step scalars; 0 = trainer.log_every_n_steps
    hparams: bool = True  # HParams tab: flattened config with the final metrics


@dataclass
class MLflowConf:
    """MLflow tracking: params, per-epoch metrics, final metrics and the run's files."""

    # "" = sqlite:///<outputs>/mlflow.db (<outputs>: nearest ancestor of the run directory
    # named "outputs", else the run's (or sweep's) parent); or any MLflow URI:
    # http://host:5000, sqlite:////abs/mlflow.db, file:///abs/mlruns, databricks
    tracking_uri: str = ""
    # "" = "runner" for single runs, "sweep-<sweep directory name>" for each multirun
    experiment_name: str = ""
    run_name: str = ""  # "" = the run directory's name (sweeps: "<sweep>/<job>")
    tags: dict[str, str] = field(default_factory=dict)  # extra tags on every run
    log_steps: bool = False  # per-step metrics step_train_loss / step_lr
    every_n_steps: int = 0  # optimizer steps between step metrics; 0 = trainer.log_every_n_steps
    log_artifacts: bool = True  # figures, CSVs, summary.json, config and log of the run
    log_checkpoint: bool = False  # also upload checkpoints/best.pt (can be large)


SCHEMAS: dict[str, dict[str, type]] = {
    "logger": {"csv": CSVLoggerConf, "tensorboard": TensorBoardConf, "mlflow": MLflowConf}
}
