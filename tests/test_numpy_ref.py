"""The NumPy forward passes of runner.numpy_ref against their torch counterparts.

Layers are compared in float64 on both sides (differences ~1e-12); whole models
run torch in float32, as trained, against NumPy's float64, and must agree on
every argmax with max |Δlogit| < 1e-4.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from runner import numpy_ref as nr
from runner import verify
from runner.models.custom_cnn import CustomCNN
from runner.models.layers import ACTIVATIONS, get_activation
from runner.models.text import RNNClassifier
from tests.conftest import only_run_dir, run_cli

TIGHT = 1e-10  # float64 vs float64
MODEL_TOL = 1e-4  # torch float32 vs NumPy float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def numpy_state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def test_module_does_not_import_torch() -> None:
    source = Path(nr.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "torch" not in imported
    assert imported <= {"__future__", "collections", "typing", "numpy", "scipy"}


# ------------------------------------------------------------------ image layers


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [
        (3, 1, "same"),
        (5, 1, "same"),
        (4, 1, "same"),  # even kernel: torch pads the extra pixel after
        (3, 1, "valid"),
        (5, 2, "valid"),
        (3, 2, 1),
        (7, 2, (3, 2)),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv2d(kernel: int, stride: int, padding) -> None:
    x = torch.randn(2, 3, 11, 9, dtype=torch.float64)
    w = torch.randn(4, 3, kernel, kernel, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    expected = F.conv2d(x, w, b, stride=stride, padding=padding)
    got = nr.conv2d(np64(x), np64(w), np64(b), stride=stride, padding=padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, np64(expected), atol=TIGHT)


def test_conv2d_same_stride_2_keeps_ceil_size() -> None:
    x = np.random.default_rng(0).normal(size=(1, 2, 9, 8))
    got = nr.conv2d(x, np.ones((3, 2, 3, 3)), stride=2, padding="same")
    assert got.shape == (1, 3, 5, 4)
    with pytest.raises(ValueError, match="valid: same, valid"):
        nr.conv2d(x, np.ones((3, 2, 3, 3)), padding="full")


@pytest.mark.parametrize(("kernel", "stride"), [(2, None), (2, 2), (3, 2), (3, 1)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling(kind: str, kernel: int, stride: int | None) -> None:
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)  # odd sizes: floor mode drops the edge
    torch_pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    expected = torch_pool(x, kernel, stride)
    got = nr.POOLS[kind](np64(x), kernel, stride)
    np.testing.assert_allclose(got, np64(expected), atol=TIGHT)


@pytest.mark.parametrize("bn_cls", [nn.BatchNorm1d, nn.BatchNorm2d])
def test_batch_norm_eval(bn_cls) -> None:
    bn = bn_cls(5).double()
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.normal_()
        bn.running_var.uniform_(0.2, 3.0)
    bn.eval()
    x = (
        torch.randn(4, 5, 6, 6, dtype=torch.float64)
        if bn_cls is nn.BatchNorm2d
        else torch.randn(4, 5, dtype=torch.float64)
    )
    got = nr.batch_norm(
        np64(x), *(np64(t) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))
    )
    np.testing.assert_allclose(got, np64(bn(x)), atol=TIGHT)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_models_layers(name: str) -> None:
    x = torch.linspace(-30, 30, 601, dtype=torch.float64)
    expected = get_activation(name)(x.clone())
    np.testing.assert_allclose(nr.activation(name, np64(x)), np64(expected), atol=TIGHT)


def test_unknown_activation_lists_choices() -> None:
    with pytest.raises(ValueError, match="valid names: relu"):
        nr.activation("swishy", np.zeros(2))


def test_linear_and_softmax() -> None:
    x, w, b = (torch.randn(*s, dtype=torch.float64) for s in ((6, 5), (3, 5), (3,)))
    logits = F.linear(x, w, b)
    np.testing.assert_allclose(nr.linear(np64(x), np64(w), np64(b)), np64(logits), atol=TIGHT)
    np.testing.assert_allclose(
        nr.softmax(np64(logits * 100)), np64(torch.softmax(logits * 100, 1)), atol=TIGHT
    )


# ------------------------------------------------------------------ recurrent layers


def padded_batch(n: int = 7, steps: int = 9, vocab: int = 40, seed: int = 0) -> torch.Tensor:
    """Post-padded ids with lengths 0 (all pad), 1, full and random in between."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, vocab, (n, steps), generator=g)
    lengths = [0, 1, steps, *torch.randint(2, steps, (n - 3,), generator=g).tolist()]
    for row, length in enumerate(lengths):
        x[row, length:] = 0
    return x


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_recurrent_layers_match_torch_packed(
    cell: str, bidirectional: bool, num_layers: int
) -> None:
    rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](
        5, 6, num_layers=num_layers, batch_first=True, bidirectional=bidirectional
    ).double()
    x = torch.randn(4, 8, 5, dtype=torch.float64)
    lengths = torch.tensor([8, 1, 5, 3])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, h_n = rnn(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=8)
    h_n = h_n[0] if cell == "lstm" else h_n

    params = {k: np64(v) for k, v in rnn.named_parameters()}
    inp, finals = np64(x), []
    for layer in range(num_layers):
        outs = []
        for d, suffix in enumerate(("", "_reverse")[: 1 + bidirectional]):
            names = [
                f"{k}_l{layer}{suffix}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            o, h = nr.recurrent_layer(
                inp, lengths.numpy(), cell, *(params[k] for k in names), d == 1
            )
            outs.append(o)
            finals.append(h)
        inp = np.concatenate(outs, axis=2)
    np.testing.assert_allclose(inp, np64(out), atol=TIGHT)
    np.testing.assert_allclose(np.stack(finals), np64(h_n), atol=TIGHT)


