"""Data the runner used to take silently wrong: decoded right, or refused with one message.

Every case writes real files (pickles, IDX bytes, 16-bit PNGs, symlink loops, FIFOs,
CSVs) and either checks the decoded values or that loading raises the named error with
a message naming the file or key. The CLI cases run through ``runner.cli.main()`` in one
subprocess (``tests/cli_driver.py``) and check the exit code, that no traceback reaches
the console, that the message names the problem and that no run is marked completed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runner import predict
from runner.checkpoint import Preprocessing
from runner.data.cifar import load_cifar10
from runner.data.imagefolder import decode_image, load_image_folder
from runner.data.mnist import load_mnist
from runner.data.registry import build_data
from runner.errors import ConfigError, DataError
from runner.text.nusax import load_nusax
from tests.conftest import ROOT, compose_cfg, run_cli

# ------------------------------------------------------------------ writers


def cifar_entry(n: int = 20, seed: int = 0) -> dict:
    """A valid batch: n images (uint8 rows of 3072) with labels 0..9 cycling."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {"batch_label": "b", "labels": [i % 10 for i in range(n)], "data": data}


def write_cifar(root: Path, replace: dict[str, bytes] | None = None) -> Path:
    """A CIFAR-10 folder of 5 × 20 training and 20 test images; ``replace`` swaps files."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    for i, name in enumerate(names):
        (folder / name).write_bytes(pickle.dumps(cifar_entry(seed=i), protocol=2))
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    for name, payload in (replace or {}).items():
        (folder / name).write_bytes(payload)
    return folder


def write_idx(path: Path, array: np.ndarray, code: int) -> None:
    """An IDX file of ``array`` stored as type ``code`` (0x08 uint8 … 0x0D float32)."""
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}[code]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + np.asarray(array).astype(dtype).tobytes())


def write_mnist(folder: Path, images=None, labels=None, image_code=0x08, label_code=0x08):
    """train (60) and t10k (30) IDX files; ``images``/``labels`` replace the train files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 30)):
        x, y = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
        x_code, y_code = 0x08, 0x08
        if prefix == "train":
            x = x if images is None else images
            y = y if labels is None else labels
            x_code, y_code = image_code, label_code
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x, x_code)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, y_code)
    return folder


def write_images(folder: Path, classes=("a", "b"), per_class: int = 6) -> Path:
    """Tiny 8 × 8 PNGs, a distinct grey level per image."""
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            value = 20 + 100 * c + 10 * i
            Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(folder / name / f"{i}.png")
    return folder


