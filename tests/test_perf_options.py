"""Speed options: bf16 autocast, channels_last, 16-mixed + GradScaler, torch.compile.

CPU tests run real short trainings; the CUDA ones are marked ``gpu`` and skip
without a device (``pytest -m gpu`` on a GPU machine). The speed itself is
measured by ``benchmarks/bench_train.py``, not here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from runner import build, checkpoint
from runner.engine import Loop
from runner.rundir import RunDir
from runner.train import train
from tests.conftest import ROOT, compose_cfg
from tests.test_datasets import write_cifar

# One thread: on a shared 2-core machine two spinning OpenMP threads per process lose whole
# time slices (10x slower runs); these tiny models gain nothing from a second thread.
DIGITS = [
    "trainer.num_threads=1",
    "dataset=digits",
    "diagnostics=off",
    "trainer.max_epochs=6",
    "trainer.early_stopping.enabled=false",
    "trainer.device=cpu",
]
SYNTH = [
    "trainer.num_threads=1",
    "dataset=synthetic",
    "dataset.num_samples=96",
    "dataset.image_size=16",
    "diagnostics=off",
    "model.filters=[8,16]",
    "model.fc_neurons=[32]",
    "trainer.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.early_stopping.enabled=false",
]

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def built_loop(cfg, run_dir: Path, device: str = "cpu") -> Loop:
    """The loop :func:`runner.build.build_run` makes for ``cfg`` (no training yet)."""
    data = build.build_data(cfg)
    model = build.build_model(cfg, data)
    return build.build_run(cfg, data, model, torch.device(device), RunDir(run_dir)).loop


@pytest.mark.slow  # bf16 is emulated (slow) on CPUs without AVX-512 BF16 / AMX
def test_bf16_channels_last_matches_fp32_on_digits(tmp_path):
    """bf16 autocast + channels_last lands in fp32's accuracy band after the same epochs."""
    fp32 = train(compose_cfg(DIGITS, tmp_path / "fp32"))
    bf16 = train(
        compose_cfg(
            [*DIGITS, "trainer.precision=bf16", "trainer.channels_last=true"], tmp_path / "bf16"
        )
    )
    assert fp32["status"] == bf16["status"] == "completed"
    assert bf16["precision"] == "bf16"
    assert fp32["test_acc"] > 0.9, fp32
    assert abs(bf16["test_acc"] - fp32["test_acc"]) <= 0.04, (bf16["test_acc"], fp32["test_acc"])
    assert abs(bf16["best_val_acc"] - fp32["best_val_acc"]) <= 0.04


