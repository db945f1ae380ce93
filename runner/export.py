"""``runner-export``: a finished run's model as TorchScript or ONNX, checked against PyTorch.

    runner-export RUN_DIR --format torchscript|onnx [--out PATH] [--checkpoint best|last]
                  [--atol 1e-4] [--samples 256] [--opset 18]

Writes (default folder ``<RUN_DIR>/export/``):

- the model: ``model.torchscript.pt`` (``torch.jit.trace``; load with ``torch.jit.load``)
  or ``model.onnx`` (``torch.onnx.export``; batch dimension dynamic; input ``input``,
  output ``logits``). It takes the *normalised* float32 batch ``(N, C, H, W)`` (text
  runs: the int64 token ids ``(N, L)``) and returns logits. ONNX exporter per model kind:
  image models go through torch.export (``dynamo=True``); recurrent text models through
  the TorchScript-based exporter (``dynamo=False``), which maps packed sequences onto
  ONNX's ``sequence_lens`` — torch.export cannot trace ``pack_padded_sequence``.
- ``<model file>.json``: the preprocessing (image size, channels, colour mode, resize,
  mean, std), the class names and where the model came from. The same JSON is
  embedded in the file (TorchScript extra file ``preprocessing.json``; ONNX
  ``metadata_props`` key ``preprocessing``).
- ``<model file>.check.json``: the exported model's logits against PyTorch's on up
  to ``--samples`` images of the run's test split (max absolute difference,
  agreement of predicted classes, passed = difference ≤ ``--atol``). When the
  dataset cannot be rebuilt, random images are used and the check says so.

ONNX needs ``pip install onnx onnxruntime onnxscript`` (extra ``[export]``).
Exit status: 0 check passed, 1 check failed (files kept), 2 error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from runner.checkpoint import Preprocessing, load_model, stored_config
from runner.errors import ConfigError, Exit, RunnerError

log = logging.getLogger(__name__)

FORMATS = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
DEFAULT_ATOL = 1e-4


# ------------------------------------------------------------------ inputs


def check_inputs(ckpt: dict[str, Any], pre: Preprocessing, samples: int) -> tuple[Any, str]:
    """Up to ``samples`` raw inputs of the run's test split (val or train if it has none).

    Returns the uint8 images / int64 token ids and where they came from. Falls back to
    random inputs (with a warning) when the dataset cannot be rebuilt here.
    """
    from runner.data.registry import build_data, dataset_params

    config = stored_config(ckpt, ckpt.get("_path", "the checkpoint"))
    dataset_params(config["dataset"])  # a format the registry lacks is refused, not guessed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the run already reported its data warnings
            data = build_data(config["dataset"], seed=int(config["trainer"]["seed"]))
    except Exception as err:  # data absent or moved: still export, but say so
        warnings.warn(
            f"cannot rebuild the run's dataset to check the export ({err}); using random inputs",
            stacklevel=2,
        )
        return _random_inputs(pre, samples, ckpt), "random"
    for name in ("test", "val", "train"):
        split = getattr(data, name)
        if len(split):
            return split.x[:samples], f"{name} split of {data.name}"
    return _random_inputs(pre, samples, ckpt), "random"


def _random_inputs(pre: Preprocessing, samples: int, ckpt: dict[str, Any]) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    n = max(2, min(samples, 32))
    if pre.kind == "image":
        shape = (n, pre.channels, *pre.image_size)
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    length = int(ckpt["data"]["input_shape"][0])
    vocab = int(pre.model_kwargs.get("vocab_size", 2))
    return torch.randint(1, max(2, vocab), (n, length), generator=g)


def model_inputs(raw: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """What the exported model takes: normalised float32 images, or token ids as they are."""
    return pre.normalise(raw) if pre.kind == "image" else raw


# ------------------------------------------------------------------ exporters


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, out: Path, meta: str) -> Any:
    """Trace ``model`` on ``example``, save it with the metadata; return the reloaded module."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # jit is deprecated in 2.x
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={"preprocessing.json": meta})
        loaded = torch.jit.load(str(out), map_location="cpu")
    return lambda x: loaded(x)


