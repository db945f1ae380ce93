"""Model hub: torchvision and timm classifiers by name, their weights through the libraries'
own cached loaders (no network: the tests fill the caches), run directories and files as
weights, the weights' preprocessing, and everything downstream (predict, export, Grad-CAM,
sweeps) on hub models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torchvision

from runner import checkpoint, zoo
from runner.errors import ConfigError
from runner.hub.torchvision import cache_file, classification_models
from runner.hub.weights import head_keys, load_pretrained
from runner.train import train
from runner.validate import validate
from tests.conftest import compose_cfg, only_run_dir, run_cli

# synthetic RGB images at 32 px, one short epoch: enough to build, load, train and save
SMALL = [
    "dataset=synthetic",
    "dataset.image_size=32",
    "dataset.channels=3",
    "dataset.num_samples=96",
    "diagnostics=off",
    "trainer.max_epochs=1",
    "trainer.batch_size=16",
    "trainer.limit_train_batches=2",
]
# fast in the default run; every other classification model: -m slow
FAST_ARCHS = (
    "resnet18",
    "mobilenet_v3_small",
    "squeezenet1_1",
    "shufflenet_v2_x0_5",
    "regnet_x_400mf",
    "mnasnet0_5",
    "efficientnet_b0",
)
OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def write_torchvision_cache(torch_home: Path, arch: str, name: str = "IMAGENET1K_V1") -> dict:
    """A state dict of ``arch`` (1000 classes, seeded random values) saved where torchvision's
    loader looks for the weights ``name``: ``$TORCH_HOME/hub/checkpoints/<url basename>``."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(arch)[name]
    torch.manual_seed(0)
    state = torchvision.models.get_model(arch, num_classes=1000).state_dict()
    path = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


# ------------------------------------------------------------------ torchvision weights


def test_torchvision_weights_load_from_the_cache_without_network(torch_home, tmp_path):
    state = write_torchvision_cache(torch_home, "resnet18")
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert cache_file(weights) == torch_home / "hub/checkpoints/resnet18-f37072fd.pth"
    cfg = compose_cfg(
        [
            "model=torchvision",
            "model.arch=resnet18",
            "model.weights=IMAGENET1K_V1",
            "model.freeze=backbone",  # so the loaded backbone is still the file's after training
            "model.preprocessing=dataset",
            *SMALL,
        ],
        tmp_path / "run",
    )
    summary = train(cfg)
    assert summary["weights"] == "torchvision ResNet18_Weights.IMAGENET1K_V1"
    assert summary["trainable_params"] == 512 * 4 + 4  # the new classifier only
    model, _, _ = checkpoint.load_model(tmp_path / "run")
    loaded = model.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[f"net.{key}"], value), key
    assert loaded["net.fc.weight"].shape == (4, 512)  # a new head for the 4 classes
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Fine-tuning" in report and "new classifier: net.fc.weight" in report


def test_grey_images_get_the_rgb_weights_summed(torch_home):
    state = write_torchvision_cache(torch_home, "resnet18")
    cfg = compose_cfg(["model=torchvision", "model.weights=IMAGENET1K_V1"])
    kwargs = {"num_classes": 10, "in_channels": 1, "image_size": (28, 28)}
    model = zoo.build_model(cfg.model, kwargs)
    report = load_pretrained(model, cfg.model, kwargs)
    assert report.adapted == ["net.conv1.weight"]
    expected = state["conv1.weight"].sum(dim=1, keepdim=True)
    assert torch.allclose(model.state_dict()["net.conv1.weight"], expected)
    assert sorted(report.reinitialised) == ["net.fc.bias", "net.fc.weight"]


