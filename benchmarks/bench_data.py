"""Images per second of the CIFAR data path and of a custom_cnn training epoch.

Compares, in one process and on the same CIFAR-format files:

- **ours** — the batches come from an in-memory uint8 tensor; random crop
  (padding 4), horizontal flip and normalisation run on whole batches
  (:class:`runner.data.loader.BatchLoader`, :mod:`runner.data.augment`);
- **torchvision** — ``torchvision.datasets.CIFAR10`` (MD5 check bypassed, as the
  files are generated here) with per-image PIL transforms ``RandomCrop(32,
  padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize`` through
  a ``DataLoader`` with ``num_workers`` 0 and 2.

With ``--policies randaugment`` (the default runs ``none`` and ``randaugment`` side by
side) every pipeline adds RandAugment (2 operations, magnitude 9) after the flip:

- **ours** — ``dataset.augment.policy=randaugment``: an operation per image, batched on
  the uint8 tensor (:mod:`runner.data.policy`);
- **torchvision PIL** — ``transforms.RandAugment()`` on each PIL image in the
  ``DataLoader``, as torchvision's classification reference does;
- **torchvision v2 per image** — the same in-memory uint8 batches, with
  ``transforms.v2.RandAugment`` called on each image tensor in turn (its random draw is
  per call, so per-image randomness needs one call per image): the library path our
  batched operations replace.

(a) ``data``: one pass over the training images, batches consumed but no model.
(b) ``train``: forward + backward + SGD step of the default custom_cnn; the time
spent waiting for a batch (``data_s``) is reported against the time spent in the
step (``step_s``).

Usage::

    python benchmarks/bench_data.py                 # CPU, 10 000 images, 2 560 trained,
                                                    # at 1 torch thread and torch's default
    python benchmarks/bench_data.py --device cuda --images 50000 --train-images 50000

Prints a markdown table and writes ``benchmarks/results/bench_data_<device>.csv``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision import transforms as T
from torchvision.datasets import CIFAR10

from runner.data.cifar import load_cifar10
from runner.data.loader import BatchLoader, LoaderOptions
from runner.models.custom_cnn import CustomCNN

RESULTS = Path(__file__).resolve().parent / "results"
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


class UncheckedCIFAR10(CIFAR10):
    """torchvision's CIFAR10 reader without the MD5 check (the files are generated here)."""

    meta = {**CIFAR10.meta, "md5": None}

    def _check_integrity(self) -> bool:
        return True


def write_cifar(root: Path, images: int, seed: int = 0) -> None:
    """CIFAR-10 python batches with ``images`` training images (5 batches) + 1 000 test."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    per = images // 5
    for name, n in [*((f"data_batch_{i}", per) for i in range(1, 6)), ("test_batch", 1000)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": labels}, protocol=2))
    meta = {"label_names": [f"class_{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def ours(root: Path, batch_size: int, device: torch.device, policy: str = "none") -> BatchLoader:
    augment = {"crop_padding": 4, "hflip": True}  # the other switches stay off
    if policy != "none":
        augment.update(policy=policy, policy_ops=2, policy_magnitude=9)
    data = load_cifar10(
        root=str(root), val_size=100, normalize="half", augment=augment, check_duplicates=False
    )
    options = LoaderOptions(batch_size=batch_size, device=device, train=True, seed=0)
    return BatchLoader(data.train, data, options)


class PerImageV2:
    """In-memory uint8 batches (as ours) with torchvision v2's RandAugment called per image
    after our batched crop and flip: the library's own per-image path."""

    def __init__(self, loader: BatchLoader) -> None:
        from torchvision.transforms import v2

        self.loader, self.policy = loader, v2.RandAugment()
        self.mean = torch.tensor(MEAN, device=loader.device).view(1, -1, 1, 1)
        self.std = torch.tensor(STD, device=loader.device).view(1, -1, 1, 1)

    def epoch(self, epoch: int) -> Iterator:
        from runner.data import augment as aug

        loader = self.loader
        g = loader._generator(epoch)
        order = torch.randperm(len(loader.y), device=loader.device, generator=g)
        for i in range(len(loader)):
            idx = order[i * loader.batch_size : (i + 1) * loader.batch_size]
            x = aug.random_crop_flip(loader.x[idx], 4, 0.5, g)  # uint8 in, uint8 out
            x = torch.stack([self.policy(img) for img in x])
            yield (x.float().div_(255) - self.mean) / self.std, loader.y[idx]


def torchvision_loader(
    root: Path, batch_size: int, workers: int, policy: str = "none"
) -> torch.utils.data.DataLoader:
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    if policy == "randaugment":
        steps.append(T.RandAugment())
    transform = T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])
    dataset = UncheckedCIFAR10(str(root), train=True, transform=transform)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )


def _batches(source: BatchLoader | torch.utils.data.DataLoader, epoch: int) -> Iterable:
    return source.epoch(epoch) if hasattr(source, "epoch") else source


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def data_pass(source, device: torch.device, epoch: int) -> tuple[int, float]:
    """Images and seconds of one pass; every batch is moved to ``device`` and touched."""
    n, start = 0, time.perf_counter()
    for x, y in _batches(source, epoch):
        x = x.to(device, non_blocking=True)
        n += len(y)
        float(x[0, 0, 0, 0])  # forces the batch to exist
    _sync(device)
    return n, time.perf_counter() - start


