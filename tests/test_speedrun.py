"""The CIFAR-10 speed preset's parts: it learns, the whitening stem whitens, MuonSGD
orthogonalises, flip_translate TTA is the mean of its views, alternating flips alternate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from runner import build, zoo
from runner.data import augment as A
from runner.data.base import DataBundle, Split
from runner.data.loader import BatchLoader, LoaderOptions
from runner.errors import ConfigError
from runner.models.airbench import AirbenchNet, whitening_weights
from runner.optim import NS_COEFFICIENTS, MuonSGD, _newton_schulz
from runner.train import train
from runner.tta import tta_logits
from runner.validate import validate
from tests.conftest import SHARED_DATA, compose_cfg

MNIST = SHARED_DATA / "mnist"


def test_speedrun_preset_learns_on_real_mnist_in_seconds(tmp_path, caplog):
    """The preset as it is (airbench net with whitening from data, MuonSGD, linear decay,
    label smoothing 0.2, translate + alternating flips, flip_translate TTA), narrower and on
    1 000 MNIST digits at batch 100 (SGD lrs scaled to the batch as the YAML says): 4
    epochs, ~4 s of training on 2 cores, test accuracy 0.95 (seed 42); bound 0.85."""
    if not (MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{MNIST} absent")
    run = tmp_path / "run"
    overrides = [
        "+experiment=cifar10_speedrun", "dataset=mnist", f"dataset.path={MNIST}",
        f"dataset.root={tmp_path}", "dataset.use_test_as_train=true",
        "dataset.val_fraction=0.05", "dataset.test_fraction=0.1", "dataset.subset=100",
        "dataset.check_duplicates=false", "model.widths=[16,32,32]", "trainer.batch_size=100",
        "optimizer.bias_lr=5.3", "optimizer.head_lr=67", "optimizer.weight_decay=2e-4",
        "trainer.max_epochs=4", "trainer.device=cpu", "trainer.progress_bar=false",
    ]  # fmt: skip
    cfg = compose_cfg(overrides, run)
    caplog.set_level("INFO")
    summary = train(cfg)
    assert summary["status"] == "completed", summary
    assert summary["test_acc"] >= 0.85, summary  # chance 0.1
    log = caplog.text
    assert "model initialised from data: patch-whitening layer" in log
    assert "runner.optim.MuonSGD" in log and "test-time augmentation: flip_translate" in log
    # runner-predict's path gives the run's own test accuracy (same TTA, same weights)
    from runner.predict import Predictor

    predictor = Predictor.from_run(run, device="cpu")
    assert predictor.pre.tta == "flip_translate"
    data = build.build_data(cfg)
    probs = predictor.probabilities(data.test.x)
    accuracy = (probs.argmax(1) == data.test.y).float().mean().item()
    assert accuracy == pytest.approx(summary["test_acc"], abs=1e-6)


def test_preset_builds_what_it_says(tmp_path):
    cfg = compose_cfg(
        ["+experiment=cifar10_speedrun", "dataset=synthetic", "dataset.num_samples=200",
         "dataset.val_fraction=0.2", "model.widths=[8,16,16]"],
        tmp_path,
    )  # fmt: skip
    validate(cfg)
    data = build.build_data(cfg)
    model = build.build_model(cfg, data)
    from runner.rundir import RunDir

    built = build.build_run(cfg, data, model, torch.device("cpu"), RunDir(tmp_path))
    parts, settings = built.loop.parts, built.loop.settings
    assert isinstance(parts.optimizer, MuonSGD)
    kinds = {g["kind"]: g for g in parts.optimizer.param_groups}
    assert set(kinds) == {"filters", "biases", "head"}
    assert kinds["head"]["lr"] == 1340.0 and kinds["filters"]["lr"] == 0.24
    assert not any(p is model.whiten.weight for g in kinds.values() for p in g["params"])
    assert isinstance(parts.scheduler, torch.optim.lr_scheduler.LinearLR)
    assert parts.scheduler.total_iters == 8 * len(parts.train_loader)
    assert settings.tta == "flip_translate" and settings.scheduler_per_step
    assert parts.forward_model is not torch.compile  # auto: compiled on CUDA only
    assert not hasattr(parts.forward_model, "_orig_mod")
    assert built.loop.train_loader._flip_base is not None


def test_linear_schedule_ends_at_zero(tmp_path):
    cfg = compose_cfg(["scheduler=linear", "optimizer=sgd"], tmp_path)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = build.build_scheduler(cfg.scheduler, opt, max_epochs=3, steps_per_epoch=4)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.5 and lrs[-1] == pytest.approx(0.5 / 12)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


# ------------------------------------------------------------------ whitening


def _correlated_images(n: int = 400, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, 1)  # neighbours correlate
    return x + 0.5 * x.mean(1, keepdim=True)  # and channels too


def test_whitening_layer_whitens_patches():
    x = _correlated_images()
    net = AirbenchNet(num_classes=2, in_channels=3, image_size=16, widths=(4, 4, 4))
    net.init_whitening(x, eps=1e-8)
    half = 3 * 2 * 2  # the filters before their negations
    out = F.conv2d(x, net.whiten.weight[:half])
    flat = out.permute(0, 2, 3, 1).reshape(-1, half)
    cov = flat.T @ flat / len(flat)
    torch.testing.assert_close(cov, torch.eye(half), atol=2e-3, rtol=0)
    raw = F.unfold(x, 2).transpose(1, 2).reshape(-1, half)  # the same patches, unwhitened
    raw_corr = torch.corrcoef(raw.T)
    assert (raw_corr - torch.eye(half)).abs().max() > 0.5  # they were correlated
    torch.testing.assert_close(net.whiten.weight[half:], -net.whiten.weight[:half])


def test_data_init_sets_the_stem_from_the_first_normalised_training_images(tmp_path):
    cfg = compose_cfg(
        ["model=airbench94", "model.widths=[4,4,4]", "model.whiten_samples=50",
         "dataset=synthetic", "dataset.num_samples=200", "dataset.image_size=16"],
        tmp_path,
    )  # fmt: skip
    data = build.build_data(cfg)
    model = build.build_model(cfg, data)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    first = (data.train.x[:50].float() / 255 - mean) / std
    torch.testing.assert_close(model.whiten.weight, whitening_weights(first, 2, 5e-4))
    assert not model.whiten.weight.requires_grad
    fresh = zoo.build_model(cfg.model, data.model_kwargs(), announce=False)  # no data init
    assert not torch.allclose(fresh.whiten.weight, model.whiten.weight)


# ------------------------------------------------------------------ MuonSGD


def _conv_param(seed: int = 0) -> nn.Parameter:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 4, 3, 3, generator=g)
    return nn.Parameter(w * (len(w) ** 0.5 / w.norm()))  # the norm MuonSGD keeps


def _ill_conditioned_grad(shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    u, _, v = torch.linalg.svd(torch.randn(shape[0], 36, generator=g), full_matrices=False)
    return (u @ torch.diag(torch.logspace(0, -2, shape[0])) @ v).view(shape)


def test_muon_updates_of_filters_are_orthogonalised():
    p = _conv_param()
    before = p.detach().clone()
    p.grad = _ill_conditioned_grad(tuple(p.shape))
    MuonSGD([p], lr=0.1, momentum=0.0, nesterov=False, ns_steps=5).step()
    update = ((before - p.detach()) / 0.1).reshape(8, -1)
    singular = torch.linalg.svdvals(update)
    grad_singular = torch.linalg.svdvals(p.grad.reshape(8, -1))
    assert grad_singular.max() / grad_singular.min() > 50
    assert singular.min() > 0.5 and singular.max() < 1.5  # the quintic's band around 1
    assert singular.max() / singular.min() < 2.5


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch has no optim.Muon")
@pytest.mark.parametrize("momentum", [0.0, 0.6])
def test_muon_step_matches_torch_optim_muon(momentum):
    """The first step of a filter bank (already at MuonSGD's norm) equals torch.optim.Muon's
    on its (out, in*k*k) matrix up to bf16 rounding: torch iterates in bf16, MuonSGD in
    float32 on CPUs without native bf16 (the bf16 iteration itself is the same:
    test_newton_schulz_fallback_equals_torchs), and torch scales the momentum buffer by
    (1 - momentum) (a lerp), which Newton-Schulz normalises away."""
    ours = _conv_param()
    theirs = nn.Parameter(ours.detach().clone().reshape(8, -1))
    grad = _ill_conditioned_grad(tuple(ours.shape))
    ours.grad, theirs.grad = grad.clone(), grad.reshape(8, -1).clone()
    MuonSGD([ours], lr=0.05, momentum=momentum, nesterov=True, ns_steps=5).step()
    torch.optim.Muon([theirs], lr=0.05, momentum=momentum, nesterov=True, weight_decay=0.0).step()
    step = (ours.detach().reshape(8, -1) - theirs.detach()).abs().max() / 0.05
    assert step < 0.04  # bf16's error after 5 iterations, on update entries of ~0.2


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch has no optim.Muon")
def test_newton_schulz_fallback_equals_torchs():
    """The copy used where torch has no Muon (torch < 2.9) is torch's bf16 iteration."""
    from torch.optim._muon import _zeropower_via_newtonschulz as torchs

    x = torch.randn(16, 40, generator=torch.Generator().manual_seed(2))
    for m in (x, x.T):  # wide and tall
        torch.testing.assert_close(_newton_schulz(m, 5, 1e-7), torchs(m, NS_COEFFICIENTS, 5, 1e-7))


def test_sgd_part_is_torch_sgd_with_nesterov_and_per_group_decay():
    bias, head = nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(3, 5))
    ref_bias, ref_head = (nn.Parameter(t.detach().clone()) for t in (bias, head))
    opt = MuonSGD([bias, head], bias_lr=0.2, head_lr=0.7, sgd_momentum=0.8, weight_decay=0.01)
    ref = torch.optim.SGD(
        [{"params": [ref_bias], "lr": 0.2, "weight_decay": 0.01 / 0.2},
         {"params": [ref_head], "lr": 0.7, "weight_decay": 0.01 / 0.7}],
        momentum=0.8, nesterov=True,
    )  # fmt: skip
    for step in range(3):
        g = torch.Generator().manual_seed(step)
        for p, q in ((bias, ref_bias), (head, ref_head)):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(bias, ref_bias)
    torch.testing.assert_close(head, ref_head)


