"""The checkpoint format: what a checkpoint holds, writing and reading it, and rebuilding a
model from it.

A checkpoint is a dict of tensors and plain values, loadable with
``torch.load(weights_only=True)`` — a pickle that would run code is refused. Its stored
config is data only: the model is rebuilt through the model registry
(:func:`runner.zoo.build_model`) from the config's ``family`` and plain keyword values,
never by instantiating a stored ``_target_``.

A run keeps two files (``trainer.save``): ``best.pt`` holds the best epoch's weights and
what rebuilding the model needs (:data:`WEIGHTS_KEYS`: weights, epoch, config, classes,
preprocessing) — no optimizer state; ``last.pt`` holds what a resume needs (optimizer,
scheduler, scaler, RNG, loop and callback states, and the latest weights). When the latest
epoch is also the best, ``last.pt`` does not repeat the weights: it holds
``weights_in_best`` instead of ``model``, and :func:`load` takes them from the ``best.pt``
beside it (checked by epoch). :class:`CheckpointFiles` writes both so that a job killed at
any moment leaves a readable ``best.pt`` and a ``last.pt`` whose weights can be found.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from runner.errors import CheckpointError
from runner.tta import describe_tta

log = logging.getLogger(__name__)

MODEL = "model"  # the evaluated weights (the moving average with trainer.ema_decay)
TRAIN_MODEL = "train_model"  # the trained weights, when they differ (EMA)
OPTIMIZER, SCHEDULER, SCALER = "optimizer", "scheduler", "scaler"
LOOP = "state"  # runner.engine.TrainState as a dict
CALLBACKS = "callbacks"  # {callback class name: its state_dict()}
EPOCH, RNG, CONFIG, CLASSES, DATA = "epoch", "rng", "config", "classes", "data"
SHARED = "weights_in_best"  # in last.pt instead of MODEL: its weights are best.pt's (same epoch)
# best.pt: what predict, export, verify and runner.load_run read; no optimizer state
WEIGHTS_KEYS = (MODEL, EPOCH, CONFIG, CLASSES, DATA)
SAVE_CHOICES = ("both", "best", "last", "none")  # trainer.save

# the first runner named classes, not registry entries, in stored configs
LEGACY_MODEL_TARGETS = {
    "models.custom_cnn.CustomCNN": "custom_cnn",
    "models.resnet.ResNet": "resnet",
    "models.text.RNNClassifier": "rnn",
}
LEGACY_DATASET_TARGETS = {
    "runner.data.digits.load_digits": "digits",
    "runner.data.synthetic.load_synthetic": "synthetic",
    "runner.data.cifar.load_cifar10": "cifar10",
    "runner.data.mnist.load_mnist": "mnist",
    "runner.data.mnist.load_fashion_mnist": "fashion_mnist",
    "runner.data.imagefolder.load_image_folder": "imagefolder",
    "runner.text.nusax.load_nusax": "text_csv",
}


# ------------------------------------------------------------------ files
def save(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (a reader sees the old file or the new one)."""
    from runner.io import save_torch

    return save_torch(path, payload)