def test_the_resnet_family_takes_torchvision_resnet_weights(torch_home):
    state = write_torchvision_cache(torch_home, "resnet34")
    cfg = compose_cfg(["model=resnet34", "model.stem=imagenet", "model.weights=DEFAULT"])
    kwargs = {"num_classes": 1000, "in_channels": 3, "image_size": (64, 64)}
    model = zoo.build_model(cfg.model, kwargs)
    report = load_pretrained(model, cfg.model, kwargs)
    assert report.loaded == len(state) and not report.reinitialised  # 1000 classes: all of it
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_weights_follow_their_preprocessing(torch_home, tmp_path):
    """model.preprocessing=weights: the weights' mean/std and crop size, recorded in the run
    directory and the checkpoint, and predict/export get them from there."""
    write_torchvision_cache(torch_home, "mobilenet_v3_small")
    cfg = compose_cfg(
        [
            "model=torchvision",
            "model.arch=mobilenet_v3_small",
            "model.weights=IMAGENET1K_V1",
            *SMALL,
            "dataset.num_samples=48",
            "trainer.limit_train_batches=1",
        ],
        tmp_path / "run",
    )
    train(cfg)
    record = json.loads((tmp_path / "run" / "preprocessing.json").read_text())
    assert record["source"] == "torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert (record["crop_size"], record["resize_size"]) == (224, 256)
    assert record["applied"]["image_size"] == [224, 224]  # synthetic images made at 224 px
    _, pre, _ = checkpoint.load_model(tmp_path / "run")
    assert pre.mean == pytest.approx([0.485, 0.456, 0.406]) and pre.image_size == (224, 224)
    assert pre.as_dict()["normalisation_source"] == record["source"]


def test_offline_with_an_empty_cache_names_the_cache_and_how_to_fill_it(tmp_path):
    home = tmp_path / "empty_home"
    result = run_cli(
        ["model=torchvision", "model.arch=resnet18", "model.weights=IMAGENET1K_V1", *SMALL],
        tmp_path,
        env={"TORCH_HOME": str(home), **OFFLINE},
    )
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("runner: error: model.weights: torchvision")
    assert str(home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "get_state_dict()" in message and "TORCH_HOME=<dir>" in message
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ runs and files as weights


def test_a_run_directory_is_weights_for_another_dataset(tmp_path):
    """Pretrain on one dataset, fine-tune on another with model.weights=<run>: the backbone
    starts from the run's best weights, the classifier afresh for the new class count."""
    first = tmp_path / "first"
    train(compose_cfg(["model=resnet18", "model.width=8", *SMALL], first))
    source = torch.load(first / "checkpoints" / "best.pt", weights_only=True)["model"]
    cfg = compose_cfg(
        [
            "model=resnet18",
            "model.width=8",
            f"model.weights={first}",
            "dataset=digits",
            "diagnostics=off",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
        ]
    )
    kwargs = {"num_classes": 10, "in_channels": 1, "image_size": (8, 8)}
    model = zoo.build_model(cfg.model, kwargs)
    report = load_pretrained(model, cfg.model, kwargs)
    assert report.source == str(first / "checkpoints" / "best.pt")
    assert sorted(report.reinitialised) == ["fc.bias", "fc.weight"]
    assert report.adapted == ["conv1.weight"]  # RGB run, grey digits
    own = model.state_dict()
    assert torch.equal(own["layer4.1.conv2.weight"], source["layer4.1.conv2.weight"])
    assert torch.allclose(own["conv1.weight"], source["conv1.weight"].sum(1, keepdim=True))


def test_weights_that_do_not_fit_name_the_first_mismatching_keys(tmp_path):
    other = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    cfg = compose_cfg(["model=torchvision", "model.arch=resnet50", f"model.weights={other}"])
    kwargs = {"num_classes": 3, "in_channels": 3, "image_size": (32, 32)}
    model = zoo.build_model(cfg.model, kwargs)
    with pytest.raises(ConfigError) as err:
        load_pretrained(model, cfg.model, kwargs)
    text = str(err.value)
    assert "does not fit the configured model" in text
    assert "net.layer1.0.conv1.weight (weights [64, 64, 3, 3], model [64, 64, 1, 1])" in text
    assert "missing from the weights: net.layer1.0.conv3.weight" in text


def test_a_missing_weights_path_is_refused(tmp_path):
    cfg = compose_cfg(["model=custom_cnn", f"model.weights={tmp_path}/nothing.pt"])
    kwargs = {"num_classes": 2, "in_channels": 1, "image_size": (8, 8)}
    with pytest.raises(ConfigError, match="no such run directory or weights file"):
        load_pretrained(zoo.build_model(cfg.model, kwargs), cfg.model, kwargs)


# ------------------------------------------------------------------ bad input


def test_an_unknown_architecture_names_close_matches():
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(["model=torchvision", "model.arch=resnet5"]))
    assert "model.arch='resnet5'; did you mean resnet50, " in str(err.value)
    assert "resnet18" in str(err.value)


