"""Image-classification data with `datasets`: loading and checks, decoding, CPU and device transforms, samplers.
Imports nothing else of vit_hf."""

from .loading import SOURCE_INDEX, ImageClassificationData, load_image_classification

__all__ = ["SOURCE_INDEX", "ImageClassificationData", "load_image_classification"]
