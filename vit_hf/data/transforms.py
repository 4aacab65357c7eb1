"""Image transforms for fine-tuning on `datasets` splits, on the CPU or on the accelerator.

Two paths give the model the same distribution of inputs:

- CPU path (`device_transforms=False`): each DataLoader worker decodes an example and produces the final
  normalised float tensor (C, S, S) with torch's antialiased resize.
- device path (`device_transforms=True`): workers only decode to uint8 at one common source size (3 KB per CIFAR
  image instead of 600 KB of floats at 224 px); `DeviceTransform` then crops, resizes, flips, augments and
  normalises whole batches where the model runs. Its resize is torch's own kernel written as two batched matrix
  products (see `resample.py`), so its eval output equals the CPU path's within float rounding.
"""

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Image
from PIL import Image as PILImage
from timm.data.random_erasing import RandomErasing
from torch.utils.data import default_collate
from torchvision.transforms import InterpolationMode, RandomResizedCrop, v2
from torchvision.transforms.functional import pil_modes_mapping
from torchvision.transforms.v2 import functional as TF

from .loading import SOURCE_INDEX, ImageClassificationData
from .resize import (
    INTERPOLATIONS,
    TORCHVISION_INTERPOLATION,
    crop_table,
    crop_weights,
    eval_matrices,
    eval_resize,
    resample,
    resized_crop,
    sample_crop_boxes,
)

AUTO_AUGMENTS = {"randaugment": v2.RandAugment, "trivialaugment": v2.TrivialAugmentWide}
# PIL.Image.Resampling values (an image processor's `resample`) -> interpolation names, through torchvision's table.
PIL_RESAMPLE_NAMES = {pil_modes_mapping[mode]: name for name, mode in TORCHVISION_INTERPOLATION.items()}
EXIF_ORIENTATION_TAG = 0x0112
EXIF_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height


