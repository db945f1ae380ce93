"""``runner-verify RUN_DIR``: re-run a trained model's forward pass in pure NumPy and compare.

Loads ``<run>/checkpoints/best.pt`` (``weights_only=True``) and the config saved in
it, rebuilds the same split of the same data exactly as the runner does (same
builder, seed and normalisation), runs the torch model and its NumPy twin from
:mod:`runner.numpy_ref`, and writes ``<run>/verify.json``::

    agreement           share of samples where both predict the same class (1.0 = all)
    max_abs_logit_diff  largest |torch logit - NumPy logit| (torch float32, NumPy float64)
    torch_macro_f1, numpy_macro_f1, f1_diff, torch_acc, numpy_acc, n, split, checkpoint, epoch

Example: ``runner-verify outputs/runs/2024-..._bilstm_nusax_senti_ab12 --split test``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner import zoo
from runner.errors import Exit, RunnerError
from runner.metrics import macro_f1

SPLITS = ("train", "val", "test")


def verify_run(
    run_dir: str | Path,
    split: str = "test",
    batch_size: int = 256,
    which: str = "best",
    threads: int | None = None,
) -> dict[str, Any]:
    """Compare torch and NumPy forwards of ``run_dir``'s checkpoint on ``split``; write and
    return the ``verify.json`` figures.

    split: train | val | test. batch_size: samples per forward (bounds NumPy memory).
    which: best | last (``checkpoints/<name>.pt``).
    threads: CPU threads for torch and NumPy's BLAS; None = the run's trainer.num_threads
    (0 = the cores this process may use).
    """
    from runner import checkpoint
    from runner.data.loader import BatchLoader, LoaderOptions
    from runner.data.registry import build_data
    from runner.io import write_json
    from runner.numpy_ref import build_numpy_model
    from runner.runtime import set_threads

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    run_dir = Path(run_dir)
    path = checkpoint.checkpoint_path(run_dir, which)
    ckpt = checkpoint.load(path)
    config = checkpoint.stored_config(ckpt, path)
    run_threads = config["trainer"]["num_threads"]
    threads = set_threads(run_threads if threads is None else threads)
    data = build_data(config["dataset"], seed=int(config["trainer"]["seed"]))
    if data.kind == "image":  # the run's normalisation (the weights' when it followed them)
        pre = checkpoint.Preprocessing.from_checkpoint(ckpt)
        data = dataclasses.replace(data, mean=tuple(pre.mean), std=tuple(pre.std))
    model = checkpoint.rebuild_model(ckpt, path)
    state = {k: v.detach().cpu().double().numpy() for k, v in ckpt[checkpoint.MODEL].items()}
    extra = {"pad_idx": data.extra_model_kwargs["pad_idx"]} if data.kind == "text" else {}
    # where the weights came from (model.weights, freeze, preprocessing) is not the forward pass
    forward = {k: v for k, v in config["model"].items() if k not in zoo.FINETUNE_KEYS}
    twin = build_numpy_model(forward, state, **extra)

    loader = BatchLoader(getattr(data, split), data, LoaderOptions(batch_size))
    t, n, y, seconds = _forward_both(model, twin, loader, threads)
    result = _compare(t, n, y)
    result.update(
        split=split,
        checkpoint=str(path),
        epoch=int(ckpt.get(checkpoint.EPOCH, 0)),
        model=str(config["model"].get("name", config["model"]["family"])),
        torch_seconds=round(seconds["torch"], 3),
        numpy_seconds=round(seconds["numpy"], 3),
    )
    write_json(run_dir / "verify.json", result)
    return result


def _forward_both(model: Any, twin: Any, loader: Any, threads: int) -> tuple:
    """Logits of the torch model and its NumPy twin over ``loader``, the labels, and the
    seconds each took."""
    from threadpoolctl import threadpool_limits

    torch_logits, numpy_logits, labels, seconds = [], [], [], {"torch": 0.0, "numpy": 0.0}
    for x, y in loader:
        start = time.perf_counter()
        with torch.inference_mode():
            torch_logits.append(model(x).double().numpy())
        seconds["torch"] += time.perf_counter() - start
        start = time.perf_counter()
        with threadpool_limits(limits=threads):
            numpy_logits.append(twin(x.numpy()))
        seconds["numpy"] += time.perf_counter() - start
        labels.append(y.numpy())
    t, n, y = (np.concatenate(a) for a in (torch_logits, numpy_logits, labels))
    return t, n, y, seconds


def _compare(torch_logits: np.ndarray, numpy_logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    tp, npred = torch_logits.argmax(1), numpy_logits.argmax(1)
    classes, labels = torch_logits.shape[1], torch.as_tensor(y)
    torch_f1 = macro_f1(torch.as_tensor(tp), labels, classes)
    numpy_f1 = macro_f1(torch.as_tensor(npred), labels, classes)
    return {
        "agreement": float((tp == npred).mean()) if len(y) else float("nan"),
        "max_abs_logit_diff": float(np.abs(torch_logits - numpy_logits).max()) if len(y) else 0.0,
        "torch_macro_f1": torch_f1,
        "numpy_macro_f1": numpy_f1,
        "f1_diff": abs(torch_f1 - numpy_f1),
        "torch_acc": float((tp == y).mean()) if len(y) else float("nan"),
        "numpy_acc": float((npred == y).mean()) if len(y) else float("nan"),
        "n": int(len(y)),
    }


def format_table(result: dict[str, Any]) -> str:
    """A short plain-text table of ``verify_run``'s figures."""
    return "\n".join(
        [
            f"{result['model']} · {Path(result['checkpoint']).name} (epoch {result['epoch']}) · "
            f"{result['split']} split, n={result['n']}",
            f"{'':8}{'macro-F1':>10}{'accuracy':>10}{'seconds':>10}",
            f"{'torch':8}{result['torch_macro_f1']:>10.4f}{result['torch_acc']:>10.4f}"
            f"{result['torch_seconds']:>10.2f}",
            f"{'numpy':8}{result['numpy_macro_f1']:>10.4f}{result['numpy_acc']:>10.4f}"
            f"{result['numpy_seconds']:>10.2f}",
            f"agreement {result['agreement']:.4f} · max |Δlogit| "
            f"{result['max_abs_logit_diff']:.2e} · F1 difference {result['f1_diff']:.4f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``runner-verify RUN_DIR [--split test] [--batch-size N]``; exit
    status 0 when the comparison ran (read verify.json), 2 on errors."""
    parser = argparse.ArgumentParser(
        prog="runner-verify",
        description="Check a run's model with a from-scratch NumPy forward pass "
        "(writes <run>/verify.json).",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory written by `runner`")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--batch-size", type=int, default=256, help="samples per forward pass")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: the run's; 0 = all)"
    )
    args = parser.parse_args(argv)
    try:
        result = verify_run(
            args.run_dir, args.split, args.batch_size, args.checkpoint, args.threads
        )
    except (RunnerError, ValueError) as err:
        print(f"runner-verify: error: {err}", file=sys.stderr)
        return Exit.REFUSED
    except OSError as err:  # verify.json (disk full, read-only run directory)
        print(f"runner-verify: error: cannot write {err.filename}: {err.strerror}", file=sys.stderr)
        return Exit.REFUSED
    print(format_table(result))
    print(f"wrote {args.run_dir / 'verify.json'}")
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