def export_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    out: Path,
    meta: str,
    opset: int | None,
    kind: str = "image",
) -> Any:
    """``torch.onnx.export`` (dynamic batch; the exporter that works for ``kind``), metadata
    added; return an onnxruntime runner."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as err:
        raise ConfigError(
            f"--format onnx needs onnx and onnxruntime ({err}): pip install onnx onnxruntime "
            "onnxscript  (or pip install 'runner[export]')"
        ) from None
    if kind == "text":
        _legacy_onnx_export(model, example, out, opset)
    else:
        _onnx_export(model, example, out, opset)
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "preprocessing", meta
    onnx.save(proto, str(out))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _onnx_export(model: torch.nn.Module, example: torch.Tensor, out: Path, opset: int | None):
    """The torch.export-based exporter; the TorchScript-based one if that fails."""
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"]}
    if opset:
        kwargs["opset_version"] = opset
    try:
        batch = torch.export.Dim("batch", min=1)
        torch.onnx.export(
            model,
            (example,),
            str(out),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
            **kwargs,
        )
    except Exception as err:  # an op the new exporter lacks: the legacy one may have it
        summary = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        log.warning(
            "torch.export could not trace the model (%s); using the TorchScript-based exporter",
            summary[:300],
        )
        log.debug("torch.export failure:\n%s", err)
        _legacy_onnx_export(model, example, out, opset)


def _legacy_onnx_export(
    model: torch.nn.Module, example: torch.Tensor, out: Path, opset: int | None
) -> None:
    """The TorchScript-based exporter (``dynamo=False``). Its C++ passes print notes on
    stderr that are not errors (e.g. "shape inference of prim::PackPadded type is missing"
    for packed sequences); they go to the debug log, and into the error if export fails."""
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["logits"]}
    if opset:
        kwargs["opset_version"] = opset
    with warnings.catch_warnings(), _stderr_to_log() as notes:
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (example,),
                str(out),
                dynamo=False,
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                **kwargs,
            )
        except Exception as err:
            raise RunnerError(f"ONNX export failed: {err}\n{notes.text()}".strip()) from err


class _stderr_to_log:
    """Collect what C++ code writes to file descriptor 2 (which ``warnings`` and
    ``contextlib.redirect_stderr`` cannot reach) and log it at debug level."""

    def __enter__(self) -> _stderr_to_log:
        import tempfile

        sys.stderr.flush()
        self.file = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def text(self) -> str:
        sys.stderr.flush()
        self.file.seek(0)
        return self.file.read().decode("utf-8", "replace")

    def __exit__(self, *exc: Any) -> None:
        captured = self.text()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.close()
        if captured.strip():
            log.debug("ONNX exporter notes:\n%s", captured.rstrip())


# ------------------------------------------------------------------ check


@torch.inference_mode()
def compare(
    model: torch.nn.Module, exported: Any, inputs: torch.Tensor, atol: float, batch_size: int = 64
) -> dict[str, Any]:
    """Max |exported − PyTorch| over the logits of ``inputs`` and agreement of the argmax."""
    diffs, agree, n = [], 0, len(inputs)
    for start in range(0, n, batch_size):
        x = inputs[start : start + batch_size]
        ref = model(x).float()
        got = exported(x).float()
        diffs.append((got - ref).abs().max().item())
        agree += int((got.argmax(1) == ref.argmax(1)).sum())
    max_diff = max(diffs) if diffs else float("nan")
    return {
        "samples": n,
        "max_abs_diff": max_diff,
        "atol": atol,
        "argmax_agreement": agree / max(n, 1),
        "passed": bool(max_diff <= atol),
    }


# ------------------------------------------------------------------ API


def export_run(
    run: str | Path,
    fmt: str,
    out: str | Path | None = None,
    which: str = "best",
    atol: float = DEFAULT_ATOL,
    samples: int = 256,
    opset: int | None = None,
) -> dict[str, Any]:
    """Export ``run`` as ``fmt`` (torchscript | onnx), check it; return the check's record."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    model, pre, ckpt = load_model(run, which)
    run_path = Path(run)
    default_dir = (run_path if run_path.is_dir() else run_path.parent) / "export"
    out = Path(out) if out else default_dir / FORMATS[fmt]
    _check_writable(out)
    raw, source = check_inputs(ckpt, pre, samples)
    inputs = model_inputs(raw, pre)
    meta = {
        **pre.as_dict(),
        "format": fmt,
        "input_name": "input",
        "output_name": "logits (apply softmax for probabilities)",
        "model": stored_config(ckpt, ckpt["_path"])["model"],
        "checkpoint": ckpt["_path"],
        "epoch": ckpt.get("epoch"),
        "torch_version": torch.__version__,
    }
    text = json.dumps(meta, indent=2)
    example = inputs[:2] if len(inputs) >= 2 else inputs.repeat(2, *([1] * (inputs.dim() - 1)))
    if fmt == "torchscript":
        exported = export_torchscript(model, example, out, text)
    else:
        exported = export_onnx(model, example, out, text, opset, pre.kind)
    Path(f"{out}.json").write_text(text + "\n")
    result = compare(model, exported, inputs, atol)
    check = {"format": fmt, "model_file": str(out), "inputs": source, **result}
    Path(f"{out}.check.json").write_text(json.dumps(check, indent=2) + "\n")
    return check


def _check_writable(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written before any work (torch's own writers
    fail with unclear errors there)."""
    import tempfile

    from runner.errors import RunDirError

    try:
        if out.is_dir():
            raise IsADirectoryError(21, "is a directory", str(out))
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as err:
        where = err.filename or out.parent
        raise RunDirError(
            f"cannot write {where}: {err.strerror or err}; choose a writable --out"
        ) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="runner-export",
        description="Export a run's model (TorchScript or ONNX) and check it against PyTorch.",
    )
    parser.add_argument("run_dir", help="a run directory (outputs/runs/...) or a checkpoint .pt")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="export format")
    parser.add_argument("--out", default=None, help="model file (default <RUN_DIR>/export/...)")
    parser.add_argument("--checkpoint", default="best", help="best | last | a checkpoint path")
    parser.add_argument(
        "--atol", type=float, default=DEFAULT_ATOL, help="max |logit difference| allowed"
    )
    parser.add_argument("--samples", type=int, default=256, help="test images compared")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; 0 when the check passed, 1 when not, 2 on errors."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        check = export_run(
            args.run_dir,
            args.format,
            args.out,
            which=args.checkpoint,
            atol=args.atol,
            samples=args.samples,
            opset=args.opset,
        )
    except RunnerError as err:
        print(f"runner-export: error: {err}", file=sys.stderr)
        return Exit.REFUSED
    except OSError as err:  # the export files themselves (disk full, permissions)
        print(
            f"runner-export: error: cannot write {err.filename or args.out}: {err.strerror or err}",
            file=sys.stderr,
        )
        return Exit.REFUSED
    verdict = "passed" if check["passed"] else "FAILED"
    print(
        f"wrote {check['model_file']} (+ .json, .check.json); check {verdict}: max |diff| "
        f"{check['max_abs_diff']:.2e} (atol {check['atol']:g}) on {check['samples']} inputs "
        f"({check['inputs']}), predicted classes agree on {check['argmax_agreement']:.2%}"
    )
    return Exit.OK if check["passed"] else Exit.FAILED


if __name__ == "__main__":
    raise SystemExit(main())
