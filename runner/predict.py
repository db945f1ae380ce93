"""``runner-predict``: classify image files (or texts) with a finished run's best checkpoint.

    runner-predict RUN_DIR IMAGE... | FOLDER... [--out predictions.csv] [--top-k 3]
                   [--device auto] [--batch-size 64] [--checkpoint best|last|PATH]
    runner-predict TEXT_RUN_DIR texts.csv | texts.txt [--text-column text] [...]

Text runs: :mod:`runner.text.predict` (the run's tokenizer and ``vocab.json``; CSV
files by the run's text column, other files one text per line).

The model is rebuilt through the model registry from the checkpoint's config
(``model.family`` and plain values; :func:`runner.checkpoint.load_model`) and its
weights; images get the run's exact preprocessing: converted to RGB or grey
like the training data, shorter side resized to the training size and centre-cropped
(:func:`runner.data.imagefolder.decode_image`, the decoder the image-folder datasets
use), then normalised with the run's mean/std (``checkpoint["data"]``).

The CSV has one row per readable image: ``file, predicted_class, confidence`` and
``top1_class, top1_prob, ... topK_class, topK_prob`` (probabilities in [0, 1]); when
an image sits in a folder named after a class, ``true_class`` and ``correct`` too.
Unreadable files are listed on stderr and in ``<out stem>_skipped.csv``, not fatal.
"""

from __future__ import annotations

import argparse
import numbers
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from runner.checkpoint import Preprocessing, load_model
from runner.errors import ConfigError, Exit, RunnerError
from runner.tta import tta_logits

# ------------------------------------------------------------------ images


def decode(path: Path, pre: Preprocessing) -> torch.Tensor:
    """One image file as uint8 ``(C, H, W)`` exactly as the image-folder datasets decode it."""
    height, width = pre.image_size
    if height == width:
        from runner.data.imagefolder import decode_image

        return decode_image(path, height, pre.channels)[0]
    from PIL import Image

    with Image.open(path) as img:
        return pil_to_tensor(img, pre)


