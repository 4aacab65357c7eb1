"""Where a fine-tuning run's model comes from: a preset trained from scratch, timm pretrained weights, or a vit_hf
folder / Hub id. Returns the model with a head for the dataset's labels, its image processor, and the name of the
base model for the model card."""

import difflib
import inspect
import json
import logging
from pathlib import Path

import torch
from huggingface_hub import _CACHED_NO_EXIST, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError
from transformers import AutoImageProcessor
from transformers.utils import IMAGE_PROCESSOR_NAME

from ..configuration_vit_hf import ViTHFConfig, list_presets
from ..image_processing_vit_hf import make_image_processor
from ..modeling_vit_hf import ViTHFForImageClassification
from ..timm.weights import is_timm_model_name

logger = logging.getLogger(__name__)
# ViTHFConfig fields that --model_overrides may not set, and what sets them instead.
SET_ELSEWHERE = {
    "id2label": "the dataset's labels",
    "label2id": "the dataset's labels",
    "num_labels": "the dataset's labels",
    "drop_path_rate": "--drop_path_rate",
}


def check_model_overrides(overrides: dict, image_size: int | None) -> None:
    """ValueError unless every key of `--model_overrides` is an architecture field of ViTHFConfig that no other
    flag or the dataset sets."""
    known = list(inspect.get_annotations(ViTHFConfig))
    for key in overrides:
        if key in SET_ELSEWHERE:
            raise ValueError(f"--model_overrides cannot set {key!r}: it comes from {SET_ELSEWHERE[key]}.")
        if key == "image_size" and image_size:
            raise ValueError("Both --model_overrides and --image_size set image_size; use one of them.")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"Unknown key {key!r} in --model_overrides: not a ViTHFConfig field.{hint}")


def load_model_for_finetuning(model_args, id2label: dict[int, str]):
    """(model, image_processor, base_model) for `--model`, with a fresh head of len(id2label) outputs unless the
    loaded head already has exactly these labels. The processor is the source's (its normalisation and resize
    kernel; for a folder without one, make_image_processor's defaults and a warning); its size may differ from the
    model's new one."""
    name, image_size = model_args.model, model_args.image_size
    label2id = {label: index for index, label in id2label.items()}
    overrides = json.loads(model_args.model_overrides) if model_args.model_overrides else {}
    check_model_overrides(overrides, image_size)
    if overrides and name not in list_presets():
        raise ValueError(
            "--model_overrides applies to presets trained from scratch; it cannot reshape a pretrained model."
        )
    if name in list_presets():
        config = ViTHFConfig.from_preset(
            name,
            **overrides,
            **({"image_size": image_size} if image_size else {}),
            id2label=id2label,
            label2id=label2id,
            attn_implementation=model_args.attn_implementation,
        )
        model = ViTHFForImageClassification(config)
        return model, make_image_processor(config.image_size), None
    if is_timm_model_name(name):
        from ..timm.weights import from_timm, image_processor_from_timm

        timm_name = name.removeprefix("hf-hub:").removeprefix("timm/")
        try:
            model = from_timm(
                timm_name,
                checkpoint_path=model_args.checkpoint_path,
                image_size=image_size,
                num_labels=len(id2label),
                id2label=id2label,
            )
        except ConnectionError as error:
            raise ConnectionError(
                f"{error}\nWith the recipe, pass the downloaded file as --checkpoint_path model.safetensors."
            ) from None
        model.set_attn_implementation(model_args.attn_implementation)
        return model, image_processor_from_timm(timm_name, image_size=image_size), f"timm/{timm_name}"
    if model_args.checkpoint_path:
        raise ValueError("--checkpoint_path is for timm models; a vit_hf folder or Hub id carries its own weights.")
    config_dict, _ = ViTHFConfig.get_config_dict(name)
    if config_dict.get("model_type") != ViTHFConfig.model_type:
        raise ValueError(
            f"{name} holds a {config_dict.get('model_type')!r} model, not a vit_hf one. --model takes a vit_hf "
            "folder or Hub id, a timm model name (e.g. vit_base_patch16_224.augreg_in21k) or a preset trained from "
            "scratch (e.g. base_patch16_224; see vit_hf.list_presets())."
        )
    config = ViTHFConfig.from_dict(config_dict)
    model = ViTHFForImageClassification.from_pretrained(
        # float32 master weights whatever the saved dtype: mixed precision comes from autocast
        name,
        config=config,
        attn_implementation=model_args.attn_implementation,
        dtype=torch.float32,
    )
    # The saved head is kept only for the very same labels in the same order; else a fresh, zero-initialised one.
    if {int(index): label for index, label in config.id2label.items()} != id2label:
        model.reset_head(id2label)
    if has_image_processor(name):
        processor = AutoImageProcessor.from_pretrained(name)
    else:
        logger.warning(
            "%s has no %s: normalising with mean and std 0.5 and resizing bicubic, the original ViT checkpoints' "
            "processing (make_image_processor's defaults). If the model was trained otherwise, save its image "
            "processor into the folder.",
            name,
            IMAGE_PROCESSOR_NAME,
        )
        processor = make_image_processor(model.config.image_size)
    if image_size and image_size != model.config.image_size:
        model.set_image_size(image_size)
    return model, processor, name


def has_image_processor(name: str) -> bool:
    """Whether a vit_hf folder or Hub repo holds an image processor. Only a definite no (a folder without the file,
    a repo the Hub says lacks it) is False; without a network and the file in the cache, the Hub's error is raised
    rather than guessing a normalisation."""
    if Path(name).is_dir():
        return (Path(name) / IMAGE_PROCESSOR_NAME).is_file()
    try:
        hf_hub_download(name, IMAGE_PROCESSOR_NAME)
    except RemoteEntryNotFoundError:
        return False
    except LocalEntryNotFoundError:
        # Offline: an earlier online run may have recorded in the cache that the repo lacks the file.
        if try_to_load_from_cache(name, IMAGE_PROCESSOR_NAME) is _CACHED_NO_EXIST:
            return False
        raise
    return True
