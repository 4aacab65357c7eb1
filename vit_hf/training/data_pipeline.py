"""From `--dataset` to DataLoaders: the splits, their transforms (per image on the CPU, or per batch on the device
from uint8 images), MixUp/CutMix and the loaders with a reproducible order."""

import dataclasses
import logging

import torch
from torch.utils.data import DataLoader
from transformers.image_processing_utils import BaseImageProcessor

from ..data import ImageClassificationData, load_image_classification
from ..data.samplers import EpochShuffleSampler, PerExampleSeeded
from ..data.transforms import (
    Augmentation,
    DeviceTransform,
    MixupCutmix,
    Normalization,
    attach_transforms,
    collate,
    common_image_size,
)
from ..image_processing_vit_hf import make_image_processor
from .arguments import DataArguments, TrainingArguments

logger = logging.getLogger(__name__)


def get_data(data_args: DataArguments, seed: int) -> ImageClassificationData:
    data = load_image_classification(
        data_args.dataset,
        image_column=data_args.image_column,
        label_column=data_args.label_column,
        validation_fraction=data_args.validation_fraction,
        seed=seed,
    )
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_eval_samples,
    }
    for split, limit in limits.items():
        dataset = getattr(data, split)
        if limit is not None and limit < 1 and dataset is not None:
            flag = "--max_train_samples" if split == "train" else "--max_eval_samples"
            raise ValueError(f"{flag} {limit} leaves the {split} split without examples; give at least 1.")
        if limit is not None and dataset is not None and limit < len(dataset):
            setattr(data, split, dataset.shuffle(seed=seed).select(range(limit)))
    return data


def uses_device_transforms(setting: str, data: ImageClassificationData) -> bool:
    """`auto`: on when every image has one size (CIFAR: 32x32), so uint8 batches can travel to the device."""
    if setting != "auto":
        return setting == "on"
    try:
        common_image_size(data)
    except ValueError:
        return False
    return True


def dataloader(
    dataset, batch_size: int, seed: int | None, workers: int, pin_memory: bool, random_items: bool = True
) -> DataLoader:
    """Training loader when `seed` is given (shuffled by (seed, epoch), per-example seeded augmentation when
    `random_items`, equal batches); otherwise an evaluation loader that sees every example in order."""
    train = seed is not None
    return DataLoader(
        PerExampleSeeded(dataset, seed, random_items) if train else dataset,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(dataset), seed) if train else None,
        drop_last=train,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        # Its own generator: creating an iterator must not draw from the global one that augmentation and stochastic
        # depth use, or a resumed run would drift from an uninterrupted one.
        generator=torch.Generator().manual_seed(seed or 0),
    )


@dataclasses.dataclass
class DataPipeline:
    processor: BaseImageProcessor  # saved with the model: the evaluation transform at the training size
    train_loader: DataLoader
    validation_loader: DataLoader
    test_loader: DataLoader | None
    train_transform: DeviceTransform | None  # None: the loaders already return model-ready pixels
    eval_transform: DeviceTransform | None
    mixup: MixupCutmix | None


def build_data_pipeline(
    data: ImageClassificationData,
    source_processor: BaseImageProcessor,
    image_size: int | tuple[int, int],
    data_args: DataArguments,
    args: TrainingArguments,
    device: torch.device,
) -> DataPipeline:
    # The source's normalisation and resize kernel (unless one is chosen), at the training size and evaluation crop.
    source = Normalization.from_image_processor(source_processor)
    interpolation = data_args.interpolation or source.interpolation
    normalization = dataclasses.replace(source, crop_pct=data_args.eval_crop_pct, interpolation=interpolation)
    processor = make_image_processor(image_size, source.mean, source.std, data_args.eval_crop_pct, interpolation)
    augmentation = Augmentation(
        scale=(data_args.crop_scale_min, 1.0),
        hflip=data_args.hflip,
        auto_augment=data_args.auto_augment,
        random_erasing=data_args.random_erasing,
    )
    on_device = uses_device_transforms(data_args.device_transforms, data)
    attach_transforms(data, image_size, normalization, augmentation, device_transforms=on_device)
    train_transform = eval_transform = None
    if on_device:
        train_transform = DeviceTransform(image_size, normalization, augmentation, train=True).to(device)
        eval_transform = DeviceTransform(image_size, normalization, augmentation, train=False).to(device)
    where = f"batched on {torch.device(device).type.upper()}, from uint8 batches" if on_device else "per image"
    logger.info("transforms run %s", where)
    mixup = None
    if data_args.mixup_alpha > 0 or data_args.cutmix_alpha > 0:
        mixup = MixupCutmix(
            data.num_labels,
            mixup_alpha=data_args.mixup_alpha,
            cutmix_alpha=data_args.cutmix_alpha,
            label_smoothing=args.label_smoothing,
        )
    workers, pin = data_args.dataloader_num_workers, device.type == "cuda"
    # On the device path the loaders only decode: the random draws happen on the device, batched.
    train_loader = dataloader(data.train, args.per_device_train_batch_size, args.seed, workers, pin, not on_device)
    if len(train_loader) == 0:
        raise ValueError(
            f"The training split has {len(data.train)} examples, fewer than one batch of "
            f"{args.per_device_train_batch_size}: lower --per_device_train_batch_size."
        )
    eval_batch = args.per_device_eval_batch_size
    validation_loader = dataloader(data.validation, eval_batch, None, workers, pin)
    test_loader = dataloader(data.test, eval_batch, None, workers, pin) if data.test is not None else None
    return DataPipeline(processor, train_loader, validation_loader, test_loader, train_transform, eval_transform, mixup)
