"""Pretrained weights through timm: a timm model name, a local timm checkpoint or a built timm VisionTransformer
(plain or hybrid ResNetV2 + ViT) becomes a ViTHFForImageClassification with the same outputs; and back again.

Parameter names of vit_hf follow timm's, so the weights map one to one (under `vit.`, the head kept as `head`);
the only rename is the stem-only hybrid's `patch_embed.backbone.{conv,norm}` -> `...backbone.stem.{conv,norm}`.
"""

import difflib
import logging
import math
import os
import re
from pathlib import Path

import timm
import torch
from accelerate import init_empty_weights
from safetensors.torch import save_file
from timm.data import ImageNetInfo, infer_imagenet_subset, resolve_data_config
from torch import nn

from ..configuration_vit_hf import ViTHFConfig, to_2tuple
from ..files import atomic_write
from ..image_processing_vit_hf import RESAMPLING, ViTHFImageProcessor
from ..modeling_vit_hf import ViTHFForImageClassification, ViTHFModel, resample_pos_embed
from .architecture import config_from_timm, timm_grid_size, timm_kwargs_from_config, timm_model_name
from .eva import eva_kwargs_from_config, eva_to_vit_hf_state_dict, needs_eva, vit_hf_to_eva_state_dict
from .parallel import parallel_to_vit_hf_state_dict, vit_hf_to_parallel_state_dict

logger = logging.getLogger(__name__)

# timm's stem-only hybrid keeps the stem layers directly in the backbone; vit_hf nests them under `stem`.
TIMM_STEM_KEY = re.compile(r"^patch_embed\.backbone\.(conv|norm)\.")
VIT_HF_STEM_KEY = re.compile(r"^patch_embed\.backbone\.stem\.(conv|norm)\.")


def is_timm_model_name(name: str) -> bool:
    """`vit_base_patch16_224.augreg_in21k`, `timm/vit_base_patch16_224...` or `hf-hub:timm/...` (and no local path
    of that name)."""
    name = name.removeprefix("hf-hub:").removeprefix("timm/")
    return timm.is_model(name.split(".")[0]) and not Path(name).exists()


def from_timm(
    model_name_or_module: str | nn.Module,
    *,
    pretrained: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
) -> ViTHFForImageClassification:
    """Convert a timm ViT (plain or hybrid) and its weights to a ViTHFForImageClassification, exactly.

    Args:
        model_name_or_module: a timm model name (`"vit_base_patch16_224"`, `"vit_base_r50_s16_384.orig_in21k_ft_in1k"`)
            or a built timm `VisionTransformer`, whose current weights are converted.
        pretrained: for a name, download timm's pretrained weights from the Hub (False: random initialisation).
        checkpoint_path: for a name, load weights from this local timm checkpoint (`.safetensors`, or `.pth` /
            `.bin` read without executing pickled code) instead of the Hub.
        image_size: run the model at this resolution (e.g. 384 for a 224 checkpoint). The position embeddings are
            resampled as timm does when it loads a checkpoint at another size (bicubic, antialiased).
        num_labels, id2label: a new classification task. Without them the pretrained head is kept, with its
            ImageNet class names when timm knows them. With them the head is new and zero-initialised (as the ViT
            paper does for fine-tuning), so training starts from the pretrained features with uniform predictions.

    The config records the source in `config.timm_model` (`architecture.tag`). Raises
    `UnsupportedTimmModelError` (a ValueError) naming every architecture feature vit_hf does not implement, and
    `ConnectionError` with instructions for a local checkpoint when the Hub cannot be reached.
    """
    if isinstance(model_name_or_module, str):
        timm_model = load_timm_model(
            model_name_or_module, pretrained=pretrained, checkpoint_path=checkpoint_path, image_size=image_size
        )
        image_size = None  # timm built the model at that size, resampling the position embeddings itself
    elif isinstance(model_name_or_module, nn.Module):
        if checkpoint_path is not None:
            raise ValueError(
                "checkpoint_path is for timm model names; load the checkpoint into the module first, or pass the "
                "model name with checkpoint_path."
            )
        timm_model = model_name_or_module
    else:
        raise TypeError(f"Expected a timm model name or module, got {type(model_name_or_module).__name__}.")
    return _convert(timm_model, image_size, num_labels, id2label)


