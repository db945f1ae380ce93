"""Model zoo: ResNet family facts, every conf/model member builds and runs, summarize()."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from torch import nn

from runner import zoo
from runner.errors import ConfigError
from runner.models.custom_cnn import CustomCNN
from runner.models.layers import SqueezeExcite
from runner.models.resnet import BasicBlock, Bottleneck, ResidualBlock, ResNet
from runner.models.summary import count_flops, format_flops, summarize
from runner.models.text import RNNClassifier
from runner.train import train
from tests.conftest import ROOT, compose_cfg

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# One shrunk epoch; diagnostics (their own tests) off; one thread is fastest for tiny nets.
ONE_EPOCH = ["diagnostics=off", "trainer.num_threads=1", "trainer.max_epochs=1",
             "trainer.limit_train_batches=2", "trainer.batch_size=8"]  # fmt: skip


def _image_model_names() -> list[str]:
    """conf/model members whose family takes images (the model registry's ``kind``); text
    models (token ids) are tested with the text code."""
    names = []
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        family = compose_cfg([f"model={path.stem}"]).model.family
        if zoo.MODELS.get(family).kind == "image":
            names.append(path.stem)
    return names


MODEL_NAMES = _image_model_names()
RESNET_NAMES = [n for n in MODEL_NAMES if compose_cfg([f"model={n}"]).model.family == "resnet"]


@pytest.fixture(autouse=True)
def _one_thread():
    """These forwards are small: one thread beats two and does not spin on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _is_block(m: nn.Module) -> bool:
    return isinstance(m, ResidualBlock)


def build(name: str, **model_kwargs) -> nn.Module:
    """``cfg.model`` of the real composed config, built through the registry as the runner
    does."""
    cfg = compose_cfg([f"model={name}", "dataset=synthetic"])
    return zoo.build_model(cfg.model, model_kwargs)


# ------------------------------------------------------------------ known facts


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(depth=18, stem="imagenet", num_classes=1000), 11_689_512),
        (dict(depth=34, stem="imagenet", num_classes=1000), 21_797_672),
        (dict(depth=50, stem="imagenet", num_classes=1000), 25_557_032),
        (dict(depth=18, stem="cifar", num_classes=10), 11_173_962),  # SEEDS.md S3
    ],
)
def test_parameter_counts(kwargs, expected):
    assert n_params(ResNet(**kwargs)) == expected


@pytest.mark.parametrize("depth", [18, 34])
def test_torchvision_state_dict_loads_strictly_and_outputs_agree(depth):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, f"resnet{depth}")().eval()
    ours = ResNet(depth=depth, stem="imagenet", num_classes=1000).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_resnet50_names_and_shapes_match_torchvision():
    theirs = {k: v.shape for k, v in torchvision.models.resnet50().state_dict().items()}
    ours = {k: v.shape for k, v in ResNet(depth=50, stem="imagenet").state_dict().items()}
    assert ours == theirs
    assert all(isinstance(b, Bottleneck) for b in ResNet(depth=50).modules() if _is_block(b))


# ------------------------------------------------------------------ variants


def _zero_block_convs(model: nn.Module) -> None:
    """Zero conv1/conv2 of every block (not the projection shortcut)."""
    with torch.no_grad():
        for block in filter(_is_block, model.modules()):
            block.conv1.weight.zero_()
            block.conv2.weight.zero_()


def test_plain_net_has_no_shortcut_path():
    plain = ResNet(depth=18, shortcut=False, num_classes=10, image_size=32)
    assert not any("downsample" in name for name, _ in plain.named_modules())
    # With every block's convs at zero a block's branch gives bn(0) = 0 (fresh BN,
    # eval). A residual net still carries the input through its shortcuts; a plain
    # net has nothing left, so its logits no longer depend on the input at all.
    residual = ResNet(depth=18, shortcut=True, num_classes=10, image_size=32)
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    for model in (plain, residual):
        _zero_block_convs(model.eval())
    with torch.no_grad():
        assert torch.equal(plain(x1), plain(x2))
        assert not torch.allclose(residual(x1), residual(x2))
        x = torch.rand(2, 64, 8, 8) + 0.1  # positive: relu(x) == x
        assert torch.equal(residual.layer1[0](x), x)  # identity passes the input
        assert torch.count_nonzero(plain.layer1[0](x)) == 0  # nothing passes


