"""Transforms: processor settings, the CPU and device paths (and their agreement), batching, MixUp / CutMix."""

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms.v2 import functional as TF
from transformers import ViTImageProcessor

from tests.data_utils import cifar_like_images, write_cifar_like
from vit_hf.data import load_image_classification
from vit_hf.data.resize import SMALL_SOURCE, crop_table, crop_weights, resample, resized_crop, sample_crop_boxes
from vit_hf.data.transforms import (
    Augmentation,
    DeviceTransform,
    EvalImageTransform,
    MixupCutmix,
    Normalization,
    TrainImageTransform,
    attach_transforms,
    collate,
    decode_rgb,
)
from vit_hf.image_processing_vit_hf import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, make_image_processor

INCEPTION = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic", crop_pct=0.875)
IMAGENET = Normalization(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, interpolation="bilinear", crop_pct=0.9)
MODES = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


@pytest.fixture(scope="module")
def cifar_copy(tmp_path_factory):
    return write_cifar_like(tmp_path_factory.mktemp("cifar10"), n_train=100, n_test=20)


@pytest.fixture
def data(cifar_copy, tmp_path):
    return load_image_classification(str(cifar_copy), validation_fraction=0.2, cache_dir=str(tmp_path / "cache"))


@pytest.fixture
def cifar_batch():
    """16 CIFAR-like uint8 images (B, 3, 32, 32)."""
    return torch.from_numpy(cifar_like_images(np.arange(16) % 10, 32, seed=5)).permute(0, 3, 1, 2).contiguous()


def value_range(normalization):
    mean, std = torch.tensor(normalization.mean), torch.tensor(normalization.std)
    return (-mean / std).min().item(), ((1 - mean) / std).max().item()


# --- normalisation settings ----------------------------------------------------------------------------------------


def test_normalization_from_the_models_image_processor():
    processor = make_image_processor(224, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, crop_pct=0.875)
    normalization = Normalization.from_image_processor(processor)
    assert (normalization.mean, normalization.std) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    assert normalization.interpolation == "bicubic" and normalization.crop_pct == pytest.approx(224 / 256)
    plain = Normalization.from_image_processor(ViTImageProcessor())  # transformers' defaults: bilinear, 224x224
    assert plain == Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", 1.0)


def test_normalization_follows_processors_that_do_not_rescale_or_normalize():
    unscaled = ViTImageProcessor(do_rescale=False, image_mean=[127.5] * 3, image_std=[127.5] * 3, resample=3)
    assert Normalization.from_image_processor(unscaled).mean == pytest.approx((0.5, 0.5, 0.5))
    assert Normalization.from_image_processor(unscaled).std == pytest.approx((0.5, 0.5, 0.5))
    raw = ViTImageProcessor(do_normalize=False)
    assert Normalization.from_image_processor(raw).std == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="PIL filter 1"):
        Normalization.from_image_processor(ViTImageProcessor(resample=1))  # LANCZOS


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Normalization((0.5, 0.5), (0.5, 0.5, 0.5)), "one value per channel"),
        (lambda: Normalization((0.5,), (0.0,)), "std must be positive"),
        (lambda: Normalization((0.5,), (0.5,), interpolation="lanczos"), "interpolation must be one of"),
        (lambda: Normalization((0.5,), (0.5,), crop_pct=1.2), r"crop_pct must be in \(0, 1\]"),
        (lambda: Augmentation(scale=(0.5, 0.2)), "scale must be"),
        (lambda: Augmentation(ratio=(0.0, 1.0)), "ratio must be"),
        (lambda: Augmentation(hflip=1.5), "hflip is a probability"),
        (lambda: Augmentation(random_erasing=-0.1), "random_erasing is a probability"),
        (lambda: Augmentation(auto_augment="autoaugment"), "auto_augment must be None or one of"),
    ],
)
def test_invalid_settings_name_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# --- the CPU path --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [224, 384])
def test_cpu_path_outputs_at_224_and_384(data, size):
    attach_transforms(data, size, INCEPTION, Augmentation())
    low, high = value_range(INCEPTION)
    for split in (data.train, data.validation, data.test):
        example = split[0]
        assert set(example) == {"pixel_values", "labels"}
        pixels = example["pixel_values"]
        assert pixels.shape == (3, size, size) and pixels.dtype == torch.float32
        assert low <= pixels.min() and pixels.max() <= high and pixels.std() > 0.05
        assert isinstance(example["labels"], int) and 0 <= example["labels"] < 10
    first, again = data.train[0]["pixel_values"], data.train[0]["pixel_values"]
    assert not torch.equal(first, again)  # train is augmented afresh at each read
    assert torch.equal(data.validation[0]["pixel_values"], data.validation[0]["pixel_values"])