def test_bf16_channels_last_reach_the_step(tmp_path):
    """The loop really trains channels_last weights on channels_last bf16-autocast batches."""
    cfg = compose_cfg(
        [*SYNTH, "trainer.device=cpu", "trainer.precision=bf16", "trainer.channels_last=true"],
        tmp_path,
    )
    loop = built_loop(cfg, tmp_path)
    conv = loop.model.features[0].conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x, y = next(iter(loop.train_loader.epoch(1)))
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    with loop._autocast():
        assert loop.parts.forward_model(x).dtype == torch.bfloat16
    loss, logits = loop._step(x, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert conv.weight.dtype == torch.float32  # autocast: master weights stay fp32
    assert not loop.scaler.is_enabled()  # no GradScaler for bf16


@pytest.mark.slow  # a full ResNet-18 for 3 epochs: ~40 s on a quiet 2-core CPU
def test_cifar10_fast_preset_trains_on_cifar_batches(tmp_path):
    """The fast CIFAR-10 recipe (auto precision, one-cycle, label smoothing, flip TTA,
    fused SGD) trains on real CIFAR-10 pickle batches and learns their classes. On a CPU
    without native bf16 (no AVX-512 BF16 / AMX) auto picks fp32 (bf16 would be emulated)."""
    from runner.runtime import native_bf16

    write_cifar(tmp_path / "data", per_batch=60)  # 300 train (50 held for val), 60 test
    cfg = compose_cfg(
        [
            "+experiment=cifar10_fast",
            f"dataset.root={tmp_path / 'data'}",
            "dataset.val_size=50",
            "trainer.max_epochs=3",
            "trainer.batch_size=25",  # the preset's 512 would be one step per epoch here
            "optimizer.lr=0.1",
            "diagnostics=off",
            # the fixture's classes are 3-pixel stripes: a 4-pixel crop shift mixes them up
            "dataset.augment.crop_padding=0",
            "trainer.device=cpu",
            "trainer.num_threads=1",
        ],
        tmp_path / "run",
    )
    precision = "bf16" if native_bf16(torch.device("cpu")) else "32"
    assert cfg.model.name == "resnet18" and cfg.model.zero_init_residual
    assert cfg.scheduler.name == "onecycle" and cfg.optimizer.nesterov
    t = cfg.trainer
    assert (t.precision, t.channels_last, t.label_smoothing, t.tta) == ("auto", "auto", 0.1, "flip")
    assert not t.early_stopping.enabled
    summary = train(cfg)
    assert summary["status"] == "completed", summary
    assert summary["precision"] == precision  # what auto resolves to on this CPU
    assert summary["channels_last"] is (precision == "bf16")
    assert summary["test_acc"] >= 0.8, summary  # 10 classes: chance is 0.1; seeds 1/7/42: 0.9-1
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["images_per_second"] > 0


def _digits_trainer(tmp_path, *overrides: str) -> Loop:
    return built_loop(compose_cfg([*DIGITS, *overrides], tmp_path), tmp_path)


def test_flip_tta_averages_each_image_with_its_mirror(tmp_path):
    trainer = _digits_trainer(tmp_path, "trainer.tta=flip")
    plain = _digits_trainer(tmp_path, "trainer.tta=none")
    plain.model.load_state_dict(trainer.model.state_dict())
    logits, y = trainer.predict(trainer.val_loader)
    x = torch.cat([xb for xb, _ in trainer.val_loader.epoch()])
    model = plain.model.eval()
    with torch.no_grad():
        want = (model(x) + model(x.flip(-1))) / 2
    torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5)
    plain_logits, _ = plain.predict(plain.val_loader)
    assert not torch.allclose(plain_logits, logits)  # digits are not mirror-symmetric


def test_optimizer_kernel_and_batchnorm_options(tmp_path):
    from runner.errors import ConfigError

    auto = _digits_trainer(tmp_path)  # SGD on CPU: fused by default
    assert auto.optimizer.defaults["fused"] is True
    loop = _digits_trainer(tmp_path, "trainer.optimizer_impl=for_loop")
    assert not loop.optimizer.defaults["fused"] and loop.optimizer.defaults["foreach"] is False
    rms = _digits_trainer(tmp_path, "optimizer=rmsprop")  # no fused RMSprop: torch's default
    assert not rms.optimizer.defaults.get("fused")
    with pytest.raises(ConfigError, match="no fused kernel"):
        _digits_trainer(tmp_path, "optimizer=rmsprop", "trainer.optimizer_impl=fused")
    bn = _digits_trainer(tmp_path, "trainer.bn_momentum=0.4", "trainer.bn_eps=1e-12")
    norms = [m for m in bn.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.4 and m.eps == 1e-12 for m in norms)