def test_muon_sgd_refuses_fine_tuning_lr_groups(tmp_path):
    cfg = compose_cfg(["optimizer=muon_sgd", "trainer.backbone_lr_ratio=0.1"], tmp_path)
    with pytest.raises(ConfigError, match="backbone_lr_ratio"):
        validate(cfg)
    cfg = compose_cfg(["optimizer=muon_sgd", "optimizer.ns_steps=0"], tmp_path)
    with pytest.raises(ConfigError, match="ns_steps"):
        validate(cfg)


def test_stored_config_may_name_the_runners_own_optimizer_only():
    from runner.checkpoint import check_stored_config
    from runner.errors import CheckpointError

    check_stored_config({"optimizer": {"_target_": "runner.optim.MuonSGD"}}, "x")
    with pytest.raises(CheckpointError):
        check_stored_config({"optimizer": {"_target_": "runner.optim.orthogonalise"}}, "x")


# ------------------------------------------------------------------ TTA and augmentation


def test_flip_translate_is_the_weighted_mean_of_its_six_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5)).eval()
    x = torch.randn(6, 3, 10, 10)
    with torch.no_grad():
        got = tta_logits(model, x, "flip_translate")
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        up_left, down_right = padded[..., :10, :10], padded[..., 2:, 2:]
        views = [x, x.flip(-1), up_left, up_left.flip(-1), down_right, down_right.flip(-1)]
        logits = [model(v) for v in views]
        want = (logits[0] + logits[1]) / 4 + sum(logits[2:]) / 8
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(up_left[..., 1:, 1:], x[..., :-1, :-1])  # shifted by one
        torch.testing.assert_close(tta_logits(model, x, "flip"), (logits[0] + logits[1]) / 2)
    with pytest.raises(ValueError, match="flip_translate"):
        tta_logits(model, x, "rotate")


