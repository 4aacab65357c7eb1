"""The pictures of what the fine-tuned model learned (`vit_hf.visualize`), drawn for a handful of evaluation images
once training is over: attention rollout and the last layer's heads, position-embedding similarity and mean
attention distance."""

import logging
from pathlib import Path

from torch.distributed.tensor import DTensor
from transformers import PreTrainedModel
from transformers.image_processing_utils import BaseImageProcessor

from ..data import ImageClassificationData
from ..data.transforms import DeviceTransform, collate
from ..visualize import write_pictures

logger = logging.getLogger(__name__)
PICTURED_IMAGES = 6


def picture_rows(labels: list[int], count: int) -> list[int]:
    """Up to `count` row numbers in order: the first row of each class (one image per class while classes last),
    then the earliest remaining rows."""
    firsts = {}
    for row, label in enumerate(labels):
        firsts.setdefault(label, row)
    chosen = sorted(firsts.values())[:count]
    taken = set(chosen)
    others = [row for row in range(len(labels)) if row not in taken][: count - len(chosen)]
    return sorted(chosen + others)


def draw_look_inside(
    model: PreTrainedModel,
    data: ImageClassificationData,
    eval_transform: DeviceTransform | None,
    processor: BaseImageProcessor,
    folder: Path,
) -> list[str]:
    """Write the pictures for the first images of the test split (validation without one), one per class, into
    `folder`; returns the names of the files written. A model sharded over processes (FSDP) cannot run in the main
    process alone: it gets none, and a note naming the command that draws them from the saved folder."""
    if any(isinstance(parameter, DTensor) for parameter in model.parameters()):
        logger.info(
            "The model is sharded: draw its pictures with python -m vit_hf.visualize OUTPUT_DIR IMAGE --out DIR"
        )
        return []
    split = data.test if data.test is not None else data.validation
    rows = picture_rows(split.with_format(None)[data.label_column], PICTURED_IMAGES)
    batch = collate([split[row] for row in rows])
    pixel_values = batch["pixel_values"].to(next(model.parameters()).device)
    if eval_transform is not None:  # the device path: uint8 source images, resized and normalised here
        pixel_values = eval_transform(pixel_values)
    mean, std = processor.image_mean, processor.image_std
    return write_pictures(model, pixel_values, folder, mean, std, labels=batch["labels"].tolist())
