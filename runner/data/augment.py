"""Batched training augmentation on the training device.

Every function takes a float batch ``(B, C, H, W)`` of pixel values in [0, 1]
and a ``torch.Generator`` on the batch's device, and draws its random
parameters per sample: one call augments a whole batch with a few tensor ops
and no per-image Python work, on CPU or GPU alike. Each random function has a
deterministic twin (``*_with``) that takes the parameters explicitly; the tests
check those against ``torchvision.transforms.v2.functional`` image by image.

:func:`apply` runs the switches of ``dataset.augment`` (:data:`KEYS`) in this order:

1. ``random_resized_crop`` (area 35–100 %, aspect 3/4–4/3, back to H × W) and
   ``rotation`` (uniform in ±degrees) — one bilinear ``grid_sample`` through the
   composed affine map, so the image is resampled once; the corners a rotation
   uncovers are 0;
2. ``crop_padding`` or ``translate`` and ``hflip`` or ``alternating_flip`` — one ``gather``
   (zero padding, or reflect padding for ``translate``: airbench's per-image translation;
   exact pixels). ``alternating_flip`` (airbench): each image is mirrored at random in the
   first epoch and the opposite way in each later one, so every image is seen both ways in
   any two consecutive epochs; the loader gives the mask (:func:`alternating_flips`);
3. ``color_jitter`` — brightness, contrast, saturation factors, each drawn per
   sample from ``[max(0, 1 - s), 1 + s]`` and applied in that fixed order
   (torchvision's ColorJitter shuffles the order per call);
4. ``cutout`` — one ``cutout`` × ``cutout`` square per image set to 0, centred
   anywhere in the image and clipped at its border (DeVries & Taylor 2017).
   The loader normalises after augmenting, so 0 is black, not the mean.

Two more steps sit around these (:mod:`runner.data.policy`): before them, on the uint8
batch, ``policy`` — RandAugment (``policy_ops`` operations at bin ``policy_magnitude`` of
31), TrivialAugmentWide or AutoAugment, an operation drawn per image
(:func:`apply_policy`); after normalisation, ``random_erasing`` — RandomErasing with that
probability per image, value 0 = the mean colour (:func:`apply_erasing`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING, DictConfig, OmegaConf

# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)

# ------------------------------------------------------------------ crop and flip


def crop_flip_with(
    x: torch.Tensor,
    padding: int,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flip: torch.Tensor,
    reflect: bool = False,
) -> torch.Tensor:
    """Crop ``(H, W)`` at offsets ``(dy, dx)`` of the padded batch, then mirror where ``flip``.

    ``dy``/``dx``: int64 ``(B,)`` in ``[0, 2 * padding]``; ``flip``: bool ``(B,)``; padding
    with zeros, or mirrored edge pixels with ``reflect`` (``padding`` < H and W). Equals
    ``hflip(crop(pad(img, padding), dy, dx, H, W))`` per image, done as one gather.
    """
    b, c, h, w = x.shape
    if padding > 0 and reflect:
        padded = F.pad(x.float(), (padding,) * 4, mode="reflect").to(x.dtype)
    else:
        padded = F.pad(x, (padding,) * 4) if padding > 0 else x
    width = w + 2 * padding
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]
    rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]
    index = (rows[:, :, None] * width + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


def random_crop_flip(
    x: torch.Tensor,
    padding: int,
    flip_p: float,
    g: torch.Generator,
    flip: torch.Tensor | None = None,
    reflect: bool = False,
) -> torch.Tensor:
    """RandomCrop(size=(H, W), padding=padding) then RandomHorizontalFlip(flip_p), per sample;
    ``flip`` (bool ``(B,)``) mirrors exactly those images instead of drawing; ``reflect``
    pads with mirrored pixels instead of zeros (a random translation)."""
    b = x.shape[0]
    zeros = torch.zeros(b, dtype=torch.long, device=x.device)
    dy, dx = zeros, zeros
    if padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=g)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=g)
    if flip is None:
        flip = torch.zeros(b, dtype=torch.bool, device=x.device)
        if flip_p > 0:
            flip = torch.rand(b, device=x.device, generator=g) < flip_p
    return crop_flip_with(x, padding, dy, dx, flip.to(x.device), reflect)


def alternating_flips(base: torch.Tensor, epoch: int) -> torch.Tensor:
    """airbench's alternating flip: ``base`` (bool, one random draw per image for the run)
    in odd epochs (the runner counts from 1), its negation in even ones."""
    return base if epoch % 2 == 1 else ~base


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """RandomCrop(size=(H, W), padding=padding) with zero padding, per-sample offsets."""
    return x if padding <= 0 else random_crop_flip(x, padding, 0.0, g)


def random_hflip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """RandomHorizontalFlip(p) per sample."""
    return random_crop_flip(x, 0, p, g)


# ------------------------------------------------------------------ affine: resized crop, rotation


def affine_with(x: torch.Tensor, matrix: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Resample each image through ``matrix`` ``(B, 2, 3)`` (output → input, pixel units).

    ``matrix`` maps output pixel coordinates (x right, y down, origin at the top-left
    pixel's centre) to input pixel coordinates; bilinear. ``padding_mode``: zeros
    (0 outside the input, as torchvision's rotate) | border (edge pixels repeated, as
    torchvision's resized_crop clamps) | reflection.
    """
    b, c, h, w = x.shape
    # normalised (align_corners=False) <-> pixel: p = (n + 1) * size / 2 - 0.5; float32
    # throughout, whatever the batch's dtype
    kw = {"device": x.device, "dtype": torch.float32}
    to_pix = torch.tensor([[w / 2, 0, (w - 1) / 2], [0, h / 2, (h - 1) / 2], [0, 0, 1]], **kw)
    to_norm = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], **kw)
    full = torch.cat([matrix.to(**kw), torch.tensor([0, 0, 1], **kw).expand(b, 1, 3)], dim=1)
    theta = (to_norm @ full @ to_pix)[:, :2]
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def resized_crop_matrix(
    top: torch.Tensor, left: torch.Tensor, height: torch.Tensor, width: torch.Tensor, size: tuple
) -> torch.Tensor:
    """Output → input map of ``resized_crop(img, top, left, height, width, size)`` ``(B, 2, 3)``."""
    out_h, out_w = size
    sx, sy = width / out_w, height / out_h
    zero = torch.zeros_like(sx)
    row0 = torch.stack([sx, zero, left + 0.5 * sx - 0.5], dim=1)
    row1 = torch.stack([zero, sy, top + 0.5 * sy - 0.5], dim=1)
    return torch.stack([row0, row1], dim=1)