def test_translate_pads_by_reflection_per_image():
    x = torch.rand(4, 3, 8, 8)
    dy, dx = torch.tensor([0, 1, 2, 4]), torch.tensor([4, 0, 3, 2])
    flip = torch.tensor([False, True, False, True])
    out = A.crop_flip_with(x, 2, dy.clamp(max=4), dx, flip, reflect=True)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(4):
        want = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        torch.testing.assert_close(out[i], want.flip(-1) if flip[i] else want)


def _bundle(n: int = 24) -> DataBundle:
    x = torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=torch.Generator())
    split = Split(x, torch.arange(n) % 2)
    aug = {"alternating_flip": True}
    return DataBundle("t", ["a", "b"], split, split, split, mean=(0.0,), std=(1.0,), augment=aug)


def test_alternating_flip_mirrors_each_image_in_exactly_one_of_two_epochs():
    data = _bundle()
    loader = BatchLoader(data.train, data, LoaderOptions(5, train=True, seed=3))
    originals = data.train.x.float() / 255

    def flipped(epoch: int) -> dict[int, bool]:
        seen = {}
        for x, _ in loader.epoch(epoch):
            for image in x:
                same = (originals == image).flatten(1).all(1)
                mirror = (originals.flip(-1) == image).flatten(1).all(1)
                i = int((same | mirror).nonzero()[0])
                seen[i] = bool(mirror[i]) and not bool(same[i])
        return seen

    first, second, third = flipped(1), flipped(2), flipped(3)
    assert len(first) == len(data.train)
    assert all(first[i] != second[i] for i in first)  # each image both ways in two epochs
    assert first == third
    assert 0 < sum(first.values()) < len(first)  # a random half, not all or none
    again = BatchLoader(data.train, data, LoaderOptions(5, train=True, seed=3))
    assert torch.equal(again._flip_base, loader._flip_base)  # from the seed: resumable


def test_translate_and_crop_padding_are_exclusive(tmp_path):
    cfg = compose_cfg(["dataset.augment.translate=2", "dataset.augment.crop_padding=4"], tmp_path)
    with pytest.raises(ConfigError, match="translate"):
        validate(cfg)


def test_speedrun_files_exist():
    root = Path(__file__).resolve().parents[1]
    for name in ("conf/experiment/cifar10_speedrun.yaml", "conf/dataset/cifar10_jpg.yaml"):
        assert (root / name).is_file()
