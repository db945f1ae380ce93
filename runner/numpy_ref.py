"""From-scratch NumPy forward passes of the S4 models (SEEDS.md S4), for checking a trained
network's predictions without the framework.

No torch here: a checkpoint's state dict, converted to NumPy arrays (``{name:
tensor.numpy()}``), plus the run's model config (``checkpoint["config"]["model"]``)
rebuild the network with :func:`build_numpy_model`. Everything is computed in
float64. Supported models:

- ``runner.models.custom_cnn.CustomCNN`` — conv2d (same/valid padding, any stride),
  BatchNorm in eval mode, activations, 2×2 max/avg pooling, flatten, dense.
- ``runner.models.text.RNNClassifier`` — embedding, Elman RNN / GRU / LSTM with torch's
  gate order and bias layout, bidirectional, stacked, last/mean/max pooling over
  the real (non-pad) time steps, dense.

Parameter names follow the torch modules exactly (``features.0.conv.weight``,
``rnn.weight_hh_l1_reverse``, ``classifier.bias`` ...); a state dict key or a
config key the reference does not implement is an error, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Array = np.ndarray

# ------------------------------------------------------------------ activations


def sigmoid(x: Array) -> Array:
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _gelu(x: Array) -> Array:
    from scipy.special import erf  # exact (erf) GELU, as torch's default; scipy ships with sklearn

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "mish": lambda x: x * np.tanh(np.logaddexp(0.0, x)),
    "gelu": _gelu,
    "silu": lambda x: x * sigmoid(x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "identity": lambda x: x,
}


def activation(name: str, x: Array) -> Array:
    """Apply an activation by name: relu | leaky_relu (slope 0.01) | mish | gelu | silu | elu |
    tanh | sigmoid | identity."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name](x)


def softmax(logits: Array, axis: int = -1) -> Array:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