def pil_to_tensor(img: Any, pre: Preprocessing) -> torch.Tensor:
    """A PIL image → uint8 ``(C, H, W)``: colour mode, shorter side resize, centre crop."""
    import numpy as np
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    from runner.data.imagefolder import to_8bit

    height, width = pre.image_size
    img = to_8bit(img, getattr(img, "filename", "") or "image")
    img = img.convert("RGB" if pre.channels == 3 else "L")
    bilinear = InterpolationMode.BILINEAR
    img = TF.resize(img, min(height, width), interpolation=bilinear, antialias=True)
    img = TF.center_crop(img, [height, width])
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded (recursively, image extensions only, sorted) with
    the image-folder walker: symlink loops are not followed, a file reached twice counts
    once, special files (FIFOs, devices) are skipped with a warning."""
    from runner.data.imagefolder import LeftOut, images_under

    files: list[Path] = []
    seen: dict[str, tuple[str, str]] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            left_out = LeftOut()
            files += images_under(path, "", seen, left_out)
            left_out.warn(path)
        else:
            files.append(path)
    return files


# ------------------------------------------------------------------ prediction


@dataclass
class Predictions:
    """One row per predicted image, and ``(file, error)`` of every file that was skipped."""

    table: pd.DataFrame
    skipped: list[tuple[str, str]]


class Predictor:
    """A run's model and preprocessing on one device."""

    def __init__(
        self, model: torch.nn.Module, pre: Preprocessing, device: str | torch.device = "cpu"
    ) -> None:
        if pre.kind != "image":
            raise RunnerError(
                f"image prediction needs an image run; this run's data is {pre.kind} "
                "(text runs: runner.text.predict.TextPredictor)"
            )
        self.device = _device(device)
        self.model, self.pre = model.to(self.device).eval(), pre

    @classmethod
    def from_run(
        cls, run: str | Path, which: str = "best", device: str | torch.device = "auto"
    ) -> Predictor:
        model, pre, _ = load_model(run, which)
        return cls(model, pre, device)

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` at the run's image size → softmax probabilities (CPU)."""
        expected = (self.pre.channels, *self.pre.image_size)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images of shape {tuple(images.shape[1:])}; this run expects {expected} uint8"
            )
        x = self.pre.normalise(images.to(self.device))
        logits = tta_logits(self.model, x, self.pre.tta)  # as the run's validation and test
        return torch.softmax(logits, dim=1).cpu()

    def table(self, probs: torch.Tensor, files: Sequence[str], top_k: int) -> pd.DataFrame:
        """Rows of file, predicted class, confidence and the top-k classes with probabilities."""
        classes = self.pre.classes
        truth = [Path(f).parent.name if Path(f).parent.name in classes else None for f in files]
        known = truth if any(t is not None for t in truth) else None
        return top_k_table(classes, probs, files, top_k, "file", known)

    def predict_files(
        self,
        files: Iterable[str | Path],
        batch_size: int = 64,
        top_k: int = 3,
        progress: bool | None = None,
        workers: int = 4,
    ) -> Predictions:
        """Decode and classify ``files`` in batches; unreadable ones are skipped and listed.

        ``progress``: None shows a tqdm bar only on a terminal, True always, False never.
        """
        from tqdm.auto import tqdm

        for key, value in (("batch_size", batch_size), ("top_k", top_k)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"{key} must be a whole number >= 1, got {value!r}")
        files = [Path(f) for f in files]
        frames, skipped = [], []
        bar = tqdm(total=len(files), desc="predict", unit="img", disable=_tqdm_disable(progress))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, len(files), batch_size):
                chunk = files[start : start + batch_size]
                decoded = list(pool.map(self._try_decode, chunk))
                ok = [(f, x) for f, x in zip(chunk, decoded) if isinstance(x, torch.Tensor)]
                skipped += [(str(f), x) for f, x in zip(chunk, decoded) if isinstance(x, str)]
                if ok:
                    probs = self.probabilities(torch.stack([x for _, x in ok]))
                    frames.append(self.table(probs, [str(f) for f, _ in ok], top_k))
                bar.update(len(chunk))
        bar.close()
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return Predictions(table, skipped)

    def _try_decode(self, path: Path) -> torch.Tensor | str:
        if not path.is_file():
            return "no such file"
        try:
            return decode(path, self.pre)
        except Exception as err:  # PIL raises many types for bad files
            return f"{type(err).__name__}: {err}"


def top_k_table(
    classes: Sequence[str],
    probs: torch.Tensor,
    names: Sequence[str],
    top_k: int,
    name_column: str = "file",
    truth: Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """Rows of ``name_column``, predicted class, confidence and the top-k classes with their
    probabilities; with ``truth`` (a class or None per row), ``true_class`` and ``correct``."""
    k = max(1, min(top_k, len(classes)))
    values, indices = probs.topk(k, dim=1)
    frame = pd.DataFrame(
        {
            name_column: list(names),
            "predicted_class": [classes[i] for i in indices[:, 0].tolist()],
            "confidence": values[:, 0].tolist(),
        }
    )
    for j in range(k):
        frame[f"top{j + 1}_class"] = [classes[i] for i in indices[:, j].tolist()]
        frame[f"top{j + 1}_prob"] = values[:, j].tolist()
    if truth is not None:
        frame["true_class"] = list(truth)
        frame["correct"] = [
            None if t is None else t == p for t, p in zip(truth, frame["predicted_class"])
        ]
    return frame


def _device(spec: str | torch.device) -> torch.device:
    if isinstance(spec, torch.device):
        return spec
    from runner.runtime import resolve_device

    return resolve_device(spec)


def _tqdm_disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


# ------------------------------------------------------------------ CLI


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (argparse turns the error into exit code 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="runner-predict",
        description=(
            "Classify images (or, with a text run, texts) with a finished run's checkpoint; "
            "write a CSV."
        ),
    )
    parser.add_argument("run_dir", help="a run directory (outputs/runs/...) or a checkpoint .pt")
    parser.add_argument(
        "inputs",
        nargs="+",
        help="image files and/or folders (searched deeply); for a text run, .csv files (its "
        "text column) or text files (one text per line)",
    )
    parser.add_argument(
        "--text-column",
        default=None,
        help="text runs: the CSV column holding the texts (default: the run's dataset.text_column)",
    )
    parser.add_argument("--out", default="predictions.csv", help="CSV to write")
    parser.add_argument(
        "--top-k", type=_positive_int, default=3, help="classes listed per image (>= 1)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument(
        "--batch-size", type=_positive_int, default=64, help="images per forward pass (>= 1)"
    )
    parser.add_argument(
        "--checkpoint", default="best", help="best | last | a path to a checkpoint file"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (0 ok, 1 nothing predicted, 2 error)."""
    args = parse_args(argv)
    try:
        model, pre, ckpt = load_model(args.run_dir, args.checkpoint)
        if pre.kind == "text":
            from runner.text.predict import TextPredictor

            texts = TextPredictor.from_loaded(args.run_dir, model, pre, ckpt, args.device)
            return _predict_texts(texts, args)
        predictor = Predictor(model, pre, args.device)
        files = image_files(args.inputs)
        if not files:
            raise RunnerError(f"no image files in {', '.join(args.inputs)}")
        result = predictor.predict_files(
            files, args.batch_size, args.top_k, progress=False if args.no_progress else None
        )
        return _write(result, Path(args.out))
    except RunnerError as err:
        print(f"runner-predict: error: {err}", file=sys.stderr)
        return Exit.REFUSED
    except OSError as err:  # the output file: a read-only folder, a full disk
        where = err.filename or args.out
        print(
            f"runner-predict: error: cannot write {where}: {err.strerror or err}; "
            "choose another --out",
            file=sys.stderr,
        )
        return Exit.REFUSED


def _predict_texts(predictor: Any, args: argparse.Namespace) -> int:
    """``predictor``'s classes of the texts in ``args.inputs``, written to ``args.out``."""
    from runner.io import write_csv

    if args.text_column:
        predictor.text_column = args.text_column
    table = predictor.predict_files(args.inputs, args.top_k, args.batch_size)
    if table.empty:
        print("runner-predict: no text in the input files; nothing written", file=sys.stderr)
        return Exit.FAILED
    out = Path(args.out)
    write_csv(out, table)
    print(f"wrote {len(table)} prediction(s) to {out}{_accuracy(table)}")
    return Exit.OK


def _accuracy(table: pd.DataFrame) -> str:
    if "correct" not in table:
        return ""
    known = table["correct"].dropna()
    return f"; accuracy on the {len(known)} labelled: {known.astype(bool).mean():.4f}"


def _write(result: Predictions, out: Path) -> int:
    from runner.io import write_csv

    if result.skipped:
        skipped_csv = out.with_name(f"{out.stem}_skipped.csv")
        write_csv(skipped_csv, pd.DataFrame(result.skipped, columns=["file", "error"]))
        lines = "\n".join(f"  {f}: {e}" for f, e in result.skipped[:20])
        more = f"\n  ... and {len(result.skipped) - 20} more" if len(result.skipped) > 20 else ""
        print(
            f"runner-predict: skipped {len(result.skipped)} unreadable file(s) "
            f"(listed in {skipped_csv}):\n{lines}{more}",
            file=sys.stderr,
        )
    if result.table.empty:
        print("runner-predict: no image could be read; nothing written", file=sys.stderr)
        return Exit.FAILED
    write_csv(out, result.table)
    print(f"wrote {len(result.table)} prediction(s) to {out}{_accuracy(result.table)}")
    return Exit.OK


if __name__ == "__main__":
    raise SystemExit(main())