def load(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a clear error for unreadable files; a
    ``last.pt`` that shares its weights with ``best.pt`` gets them from there."""
    ckpt = _read(path)
    if isinstance(ckpt, dict) and MODEL not in ckpt and ckpt.get(SHARED):
        ckpt[MODEL] = _shared_weights(Path(path), ckpt)[MODEL]
    if not isinstance(ckpt, dict) or MODEL not in ckpt:
        raise CheckpointError(f"{path} is not a runner checkpoint (no {MODEL!r} weights)")
    return ckpt


def load_for_resume(path: str | Path) -> dict[str, Any]:
    """:func:`load`, refusing a weights-only checkpoint (a ``best.pt``)."""
    ckpt = load(path)
    if OPTIMIZER not in ckpt:
        raise CheckpointError(
            f"{path} holds weights only (a best.pt: no optimizer, scheduler or RNG state), so "
            "training cannot continue from it: resume from a last.pt, or start a new run from "
            f"these weights with model.weights={path}"
        )
    return ckpt


def _shared_weights(path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """The weights-only checkpoint that ``path`` (a last.pt) takes its weights from: the
    ``best.pt`` beside it, or its kept link while best.pt was being replaced. Read in full,
    not memory-mapped: a mapping would keep a replaced best.pt's space for as long as the
    weights live."""
    for _ in range(2):  # a job may replace best.pt between choosing and reading it
        content = _read(_shared_source(path, ckpt))
        if content.get(EPOCH) == ckpt.get(EPOCH):
            return content
    return _read(_shared_source(path, ckpt))


def _shared_source(path: Path, ckpt: dict[str, Any]) -> Path:
    """Which of those files holds the weights of ``ckpt``'s epoch (their epochs are read
    through a memory map, without reading the weights)."""
    from runner.rundir import KEPT_BEST, checkpoint_name

    epoch = ckpt.get(EPOCH)
    found = []
    for source in (path.with_name(checkpoint_name("best")), path.with_name(KEPT_BEST)):
        if not source.is_file():
            continue
        content = _read(source, mmap=True)
        held = content.get(EPOCH) if isinstance(content, dict) else None
        found.append(f"{source.name} holds epoch {held}")
        if held == epoch and MODEL in content:
            return source
    raise CheckpointError(
        f"{path} (epoch {epoch}) takes its weights from the best.pt beside it — its best "
        f"epoch was its last — but {'; '.join(found) or 'there is no best.pt'}. Keep (or copy) "
        "checkpoints/best.pt together with last.pt; runner-clean --keep none removes both"
    )


def _read(path: str | Path, mmap: bool = False) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err)[:200]}). It is "
            "truncated or not a runner checkpoint: delete it to start afresh, or point "
            "trainer.resume at another checkpoint."
        ) from None


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Load a state dict strictly, explaining a mismatch with the configured model."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()][:4]
        raise CheckpointError(
            f"checkpoint {path} does not fit the configured model (another model config was used "
            f"to train it): {' '.join(lines)[:400]}. Use the same model=... and model.* overrides "
            "as the run that wrote it."
        ) from None


def read_weights(path: str | Path) -> tuple[dict[str, Any], Preprocessing | None, str]:
    """The weights at ``path`` for ``model.weights`` — weights only, nothing instantiated.

    ``path``: a run directory (its best checkpoint, else its last), a runner checkpoint, or a
    plain state-dict file (``torch.save(model.state_dict())`` .pt/.pth, a Lightning-style
    ``{"state_dict": …}``, or ``.safetensors``). Returns the state dict, the run's
    preprocessing (runner checkpoints only) and a label naming the file.
    """
    from runner.rundir import CHECKPOINT_NAMES, RunDir

    file = Path(path)
    if file.is_dir():
        found = [RunDir(file).checkpoint(n) for n in CHECKPOINT_NAMES]
        found = [f for f in found if f.exists()]
        if not found:
            raise CheckpointError(
                f"model.weights={path}: a directory without checkpoints/best.pt or last.pt (not "
                "a finished runner run)"
            )
        file = found[0]
    if file.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(
                f"{file}: reading .safetensors needs pip install safetensors"
            ) from None
        return dict(load_file(str(file), device="cpu")), None, str(file)
    try:
        content = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"model.weights={file} cannot be read as weights ({type(err).__name__}: "
            f"{str(err)[:200]}): give a state-dict file, a runner checkpoint or a run directory"
        ) from None
    if isinstance(content, dict) and content.get(SHARED) and MODEL not in content:
        content = load(file)  # a last.pt whose weights are in the best.pt beside it
    if isinstance(content, dict) and isinstance(content.get(MODEL), dict):
        stored = Preprocessing.from_checkpoint(content) if content.get(DATA) else None
        return content[MODEL], stored, str(file)
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if (
        isinstance(content, dict)
        and content
        and all(isinstance(v, torch.Tensor) for v in content.values())
    ):
        return content, None, str(file)
    raise CheckpointError(f"model.weights={file} holds no state dict (name → tensor)")


# ------------------------------------------------------------------ training state
class CheckpointFiles:
    """Writes a run's ``best.pt`` and ``last.pt`` after each epoch, as ``save`` (trainer.save:
    both | best | last | none) asks.

    Every file is written to a temporary name and renamed (a reader sees the old file or the
    new one). Order: ``best.pt`` first, then ``last.pt`` — when the epoch is the best,
    ``last.pt`` then takes its weights from ``best.pt`` (no second copy). While ``best.pt`` is
    replaced, the weights the ``last.pt`` on disk may still take from it stay reachable
    under a second name (a hard link, :data:`runner.rundir.KEPT_BEST`, removed once the new
    ``last.pt`` is in place), so a job killed between the two writes can still resume.
    """

    def __init__(self, best_path: Path, last_path: Path, kept_path: Path, save: str) -> None:
        if save not in SAVE_CHOICES:
            raise ValueError(f"save={save!r}; valid: {', '.join(SAVE_CHOICES)}")
        self.best_path, self.last_path, self.kept_path = best_path, last_path, kept_path
        self.keeps_best = save in ("both", "best")
        self.keeps_last = save in ("both", "last")
        self._needed: Path | None = None  # the file last.pt takes its weights from
        self._known = False  # _needed describes the last.pt on disk (else: look)

    @classmethod
    def of(cls, run: Any, save: str) -> CheckpointFiles:
        """The files of ``run`` (a :class:`runner.rundir.RunDir`)."""
        from runner.rundir import CHECKPOINTS, KEPT_BEST

        kept = run / CHECKPOINTS / KEPT_BEST
        return cls(run.checkpoint("best"), run.checkpoint("last"), kept, save)

    def write(self, content: dict[str, Any], best: bool) -> None:
        """Write the epoch whose :func:`payload` is ``content``; ``best``: it is the best.

        A file this ``save`` does not keep, left by the run before a resume that changed
        trainer.save, goes: ``last.pt`` at once, ``best.pt`` once a better epoch makes it
        stale (until then the test and predict still use it)."""
        if not self.keeps_last:
            self._drop(self.last_path)
        if best and self.keeps_best:
            if self._weights_of_last() == self.best_path:
                _link(self.best_path, self.kept_path)
                self._needed, self._known = self.kept_path, True
            save(self.best_path, weights_only(content))
        if self.keeps_last:
            shared = best and self.keeps_best
            save(self.last_path, resume_only(content) if shared else content)
            self._needed, self._known = (self.best_path if shared else None), True
            self.kept_path.unlink(missing_ok=True)
        if best and not self.keeps_best:
            self._drop(self.best_path)

    def _drop(self, path: Path) -> None:
        if path.exists() or self.kept_path.exists():
            path.unlink(missing_ok=True)
            self.kept_path.unlink(missing_ok=True)
            log.info("removed %s (trainer.save keeps no such file)", path)

    def _weights_of_last(self) -> Path | None:
        """The file the last.pt on disk takes its weights from (``None``: its own)."""
        if not self._known and self.last_path.is_file():  # a resumed run's
            try:
                ckpt = _read(self.last_path, mmap=True)
                if isinstance(ckpt, dict) and MODEL not in ckpt and ckpt.get(SHARED):
                    self._needed = _shared_source(self.last_path, ckpt)
            except CheckpointError:  # unreadable or its weights lost: nothing to keep
                pass
        self._known = True
        return self._needed


def _link(source: Path, target: Path) -> None:
    """``target`` becomes a second name of ``source`` (a copy where hard links fail)."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def weights_only(content: dict[str, Any]) -> dict[str, Any]:
    """The ``best.pt`` part of a :func:`payload`: weights and what rebuilds the model."""
    return {k: content[k] for k in WEIGHTS_KEYS}