@dataclass
class Normalization:
    """What the model expects: per-channel mean / std of pixels scaled to [0, 1], the resize kernel, and the eval
    crop (resize the shorter side to floor(size / crop_pct), centre-crop size x size; 1.0 keeps the whole short side).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    crop_pct: float = 1.0

    def __post_init__(self):
        self.mean = tuple(float(value) for value in self.mean)
        self.std = tuple(float(value) for value in self.std)
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need one value per channel, got {self.mean} and {self.std}.")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}.")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}.")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}.")

    @classmethod
    def from_image_processor(cls, processor) -> "Normalization":
        """Read a transformers image processor (e.g. the model's `ViTImageProcessor`): mean / std (rescaled to
        [0, 1] pixels when the processor does not rescale by 1/255), resample kernel, and crop_pct from
        size / crop_size."""
        resample = int(processor.resample)
        if resample not in PIL_RESAMPLE_NAMES:
            raise ValueError(
                f"The image processor resamples with PIL filter {resample}; supported are {PIL_RESAMPLE_NAMES}."
            )
        channels = len(processor.image_mean)
        mean, std = (
            (processor.image_mean, processor.image_std)
            if processor.do_normalize
            else ([0.0] * channels, [1.0] * channels)
        )
        # The processor computes (pixel * factor - mean) / std; we compute (pixel / 255 - mean') / std'.
        factor = 255.0 * (processor.rescale_factor if processor.do_rescale else 1.0)
        return cls(
            mean=tuple(value / factor for value in mean),
            std=tuple(value / factor for value in std),
            interpolation=PIL_RESAMPLE_NAMES[resample],
            crop_pct=_crop_pct(processor),
        )


def _crop_pct(processor) -> float:
    size = processor.size
    resized = size.get("shortest_edge") or min(size.get("height"), size.get("width"))
    if not processor.do_center_crop or processor.crop_size is None:
        return 1.0
    crop = min(processor.crop_size.get("height"), processor.crop_size.get("width"))
    return min(crop / resized, 1.0)


@dataclass
class Augmentation:
    """Training augmentation, with timm's / torchvision's meanings."""

    scale: tuple[float, float] = (0.08, 1.0)  # area fraction range of the random resized crop
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect-ratio range of the crop
    hflip: float = 0.5  # probability of a horizontal flip
    auto_augment: str | None = None  # None, "randaugment" or "trivialaugment" (torchvision's defaults)
    random_erasing: float = 0.0  # probability of erasing a random box with per-pixel noise (timm, mode "pixel")

    def __post_init__(self):
        self.scale = tuple(float(value) for value in self.scale)
        self.ratio = tuple(float(value) for value in self.ratio)
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {self.scale}.")
        if len(self.ratio) != 2 or not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must be (low, high) with 0 < low <= high, got {self.ratio}.")
        for name in ("hflip", "random_erasing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)!r}.")
        if self.auto_augment is not None and self.auto_augment not in AUTO_AUGMENTS:
            raise ValueError(f"auto_augment must be None or one of {sorted(AUTO_AUGMENTS)}, got {self.auto_augment!r}.")


class _Pixels:
    """The per-pixel steps both paths share around the resize.

    Each row of a resize matrix sums to one, so a per-channel affine map commutes with the resize: normalising
    (pixel / 255 - mean) / std on the small source image equals normalising the resized one, at a fraction of the
    cost. Auto-augment works on [0, 1] images, so when it is on, normalisation waits until after it.
    """

    def __init__(self, normalization: Normalization, augmentation: Augmentation | None = None):
        mean = torch.tensor(normalization.mean).view(-1, 1, 1)  # (C, 1, 1)
        std = torch.tensor(normalization.std).view(-1, 1, 1)
        auto_augment = augmentation.auto_augment if augmentation is not None else None
        self.auto_augment = AUTO_AUGMENTS[auto_augment]() if auto_augment else None
        self.random_erasing = augmentation.random_erasing if augmentation is not None else 0.0
        if self.auto_augment is None:  # work in normalised values from the start
            scale, shift = 1.0 / (255.0 * std), -mean / std
        else:  # work in [0, 1] until auto-augment is done
            scale, shift = torch.full_like(std, 1.0 / 255.0), torch.zeros_like(mean)
        low, high = shift, 255.0 * scale + shift  # where pixel values 0 and 255 land
        self._cpu = dict(mean=mean, std=std, scale=scale, shift=shift, low=low, high=high)
        self._on_device = {}

    def constants(self, device: torch.device) -> dict[str, torch.Tensor]:
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = {name: value.to(device) for name, value in self._cpu.items()}
        return self._on_device[key]

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float in the working range (normalised, or [0, 1] with auto-augment)."""
        c = self.constants(images.device)
        return images.float().mul_(c["scale"]).add_(c["shift"])

    def clamp_(self, images: torch.Tensor) -> torch.Tensor:
        """Bicubic resizing overshoots; clip to what pixels in [0, 255] map to, as a uint8 resize would."""
        c = self.constants(images.device)
        torch.maximum(images, c["low"], out=images)
        return torch.minimum(images, c["high"], out=images)

    def finish_train_(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) resized images in the working range -> normalised, augmented per image."""
        self.clamp_(images)
        if self.auto_augment is not None:
            for image in images:  # one random op sequence per image, as on the CPU path
                image.copy_(self.auto_augment(image))
            c = self.constants(images.device)
            images.sub_(c["mean"]).div_(c["std"])
        if self.random_erasing > 0:
            RandomErasing(self.random_erasing, mode="pixel", device=images.device)(images)
        return images


class TrainImageTransform:
    """CPU path, training: uint8 (C, H, W) -> normalised float (C, S, S) via random resized crop, flip, optional
    auto-augment and random erasing."""

    def __init__(self, image_size: int, normalization: Normalization, augmentation: Augmentation):
        self.image_size = image_size
        self.augmentation = augmentation
        self.interpolation = normalization.interpolation
        self.pixels = _Pixels(normalization, augmentation)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        top, left, height, width = RandomResizedCrop.get_params(image, self.augmentation.scale, self.augmentation.ratio)
        crop = image[:, top : top + height, left : left + width]
        if torch.rand(()) < self.augmentation.hflip:
            crop = crop.flip(-1)  # flipping the small crop equals flipping the output: the kernels are symmetric
        resized = resized_crop(self.pixels.to_float(crop), self.image_size, self.interpolation)
        return self.pixels.finish_train_(resized[None])[0]


class EvalImageTransform:
    """CPU path, evaluation: uint8 (C, H, W) -> normalised float (C, S, S) via resize + centre crop (crop_pct)."""

    def __init__(self, image_size: int, normalization: Normalization):
        self.image_size = image_size
        self.crop_pct = normalization.crop_pct
        self.interpolation = normalization.interpolation
        self.pixels = _Pixels(normalization)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        resized = eval_resize(self.pixels.to_float(image), self.image_size, self.crop_pct, self.interpolation)
        return self.pixels.clamp_(resized)


class SourceImageTransform:
    """Device path, in the workers: uint8 (C, H, W) -> uint8 (C, P, P) at the common source size P. Images already
    that size pass through untouched; others are resized (shorter side to P) and centre-cropped, on the CPU."""

    def __init__(self, source_size: int | None):
        self.source_size = source_size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.source_size is None or tuple(image.shape[-2:]) == (self.source_size, self.source_size):
            return image
        resized = TF.resize(image, self.source_size, interpolation=InterpolationMode.BICUBIC, antialias=True)
        return TF.center_crop(resized, [self.source_size, self.source_size])


def _to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Grayscale, palette, RGBA, CMYK, ... -> RGB (alpha is dropped, as transformers' and timm's loaders do). Wide
    grayscale modes are scaled, not clipped (PIL's own conversion clips them to two or three grey levels)."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        image = _wide_to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # the direct P -> RGB conversion warns about palette transparency
    return image.convert("RGB")


def _wide_to_8bit(image: PILImage.Image) -> PILImage.Image:
    """16-bit (`I;16*`, and `I`, as which PIL opens 16-bit PNGs, when its values fit 0..65535) scale 0..65535 to
    0..255; floats (`F`) in 0..1 scale to 0..255; any other range is stretched from its minimum to its maximum."""
    values = np.asarray(image, dtype=np.float64)  # (H, W)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        scaled = values / 257.0  # 65535 -> 255 exactly
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    else:
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return PILImage.fromarray(np.round(scaled).astype(np.uint8))  # mode L


_DECODER = Image()


def decode_rgb(value: dict, split: str, row: int) -> torch.Tensor:
    """An encoded image (datasets' {"bytes", "path"}) -> uint8 RGB tensor (3, H, W); errors name the row."""
    try:
        pixels = np.array(_to_rgb(_DECODER.decode_example(value)))  # (H, W, 3)
    except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, ... for broken files
        origin = value.get("path") or "embedded bytes"
        raise ValueError(f"Cannot decode the image at row {row} of split {split!r} ({origin}): {error}") from error
    return torch.from_numpy(pixels).permute(2, 0, 1)  # (3, H, W)


class ExampleTransform:
    """The `Dataset.with_transform` callable: rows -> {"pixel_values": [tensor, ...], "labels": [int, ...]}.
    A plain picklable object, so it runs in DataLoader workers under any start method."""

    def __init__(self, image_column: str, label_column: str, split: str, image_transform):
        self.image_column = image_column
        self.label_column = label_column
        self.split = split
        self.image_transform = image_transform

    def __call__(self, batch: dict) -> dict:
        missing = [column for column in (self.image_column, self.label_column, SOURCE_INDEX) if column not in batch]
        if missing:
            raise KeyError(
                f"The {self.split} split's rows arrive without the column(s) {missing} that its transform turns into "
                f"pixel_values and labels (they have {sorted(batch)}). Under transformers.Trainer, pass "
                "TrainingArguments(remove_unused_columns=False): by default the Trainer drops every column the "
                "model's forward does not name before the transform runs."
            )
        values, rows = batch[self.image_column], batch[SOURCE_INDEX]
        images = (decode_rgb(value, self.split, row) for value, row in zip(values, rows, strict=True))
        return {
            "pixel_values": [self.image_transform(image) for image in images],
            "labels": list(batch[self.label_column]),
        }


def attach_transforms(
    data: ImageClassificationData,
    image_size: int,
    normalization: Normalization,
    augmentation: Augmentation,
    device_transforms: bool = False,
    source_size: int | None = None,
) -> None:
    """Set lazy transforms on every split of `data` (replacing any set before). The splits are replaced by new
    `Dataset` objects: build DataLoaders after this call.

    CPU path: items become {"pixel_values": float (C, S, S) normalised, "labels": int}; train gets `augmentation`,
    validation and test the eval resize + centre crop. Device path: items become {"pixel_values": uint8 (C, P, P),
    "labels": int}; pass batches through `DeviceTransform(..., train=True)` for train and `train=False` for the
    others. The device path needs one source size P: by default every image must already share one size (checked
    here by reading image headers); `source_size=P` resizes each image to P x P on the CPU first instead.
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}.")
    if source_size is not None and not device_transforms:
        raise ValueError("source_size only applies to the device path: pass device_transforms=True or drop it.")
    if source_size is not None and (not isinstance(source_size, int) or source_size < 1):
        raise ValueError(f"source_size must be a positive int, got {source_size!r}.")
    if device_transforms:
        if source_size is None:
            common_image_size(data)  # raises, naming two different sizes, when there is no common size
        transforms = dict.fromkeys(("train", "validation", "test"), SourceImageTransform(source_size))
    else:
        evaluation = EvalImageTransform(image_size, normalization)
        transforms = {
            "train": TrainImageTransform(image_size, normalization, augmentation),
            "validation": evaluation,
            "test": evaluation,
        }
    columns = [data.image_column, data.label_column, SOURCE_INDEX]
    for name, split in data.splits().items():
        example_transform = ExampleTransform(
            data.image_column, data.label_column, str(split.split or name), transforms[name]
        )
        undecoded = split.cast_column(data.image_column, Image(decode=False))  # we decode, to name broken rows
        setattr(data, name, undecoded.with_transform(example_transform, columns=columns))


def common_image_size(data: ImageClassificationData) -> tuple[int, int]:
    """The (height, width) all images of all splits share, from their headers (no pixel decoding)."""
    first = None
    for name, split in data.splits().items():
        split_name = str(split.split or name)
        rows = split.select_columns([data.image_column, SOURCE_INDEX])
        rows = rows.cast_column(data.image_column, Image(decode=False)).with_format("arrow")
        for batch in rows.iter(batch_size=1024):
            values, source_rows = batch.column(data.image_column).to_pylist(), batch.column(SOURCE_INDEX).to_pylist()
            for value, row in zip(values, source_rows, strict=True):
                size = _header_size(value, split_name, row)
                if first is None:
                    first = (size, split_name, row)
                elif size != first[0]:
                    raise ValueError(
                        f"The device path needs images of one size, but row {first[2]} of split {first[1]!r} is "
                        f"{first[0][0]}x{first[0][1]} and row {row} of split {split_name!r} is {size[0]}x{size[1]} "
                        f"(height x width). Pass source_size=N to resize every image to N x N on the CPU first, or "
                        f"use device_transforms=False."
                    )
    return first[0]


def _header_size(value: dict, split: str, row: int) -> tuple[int, int]:
    try:
        with PILImage.open(io.BytesIO(value["bytes"]) if value["bytes"] is not None else value["path"]) as image:
            width, height = image.size
            transposed = image.getexif().get(EXIF_ORIENTATION_TAG) in EXIF_TRANSPOSED  # datasets applies it
    except Exception as error:  # as in decode_rgb
        origin = value.get("path") or "embedded bytes"
        raise ValueError(f"Cannot read the image at row {row} of split {split!r} ({origin}): {error}") from error
    return (width, height) if transposed else (height, width)


def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
    """Stack examples: {"pixel_values": (B, ...), "labels": LongTensor (B,)}."""
    shapes = {tuple(example["pixel_values"].shape) for example in batch}
    if len(shapes) > 1:
        raise ValueError(
            f"Cannot stack images of different shapes {sorted(shapes)} into one batch; on the device path pass "
            f"source_size=N to attach_transforms."
        )
    return {
        # default_collate stacks straight into shared memory inside a DataLoader worker: one copy fewer.
        "pixel_values": default_collate([example["pixel_values"] for example in batch]),
        "labels": torch.tensor([example["labels"] for example in batch], dtype=torch.long),
    }


@contextlib.contextmanager
def _full_float32(device: torch.device):
    """The resize matmuls run in true float32 even where the training script enables TF32 / bfloat16 matmuls or
    autocast, so device and CPU outputs agree to float rounding (their cost is negligible next to the model's)."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(previous)


class DeviceTransform(torch.nn.Module):
    """The device path's second half: a uint8 batch (B, C, H, W) on the accelerator -> the model input (B, C, S, S)
    float32, normalised.

    train=True: random resized crop, horizontal flip, optional auto-augment and random erasing, each drawn per
    image from the same distributions as the CPU path. train=False: resize + centre crop (crop_pct), equal to the CPU
    path's eval transform within float rounding. The module holds no parameters (call it on the batches; there is
    nothing to hand to `accelerator.prepare` or DDP); it caches resize matrices per source size and device.
    """

    def __init__(self, image_size: int, normalization: Normalization, augmentation: Augmentation | None, train: bool):
        super().__init__()
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}.")
        if train and augmentation is None:
            raise ValueError("A training DeviceTransform needs an Augmentation (use Augmentation() for the defaults).")
        self.image_size = image_size
        self.normalization = normalization
        self.augmentation = augmentation
        self.is_train = train
        self.pixels = _Pixels(normalization, augmentation if train else None)
        # ("crop" | "eval", source height, source width, device) -> resize weights. A crop table holds
        # source_size**2 * image_size floats per side: 1.5 MB for 32 px sources at 384, 100 MB for 256 px ones.
        self._matrices = {}

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dtype != torch.uint8 or pixel_values.dim() != 4:
            raise ValueError(
                f"DeviceTransform expects a uint8 batch (B, C, H, W) from attach_transforms(..., "
                f"device_transforms=True), got {pixel_values.dtype} of shape {tuple(pixel_values.shape)}."
            )
        if pixel_values.shape[1] != len(self.normalization.mean):
            raise ValueError(
                f"Got {pixel_values.shape[1]} channels but the normalization has {len(self.normalization.mean)}."
            )
        images = self.pixels.to_float(pixel_values)  # (B, C, H, W)
        with _full_float32(images.device):
            if self.is_train:
                return self.pixels.finish_train_(self._random_resized_crop(images))
            rows, columns = self._eval_matrices(*images.shape[-2:], images.device)
            return self.pixels.clamp_(resample(images, rows, columns))

    def _random_resized_crop(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        row_table, column_table = self._crop_tables(height, width, images.device)
        boxes = sample_crop_boxes(batch, height, width, self.augmentation.scale, self.augmentation.ratio, images.device)
        rows = crop_weights(row_table, boxes[:, 0], boxes[:, 2])  # (B, S, H)
        columns = crop_weights(column_table, boxes[:, 1], boxes[:, 3])  # (B, S, W)
        flip = torch.rand(batch, device=images.device) < self.augmentation.hflip
        columns = torch.where(flip[:, None, None], columns.flip(1), columns)  # reversed output columns = a flip
        return resample(images, rows, columns)

    def _crop_tables(self, height: int, width: int, device: torch.device):
        key = ("crop", height, width, str(device))
        if key not in self._matrices:
            rows = crop_table(height, self.image_size, self.normalization.interpolation, device)
            columns = (
                rows
                if width == height
                else crop_table(width, self.image_size, self.normalization.interpolation, device)
            )
            self._matrices[key] = (rows, columns)
        return self._matrices[key]

    def _eval_matrices(self, height: int, width: int, device: torch.device):
        key = ("eval", height, width, str(device))
        if key not in self._matrices:
            normalization = self.normalization
            rows, columns = eval_matrices(  # (S, H), (S, W)
                height, width, self.image_size, normalization.crop_pct, normalization.interpolation
            )
            self._matrices[key] = (rows.to(device), columns.to(device))
        return self._matrices[key]


class MixupCutmix:
    """MixUp / CutMix on a batch (torchvision's), with timm's Mixup arguments: with probability `prob` the batch is
    mixed, by CutMix with probability `switch_prob` when both are enabled (alpha > 0); targets are one-hot, mixed,
    then label-smoothed. Returns (images, soft targets (B, num_classes) float32)."""

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
    ):
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(
                f"mixup_alpha and cutmix_alpha must be >= 0 (0 disables one), got {mixup_alpha}, {cutmix_alpha}."
            )
        for name, value in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {value!r}.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}.")
        self.num_classes = num_classes
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.mixup = v2.MixUp(alpha=mixup_alpha, num_classes=num_classes) if mixup_alpha > 0 else None
        self.cutmix = v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes) if cutmix_alpha > 0 else None

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mix = self._pick()
        if mix is None:
            targets = torch.nn.functional.one_hot(labels, self.num_classes).float()
        else:
            pixel_values, targets = mix(pixel_values, labels)
        return pixel_values, targets * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes

    def _pick(self):
        if (self.mixup is None and self.cutmix is None) or torch.rand(()) >= self.prob:
            return None
        if self.mixup is not None and self.cutmix is not None:
            return self.cutmix if torch.rand(()) < self.switch_prob else self.mixup
        return self.mixup or self.cutmix
