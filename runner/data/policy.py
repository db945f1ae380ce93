"""Policy augmentations — RandAugment, TrivialAugmentWide, AutoAugment — and random erasing,
random per image and done in batches on the training device.

torchvision's ``transforms.v2`` policies draw one operation and one magnitude per *call*:
given a batch they apply the same operation to every image, so per-image randomness
there means one call per image (``benchmarks/bench_data.py`` measures that path). Here
each image draws its own operation, magnitude and sign; the batch is then processed one
operation at a time, on the images that drew it, with a per-image magnitude tensor:

- the parameter-free operations are torchvision's own batched kernels
  (``autocontrast``, ``equalize``, ``invert``);
- brightness, colour (saturation), contrast, sharpness, posterize and solarize repeat
  torchvision's formulas with a magnitude per image (its kernels take one number);
- shear, translate and rotate compose each image's inverse affine map as torchvision's
  ``affine``/``rotate`` do (same centre conventions, nearest neighbour, fill 0) and
  resample the whole group with one ``grid_sample``.

Inputs are uint8 ``(B, C, H, W)`` with C = 1 or 3; outputs keep dtype and shape.
``tests/test_augment.py`` checks every operation image by image against
``torchvision.transforms.v2.functional``.

Random erasing (:func:`random_erasing`) works on the normalised float batch, as
torchvision's ``RandomErasing`` does after ``Normalize`` (value 0 = the mean colour).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torchvision.transforms.v2 as T2
from torchvision.transforms.v2 import functional as TF

POLICIES = ("none", "randaugment", "trivialaugment", "autoaugment_imagenet",
            "autoaugment_cifar10", "autoaugment_svhn")  # fmt: skip

# Operation names in torchvision's spelling; index = operation id.
OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
       "Invert")  # fmt: skip
OP_ID = {name: i for i, name in enumerate(OPS)}
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
          "Contrast", "Sharpness"}  # fmt: skip
_LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, as torchvision's rgb_to_grayscale


def magnitudes(space: str, bins: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """Magnitude of each bin per operation, from torchvision's own tables
    (``_AUGMENTATION_SPACE`` of ``RandAugment`` — also AutoAugment's, with 10 bins — or of
    ``TrivialAugmentWide``); operations without a magnitude are left out."""
    source = T2.TrivialAugmentWide if space == "trivialaugment" else T2.RandAugment
    table = {}
    for op, (make, _signed) in source._AUGMENTATION_SPACE.items():
        values = make(bins, height, width)
        if values is not None:
            table[op] = values.float()
    return table


def autoaugment_policy(name: str) -> list[tuple[tuple[str, float, int | None], ...]]:
    """AutoAugment's learned sub-policies for ``name`` (imagenet | cifar10 | svhn), as
    torchvision lists them: pairs of (operation, probability, magnitude bin of 10)."""
    return T2.AutoAugment(T2.AutoAugmentPolicy(name))._policies


# ------------------------------------------------------------------ colour operations


def _factor(m: torch.Tensor) -> torch.Tensor:
    return (1.0 + m).view(-1, 1, 1, 1)


def _blend(x: torch.Tensor, other: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` at ratio ``1 + m`` per image (its ``1 - ratio`` is exactly
    ``-m``): float in, uint8 out (clamped, truncated)."""
    return (x * _factor(m) + other * (-m).view(-1, 1, 1, 1)).clamp_(0, 255).to(torch.uint8)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Float grey level, floored as torchvision does for uint8 images."""
    r, g, b = x.unbind(1)
    return (r.mul(_LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2])).unsqueeze(1).floor_()


def brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``adjust_brightness(img, 1 + m)`` per image."""
    return (x * _factor(m)).clamp_(0, 255).to(torch.uint8)


def color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``adjust_saturation(img, 1 + m)`` per image (grey images unchanged)."""
    if x.shape[1] != 3:
        return x
    return _blend(x.float(), _grey(x.float()), m)


def contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``adjust_contrast(img, 1 + m)`` per image: blend with the mean grey level."""
    xf = x.float()
    grey = _grey(xf) if x.shape[1] == 3 else xf
    return _blend(xf, grey.mean(dim=(1, 2, 3), keepdim=True), m)


def sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``adjust_sharpness(img, 1 + m)`` per image: blend the interior with torchvision's
    3x3 smoothing (1 around, 5 in the middle, / 13). The smoothing is summed from shifted
    slices: integer sums / 13 never fall on a rounding tie, so it rounds as the kernel's
    convolution does, without a (slow, tiny) depthwise convolution."""
    _, _, h, w = x.shape
    if h <= 2 or w <= 2:
        return x
    out = x.float()
    rows = out[..., :, :-2] + out[..., :, 1:-1] + out[..., :, 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    view = out[..., 1:-1, 1:-1]
    blurred = box.add_(view, alpha=4.0).div_(13.0).round_()
    view.add_((blurred - view) * (-m).view(-1, 1, 1, 1))
    return out.clamp_(0, 255).to(torch.uint8)


def posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``posterize(img, bits=int(m))`` per image: keep the top ``bits`` bits."""
    bits = m.to(torch.int64).clamp(0, 8)
    mask = ((255 << (8 - bits)) & 255).to(torch.uint8)
    return x & mask.view(-1, 1, 1, 1)


def solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``solarize(img, threshold=255 * m)`` per image: invert the pixels at or above it."""
    # torchvision computes 255 * float(m) in float64, then compares in float32
    threshold = (255.0 * m.double()).float().view(-1, 1, 1, 1)
    return torch.where(x >= threshold, x.bitwise_not(), x)


# ------------------------------------------------------------------ geometric operations


GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BLENDS = ("Brightness", "Color", "Contrast")


def inverse_affine(ops: torch.Tensor, m: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Each image's inverse map ``(B, 2, 3)`` for its geometric operation ``ops[i]`` (an
    index of :data:`OPS`), in torchvision's centred pixel coordinates, as
    ``_get_inverse_affine_matrix`` builds it (float64):

    - ShearX/ShearY: ``affine(shear=atan(m) in degrees, center=[0, 0])`` (the top-left
      corner stays); TranslateX/Y: ``affine(translate=int(m))`` (whole pixels,
      truncated); Rotate: ``rotate(m)``, i.e. an affine map by ``-m`` degrees.
    """
    m = m.double()
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    r = torch.deg2rad(-m)
    shift = -m.trunc()
    by_op = {
        "ShearX": [one, m, m * height / 2, zero, one, zero],
        "ShearY": [one, zero, zero, m, one, m * width / 2],
        "TranslateX": [one, zero, shift, zero, one, zero],
        "TranslateY": [one, zero, zero, zero, one, shift],
        "Rotate": [r.cos(), r.sin(), zero, -r.sin(), r.cos(), zero],
    }
    table = torch.stack([torch.stack(by_op[op], dim=1) for op in GEOMETRIC])  # (5, B, 6)
    slot = (ops - OP_ID[GEOMETRIC[0]]).clamp(0, len(GEOMETRIC) - 1)
    out = table.gather(0, slot.view(1, -1, 1).expand(1, -1, 6))[0]
    return out.view(-1, 2, 3)