def write_texts(folder: Path, train_labels: list[str], test_labels: list[str] | None = None):
    """train.csv and test.csv (valid carved from train) with ``id, text, label`` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    words = {"pos": "enak bagus", "neg": "buruk jelek"}
    for name, labels in (("train", train_labels), ("test", test_labels or train_labels)):
        with (folder / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text", "label"])
            for i, label in enumerate(labels):
                key = "pos" if label.strip().lower().startswith("p") else "neg"
                writer.writerow([i, f"saya {words[key]} {i}", label])
    return folder


class Payload:
    """Pickles to a call of ``func(*args)`` — what a crafted pickle runs when loaded."""

    def __init__(self, func: Callable, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def crafted(kind: str, marker: Path) -> Payload:
    """A payload that would create ``marker`` through ``kind`` if it were ever called."""
    if kind == "os.system":
        return Payload(os.system, f"touch {marker}")
    if kind == "builtins.open":
        return Payload(open, str(marker), "w")
    source = marker.with_name("source.txt")
    source.write_text("x")
    return Payload(shutil.copyfile, str(source), str(marker))


# ------------------------------------------------------------------ CIFAR-10

# what each names in the pickle (os.system is posix.system, open is io.open)
CALLABLES = {"os.system": "system", "builtins.open": "open", "shutil.copyfile": "shutil.copyfile"}


@pytest.mark.parametrize("where", ["data_batch_1", "labels", "batches.meta"])
@pytest.mark.parametrize("kind", list(CALLABLES))
def test_crafted_cifar_pickle_runs_nothing_and_is_refused(tmp_path, kind, where):
    marker = tmp_path / "MARKER"
    payload = crafted(kind, marker)
    if where == "labels":  # hidden inside an otherwise valid batch
        file, obj = "data_batch_3", {**cifar_entry(), "labels": payload}
    else:
        file, obj = where, payload
    write_cifar(tmp_path, {file: pickle.dumps(obj, protocol=2)})
    with pytest.raises(DataError) as err:
        load_cifar10(root=str(tmp_path), val_size=20)
    assert not marker.exists()
    message = str(err.value)
    assert file in message and CALLABLES[kind] in message and "nothing in it was run" in message


def cifar_case(tmp_path: Path, entry: dict, file: str = "data_batch_2") -> Callable:
    write_cifar(tmp_path, {file: pickle.dumps(entry, protocol=2)})
    return lambda: load_cifar10(root=str(tmp_path), val_size=20)


def test_cifar_batch_without_labels_names_the_file_and_its_keys(tmp_path):
    entry = cifar_entry()
    entry["targets"] = entry.pop("labels")
    with pytest.raises(DataError) as err:
        cifar_case(tmp_path, entry)()
    message = str(err.value)
    assert "data_batch_2" in message and "no 'labels'" in message
    assert "'targets'" in message and "'data'" in message and "'batch_label'" in message


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda e: {**e, "data": e["data"].astype(np.int16) + 100}, ["data_batch_2", "..355"]),
        (lambda e: {**e, "data": e["data"].astype(np.float32) - 1}, ["data_batch_2", "-1.."]),
        (lambda e: {**e, "data": e["data"].astype(object)}, ["data_batch_2", "not numbers"]),
        (lambda e: {**e, "labels": [*e["labels"][:-1], 10]}, ["data_batch_2", "10 classes"]),
        (lambda e: {**e, "labels": [*e["labels"][:-1], -1]}, ["data_batch_2", "-1..9"]),
        (lambda e: {**e, "labels": [0.5] * 20}, ["data_batch_2", "whole numbers"]),
        (lambda e: {**e, "data": e["data"][:, :100]}, ["data_batch_2", "(N, 3072)"]),
        (lambda e: [e["data"]], ["data_batch_2", "holds a list"]),
    ],
    ids=["int16_above_255", "float_negative", "objects", "label_10", "label_-1",
         "fractional_label", "wrong_shape", "not_a_dict"],
)  # fmt: skip
def test_cifar_bad_values_are_refused_naming_the_file(tmp_path, change, words):
    with pytest.raises(DataError) as err:
        cifar_case(tmp_path, change(cifar_entry(seed=1)))()
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    ("convert", "expected"),
    [
        (lambda d: d.astype(np.float32) / 255, lambda d: d),  # [0, 1] floats
        (lambda d: d.astype(np.float64), lambda d: d),  # [0, 255] floats
        (lambda d: d.astype(np.int64).tolist(), lambda d: d),  # python ints in range
    ],
    ids=["float01", "float255", "int_list"],
)
def test_cifar_other_number_types_in_range_decode_to_the_same_pixels(tmp_path, convert, expected):
    entry = cifar_entry(seed=1)
    data = load_cifar10(**_cifar_test_batch(tmp_path, {**entry, "data": convert(entry["data"])}))
    want = torch.from_numpy(expected(entry["data"]).reshape(-1, 3, 32, 32))
    assert torch.equal(data.test.x, want)


def _cifar_test_batch(tmp_path: Path, entry: dict) -> dict:
    write_cifar(tmp_path, {"test_batch": pickle.dumps(entry, protocol=2)})
    return {"root": str(tmp_path), "val_size": 20, "check_duplicates": False}


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_cifar_pickles_of_every_protocol_and_numpy_1_names_load(tmp_path, protocol):
    entry = cifar_entry(seed=3)
    entry["labels"] = [np.int64(v) for v in entry["labels"]]  # numpy scalars, too
    raw = pickle.dumps({k.encode(): v for k, v in entry.items()}, protocol=protocol)  # bytes keys
    if protocol == 2:  # the module name numpy 1 (and the original CIFAR files) use
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray" in raw
    write_cifar(tmp_path, {"test_batch": raw})
    data = load_cifar10(root=str(tmp_path), val_size=20, check_duplicates=False)
    assert torch.equal(data.test.x.reshape(20, -1), torch.from_numpy(entry["data"]))
    assert data.test.y.tolist() == [i % 10 for i in range(20)]


# ------------------------------------------------------------------ IDX (MNIST)


def test_float_idx_images_in_0_1_are_scaled_to_0_255(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (60, 28, 28))
    write_mnist(tmp_path / "MNIST" / "raw", images=pixels / 255.0, image_code=0x0D)
    data = load_mnist(root=str(tmp_path), val_fraction=0.0, check_duplicates=False)
    assert data.train.x.dtype == torch.uint8
    assert torch.equal(data.train.x[:, 0], torch.from_numpy(pixels.astype(np.uint8)))
    assert data.train.x.float().mean() > 100  # not 0/1 as a plain cast makes them


@pytest.mark.parametrize(
    ("images", "labels", "codes", "file", "words"),
    [
        (np.full((60, 28, 28), 300.0), None, (0x0D, 0x08), "train-images", ["0..", "300"]),
        (np.full((60, 28, 28), -0.5), None, (0x0D, 0x08), "train-images", ["-0.5"]),
        (np.full((60, 28, 28), 1000), None, (0x0B, 0x08), "train-images", ["1000", "int16"]),
        (np.full((60, 28, 28), np.nan), None, (0x0D, 0x08), "train-images", ["NaN"]),
        (None, np.arange(60) % 12, (0x08, 0x08), "train-labels", ["0..11", "10 classes"]),
        (None, np.arange(60) % 10 - 1, (0x08, 0x09), "train-labels", ["-1..8"]),
        (None, np.full(60, 1.5), (0x08, 0x0D), "train-labels", ["whole numbers"]),
    ],
    ids=["float_300", "float_negative", "int16_1000", "nan", "label_11", "label_-1",
         "label_1.5"],
)  # fmt: skip
def test_bad_idx_values_are_refused_naming_the_file(tmp_path, images, labels, codes, file, words):
    write_mnist(tmp_path / "MNIST" / "raw", images, labels, *codes)
    with pytest.raises(DataError) as err:
        load_mnist(root=str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw" / file) in message
    for word in words:
        assert word in message


# ------------------------------------------------------------------ image files


def test_16_bit_png_decodes_to_the_right_8_bit_values(tmp_path):
    levels = np.arange(256, dtype=np.uint16).reshape(16, 16)
    Image.fromarray(levels * 257).save(tmp_path / "wide.png")  # 8-bit levels widened
    Image.fromarray(levels * 100).save(tmp_path / "dark.png")  # 0..25 500 of 65 535
    assert Image.open(tmp_path / "wide.png").mode == "I;16"
    for channels in (1, 3):
        wide, mode = decode_image(tmp_path / "wide.png", 16, channels)
        assert mode == "I;16" and wide.shape == (channels, 16, 16)
        assert torch.equal(wide[0], torch.from_numpy(levels.astype(np.uint8)))
    dark, _ = decode_image(tmp_path / "dark.png", 16, 1)
    expected = np.rint(levels * 100 / 257).astype(np.uint8)
    assert torch.equal(dark[0], torch.from_numpy(expected)) and dark.max() == 99  # not 255


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.linspace(0, 1, 64, dtype=np.float32), np.rint(np.linspace(0, 255, 64))),
        (np.linspace(0, 200, 64, dtype=np.float32), np.rint(np.linspace(0, 200, 64))),
        (np.arange(64, dtype=np.int32) * 1000, np.rint(np.arange(64) * 1000 / 257)),
        (np.arange(64, dtype=np.int32), np.arange(64)),
    ],
    ids=["float_0_1", "float_0_255", "int32_16bit", "int32_8bit"],
)
def test_float_and_32_bit_tiffs_follow_the_documented_rule(tmp_path, values, expected):
    Image.fromarray(values.reshape(8, 8)).save(tmp_path / "img.tif")
    decoded, _ = decode_image(tmp_path / "img.tif", 8, 1)
    assert decoded.flatten().tolist() == expected.astype(np.uint8).tolist()


@pytest.mark.parametrize("values", [np.full((8, 8), -3.0, np.float32), np.full((8, 8), 1e6)])
def test_float_tiff_out_of_range_is_refused_naming_the_file(tmp_path, values):
    Image.fromarray(values.astype(np.float32)).save(tmp_path / "img.tif")
    with pytest.raises(DataError, match="img.tif"):
        decode_image(tmp_path / "img.tif", 8, 1)


def test_16_bit_image_folder_trains_on_the_right_values(tmp_path):
    folder = write_images(tmp_path / "pics")
    Image.fromarray(np.full((8, 8), 128 * 257, np.uint16)).save(folder / "a" / "wide.png")
    data = load_image_folder(
        root=str(tmp_path), name="pics", image_size=8, channels=1, val_fraction=0.0,
        test_fraction=0.0, cache=False, check_duplicates=False,
    )  # fmt: skip
    index = data.train.names.index("a/wide.png")
    assert data.train.x[index].unique().tolist() == [128]


# ------------------------------------------------------------------ folder layouts


def _load_pics(tmp_path: Path, **options) -> tuple:
    """Load ``tmp_path/pics`` with every sample in train; the bundle and the warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(
            root=str(tmp_path), name="pics", image_size=8, val_fraction=0.0, test_fraction=0.0,
            check_duplicates=False, **options,
        )  # fmt: skip
    return data, " ".join(str(w.message) for w in caught)


