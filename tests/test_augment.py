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


# ------------------------------------------------------------------ policy augmentations

from runner.data import policy as P  # noqa: E402


def _reference(op: str, img: torch.Tensor, m: float) -> torch.Tensor:
    """torchvision's own operation, as its RandAugment applies it (interpolation nearest)."""
    import math

    if op in ("Brightness", "Color", "Contrast", "Sharpness"):
        name = {"Color": "saturation"}.get(op, op.lower())
        return getattr(TF, f"adjust_{name}")(img, 1.0 + m)
    if op == "Posterize":
        return TF.posterize(img, int(m))
    if op == "Solarize":
        return TF.solarize(img, 255.0 * m)
    if op in ("ShearX", "ShearY"):
        shear = [math.degrees(math.atan(m)), 0.0][:: 1 if op == "ShearX" else -1]
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, center=[0, 0])
    if op in ("TranslateX", "TranslateY"):
        move = [int(m), 0][:: 1 if op == "TranslateX" else -1]
        return TF.affine(img, angle=0.0, translate=move, scale=1.0, shear=[0.0, 0.0])
    if op == "Rotate":
        return TF.rotate(img, m)
    return {"AutoContrast": TF.autocontrast, "Equalize": TF.equalize, "Invert": TF.invert}.get(
        op, lambda i: i
    )(img)


MAGNITUDES = {
    "Posterize": torch.arange(12.0) % 9,
    "Solarize": torch.linspace(0, 1, 12),
    "TranslateX": torch.linspace(-14, 14, 12),
    "TranslateY": torch.linspace(-14, 14, 12),
    "Rotate": torch.linspace(-135, 135, 12),
}


@pytest.mark.parametrize("op", P.OPS)
@pytest.mark.parametrize("shape", [(3, 20, 24), (1, 20, 24), (3, 16, 16)], ids=str)
def test_each_policy_operation_equals_torchvision_image_by_image(op, shape):
    x = torch.randint(
        0, 256, (12, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    m = MAGNITUDES.get(op, torch.linspace(-0.95, 0.95, 12))
    ops = torch.full((12,), P.OP_ID[op])
    out = P.apply_ops(x, ops, m)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    ref = torch.stack([_reference(op, x[i], float(m[i])) for i in range(12)])
    diff = (out.int() - ref.int()).abs()
    # colour blends may round one level apart where torchvision fuses a multiply-add
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.005, (op, diff.max())
    if op in P.GEOMETRIC or op not in ("Color", "Sharpness"):
        assert torch.equal(out, ref), op


def test_mixed_operations_in_one_batch_each_match_their_own():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (60, 3, 24, 24), dtype=torch.uint8, generator=g)
    ops = torch.arange(60) % len(P.OPS)
    m = torch.rand(60, generator=g) * 0.9
    m = torch.where(ops == P.OP_ID["Posterize"], (m * 8).round(), m)
    m = torch.where(ops == P.OP_ID["Rotate"], m * 100, m)
    out = P.apply_ops(x, ops, m)
    for i in range(60):
        ref = _reference(P.OPS[ops[i]], x[i], float(m[i]))
        assert (out[i].int() - ref.int()).abs().max() <= 1, P.OPS[ops[i]]


@pytest.mark.parametrize("policy", [p for p in P.POLICIES if p != "none"])
def test_each_policy_varies_per_image_and_keeps_dtype_and_shape(policy):
    one = torch.randint(
        0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )
    x = one.expand(64, -1, -1, -1).contiguous()  # the same image 64 times
    out = P.apply_policy(x, policy, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    distinct = {bytes(o.flatten().tolist()) for o in out}
    assert len(distinct) >= 10, f"{policy}: only {len(distinct)} distinct results of 64"
    again = P.apply_policy(x, policy, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded
    grey = P.apply_policy(x[:, :1].contiguous(), policy, torch.Generator().manual_seed(0))
    assert grey.shape == (64, 1, 32, 32) and grey.dtype == torch.uint8
    with pytest.raises(TypeError, match="uint8"):
        P.apply_policy(x.float(), policy, torch.Generator())


def test_randaugment_draws_every_operation_and_both_signs():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4000, 1, 4, 4), dtype=torch.uint8)
    choices = torch.tensor([P.OP_ID[o] for o in P.OPS if o != "Invert"])
    ops = choices[torch.randint(len(choices), (4000,), generator=g)]
    assert set(ops.tolist()) == set(choices.tolist())
    signed = P._signed(torch.ones(4000), ops, g)
    rotate = signed[ops == P.OP_ID["Rotate"]]
    assert 0.4 < (rotate < 0).float().mean() < 0.6
    assert (signed[ops == P.OP_ID["Posterize"]] > 0).all()  # unsigned operations keep theirs
    assert P.rand_augment(x, g, num_ops=0).equal(x)


def test_random_erasing_boxes_fit_and_follow_the_probability():
    g = torch.Generator().manual_seed(0)
    top, left, h, w = P.sample_erasing(5000, (32, 40), g, torch.device("cpu"))
    drawn = h > 0
    assert drawn.float().mean() > 0.95
    assert ((top + h) <= 32).all() and ((left + w) <= 40).all() and (top >= 0).all()
    area = (h * w)[drawn].float() / (32 * 40)
    assert area.min() >= 0.015 and area.max() <= 0.34
    x = torch.ones(2000, 3, 16, 16)
    out = P.random_erasing(x, 0.5, g)
    erased = (out == 0).flatten(1).any(1).float().mean()
    assert 0.43 < erased < 0.57
    assert out.dtype == x.dtype and out.shape == x.shape


def test_loader_applies_policy_on_uint8_and_erasing_after_normalising():
    from runner.data.base import DataBundle, Split
    from runner.data.loader import BatchLoader, LoaderOptions

    x = torch.full((64, 3, 16, 16), 128, dtype=torch.uint8)
    x[:, :, :8] = 30
    y = torch.arange(64) % 4
    conf = augment(policy="trivialaugment", policy_ops=2, policy_magnitude=9, random_erasing=1.0)
    assert A.is_enabled(conf) and not A.is_enabled(augment(policy="none", policy_ops=2))
    small = Split(x[:4], y[:4])
    data = DataBundle("t", list("abcd"), Split(x, y), small, small, mean=(0.5,) * 3,
                      std=(0.25,) * 3, augment=conf)  # fmt: skip
    loader = BatchLoader(data.train, data, LoaderOptions(32, train=True, seed=0))
    batch, _ = next(iter(loader.epoch(1)))
    assert batch.dtype == torch.float32 and batch.shape == (32, 3, 16, 16)
    assert (batch == 0).flatten(1).any(1).all()  # every image has an erased (mean) box
    assert len({bytes(b.flatten().numpy().tobytes()) for b in batch}) > 16