def resume_only(content: dict[str, Any]) -> dict[str, Any]:
    """A :func:`payload` whose weights are in the ``best.pt`` of the same epoch."""
    return {**{k: v for k, v in content.items() if k != MODEL}, SHARED: True}


def payload(loop: Any, callbacks: list[Any], config: dict[str, Any], data: Any) -> dict[str, Any]:
    """Everything a resume, predict and export need, from the loop after an epoch.

    ``config``: the run config as plain data (``OmegaConf.to_container(..., enum_to_str)``).
    """
    from runner.runtime import rng_state

    parts = loop.parts
    extra = {TRAIN_MODEL: loop.model.state_dict()} if parts.ema is not None else {}
    return {
        MODEL: loop.evaluated_model().state_dict(),
        **extra,
        OPTIMIZER: loop.optimizer.state_dict(),
        SCHEDULER: parts.scheduler.state_dict() if parts.scheduler is not None else None,
        SCALER: loop.scaler.state_dict(),
        LOOP: asdict(loop.state),
        CALLBACKS: {type(cb).__name__: cb.state_dict() for cb in callbacks if cb.state_dict()},
        EPOCH: loop.state.epoch,
        RNG: rng_state(),
        CONFIG: config,
        CLASSES: list(data.classes),
        DATA: Preprocessing.from_data(data).stored(),
    }