@pytest.mark.parametrize(
    "link",
    [("a/loop", ".."), ("a/self", "."), ("a/sub/up", "../.."), ("b/to_root", "../..")],
    ids=["to_parent", "to_itself", "nested", "to_dataset_parent"],
)
def test_symlink_loop_does_not_multiply_images(tmp_path, link):
    folder = write_images(tmp_path / "pics")
    (folder / "a" / "sub").mkdir()
    os.symlink(link[1], folder / link[0])
    data, warned = _load_pics(tmp_path, cache=False)
    assert len(data.train) == 12
    assert data.split_counts()["train"] == [6, 6]
    assert "symlink loop" in warned and link[0].split("/")[-1] in warned


def test_repeated_links_count_once_and_a_file_under_two_classes_is_refused(tmp_path):
    folder = write_images(tmp_path / "pics")
    os.symlink("0.png", folder / "a" / "again.png")
    os.symlink("../a", folder / "a" / "also_a")
    data, warned = _load_pics(tmp_path, cache=False)
    assert len(data.train) == 12 and "again.png" in warned and "also_a" in warned
    os.symlink("../a/1.png", folder / "b" / "stolen.png")
    with pytest.raises(DataError) as err:
        _load_pics(tmp_path, cache=False)
    assert "stolen.png" in str(err.value) and "two classes" in str(err.value)