def test_se_in_every_block_after_last_bn_before_add():
    model = ResNet(depth=34, attention="se", se_reduction=16, num_classes=10, image_size=32)
    blocks = list(filter(_is_block, model.modules()))
    assert len(blocks) == 16
    assert all(isinstance(b.se, SqueezeExcite) for b in blocks)
    assert sum(isinstance(m, SqueezeExcite) for m in model.modules()) == 16
    order: list[str] = []
    block = blocks[3]  # layer2.0, with a projection shortcut
    for name in ("bn2", "se", "downsample", "act_out"):
        getattr(block, name).register_forward_hook(lambda *_, n=name: order.append(n))
    block(torch.randn(1, 64, 16, 16))
    assert order == ["bn2", "se", "downsample", "act_out"]


def test_mish_everywhere_no_relu():
    model = ResNet(depth=18, activation="mish", num_classes=10, image_size=32)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert isinstance(model.act1, nn.Mish)  # the stem too
    assert sum(isinstance(m, nn.Mish) for m in model.modules()) == 1 + 8 * 2


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "mish", "gelu", "silu"])
def test_activation_variants_run(activation):
    model = ResNet(depth=18, activation=activation, num_classes=3, image_size=16, width=8)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)


@pytest.mark.parametrize(
    ("image_size", "stem", "kernel", "pooled"),
    [(32, "auto", 3, False), (224, "auto", 7, True), ((63, 300), "auto", 3, False),
     (64, "auto", 7, True), ((64, 300), "auto", 7, True), (32, "imagenet", 7, True),
     (224, "cifar", 3, False)],
)  # fmt: skip
def test_stem(image_size, stem, kernel, pooled):
    model = ResNet(depth=18, stem=stem, image_size=image_size, width=8)
    assert model.conv1.kernel_size == (kernel, kernel)
    assert model.conv1.stride == ((2, 2) if kernel == 7 else (1, 1))
    assert model.conv1.bias is None
    assert isinstance(model.maxpool, nn.MaxPool2d) == pooled


def test_zero_init_residual_and_init_schemes():
    model = ResNet(depth=18, zero_init_residual=True, width=8)
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in model.modules() if _is_block(b))
    default = ResNet(depth=18, width=8)  # torchvision's kaiming-normal fan-out
    w = default.layer1[0].conv1.weight
    assert abs(float(w.detach().std()) - (2 / (8 * 9)) ** 0.5) < 0.05
    for scheme in ("kaiming", "xavier", "orthogonal"):
        assert ResNet(depth=18, init=scheme, width=8).fc.bias.abs().sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(depth=20), "valid: 18, 34, 50"),
        (dict(stem="tiny"), "valid: auto, cifar, imagenet"),
        (dict(activation="swish"), "relu"),
        (dict(attention="cbam"), "none, se"),
        (dict(init="he"), "kaiming"),
        (dict(shortcut=False, zero_init_residual=True), "shortcut=true"),
        (dict(width=0), "width"),
    ],
)
def test_bad_arguments_raise_listing_valid_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNet(**kwargs)


def test_block_contract():
    assert BasicBlock.expansion == 1 and Bottleneck.expansion == 4
    assert ResNet(depth=18, width=8).fc.in_features == 64
    assert ResNet(depth=50, width=8).fc.in_features == 256


# ------------------------------------------------------------------ every config member


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_config_builds_and_runs(name):
    if name == "timm":
        pytest.importorskip("timm")
    torch.manual_seed(0)
    for channels, size, classes, batch in ((3, 32, 10, 2), (3, 224, 5, 2), (1, 8, 4, 2)):
        if name == "airbench94" and size < 9:  # refused: three 2x pools after a 2x2 stem
            with pytest.raises(ConfigError, match="too small"):
                build(name, num_classes=classes, in_channels=channels, image_size=size)
            continue
        model = build(name, num_classes=classes, in_channels=channels, image_size=size).eval()
        with torch.no_grad():
            out = model(torch.randn(batch, channels, size, size))
        assert out.shape == (batch, classes), (name, size)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", RESNET_NAMES)
