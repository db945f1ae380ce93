"""Data-parallel training of one run over several processes, started by ``torchrun``.

    torchrun --nproc_per_node=N -m runner model=... dataset=...      # one machine
    torchrun --nnodes=2 --node_rank=R --nproc_per_node=N \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 -m runner ...  # several

Every process runs the same config. :func:`setup` (called at the start of
:func:`runner.train.train`) joins the process group — NCCL with one GPU per
process (``cuda:LOCAL_RANK``) when CUDA is available and ``trainer.device`` is
not ``cpu``, Gloo on CPU — and makes rank 0's run directory the run's:

- rank 0 writes the run directory Hydra made for it; every other rank deletes
  the directory Hydra made for it and writes its copies (identical checkpoints,
  figures) to a private temporary folder, removed at exit, so one run leaves
  exactly one directory;
- each epoch every rank draws the same permutation of the in-memory training
  split and takes a rank-strided shard of it (:func:`shard_order`), batches of
  ``trainer.batch_size // world_size`` so the *global* batch stays
  ``trainer.batch_size`` (same optimisation as one process, ~N× the throughput);
- gradients are averaged by :class:`~torch.nn.parallel.DistributedDataParallel`,
  which also keeps BatchNorm buffers equal to rank 0's;
- training loss and accuracy are summed over ranks (:func:`reduce_sums`);
  validation and test run on every rank over the whole split with identical
  weights, so every rank takes the same early-stopping and checkpoint decisions.

Not supported under torchrun: ``runner -m`` sweeps (launch each job with torchrun
instead) and streaming image folders.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: str  # the trainer.device this rank trains on


def world_size() -> int:
    """Processes in this run (1 without torchrun or before :func:`setup`)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Whether this process writes the run directory (rank 0)."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """``torchrun`` (or another launcher with the env:// variables) started this process —
    one of several, or one alone (``--nproc_per_node=1``: a process group of one, which
    smoke-tests NCCL/gloo and DistributedDataParallel on a single device)."""
    return "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def setup(cfg: Any) -> DistInfo | None:
    """Join the process group and agree on one run directory; ``None`` for a single process.

    Changes ``cfg`` in place on every rank: ``trainer.device`` (the rank's GPU) and, on
    ranks other than 0, ``run_dir`` (a temporary folder), ``trainer.progress_bar`` (off).
    """
    if not launched_by_torchrun():
        return None
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not str(cfg.trainer.device).startswith("cpu")
    backend = "nccl" if use_cuda else "gloo"
    device = f"cuda:{local_rank}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
        atexit.register(_teardown)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, backend, device)
    os.environ.setdefault("RUNNER_PARALLEL_JOBS", os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cfg.trainer.device = device
    _agree_on_run_dir(cfg, info)
    if info.rank == 0:
        log.info(
            "data-parallel: %d processes (%s), global batch %d = %d per process",
            info.world_size,
            backend,
            cfg.trainer.batch_size,
            max(1, cfg.trainer.batch_size // info.world_size),
        )
    return info


def _agree_on_run_dir(cfg: Any, info: DistInfo) -> None:
    """Rank 0's run directory is the run's; other ranks write to a private temporary one."""
    import torch.distributed as dist

    own = Path(cfg.run_dir).resolve()
    shared = [str(own)]
    dist.broadcast_object_list(shared, src=0)
    if info.rank == 0:
        return
    main_dir = Path(shared[0])
    _close_file_logs(own)  # runner.log is rank 0's
    if own != main_dir:  # Hydra made a directory for this rank too: not part of the run
        shutil.rmtree(own, ignore_errors=True)
    private = Path(tempfile.mkdtemp(prefix=f"runner-rank{info.rank}-"))
    atexit.register(shutil.rmtree, private, True)
    from runner.rundir import RunDir

    main_run, private_run = RunDir(main_dir), RunDir(private)
    pairs = [(main_run.summary_path, private_run.summary_path)]
    pairs += [  # what trainer.resume=true reads (last.pt may take its weights from best.pt)
        (path, private_run.path / path.relative_to(main_run.path))
        for path in main_run.checkpoint_files()
    ]
    for source, target in pairs:
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    cfg.run_dir = str(private)
    cfg.trainer.progress_bar = False
    logging.getLogger().setLevel(logging.WARNING)  # rank 0 reports; the others stay quiet


def _close_file_logs(folder: Path) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if not isinstance(handler, logging.FileHandler):
            continue
        if Path(handler.baseFilename).resolve().is_relative_to(folder):
            root.removeHandler(handler)
            handler.close()


def _teardown() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when the process group is up; ``model`` otherwise."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def shard() -> tuple[int, int]:
    """``(rank, world_size)`` for sharding training batches; ``(0, 1)`` for one process."""
    return (rank(), world_size()) if world_size() > 1 else (0, 1)


def shard_order(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's part of a permutation shared by all ranks: every ``world``-th index from
    ``rank``, truncated so all ranks get the same count (≤ world − 1 samples left out per
    epoch, different ones each epoch)."""
    per_rank = len(order) // world
    return order[rank::world][:per_rank]


def reduce_sums(*values: torch.Tensor | float | int) -> list[Any]:
    """Sum each value over all ranks (one all-reduce); values come back as they went in."""
    if world_size() == 1:
        return list(values)
    nccl = torch.distributed.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    packed = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values])
    torch.distributed.all_reduce(packed)
    out: list[Any] = []
    for original, total in zip(values, packed):
        if isinstance(original, torch.Tensor):
            out.append(total.to(original.dtype).to(original.device))
        else:
            out.append(type(original)(total.item()))
    return out