def test_real_digits_through_both_paths():
    data = load_image_classification("digits")
    attach_transforms(data, 32, INCEPTION, Augmentation())
    cpu = torch.stack([data.test[i]["pixel_values"] for i in range(8)])
    assert cpu.shape == (8, 3, 32, 32)
    assert torch.equal(cpu[:, 0], cpu[:, 1]) and torch.equal(cpu[:, 0], cpu[:, 2])  # grayscale: equal channels
    attach_transforms(data, 32, INCEPTION, Augmentation(), device_transforms=True)
    sources = collate([data.test[i] for i in range(8)])["pixel_values"]
    assert sources.shape == (8, 3, 8, 8)
    torch.testing.assert_close(DeviceTransform(32, INCEPTION, None, train=False)(sources), cpu, atol=1e-5, rtol=1e-5)


def test_eval_transform_is_resize_then_centre_crop():
    image = torch.from_numpy(cifar_like_images(np.array([3]), 32)[0]).permute(2, 0, 1)
    out = EvalImageTransform(224, IMAGENET)(image)
    # crop_pct 0.9: resize to floor(224 / 0.9) = 248, crop 12 px from each side; (x / 255 - mean) / std, clipped.
    resized = TF.resize(image.float() / 255, [248, 248], interpolation=InterpolationMode.BILINEAR, antialias=True)
    expected = TF.normalize(resized[:, 12:236, 12:236].clamp(0, 1), IMAGENET.mean, IMAGENET.std)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "RGB"])
def test_any_colour_mode_decodes_to_rgb(mode):
    rgb = PILImage.fromarray(np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8))
    image = rgb.convert(mode)
    if mode == "P":
        image.info["transparency"] = 0  # a palette entry marked transparent
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode == "CMYK" else "PNG")
    pixels = decode_rgb({"bytes": buffer.getvalue(), "path": None}, "train", 0)
    assert pixels.shape == (3, 7, 9) and pixels.dtype == torch.uint8
    if mode == "RGBA":  # alpha is dropped, colour kept
        assert torch.equal(pixels, torch.from_numpy(np.array(rgb)).permute(2, 0, 1))


def test_broken_image_names_its_row_and_split(data):
    broken = data.train.map(
        lambda row: {"img": {"bytes": b"not an image", "path": None}} if row["source_index"] == 7 else {},
    )
    data.train = broken
    position = data.train["source_index"][:].index(7)
    attach_transforms(data, 32, INCEPTION, Augmentation())
    with pytest.raises(ValueError, match=r"Cannot decode the image at row 7 of split 'train' \(embedded bytes\)"):
        data.train[position]


