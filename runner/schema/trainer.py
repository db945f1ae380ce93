"""Schema of the ``trainer`` group (``conf/trainer/``): types only, values in the YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from runner.schema.base import choice

MONITORS = ("val_loss", "val_acc", "val_macro_f1", "train_loss", "train_acc")
Monitor = choice("Monitor", MONITORS)
Mode = choice("Mode", ("auto", "min", "max"))
Precision = choice("Precision", ("auto", "32", "bf16", "16-mixed"))
OptimizerImpl = choice("OptimizerImpl", ("auto", "fused", "foreach", "for_loop"))
TTA = choice("TTA", ("none", "flip", "flip_translate"))  # runner.tta.MODES
Save = choice("Save", ("both", "best", "last", "none"))


@dataclass
class EarlyStoppingConf:
    enabled: bool = MISSING
    monitor: Monitor = MISSING
    mode: Mode = MISSING
    patience: int = MISSING
    min_delta: float = MISSING


@dataclass
class TrainerConf:
    max_epochs: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    device: str = MISSING  # auto | cpu | cuda | cuda:N | mps (a pattern: checked by validate)
    precision: Precision = MISSING
    channels_last: Any = MISSING  # auto | true | false (checked by validate)
    compile: Any = MISSING  # auto | true | false (checked by validate)
    seed: int = MISSING
    deterministic: bool = MISSING
    num_threads: int = MISSING
    label_smoothing: float = MISSING
    class_weights: Any = MISSING  # null | balanced | [w0, w1, ...]
    grad_clip: float = MISSING
    monitor: Monitor = MISSING
    early_stopping: EarlyStoppingConf = field(default_factory=EarlyStoppingConf)
    save: Save = MISSING
    resume: Any = MISSING  # false | true | a checkpoint path
    limit_train_batches: int = MISSING
    limit_eval_batches: int = MISSING
    progress_bar: Any = MISSING  # auto | true | false
    log_every_n_steps: int = MISSING
    divergence_check: bool = MISSING
    optimizer_impl: OptimizerImpl = MISSING
    tta: TTA = MISSING
    bn_momentum: float | None = MISSING
    bn_eps: float | None = MISSING
    ema_decay: float = MISSING
    unfreeze_at_epoch: int = MISSING
    backbone_lr_ratio: float = MISSING
    stage_lr_multipliers: list[float] = MISSING
    mixup_alpha: float = MISSING
    cutmix_alpha: float = MISSING
    mix_switch_prob: float = MISSING
    mix_prob: float = MISSING
    accumulate_grad_batches: int = MISSING
    max_time: Any = MISSING  # null | HH:MM:SS | DD:HH:MM:SS | seconds (checked by validate)


SCHEMAS = {"trainer": {"default": TrainerConf}}