def _unblock_fifo_later(fifo: Path) -> threading.Timer:
    """If a regression opens the FIFO for reading, open it for writing after 20 s so the
    reader gets end-of-file and the test fails instead of hanging."""

    def unblock() -> None:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(20, unblock)
    timer.start()
    return timer


@pytest.mark.parametrize("streaming", [False, True], ids=["memory", "streaming"])
def test_fifo_and_broken_link_among_images_are_skipped_with_a_warning(tmp_path, streaming):
    folder = write_images(tmp_path / "pics")
    os.mkfifo(folder / "a" / "pipe.png")
    os.symlink("missing.png", folder / "b" / "broken.png")
    timer = _unblock_fifo_later(folder / "a" / "pipe.png")
    try:
        data, warned = _load_pics(tmp_path, streaming=str(streaming).lower())
        assert len(data.train) == 12
        assert "pipe.png (FIFO)" in warned and "broken.png (broken link)" in warned
        if streaming:
            batches = list(data.train.batches(32))
            assert sum(len(b[1]) for b in batches) == 12
    finally:
        timer.cancel()


@pytest.mark.parametrize(
    ("folders", "words"),
    [
        (("Positive ", "positive"), ["'Positive '", "'positive'", "case or surrounding"]),
        (("Cat", "cat", "dog"), ["'Cat'", "'cat'"]),
        (("cat ", "cat", "dog"), ["'cat '", "'cat'"]),
        (("  ", "dog", "cat"), ["'  '", "empty"]),
    ],
    ids=["case_and_space", "case", "space", "blank_name"],
)
def test_class_folder_names_that_clash_or_are_empty_are_refused(tmp_path, folders, words):
    write_images(tmp_path / "pics", classes=folders, per_class=2)
    with pytest.raises(DataError) as err:
        _load_pics(tmp_path, cache=False)
    assert str(tmp_path / "pics") in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_class_folder_names_lose_surrounding_whitespace(tmp_path):
    write_images(tmp_path / "pics", classes=(" cat ", "dog"), per_class=2)
    data, _ = _load_pics(tmp_path, cache=False)
    assert data.classes == ["cat", "dog"]


# ------------------------------------------------------------------ text CSV