def test_workers_receive_the_transforms(data):
    attach_transforms(data, 64, INCEPTION, Augmentation())
    assert pickle.loads(pickle.dumps(data.validation))[3]["pixel_values"].shape == (3, 64, 64)
    loader = torch.utils.data.DataLoader(data.train, batch_size=8, num_workers=2, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (8, 3, 64, 64) and batch["labels"].dtype == torch.long


def test_collate_and_its_error():
    batch = collate(
        [{"pixel_values": torch.zeros(3, 4, 4), "labels": 1}, {"pixel_values": torch.ones(3, 4, 4), "labels": 0}]
    )
    assert batch["pixel_values"].shape == (2, 3, 4, 4) and batch["labels"].tolist() == [1, 0]
    assert batch["labels"].dtype == torch.long
    with pytest.raises(ValueError, match=r"different shapes.*source_size"):
        collate(
            [{"pixel_values": torch.zeros(3, 4, 4), "labels": 1}, {"pixel_values": torch.zeros(3, 5, 4), "labels": 0}]
        )


# --- the device path's kernels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("height, width, size", [(32, 32, 224), (40, 28, 96), (64, 64, 48)])
def test_batched_crop_resize_equals_torchvision_per_image(interpolation, height, width, size):
    torch.manual_seed(0)
    images = torch.rand(6, 3, height, width) * 255
    boxes = sample_crop_boxes(6, height, width, (0.08, 1.0), (3 / 4, 4 / 3))
    rows = crop_weights(crop_table(height, size, interpolation, "cpu"), boxes[:, 0], boxes[:, 2])
    columns = crop_weights(crop_table(width, size, interpolation, "cpu"), boxes[:, 1], boxes[:, 3])
    batched = resample(images, rows, columns)
    for image, (top, left, box_h, box_w), out in zip(images, boxes.tolist(), batched, strict=True):
        expected = TF.resized_crop(image, top, left, box_h, box_w, [size, size], MODES[interpolation], antialias=True)
        torch.testing.assert_close(out, expected, atol=2e-3, rtol=1e-5)  # float rounding of values up to 255


@pytest.mark.parametrize("height, width", [(24, 20), (SMALL_SOURCE + 36, SMALL_SOURCE + 10)])
def test_per_image_resize_equals_torchvision_for_small_and_large_sources(height, width):
    image = torch.rand(3, height, width) * 255
    for interpolation, mode in MODES.items():
        expected = TF.resize(image, [96, 96], interpolation=mode, antialias=True)
        torch.testing.assert_close(resized_crop(image, 96, interpolation), expected, atol=2e-3, rtol=1e-5)


def test_crop_boxes_follow_torchvisions_random_resized_crop():
    torch.manual_seed(0)
    for height, width, ratio in [(32, 32, (3 / 4, 4 / 3)), (20, 60, (3 / 4, 4 / 3)), (32, 32, (2.0, 3.0))]:
        ours = sample_crop_boxes(4000, height, width, (0.08, 1.0), ratio).double()
        image = torch.empty(3, height, width)
        reference = torch.tensor(
            [RandomResizedCrop.get_params(image, (0.08, 1.0), ratio) for _ in range(4000)]
        ).double()
        for boxes in (ours, reference):
            assert (boxes[:, 2] >= 1).all() and (boxes[:, 0] + boxes[:, 2] <= height).all()
            assert (boxes[:, 3] >= 1).all() and (boxes[:, 1] + boxes[:, 3] <= width).all()

        def stats(boxes, height=height, width=width):
            area = boxes[:, 2] * boxes[:, 3] / (height * width)
            centre_y = (boxes[:, 0] + boxes[:, 2] / 2) / height
            centre_x = (boxes[:, 1] + boxes[:, 3] / 2) / width
            return torch.stack(
                [area.mean(), area.std(), torch.log(boxes[:, 3] / boxes[:, 2]).mean(), centre_y.std(), centre_x.std()]
            )

        # Standard errors of these statistics over 4000 boxes are below 0.005.
        torch.testing.assert_close(stats(ours), stats(reference), atol=0.02, rtol=0)


def test_eval_is_the_same_on_both_paths(data):
    for size, normalization in [
        (224, INCEPTION),
        (384, IMAGENET),
        (224, Normalization((0.5,) * 3, (0.5,) * 3, "bicubic", 1.0)),
    ]:
        attach_transforms(data, size, normalization, Augmentation())
        cpu = torch.stack([data.validation[i]["pixel_values"] for i in range(4)])
        attach_transforms(data, size, normalization, Augmentation(), device_transforms=True)
        sources = collate([data.validation[i] for i in range(4)])["pixel_values"]
        assert sources.dtype == torch.uint8 and sources.shape == (4, 3, 32, 32)
        device = DeviceTransform(size, normalization, None, train=False)(sources)
        assert device.shape == (4, 3, size, size) and device.dtype == torch.float32
        torch.testing.assert_close(device, cpu, atol=1e-5, rtol=1e-5)


def test_eval_of_large_images_is_the_same_on_both_paths():
    """Above SMALL_SOURCE pixels the CPU path resizes with torch's kernel; the device path still uses matrices."""
    images = torch.from_numpy(cifar_like_images(np.arange(3), 96, seed=1)).permute(0, 3, 1, 2)[..., :80].contiguous()
    cpu = torch.stack([EvalImageTransform(64, IMAGENET)(image) for image in images])
    torch.testing.assert_close(DeviceTransform(64, IMAGENET, None, train=False)(images), cpu, atol=1e-5, rtol=1e-5)


def test_device_path_stays_float32_under_reduced_precision_settings(cifar_batch):
    expected = torch.stack([EvalImageTransform(64, INCEPTION)(image) for image in cifar_batch])
    transform = DeviceTransform(64, INCEPTION, None, train=False)
    torch.set_float32_matmul_precision("medium")
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = transform(cifar_batch)
        assert torch.get_float32_matmul_precision() == "medium"  # the caller's setting is restored
    finally:
        torch.set_float32_matmul_precision("highest")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_flip_and_full_crop_agree_exactly_between_paths(cifar_batch):
    """With the randomness pinned (whole image, always flipped), both training paths give the same pixels."""
    pinned = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0)
    cpu = torch.stack([TrainImageTransform(96, INCEPTION, pinned)(image) for image in cifar_batch])
    device = DeviceTransform(96, INCEPTION, pinned, train=True)(cifar_batch)
    torch.testing.assert_close(device, cpu, atol=1e-5, rtol=1e-5)
    unflipped = EvalImageTransform(96, Normalization(INCEPTION.mean, INCEPTION.std, "bicubic", 1.0))(cifar_batch[0])
    torch.testing.assert_close(cpu[0], unflipped.flip(-1), atol=1e-5, rtol=1e-5)