def test_an_unknown_weights_name_lists_the_archs_weights():
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(["model=torchvision", "model.arch=resnet50", "model.weights=V3"]))
    assert "IMAGENET1K_V1, IMAGENET1K_V2" in str(err.value) and "DEFAULT = IMAGENET1K_V2" in str(
        err.value
    )


def test_bad_architecture_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    result = run_cli(["model=torchvision", "model.arch=resnet5"], tmp_path)
    assert result.returncode == 2
    assert "did you mean resnet50" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ every torchvision model


def _one_step(arch: str, channels: int, size: int) -> None:
    cfg = compose_cfg(["model=torchvision", f"model.arch={arch}"])
    kwargs = {"num_classes": 5, "in_channels": channels, "image_size": (size, size)}
    torch.manual_seed(0)
    model = zoo.build_model(cfg.model, kwargs).train()
    stages = zoo.feature_stages("torchvision", model)
    assert stages, f"{arch} has no feature stages"
    assert head_keys(cfg.model, kwargs), f"{arch}: no classifier keys follow num_classes"
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(2, channels, size, size), torch.tensor([0, 4])
    logits = model(x)
    assert logits.shape == (2, 5)
    torch.nn.functional.cross_entropy(logits, y).backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


ALL_ARCHS = [
    pytest.param(a, marks=() if a in FAST_ARCHS else pytest.mark.slow)
    for a in classification_models()
]


@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize(("channels", "size"), [(3, 64), (1, 28)], ids=["rgb64", "grey28"])
def test_every_torchvision_classifier_builds_and_trains_one_step(arch, channels, size):
    _one_step(arch, channels, size)


def test_small_images_are_resized_to_what_the_architecture_takes():
    cfg = compose_cfg(["model=torchvision", "model.arch=alexnet"])
    model = zoo.build_model(cfg.model, {"num_classes": 3, "in_channels": 1, "image_size": (28, 28)})
    assert (model.input_size, model.resize) == (63, True)  # AlexNet's minimum
    cfg = compose_cfg(["model=torchvision", "model.arch=vit_b_16"])
    model = zoo.build_model(cfg.model, {"num_classes": 3, "in_channels": 3, "image_size": (28, 28)})
    assert (model.input_size, model.resize) == (32, True)  # a multiple of the 16-px patch


# ------------------------------------------------------------------ downstream


def _hub_run(tmp_path: Path, arch: str, extra: list[str] = ()) -> Path:
    from tests.test_predict_export import _write_folder

    folder = _write_folder(tmp_path)
    run = tmp_path / "run"
    overrides = [
        "model=torchvision",
        f"model.arch={arch}",
        "dataset=imagefolder",
        f"dataset.path={folder}",
        "dataset.image_size=32",
        "dataset.cache=false",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.batch_size=16",
        "optimizer=sgd",
        "optimizer.momentum=0",
        *extra,
    ]
    summary = train(compose_cfg(overrides, run))
    assert summary["status"] == "completed"
    return run


def _predict_and_export(run: Path, formats: tuple[str, ...] = ("torchscript", "onnx")) -> None:
    from runner.export import export_run
    from runner.predict import Predictor

    files = sorted(Path(run.parent / "shapes").rglob("*.png"))[:6]
    predictor = Predictor.from_run(run, device="cpu")
    table = predictor.predict_files(files, batch_size=4, top_k=2, progress=False).table
    assert len(table) == 6 and set(table["predicted_class"]) <= {"red", "green", "blue"}
    for fmt in formats:
        if fmt == "onnx":
            pytest.importorskip("onnxruntime")
        check = export_run(run, fmt, samples=8)
        assert check["passed"], check