def test_relu_rnn_layer() -> None:
    rnn = nn.RNN(3, 4, batch_first=True, nonlinearity="relu").double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    out, _ = rnn(x)
    p = [np64(t) for t in (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)]
    got, _ = nr.recurrent_layer(np64(x), np.array([5, 5]), "rnn", *p, nonlinearity="relu")
    np.testing.assert_allclose(got, np64(out), atol=TIGHT)


# ------------------------------------------------------------------ whole models


def assert_same_predictions(torch_logits: torch.Tensor, numpy_logits: np.ndarray) -> None:
    t = torch_logits.detach().double().numpy()
    assert numpy_logits.dtype == np.float64
    assert (t.argmax(1) == numpy_logits.argmax(1)).all()
    assert np.abs(t - numpy_logits).max() < MODEL_TOL


def randomise_bn_stats(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)


@pytest.mark.parametrize(
    ("padding", "pooling", "activation", "batch_norm", "kernel"),
    [
        ("same", "max", "relu", True, 3),
        ("same", "avg", "mish", True, 5),
        ("valid", "max", "leaky_relu", False, 3),
        ("valid", "avg", "gelu", True, 5),
        ("same", "max", "silu", False, 7),
        ("same", "avg", "tanh", True, 3),
    ],
)
def test_custom_cnn(
    padding: str, pooling: str, activation: str, batch_norm: bool, kernel: int
) -> None:
    cfg = {
        "family": "custom_cnn",
        "name": "custom_cnn",
        "init": "kaiming",
        "filters": [8, 16],
        "kernel_size": kernel,
        "padding": padding,
        "pooling": pooling,
        "batch_norm": batch_norm,
        "activation": activation,
        "fc_neurons": [32],
        "dropout": 0.5,
    }
    kwargs = {k: v for k, v in cfg.items() if k not in ("family", "name")}
    model = CustomCNN(num_classes=10, in_channels=3, image_size=28, **kwargs)
    randomise_bn_stats(model)
    model.eval()
    x = torch.randn(16, 3, 28, 28)
    twin = nr.build_numpy_model(cfg, numpy_state(model))
    assert_same_predictions(model(x), twin(x.numpy()))


def test_custom_cnn_without_hidden_fc() -> None:
    cfg = {"family": "custom_cnn", "filters": [4], "fc_neurons": []}
    model = CustomCNN(num_classes=3, in_channels=1, image_size=8, filters=[4], fc_neurons=[]).eval()
    x = torch.randn(5, 1, 8, 8)
    assert_same_predictions(model(x), nr.build_numpy_model(cfg, numpy_state(model))(x.numpy()))