def ramp_sources(cifar_batch):
    """CIFAR-like images whose red channel ramps left to right and green top to bottom: where a crop falls and
    how large it is shows in the output's colour statistics."""
    ramp = torch.linspace(0, 255, 32).round().to(torch.uint8)
    sources = cifar_batch.clone()
    sources[:, 0] = ramp.view(1, 1, 32)
    sources[:, 1] = ramp.view(1, 32, 1)
    return sources


def test_training_outputs_have_the_same_distribution_on_both_paths(cifar_batch):
    torch.manual_seed(0)
    sources, augmentation, repeats = ramp_sources(cifar_batch), Augmentation(hflip=0.3), 32  # 512 draws per path
    cpu_transform = TrainImageTransform(48, INCEPTION, augmentation)
    cpu = torch.stack([cpu_transform(image) for _ in range(repeats) for image in sources])
    device = DeviceTransform(48, INCEPTION, augmentation, train=True)(sources.repeat(repeats, 1, 1, 1))

    def summary(outputs):  # per channel: mean, spread over the batch, mean contrast within an image
        return torch.cat([outputs.mean((0, 2, 3)), outputs.std((0, 2, 3)), outputs.std((2, 3)).mean(0)])

    # Over seeds the statistics of the two paths differ by up to 0.03 (sampling noise); a wrong crop scale range or
    # flip rate moves them by more than 0.05.
    torch.testing.assert_close(summary(device), summary(cpu), atol=0.05, rtol=0)
    assert not torch.allclose(device[:16], device[16:32])  # each copy of an image is drawn anew