def train_pass(
    source, device: torch.device, max_images: int, epoch: int
) -> tuple[int, float, float]:
    """Images, seconds waiting for data and seconds in steps of one (capped) epoch."""
    torch.manual_seed(0)
    model = CustomCNN(num_classes=10, in_channels=3, image_size=32).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, data_s, step_s = 0, 0.0, 0.0
    it: Iterator = iter(_batches(source, epoch))
    while n < max_images:
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        _sync(device)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        _sync(device)
        data_s += t1 - t0
        step_s += time.perf_counter() - t1
        n += len(y)
    return n, data_s, step_s


def run(args: argparse.Namespace) -> pd.DataFrame:
    """Every pipeline at every requested torch thread count, on one set of files."""
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar(Path(tmp), args.images)
        for threads in dict.fromkeys(args.threads or [torch.get_num_threads()]):
            torch.set_num_threads(threads)
            frames.append(run_threads(args, Path(tmp)))
    return pd.concat(frames, ignore_index=True)


def run_threads(args: argparse.Namespace, root: Path) -> pd.DataFrame:
    """Data pass and training pass of each pipeline at the current torch thread count."""
    return pd.concat([run_policy(args, root, p) for p in args.policies], ignore_index=True)


def run_policy(args: argparse.Namespace, root: Path, policy: str) -> pd.DataFrame:
    """Every pipeline with crop + flip (+ ``policy``)."""
    device = torch.device(args.device)
    bs = args.batch_size
    pipelines = {"ours (batched uint8 tensor)": lambda: ours(root, bs, device, policy)}
    if policy == "randaugment":
        pipelines["torchvision v2, per image (in memory)"] = lambda: PerImageV2(
            ours(root, bs, device)
        )
    for w in args.workers:
        pipelines[f"torchvision PIL, num_workers={w}"] = lambda w=w: torchvision_loader(
            root, bs, w, policy
        )
    rows = []
    for name, make in pipelines.items():
        source = make()
        data_pass(source, device, epoch=0)  # warm-up (workers, caches, allocator)
        n, secs = data_pass(source, device, epoch=1)
        rows.append(_row(name, "data", n, secs, 0.0))
        train_pass(source, device, args.batch_size * 2, epoch=2)  # warm-up
        n, data_s, step_s = train_pass(source, device, args.train_images, epoch=3)
        rows.append(_row(name, "train", n, data_s, step_s))
        del source
    frame = pd.DataFrame(rows)
    frame["data_share_of_step"] = np.where(
        frame["mode"] == "train",
        frame["data_s"] / frame["step_s"].where(frame["step_s"] > 0),
        np.nan,
    )
    base = frame[frame.pipeline.str.startswith("ours")].set_index("mode")["images_per_s"]
    frame["ours_speedup"] = base.reindex(frame["mode"]).to_numpy() / frame["images_per_s"]
    frame.insert(0, "policy", policy)
    frame["device"] = str(device)
    frame["torch_threads"] = torch.get_num_threads()
    frame["machine"] = platform.processor() or platform.machine()
    return frame


def _row(pipeline: str, mode: str, images: int, data_s: float, step_s: float) -> dict:
    seconds = data_s + step_s
    return {
        "pipeline": pipeline, "mode": mode, "images": images, "seconds": seconds,
        "images_per_s": images / seconds, "data_s": data_s, "step_s": step_s,
    }  # fmt: skip


def markdown(frame: pd.DataFrame) -> str:
    lines = [
        "| threads | augmentation | pipeline | mode | images | images/s | data s | step s "
        "| data/step | ours is x faster |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in frame.itertuples():
        share = "" if np.isnan(r.data_share_of_step) else f"{r.data_share_of_step:.1%}"
        step = f"{r.step_s:.2f}" if r.mode == "train" else ""
        lines.append(
            f"| {r.torch_threads} | {r.policy} | {r.pipeline} | {r.mode} | {r.images} "
            f"| {r.images_per_s:,.0f} | {r.data_s:.2f} | {step} | {share} | {r.ours_speedup:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="training images written")
    parser.add_argument("--train-images", type=int, default=2_560, help="images trained on")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
        help="torch thread counts to measure (default: 1 and torch's default)",
    )  # fmt: skip
    parser.add_argument(
        "--policies", nargs="+", default=["none", "randaugment"], choices=["none", "randaugment"],
        help="crop + flip alone, and with RandAugment",
    )  # fmt: skip
    parser.add_argument("--out", default="", help="CSV path (default results/bench_data_<dev>.csv)")
    args = parser.parse_args()
    frame = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    device = frame["device"].iloc[0].replace(":", "")
    out = Path(args.out) if args.out else RESULTS / f"bench_data_{device}.csv"
    frame.to_csv(out, index=False, float_format="%.4g")
    print(markdown(frame))
    print(f"\nmachine {frame['machine'].iloc[0]}, {os.cpu_count()} CPUs; CSV: {out}")


if __name__ == "__main__":
    main()
