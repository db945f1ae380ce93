"""Dataset builders on real files in real formats, written into tmp_path.

CIFAR-10 python pickle batches, MNIST IDX files (gzipped and raw), image
folders of PNG and JPEG (mixed sizes, a grey-scale image, a corrupt file), the
decode cache, group-aware splits, duplicate detection, streaming, and one
training epoch of each format through the ``runner`` console script.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runner.data.cifar import load_cifar10
from runner.data.imagefolder import StreamingSplit, load_image_folder, scan, split_indices
from runner.data.mnist import load_fashion_mnist, load_mnist, read_idx
from runner.data.splits import check_group_disjoint, group_split, groups_from_regex
from runner.errors import ConfigError, DataError
from runner.train import train
from tests.conftest import SHARED_DATA, compose_cfg, only_run_dir, run_cli

# A tiny custom CNN and no diagnostics, so the CLI epochs take seconds: these tests are
# about the data formats.
TINY = [
    "model=custom_cnn",
    "model.filters=[8,16]",
    "model.fc_neurons=[32]",
    "trainer.batch_size=32",
    "diagnostics=off",
]

# ------------------------------------------------------------------ writers


def class_images(n: int, classes: int, size: int, channels: int, seed: int = 0):
    """Learnable uint8 images (N, size, size, C): each class a distinct colour band + noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    base = np.zeros((classes, size, size, channels), dtype=np.float32)
    for c in range(classes):
        base[c, (c * size) // classes : ((c + 1) * size) // classes, :, :] = 200
        base[c, :, :, c % channels] += 40
    x = base[y] + rng.normal(0, 20, (n, size, size, channels))
    return np.clip(x, 0, 255).astype(np.uint8), y


def write_cifar(root: Path, per_batch: int = 60) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
    for i, name in enumerate([*names, "test_batch"]):
        hwc, y = class_images(per_batch, 10, 32, 3, seed=i)
        data = hwc.transpose(0, 3, 1, 2).reshape(per_batch, -1)  # R, G, B planes per row
        entry = {"batch_label": name, "labels": y.tolist(), "data": data}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_mnist(folder: Path, n_train: int = 200, n_test: int = 100, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x, y = class_images(n, 10, 28, 1, seed=n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x[..., 0], gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, gz)
    return folder


def write_folder(
    folder: Path, per_class: int = 12, corrupt: bool = True, classes=("a", "b", "c"), seed=0
):
    """PNG and JPEG of mixed sizes, one grey-scale image and (optionally) one corrupt file."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = int(rng.integers(24, 60)), int(rng.integers(24, 60))
            img = np.full((h, w, 3), 40, np.uint8)
            img[:, :, c % 3] = 220
            img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
            pil = Image.fromarray(img)
            if c == 0 and i == 0:
                pil = pil.convert("L")  # grey among colour images
            ext = "png" if i % 2 else "jpg"
            pil.save(d / f"{name}_obj{i // 3}_frame{i}.{ext}")
    if corrupt:
        (folder / classes[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / classes[0] / "notes.txt").write_text("ignored: not an image")
    return folder


# ------------------------------------------------------------------ CIFAR-10


def test_cifar_reads_pickle_batches_without_md5(tmp_path):
    write_cifar(tmp_path)
    data = load_cifar10(root=str(tmp_path), val_size=50, seed=1)
    assert (len(data.train), len(data.val), len(data.test)) == (250, 50, 60)
    assert data.classes == [f"c{i}" for i in range(10)]
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape[1:] == (3, 32, 32)
    assert data.mean == (0.5, 0.5, 0.5) and data.std == (0.5, 0.5, 0.5)
    assert data.split_counts()["val"] == [5] * 10  # stratified
    # the test split is the test_batch, pixel for pixel, in CHW order
    hwc, y = class_images(60, 10, 32, 3, seed=5)
    assert torch.equal(data.test.x, torch.from_numpy(hwc.transpose(0, 3, 1, 2).copy()))
    assert data.test.y.tolist() == y.tolist()
    assert list(data.artifacts["duplicates.csv"].columns)[:3] == ["hash", "split_a", "name_a"]


def test_cifar_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar10(root=str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg
    assert "data_batch_1" in msg and "download=true" in msg


def test_cifar_rejects_a_file_that_is_not_a_batch(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(root=str(tmp_path))


# ------------------------------------------------------------------ MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path, gz):
    write_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    data = load_mnist(root=str(tmp_path), val_fraction=0.1, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (180, 20, 100)
    assert data.train.x.shape[1:] == (1, 28, 28) and data.channels == 1
    x, y = class_images(100, 10, 28, 1, seed=100)
    assert torch.equal(data.test.x[:, 0], torch.from_numpy(x[..., 0]))
    assert data.test.y.tolist() == y.tolist()
    assert len(data.mean) == 1 and 0 < data.mean[0] < 1


def test_fashion_mnist_folder_and_use_test_as_train(tmp_path):
    write_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    data = load_fashion_mnist(
        root=str(tmp_path), use_test_as_train=True, val_fraction=0.2, test_fraction=0.2
    )
    assert (len(data.train), len(data.val), len(data.test)) == (60, 20, 20)
    assert data.classes[0] == "T-shirt/top"
    with pytest.raises(ConfigError, match="test_fraction"):
        load_fashion_mnist(root=str(tmp_path), use_test_as_train=True)


def test_mnist_missing_and_broken_files(tmp_path):
    with pytest.raises(DataError) as err:
        load_mnist(root=str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "download=true" in msg
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 10, 28, 28) + b"\x00" * 5)
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad)


# ------------------------------------------------------------------ image folders


def test_image_folder_corrupt_file_is_named_or_skipped(tmp_path):
    folder = write_folder(tmp_path / "shapes")
    with pytest.raises(DataError) as err:
        load_image_folder(root=str(tmp_path), name="shapes", image_size=16)
    assert "broken.jpg" in str(err.value) and "skip_corrupt" in str(err.value)

    with pytest.warns(UserWarning, match="broken.jpg"):
        data = load_image_folder(
            root=str(tmp_path), name="shapes", image_size=16, skip_corrupt=True, seed=3
        )
    assert data.classes == ["a", "b", "c"]
    assert len(data.train) + len(data.val) + len(data.test) == 36
    assert data.train.x.shape[1:] == (3, 16, 16)  # grey image converted, sizes unified
    skipped = data.artifacts["skipped_files.csv"]
    assert skipped["file"].tolist() == ["a/broken.jpg"]
    # the grey image became three equal channels
    names = data.train.names + data.val.names + data.test.names
    xs = torch.cat([data.train.x, data.val.x, data.test.x])
    grey = xs[names.index("a/a_obj0_frame0.jpg")]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert (folder / "a" / "notes.txt").exists()  # ignored, not an error


def test_image_folder_cache_second_load_decodes_nothing(tmp_path, monkeypatch, caplog):
    write_folder(tmp_path / "shapes", corrupt=False)
    cache = tmp_path / "cache"
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    load = functools.partial(load_image_folder, root=str(tmp_path), name="shapes")
    first = load(image_size=20, cache_dir=str(cache))
    assert len(opened) == 36
    files = list(cache.glob("shapes-20px-3ch-*.pt"))
    assert len(files) == 1

    opened.clear()
    with caplog.at_level("INFO", logger="runner.data.cache"):
        second = load(image_size=20, cache_dir=str(cache))
    assert opened == []
    assert "loaded 36 images from cache" in caplog.text
    assert torch.equal(first.train.x, second.train.x) and first.train.names == second.train.names

    # touching one image invalidates the cache; another size is another file
    target = tmp_path / "shapes" / "b" / "b_obj0_frame1.png"
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    load(image_size=20, cache_dir=str(cache))
    assert len(opened) == 36
    load(image_size=12, cache_dir=str(cache), cache=False)
    assert len(list(cache.glob("shapes-*.pt"))) == 2
    assert not list((tmp_path / "shapes").rglob("*.pt"))  # nothing inside the dataset


def test_split_folders_are_used_as_is_and_duplicates_found(tmp_path):
    for seed, (split, n) in enumerate((("train", 9), ("val", 3), ("test", 3))):
        write_folder(tmp_path / "food" / split, n, corrupt=False, classes=("x", "y"), seed=seed)
    # an exact copy of a training image in test
    src = tmp_path / "food" / "train" / "y" / "y_obj1_frame4.jpg"
    (tmp_path / "food" / "test" / "y" / "copy.jpg").write_bytes(src.read_bytes())
    with pytest.warns(UserWarning, match="identical image"):
        data = load_image_folder(root=str(tmp_path), name="food", image_size=16)
    assert (len(data.train), len(data.val), len(data.test)) == (18, 6, 7)
    assert all(n.startswith("train/") for n in data.train.names)
    dup = data.artifacts["duplicates.csv"]
    assert len(dup) == 1
    assert dup.iloc[0][["name_a", "name_b"]].tolist() == [
        "train/y/y_obj1_frame4.jpg",
        "test/y/copy.jpg",
    ]


def test_missing_split_folders_are_carved_from_train(tmp_path):
    write_folder(tmp_path / "pics" / "train", per_class=20, corrupt=False, classes=("x", "y"))
    data = load_image_folder(
        root=str(tmp_path), name="pics", image_size=8, val_fraction=0.2, test_fraction=0.1
    )
    assert (len(data.train), len(data.val), len(data.test)) == (28, 8, 4)
    assert data.classes == ["x", "y"]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "no image folder at"),
        ("empty_class", "no images"),
        ("single_class", "only one class folder"),
        ("loose", "no class folders"),
    ],
)
def test_image_folder_layout_errors(tmp_path, layout, message):
    folder = tmp_path / "pics"
    if layout == "empty_class":
        write_folder(folder, per_class=3, corrupt=False, classes=("a", "b"))
        (folder / "empty").mkdir()
    elif layout == "single_class":
        write_folder(folder, per_class=3, corrupt=False, classes=("only",))
    elif layout == "loose":
        folder.mkdir()
        Image.new("RGB", (8, 8)).save(folder / "img.png")
    with pytest.raises(DataError, match=message) as err:
        load_image_folder(root=str(tmp_path), name="pics", image_size=8)
    if layout == "missing":
        assert "dataset.path" in str(err.value) and str(folder) in str(err.value)


def test_group_split_keeps_groups_together_and_subset(tmp_path):
    write_folder(tmp_path / "frames", per_class=30, corrupt=False)
    data = load_image_folder(
        root=str(tmp_path), name="frames", image_size=8, group_regex=r"_(obj\d+)_",
        val_fraction=0.2, test_fraction=0.2, seed=7,
    )  # fmt: skip
    groups = {
        s: {n.split("/")[0] + n.split("_")[1] for n in getattr(data, s).names}
        for s in ("train", "val", "test")
    }
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"])
    assert not groups["val"] & groups["test"]
    assert all(len(g) > 0 for g in groups.values())

    small = load_image_folder(
        root=str(tmp_path), name="frames", image_size=8, subset=4, seed=7, test_fraction=0.0
    )
    assert small.split_counts()["train"] == [4, 4, 4]
    full = load_image_folder(root=str(tmp_path), name="frames", image_size=8)
    half = load_image_folder(root=str(tmp_path), name="frames", image_size=8, subset=0.5)
    expected = [int(round(n / 2)) for n in full.split_counts()["train"]]
    assert half.split_counts()["train"] == expected
    assert half.split_counts()["val"] == full.split_counts()["val"]  # only train shrinks


def test_group_split_function_balances_and_warns():
    y = np.repeat([0, 1], 50)
    groups = [f"{c}-{i // 5}" for c, i in zip(y, range(100))]
    tr, va, te = group_split(y, groups, 0.2, 0.2, seed=0)
    assert len(tr) + len(va) + len(te) == 100
    check_group_disjoint(groups, {"train": tr, "val": va, "test": te})
    assert 15 <= len(va) <= 25 and 15 <= len(te) <= 25
    with pytest.raises(DataError, match="both"):
        check_group_disjoint(groups, {"train": np.array([0]), "val": np.array([1])})
    with pytest.warns(UserWarning, match="too few groups"):
        group_split(np.zeros(4, int), ["g0", "g0", "g1", "g1"], 0.2, 0.2, seed=0)


def test_streaming_split_iterates_uint8_batches(tmp_path):
    write_folder(tmp_path / "big", per_class=10, corrupt=False)
    data = load_image_folder(
        root=str(tmp_path), name="big", image_size=12, streaming=True, num_workers=0,
        test_fraction=0.2, val_fraction=0.2,
    )  # fmt: skip
    assert isinstance(data.train, StreamingSplit) and data.train.streaming
    assert data.image_size == (12, 12) and data.channels == 3
    batches = list(data.train.batches(7, shuffle=True, seed=1))
    assert [len(b[1]) for b in batches][:-1] == [7] * (len(batches) - 1)
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 12, 12) and y.dtype == torch.long
    labels = torch.cat([b[1] for b in batches])
    assert sorted(labels.tolist()) == sorted(data.train.y.tolist())
    again = next(iter(data.train.batches(7, shuffle=True, seed=1)))
    assert torch.equal(again[0], x)
    order = torch.tensor([5, 0, 3])  # the loop's own order (or one rank's shard)
    ((xs, ys),) = list(data.train.batches(7, order=order))
    assert ys.tolist() == data.train.y[order].tolist()
    assert torch.equal(xs[1], data.train.x[0])
    assert data.train.x[[0, 2]].shape == (2, 3, 12, 12)
    assert torch.equal(data.train.x[np.int64(2)], data.train.x[2:3][0])
    assert data.train.x[torch.tensor([True] + [False] * (len(data.train) - 1))].shape[0] == 1
    with pytest.raises(DataError, match="batches"):
        data.train.x.to("cpu")
    assert not (tmp_path / ".cache").exists()  # streaming decodes nothing up front


def test_too_few_images_to_stratify_is_a_clear_error(tmp_path):
    write_folder(tmp_path / "few", per_class=3, corrupt=False)
    with pytest.raises(DataError, match="smallest class: 3 images") as err:
        load_image_folder(root=str(tmp_path), name="few", image_size=8)
    assert "images per class, fewest first: a: 3, b: 3, c: 3" in str(err.value)


def _write_text_csvs(folder: Path, labels: list[str]) -> None:
    import pandas as pd

    folder.mkdir(parents=True)
    rows = {"text": [f"text {i}" for i in range(len(labels))], "label": labels}
    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(rows).to_csv(folder / "test.csv", index=False)


def _split_failure(path: str, tmp_path: Path) -> None:
    """Ask loader ``path`` for a split its data cannot give."""
    from runner.data.digits import load_digits
    from runner.data.synthetic import load_synthetic
    from runner.text.nusax import load_nusax

    root = str(tmp_path)
    if path == "digits":  # 1 training image for 10 classes
        load_digits(val_fraction=0.999, test_fraction=0.0)
    elif path == "synthetic":  # classes 2 and 3 have one sample each
        load_synthetic(num_samples=6, num_classes=4, image_size=4)
    elif path == "cifar":
        write_cifar(tmp_path)
        load_cifar10(root=root, val_size=299, check_duplicates=False)
    elif path == "mnist":
        write_mnist(tmp_path / "MNIST" / "raw", n_train=200, n_test=20)
        load_mnist(root=root, val_fraction=0.99, check_duplicates=False)
    elif path == "mnist_test_as_train":
        write_mnist(tmp_path / "MNIST" / "raw", n_train=20, n_test=20)
        load_mnist(root=root, use_test_as_train=True, val_fraction=0.2, test_fraction=0.2)
    elif path == "imagefolder":
        write_folder(tmp_path / "few", per_class=3, corrupt=False)
        load_image_folder(root=root, name="few", image_size=8)
    elif path == "imagefolder_carved":  # train/ only: val and test carved from it
        write_folder(tmp_path / "few" / "train", per_class=1, corrupt=False)
        load_image_folder(root=root, name="few", image_size=8, val_fraction=0.3)
    elif path == "text_hold_out":  # no valid.csv: validation held out of train
        _write_text_csvs(tmp_path / "text", ["pos", "neg", "neg", "pos", "odd"])
        load_nusax(path=str(tmp_path / "text"), val_fraction=0.4)


SPLIT_FAILURES = {  # path: (samples, classes, counts fewest first as the message lists them)
    "digits": ("images", 10, "images per class, fewest first: 8: 174, 2: 177"),
    "synthetic": ("images", 4, "class_2: 1, class_3: 1, class_0: 2, class_1: 2"),
    "cifar": ("images", 10, "c0: 30, c1: 30"),
    "mnist": ("images", 10, "0: 20, 1: 20"),
    "mnist_test_as_train": ("images", 10, "0: 2, 1: 2"),
    "imagefolder": ("images", 3, "a: 3, b: 3, c: 3"),
    "imagefolder_carved": ("images", 3, "a: 1, b: 1, c: 1"),
    "text_hold_out": ("texts", 3, "odd: 1, neg: 2, pos: 2"),
}


@pytest.mark.parametrize("path", list(SPLIT_FAILURES))
def test_every_split_failure_is_a_data_error_naming_the_class_counts(tmp_path, path):
    noun, classes, counts = SPLIT_FAILURES[path]
    with pytest.raises(DataError) as err:
        _split_failure(path, tmp_path)
    msg = str(err.value)
    assert msg.startswith("cannot split ")
    assert f" {noun} of {classes} classes (smallest class: " in msg
    assert counts in msg
    assert "with every class in every split (drawing " in msg and "0 for a split" in msg


def test_stratified_split_checks_fractions_and_names_classes():
    from runner.data.prepare import stratified_split

    y = np.array([0, 0, 0, 1, 1, 2])
    with pytest.raises(DataError, match=r"b: 2, a: 3\) .*\(drawing val: the kept part"):
        stratified_split(np.array([0] * 3 + [1] * 2), 0.7, 0.0, 0, classes=["a", "b"])
    with pytest.raises(DataError, match="drawing test: classes with only 1 member"):
        stratified_split(y, 0.2, 0.2, 0)
    for val, test in ((-0.1, 0.2), (0.5, 0.5), (0.2, 1.0)):
        with pytest.raises(ConfigError, match="dataset.val_fraction"):
            stratified_split(y, val, test, 0)
    train, val, test = stratified_split(y, 0.0, 0.0, 0)  # nothing to draw: all train
    assert train.tolist() == list(range(6)) and len(val) == len(test) == 0


def test_bad_options_are_config_errors(tmp_path):
    write_folder(tmp_path / "p", per_class=3, corrupt=False)
    for kwargs, match in (
        ({"channels": 2}, "1 or 3"),
        ({"streaming": "sometimes"}, "auto, true or false"),
        ({"group_regex": "(", "group_csv": ""}, "not a valid regex"),
        ({"group_regex": "x", "group_csv": "g.csv"}, "not both"),
        ({"download": True}, "no downloader"),
    ):
        with pytest.raises(ConfigError, match=match):
            load_image_folder(root=str(tmp_path), name="p", image_size=8, **kwargs)


# ------------------------------------------------------------------ real shared data


def test_fish_group_split_has_no_fish_in_two_splits():
    folder = SHARED_DATA / "fish_egu2017"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    layout = scan(folder)
    assert len(layout.files) == 1053 and len(layout.classes) == 7
    regex = r"^(.+)_frame\d+"
    groups = groups_from_regex(layout.files, regex)
    parts = split_indices(layout, groups, 0.15, 0.15, seed=42)
    check_group_disjoint(groups, parts)
    assert sum(len(p) for p in parts.values()) == 1053
    for split in ("val", "test"):
        counts = np.bincount(layout.labels[parts[split]], minlength=7)
        assert (counts > 0).all() and 0.1 < len(parts[split]) / 1053 < 0.22
    # by CSV video column as well
    from runner.data.splits import groups_from_csv

    videos = groups_from_csv(layout.files, folder / "test-sample.csv", "video_name")
    check_group_disjoint(videos, split_indices(layout, videos, 0.15, 0.15, seed=0))


def test_food_cross_split_duplicates_are_found(tmp_path):
    folder = SHARED_DATA / "food_id"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(root=str(tmp_path), path=str(folder), name="food", image_size=32)
    assert (len(data.train), len(data.val), len(data.test)) == (256, 32, 32)
    pairs = {tuple(r) for r in data.artifacts["duplicates.csv"][["name_a", "name_b"]].values}
    assert pairs == {
        ("train/pempek/pempek_008.jpg", "val/pempek/pempek_068.jpg"),
        ("train/gudeg/gudeg_038.jpg", "test/gudeg/gudeg_074.jpg"),
    }
    assert any("identical image" in str(w.message) for w in caught)


# ------------------------------------------------------------------ through the CLI


def _run_one_epoch(tmp_path: Path, *overrides: str) -> dict:
    result = run_cli([*TINY, "trainer.max_epochs=1", *overrides], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    return {"run": run, "summary": summary, "stderr": result.stderr}


def test_cli_trains_one_epoch_on_cifar_format(tmp_path):
    write_cifar(tmp_path / "data")
    out = _run_one_epoch(tmp_path, "dataset=cifar10", f"dataset.root={tmp_path / 'data'}",
                         "dataset.val_size=50")  # fmt: skip
    assert (out["run"] / "duplicates.csv").exists()


def test_cli_trains_one_epoch_on_mnist_idx(tmp_path):
    write_mnist(tmp_path / "data" / "MNIST" / "raw", gz=True)
    _run_one_epoch(tmp_path, "dataset=mnist", f"dataset.root={tmp_path / 'data'}")


def test_cli_trains_one_epoch_on_image_folder_and_reports_problems(tmp_path):
    write_folder(tmp_path / "data" / "shapes")
    root = f"dataset.root={tmp_path / 'data'}"
    common = ["dataset=imagefolder", "dataset.name=shapes", root, "dataset.image_size=16"]
    failed = run_cli([*TINY, "trainer.max_epochs=1", *common], cwd=tmp_path / "data")
    assert failed.returncode != 0
    assert "broken.jpg" in failed.stderr + failed.stdout
    out = _run_one_epoch(tmp_path, *common, "dataset.skip_corrupt=true")
    assert "a/broken.jpg" in (out["run"] / "skipped_files.csv").read_text()


def test_cli_duplicates_across_splits_are_one_log_line_and_a_report_note(tmp_path):
    """The duplicate notice is a log warning line — not Python's ``file:line: UserWarning``
    with the source line under it — and the report's Data section repeats it."""
    for seed, (split, n) in enumerate((("train", 9), ("val", 3), ("test", 3))):
        write_folder(tmp_path / "food" / split, n, corrupt=False, classes=("x", "y"), seed=seed)
    src = tmp_path / "food" / "train" / "y" / "y_obj1_frame4.jpg"
    (tmp_path / "food" / "test" / "y" / "copy.jpg").write_bytes(src.read_bytes())
    out = _run_one_epoch(tmp_path, "dataset=imagefolder", "dataset.name=food",
                         f"dataset.root={tmp_path}", "dataset.image_size=16")  # fmt: skip
    lines = [line for line in out["stderr"].splitlines() if "identical image" in line]
    assert len(lines) == 1 and "] warning: 1 identical image(s) appear in two splits" in lines[0]
    assert "UserWarning" not in out["stderr"] and "warnings.warn" not in out["stderr"]
    report = (out["run"] / "report.md").read_text()
    assert "## Data" in report and "1 identical image(s) appear in two splits" in report


def test_grouped_split_is_said_in_the_log_and_the_report(tmp_path, caplog):
    """Frames of one object (fish) grouped by file name: the log and the report say so."""
    write_folder(tmp_path / "data" / "shapes", corrupt=False)
    cfg = compose_cfg(
        [*TINY, "trainer.max_epochs=1", "dataset=imagefolder", "dataset.name=shapes",
         f"dataset.root={tmp_path / 'data'}", "dataset.image_size=12",
         "dataset.group_regex='^(.+)_frame'"],
        tmp_path / "run",
    )  # fmt: skip
    with caplog.at_level("INFO", logger="runner.data.imagefolder"):
        summary = train(cfg)
    note = (
        "split by group (dataset.group_regex '^(.+)_frame' on file names): 12 groups of "
        "36 files, e.g. 'a_obj0'; the files of one group never lie in two splits"
    )
    assert note in caplog.text
    assert summary["data_notes"] == [note]
    assert f"- S{note[1:]}." in (tmp_path / "run" / "report.md").read_text()


def test_cli_missing_dataset_is_one_clear_error(tmp_path):
    result = run_cli(["dataset=cifar10", f"dataset.root={tmp_path}"], cwd=tmp_path)
    assert result.returncode != 0
    text = result.stderr + result.stdout
    assert "CIFAR-10 not found" in text and "download=true" in text
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["food", "fish"])
def test_cli_real_image_folders_one_epoch_at_64px(tmp_path, dataset):
    folder = SHARED_DATA / {"food": "food_id", "fish": "fish_egu2017"}[dataset]
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    out = _run_one_epoch(
        tmp_path, f"dataset={dataset}", f"dataset.path={folder}", f"dataset.root={tmp_path}",
        "dataset.image_size=64", "trainer.batch_size=32",
    )  # fmt: skip
    assert out["summary"]["test_acc"] is not None


@pytest.mark.slow
def test_real_mnist_test_split_reaches_97_percent(tmp_path):
    folder = SHARED_DATA / "mnist"
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{folder} absent")
    result = run_cli(
        [
            "dataset=mnist", f"dataset.path={folder}", f"dataset.root={tmp_path}",
            "dataset.use_test_as_train=true", "dataset.val_fraction=0.1",
            "dataset.test_fraction=0.2", "model=custom_cnn", "trainer.max_epochs=3",
            "trainer.early_stopping.enabled=false",
            "diagnostics=off",
        ],
        cwd=tmp_path,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["best_val_acc"] >= 0.97, summary


def test_cache_goes_to_the_cache_folder_never_into_a_read_only_data_root(tmp_path, caplog):
    """The decode cache lives in dataset.cache_dir ($RUNNER_CACHE, the per-user cache), not
    beside the data; a cache folder that cannot be written costs a warning, not the run."""
    root = tmp_path / "share"
    write_folder(root / "shapes", per_class=10, corrupt=False)
    root.chmod(0o555)  # read-only for everybody: not written even when running as root
    try:
        load = functools.partial(load_image_folder, root=str(root), name="shapes", image_size=8)
        load(cache_dir=str(tmp_path / "c"))
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with caplog.at_level("WARNING", logger="runner.data.cache"):
            data = load(cache_dir=str(locked / "sub"))
    finally:
        root.chmod(0o755)
    assert not (root / ".cache").exists() and not list(root.rglob("*.pt"))
    assert len(list((tmp_path / "c").glob("shapes-8px-3ch-*.pt"))) == 1
    assert len(data.train) and f"cache folder {locked / 'sub'} is not writable" in caplog.text
    assert not (locked / "sub").exists()
