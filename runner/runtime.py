"""Process-level set-up: seeds, determinism, threads and the training device."""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from runner.errors import ConfigError

log = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(num_threads: int) -> int:
    """Intra-op threads: ``num_threads`` or, when 0, the cores this process may use
    divided by ``RUNNER_PARALLEL_JOBS`` (set by parallel sweep launchers)."""
    if num_threads <= 0:
        jobs = max(1, int(os.environ.get("RUNNER_PARALLEL_JOBS", "1")))
        num_threads = max(1, available_cores() // jobs)
    torch.set_num_threads(num_threads)
    return num_threads


def resolve_device(spec: str) -> torch.device:
    """auto | cpu | cuda | cuda:N | mps → a torch device, or a ConfigError if unavailable."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _round_robin_gpu())
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.device={spec} but no CUDA device is available; use trainer.device=cpu "
                "or auto"
            )
        index = int(spec.split(":")[1]) if ":" in spec else _round_robin_gpu()
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"trainer.device={spec} but only {torch.cuda.device_count()} GPU(s) exist"
            )
        return torch.device("cuda", index)
    if spec == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device=mps but MPS is not available; use cpu or auto")
    return torch.device(spec)


def _round_robin_gpu() -> int:
    """Parallel sweep jobs spread over the GPUs by job number (RUNNER_JOB_NUM or Hydra's)."""
    job = os.environ.get("RUNNER_JOB_NUM")
    if job is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            job = HydraConfig.get().job.num
        except Exception:
            job = 0
    return int(job or 0) % max(1, torch.cuda.device_count())


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors/plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def progress_bar(setting: Any, total: int, desc: str) -> Any:
    """A tqdm bar, or ``None``: ``auto`` shows it only on a terminal (tqdm's
    ``disable=None``; a pseudo-terminal counts), true always, false never.

    The bar follows the terminal's width; a terminal that reports no size (a
    pseudo-terminal opened without one, as harnesses and ``docker exec -t`` do) counts as
    100 columns by 24 rows — at 0 rows tqdm hides every bar.
    """
    if setting is False or str(setting).lower() == "false":
        return None
    from tqdm.auto import tqdm

    disable = None if str(setting) == "auto" else False
    sized = _terminal_columns() > 0
    bar = tqdm(
        total=total,
        desc=desc,
        leave=False,
        disable=disable,
        dynamic_ncols=sized,
        ncols=None if sized else 100,
        nrows=None if sized else 24,
    )
    return None if bar.disable else bar


def _terminal_columns() -> int:
    """Columns of the terminal on stderr (tqdm's stream); 0 when it reports none or is no
    terminal."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class SignalCatcher:
    """While active, SIGINT/SIGTERM call ``on_signal`` (the loop stops after the current
    step) instead of killing the process; the previous handlers come back on exit."""

    def __init__(self, on_signal: Callable[[], None]) -> None:
        self.on_signal = on_signal
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("signal %s received: stopping after this step", signal.Signals(signum).name)
        self.on_signal()

    def __enter__(self) -> SignalCatcher:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: CUDA GPUs with bf16 (Ampere and
    later), CPUs with AVX-512 BF16 or AMX. Elsewhere bf16 autocast is emulated and runs
    many times slower than fp32 (measured: ResNet-18 on an AVX2-only CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(bool(getattr(torch.cpu, name)()) for name in checks if hasattr(torch.cpu, name))
    except RuntimeError:  # a torch build without these probes
        return False