@pytest.mark.parametrize("seed", [0, 42])
def test_stratified_split_matches_scikit_learn(seed):
    """The runner's split equals train_test_split(stratify) twice (test, then validation),
    so taking scikit-learn off the start-up path (it costs ~1 s) moves no image."""
    from sklearn.model_selection import train_test_split

    from runner.data.prepare import stratified_split

    rng = np.random.default_rng(seed)
    for n, k, val, test in [(500, 7, 0.15, 0.15), (1797, 10, 0.2, 0.1), (333, 3, 0.1, 0.0)]:
        y = np.where(rng.random(n) < 0.4, 0, rng.integers(0, k, n))  # imbalanced
        idx = np.arange(n)
        rest, want_test = (idx, idx[:0])
        if test:
            rest, want_test = train_test_split(idx, test_size=test, stratify=y, random_state=seed)
        want_train, want_val = train_test_split(
            rest, test_size=val / (1 - test), stratify=y[rest], random_state=seed
        )
        got = stratified_split(y, val, test, seed)
        for g, w in zip(got, (want_train, want_val, want_test)):
            np.testing.assert_array_equal(g, np.sort(w))


def test_digits_pixels_are_scikit_learns():
    from sklearn.datasets import load_digits as sk_digits

    from runner.data.digits import load_digits

    data = load_digits(val_fraction=0.0, test_fraction=0.0)
    raw = sk_digits()
    want = np.round(raw.images * (255.0 / 16.0)).astype(np.uint8)
    np.testing.assert_array_equal(data.train.x[:, 0].numpy(), want)
    np.testing.assert_array_equal(data.train.y.numpy(), raw.target)