def test_predict_export_and_gradcam_on_a_hub_run(tmp_path):
    # 32-px images resized to 48 inside the model: predict and export carry the resize
    extra = ["diagnostics.interpret.images=2", "model.input_size=48"]
    run = _hub_run(tmp_path, "mobilenet_v3_small", extra)
    model, pre, _ = checkpoint.load_model(run)
    assert (model.input_size, model.resize, pre.image_size) == (48, True, (32, 32))
    assert (run / "interpret" / "saliency_gradcam.png").exists()  # on a registry stage
    assert (run / "diagnostics" / "gradient_flow.png").exists()
    _predict_and_export(run, ("torchscript",))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet50", "efficientnet_b0", "vit_b_16"])
def test_predict_and_export_on_hub_runs(tmp_path, arch):
    # ViT: diagnostics on, so Grad-CAM runs on its 4-D stage (the patch embedding)
    diagnostics = "diagnostics.interpret.images=2" if arch == "vit_b_16" else "diagnostics=off"
    run = _hub_run(tmp_path, arch, [diagnostics])
    if arch == "vit_b_16":
        assert (run / "interpret" / "saliency_gradcam.png").exists()
    _predict_and_export(run)


@pytest.mark.slow  # two runner jobs in one more process
def test_a_sweep_over_architectures(tmp_path):
    result = run_cli(
        [
            "-m",
            "model=torchvision",
            "model.arch=resnet18,mobilenet_v3_small",
            *SMALL,
            "dataset.image_size=16",
            "dataset.num_samples=48",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    summary = (sweep / "summary.csv").read_text()
    assert "resnet18" in summary and "mobilenet_v3_small" in summary


# ------------------------------------------------------------------ timm


def _write_hf_cache(hf_home: Path, name: str) -> dict:
    """timm weights ``name`` (seeded random values) in the Hugging Face cache layout that
    ``hf_hub_download`` reads offline: refs/main -> snapshots/<commit>/model.safetensors."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    root = hf_home / "hub" / f"models--timm--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    (root / "snapshots" / commit).mkdir(parents=True)
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in timm.create_model(name).state_dict().items()}
    save_file(state, str(root / "snapshots" / commit / "model.safetensors"))
    return state


def test_timm_weights_load_from_the_hugging_face_cache_offline(tmp_path):
    state = _write_hf_cache(tmp_path / "hf", "resnet18.a1_in1k")
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    args = ["model=timm", "model.arch=resnet18", "model.weights=a1_in1k", "model.freeze=backbone"]
    result = run_cli([*args, "model.preprocessing=dataset", *SMALL], tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    model, _, _ = checkpoint.load_model(only_run_dir(tmp_path))
    loaded = model.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[f"net.{key}"], value), key


def test_timm_offline_with_an_empty_cache_names_the_cache(tmp_path):
    pytest.importorskip("timm")
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    args = ["model=timm", "model.arch=resnet18", "model.weights=DEFAULT", *SMALL]
    result = run_cli(args, tmp_path, env=env)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "timm resnet18.a1_in1k are not in the Hugging Face cache" in message
    assert str(tmp_path / "hf" / "hub") in message and "pretrained=True" in message


def test_timm_models_train_and_name_their_stages():
    pytest.importorskip("timm")
    with pytest.raises(ConfigError, match="did you mean resnet50"):
        validate(compose_cfg(["model=timm", "model.arch=resnet5O"]))
    cfg = compose_cfg(["model=timm", "model.arch=resnet18"])
    kwargs = {"num_classes": 3, "in_channels": 1, "image_size": (28, 28)}
    model = zoo.build_model(cfg.model, kwargs)
    names = [n for n, _ in zoo.feature_stages("timm", model)]
    assert names == ["net.act1", "net.layer1", "net.layer2", "net.layer3", "net.layer4"]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


# ------------------------------------------------------------------ --list-models


def test_list_models_names_builtin_torchvision_and_timm_models_and_weights(tmp_path):
    result = run_cli(["--list-models", "resnet3*"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "built-in (model=NAME" in out and "resnet34  torchvision's resnet weights" in out
    assert "torchvision (model=torchvision model.arch=NAME" in out
    assert "resnet34  IMAGENET1K_V1  (DEFAULT = IMAGENET1K_V1)" in out
    if importlib.util.find_spec("timm") is not None:
        assert "timm (model=timm" in out and "a1_in1k" in out
    else:
        assert "timm: timm is not installed" in out