def restore(loop: Any, callbacks: list[Any], ckpt: dict[str, Any], path: str | Path) -> None:
    """Put a checkpoint's weights, optimizer, scheduler, loop and callback states and RNGs
    back into a freshly built run."""
    from runner.parts import TrainState
    from runner.runtime import set_rng_state

    parts = loop.parts
    load_weights(loop.model, ckpt.get(TRAIN_MODEL, ckpt[MODEL]), path)
    if parts.ema is not None:  # without EMA weights in the checkpoint the average restarts
        load_weights(parts.ema.module, ckpt[MODEL], path)
        averaged = ckpt[LOOP]["global_step"] if TRAIN_MODEL in ckpt else 0
        parts.ema.n_averaged.fill_(averaged)
    loop.optimizer.load_state_dict(ckpt[OPTIMIZER])
    if parts.scheduler is not None and ckpt.get(SCHEDULER) is not None:
        parts.scheduler.load_state_dict(ckpt[SCHEDULER])
    loop.scaler.load_state_dict(ckpt[SCALER])
    fields = set(TrainState.__dataclass_fields__)
    loop.state = TrainState(**{k: v for k, v in ckpt[LOOP].items() if k in fields})
    states = ckpt.get(CALLBACKS) or _legacy_callback_states(ckpt[LOOP])
    for cb in callbacks:
        state = states.get(type(cb).__name__)
        if state is not None:
            cb.load_state_dict(state)
    set_rng_state(ckpt[RNG])
    log.info("resumed from %s at epoch %d", path, loop.state.epoch)