RNN_CASES = {
    "rnn": {"cell": "rnn"},
    "birnn": {"cell": "rnn", "bidirectional": True},
    "gru": {"cell": "gru", "pooling": "mean"},
    "lstm": {"cell": "lstm"},
    "bilstm": {"cell": "lstm", "bidirectional": True},
    "bilstm_stacked_max": {
        "cell": "lstm",
        "bidirectional": True,
        "num_layers": 3,
        "pooling": "max",
    },
    "birnn_relu_mean": {
        "cell": "rnn",
        "bidirectional": True,
        "num_layers": 2,
        "nonlinearity": "relu",
        "pooling": "mean",
    },
    "bigru_stacked_last": {
        "cell": "gru",
        "bidirectional": True,
        "num_layers": 2,
        "init": "orthogonal",
    },
}


@pytest.mark.parametrize("case", list(RNN_CASES))
def test_rnn_classifier(case: str) -> None:
    cfg = {
        "family": "rnn",
        "name": case,
        "embed_dim": 12,
        "hidden_size": 10,
    }
    cfg.update(RNN_CASES[case])
    model = RNNClassifier(
        num_classes=3,
        vocab_size=40,
        pad_idx=0,
        **{k: v for k, v in cfg.items() if k not in ("family", "name")},
    ).eval()
    x = padded_batch(n=9, steps=11)
    twin = nr.build_numpy_model(cfg, numpy_state(model), pad_idx=0)
    assert_same_predictions(model(x), twin(x.numpy()))


def test_padding_does_not_change_the_prediction() -> None:
    cfg = {"family": "rnn", "cell": "lstm", "bidirectional": True}
    model = RNNClassifier(
        num_classes=3, vocab_size=30, embed_dim=8, hidden_size=6, cell="lstm", bidirectional=True
    ).eval()
    short = torch.tensor([[5, 7, 9, 0]])
    long = torch.tensor([[5, 7, 9, 0, 0, 0, 0, 0]])
    torch.testing.assert_close(model(short), model(long))
    twin = nr.build_numpy_model(cfg, numpy_state(model))
    np.testing.assert_allclose(twin(short.numpy()), twin(long.numpy()), atol=TIGHT)


def test_runner_verify_on_a_trained_custom_cnn(tmp_path: Path) -> None:
    """S4: a CNN trained through the CLI, checked by a NumPy forward on the digits test split."""
    args = ["model=custom_cnn", "dataset=digits", "model.filters=[8,16]", "model.pooling=avg"]
    proc = run_cli([*args, "model.fc_neurons=[32]", "trainer.max_epochs=1"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path)
    assert verify.main([str(run), "--batch-size", "100"]) == 0
    result = json.loads((run / "verify.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert result["n"] == 270 and result["agreement"] == 1.0
    assert result["max_abs_logit_diff"] < MODEL_TOL
    assert result["numpy_macro_f1"] == pytest.approx(summary["test_macro_f1"], abs=1e-9)


def test_runner_verify_without_a_checkpoint_says_so(tmp_path: Path, capsys) -> None:
    assert verify.main([str(tmp_path)]) == 2
    assert "checkpoints/best.pt does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------ errors


def test_unknown_target_config_key_and_state_key_fail_clearly() -> None:
    model = RNNClassifier(num_classes=2, vocab_size=10, embed_dim=4, hidden_size=3)
    state = numpy_state(model)
    with pytest.raises(ValueError, match="no NumPy reference for model family 'resnet'"):
        nr.build_numpy_model({"family": "resnet"}, state)
    cfg = {"family": "rnn", "cell": "lstm"}
    with pytest.raises(ValueError, match="does not implement the config keys attention"):
        nr.build_numpy_model(cfg | {"attention": "se"}, state)
    with pytest.raises(ValueError, match="does not implement the layers holding extra.weight"):
        nr.build_numpy_model(cfg, state | {"extra.weight": np.zeros(3)})
    with pytest.raises(ValueError, match="no 'rnn.weight_ih_l1'"):
        nr.build_numpy_model(cfg | {"num_layers": 2}, state)
