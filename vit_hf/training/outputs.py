"""The output folder a user opens after training: the model with its code, the image processor, results, the log,
pictures and a model card, moved into place whole (a run killed meanwhile leaves only a hidden temporary)."""

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import PreTrainedModel
from transformers.image_processing_utils import BaseImageProcessor

from ..data import ImageClassificationData
from ..files import write_json_atomic
from ..hub.model_card import build_model_card
from .plots import plot_confusion_matrix, plot_training_curves

logger = logging.getLogger(__name__)
ADAPTER_DIR = "adapter"  # a LoRA run's adapter, beside the merged model
STAGING = ".final-tmp"  # hidden: removed at the next start if a run dies while writing


def write_outputs(
    output_dir: Path,
    model: PreTrainedModel,
    state_dict: dict | None,
    processor: BaseImageProcessor,
    data: ImageClassificationData,
    results: dict,
    log_history: list[dict],
    confusion: tuple[torch.Tensor, str],
    card_fields: dict,
    draw_pictures: Callable[[Path], list[str]] | None = None,
    adapter: PreTrainedModel | None = None,
) -> None:
    """Main process only; `state_dict` is the full one (under FSDP gathered from every process), or None when the
    model and processor are already in `output_dir` and only results, log, pictures and card change. `card_fields`
    are `build_model_card`'s arguments other than the results and pictures. `draw_pictures(folder)` writes more
    pictures for the card and returns their file names. A PEFT `adapter` (the model before merging) is saved in
    PEFT's format to `adapter/`."""
    model.config.id2label, model.config.label2id = data.id2label, data.label2id
    tmp = output_dir / STAGING
    shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing
    tmp.mkdir()
    if state_dict is not None:
        model.save_pretrained(tmp, state_dict=state_dict)
        processor.save_pretrained(tmp)
        if adapter is not None:
            adapter.save_pretrained(tmp / ADAPTER_DIR)
    write_json_atomic(tmp / "all_results.json", results)
    write_json_atomic(tmp / "log_history.json", log_history)
    plot_training_curves(log_history, tmp / "training_curves.png")
    labels = [data.id2label[i] for i in range(data.num_labels)]
    matrix, split = confusion
    plot_confusion_matrix(matrix, labels, tmp / "confusion_matrix.png", f"Confusion matrix ({split} split)")
    pictures = ["training_curves.png", "confusion_matrix.png"]
    if draw_pictures is not None:
        try:
            pictures += draw_pictures(tmp)
        except Exception:  # pictures are not worth the trained model: it is saved without them
            logger.exception("Drawing the pictures of the model failed; the output folder is written without them.")
    card = build_model_card(results=results, pictures=pictures, **card_fields)
    card.save(tmp / "README.md")
    for path in sorted(tmp.iterdir()):
        if path.is_dir():  # a folder replaces only an empty one: the previous run's goes first
            shutil.rmtree(output_dir / path.name, ignore_errors=True)
        path.replace(output_dir / path.name)
    tmp.rmdir()
