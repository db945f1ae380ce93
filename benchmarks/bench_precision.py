"""``trainer.precision=auto`` against fp32: training images/s and test accuracy of real runs.

For each model and dataset, ``runner`` trains the same configuration with
``trainer.precision=auto trainer.channels_last=auto`` (the default) and with
``trainer.precision=32 trainer.channels_last=false``, over several seeds, alternating the
two so both see the same machine load. Each row records the precision and memory format
``auto`` resolved to (summary.json), the images/s of the training steps and the test
accuracy; the table gives per-setting means and the auto / fp32 speed ratio.

Cases (``--cases``): custom_cnn and resnet18 on digits (8x8) and on the MNIST t10k file
divided 7 000 / 1 000 / 2 000 (``dataset.use_test_as_train=true``; ResNet-18 on 20
training images per class for one epoch, tested on 500 — sized for a loaded 2-core
CPU), bilstm on NusaX-Senti (a text model: it does not read images). MNIST and
NusaX come from ``--data`` (default ``../shared/data``); cases whose files are absent are
skipped.

Usage::

    python benchmarks/bench_precision.py                     # every case, 3 seeds
    python benchmarks/bench_precision.py --cases cnn_digits --seeds 0 1

Writes ``benchmarks/results/bench_precision_<device>.csv`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

MNIST = ["dataset=mnist", "dataset.use_test_as_train=true", "dataset.test_fraction=0.2",
         "dataset.val_fraction=0.1"]  # fmt: skip
# name -> (overrides, data folder needed under --data or None)
CASES: dict[str, tuple[list[str], str | None]] = {
    "cnn_digits": (["model=custom_cnn", "trainer.max_epochs=10"], None),
    "cnn_mnist": (["model=custom_cnn", *MNIST, "trainer.max_epochs=2"], "mnist"),
    "resnet18_digits": (["model=resnet18", "trainer.max_epochs=2"], None),
    "resnet18_mnist": (
        [
            "model=resnet18",
            *MNIST,
            "dataset.subset=20",
            "trainer.max_epochs=1",
            "dataset.test_fraction=0.05",
            "dataset.val_fraction=0.05",
        ],
        "mnist",
    ),  # fmt: skip
    "bilstm_nusax": (["+experiment=s4_text", "trainer.max_epochs=10"], "nusax_senti_id"),
}
SETTINGS = {
    "auto": ["trainer.precision=auto", "trainer.channels_last=auto"],
    "fp32": ["trainer.precision=32", "trainer.channels_last=false"],
}


def data_overrides(name: str, folder: str | None, data: Path) -> list[str] | None:
    if folder is None:
        return []
    path = data / folder
    return [f"dataset.path={path}"] if path.exists() else None


def run_case(name: str, args: argparse.Namespace) -> list[dict]:
    from runner.api import train

    overrides, folder = CASES[name]
    extra = data_overrides(name, folder, Path(args.data))
    if extra is None:
        print(f"{name}: skipped ({folder} not under {args.data})")
        return []
    rows = []
    for seed in args.seeds:
        order = list(SETTINGS) if seed % 2 == 0 else list(SETTINGS)[::-1]
        for setting in order:
            run_dir = Path(tempfile.mkdtemp(prefix=f"bench_precision_{name}_"))
            cfg = [*overrides, *extra, *SETTINGS[setting], f"trainer.seed={seed}",
                   f"trainer.device={args.device}", "diagnostics=off",
                   "trainer.progress_bar=false", f"trainer.num_threads={args.threads}"]  # fmt: skip
            started = time.perf_counter()
            summary = train(cfg, run_dir=run_dir)
            rows.append(
                {
                    "case": name,
                    "setting": setting,
                    "seed": seed,
                    "precision": summary["precision"],
                    "channels_last": summary["channels_last"],
                    "images_per_second": summary["images_per_second"],
                    "test_acc": summary["test_acc"],
                    "test_macro_f1": summary["test_macro_f1"],
                    "epochs": summary["epochs_run"],
                    "wall_seconds": round(time.perf_counter() - started, 1),
                }
            )
            print(rows[-1], flush=True)
    return rows


def table(frame: pd.DataFrame) -> pd.DataFrame:
    out = []
    for name, group in frame.groupby("case", sort=False):
        row: dict = {"case": name, "seeds": group["seed"].nunique()}
        for setting in SETTINGS:
            part = group[group["setting"] == setting]
            row[f"{setting} resolved"] = (
                f"{part['precision'].iloc[0]}{' cl' if part['channels_last'].iloc[0] else ''}"
            )
            row[f"{setting} img/s"] = round(part["images_per_second"].mean(), 1)
            acc = 100 * part["test_acc"]
            std = statistics.stdev(acc) if len(acc) > 1 else 0.0
            row[f"{setting} test acc %"] = f"{acc.mean():.2f} ± {std:.2f}"
        auto = group[group["setting"] == "auto"].set_index("seed")
        fp32 = group[group["setting"] == "fp32"].set_index("seed")
        ratio = auto["images_per_second"] / fp32["images_per_second"]
        row["auto / fp32 img/s"] = f"{ratio.median():.2f} ({ratio.min():.2f}-{ratio.max():.2f})"
        diff = 100 * (auto["test_acc"] - fp32["test_acc"]).abs()
        row["max |acc diff| pts"] = round(diff.max(), 2)
        out.append(row)
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default="", help="CSV path (default results/...)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    device = args.device.replace(":", "")
    out = Path(args.out) if args.out else RESULTS / f"bench_precision_{device}.csv"
    rows = []
    for name in args.cases:  # the CSV is rewritten after each case: a cut-off run keeps them
        load = " ".join(f"{v:.1f}" for v in os.getloadavg())
        machine = f"{os.cpu_count()} CPUs, load {load}"
        rows += [{**r, "machine": machine} for r in run_case(name, args)]
        frame = pd.DataFrame(rows)
        frame.to_csv(out, index=False)
    summary = table(frame)
    print(summary.to_markdown(index=False) if hasattr(summary, "to_markdown") else summary)
    summary.to_csv(out.with_name(out.stem + "_summary.csv"), index=False)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