def test_resnet_config_members_are_what_they_say(name):
    model = build(name, num_classes=10, in_channels=3, image_size=32)
    depth = int(name[-2:])
    assert model.depth == depth
    assert model.shortcut == (not name.startswith("plain"))
    has_se = any(isinstance(m, SqueezeExcite) for m in model.modules())
    assert has_se == name.startswith("se_")
    assert any(isinstance(m, nn.Mish) for m in model.modules()) == name.startswith("mish_")


def test_custom_cnn_variants():
    x = torch.randn(2, 3, 32, 32)
    built = 0
    for n_blocks, kernel, pooling, padding, bn in itertools.product(
        (1, 2, 3), (3, 5, 7), ("max", "avg"), ("same", "valid"), (True, False)
    ):
        kwargs = dict(
            filters=[4, 8, 16][:n_blocks], kernel_size=kernel, pooling=pooling,
            padding=padding, batch_norm=bn, fc_neurons=[16], num_classes=10, image_size=32,
        )  # fmt: skip
        side = 32
        for _ in range(n_blocks):
            side = (side - (kernel - 1 if padding == "valid" else 0)) // 2
        if side < 1:
            with pytest.raises(ValueError, match="too small"):
                CustomCNN(**kwargs)
            continue
        model = CustomCNN(**kwargs)
        assert model(x).shape == (2, 10)
        assert len(model.features) == n_blocks
        assert all(hasattr(b, "bn") == bn for b in model.features)
        built += 1
    assert built == 64  # of 72: three valid 5x5 or 7x7 blocks do not fit 32 px


def _train_one_epoch(tmp_path: Path, name: str, *overrides: str) -> dict:
    cfg = compose_cfg([f"model={name}", "dataset=synthetic", *ONE_EPOCH, *overrides], tmp_path)
    summary = train(cfg)
    assert summary["status"] == "completed", summary
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert len(metrics) == 1 and np.isfinite(metrics.train_loss[0])
    assert summary["params"] > 0 and summary["flops"] > 0
    # The checkpoint holds exactly the parameters of the configured model.
    ckpt = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    kwargs = dict(num_classes=4, in_channels=3, image_size=cfg.dataset.image_size)
    zoo.build_model(cfg.model, kwargs).load_state_dict(ckpt["model"], strict=True)
    return summary


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_config_trains_one_epoch(tmp_path, name):
    """Shrunk (16 px, narrow) so all members take seconds; full size is the slow test."""
    if name == "timm":
        pytest.importorskip("timm")
    small = {"custom_cnn": ["model.filters=[8,16]"], "torchvision": [], "timm": []}
    small["airbench94"] = ["model.widths=[8,16,16]"]
    small = small.get(name, ["model.width=8"])
    _train_one_epoch(tmp_path, name, "dataset.num_samples=48", "dataset.image_size=16", *small)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_config_trains_one_epoch_at_224px(tmp_path, name):
    if name == "timm":
        pytest.importorskip("timm")
    summary = _train_one_epoch(tmp_path, name, "dataset.num_samples=24", "dataset.image_size=224")
    assert summary["flops"] > 1e8


# ------------------------------------------------------------------ summarize


def test_summarize_resnet18_imagenet():
    model = ResNet(depth=18, stem="imagenet", num_classes=1000).train()
    summary = summarize(model, (3, 224, 224))
    assert model.training  # mode restored
    assert summary.params == summary.trainable_params == n_params(model) == 11_689_512
    # torchvision lists 1.81 GFLOPS (multiply-adds) for resnet18: x2 here.
    assert 3.4e9 < summary.flops < 3.8e9
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    assert len(summary.rows) == len(leaves)
    assert sum(r["params"] for r in summary.rows) == summary.params
    assert summary.rows[0] == {
        "layer": "conv1", "type": "Conv2d", "output_shape": [1, 64, 112, 112], "params": 9408
    }  # fmt: skip
    assert summary.rows[-1]["layer"] == "fc" and summary.rows[-1]["output_shape"] == [1, 1000]


def test_summarize_frozen_params_and_small_models():
    model = ResNet(depth=18, num_classes=10, image_size=32, width=8)
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    summary = summarize(model.eval(), (3, 32, 32))
    assert not model.training
    frozen = sum(p.numel() for p in model.layer1.parameters())
    assert summary.trainable_params == summary.params - frozen > 0
    assert summary.flops > 0


