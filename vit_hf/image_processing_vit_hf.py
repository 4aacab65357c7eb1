"""ViTHFImageProcessor: timm's evaluation transform as a transformers image processor.

timm evaluates ViTs with torchvision on PIL images: resize (shorter side to size / crop_pct, or both sides in
"squash" mode), centre crop, scale to [0, 1], normalise. transformers' PIL-backend ViT processor does the same
resize bit for bit, but places the centre crop one pixel off when the margin is odd and its half rounds up
(torchvision rounds the offset, transformers floors it): a quarter of ordinary photographs (e.g. 640 x 427). This
class keeps transformers' processor and rounds the offset as torchvision does, so a converted checkpoint sees
exactly the pixels timm gives it. It is saved with the model and loads through `AutoImageProcessor`.
"""

import math

import numpy as np
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from .configuration_vit_hf import to_2tuple

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)  # used by the original ViT checkpoints
# timm's interpolation names -> the PIL filters timm's eval transform resizes with. The data transforms, which import
# nothing of vit_hf, name torchvision's modes instead and read a processor's filter back through torchvision's table.
INTERPOLATION_NAMES = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
RESAMPLING = {name: PILImageResampling[name.upper()] for name in INTERPOLATION_NAMES}


class ViTHFImageProcessor(ViTImageProcessorPil):
    r"""
    transformers' ViT image processor (PIL backend) with torchvision's centre-crop placement, which makes it
    reproduce timm's eval transform exactly. Build one for a timm checkpoint with `vit_hf.image_processor_from_timm`.

    Example:
    ```python
    >>> from vit_hf import ViTHFImageProcessor
    >>> processor = ViTHFImageProcessor(
    ...     size={"shortest_edge": 248}, do_center_crop=True, crop_size={"height": 224, "width": 224}, resample=3
    ... )
    ```
    """

    # Grayscale, palette and RGBA images become RGB before the three-channel normalisation (transformers' default,
    # None, leaves them as they are and fails on a grayscale image).
    do_convert_rgb = True

    def center_crop(self, image: np.ndarray, size: SizeDict, **kwargs) -> np.ndarray:
        height, width = image.shape[-2:]  # channels-first inside the PIL backend
        if size.height > height or size.width > width:
            return super().center_crop(image, size, **kwargs)  # crops larger than the image pad, as transformers does
        top = int(round((height - size.height) / 2.0))  # torchvision's rounding (half to even), not floor
        left = int(round((width - size.width) / 2.0))
        return image[..., top : top + size.height, left : left + size.width]


def make_image_processor(
    image_size: int | tuple[int, int],
    mean: tuple[float, ...] = INCEPTION_MEAN,
    std: tuple[float, ...] = INCEPTION_STD,
    crop_pct: float = 1.0,
    interpolation: str = "bicubic",
) -> ViTHFImageProcessor:
    """A processor that resizes the shorter side to floor(size / crop_pct), centre-crops `image_size`, rescales to
    [0, 1] and normalises with `mean` / `std`: timm's eval transform (crop_pct 1.0 keeps the whole short side)."""
    if interpolation not in RESAMPLING:
        raise ValueError(f"interpolation must be one of {sorted(RESAMPLING)}, got {interpolation!r}.")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}.")
    height, width = to_2tuple(image_size)
    common = dict(image_mean=list(mean), image_std=list(std), resample=RESAMPLING[interpolation])
    # timm: Resize(floor(size / crop_pct)) on the short side, then CenterCrop(size).
    return ViTHFImageProcessor(
        size={"shortest_edge": math.floor(min(height, width) / crop_pct)},
        do_center_crop=True,
        crop_size={"height": height, "width": width},
        **common,
    )


__all__ = ["ViTHFImageProcessor", "make_image_processor"]