def test_flip_rate_is_the_same_on_both_paths(cifar_batch):
    torch.manual_seed(0)
    whole_image = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.3)
    sources = ramp_sources(cifar_batch)
    unflipped = EvalImageTransform(32, Normalization(INCEPTION.mean, INCEPTION.std, "bicubic", 1.0))(sources[0])

    def flip_rate(outputs):
        flipped = (outputs - unflipped.flip(-1)).abs().amax((1, 2, 3)) < 1e-4
        kept = (outputs - unflipped).abs().amax((1, 2, 3)) < 1e-4
        assert (flipped ^ kept).all()
        return flipped.float().mean().item()

    cpu_transform = TrainImageTransform(32, INCEPTION, whole_image)
    cpu = torch.stack([cpu_transform(sources[0]) for _ in range(400)])
    device = DeviceTransform(32, INCEPTION, whole_image, train=True)(sources[:1].repeat(2000, 1, 1, 1))
    assert abs(flip_rate(cpu) - 0.3) < 0.08 and abs(flip_rate(device) - 0.3) < 0.035  # 3.5 standard errors


@pytest.mark.parametrize("auto_augment", ["randaugment", "trivialaugment"])
def test_auto_augment_and_random_erasing_on_both_paths(cifar_batch, auto_augment):
    torch.manual_seed(0)
    augmentation = Augmentation(auto_augment=auto_augment, random_erasing=1.0)
    low, high = value_range(INCEPTION)
    cpu = torch.stack([TrainImageTransform(48, INCEPTION, augmentation)(image) for image in cifar_batch])
    device = DeviceTransform(48, INCEPTION, augmentation, train=True)(cifar_batch)
    for outputs in (cpu, device):
        assert outputs.shape == (16, 3, 48, 48) and outputs.dtype == torch.float32
        outside = (outputs < low) | (outputs > high)  # per-pixel normal noise of the erased boxes
        assert outside.flatten(1).any(1).float().mean() > 0.9


def test_device_path_needs_one_source_size(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    rng = np.random.default_rng(0)
    sizes = [(20, 30), (20, 30), (33, 17), (20, 30)]
    images = [PILImage.fromarray(rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8)) for i in range(8)]
    DatasetDict(train=Dataset.from_dict({"image": images, "label": [0, 1] * 4}, features=features)).save_to_disk(
        str(tmp_path / "mixed")
    )
    data = load_image_classification(str(tmp_path / "mixed"), validation_fraction=0.25)
    with pytest.raises(
        ValueError, match=r"row \d of split 'train' is 20x30 and row \d of split 'train' is 33x17.*source_size=N"
    ):
        attach_transforms(data, 32, INCEPTION, Augmentation(), device_transforms=True)
    attach_transforms(data, 32, INCEPTION, Augmentation(), device_transforms=True, source_size=24)
    batch = collate([data.train[i] for i in range(len(data.train))])["pixel_values"]
    assert batch.shape == (6, 3, 24, 24) and batch.dtype == torch.uint8
    assert DeviceTransform(32, INCEPTION, Augmentation(), train=True)(batch).shape == (6, 3, 32, 32)


def test_bad_arguments_and_inputs_are_clear_errors(data, cifar_batch):
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        attach_transforms(data, 0, INCEPTION, Augmentation())
    with pytest.raises(ValueError, match="source_size only applies to the device path"):
        attach_transforms(data, 32, INCEPTION, Augmentation(), source_size=32)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        DeviceTransform(224.0, INCEPTION, None, train=False)
    with pytest.raises(ValueError, match="needs an Augmentation"):
        DeviceTransform(32, INCEPTION, None, train=True)
    with pytest.raises(ValueError, match="expects a uint8 batch"):
        DeviceTransform(32, INCEPTION, None, train=False)(cifar_batch.float())
    with pytest.raises(ValueError, match="Got 1 channels"):
        DeviceTransform(32, INCEPTION, None, train=False)(cifar_batch[:, :1])


