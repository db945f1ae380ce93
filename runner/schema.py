"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each YAML file in ``conf/<group>/`` names its schema in its defaults list
(``- /schema/<group>/<name>@_here_``), so Hydra merges the user's YAML onto
a typed, closed dataclass: a misspelt key or a wrong type fails while the
config is composed, with the key's full name, before any work starts.
Range checks that a type cannot express live in :mod:`runner.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

# --------------------------------------------------------------------- trainer


@dataclass
class EarlyStoppingConf:
    enabled: bool = True
    monitor: str = "val_loss"  # val_loss | val_acc | val_macro_f1 | train_loss | train_acc
    mode: str = "auto"  # auto (min for *loss, max otherwise) | min | max
    patience: int = 10  # epochs without improvement before stopping
    min_delta: float = 0.0  # smallest change that counts as an improvement


@dataclass
class TrainerConf:
    max_epochs: int = 20
    batch_size: int = 64
    eval_batch_size: int = 512
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "32"  # 32 | bf16 | 16-mixed
    channels_last: bool = False
    compile: bool = False  # torch.compile the model
    seed: int = 42
    deterministic: bool = False
    num_threads: int = 0  # 0 = the cores this process may use
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    class_weights: Any = None  # null | balanced | [w0, w1, ...]
    grad_clip: float = 0.0  # max global grad-norm, 0 = off
    monitor: str = "val_loss"  # metric that picks the best checkpoint and is returned
    early_stopping: EarlyStoppingConf = field(default_factory=EarlyStoppingConf)
    checkpointing: bool = True  # write checkpoints/last.pt and best.pt
    resume: Any = False  # false | true (run dir's last.pt) | path to a checkpoint
    limit_train_batches: int = 0  # 0 = all; >0 caps batches per epoch (smoke runs)
    limit_eval_batches: int = 0
    progress_bar: Any = "auto"  # auto (only on a terminal) | true | false
    log_every_n_steps: int = 50
    divergence_check: bool = True
    # speed and fast-training options (issue 8)
    optimizer_impl: str = "auto"  # auto (fused where torch has it) | fused | foreach | for_loop
    tta: str = "none"  # none | flip: evaluate on each image and its mirror, average the logits
    bn_momentum: float | None = None  # null = the model's; torch convention (0.1 default)
    bn_eps: float | None = None  # null = the model's (1e-5)
    ema_decay: float = 0.0  # 0 = off; e.g. 0.999: evaluate a moving average of the weights


# ---------------------------------------------------------------- optimizers


@dataclass
class OptimizerConf:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.01
    weight_decay: float = 0.0


@dataclass
class SGDConf(OptimizerConf):
    _target_: str = "torch.optim.SGD"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    dampening: float = 0.0


@dataclass
class AdamConf(OptimizerConf):
    _target_: str = "torch.optim.Adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False


@dataclass
class AdamWConf(AdamConf):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 1e-2


@dataclass
class RMSpropConf(OptimizerConf):
    _target_: str = "torch.optim.RMSprop"
    lr: float = 1e-3
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False


# ---------------------------------------------------------------- schedulers


@dataclass
class SchedulerConf:
    """Common keys; ``name``/``interval``/``warmup_*`` are the runner's, not torch's."""

    name: str = "none"
    _target_: Any = None
    _partial_: bool = True
    interval: str = "epoch"  # epoch | step: when .step() is called
    warmup_epochs: float = 0.0  # linear warm-up from warmup_start_factor * lr
    warmup_start_factor: float = 0.1


@dataclass
class StepLRConf(SchedulerConf):
    name: str = "step"
    _target_: Any = "torch.optim.lr_scheduler.StepLR"
    step_size: int = 25
    gamma: float = 0.1


@dataclass
class MultiStepLRConf(SchedulerConf):
    name: str = "multistep"
    _target_: Any = "torch.optim.lr_scheduler.MultiStepLR"
    milestones: list[int] = field(default_factory=lambda: [30, 60, 90])
    gamma: float = 0.1


@dataclass
class CosineConf(SchedulerConf):
    name: str = "cosine"
    _target_: Any = "torch.optim.lr_scheduler.CosineAnnealingLR"
    T_max: int = 0  # epochs; 0 = trainer.max_epochs
    eta_min: float = 0.0


@dataclass
class OneCycleConf(SchedulerConf):
    name: str = "onecycle"
    _target_: Any = "torch.optim.lr_scheduler.OneCycleLR"
    interval: str = "step"
    max_lr: float = 0.0  # 0 = the optimizer's lr
    pct_start: float = 0.25
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    cycle_momentum: bool = False


@dataclass
class CyclicConf(SchedulerConf):
    name: str = "cyclic"
    _target_: Any = "torch.optim.lr_scheduler.CyclicLR"
    interval: str = "step"
    base_lr: float = 1e-4
    max_lr: float = 0.0  # 0 = the optimizer's lr
    step_size_up: int = 0  # steps; 0 = two epochs' worth
    mode: str = "triangular"
    cycle_momentum: bool = False


@dataclass
class PlateauConf(SchedulerConf):
    name: str = "plateau"
    _target_: Any = "torch.optim.lr_scheduler.ReduceLROnPlateau"
    monitor: str = "val_loss"
    mode: str = "auto"
    factor: float = 0.1
    patience: int = 5
    threshold: float = 1e-4
    min_lr: float = 0.0


# ---------------------------------------------------------------- models


@dataclass
class ModelConf:
    _target_: str = "???"
    name: str = "???"
    init: str = "default"  # default | kaiming | xavier | orthogonal


@dataclass
class CustomCNNConf(ModelConf):
    _target_: str = "models.custom_cnn.CustomCNN"
    name: str = "custom_cnn"
    filters: list[int] = field(default_factory=lambda: [32, 64, 128])
    kernel_size: int = 3
    padding: str = "same"  # same | valid
    pooling: str = "max"  # max | avg
    batch_norm: bool = True
    activation: str = "relu"
    fc_neurons: list[int] = field(default_factory=lambda: [512])
    dropout: float = 0.5


@dataclass
class ResNetConf(ModelConf):
    """One ResNet family: Plain (shortcut=false), ResNet, SE-ResNet, Mish-ResNet."""

    _target_: str = "models.resnet.ResNet"
    name: str = "resnet18"
    depth: int = 18  # 18 | 34 (BasicBlock) | 50 | 101 | 152 (Bottleneck)
    shortcut: bool = True  # false = plain net, no identity/projection path
    attention: str = "none"  # none | se
    se_reduction: int = 16
    activation: str = "relu"  # relu | leaky_relu | mish | gelu | silu
    stem: str = "auto"  # auto (cifar below 100 px) | cifar | imagenet
    zero_init_residual: bool = False
    width: int = 64  # channels of the first stage


# ---------------------------------------------------------------- datasets


@dataclass
class AugmentConf:
    """Training-time augmentation, applied in batches on the training device."""

    crop_padding: int = 0  # RandomCrop(size, padding=p); 0 = off
    hflip: bool = False  # RandomHorizontalFlip(p=0.5)
    random_resized_crop: bool = False  # scale (0.35, 1) then back to image_size
    rotation: float = 0.0  # max degrees, 0 = off
    color_jitter: float = 0.0  # brightness/contrast/saturation strength, 0 = off
    cutout: int = 0  # side of a zeroed square, 0 = off


@dataclass
class DatasetConf:
    _target_: str = "???"
    name: str = "???"
    root: str = "${oc.env:RUNNER_DATA,${runner_root:}/data}"
    download: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    normalize: str = "dataset"  # dataset | half (mean=std=0.5) | imagenet | none
    subset: float = 0.0  # >0: keep this fraction (<=1) or count (>1) of train per class
    augment: AugmentConf = field(default_factory=AugmentConf)


@dataclass
class DigitsConf(DatasetConf):
    _target_: str = "runner.data.digits.load_digits"
    name: str = "digits"
    val_fraction: float = 0.15
    test_fraction: float = 0.15


@dataclass
class SyntheticConf(DatasetConf):
    _target_: str = "runner.data.synthetic.load_synthetic"
    name: str = "synthetic"
    num_samples: int = 512
    image_size: int = 32
    channels: int = 3
    num_classes: int = 4
    val_fraction: float = 0.2
    test_fraction: float = 0.2


# ---------------------------------------------------------------- top level


@dataclass
class RunnerConf:
    defaults: list[Any] = field(default_factory=list)
    model: Any = None
    dataset: Any = None
    optimizer: Any = None
    scheduler: Any = None
    trainer: TrainerConf = field(default_factory=TrainerConf)
    diagnostics: Any = None  # conf/diagnostics/ (runner.diagnostics)
    logger: Any = None  # conf/logger/ (experiment trackers)
    run_dir: str = "${hydra:runtime.output_dir}"
    task_name: str = "train"
    notes: str = ""


SCHEMAS: dict[str, dict[str, type]] = {
    "optimizer": {"sgd": SGDConf, "adam": AdamConf, "adamw": AdamWConf, "rmsprop": RMSpropConf},
    "scheduler": {
        "none": SchedulerConf,
        "step": StepLRConf,
        "multistep": MultiStepLRConf,
        "cosine": CosineConf,
        "onecycle": OneCycleConf,
        "cyclic": CyclicConf,
        "plateau": PlateauConf,
    },
    "model": {"custom_cnn": CustomCNNConf, "resnet": ResNetConf},
    "dataset": {"digits": DigitsConf, "synthetic": SyntheticConf},
    "trainer": {"default": TrainerConf},
}


def register(group: str, name: str, node: type) -> None:
    """Add a schema (other modules call this to extend a group)."""
    SCHEMAS.setdefault(group, {})[name] = node
    ConfigStore.instance().store(group=f"schema/{group}", name=name, node=node)


# Modules owned by other areas that define a ``SCHEMAS`` dict of their own
# ({group: {name: dataclass}}); merged here when they exist.
EXTRA_SCHEMA_MODULES = (
    "runner.data.schema",
    "runner.text.schema",
    "runner.diagnostics.schema",
    "runner.tracking.schema",
)


def register_all() -> None:
    import importlib

    for module_name in EXTRA_SCHEMA_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is None or not module_name.startswith(err.name):
                raise  # a real import error inside an existing module
            continue
        for group, members in module.SCHEMAS.items():
            SCHEMAS.setdefault(group, {}).update(members)
    cs = ConfigStore.instance()
    cs.store(name="runner_schema", node=RunnerConf)
    for group, members in SCHEMAS.items():
        for name, node in members.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
