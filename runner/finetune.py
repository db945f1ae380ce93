"""Fine-tuning controls: ``model.freeze``, ``trainer.unfreeze_at_epoch`` and discriminative
learning rates (``trainer.backbone_lr_ratio``, ``trainer.stage_lr_multipliers``).

Stages are the model registry's feature stages, input to output (:mod:`runner.zoo`). A
parameter belongs to the first stage whose module ends at or after the parameter's module
in the network's module order — so a stem before the first stage module belongs to the
first stage; the parameters after the last stage are the classifier (the "head").

Freezing sets ``requires_grad=False`` and keeps the frozen BatchNorm layers in eval mode
(their running statistics stay as loaded; ``model.train()`` leaves them in eval).

Unfreezing: the optimizer is built over *all* parameters from the start, frozen ones
included. A frozen parameter gets no gradient, and torch's optimizers skip parameters
without one (no update, no weight decay, no state), so it does not move; at the start of
epoch ``trainer.unfreeze_at_epoch`` its ``requires_grad`` flips back and it trains at its
group's learning rate. The parameter groups, their learning rates and the scheduler
therefore cover every parameter from the first step, and a resumed run rebuilds the same
optimizer (its state loads unchanged).
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from torch import nn

from runner.callbacks import Callback
from runner.errors import ConfigError

log = logging.getLogger(__name__)

Named = list[tuple[str, nn.Parameter]]


@dataclass
class StagePlan:
    """A model's parameters by feature stage (input to output) and its classifier."""

    names: list[str]
    stages: list[Named]
    head: Named
    module_stage: dict[str, int]  # module name -> stage index (len(names) = the head)

    def backbone(self, count: int | None = None) -> Named:
        """The parameters of the first ``count`` stages (all stages for None)."""
        return [p for stage in self.stages[:count] for p in stage]


def partition(model: nn.Module, stages: list[tuple[str, nn.Module]]) -> StagePlan:
    """:class:`StagePlan` of ``model`` for its feature ``stages`` (see the module docstring)."""
    modules = list(model.named_modules())
    position = {name: i for i, (name, _) in enumerate(modules)}
    ends = []
    for name, module in stages:
        if name not in position:
            raise ValueError(f"feature stage {name!r} is not a module of the model")
        ends.append(position[name] + sum(1 for _ in module.modules()) - 1)
    ends = sorted(ends)

    def stage_of(pos: int) -> int:
        return next((i for i, end in enumerate(ends) if pos <= end), len(ends))

    module_stage = {name: stage_of(i) for i, (name, _) in enumerate(modules)}
    groups: list[Named] = [[] for _ in range(len(ends) + 1)]
    for name, param in model.named_parameters():
        owner = name.rpartition(".")[0]
        groups[module_stage[owner]].append((name, param))
    return StagePlan([n for n, _ in stages], groups[:-1], groups[-1], module_stage)


def stage_plan(family: str, model: nn.Module) -> StagePlan:
    from runner import zoo

    return partition(model, zoo.feature_stages(family, model))


def frozen_count(freeze: Any, plan: StagePlan, model_name: str) -> int:
    """How many stages ``model.freeze`` freezes: none → 0, backbone → all, N → N (refused
    beyond the number of stages, naming it)."""
    text = str(freeze).strip().lower()
    if text in ("none", "0", "false"):
        return 0
    total = len(plan.names)
    if not total:
        raise ConfigError(f"model.freeze={freeze}: {model_name} has no feature stages to freeze")
    if text == "backbone":
        count = total
    else:
        count = int(text)  # validate() admits none | backbone | an integer >= 0 only
        if count > total:
            raise ConfigError(
                f"model.freeze={freeze} is invalid: {model_name} has {total} feature stages "
                f"({', '.join(plan.names)}); use 1..{total}, backbone or none"
            )
    if count == total and not plan.head:
        raise ConfigError(f"model.freeze={freeze} would leave {model_name} nothing to train")
    return count


# ------------------------------------------------------------------ freezing