def load_timm_model(
    model_name: str,
    *,
    pretrained: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> nn.Module:
    """`timm.create_model` in eval mode with weights from the Hub (`pretrained`), a local checkpoint, or random.
    A checkpoint goes through timm's own loading code (its checkpoint filter included), keeping its head size."""
    pretrained_cfg = timm_pretrained_cfg(model_name)
    kwargs = {} if image_size is None else {"img_size": image_size}
    if not pretrained:
        if checkpoint_path is not None:
            raise ValueError("pretrained=False means random weights; leave it True to load checkpoint_path.")
        # Random weights are named by the architecture alone.
        return timm.create_model(model_name, pretrained=False, pretrained_cfg_overlay=dict(tag=None), **kwargs).eval()
    if checkpoint_path is not None:
        state_dict = read_timm_checkpoint(checkpoint_path)
        num_classes = state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0
        # Local weights are named by the tag the caller gave, or by the architecture alone.
        overlay = dict(state_dict=state_dict, num_classes=num_classes, tag=model_name.partition(".")[2] or None)
        return timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=num_classes, **kwargs
        ).eval()
    try:
        return timm.create_model(model_name, pretrained=True, **kwargs).eval()
    except OSError as err:  # offline, Hub unreachable, or weights neither cached nor downloadable
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        hub_id = pretrained_cfg.hf_hub_id if pretrained_cfg else None
        where = f"https://huggingface.co/{hub_id}" if hub_id else "the timm model's pretrained source"
        raise ConnectionError(
            f"Could not fetch the pretrained weights of timm model {model_name!r}: {reason}\n"
            f"Download its checkpoint (model.safetensors from {where}) where the Hub is reachable and pass the "
            f"file: from_timm({model_name!r}, checkpoint_path='model.safetensors'), or on the command line "
            f"`python -m vit_hf.convert {model_name} OUT_DIR --checkpoint model.safetensors`."
        ) from None


def timm_pretrained_cfg(model_name: str):
    """timm's pretrained config for `architecture` or `architecture.tag` (None if it has none), with a clear error
    for an unknown architecture or tag."""
    architecture, _, tag = model_name.partition(".")
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown timm model {model_name!r}.{hint}")
    try:
        return timm.models.get_pretrained_cfg(model_name)
    except RuntimeError:  # timm's "Invalid pretrained tag"
        tags = ", ".join(timm.list_pretrained(f"{architecture}.*")) or "none"
        raise ValueError(f"timm has no weights tagged {tag!r} for {architecture}; available: {tags}.") from None


def read_timm_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A timm state dict from `.safetensors`, or from a PyTorch file loaded with `weights_only=True` (no pickled
    code runs). Training checkpoints holding `state_dict` / `model` / EMA weights are unwrapped as timm does."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"timm checkpoint {str(path)!r} does not exist or is not a file.")
    if path.suffix == ".npz":
        raise ValueError(
            f"{path.name} is a JAX .npz checkpoint; load it with timm.create_model(name, pretrained=True, "
            "pretrained_cfg_overlay=dict(file=..., custom_load=True)) and pass the model to from_timm."
        )
    return timm.models.load_state_dict(str(path), weights_only=True)


def _convert(
    timm_model: nn.Module, image_size, num_labels: int | None, id2label: dict[int, str] | None
) -> ViTHFForImageClassification:
    new_head = num_labels is not None or id2label is not None
    if new_head:
        labels = _new_labels(num_labels, id2label)
    else:
        labels = _pretrained_labels(timm_model)
    source = {"timm_model": timm_model_name(timm_model)} if timm_model_name(timm_model) else {}
    config = config_from_timm(timm_model, image_size=image_size, **labels, **source)
    state_dict = timm_to_vit_hf_state_dict(timm_model, config)
    if new_head and config.num_labels:
        reference = state_dict["vit.patch_embed.proj.weight"]
        like = dict(dtype=reference.dtype, device=reference.device)
        for head in ("head", "head_dist") if config.distillation_token else ("head",):
            state_dict[f"{head}.weight"] = torch.zeros(config.num_labels, config.hidden_size, **like)
            state_dict[f"{head}.bias"] = torch.zeros(config.num_labels, **like)
    with init_empty_weights():  # no random initialisation: every tensor comes from the state dict
        model = ViTHFForImageClassification(config)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def _new_labels(num_labels: int | None, id2label: dict[int, str] | None) -> dict:
    if id2label is not None:
        id2label = {int(index): str(label) for index, label in id2label.items()}
        if num_labels is not None and num_labels != len(id2label):
            raise ValueError(
                f"num_labels={num_labels} but id2label has {len(id2label)} entries; give one or both equal."
            )
        if sorted(id2label) != list(range(len(id2label))):
            raise ValueError(f"id2label keys must be 0..{len(id2label) - 1}, got {sorted(id2label)}.")
        return dict(id2label=id2label, label2id={label: index for index, label in id2label.items()})
    if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 0:
        raise ValueError(f"num_labels must be an integer >= 0 (0: no head, features only), got {num_labels!r}.")
    return dict(num_labels=num_labels)


