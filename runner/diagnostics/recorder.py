"""What the diagnostics record while the model trains, kept cheap.

- gradient L2 norm of every parameter every ``interval`` optimizer steps — one fused
  ``torch._foreach_norm`` kept on the device; copied to the CPU once per epoch;
- training loss and learning rate of every step;
- dead units, saturation and activation mean/std of every activation module on a fixed
  probe batch of training images, at the start and at each epoch end (hooks exist only
  during the probe);
- weight norms per epoch and weight samples at the start (for start-vs-end histograms).

Recording uses NumPy and torch only (:mod:`runner.diagnostics.records`); pandas tables are
built after training.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from runner.callbacks import Callback
from runner.data.base import Split
from runner.data.loader import BatchLoader
from runner.diagnostics.probe import probe
from runner.diagnostics.records import StepLog, WeightLog, activations_table, layer_name

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PROBE_VALUES = 2**21  # input values per probe forward pass (bounds activation memory)
WEIGHT_SAMPLE = 50_000  # weights per layer kept for the start-vs-end histograms
MIN_RECORDS = 4  # gradient records per epoch at least (shorter interval for short epochs)


class TrainingRecorder(Callback):
    """Record gradients, losses, learning rates, activations and weights during ``fit``.

    Args:
        data: the run's :class:`runner.data.base.DataBundle`.
        interval: optimizer steps between gradient-norm records (0 = none); epochs with
            fewer than ``4 * interval`` steps record every ``steps // 4`` steps instead.
        probe_size: training images in the fixed probe batch (0 = no activation probe).
        weight_histograms: keep weight samples at the start for start-vs-end histograms.
        seed: picks the probe images and the sampled weights.
    """

    def __init__(
        self, data: Any, interval: int, probe_size: int, weight_histograms: bool, seed: int = 0
    ) -> None:
        self.data = data  # the run's DataBundle: probe images come from its training split
        self.interval, self.probe_size = interval, probe_size
        self.every = interval  # steps between gradient records, set per run in on_fit_start
        self.weight_histograms, self.seed = weight_histograms, seed
        self.params: list[tuple[str, torch.nn.Parameter]] = []
        self.epoch = 0
        self.step_log = StepLog()
        self.weight_log = WeightLog(WEIGHT_SAMPLE, seed)
        self.activation_rows: list[dict[str, Any]] = []
        self.probe_batches: list[torch.Tensor] = []
        self.start_sample_values = 0  # activation values kept per layer from the first probe
        self.act_start: dict[str, np.ndarray] = {}  # ... for the start-vs-end histograms

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, loop: Any) -> None:
        self.params = [(n, p) for n, p in loop.model.named_parameters() if p.requires_grad]
        # short epochs still get MIN_RECORDS gradient records each
        per_epoch = max(1, len(loop.train_loader) // MIN_RECORDS)
        self.every = min(self.interval, per_epoch) if self.interval else 0
        self.epoch = loop.state.epoch
        self.probe_batches = self._probe_batches(loop)
        self.weight_log.record(loop.state.epoch, self.weight_layers())
        if self.weight_histograms:
            self.weight_log.sample_start(self.weight_layers())
        self.act_start = self._probe(loop, loop.state.epoch, self.start_sample_values)

    def on_epoch_start(self, loop: Any, epoch: int) -> None:
        self.epoch = epoch

    def on_after_backward(self, loop: Any) -> None:
        step = loop.state.global_step + 1
        if not self.every or step % self.every:
            return
        grads = [p.grad for _, p in self.params]
        present = [g for g in grads if g is not None]
        if not present:
            return
        norms = torch._foreach_norm(present)
        if len(present) != len(grads):  # parameters without a gradient this step: 0
            it = iter(norms)
            zero = torch.zeros((), device=present[0].device)
            norms = [next(it) if g is not None else zero for g in grads]
        vector = torch.stack([n.float() for n in norms])
        scaler = loop.scaler
        if scaler.is_enabled():  # 16-mixed: gradients are scaled by the loss scale
            scale = getattr(scaler, "_scale", None)
            vector = vector / (scale if scale is not None else scaler.get_scale())
        self.step_log.add_norms(step, self.epoch, vector)

    def on_train_batch_end(self, loop: Any, epoch: int, batch: int, loss: Any) -> None:
        self.step_log.add_loss(loop.state.global_step, epoch, loop.lr, loss)

    def on_epoch_end(self, loop: Any, epoch: int, row: dict[str, float]) -> None:
        self.step_log.flush()
        self.weight_log.record(epoch, self.weight_layers())
        self._probe(loop, epoch)

    def on_fit_end(self, loop: Any, status: str) -> None:
        self.step_log.flush()  # an interrupted or diverged epoch keeps what it recorded

    # ------------------------------------------------------------------ tables
    def gradients(self) -> pd.DataFrame:
        """Long table: step, epoch, layer, index, numel, grad_norm, grad_rms (weight layers)."""
        keep = [i for i, (_, p) in enumerate(self.params) if p.ndim >= 2]
        names = [layer_name(self.params[i][0]) for i in keep]
        numel = np.array([self.params[i][1].numel() for i in keep], dtype=np.float64)
        return self.step_log.gradients_table(names, numel, keep)

    def steps(self) -> pd.DataFrame:
        """One row per optimizer step: step, epoch, lr, loss (and grad_norm where recorded)."""
        return self.step_log.steps_table()

    def activations(self) -> pd.DataFrame:
        """Per epoch (0 = before training) and activation module: dead share, saturation,
        mean, std."""
        return activations_table(self.activation_rows)

    def weight_stats(self) -> pd.DataFrame:
        """Per epoch (0 = start) and weight layer: L2 norm and RMS of the weights."""
        return self.weight_log.table()

    def weight_layers(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Weight matrices and kernels (ndim >= 2): conv, linear, embedding, recurrent."""
        return [(layer_name(n), p) for n, p in self.params if p.ndim >= 2]

    @property
    def weights_start(self) -> dict[str, np.ndarray]:
        """The sampled weights of each layer before training."""
        return self.weight_log.start

    def weights_end(self) -> dict[str, np.ndarray]:
        """The same sampled weights as :attr:`weights_start`, now."""
        return self.weight_log.sample_now(self.weight_layers())

    # ------------------------------------------------------------------ internals
    def _probe_batches(self, loop: Any) -> list[torch.Tensor]:
        split = self.data.train
        n = min(self.probe_size, len(split))
        if n <= 0:
            return []
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.randperm(len(split), generator=g)[:n].sort().values
        subset = Split(split.x[idx], split.y[idx])
        per_sample = max(1, int(np.prod(split.x.shape[1:])))
        batch = max(16, PROBE_VALUES // per_sample)  # digits or CIFAR: one pass; 224 px RGB: 16
        loader = BatchLoader(subset, self.data, loop.train_loader.options.for_eval(batch))
        return [x for x, _ in loader.epoch()]

    def _probe(self, loop: Any, epoch: int, sample_values: int = 0) -> dict[str, np.ndarray]:
        if not self.probe_batches:
            return {}
        rows, samples = probe(loop.model, self.probe_batches, sample_values)
        self.activation_rows += [{"epoch": epoch, **r} for r in rows]
        return samples