def rotation_matrix(angle: torch.Tensor, size: tuple) -> torch.Tensor:
    """Output → input map of a counter-clockwise rotation by ``angle`` degrees about the centre."""
    h, w = size
    a = torch.deg2rad(angle)
    cos, sin = torch.cos(a), torch.sin(a)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # input = R(-a) (output - centre) + centre, with y pointing down
    row0 = torch.stack([cos, -sin, cx - cos * cx + sin * cy], dim=1)
    row1 = torch.stack([sin, cos, cy - sin * cx - cos * cy], dim=1)
    return torch.stack([row0, row1], dim=1)


def _compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """``outer ∘ inner`` of two ``(B, 2, 3)`` affine maps (inner applied first)."""
    last = inner.new_tensor([0, 0, 1]).expand(inner.shape[0], 1, 3)
    return (torch.cat([outer, last], 1) @ torch.cat([inner, last], 1))[:, :2]


def sample_resized_crop(
    n: int,
    size: tuple,
    g: torch.Generator,
    device: torch.device,
    scale: tuple = (0.35, 1.0),
    ratio: tuple = (3 / 4, 4 / 3),
    tries: int = 10,
) -> tuple[torch.Tensor, ...]:
    """Boxes ``(top, left, height, width)`` as RandomResizedCrop draws them, per sample.

    Area a uniform share of ``scale`` of the image, aspect log-uniform in ``ratio``;
    the first of ``tries`` candidates that fits is kept, else the whole image.
    """
    h, w = size
    area = h * w * torch.empty(n, tries, device=device).uniform_(*scale, generator=g)
    log_r = torch.empty(n, tries, device=device).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=g
    )
    cw, ch = (area * log_r.exp()).sqrt(), (area / log_r.exp()).sqrt()
    fits = (cw <= w) & (ch <= h)
    first = fits.float().argmax(1, keepdim=True)  # first fitting candidate (0 if none)
    ok = fits.any(1)
    width = torch.where(ok, cw.gather(1, first)[:, 0], torch.full_like(ok, w, dtype=cw.dtype))
    height = torch.where(ok, ch.gather(1, first)[:, 0], torch.full_like(ok, h, dtype=ch.dtype))
    top = torch.rand(n, device=device, generator=g) * (h - height)
    left = torch.rand(n, device=device, generator=g) * (w - width)
    return top, left, height, width