def test_bench_train_runs(tmp_path):
    """benchmarks/bench_train.py end to end at a tiny size (guards it against bit-rot)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_train
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path / "bench.csv"
    rows = bench_train.main(
        [
            "--models",
            "custom_cnn",
            "--repeats",
            "1",
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--progress-bar",
            "false",
            "--out",
            str(out),
        ]
    )
    assert out.is_file()
    assert rows[0]["runner img/s"] > 0 and rows[0]["plain img/s"] > 0


# ---------------------------------------------------------------------- CUDA


def _gpu_run(tmp_path: Path, *overrides: str) -> dict:
    summary = train(compose_cfg([*SYNTH, "trainer.device=cuda", *overrides], tmp_path))
    assert summary["status"] == "completed", summary
    assert summary["device"].startswith("cuda")
    assert summary["best_val_acc"] > 0.25  # 4 classes
    return summary


@pytest.mark.gpu
@cuda
def test_gpu_16_mixed_uses_grad_scaler(tmp_path):
    cfg = compose_cfg([*SYNTH, "trainer.device=cuda", "trainer.precision=16-mixed"], tmp_path)
    loop = built_loop(cfg, tmp_path, "cuda")
    assert loop.scaler.is_enabled()
    x, y = next(iter(loop.train_loader.epoch(1)))
    with loop._autocast():
        assert loop.parts.forward_model(x).dtype == torch.float16
    loss, _ = loop._step(x, y)
    assert torch.isfinite(loss) and loop.scaler.get_scale() > 0
    _gpu_run(tmp_path / "run", "trainer.precision=16-mixed")


@pytest.mark.gpu
@cuda
@pytest.mark.skipif(
    torch.cuda.is_available() and not torch.cuda.is_bf16_supported(), reason="GPU lacks bf16"
)
def test_gpu_bf16(tmp_path):
    assert _gpu_run(tmp_path, "trainer.precision=bf16")["precision"] == "bf16"


@pytest.mark.gpu
@cuda
def test_gpu_channels_last(tmp_path):
    _gpu_run(tmp_path, "trainer.channels_last=true", "trainer.precision=bf16")


@pytest.mark.gpu
@cuda
def test_gpu_compile(tmp_path):
    _gpu_run(tmp_path, "trainer.compile=true")


def test_start_path_imports_no_heavy_optional_package():
    """Composing the default config, building digits, the model and the trainer (all that
    happens before the first step) imports neither scikit-learn nor matplotlib: each
    costs about a second of start-up, and both are needed only after training."""
    import subprocess

    code = (
        "import sys, tempfile, pathlib\n"
        "from runner import build\n"
        "from runner.rundir import RunDir\n"
        "from tests.conftest import compose_cfg\n"
        "run_dir = pathlib.Path(tempfile.mkdtemp())\n"
        "cfg = compose_cfg(['trainer.max_epochs=1'], run_dir)\n"
        "data = build.build_data(cfg)\n"
        "model = build.build_model(cfg, data)\n"
        "import torch\n"
        "build.build_run(cfg, data, model, torch.device('cpu'), RunDir(run_dir))\n"
        "heavy = [m for m in ('sklearn', 'matplotlib', 'captum', 'optuna') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(len(data.train), len(data.val), len(data.test))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1257", "270", "270"]


def test_ema_is_updated_after_every_optimizer_step(tmp_path):
    """The evaluated weights are torch's EMA of the weights after each step: a copy at the
    first step, then ``decay * average + (1 - decay) * weights``."""
    trainer = _digits_trainer(tmp_path, "trainer.ema_decay=0.8")
    want = None
    batches = trainer.train_loader.epoch(1)
    trainer.model.train()
    for _ in range(6):
        trainer._step(*next(batches))
        now = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        if want is None:
            want = now
        else:
            want = {
                k: 0.8 * want[k] + 0.2 * v if v.is_floating_point() else want[k]
                for k, v in now.items()
            }
    got = trainer.evaluated_model().state_dict()
    for k, v in want.items():
        if v.is_floating_point():
            torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6)
    assert not torch.equal(got["features.0.conv.weight"], trainer.model.features[0].conv.weight)


def test_ema_is_evaluated_checkpointed_and_resumes_exactly(tmp_path):
    """With trainer.ema_decay the average is what validation/test see and what best.pt's
    ``model`` holds; a run stopped after 2 epochs and resumed to 3 matches an
    uninterrupted 3-epoch run."""
    ema = [*DIGITS, "trainer.ema_decay=0.9", "scheduler=none", "trainer.monitor=val_acc"]
    full = train(compose_cfg([*ema, "trainer.max_epochs=3"], tmp_path / "full"))
    train(compose_cfg([*ema, "trainer.max_epochs=2"], tmp_path / "resumed"))
    resumed = train(
        compose_cfg([*ema, "trainer.max_epochs=3", "trainer.resume=true"], tmp_path / "resumed")
    )
    assert full["status"] == resumed["status"] == "completed"
    assert full["test_acc"] > 0.85, full
    columns = ["train_loss", "train_acc", "val_loss", "val_acc"]
    import pandas as pd

    a = pd.read_csv(tmp_path / "full" / "metrics.csv")[columns]
    b = pd.read_csv(tmp_path / "resumed" / "metrics.csv")[columns]
    pd.testing.assert_frame_equal(a, b)
    assert resumed["test_acc"] == full["test_acc"]

    ckpt = checkpoint.load(RunDir(tmp_path / "full").checkpoint("last"))
    averaged, trained = ckpt[checkpoint.MODEL], ckpt[checkpoint.TRAIN_MODEL]
    assert any(not torch.equal(averaged[k], trained[k]) for k in averaged)
    # validation accuracy in metrics.csv is the averaged weights' accuracy
    loop = _digits_trainer(tmp_path / "check", "scheduler=none")
    loop.model.load_state_dict(averaged)
    assert loop.parts.ema is None
    assert loop.evaluate(loop.val_loader)["acc"] == pytest.approx(a["val_acc"].iloc[-1])


@pytest.mark.slow
def test_compile_on_cpu_matches_eager(tmp_path):
    """trainer.compile=true (inductor, needs a C++ compiler) trains digits into eager's
    accuracy band; with flip TTA on, so the compiled model serves evaluation twice a batch."""
    common = [*DIGITS, "trainer.max_epochs=3", "trainer.tta=flip"]
    eager = train(compose_cfg(common, tmp_path / "eager"))
    compiled = train(compose_cfg([*common, "trainer.compile=true"], tmp_path / "compiled"))
    assert eager["status"] == compiled["status"] == "completed"
    assert abs(compiled["test_acc"] - eager["test_acc"]) <= 0.03, (compiled, eager)