# ------------------------------------------------------------------ image layers


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def _same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """(before, after) padding so that out = ceil(size / stride); torch's 'same' for stride 1
    (the odd extra pixel goes after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def conv2d(
    x: Array,
    weight: Array,
    bias: Array | None = None,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple[int, int] = "valid",
) -> Array:
    """2-D cross-correlation like ``torch.nn.functional.conv2d`` (groups=1, dilation=1).

    x: (N, C, H, W); weight: (O, C, kh, kw); bias: (O,) or None.
    padding: ``valid`` (none) | ``same`` (output ceil(H/stride); torch's for stride 1) |
    an int or (ph, pw) of zeros on each side.
    """
    (kh, kw), (sh, sw) = weight.shape[2:], _pair(stride)
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        pads = (_same_padding(x.shape[2], kh, sh), _same_padding(x.shape[3], kw, sw))
    elif isinstance(padding, str):
        raise ValueError(f"unknown padding {padding!r}; valid: same, valid, or an int")
    else:
        ph, pw = _pair(padding)
        pads = ((ph, ph), (pw, pw))
    x = np.pad(x, ((0, 0), (0, 0), *pads))
    out_h = (x.shape[2] - kh) // sh + 1
    out_w = (x.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], out_h, out_w, weight.shape[0]), dtype=np.result_type(x, weight))
    # One matrix product per kernel offset: memory stays O(input), not O(input × k²).
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw]
            out += np.tensordot(patch, weight[:, :, i, j], axes=([1], [1]))
    if bias is not None:
        out += bias
    return out.transpose(0, 3, 1, 2)


def _pool(x: Array, kernel: int, stride: int | None, reduce: Callable[..., Array]) -> Array:
    stride = stride or kernel
    windows = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return reduce(windows, axis=(4, 5))


def max_pool2d(x: Array, kernel: int = 2, stride: int | None = None) -> Array:
    """Max pooling (N, C, H, W), no padding, floor mode; stride defaults to kernel."""
    return _pool(x, kernel, stride, np.max)


def avg_pool2d(x: Array, kernel: int = 2, stride: int | None = None) -> Array:
    """Average pooling (N, C, H, W), no padding, floor mode; stride defaults to kernel."""
    return _pool(x, kernel, stride, np.mean)


POOLS = {"max": max_pool2d, "avg": avg_pool2d}


def batch_norm(
    x: Array, weight: Array, bias: Array, mean: Array, var: Array, eps: float = 1e-5
) -> Array:
    """BatchNorm in eval mode over channel axis 1 of (N, C) or (N, C, H, W)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = (weight / np.sqrt(var + eps)).reshape(shape)
    return (x - mean.reshape(shape)) * scale + bias.reshape(shape)


def linear(x: Array, weight: Array, bias: Array | None = None) -> Array:
    """Dense layer: x (N, in) @ weight(out, in)ᵀ + bias."""
    y = x @ weight.T
    return y if bias is None else y + bias


# ------------------------------------------------------------------ recurrent layers

GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # torch stacks gates as rows: GRU r,z,n; LSTM i,f,g,o


def recurrent_layer(
    x: Array,
    lengths: Array,
    cell: str,
    w_ih: Array,
    w_hh: Array,
    b_ih: Array | None = None,
    b_hh: Array | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
) -> tuple[Array, Array]:
    """One direction of one torch ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` layer over packed
    sequences.

    x: (N, L, D) post-padded inputs; lengths: (N,) real steps per row (>= 1).
    cell: rnn | gru | lstm; nonlinearity: tanh | relu (rnn only).
    reverse: read each sequence from its last real step back to step 0.
    Returns outputs (N, L, H), zero at pad steps, and the final hidden state (N, H):
    after the last real step (forward) or after step 0 (reverse). Initial states are zero.
    """
    if cell not in GATES:
        raise ValueError(f"unknown cell {cell!r}; valid: {', '.join(GATES)}")
    n, steps, _ = x.shape
    hidden = w_hh.shape[1]
    xw = x @ w_ih.T + (0.0 if b_ih is None else b_ih)  # input part of every step at once
    b_hh = np.zeros(w_hh.shape[0]) if b_hh is None else b_hh
    h = np.zeros((n, hidden), dtype=xw.dtype)
    c = np.zeros_like(h)
    out = np.zeros((n, steps, hidden), dtype=xw.dtype)
    for t in range(steps - 1, -1, -1) if reverse else range(steps):
        hw = h @ w_hh.T + b_hh
        if cell == "rnn":
            h_new = activation(nonlinearity, xw[:, t] + hw)
        elif cell == "gru":
            xr, xz, xn = np.split(xw[:, t], 3, axis=1)
            hr, hz, hn = np.split(hw, 3, axis=1)
            r, z = sigmoid(xr + hr), sigmoid(xz + hz)
            h_new = (1.0 - z) * np.tanh(xn + r * hn) + z * h
        else:
            i, f, g, o = np.split(xw[:, t] + hw, 4, axis=1)
            c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h_new = sigmoid(o) * np.tanh(c_new)
        active = (t < lengths)[:, None]  # pad steps neither update the state nor output
        h = np.where(active, h_new, h)
        if cell == "lstm":
            c = np.where(active, c_new, c)
        out[:, t] = np.where(active, h_new, 0.0)
    return out, h


# ------------------------------------------------------------------ models


class _Params:
    """A state dict that remembers which keys were read, so leftovers can be reported."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.arrays = {
            k.removeprefix("_orig_mod."): np.asarray(v, dtype=np.float64)
            for k, v in state.items()
            if not k.endswith("num_batches_tracked")
        }
        self.used: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    def get(self, key: str) -> Array | None:
        if key not in self.arrays:
            return None
        self.used.add(key)
        return self.arrays[key]

    def __getitem__(self, key: str) -> Array:
        if key not in self.arrays:
            raise ValueError(f"the state dict has no {key!r}; is it the right checkpoint?")
        return self.get(key)  # type: ignore[return-value]

    def check_all_used(self, model: str) -> None:
        left = sorted(set(self.arrays) - self.used)
        if left:
            raise ValueError(
                f"the NumPy {model} does not implement the layers holding {', '.join(left[:8])}"
                f"{' ...' if len(left) > 8 else ''}; the checkpoint has a structure it cannot run"
            )


def _check_config(cfg: Mapping[str, Any], known: set[str], model: str) -> None:
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(
            f"the NumPy {model} does not implement the config keys {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(known))}"
        )


class NumpyCustomCNN:
    """NumPy twin of ``runner.models.custom_cnn.CustomCNN`` (eval mode)."""

    CONFIG_KEYS = {
        "family", "name", "init", "filters", "kernel_size", "padding", "pooling",
        "batch_norm", "activation", "fc_neurons", "dropout", "num_classes", "in_channels",
        "image_size",
    }  # fmt: skip

    def __init__(self, cfg: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        _check_config(cfg, self.CONFIG_KEYS, "CustomCNN")
        p = _Params(state)
        self.act = cfg.get("activation", "relu")
        activation(self.act, np.zeros(1))  # fail early on an unknown name
        self.padding = cfg.get("padding", "same")
        pooling = cfg.get("pooling", "max")
        if pooling not in POOLS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLS)}")
        self.pool = POOLS[pooling]
        self.blocks = []
        i = 0
        while f"features.{i}.conv.weight" in p:
            pre = f"features.{i}"
            bn = None
            if f"{pre}.bn.weight" in p:
                bn = tuple(
                    p[f"{pre}.bn.{k}"] for k in ("weight", "bias", "running_mean", "running_var")
                )
            self.blocks.append((p[f"{pre}.conv.weight"], p.get(f"{pre}.conv.bias"), bn))
            i += 1
        head_idx = sorted(
            int(k.split(".")[1])
            for k in p.arrays
            if k.startswith("head.") and k.endswith(".weight")
        )
        self.head = [(p[f"head.{j}.weight"], p.get(f"head.{j}.bias")) for j in head_idx]
        self.classifier = (p["classifier.weight"], p.get("classifier.bias"))
        p.check_all_used("CustomCNN")

    def __call__(self, x: Array) -> Array:
        """Logits (N, classes) of normalised images x (N, C, H, W)."""
        x = np.asarray(x, dtype=np.float64)
        for weight, bias, bn in self.blocks:
            x = conv2d(x, weight, bias, padding=self.padding)
            if bn is not None:
                x = batch_norm(x, *bn)
            x = self.pool(activation(self.act, x))
        x = x.reshape(x.shape[0], -1)
        for weight, bias in self.head:  # dropout is the identity in eval mode
            x = activation(self.act, linear(x, weight, bias))
        return linear(x, *self.classifier)


class NumpyRNNClassifier:
    """NumPy twin of ``runner.models.text.RNNClassifier`` (eval mode) with its ``pad_idx``."""

    CONFIG_KEYS = {
        "family", "name", "init", "cell", "embed_dim", "hidden_size", "num_layers",
        "bidirectional", "dropout", "rnn_dropout", "embed_dropout", "pooling", "nonlinearity",
        "num_classes", "vocab_size", "pad_idx",
    }  # fmt: skip

    def __init__(self, cfg: Mapping[str, Any], state: Mapping[str, Any], pad_idx: int = 0) -> None:
        _check_config(cfg, self.CONFIG_KEYS, "RNNClassifier")
        p = _Params(state)
        self.pad_idx = int(cfg.get("pad_idx", pad_idx))
        self.cell = cfg.get("cell", "lstm")
        self.nonlinearity = cfg.get("nonlinearity", "tanh")
        self.pooling = cfg.get("pooling", "last")
        if self.pooling not in ("last", "mean", "max"):
            raise ValueError(f"unknown pooling {self.pooling!r}; valid: last, mean, max")
        self.embedding = p["embedding.weight"]
        directions = ("", "_reverse") if cfg.get("bidirectional", False) else ("",)
        self.layers = [
            [
                (
                    p[f"rnn.weight_ih_l{layer}{d}"],
                    p[f"rnn.weight_hh_l{layer}{d}"],
                    p.get(f"rnn.bias_ih_l{layer}{d}"),
                    p.get(f"rnn.bias_hh_l{layer}{d}"),
                )
                for d in directions
            ]
            for layer in range(int(cfg.get("num_layers", 1)))
        ]
        self.classifier = (p["classifier.weight"], p.get("classifier.bias"))
        p.check_all_used("RNNClassifier")

    def __call__(self, ids: Array) -> Array:
        """Logits (N, classes) of post-padded token ids (N, L)."""
        ids = np.asarray(ids)
        lengths = np.maximum((ids != self.pad_idx).sum(axis=1), 1)
        x = self.embedding[ids[:, : lengths.max()]]  # steps after every row's end change nothing
        finals: list[Array] = []
        for layer in self.layers:
            outs, finals = [], []
            for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(layer):
                out, h = recurrent_layer(
                    x, lengths, self.cell, w_ih, w_hh, b_ih, b_hh, d == 1, self.nonlinearity
                )
                outs.append(out)
                finals.append(h)
            x = np.concatenate(outs, axis=2)
        return linear(self._pool(x, finals, lengths), *self.classifier)

    def _pool(self, out: Array, finals: list[Array], lengths: Array) -> Array:
        if self.pooling == "last":
            return np.concatenate(finals, axis=1)
        if self.pooling == "mean":
            return out.sum(axis=1) / lengths[:, None]
        real = np.arange(out.shape[1])[None, :, None] < lengths[:, None, None]
        return np.where(real, out, -np.inf).max(axis=1)


# model family (the model registry's name, runner.zoo) -> its NumPy twin
TWINS: dict[str, type] = {"custom_cnn": NumpyCustomCNN, "rnn": NumpyRNNClassifier}


def build_numpy_model(
    model_cfg: Mapping[str, Any], state: Mapping[str, Any], **kwargs: Any
) -> Callable[[Array], Array]:
    """The NumPy twin of the model described by ``model_cfg`` (a run's ``config["model"]``)
    with weights ``state`` (parameter name → array). ``kwargs``: ``pad_idx`` for text models.
    Returns a callable mapping a batch of inputs to float64 logits."""
    family = model_cfg.get("family")
    if family not in TWINS:
        raise ValueError(
            f"no NumPy reference for model family {family!r}; supported: {', '.join(TWINS)}"
        )
    if family == "rnn":
        return NumpyRNNClassifier(model_cfg, state, **kwargs)
    return NumpyCustomCNN(model_cfg, state)