def test_empty_text_label_is_refused_naming_file_and_row(tmp_path):
    folder = write_texts(tmp_path / "csv", ["pos", "neg", "", "pos", "neg", "pos", "neg"] * 3)
    with pytest.raises(DataError) as err:
        load_nusax(path=str(folder), val_fraction=0.2)
    message = str(err.value)
    assert str(folder / "train.csv") in message and "data row 3 (train.csv#2)" in message
    assert "3 row(s)" in message


def test_label_whitespace_is_stripped(tmp_path):
    labels = ["positive ", "negative", " positive", "negative", "positive"] * 4
    data = load_nusax(path=str(write_texts(tmp_path / "csv", labels)), val_fraction=0.2)
    assert data.classes == ["negative", "positive"]
    assert data.split_counts()["test"] == [8, 12]


@pytest.mark.parametrize(
    ("train", "test", "words"),
    [
        (["Positive ", "positive", "negative"] * 4, None, ["train.csv", "'Positive' (4 rows)"]),
        (["positive", "negative"] * 4, ["Positive", "negative"] * 4, ["test", "'Positive'/"]),
    ],
    ids=["within_a_file", "between_splits"],
)
def test_labels_differing_only_by_case_are_refused(tmp_path, train, test, words):
    folder = write_texts(tmp_path / "csv", train, test)
    with pytest.raises(DataError) as err:
        load_nusax(path=str(folder), val_fraction=0.2)
    for word in words:
        assert word in str(err.value)


# ------------------------------------------------------------------ one class


def test_a_single_class_is_refused_for_every_dataset(tmp_path):
    folder = write_texts(tmp_path / "csv", ["positive"] * 12)
    cfg = compose_cfg(["dataset=nusax_senti", f"dataset.path={folder}"])
    with pytest.raises(DataError, match="1 class.*'positive'.*at least two"):
        build_data(cfg.dataset, 0)
    cfg = compose_cfg(["dataset=synthetic", "dataset.num_classes=1", "dataset.num_samples=20"])
    with pytest.raises(DataError, match="Set dataset.num_classes to 2 or more"):
        build_data(cfg.dataset, 0)


# ------------------------------------------------------------------ prediction arguments


@pytest.mark.parametrize(
    "args",
    [["--batch-size", "-1"], ["--batch-size", "0"], ["--top-k", "0"], ["--batch-size", "two"]],
    ids=["batch_-1", "batch_0", "top_k_0", "batch_word"],
)
def test_predict_refuses_non_positive_sizes(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(tmp_path / "no-run"), str(tmp_path), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert args[0] in err and "must be a whole number >= 1" in err and "Traceback" not in err


def test_predict_api_refuses_non_positive_sizes(tmp_path):
    pre = Preprocessing("image", 1, (8, 8), [0.5], [0.5], ["a", "b"])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    predictor = predict.Predictor(model, pre, "cpu")
    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    for kwargs in ({"batch_size": -1}, {"batch_size": 0}, {"top_k": 0}):
        with pytest.raises(ConfigError, match=next(iter(kwargs))):
            predictor.predict_files([tmp_path / "x.png"] * 3, **kwargs)
    assert len(predictor.predict_files([tmp_path / "x.png"] * 3, batch_size=2).table) == 3


# ------------------------------------------------------------------ through the CLI

CNN = ["model=custom_cnn", "model.filters=[4]", "model.fc_neurons=[8]"]
TINY = [
    "trainer.max_epochs=1",
    "trainer.batch_size=16",
    "diagnostics=off",
    "trainer.progress_bar=false",
    "trainer.num_threads=1",
]
TEXT = ["dataset=nusax_senti", "model=bilstm", "model.embed_dim=8", "model.hidden_size=4"]


def _cli_cases(root: Path) -> list[tuple[list[str], list[str]]]:
    """(arguments, words the message must contain) of each refused CLI case."""
    marker = root / "MARKER"
    cifar = ["dataset=cifar10", "dataset.val_size=20"]
    entry = cifar_entry()
    no_labels = {k: v for k, v in entry.items() if k != "labels"}
    wide = {**entry, "data": entry["data"].astype(np.int32) * 2}
    batches = {
        "crafted": {"data_batch_4": pickle.dumps(crafted("os.system", marker))},
        "no_labels": {"data_batch_2": pickle.dumps(no_labels)},
        "wide": {"test_batch": pickle.dumps(wide)},
    }
    for name, files in batches.items():
        write_cifar(root / name, files)
    write_mnist(root / "labels" / "MNIST" / "raw", labels=np.arange(60) % 11)
    write_mnist(root / "float" / "MNIST" / "raw", images=np.full((60, 28, 28), 2e3), image_code=13)
    write_images(root / "folders" / "pics", classes=("Positive ", "positive"), per_class=2)
    write_texts(root / "empty", ["pos", "neg", "", "pos", "neg", "pos"] * 3)
    write_texts(root / "single", ["pos"] * 12)
    mnist, images = ["dataset=mnist", "dataset.val_fraction=0.2"], "dataset=imagefolder"
    return [
        ([*cifar, f"dataset.root={root / 'crafted'}"], ["data_batch_4", "system", "nothing"]),
        ([*cifar, f"dataset.root={root / 'no_labels'}"], ["data_batch_2", "no 'labels'"]),
        ([*cifar, f"dataset.root={root / 'wide'}"], ["test_batch", "0..510"]),
        ([*mnist, f"dataset.root={root / 'labels'}"], ["train-labels-idx1-ubyte", "0..10"]),
        ([*mnist, f"dataset.root={root / 'float'}"], ["train-images-idx3-ubyte", "2000"]),
        ([images, "dataset.name=pics", f"dataset.root={root / 'folders'}"], ["'Positive '"]),
        ([*TEXT, f"dataset.path={root / 'empty'}"], ["train.csv", "empty 'label'"]),
        ([*TEXT, f"dataset.path={root / 'single'}"], ["1 class", "at least two"]),
        (["dataset=synthetic", "dataset.num_classes=1"], ["dataset.num_classes"]),
    ]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory) -> tuple[Path, list[dict], list[list[str]]]:
    """Every CLI case through ``runner.cli.main()`` in one subprocess."""
    root = tmp_path_factory.mktemp("trust")
    cases = _cli_cases(root / "data")
    lists = [[*TINY, *([] if "model=bilstm" in args else CNN), *args] for args, _ in cases]
    (root / "cases.json").write_text(json.dumps(lists))
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.cli_driver", str(root / "cases.json"),
         str(root / "out" / "results.json")],
        cwd=ROOT, env=env, timeout=600, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads((root / "out" / "results.json").read_text())
    return root, results, [words for _, words in cases]