def warp(x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Resample each uint8 image through its ``inverse`` map ``(B, 2, 3)``: nearest
    neighbour (round half to even, as ``grid_sample``), 0 outside — torchvision's
    ``affine``/``rotate`` with ``interpolation=NEAREST, fill=None``, done as one gather."""
    b, c, h, w = x.shape
    dev = x.device
    cols = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=dev).view(1, 1, w)
    rows = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=dev).view(1, h, 1)
    # the normalised grid torchvision's _affine_grid makes, then grid_sample's
    # unnormalisation (align_corners=False), in the same float32 steps: ties round alike
    t = inverse.to(device=dev, dtype=torch.float32)
    t = (t / torch.tensor([0.5 * w, 0.5 * h], device=dev).view(1, 2, 1)).view(b, 6, 1, 1).unbind(1)
    gx = cols * t[0] + rows * t[1] + t[2]
    gy = cols * t[3] + rows * t[4] + t[5]
    sx = gx.add_(1).mul_(w).sub_(1).div_(2).round_()
    sy = gy.add_(1).mul_(h).sub_(1).div_(2).round_()
    inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    index = (sy.clamp_(0, h - 1) * w + sx.clamp_(0, w - 1)).long().view(b, 1, h * w)
    out = x.reshape(b, c, h * w).gather(2, index.expand(b, c, h * w)).view(b, c, h, w)
    return out * inside[:, None]


def geometric(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Shear, translate or rotate each image by its own operation and magnitude."""
    return warp(x, inverse_affine(ops, m, x.shape[2], x.shape[3]))


def blend(x: torch.Tensor, ops: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Brightness, Color or Contrast per image: one blend with 0, the grey image or its
    mean grey level (grey images keep their colour under Color)."""
    xf = x.float()
    if x.shape[1] == 3:
        grey = _grey(xf)
        other = torch.where((ops == OP_ID["Color"]).view(-1, 1, 1, 1), grey, 0.0)
    else:
        grey, other = xf, torch.zeros_like(xf)
        m = torch.where(ops == OP_ID["Color"], 0.0, m)  # saturation leaves grey images as is
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    other = torch.where((ops == OP_ID["Contrast"]).view(-1, 1, 1, 1), mean, other)
    return _blend(xf, other, m)


KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Identity": lambda x, m: x,
    "Brightness": brightness,
    "Color": color,
    "Contrast": contrast,
    "Sharpness": sharpness,
    "Posterize": posterize,
    "Solarize": solarize,
    # parameter-free: torchvision's kernels already work per image on a batch
    "AutoContrast": lambda x, m: TF.autocontrast(x),
    "Equalize": lambda x, m: TF.equalize(x),
    "Invert": lambda x, m: TF.invert(x),
}
for _op in GEOMETRIC:
    KERNELS[_op] = lambda x, m, _id=OP_ID[_op]: geometric(x, torch.full_like(m, _id).long(), m)


_GROUP = torch.tensor([1 if op in GEOMETRIC else 2 if op in BLENDS else 0 for op in OPS])


def apply_ops(x: torch.Tensor, ops: torch.Tensor, mags: torch.Tensor) -> torch.Tensor:
    """Apply operation ``ops[i]`` (an index of :data:`OPS`; -1 = none) with magnitude
    ``mags[i]`` to image ``i``.

    The batch is sorted by operation once, so each operation (all geometric ones
    together: one gather; all blends together) runs on a contiguous slice, and the
    result is put back in the original order once.
    """
    group = _GROUP.to(ops.device)[ops.clamp(min=0)]
    # geometric and blend operations share a key each; the others key by operation
    key = torch.where(ops < 0, -1, torch.where(group > 0, 100 + group, ops))
    order = torch.argsort(key, stable=True)
    keys, counts = torch.unique_consecutive(key[order], return_counts=True)
    xs, opss, magss = x[order], ops[order], mags[order]
    out = xs.clone()
    start = 0
    for k, n in zip(keys.tolist(), counts.tolist()):
        part = slice(start, start + n)
        start += n
        if k < 0 or k == OP_ID["Identity"]:
            continue
        if k == 101:
            out[part] = geometric(xs[part], opss[part], magss[part])
        elif k == 102:
            out[part] = blend(xs[part], opss[part], magss[part])
        else:
            out[part] = KERNELS[OPS[k]](xs[part], magss[part])
    result = torch.empty_like(out)
    result[order] = out
    return result


# ------------------------------------------------------------------ policies


_SIGNED_MASK = torch.tensor([op in SIGNED for op in OPS])


def _signed(mags: torch.Tensor, ops: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    signed = _SIGNED_MASK.to(ops.device)[ops.clamp(min=0)]
    flip = torch.rand(len(ops), device=ops.device, generator=g) <= 0.5
    return torch.where(signed & flip, -mags, mags)


@functools.lru_cache(maxsize=32)
def _table(space: str, bins: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """(operations, bins) magnitudes; 0 for operations without one (cached per shape)."""
    found = magnitudes(space, bins, h, w)
    rows = [found.get(op, torch.zeros(bins)) for op in OPS]
    return torch.stack(rows).to(device)


def rand_augment(
    x: torch.Tensor, g: torch.Generator, num_ops: int = 2, magnitude: int = 9, bins: int = 31
) -> torch.Tensor:
    """RandAugment(num_ops, magnitude, num_magnitude_bins=bins): ``num_ops`` operations
    per image, each drawn uniformly from the 14 (Identity included), at bin ``magnitude``
    with a random sign."""
    b, _, h, w = x.shape
    table = _table("randaugment", bins, h, w, x.device)
    choices = torch.tensor([OP_ID[op] for op in OPS if op != "Invert"], device=x.device)
    for _ in range(num_ops):
        ops = choices[torch.randint(len(choices), (b,), device=x.device, generator=g)]
        x = apply_ops(x, ops, _signed(table[ops, magnitude], ops, g))
    return x


def trivial_augment(x: torch.Tensor, g: torch.Generator, bins: int = 31) -> torch.Tensor:
    """TrivialAugmentWide: one operation per image, uniform over the 14, at a uniform bin."""
    b, _, h, w = x.shape
    table = _table("trivialaugment", bins, h, w, x.device)
    choices = torch.tensor([OP_ID[op] for op in OPS if op != "Invert"], device=x.device)
    ops = choices[torch.randint(len(choices), (b,), device=x.device, generator=g)]
    level = torch.randint(bins, (b,), device=x.device, generator=g)
    return apply_ops(x, ops, _signed(table[ops, level], ops, g))


def auto_augment(x: torch.Tensor, g: torch.Generator, policy: str = "imagenet") -> torch.Tensor:
    """AutoAugment (``imagenet`` | ``cifar10`` | ``svhn`` policy): a sub-policy per image,
    each of its two operations applied with its probability at its bin of 10."""
    b, _, h, w = x.shape
    table = _table("randaugment", 10, h, w, x.device)
    subs = autoaugment_policy(policy)
    pick = torch.randint(len(subs), (b,), device=x.device, generator=g)
    for slot in range(2):
        entries = [sub[slot] for sub in subs]
        op_of = torch.tensor([OP_ID[e[0]] for e in entries], device=x.device)
        prob_of = torch.tensor([e[1] for e in entries], device=x.device)
        bin_of = torch.tensor([e[2] or 0 for e in entries], device=x.device)
        ops = op_of[pick]
        # torchvision: skip unless rand <= p (so p = 0 never applies)
        applied = torch.rand(b, device=x.device, generator=g) <= prob_of[pick]
        mags = _signed(table[ops, bin_of[pick]], ops, g)
        x = apply_ops(x, torch.where(applied, ops, torch.full_like(ops, -1)), mags)
    return x


def apply_policy(
    x: torch.Tensor, policy: str, g: torch.Generator, num_ops: int = 2, magnitude: int = 9
) -> torch.Tensor:
    """The policy of ``dataset.augment.policy`` (:data:`POLICIES`) on a uint8 batch."""
    if policy in (None, "none"):
        return x
    if x.dtype != torch.uint8:
        raise TypeError(f"policy augmentations take uint8 images, not {x.dtype}")
    if policy == "randaugment":
        return rand_augment(x, g, num_ops, magnitude)
    if policy == "trivialaugment":
        return trivial_augment(x, g)
    if policy.startswith("autoaugment_"):
        return auto_augment(x, g, policy[len("autoaugment_") :])
    raise ValueError(f"unknown augmentation policy {policy!r}; valid: {', '.join(POLICIES)}")


# ------------------------------------------------------------------ random erasing


def sample_erasing(
    n: int,
    size: tuple[int, int],
    g: torch.Generator,
    device: torch.device,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    tries: int = 10,
) -> tuple[torch.Tensor, ...]:
    """Boxes ``(top, left, height, width)`` (int64; height 0 = none fits) as RandomErasing
    draws them: area a uniform share of ``scale``, aspect log-uniform in ``ratio``, the
    first of ``tries`` candidates strictly inside the image."""
    h, w = size
    area = h * w * torch.empty(n, tries, device=device).uniform_(*scale, generator=g)
    log_r = torch.empty(n, tries, device=device).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=g
    )
    eh = (area * log_r.exp()).sqrt().round().long()
    ew = (area / log_r.exp()).sqrt().round().long()
    fits = (eh < h) & (ew < w)
    first = fits.float().argmax(1, keepdim=True)
    ok = fits.any(1)
    eh = torch.where(ok, eh.gather(1, first)[:, 0], 0)
    ew = torch.where(ok, ew.gather(1, first)[:, 0], 0)
    top = (torch.rand(n, device=device, generator=g) * (h - eh + 1)).long()
    left = (torch.rand(n, device=device, generator=g) * (w - ew + 1)).long()
    return top, left, eh, ew


def erase_with(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: torch.Tensor,
    width: torch.Tensor, value: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """Set each image's box ``[top, top + height) x [left, left + width)`` to ``value``."""
    _, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])
    return x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], value)


def random_erasing(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0) per image."""
    b, _, h, w = x.shape
    top, left, eh, ew = sample_erasing(b, (h, w), g, x.device)
    chosen = torch.rand(b, device=x.device, generator=g) < p
    return erase_with(x, top, left, torch.where(chosen, eh, 0), ew)
