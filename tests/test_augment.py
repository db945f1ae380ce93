"""Batched augmentations against torchvision's per-image functional ops."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from omegaconf import OmegaConf
from torchvision.transforms import InterpolationMode

from runner.data import augment as A
from runner.schema.dataset import AugmentConf

BILINEAR = InterpolationMode.BILINEAR
OFF = {
    "crop_padding": 0, "hflip": False, "random_resized_crop": False, "rotation": 0.0,
    "color_jitter": 0.0, "cutout": 0,
}  # fmt: skip


def augment(**on) -> dict:
    """A complete ``dataset.augment`` dict: every switch off except ``on``."""
    return {**OFF, **on}


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(6, 3, 20, 24, generator=torch.Generator().manual_seed(0))


def test_crop_flip_equals_torchvision_pad_crop_hflip(batch):
    g = torch.Generator().manual_seed(1)
    dy = torch.randint(0, 9, (6,), generator=g)
    dx = torch.randint(0, 9, (6,), generator=g)
    flip = torch.tensor([True, False, True, True, False, False])
    out = A.crop_flip_with(batch, 4, dy, dx, flip)
    for i in range(6):
        ref = TF.crop(TF.pad(batch[i], [4]), int(dy[i]), int(dx[i]), 20, 24)
        ref = TF.horizontal_flip(ref) if flip[i] else ref
        assert torch.equal(out[i], ref)


def test_random_crop_flip_is_per_sample_and_seeded():
    x = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8).expand(4000, 1, 8, 8)
    out = A.random_crop_flip(x, 2, 0.5, torch.Generator().manual_seed(0))
    again = A.random_crop_flip(x, 2, 0.5, torch.Generator().manual_seed(0))
    other = A.random_crop_flip(x, 2, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and not torch.equal(out, other)
    # the centre pixel reveals the offset and the flip: all 25 offsets x 2 flips occur
    distinct = {tuple(o[0, 3:5, 3:5].flatten().tolist()) for o in out}
    assert len(distinct) == 50
    flipped = (out[:, 0, 4, 5] < out[:, 0, 4, 4]).float().mean().item()  # values fall leftwards
    assert 0.45 < flipped < 0.55
    assert torch.equal(A.random_crop(x[:3], 0, torch.Generator()), x[:3])
    assert A.random_hflip(x[:3], torch.Generator(), p=0.0).equal(x[:3])


def test_resized_crop_equals_torchvision_inside_the_box(batch):
    top, left = torch.tensor([0.0, 2, 5, 1, 0, 7]), torch.tensor([0.0, 3, 1, 6, 0, 2])
    height, width = torch.tensor([20.0, 10, 12, 15, 9, 13]), torch.tensor([24.0, 12, 20, 9, 11, 22])
    out = A.affine_with(batch, A.resized_crop_matrix(top, left, height, width, (20, 24)), "border")
    for i in range(6):
        ref = TF.resized_crop(
            batch[i], int(top[i]), int(left[i]), int(height[i]), int(width[i]), [20, 24],
            interpolation=BILINEAR, antialias=False,
        )  # fmt: skip
        # torchvision clamps at the crop's edge; we read the real neighbour pixel there
        assert torch.allclose(out[i, :, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], atol=1e-5)
        if top[i] == 0 and left[i] == 0:  # box at the image corner: edges match too
            assert torch.allclose(out[i, :, :-1, :-1], ref[:, :-1, :-1], atol=1e-5)


def test_rotation_equals_torchvision_rotate(batch):
    angles = torch.tensor([0.0, 30.0, -45.0, 90.0, 170.0, -7.5])
    out = A.affine_with(batch, A.rotation_matrix(angles, (20, 24)))
    for i in range(6):
        ref = TF.rotate(batch[i], float(angles[i]), interpolation=BILINEAR)
        assert torch.allclose(out[i], ref, atol=1e-4)


def test_sampled_resized_crop_boxes_fit_and_respect_scale():
    top, left, h, w = A.sample_resized_crop(5000, (32, 40), torch.Generator().manual_seed(0), "cpu")
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 32 + 1e-4).all() and (left + w <= 40 + 1e-4).all()
    area = h * w / (32 * 40)
    assert area.min() >= 0.35 - 1e-4 and area.max() <= 1 + 1e-4
    ratio = w / h
    full = (h == 32) & (w == 40)  # the fallback when no candidate fits
    assert ((ratio >= 0.75 - 1e-4) & (ratio <= 4 / 3 + 1e-4) | full).all()
    assert area.std() > 0.1  # really per sample


def test_color_jitter_equals_torchvision_adjust_functions(batch):
    b = torch.tensor([0.6, 1.4, 1.0, 0.8, 1.2, 0.0])
    c = torch.tensor([1.3, 0.7, 1.0, 0.5, 1.6, 1.0])
    s = torch.tensor([0.5, 1.5, 1.0, 1.2, 0.0, 1.0])
    out = A.color_jitter_with(batch, b, c, s)
    for i in range(6):
        ref = TF.adjust_brightness(batch[i], float(b[i]))
        ref = TF.adjust_saturation(TF.adjust_contrast(ref, float(c[i])), float(s[i]))
        assert torch.allclose(out[i], ref, atol=1e-6)
    grey = A.color_jitter_with(batch[:, :1], b, c, s)
    for i in range(6):
        ref = TF.adjust_contrast(TF.adjust_brightness(batch[i, :1], float(b[i])), float(c[i]))
        assert torch.allclose(grey[i], ref, atol=1e-6)


def test_cutout_zeroes_a_clipped_square():
    x = torch.ones(3, 2, 10, 12)
    out = A.cutout_with(x, 4, torch.tensor([5, 0, 9]), torch.tensor([6, 0, 11]))
    assert (out[0] == 0).sum() == 2 * 16  # inside: a full 4x4 square per channel
    assert torch.equal(out[0, :, 3:7, 4:8], torch.zeros(2, 4, 4))
    assert (out[1] == 0).sum() == 2 * 4  # corner: clipped to 2x2
    assert (out[2] == 0).sum() == 2 * 3 * 3  # bottom right: rows 7-9, cols 9-11
    random = A.random_cutout(torch.ones(500, 1, 10, 10), 4, torch.Generator().manual_seed(0))
    zeros = (random == 0).flatten(1).sum(1)
    assert zeros.max() == 16 and zeros.min() >= 4 and len(set(zeros.tolist())) > 3


@pytest.mark.parametrize(
    "form", ["dataclass", "dictconfig", "dict"], ids=["AugmentConf", "DictConfig", "dict"]
)
def test_apply_all_options_any_config_form(batch, form):
    settings = augment(
        crop_padding=4, hflip=True, random_resized_crop=True, rotation=15.0, color_jitter=0.4,
        cutout=6,
    )  # fmt: skip
    node = {
        "dataclass": AugmentConf(**settings),
        "dictconfig": OmegaConf.create(settings),
        "dict": settings,
    }[form]
    assert A.is_enabled(node)
    out = A.apply(batch, node, torch.Generator().manual_seed(3))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, A.apply(batch, node, torch.Generator().manual_seed(3)))
    assert not torch.equal(out, A.apply(batch, node, torch.Generator().manual_seed(4)))
    assert not torch.equal(out[0], out[1])


def test_apply_off_and_unknown_keys(batch):
    assert not A.is_enabled(None) and not A.is_enabled(augment())
    assert A.apply(batch, None, torch.Generator()) is batch
    assert torch.equal(A.apply(batch, augment(), torch.Generator()), batch)
    with pytest.raises(ValueError, match="crop_pading"):
        A.apply(batch, {"crop_pading": 4}, torch.Generator())
    with pytest.raises(ValueError, match="crop_pading"):
        A.is_enabled(OmegaConf.create({"crop_pading": 4}))


def test_unset_switches_are_off_in_every_config_form():
    """A schema instance or DictConfig with values left MISSING, or a partial dict, turns
    on only the switches that are set (schemas hold types only, no default values)."""
    assert tuple(f.name for f in dataclasses.fields(AugmentConf)) == A.KEYS
    assert not A.is_enabled(AugmentConf()) and A.settings(AugmentConf()) == {}
    for node in (
        AugmentConf(hflip=True),
        OmegaConf.structured(AugmentConf(hflip=True)),
        {"hflip": True, "cutout": None},
    ):
        assert A.is_enabled(node) and A.settings(node) == {"hflip": True}
    with pytest.raises(TypeError, match="AugmentConf"):
        A.settings("hflip")


def test_affine_alone_keeps_identity_and_half_precision():
    x = torch.rand(4, 3, 16, 16)
    same = A.affine_with(x, torch.eye(2, 3).expand(4, 2, 3))
    assert torch.allclose(same, x, atol=1e-6)
    out = A.apply(x.to(torch.bfloat16), {"rotation": 10.0, "crop_padding": 2}, torch.Generator())
    assert out.dtype == torch.bfloat16


@pytest.mark.gpu
def test_apply_on_cuda_matches_the_cpu_contract():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = torch.rand(64, 3, 32, 32, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    conf = augment(crop_padding=4, hflip=True, random_resized_crop=True, rotation=10.0,
                   color_jitter=0.3, cutout=8)  # fmt: skip
    out = A.apply(x, conf, g)
    assert out.device.type == "cuda" and out.shape == x.shape
    dy, dx = torch.randint(0, 9, (64,), device="cuda"), torch.randint(0, 9, (64,), device="cuda")
    flip = torch.rand(64, device="cuda") < 0.5
    assert torch.equal(
        A.crop_flip_with(x, 4, dy, dx, flip).cpu(),
        A.crop_flip_with(x.cpu(), 4, dy.cpu(), dx.cpu(), flip.cpu()),
    )