CLI_IDS = ["cifar_crafted", "cifar_no_labels", "cifar_pixels_510", "idx_label_10",
           "idx_float_2000", "folder_case_clash", "text_empty_label", "text_one_class",
           "synthetic_one_class"]  # fmt: skip


@pytest.mark.parametrize("index", range(len(CLI_IDS)), ids=CLI_IDS)
def test_cli_refuses_bad_data_with_one_message(cli_results, index):
    root, results, words = cli_results
    result = results[index]
    stderr = result["stderr"]
    assert result["code"] == 2, stderr
    assert "Traceback" not in stderr, stderr
    for word in words[index]:
        assert word in stderr, stderr
    for summary in Path(result["workdir"]).glob("outputs/**/summary.json"):
        assert json.loads(summary.read_text())["status"] != "completed", summary
    assert not (root / "data" / "MARKER").exists()


@pytest.mark.slow  # a whole run with its report (~25 s); the loader tests above cover loops
def test_cli_trains_on_a_folder_with_a_symlink_loop_counting_each_image_once(tmp_path):
    folder = write_images(tmp_path / "data" / "pics", per_class=8)
    os.symlink("..", folder / "a" / "loop")
    args = [
        "dataset=imagefolder",
        "dataset.name=pics",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.image_size=8",
        "dataset.val_fraction=0.25",
        "dataset.test_fraction=0.25",
    ]
    proc = run_cli([*TINY, *CNN, *args], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "symlink loop" in proc.stderr + proc.stdout
    counts = next((tmp_path / "outputs").glob("**/class_counts.csv")).read_text()
    rows = list(csv.DictReader(counts.splitlines()))
    assert sum(int(r["train"]) + int(r["val"]) + int(r["test"]) for r in rows) == 16


def test_predict_walks_a_folder_with_a_symlink_loop_once(tmp_path):
    """runner-predict expands folders with the image-folder walker: a loop is not followed
    and each image is predicted once."""
    import warnings

    from PIL import Image

    from runner.predict import image_files

    folder = tmp_path / "inbox" / "cats"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (folder / "loop").symlink_to(tmp_path / "inbox")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = image_files([tmp_path / "inbox"])
    assert sorted(f.name for f in files) == ["0.png", "1.png", "2.png"]
    assert any("loop" in str(w.message) for w in caught)
