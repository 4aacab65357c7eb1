"""Pictures of what a ViT learned, for a handful of images.

    python -m vit_hf.visualize MODEL IMAGE [IMAGE ...] --out DIR [--checkpoint FILE] [--device cuda]

MODEL is a vit_hf folder (e.g. the fine-tuning recipe's output), a Hub id of one, or a timm model name (converted
with `from_timm`; `--checkpoint` gives its weights from a local file instead of the Hub). The images go through the
model's own image processor. DIR receives attention_maps.png, attention_distance.png, position_embeddings.png and,
for a plain ViT, patch_filters.png.
"""

import argparse
import logging
import sys
from pathlib import Path

from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
from transformers.utils import IMAGE_PROCESSOR_NAME

from ..configuration_vit_hf import ViTHFConfig
from ..image_processing_vit_hf import make_image_processor
from ..timm.weights import from_timm, image_processor_from_timm, is_timm_model_name
from .pictures import write_pictures

logger = logging.getLogger("vit_hf.visualize")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vit_hf.visualize", description="Attention maps and embedding pictures of a vit_hf model."
    )
    parser.add_argument("model", help="vit_hf folder or Hub id, or a timm model name (e.g. vit_base_patch16_224)")
    parser.add_argument("images", nargs="+", type=Path, help="image files to draw the attention of")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs (created if missing)")
    parser.add_argument("--checkpoint", type=Path, help="local timm checkpoint for a timm model name (no download)")
    parser.add_argument("--device", default="cpu", help="torch device to run the model on (default: cpu)")
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.images if not path.is_file()]
    if missing:
        parser.error(f"image file(s) not found: {', '.join(missing)}")
    return args


def load_model(name: str, checkpoint: Path | None):
    """(model, image processor) for a timm model name, a vit_hf folder or a Hub id."""
    if is_timm_model_name(name):
        timm_name = name.removeprefix("hf-hub:").removeprefix("timm/")
        return from_timm(timm_name, checkpoint_path=checkpoint), image_processor_from_timm(timm_name)
    if checkpoint is not None:
        raise ValueError("--checkpoint is for timm model names; a vit_hf folder or Hub id carries its own weights.")
    model_type = AutoConfig.from_pretrained(name).model_type
    if model_type != ViTHFConfig.model_type:
        raise ValueError(f"{name} holds a {model_type!r} model; vit_hf.visualize draws vit_hf models and timm ViTs.")
    model = AutoModelForImageClassification.from_pretrained(name)
    if Path(name).is_dir() and not (Path(name) / IMAGE_PROCESSOR_NAME).is_file():
        logger.warning("%s has no %s: using mean and std 0.5 and a bicubic resize.", name, IMAGE_PROCESSOR_NAME)
        return model, make_image_processor(model.config.image_size)
    return model, AutoImageProcessor.from_pretrained(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model, processor = load_model(args.model, args.checkpoint)
    except (ConnectionError, OSError, ValueError) as error:  # offline, missing folder, not a vit_hf model
        logger.error("%s", error)
        return 2
    model.to(args.device)
    images = [Image.open(path).convert("RGB") for path in args.images]
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]  # (B, 3, H, W)
    args.out.mkdir(parents=True, exist_ok=True)
    names = [path.name for path in args.images]
    mean, std = processor.image_mean, processor.image_std
    written = write_pictures(model, pixel_values, args.out, mean, std, names=names, patch_filters=True)
    for name in written:
        logger.info("wrote %s", args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
