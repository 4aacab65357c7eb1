"""Crop-and-resize geometry shared by the per-image (CPU) and batched (device) transforms.

torch's antialiased resize is separable and linear: resizing an image along its height is a matrix product with a
(out, in) weight matrix, and a 2-D resize is `W_h @ x @ W_w.T`. We read those matrices off torch itself (by resizing
an identity matrix), so a batch of images, each with its own crop box, resizes with two batched matmuls and gives
what `torchvision.transforms.v2.functional.resized_crop(..., antialias=True)` gives image by image, within float
rounding.
"""

import functools
import math

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

# The interpolations the transforms offer, by timm's (and torchvision's) names.
TORCHVISION_INTERPOLATION = {
    mode.value: mode for mode in (InterpolationMode.NEAREST, InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)
}
INTERPOLATIONS = tuple(TORCHVISION_INTERPOLATION)
# Up to this many pixels a side, one image resizes several times faster as two small matrix products than with
# torch's CPU resize kernel (same weights, same result within float rounding); above it, the kernel's few taps per
# pixel beat the dense matrices.
SMALL_SOURCE = 64


def resize_weights(in_size: int, out_size: int, interpolation: str) -> torch.Tensor:
    """The (out_size, in_size) weights of torch's 1-D resize, as torchvision applies it to tensors (antialiased
    bilinear / bicubic, plain nearest): resizing x along a dimension is `weights @ x`."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")
    eye = torch.eye(in_size).view(1, 1, in_size, in_size)  # each column is one input pixel
    if interpolation == "nearest":
        weights = F.interpolate(eye, size=(out_size, in_size), mode="nearest")
    else:
        weights = F.interpolate(eye, size=(out_size, in_size), mode=interpolation, antialias=True, align_corners=False)
    return weights[0, 0]  # (out_size, in_size)


# The per-image paths ask for the same few small matrices again and again. Shared: do not modify in place.
resize_matrix = functools.lru_cache(maxsize=1024)(resize_weights)


def eval_geometry(height: int, width: int, size: int, crop_pct: float) -> tuple[int, int, int, int]:
    """timm's eval transform: resize the shorter side to floor(size / crop_pct), then centre-crop size x size.
    Returns (resized_height, resized_width, crop_top, crop_left), with torchvision's rounding rules."""
    short = math.floor(size / crop_pct)
    if height <= width:
        resized = (short, int(short * width / height))
    else:
        resized = (int(short * height / width), short)
    top = int(round((resized[0] - size) / 2.0))
    left = int(round((resized[1] - size) / 2.0))
    return resized[0], resized[1], top, left


def eval_matrices(
    height: int, width: int, size: int, crop_pct: float, interpolation: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(size, height) and (size, width) weights of the eval transform: resize as `eval_geometry`, centre crop."""
    resized_h, resized_w, top, left = eval_geometry(height, width, size, crop_pct)
    rows = resize_matrix(height, resized_h, interpolation)[top : top + size]
    columns = resize_matrix(width, resized_w, interpolation)[left : left + size]
    return rows, columns


def resized_crop(image: torch.Tensor, size: int, interpolation: str) -> torch.Tensor:
    """One float image (C, h, w), already cropped -> (C, size, size), as torchvision's antialiased resize."""
    height, width = image.shape[-2:]
    if max(height, width) <= SMALL_SOURCE:
        rows, columns = resize_matrix(height, size, interpolation), resize_matrix(width, size, interpolation)
        return rows @ image @ columns.T
    return TF.resize(image, [size, size], interpolation=TORCHVISION_INTERPOLATION[interpolation], antialias=True)


def eval_resize(image: torch.Tensor, size: int, crop_pct: float, interpolation: str) -> torch.Tensor:
    """One float image (C, H, W) -> (C, size, size) by the eval transform (`eval_geometry`)."""
    height, width = image.shape[-2:]
    if max(height, width) <= SMALL_SOURCE:
        rows, columns = eval_matrices(height, width, size, crop_pct, interpolation)
        return rows @ image @ columns.T
    resized_h, resized_w, top, left = eval_geometry(height, width, size, crop_pct)
    mode = TORCHVISION_INTERPOLATION[interpolation]
    resized = TF.resize(image, [resized_h, resized_w], interpolation=mode, antialias=True)
    return resized[:, top : top + size, left : left + size]


def sample_crop_boxes(
    count: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """`count` boxes (top, left, box_height, box_width) drawn as torchvision's RandomResizedCrop draws one: up to ten
    tries of a random area fraction in `scale` and log-uniform aspect ratio in `ratio`, else a centre crop."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    target_area = torch.empty(count, 10, device=device).uniform_(*scale) * area  # (count, tries)
    aspect = torch.empty(count, 10, device=device).uniform_(*log_ratio).exp_()
    box_w = torch.round(torch.sqrt(target_area * aspect))
    box_h = torch.round(torch.sqrt(target_area / aspect))
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first try that fits (0 when none does)
    box_h = box_h.gather(1, first).squeeze(1)
    box_w = box_w.gather(1, first).squeeze(1)

    # torchvision's fallback when no try fits: the largest centred box whose aspect ratio is within `ratio`.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback = (round(width / min(ratio)), width)
    elif in_ratio > max(ratio):
        fallback = (height, round(height * max(ratio)))
    else:
        fallback = (height, width)
    found = fits.any(dim=1)
    box_h = torch.where(found, box_h, fallback[0])
    box_w = torch.where(found, box_w, fallback[1])
    # Uniform integer offsets, as torch.randint(0, height - box_h + 1) per box.
    top = torch.floor(torch.rand(count, device=device) * (height - box_h + 1))
    left = torch.floor(torch.rand(count, device=device) * (width - box_w + 1))
    top = torch.where(found, top, (height - fallback[0]) // 2)
    left = torch.where(found, left, (width - fallback[1]) // 2)
    return torch.stack([top, left, box_h, box_w], dim=1).long()  # (count, 4)


def crop_table(in_size: int, out_size: int, interpolation: str, device: torch.device | str) -> torch.Tensor:
    """(in_size, out_size, in_size) table: entry n - 1 resizes the first n input pixels to out_size, zero elsewhere."""
    table = torch.zeros(in_size, out_size, in_size)
    for length in range(1, in_size + 1):
        table[length - 1, :, :length] = resize_weights(length, out_size, interpolation)
    return table.to(device)


def crop_weights(table: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, out_size, in_size) matrices that crop [start, start + length) and resize it, one per box, from
    `crop_table`."""
    out_size, in_size = table.shape[1:]
    weights = table[lengths - 1]  # (B, out, in): the crop's matrix, placed at offset 0
    # Shift each matrix right by its start. Wrapping is harmless: columns from length on are zero, and
    # start + length <= in_size, so the wrapped columns land on zeros.
    columns = (torch.arange(in_size, device=table.device) - starts[:, None]) % in_size  # (B, in)
    return weights.gather(2, columns[:, None, :].expand(-1, out_size, -1))


def resample(images: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Apply separable weights: (B, C, H, W) images, rows (B, S, H) or (S, H), columns (B, S, W) or (S, W)
    -> (B, C, S, S)."""
    if rows.dim() == 3:  # one matrix per image: broadcast over channels
        rows, columns = rows.unsqueeze(1), columns.unsqueeze(1)
    resized = torch.matmul(images, columns.transpose(-1, -2))  # (B, C, H, S)
    return torch.matmul(rows, resized)  # (B, C, S, S)