def _legacy_callback_states(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Early stopping and best-epoch tracking were loop state in the first runner."""
    if "best_epoch" not in state:
        return {}
    return {
        "Checkpointing": {"best_value": state["best_value"], "best_epoch": state["best_epoch"]},
        "EarlyStopping": {"reference": state.get("es_value"), "bad_epochs": state["bad_epochs"]},
    }


# ------------------------------------------------------------------ preprocessing
@dataclass
class Preprocessing:
    """How the run's inputs were made: uint8 images → ``(x / 255 - mean) / std``.

    kind: image | text. image_size: (height, width) in pixels. mean/std: per channel,
    in units of [0, 1] pixel values. tta: the run's trainer.tta (:mod:`runner.tta`).
    """

    kind: str
    channels: int
    image_size: tuple[int, int]
    mean: list[float]
    std: list[float]
    classes: list[str]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: list[int] = field(default_factory=list)
    tta: str = "none"
    source: str = ""  # where mean/std and size came from: "" = the dataset; else the weights

    @classmethod
    def from_data(cls, data: Any) -> Preprocessing:
        from runner.rundir import WEIGHTS_PREPROCESSING

        image = data.kind == "image"
        kwargs = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in data.model_kwargs().items()
            if isinstance(v, (bool, int, float, str, tuple, list))
        }
        return cls(
            kind=data.kind,
            channels=data.channels if image else 0,
            image_size=data.image_size if image else (0, 0),
            mean=[float(v) for v in data.mean],
            std=[float(v) for v in data.std],
            classes=list(data.classes),
            model_kwargs=kwargs,
            input_shape=[int(v) for v in data.input_shape()],
            source=str((data.artifacts.get(WEIGHTS_PREPROCESSING) or {}).get("source", "")),
        )

    def stored(self) -> dict[str, Any]:
        """The checkpoint's ``data`` entry."""
        return {
            "kind": self.kind,
            "mean": self.mean,
            "std": self.std,
            "source": self.source,
            "input_shape": self.input_shape,
            "model_kwargs": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.model_kwargs.items()
            },
        }

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Preprocessing:
        data = ckpt.get(DATA)
        if not data:
            raise CheckpointError(
                "this checkpoint has no 'data' entry (input shape, mean, std): it was written "
                "by an older runner. Train the run again to predict or export with it."
            )
        shape = [int(v) for v in data["input_shape"]]
        image = data["kind"] == "image"
        kwargs = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data["model_kwargs"].items()
        }
        trainer = (ckpt.get(CONFIG) or {}).get("trainer") or {}
        return cls(
            kind=data["kind"],
            channels=shape[0] if image else 0,
            image_size=(shape[1], shape[2]) if image else (0, 0),
            mean=list(data["mean"]) or [0.0] * (shape[0] if image else 0),
            std=list(data["std"]) or [1.0] * (shape[0] if image else 0),
            classes=[str(c) for c in ckpt[CLASSES]],
            model_kwargs=kwargs,
            input_shape=shape,
            tta=str(trainer.get("tta", "none")) if image else "none",
            source=str(data.get("source", "")),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what a deployment needs to feed the model."""
        return {
            "kind": self.kind,
            "input_layout": "NCHW float32" if self.kind == "image" else "N,L int64 token ids",
            "channels": self.channels,
            "color_mode": "RGB" if self.channels == 3 else "L (grey)",
            "image_size": list(self.image_size),
            "resize": "shorter side to image_size (bilinear, antialiased), then centre crop",
            "scale": "pixel / 255",
            "mean": self.mean,
            "std": self.std,
            "normalisation_source": self.source or "the dataset",
            "classes": self.classes,
            "test_time_augmentation": describe_tta(self.tta),
        }

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` → float32 normalised, as the training loader does."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float() / 255.0 - mean) / std


# ------------------------------------------------------------------ rebuilding
def stored_config(ckpt: dict[str, Any], source: str | Path = "the checkpoint") -> dict[str, Any]:
    """The checkpoint's run config as plain data, checked (:func:`check_stored_config`), with
    the first runner's class names mapped to registry entries."""
    config = ckpt.get(CONFIG) or {}
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: its stored config is not a mapping; refusing it")
    return check_stored_config(config, source)


def check_stored_config(config: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """Refuse a stored config (a checkpoint's or ``.hydra/config.yaml``) that names anything
    but registry entries and torch's optimizer and scheduler classes; return it with the
    first runner's model/dataset class names mapped to their registry entries.

    Nothing in it is imported or called: a model is rebuilt from ``model.family`` and a
    dataset from ``dataset.format`` through their registries, with schema-checked plain
    values; ``optimizer._target_`` / ``scheduler._target_`` must name classes of the
    (already loaded) torch modules. Anything else is a :class:`CheckpointError`.
    """
    config = dict(config)
    for group, legacy, key in (
        ("model", LEGACY_MODEL_TARGETS, "family"),
        ("dataset", LEGACY_DATASET_TARGETS, "format"),
    ):
        node = config.get(group)
        if isinstance(node, dict) and "_target_" in node:
            target = str(node["_target_"])
            if key in node or target not in legacy:
                raise _unsafe(source, f"{group}._target_", target)
            node = {k: v for k, v in node.items() if k != "_target_"}
            node[key] = legacy[target]
            config[group] = node
    _check_registered(config, source)
    for path, value in _targets(config, ""):
        if path == "optimizer._target_":
            from runner.optim import RUNNER_OPTIMIZERS

            if str(value) not in RUNNER_OPTIMIZERS:
                _check_torch_class(source, path, value, torch.optim.Optimizer, "torch optimizer")
        elif path == "scheduler._target_" and value is not None:
            schedulers = torch.optim.lr_scheduler
            bases = (schedulers.LRScheduler, schedulers.ReduceLROnPlateau)
            _check_torch_class(source, path, value, bases, "torch lr scheduler")
        elif path != "scheduler._target_":
            raise _unsafe(source, path, value)
    return config


def _check_registered(config: dict[str, Any], source: Any) -> None:
    """``model.family`` and ``dataset.format`` must name registry entries."""
    from runner.data.registry import DATASETS
    from runner.zoo import MODELS

    for group, key, registry in (("model", "family", MODELS), ("dataset", "format", DATASETS)):
        node = config.get(group)
        name = node.get(key) if isinstance(node, dict) else None
        if name is not None and (not isinstance(name, str) or name not in registry):
            raise CheckpointError(
                f"{source}: its stored config names {registry.unknown(name)}; refusing "
                "to open it (a stored config may only name registry entries)"
            )


def _targets(node: Any, prefix: str) -> list[tuple[str, Any]]:
    """Every ``_target_`` key below ``node`` (dotted path, value)."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if key == "_target_":
                found.append((path, value))
            found += _targets(value, path + ".")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _targets(value, f"{prefix}{i}.")
    return found


def _check_torch_class(source: Any, path: str, value: Any, base: Any, what: str) -> None:
    from runner.errors import ConfigError
    from runner.registry import resolve_class

    try:
        resolve_class(value, base, what, path, load=False)
    except ConfigError:
        raise _unsafe(source, path, value) from None


def _unsafe(source: Any, path: str, value: Any) -> CheckpointError:
    return CheckpointError(
        f"{source}: its stored config sets {path}={value!r}, which is not a registered model "
        "family, dataset format or torch optimizer/scheduler class; refusing to open it "
        "(a stored config may only name registry entries, and nothing it names is ever "
        "imported or called). Was the run written by another program, or edited?"
    )


def rebuild_model(ckpt: dict[str, Any], path: str | Path) -> torch.nn.Module:
    """The checkpoint's model with its weights, in eval mode, on the CPU."""
    from runner import zoo

    model_cfg = stored_config(ckpt, path).get("model")
    if not isinstance(model_cfg, dict):
        raise CheckpointError(f"{path} holds no model config")
    model = zoo.build_model(model_cfg, Preprocessing.from_checkpoint(ckpt).model_kwargs)
    load_weights(model, ckpt[MODEL], path)
    return model.eval()


def checkpoint_path(run: str | Path, which: str = "best") -> Path:
    """The checkpoint file of ``run``: a run directory (``which`` = best | last) or a .pt file
    (``run`` itself, or ``which`` as a path)."""
    from runner.rundir import CHECKPOINT_NAMES, RunDir

    run = Path(run)
    if run.is_file():
        return run
    if which not in CHECKPOINT_NAMES:
        if Path(which).is_file():
            return Path(which)
        raise CheckpointError(
            f"--checkpoint {which!r}: not {', '.join(CHECKPOINT_NAMES)} or an existing file"
        )
    if not run.is_dir():
        raise CheckpointError(f"no run directory at {run}")
    path = RunDir(run).checkpoint(which)
    if path.exists():
        return path
    last = RunDir(run).checkpoint("last")
    if which == "best" and last.exists():  # trainer.save=last
        log.warning(
            "%s has no checkpoints/best.pt (trained with trainer.save=last?): using the last "
            "epoch's weights, %s, which need not be the best epoch's",
            run,
            last,
        )
        return last
    found = sorted(p.name for p in path.parent.glob("*.pt"))
    raise CheckpointError(
        f"{path} does not exist (checkpoints there: {found or 'none'}). Was the run trained "
        "with trainer.save=none (or best/last), were its checkpoints removed by runner-clean, "
        "or did it fail before its first epoch?"
    )


def load_model(run: str | Path, which: str = "best") -> tuple[torch.nn.Module, Preprocessing, dict]:
    """Model (CPU, eval mode), preprocessing and raw checkpoint of a run directory or .pt
    file; the checkpoint's path is under the key ``"_path"``."""
    path = checkpoint_path(run, which)
    ckpt = load(path)
    ckpt["_path"] = str(path)
    return rebuild_model(ckpt, path), Preprocessing.from_checkpoint(ckpt), ckpt