def _pretrained_labels(timm_model: nn.Module) -> dict:
    """The pretrained head's size, with class names from timm's pretrained config or its ImageNet metadata."""
    head = getattr(timm_model, "head", None)
    num_classes = head.out_features if isinstance(head, nn.Linear) else 0
    cfg = getattr(timm_model, "pretrained_cfg", None) or {}
    names = cfg.get("label_names")
    if not names and num_classes:
        subset = infer_imagenet_subset(timm_model)
        if subset is not None:
            info = ImageNetInfo(subset)
            if info.num_classes() == num_classes:
                names = [info.index_to_description(index) for index in range(num_classes)]
    if not names or len(names) != num_classes:
        return dict(num_labels=num_classes)  # transformers names them LABEL_0, LABEL_1, ...
    id2label = dict(enumerate(names))
    return dict(id2label=id2label, label2id={label: index for index, label in id2label.items()})


def vit_hf_key(timm_key: str, config: ViTHFConfig) -> str:
    """vit_hf's name for a timm VisionTransformer parameter: the same, under `vit.` except for the heads (timm's
    stem-only hybrid keeps its stem layers directly in the backbone; vit_hf nests them under `stem`). Eva and
    parallel-block checkpoints are rewritten into VisionTransformer names first (their fused projections split)."""
    if timm_key.startswith(("head.", "head_dist.")):
        return timm_key
    if config.backbone_depths == []:
        timm_key = TIMM_STEM_KEY.sub(r"patch_embed.backbone.stem.\1.", timm_key)
    return f"vit.{timm_key}"


def timm_to_vit_hf_state_dict(timm_model: nn.Module, config: ViTHFConfig) -> dict[str, torch.Tensor]:
    """The timm model's weights under vit_hf's names (copies), with the pretrained head when the config keeps it and
    the position embeddings resampled to the config's grid (timm's bicubic, antialiased resampling)."""
    state_dict = {}
    timm_state = timm_model.state_dict()
    if type(timm_model).__name__ == "Eva":
        timm_state = eva_to_vit_hf_state_dict(timm_state, config)
    elif config.norm_placement == "parallel":
        timm_state = parallel_to_vit_hf_state_dict(timm_state, config)
    for key, value in timm_state.items():
        if key.startswith(("head.", "head_dist.")):
            if config.num_labels and value.shape[0] == config.num_labels:
                state_dict[key] = value.detach().clone()
            continue
        state_dict[vit_hf_key(key, config)] = value.detach().clone()
    if "vit.pos_embed" in state_dict:
        prefix = 0 if config.no_embed_class else config.num_prefix_tokens
        state_dict["vit.pos_embed"] = resample_pos_embed(
            state_dict["vit.pos_embed"], config.grid_size(), timm_grid_size(timm_model), prefix
        )
    return state_dict


