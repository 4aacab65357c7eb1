"""Convert a timm ViT to a vit_hf model folder.

    python -m vit_hf.convert vit_base_patch16_224 vit-base/ [--image-size 384] [--num-labels 10]
        [--checkpoint model.safetensors] [--push-to-hub user/vit-base]

The folder holds config.json, model.safetensors, the model code (so it loads with `trust_remote_code=True` where
vit_hf is not installed), the image processor reproducing timm's eval transform and a model card. It is written to
a temporary folder first and renamed into place, so an interrupted run leaves no half-written model.
"""

import argparse
import logging
import sys
import time
from pathlib import Path

import torch
from huggingface_hub import ModelCard
from torch import nn

from ..files import atomic_folder
from ..hub.model_card import model_card
from ..hub.upload import upload_or_explain
from ..modeling_vit_hf import ViTHFForImageClassification
from .architecture import timm_model_name
from .weights import from_timm, image_processor_from_timm, load_timm_model

logger = logging.getLogger("vit_hf.convert")
MAX_DIFFERENCE = 1e-4  # float32 rounding; supported models measure 0.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vit_hf.convert", description="Convert a timm ViT (plain or hybrid) to a vit_hf model folder."
    )
    parser.add_argument("model_name", help="timm model name, e.g. vit_base_patch16_224 or vit_base_r50_s16_384")
    parser.add_argument("out_dir", type=Path, help="folder to write (must not exist unless --overwrite)")
    # Each flag also takes the recipe's spelling (--image_size): one way to write them across the project's CLIs.
    parser.add_argument(
        "--image-size", "--image_size", type=int, help="resolution to run at, e.g. 384 for a 224 checkpoint"
    )
    parser.add_argument(
        "--num-labels", "--num_labels", type=int, help="new zero-initialised head with this many classes"
    )
    parser.add_argument("--checkpoint", type=Path, help="local timm checkpoint (.safetensors/.pth/.bin), no download")
    parser.add_argument(
        "--push-to-hub", "--push_to_hub", metavar="REPO_ID", help="upload the folder to this Hub repository"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    args = parser.parse_args(argv)
    if args.out_dir.exists() and not args.overwrite:
        parser.error(f"{args.out_dir} already exists; choose another folder or pass --overwrite.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source = f"checkpoint {args.checkpoint}" if args.checkpoint else "the Hugging Face Hub"
    logger.info("Loading timm model %s with weights from %s ...", args.model_name, source)
    start = time.perf_counter()
    try:
        timm_model = load_timm_model(args.model_name, checkpoint_path=args.checkpoint, image_size=args.image_size)
        logger.info("Loaded in %.1f s. Converting ...", time.perf_counter() - start)
        model = from_timm(timm_model, num_labels=args.num_labels)
        processor = image_processor_from_timm(timm_model, image_size=args.image_size)
    except (ConnectionError, FileNotFoundError, ValueError) as err:  # offline, bad path, unsupported model
        logger.error("%s", err)
        return 2
    difference = max_output_difference(timm_model, model, kept_head=args.num_labels is None)
    logger.info("Max absolute difference to timm's outputs on a random image: %.2e", difference)
    if difference > MAX_DIFFERENCE:
        logger.error("The conversion is not exact (limit %.0e); nothing was written.", MAX_DIFFERENCE)
        return 3
    write_folder(args.out_dir, model, processor, converted_model_card(args, timm_model, difference))
    logger.info("Wrote %s", args.out_dir)
    if args.push_to_hub:
        message = f"Add {args.model_name} converted by vit_hf"
        return 0 if upload_or_explain(args.out_dir, args.push_to_hub, commit_message=message) else 1
    return 0


@torch.no_grad()
def max_output_difference(timm_model: nn.Module, model: ViTHFForImageClassification, *, kept_head: bool) -> float:
    """Largest |difference| between timm's and the converted model's pooled features, and logits when the model
    kept timm's head (`kept_head`; a new head has nothing to match, even with timm's number of classes), on one
    random image at the model's resolution."""
    config = model.config
    height, width = (side * config.token_stride for side in config.grid_size())
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, config.num_channels, height, width, generator=generator).to(model.device, model.dtype)
    features = timm_model.forward_features(pixels)
    pooled = model.vit(pixels).pooler_output
    differences = [(timm_model.forward_head(features, pre_logits=True) - pooled).abs().max()]
    if kept_head and config.num_labels:  # the whole model: a distilled DeiT averages two heads
        differences.append((timm_model.forward_head(features) - model(pixels).logits).abs().max())
    return max(difference.item() for difference in differences)


def converted_model_card(args: argparse.Namespace, timm_model: nn.Module, difference: float) -> ModelCard:
    name = timm_model_name(timm_model) or args.model_name
    hub_id = (getattr(timm_model, "pretrained_cfg", None) or {}).get("hf_hub_id")
    weights = f"the local checkpoint `{args.checkpoint.name}`" if args.checkpoint else f"timm's `{name}` weights"
    head = f"a new zero-initialised {args.num_labels}-class head" if args.num_labels is not None else "its head"
    location = args.push_to_hub or str(args.out_dir)
    body = f"""The timm model `{name}`, converted with vit_hf from {weights}, with {head}.
Maximum absolute difference to timm's outputs on a random image: {difference:.1e}.
The image processor reproduces timm's evaluation transform for this checkpoint.

```python
from transformers import AutoImageProcessor, AutoModelForImageClassification

model = AutoModelForImageClassification.from_pretrained("{location}", trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained("{location}", trust_remote_code=True)
```
"""
    base_model = hub_id if hub_id and args.checkpoint is None else None
    return model_card(f"{name} (vit_hf)", body, tags=["vit_hf", "timm", "vision-transformer"], base_model=base_model)


def write_folder(out_dir: Path, model, processor, card: ModelCard) -> None:
    """Save into a temporary sibling folder, then rename it to `out_dir` (replacing an existing one last)."""
    with atomic_folder(out_dir) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        card.save(staging / "README.md")


if __name__ == "__main__":
    sys.exit(main())
