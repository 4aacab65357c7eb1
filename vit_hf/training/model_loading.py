"""Where a fine-tuning run's model comes from: a preset trained from scratch, timm pretrained weights, or a vit_hf
folder / Hub id. Returns the model with a head for the dataset's labels, its image processor, and the name of the
base model for the model card."""

import dataclasses
import difflib
import logging
from pathlib import Path
from typing import Literal

import torch
from huggingface_hub import _CACHED_NO_EXIST, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError
from transformers import AutoImageProcessor
from transformers.utils import IMAGE_PROCESSOR_NAME

from ..configuration_vit_hf import ViTHFConfig, list_presets
from ..image_processing_vit_hf import make_image_processor
from ..modeling_vit_hf import ViTHFForImageClassification
from ..timm.architecture import UnsupportedTimmModelError, check_timm_architecture
from .arguments import ArgumentError, ModelArguments, check_model_overrides

logger = logging.getLogger(__name__)
ModelSource = Literal["preset", "timm", "folder", "hub"]
OFFLINE_HINT = (
    "Without a network: download it once where there is one (`hf download {name} --local-dir my-vit`), then pass "
    "the folder as --model, or set HF_HUB_OFFLINE=1 to use the copy in the Hugging Face cache."
)


def _timm_name(name: str) -> str:
    return name.removeprefix("hf-hub:").removeprefix("timm/")


def looks_like_path(name: str) -> bool:
    """`./my_model`, `../x`, `/abs/x`, `~/x`, `a/b/c`: not a Hub id (`owner/name`), nor a timm or preset name."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def model_source(model_args: ModelArguments) -> ModelSource:
    """Where `--model` comes from, decided locally before anything is downloaded: a missing path, a name close to a
    preset or a timm model, and a timm model vit_hf cannot convert are errors naming the fix."""
    name = model_args.model
    if name in list_presets():
        return "preset"
    if Path(name).expanduser().is_dir():
        if not (Path(name).expanduser() / "config.json").is_file():
            raise ArgumentError(f"--model {name} is a folder without config.json, so not a saved vit_hf model.")
        return "folder"
    if looks_like_path(name) or Path(name).exists():
        raise ArgumentError(f"--model {name}: no such folder (a saved model is a folder with config.json).")
    import timm

    architecture = _timm_name(name).split(".")[0]
    if timm.is_model(architecture):
        try:
            check_timm_architecture(architecture)
        except UnsupportedTimmModelError as error:
            problems = "; ".join(error.features)
            raise ArgumentError(
                f"--model {name}: a timm model vit_hf cannot convert, not supported: {problems}"
            ) from None
        return "timm"
    if name.count("/") == 1:
        return "hub"
    close = difflib.get_close_matches(name, [*list_presets(), *timm.list_models()], n=3, cutoff=0.8)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ArgumentError(
        f"--model {name!r} is not a preset, a timm model or a folder, and a Hub id is owner/name.{hint} "
        "(vit_hf.list_presets() and timm.list_models('vit_*') list the names.)"
    )


def resolve_attn_implementation(requested: str, device: torch.device, mixed_precision: str) -> str:
    """`--attn_implementation auto`: `sdpa_cpu_bf16` for bf16 on the CPU (two matmuls, faster there than torch's
    fused kernel), `sdpa` elsewhere; any other value as given."""
    if requested != "auto":
        return requested
    return "sdpa_cpu_bf16" if device.type == "cpu" and mixed_precision == "bf16" else "sdpa"


def load_model_for_finetuning(model_args: ModelArguments, id2label: dict[int, str]):
    """(model, image_processor, base_model) for `--model`, with a fresh head of len(id2label) outputs unless the
    loaded head already has exactly these labels. The processor is the source's (its normalisation and resize
    kernel; for a folder without one, make_image_processor's defaults and a warning); its size may differ from the
    model's new one."""
    source = model_source(model_args)
    if model_args.attn_implementation == "auto":  # (the recipe resolves it for its device and precision first)
        attention = resolve_attn_implementation("auto", torch.device("cpu"), "no")  # float32 weights: sdpa
        model_args = dataclasses.replace(model_args, attn_implementation=attention)
    if model_args.overrides() and source != "preset":
        raise ValueError(
            "--model_overrides applies to presets trained from scratch; it cannot reshape a pretrained model."
        )
    if model_args.checkpoint_path and source != "timm":
        raise ValueError("--checkpoint_path is for timm models; a vit_hf folder or Hub id carries its own weights.")
    if source == "preset":
        return _preset_model(model_args, id2label)
    if source == "timm":
        return _timm_model(model_args, id2label)
    return _saved_model(model_args, id2label)


def _preset_model(model_args: ModelArguments, id2label: dict[int, str]):
    """A preset trained from scratch, reshaped by --model_overrides."""
    check_model_overrides(model_args.overrides(), model_args.image_size)
    config = ViTHFConfig.from_preset(
        model_args.model,
        **model_args.overrides(),
        **({"image_size": model_args.image_size} if model_args.image_size else {}),
        id2label=id2label,
        label2id={label: index for index, label in id2label.items()},
        attn_implementation=model_args.attn_implementation,
    )
    return ViTHFForImageClassification(config), make_image_processor(config.image_size), None


def _timm_model(model_args: ModelArguments, id2label: dict[int, str]):
    """timm's pretrained weights (its Hub download or --checkpoint_path), converted, with a new head."""
    from ..timm.weights import from_timm, image_processor_from_timm

    timm_name = _timm_name(model_args.model)
    try:
        model = from_timm(
            timm_name,
            checkpoint_path=model_args.checkpoint_path,
            image_size=model_args.image_size,
            num_labels=len(id2label),
            id2label=id2label,
        )
    except ConnectionError as error:
        raise ConnectionError(
            f"{error}\nWith the recipe, pass the downloaded file as --checkpoint_path model.safetensors."
        ) from None
    model.set_attn_implementation(model_args.attn_implementation)
    processor = image_processor_from_timm(timm_name, image_size=model_args.image_size)
    return model, processor, f"timm/{timm_name}"


def _saved_model(model_args: ModelArguments, id2label: dict[int, str]):
    """A vit_hf folder or Hub id; its head is kept only for the very same labels in the same order."""
    name, image_size = model_args.model, model_args.image_size
    try:
        config_dict, _ = ViTHFConfig.get_config_dict(name)
    except OSError as error:
        raise OSError(f"{error}\n{OFFLINE_HINT.format(name=name)}") from None
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


def describe_architecture(model: torch.nn.Module, model_args: ModelArguments) -> str:
    """A few words for the model card: what --model named, reshaped how, and the result's kind and size."""
    config = model.config
    kind = "hybrid ResNetV2 + ViT" if config.backbone_depths else "ViT"
    size = f"{kind}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    if model_args.model_overrides:
        return f"the `{model_args.model}` preset with `{model_args.model_overrides}`: a {size}"
    return f"`{model_args.model}`: a {size}"
