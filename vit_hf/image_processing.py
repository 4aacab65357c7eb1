"""Building the image processor saved beside a model, configured like timm's eval transform: resize the short side
to size / crop_pct, centre crop, rescale, normalise."""

import math

from transformers.image_utils import PILImageResampling

from .configuration_vit_hf import to_2tuple
from .image_processing_vit_hf import ViTHFImageProcessor

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)  # used by the original ViT checkpoints
RESAMPLING = {
    "nearest": PILImageResampling.NEAREST,
    "bilinear": PILImageResampling.BILINEAR,
    "bicubic": PILImageResampling.BICUBIC,
}


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