def _eval_only(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def freeze(model: nn.Module, plan: StagePlan, count: int) -> list[str]:
    """Freeze the first ``count`` stages; their BatchNorm layers stay in eval mode. Returns
    the names of those BatchNorm layers."""
    for _, param in plan.backbone(count):
        param.requires_grad_(False)
    norms = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and plan.module_stage[name] < count:
            module.train = types.MethodType(_eval_only, module)  # model.train() keeps it in eval
            module.eval()
            norms.append(name)
    return norms


def unfreeze(model: nn.Module) -> None:
    """Every parameter trains again; frozen BatchNorm layers follow ``model.train()`` again."""
    for param in model.parameters():
        param.requires_grad_(True)
    for module in model.modules():
        if "train" in vars(module):
            del module.train
    model.train()


# ------------------------------------------------------------------ learning rates


def lr_multipliers(t: DictConfig, plan: StagePlan) -> list[float] | None:
    """Per stage, the multiple of ``optimizer.lr`` it trains at (the head at 1); None when
    every parameter trains at the same rate."""
    multipliers = [float(m) for m in t.stage_lr_multipliers]
    if multipliers:
        if len(multipliers) != len(plan.names):
            raise ConfigError(
                f"trainer.stage_lr_multipliers lists {len(multipliers)} values but the model "
                f"has {len(plan.names)} feature stages ({', '.join(plan.names)})"
            )
        return multipliers
    ratio = float(t.backbone_lr_ratio)
    return None if ratio == 1.0 else [ratio] * len(plan.names)


def param_groups(cfg: DictConfig, model: nn.Module) -> list[dict[str, Any]] | None:
    """Optimizer parameter groups for fine-tuning: the head first (at ``optimizer.lr``, so
    the logged lr stays the configured one), then one group per stage at its multiple;
    every parameter, frozen ones included (see the module docstring). None when the run
    needs no groups (no freezing, one learning rate)."""
    t, m = cfg.trainer, cfg.model
    freezing = "freeze" in m and str(m.freeze).strip().lower() not in ("none", "0", "false")
    uniform = float(t.backbone_lr_ratio) == 1.0 and not len(t.stage_lr_multipliers)
    if not freezing and uniform:
        return None
    plan = stage_plan(str(m.family), model)
    multipliers = lr_multipliers(t, plan) or [1.0] * len(plan.names)
    lr = float(cfg.optimizer.lr)
    groups = [{"params": [p for _, p in plan.head], "lr": lr, "name": "head"}]
    for name, stage, mult in zip(plan.names, plan.stages, multipliers):
        groups.append({"params": [p for _, p in stage], "lr": lr * mult, "name": name})
    groups = [g for g in groups if g["params"]]
    log.info(
        "parameter groups: %s",
        ", ".join(f"{g['name']} lr {g['lr']:.3g} ({len(g['params'])} tensors)" for g in groups),
    )
    return groups


# ------------------------------------------------------------------ the callback


class FineTune(Callback):
    """Unfreezes at epoch ``unfreeze_at`` (0 = never) and reports what was loaded, frozen
    and trainable (summary keys ``weights``, ``frozen``, ``trainable_params``; a report
    section)."""

    def __init__(
        self,
        model: nn.Module,
        plan: StagePlan | None,
        frozen_stages: int,
        frozen_norms: list[str],
        unfreeze_at: int,
        loaded: Any,
        multipliers: list[float] | None,
    ) -> None:
        self.plan, self.frozen_stages, self.frozen_norms = plan, frozen_stages, frozen_norms
        self.unfreeze_at, self.loaded, self.multipliers = unfreeze_at, loaded, multipliers
        self.total = sum(p.numel() for p in model.parameters())
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.unfrozen_at: int | None = None

    def on_epoch_start(self, loop: Any, epoch: int) -> None:
        due = self.frozen_stages and self.unfreeze_at and epoch >= self.unfreeze_at
        if due and self.unfrozen_at is None:
            unfreeze(loop.model)
            self.unfrozen_at = epoch
            log.info("epoch %d: every parameter trains from now on (unfrozen)", epoch)

    def frozen_text(self) -> str:
        if not self.frozen_stages or self.plan is None:
            return "none"
        names = self.plan.names[: self.frozen_stages]
        whole = "backbone: " if self.frozen_stages == len(self.plan.names) else ""
        return f"{whole}{self.frozen_stages} of {len(self.plan.names)} stages ({', '.join(names)})"

    def on_summary(self, loop: Any, summary: dict[str, Any], test: Any) -> list[str]:
        from runner.report import finetune_section

        summary["weights"] = self.loaded.source if self.loaded is not None else None
        summary["frozen"] = self.frozen_text()
        summary["trainable_params"] = self.trainable
        lrs = None
        if self.multipliers is not None and self.plan is not None:
            lrs = list(zip(self.plan.names, self.multipliers))
        return [
            finetune_section(
                loaded=self.loaded.describe() if self.loaded is not None else None,
                frozen=summary["frozen"],
                frozen_norms=len(self.frozen_norms),
                trainable=self.trainable,
                total=self.total,
                unfrozen_at=self.unfrozen_at,
                lr_multipliers=lrs,
            )
        ]


def build_finetune(cfg: DictConfig, data_kwargs: dict[str, Any], model: nn.Module) -> Any:
    """Load ``model.weights`` into ``model``, freeze ``model.freeze``; the :class:`FineTune`
    callback, or None when the run does no fine-tuning."""
    from runner.hub.weights import is_unset, load_pretrained

    m, t = cfg.model, cfg.trainer
    if "weights" not in m:  # a family without fine-tuning keys (text models)
        return None
    loaded = load_pretrained(model, m, data_kwargs) if not is_unset(m.weights) else None
    freezing = str(m.freeze).strip().lower() not in ("none", "0", "false")
    uniform = float(t.backbone_lr_ratio) == 1.0 and not len(t.stage_lr_multipliers)
    if loaded is None and not freezing and uniform:
        return None
    plan = stage_plan(str(m.family), model) if freezing or not uniform else None
    count = frozen_count(m.freeze, plan, str(m.name)) if plan is not None else 0
    norms = freeze(model, plan, count) if count else []
    if count:
        log.info(
            "frozen: the first %d of %d feature stages (%s), %d BatchNorm layers in eval mode",
            count,
            len(plan.names),
            ", ".join(plan.names[:count]),
            len(norms),
        )
    multipliers = lr_multipliers(t, plan) if plan is not None else None
    tuning = FineTune(model, plan, count, norms, int(t.unfreeze_at_epoch), loaded, multipliers)
    log.info("trainable parameters: %s of %s", f"{tuning.trainable:,}", f"{tuning.total:,}")
    return tuning