def to_timm_checkpoint(model: ViTHFForImageClassification | ViTHFModel, path: str | os.PathLike) -> dict:
    """Write the model's weights as a timm checkpoint (safetensors, written atomically) and return the
    `timm.create_model` keyword arguments that rebuild the model and load it, with the same outputs:

        kwargs = to_timm_checkpoint(model, "vit.safetensors")
        timm_model = timm.create_model("vit_base_patch16_224", **kwargs)

    The kwargs set every architecture option (`timm_kwargs_from_config`: sizes, pooling, class and register tokens,
    norms, layer scale, a hybrid's backbone...), so the name only has to be a timm VisionTransformer with standard
    blocks, such as the one the model was converted from (`model.config.timm_model`). Without `pretrained` and
    `pretrained_cfg_overlay`, they build the model for `load_state_dict(strict=True)` of the file instead. The
    number of classes and the input size go into `pretrained_cfg_overlay` as well: timm drops a checkpoint's head
    whose size differs from its pretrained config's.

    Raises ValueError, writing nothing, naming what timm's VisionTransformer cannot express (overlapping patches,
    a patch-embedding bias together with a pre-norm, an activation or MLP width timm has no argument for).
    """
    prefix = "vit." if isinstance(model, ViTHFForImageClassification) else ""
    config = model.config
    num_classes = model.head.out_features if isinstance(getattr(model, "head", None), nn.Linear) else 0
    eva = needs_eva(config)
    kwargs = eva_kwargs_from_config(config, num_classes) if eva else timm_kwargs_from_config(config, num_classes)
    tensors = {}
    for key, value in model.state_dict().items():
        if not key.startswith(("head.", "head_dist.")):
            key = key.removeprefix(prefix)
            if config.backbone_depths == []:
                key = VIT_HF_STEM_KEY.sub(r"patch_embed.backbone.\1.", key)
        tensors[key] = value.detach().contiguous().cpu()
    if eva:
        tensors = vit_hf_to_eva_state_dict(tensors)
    elif config.norm_placement == "parallel":
        tensors = vit_hf_to_parallel_state_dict(tensors, config)
    path = Path(path)
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    input_size = (config.num_channels, *kwargs["img_size"])
    overlay = dict(file=str(path), num_classes=num_classes, input_size=input_size)
    return dict(pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def image_processor_from_timm(
    model_name_or_module: str | nn.Module, image_size: int | tuple[int, int] | None = None
) -> ViTHFImageProcessor:
    """The image processor reproducing timm's eval transform for this checkpoint: its mean, std, interpolation,
    crop_pct and crop mode, at its input size or at `image_size` (crop_pct then applies to the new size, as
    `timm.data.resolve_data_config({"input_size": (3, size, size)}, model=...)` does)."""
    args = {} if image_size is None else {"input_size": (3, *to_2tuple(image_size))}
    if isinstance(model_name_or_module, str):
        pretrained_cfg = timm_pretrained_cfg(model_name_or_module)
        if pretrained_cfg is None:
            raise ValueError(f"timm has no pretrained config (mean, std, crop) for {model_name_or_module!r}.")
        data_config = resolve_data_config(args, pretrained_cfg=pretrained_cfg.to_dict())
    else:
        data_config = resolve_data_config(args, model=model_name_or_module)
    return _processor_from_data_config(data_config)


def _processor_from_data_config(data_config: dict) -> ViTHFImageProcessor:
    _, height, width = data_config["input_size"]
    crop_pct, crop_mode = data_config["crop_pct"], data_config.get("crop_mode", "center")
    interpolation = data_config["interpolation"]
    if interpolation not in RESAMPLING:
        raise ValueError(
            f"timm interpolation {interpolation!r} has no PIL equivalent; expected one of {list(RESAMPLING)}."
        )
    scaled = (math.floor(height / crop_pct), math.floor(width / crop_pct))  # timm's resize before the crop
    if crop_mode == "squash":
        size = {"height": scaled[0], "width": scaled[1]}
    elif crop_mode == "center" and height == width:
        size = {"shortest_edge": scaled[0]}
    else:
        raise ValueError(
            f"timm crop_mode={crop_mode!r} at input size {height}x{width} is not supported (vit_hf reproduces 'center' "
            "crops of square inputs and 'squash')."
        )
    return ViTHFImageProcessor(
        do_resize=True,
        size=size,
        resample=RESAMPLING[interpolation],
        do_center_crop=True,
        crop_size={"height": height, "width": width},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(data_config["mean"]),
        image_std=list(data_config["std"]),
    )


__all__ = [
    "from_timm",
    "image_processor_from_timm",
    "load_timm_model",
    "read_timm_checkpoint",
    "timm_to_vit_hf_state_dict",
    "to_timm_checkpoint",
]
