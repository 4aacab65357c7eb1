"""vit_hf: Vision Transformers (plain and hybrid) for the Hugging Face stack, with exact timm weights."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoVideoProcessor

from .configuration_vit_hf import ViTHFConfig, list_presets
from .image_processing_vit_hf import ViTHFImageProcessor
from .modeling_vit_hf import ViTHFForImageClassification, ViTHFModel, ViTHFPreTrainedModel
from .timm.architecture import UnsupportedTimmModelError
from .timm.weights import from_timm, image_processor_from_timm, to_timm_checkpoint

__version__ = "0.1.0"

AutoConfig.register(ViTHFConfig.model_type, ViTHFConfig, exist_ok=True)
AutoModel.register(ViTHFConfig, ViTHFModel, exist_ok=True)
AutoModelForImageClassification.register(ViTHFConfig, ViTHFForImageClassification, exist_ok=True)
# Saving then writes `auto_map` and copies the code, so folders load with trust_remote_code=True without vit_hf.
ViTHFConfig.register_for_auto_class()
ViTHFModel.register_for_auto_class("AutoModel")
ViTHFForImageClassification.register_for_auto_class("AutoModelForImageClassification")
# The processor of converted timm checkpoints (timm's exact eval transform) loads the same two ways. It exists only
# as a PIL processor (the one that matches timm bit for bit); it also answers AutoImageProcessor's default
# "torchvision" request, which would otherwise load it with a warning that torchvision is missing.
AutoImageProcessor.register(
    ViTHFConfig,
    image_processor_classes={"pil": ViTHFImageProcessor, "torchvision": ViTHFImageProcessor},
    exist_ok=True,
)
ViTHFImageProcessor.register_for_auto_class("AutoImageProcessor")
# No video processor. Said locally because every pipeline also tries one, and transformers guesses a remote
# `ViTHFVideoProcessor` from the image processor's auto_map: `pipeline("image-classification", model=folder)` would
# then ask whether to run the folder's code ("[y/N]", waiting 15 s) although vit_hf is imported.
AutoVideoProcessor.register(ViTHFConfig, video_processor_classes={}, exist_ok=True)

__all__ = [
    "UnsupportedTimmModelError",
    "ViTHFConfig",
    "ViTHFForImageClassification",
    "ViTHFImageProcessor",
    "ViTHFModel",
    "ViTHFPreTrainedModel",
    "from_timm",
    "image_processor_from_timm",
    "list_presets",
    "to_timm_checkpoint",
]
