"""What the recorder keeps during training, as plain lists and NumPy arrays.

Nothing here imports pandas: it runs at every step and epoch end, before and during the
first steps, where importing pandas costs about 0.5 s of start-up. The tables are built
once, after training (``*_table`` methods import pandas then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

STEP_COLUMNS = ["step", "epoch", "lr", "loss", "grad_norm"]
GRADIENT_COLUMNS = ["step", "epoch", "layer", "index", "numel", "grad_norm", "grad_rms"]
ACTIVATION_COLUMNS = [
    "epoch",
    "layer",
    "kind",
    "units",
    "dead_units",
    "dead_share",
    "saturated_share",
    "mean",
    "std",
]
WEIGHT_COLUMNS = ["epoch", "layer", "numel", "norm", "rms"]


def layer_name(param_name: str) -> str:
    """``features.0.conv.weight`` → ``features.0.conv``."""
    return param_name[: -len(".weight")] if param_name.endswith(".weight") else param_name


class StepLog:
    """Loss and learning rate of every step and the per-parameter gradient norms of some.

    Values stay on the training device until :meth:`flush` (once per epoch), so recording
    never synchronises with an accelerator mid-epoch.
    """

    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []
        self._step_meta: list[tuple[int, int, float]] = []  # step, epoch, lr
        self._norms: list[torch.Tensor] = []
        self._norm_meta: list[tuple[int, int]] = []  # step, epoch
        self.steps: list[np.ndarray] = []  # blocks of rows: step, epoch, lr, loss, grad_norm
        self.norms: list[np.ndarray] = []  # blocks (records, parameters)
        self.norm_meta: list[np.ndarray] = []  # blocks (records, 2): step, epoch

    def add_loss(self, step: int, epoch: int, lr: float, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach())
        self._step_meta.append((step, epoch, lr))

    def add_norms(self, step: int, epoch: int, norms: torch.Tensor) -> None:
        self._norms.append(norms)
        self._norm_meta.append((step, epoch))

    def flush(self) -> None:
        """Copy the device-side records to the CPU (the one sync per epoch)."""
        totals: dict[int, float] = {}
        if self._norms:
            norms = torch.stack(self._norms).cpu().numpy().astype(np.float64)
            meta = np.asarray(self._norm_meta, dtype=np.int64)
            totals = dict(zip(meta[:, 0].tolist(), np.sqrt((norms**2).sum(1)).tolist()))
            self.norms.append(norms)
            self.norm_meta.append(meta)
            self._norms, self._norm_meta = [], []
        if self._losses:
            losses = torch.stack([v.float() for v in self._losses]).cpu().numpy()
            block = np.empty((len(losses), 5), dtype=np.float64)
            block[:, :3] = np.asarray(self._step_meta, dtype=np.float64)
            block[:, 3] = losses
            block[:, 4] = [totals.get(int(s), np.nan) for s in block[:, 0]]
            self.steps.append(block)
            self._losses, self._step_meta = [], []

    def steps_table(self) -> pd.DataFrame:
        """One row per optimizer step: step, epoch, lr, loss (and grad_norm where recorded)."""
        import pandas as pd

        rows = np.concatenate(self.steps) if self.steps else np.zeros((0, 5))
        frame = pd.DataFrame(rows, columns=STEP_COLUMNS)
        return frame.astype({"step": np.int64, "epoch": np.int64})

    def gradients_table(self, names: list[str], numel: np.ndarray, keep: list[int]) -> pd.DataFrame:
        """Long table over the weight layers ``keep`` (indices into the recorded parameters):
        step, epoch, layer, index, numel, grad_norm, grad_rms."""
        import pandas as pd

        if not self.norms or not keep:
            return pd.DataFrame(columns=GRADIENT_COLUMNS)
        norms = np.concatenate(self.norms)[:, keep]
        meta = np.concatenate(self.norm_meta)
        records, layers = norms.shape
        return pd.DataFrame(
            {
                "step": np.repeat(meta[:, 0], layers),
                "epoch": np.repeat(meta[:, 1], layers),
                "layer": np.tile(np.asarray(names, dtype=object), records),
                "index": np.tile(np.arange(layers), records),
                "numel": np.tile(numel.astype(np.int64), records),
                "grad_norm": norms.ravel(),
                "grad_rms": (norms / np.sqrt(numel)).ravel(),
            }
        )


class WeightLog:
    """Weight norms per layer at each epoch end, and fixed weight samples for histograms."""

    def __init__(self, sample: int, seed: int) -> None:
        self.sample, self.seed = sample, seed
        self.rows: list[dict[str, Any]] = []
        self.start: dict[str, np.ndarray] = {}
        self._index: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def record(self, epoch: int, layers: list[tuple[str, torch.nn.Parameter]]) -> None:
        if not layers:
            return
        norms = torch.stack(torch._foreach_norm([p.detach() for _, p in layers])).float().cpu()
        for (name, p), norm in zip(layers, norms.tolist()):
            numel = p.numel()
            self.rows.append(
                {
                    "epoch": epoch,
                    "layer": name,
                    "numel": numel,
                    "norm": norm,
                    "rms": norm / numel**0.5,
                }
            )

    def sample_start(self, layers: list[tuple[str, torch.nn.Parameter]]) -> None:
        """Keep up to ``sample`` weights of each layer (a fixed random subset)."""
        g = torch.Generator().manual_seed(self.seed)
        for name, p in layers:
            n = p.numel()
            idx = (
                torch.randperm(n, generator=g)[: self.sample]
                if n > self.sample
                else torch.arange(n)
            )
            self._index[name] = idx.to(p.device)
            self.start[name] = p.detach().flatten()[self._index[name]].float().cpu().numpy()

    def sample_now(self, layers: list[tuple[str, torch.nn.Parameter]]) -> dict[str, np.ndarray]:
        """The same sampled weights as :attr:`start`, now."""
        return {
            name: p.detach().flatten()[self._index[name]].float().cpu().numpy()
            for name, p in layers
            if name in self._index
        }

    def table(self) -> pd.DataFrame:
        """Per epoch (0 = start) and weight layer: L2 norm and RMS of the weights."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=WEIGHT_COLUMNS)


def activations_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per epoch (0 = before training) and activation module: dead units, saturation,
    mean and spread."""
    import pandas as pd

    return pd.DataFrame(rows, columns=ACTIVATION_COLUMNS)
