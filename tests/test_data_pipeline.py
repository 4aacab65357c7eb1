"""The recipe's data pipeline: the training loader's order and augmentation are functions of (seed, epoch, index)
only, the device path's loader fetches a batch in one read without changing what it returns, and a chosen resize
kernel reaches the crops, the evaluation resize and the saved image processor."""

import random

import pytest
import torch
from transformers.image_utils import PILImageResampling

from tests.data_utils import write_cifar_like
from vit_hf.data import load_image_classification
from vit_hf.data.transforms import Augmentation, Normalization, attach_transforms
from vit_hf.image_processing_vit_hf import make_image_processor
from vit_hf.training.arguments import parse_arguments
from vit_hf.training.data_pipeline import build_data_pipeline, dataloader

NORMALIZATION = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic", crop_pct=1.0)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return write_cifar_like(tmp_path_factory.mktemp("cifar"), n_train=120, n_test=10)


def epoch_batches(cifar, device_transforms: bool, random_items: bool, epoch: int) -> list[dict]:
    data = load_image_classification(str(cifar), validation_fraction=0.1, seed=0)
    attach_transforms(data, 16, NORMALIZATION, Augmentation(), device_transforms=device_transforms)
    loader = dataloader(data.train, 8, seed=3, workers=0, pin_memory=False, random_items=random_items)
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_device_path_batched_fetch_returns_the_per_item_batches(cifar):
    per_item = epoch_batches(cifar, device_transforms=True, random_items=True, epoch=1)
    batched = epoch_batches(cifar, device_transforms=True, random_items=False, epoch=1)
    assert len(batched) == len(per_item) == 108 // 8  # equal batches, the last partial one dropped
    for one, other in zip(per_item, batched, strict=True):
        assert one["pixel_values"].dtype == torch.uint8
        assert torch.equal(one["pixel_values"], other["pixel_values"])
        assert torch.equal(one["labels"], other["labels"])


def test_augmented_items_depend_on_seed_epoch_and_index_only(cifar):
    first = epoch_batches(cifar, device_transforms=False, random_items=True, epoch=2)
    torch.manual_seed(123)  # the global random state must not matter ...
    random.seed(123)
    state = torch.get_rng_state()
    again = epoch_batches(cifar, device_transforms=False, random_items=True, epoch=2)
    assert torch.equal(torch.get_rng_state(), state)  # ... nor be consumed
    for one, other in zip(first, again, strict=True):
        assert torch.equal(one["pixel_values"], other["pixel_values"])
    next_epoch = epoch_batches(cifar, device_transforms=False, random_items=True, epoch=3)
    assert not torch.equal(first[0]["labels"], next_epoch[0]["labels"])  # another epoch, another order


@pytest.mark.parametrize(
    ("flags", "kernel", "resample"),
    [
        ([], "bicubic", PILImageResampling.BICUBIC),
        (["--interpolation", "bilinear"], "bilinear", PILImageResampling.BILINEAR),
    ],
)
def test_interpolation_defaults_to_the_source_processor_and_can_be_chosen(cifar, flags, kernel, resample):
    _, data_args, args = parse_arguments(["--dataset", str(cifar), "--dataloader_num_workers", "0", *flags])
    data = load_image_classification(str(cifar), validation_fraction=0.1, seed=0)
    source = make_image_processor(224)  # timm's ViTs: bicubic
    pipeline = build_data_pipeline(data, source, 16, data_args, args, torch.device("cpu"))
    assert pipeline.train_transform.normalization.interpolation == kernel
    assert pipeline.eval_transform.normalization.interpolation == kernel
    assert pipeline.processor.resample == resample  # saved with the model: its evaluation transform