def random_affine(
    x: torch.Tensor, g: torch.Generator, resized_crop: bool, degrees: float
) -> torch.Tensor:
    """RandomResizedCrop (scale 0.35–1, back to H × W) then rotation by U(-degrees, degrees)."""
    b, _, h, w = x.shape
    matrix = torch.eye(2, 3, device=x.device).expand(b, 2, 3)
    if resized_crop:
        matrix = resized_crop_matrix(*sample_resized_crop(b, (h, w), g, x.device), (h, w))
    if degrees:
        angle = (torch.rand(b, device=x.device, generator=g) * 2 - 1) * degrees
        matrix = _compose(matrix, rotation_matrix(angle, (h, w)))
    # a resized crop alone never leaves the image: repeat edges instead of blending in
    # zeros half a pixel outside it; a rotation fills its corners with 0
    return affine_with(x, matrix, "zeros" if degrees else "border")


# ------------------------------------------------------------------ colour and cutout


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    r, g_, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g_ + _LUMA[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def color_jitter_with(
    x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor
) -> torch.Tensor:
    """adjust_brightness, adjust_contrast, adjust_saturation with per-sample factors ``(B,)``.

    Same formulas as torchvision (contrast blends with the image's mean grey level;
    saturation with its grey version; grey images skip saturation).
    """
    x = _blend(x, torch.zeros_like(x), brightness)
    x = _blend(x, _grey(x).mean(dim=(1, 2, 3), keepdim=True), contrast)
    if x.shape[1] == 3:
        x = _blend(x, _grey(x), saturation)
    return x


def random_color_jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """ColorJitter(brightness=s, contrast=s, saturation=s) with per-sample factors."""
    lo, hi = max(0.0, 1 - strength), 1 + strength
    factors = torch.empty(3, x.shape[0], device=x.device).uniform_(lo, hi, generator=g)
    return color_jitter_with(x, *factors.to(x.dtype))


def cutout_with(x: torch.Tensor, size: int, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
    """Zero a ``size`` × ``size`` square centred at ``(cy, cx)`` (int64 ``(B,)``), clipped."""
    _, _, h, w = x.shape
    top, left = (cy - size // 2)[:, None], (cx - size // 2)[:, None]
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top) & (rows < top + size)
    in_cols = (cols >= left) & (cols < left + size)
    mask = in_rows[:, :, None] & in_cols[:, None, :]
    return x.masked_fill(mask[:, None], 0.0)


def random_cutout(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Cutout: one zeroed ``size`` × ``size`` square per image, centre uniform over the image."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), device=x.device, generator=g)
    cx = torch.randint(0, w, (b,), device=x.device, generator=g)
    return cutout_with(x, size, cy, cx)


# ------------------------------------------------------------------ config

# The switches :func:`apply` knows (``dataset.augment`` in the config; the schema is
# ``runner.schema.dataset.AugmentConf``).
KEYS = (
    "crop_padding", "hflip", "random_resized_crop", "rotation", "color_jitter", "cutout",
    "policy", "policy_ops", "policy_magnitude", "random_erasing", "translate",
    "alternating_flip",
)  # fmt: skip
# Settings of a switch rather than switches: they turn nothing on by themselves.
PARAMETERS = ("policy_ops", "policy_magnitude")


def settings(augment: Any) -> dict[str, Any]:
    """The switches of ``augment`` that are set: an ``AugmentConf``, a DictConfig, a dict or
    None (all off).

    A key that is absent, None or MISSING (``???``, a schema field given no value) is
    off; a key :func:`apply` does not know is a ``ValueError``.
    """
    if augment is None:
        return {}
    if dataclasses.is_dataclass(augment) and not isinstance(augment, type):
        raw = {f.name: getattr(augment, f.name) for f in dataclasses.fields(augment)}
    elif isinstance(augment, DictConfig):
        raw = OmegaConf.to_container(augment, resolve=True)
    elif isinstance(augment, Mapping):
        raw = dict(augment)
    else:
        raise TypeError(f"augment must be an AugmentConf, a DictConfig or a dict, not {augment!r}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown augmentation keys {unknown}; valid: {', '.join(KEYS)}")
    return {k: v for k, v in raw.items() if v is not None and v != MISSING}


def apply(
    x: torch.Tensor, augment: Any, g: torch.Generator, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Apply the enabled augmentations of ``augment`` to a [0, 1] float batch.

    ``augment`` may be an ``AugmentConf``, a DictConfig or a dict with some of
    :data:`KEYS` (see :func:`settings`); ``None`` returns ``x`` unchanged. Order: see the
    module docstring. ``flip``: with ``alternating_flip``, the images to mirror (bool
    ``(B,)``, :func:`alternating_flips`); without it every image is mirrored or not at random.
    """
    s = settings(augment)
    if not s:
        return x
    if s.get("random_resized_crop") or s.get("rotation"):
        x = random_affine(x, g, bool(s.get("random_resized_crop")), float(s.get("rotation") or 0))
    translate = int(s.get("translate") or 0)
    padding = translate or int(s.get("crop_padding") or 0)
    alternating = bool(s.get("alternating_flip"))
    if padding or s.get("hflip") or alternating:
        flip_p = 0.5 if s.get("hflip") or alternating else 0.0
        mask = flip if alternating else None
        x = random_crop_flip(x, padding, flip_p, g, mask, reflect=bool(translate))
    if s.get("color_jitter"):
        x = random_color_jitter(x, float(s["color_jitter"]), g)
    if s.get("cutout"):
        x = random_cutout(x, int(s["cutout"]), g)
    return x


def is_enabled(augment: Any) -> bool:
    """Whether any augmentation is switched on (``policy: none`` is off)."""
    return any(bool(v) and v != "none" for k, v in settings(augment).items() if k not in PARAMETERS)


def apply_policy(x: torch.Tensor, augment: Any, g: torch.Generator) -> torch.Tensor:
    """``augment.policy`` on a uint8 batch (unchanged when it is none or unset)."""
    s = settings(augment)
    policy = str(s.get("policy") or "none")
    if policy == "none":
        return x
    from runner.data.policy import apply_policy as run

    return run(x, policy, g, int(s.get("policy_ops", 2)), int(s.get("policy_magnitude", 9)))


def apply_erasing(x: torch.Tensor, augment: Any, g: torch.Generator) -> torch.Tensor:
    """``augment.random_erasing`` (a probability per image) on the normalised batch."""
    p = float(settings(augment).get("random_erasing") or 0.0)
    if p <= 0:
        return x
    from runner.data.policy import random_erasing

    return random_erasing(x, p, g)