# --- MixUp / CutMix ------------------------------------------------------------------------------------------------


def constant_images(labels: torch.Tensor) -> torch.Tensor:
    """Image i is the constant i + 1 everywhere: mixed pixels reveal how much of each image they hold."""
    return (torch.arange(len(labels), dtype=torch.float32) + 1).view(-1, 1, 1, 1).expand(-1, 3, 8, 8).clone()


@pytest.mark.parametrize("batch_size", [6, 5])
def test_mixup_targets_match_the_mixed_pixels(batch_size):
    torch.manual_seed(0)
    labels = torch.arange(batch_size)
    mixed, targets = MixupCutmix(num_classes=10, cutmix_alpha=0.0)(constant_images(labels), labels)
    assert targets.shape == (batch_size, 10) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(batch_size))
    lam = targets[0, 0]  # image 0 is mixed with the last one (the batch rolled by one)
    torch.testing.assert_close(mixed[0, 0, 0, 0], lam * 1 + (1 - lam) * batch_size)


def test_cutmix_targets_match_the_pasted_area():
    torch.manual_seed(1)
    labels = torch.arange(4)
    mixed, targets = MixupCutmix(num_classes=4, mixup_alpha=0.0)(constant_images(labels), labels)
    pasted = (mixed[1, 0] == 1).float().mean()  # image 1 shows image 0 inside the box
    torch.testing.assert_close(targets[1, 0], pasted)
    torch.testing.assert_close(targets[1, 1], 1 - pasted)


def test_no_mixing_gives_smoothed_one_hot_targets():
    labels = torch.tensor([2, 0, 1])
    images = constant_images(labels)
    out, targets = MixupCutmix(num_classes=4, prob=0.0, label_smoothing=0.2)(images.clone(), labels)
    assert torch.equal(out, images)
    expected = torch.full((3, 4), 0.05)
    expected[torch.arange(3), labels] = 0.85
    torch.testing.assert_close(targets, expected)


def test_switch_prob_picks_cutmix():
    torch.manual_seed(0)
    labels = torch.arange(4)
    for _ in range(5):
        mixed, _ = MixupCutmix(num_classes=4, switch_prob=1.0)(constant_images(labels), labels)
        assert set(mixed[1, 0].unique().tolist()) <= {1.0, 2.0}  # CutMix pastes pixels, it never blends them


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_classes=1), "num_classes must be at least 2"),
        (dict(num_classes=10, mixup_alpha=-1.0), "must be >= 0"),
        (dict(num_classes=10, prob=1.5), "prob is a probability"),
        (dict(num_classes=10, switch_prob=-0.5), "switch_prob is a probability"),
        (dict(num_classes=10, label_smoothing=1.0), r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_mixup_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MixupCutmix(**kwargs)


@pytest.mark.parametrize(
    "mode, values, expected",
    [
        ("I;16", np.arange(0, 65536, 257, dtype=np.uint16), np.arange(256)),  # 16-bit PNG: every grey level kept
        ("I", np.arange(0, 65536, 257, dtype=np.int32), np.arange(256)),  # how PIL opens some 16-bit files
        ("F", np.linspace(0, 1, 256, dtype=np.float32), np.arange(256)),
        ("F", np.linspace(-2, 3, 256, dtype=np.float32), np.arange(256)),  # any other range: min to max
    ],
)
def test_wide_grayscale_modes_are_scaled_not_clipped(mode, values, expected):
    image = PILImage.fromarray(values.reshape(16, 16))
    if mode == "I;16":
        image = PILImage.frombytes("I;16", (16, 16), values.astype("<u2").tobytes())
    assert image.mode == mode
    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if mode == "I;16" else "TIFF")
    pixels = decode_rgb({"bytes": buffer.getvalue(), "path": None}, "train", 0)  # (3, 16, 16)
    assert torch.equal(pixels[0].flatten(), torch.tensor(expected, dtype=torch.uint8))
    assert torch.equal(pixels[0], pixels[2])