class _TokenClassifier(nn.Module):
    """int64 token ids → embedding (+ a positional table held here) → LSTM → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.pos = nn.Parameter(torch.zeros(12, 8))
        self.rnn = nn.LSTM(8, 16, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(x) + self.pos[: x.shape[1]])
        return self.fc(out[:, -1])


def test_summarize_token_model():
    model = _TokenClassifier()
    summary = summarize(model, (12,), dtype=torch.long)
    assert summary.params == n_params(model) == sum(r["params"] for r in summary.rows)
    rows = {r["layer"]: r for r in summary.rows}
    assert rows["rnn"]["output_shape"] == [1, 12, 32]
    assert rows["(root)"]["params"] == 12 * 8
    # LSTM: per step and direction 2 * (4*16) * (8 + 16) FLOPs; then the classifier.
    assert summary.flops == 2 * 12 * 2 * (4 * 16) * (8 + 16) + 2 * 32 * 3


# ------------------------------------------------------------------ count_flops


def _rnn(**kwargs):
    return lambda: RNNClassifier(num_classes=3, vocab_size=50, **kwargs)


@pytest.mark.parametrize(
    ("build", "shape", "dtype"),
    [
        (lambda: ResNet(depth=18, stem="cifar", image_size=64), (3, 64, 64), None),
        (lambda: ResNet(depth=18, stem="imagenet", image_size=64), (3, 64, 64), None),
        (lambda: ResNet(depth=50, stem="imagenet", width=16), (3, 96, 80), None),
        (lambda: ResNet(depth=18, attention="se", width=16, image_size=32), (3, 32, 32), None),
        (lambda: CustomCNN(in_channels=1, image_size=28, padding="valid"), (1, 28, 28), None),
        (_rnn(cell="lstm", bidirectional=True, num_layers=2), (40,), torch.long),
        (_rnn(cell="gru", pooling="mean"), (40,), torch.long),
        (_rnn(cell="rnn", bidirectional=True), (40,), torch.long),
        (_TokenClassifier, (12,), torch.long),
    ],
)
def test_count_flops_equals_torch_flop_counter(build, shape, dtype):
    """The shape-only count (run start) equals FlopCounterMode's (run end) for every model
    made of convolutions, linear and recurrent layers; the model is left as it was."""
    model = build().train()
    dtype = dtype or torch.float32
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cheap = count_flops(model, shape, dtype)
    assert cheap == summarize(model, shape, dtype).flops > 0
    assert model.training and not any("forward" in vars(m) for m in model.modules())
    x = torch.ones(2, *shape, dtype=dtype) if dtype == torch.long else torch.randn(2, *shape)
    assert model.eval()(x).abs().sum() > 0  # convolutions and linears compute again
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_count_flops_of_a_text_model_counts_every_token():
    """A recurrent text model is counted for a text filling its length, never 0: a
    1-layer LSTM of 8 units over 32 tokens of 16-wide embeddings is 49 kFLOPs + the head."""
    model = RNNClassifier(num_classes=3, vocab_size=30, embed_dim=16, hidden_size=8)
    flops = count_flops(model, (32,), torch.long)
    assert flops == 2 * 32 * (4 * 8) * (16 + 8) + 2 * 8 * 3
    assert format_flops(flops) == "49.2 kFLOPs"
    assert (
        format_flops(4_443_345_920) == "4.44 GFLOPs" and format_flops(296_096_768) == "296.1 MFLOPs"
    )


def test_count_flops_is_cheap_and_imports_no_dynamo():
    """Counting a 224-px ResNet-50 takes well under a second and leaves torch._dynamo (the
    seconds FlopCounterMode costs on first use) unimported."""
    import subprocess

    code = (
        "import sys, time, torch\n"
        "from runner.models.resnet import ResNet\n"
        "from runner.models.summary import count_flops\n"
        "model = ResNet(depth=50, stem='imagenet')\n"
        "start = time.perf_counter()\n"
        "flops = count_flops(model, (3, 224, 224))\n"
        "print(flops, time.perf_counter() - start, 'torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    flops, seconds, dynamo = out.stdout.split()
    assert 8.0e9 < int(flops) < 8.4e9  # torchvision: 4.09 GMACs
    assert float(seconds) < 1.0 and dynamo == "False"
