"""Data throughput: training images per second that each input pipeline delivers, measured in one run on one
machine, against the per-image torchvision pipeline of transformers' image-classification example.

Pipelines (same DataLoader settings: batch size, workers, shuffling):
- example: transformers' examples/pytorch/image-classification/run_image_classification.py: per PIL image
  Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)]) in set_transform;
- cpu path: vit_hf's attach_transforms(..., device_transforms=False), float (B, 3, S, S) from the workers;
- device path, loader: attach_transforms(..., device_transforms=True), what the CPU must deliver: uint8 batches at
  the source size (for a GPU, the rest happens on the GPU);
- device path, end to end: the loader plus moving each batch to --device and DeviceTransform(train=True) there.

    python -m benchmarks.data_throughput                          # synthetic CIFAR-format data, 224 and 384
    python -m benchmarks.data_throughput --dataset uoft-cs/cifar10 --device cuda --output results.json
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import torch
from torchvision.transforms import Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop, ToTensor

from vit_hf.data import load_image_classification
from vit_hf.data.transforms import Augmentation, DeviceTransform, Normalization, attach_transforms, collate
from vit_hf.files import write_text_atomic
from vit_hf.image_processing_vit_hf import make_image_processor


def example_loader(data, processor, args):
    """The transformers example, as written there (its transform and collate_fn)."""
    if "shortest_edge" in processor.size:
        size = processor.size["shortest_edge"]
    else:
        size = (processor.size["height"], processor.size["width"])
    train_transforms = Compose(
        [
            RandomResizedCrop(size),
            RandomHorizontalFlip(),
            ToTensor(),
            Normalize(mean=processor.image_mean, std=processor.image_std),
        ]
    )
    image_column, label_column = data.image_column, data.label_column

    def preprocess_train(example_batch):
        example_batch["pixel_values"] = [
            train_transforms(image.convert("RGB")) for image in example_batch[image_column]
        ]
        return example_batch

    def collate_fn(examples):
        pixel_values = torch.stack([example["pixel_values"] for example in examples])
        labels = torch.tensor([example[label_column] for example in examples])
        return {"pixel_values": pixel_values, "labels": labels}

    train = data.train.with_transform(preprocess_train)
    return make_loader(train, collate_fn, args)


def make_loader(dataset, collate_fn, args):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.num_workers,
        collate_fn=collate_fn,
        drop_last=True,
    )


def images_per_second(loader, args, consume=None) -> float:
    """Throughput over args.batches batches after args.warmup batches (worker start-up excluded)."""
    batches = iter(loader)
    for index in range(args.warmup + args.batches):
        if index == args.warmup:
            start = time.perf_counter()
        pixel_values = next(batches)["pixel_values"]
        if consume is not None:
            consume(pixel_values)
    return args.batches * args.batch_size / (time.perf_counter() - start)


def on_device(transform, device):
    def consume(pixel_values):
        transform(pixel_values.to(device, non_blocking=True))
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return consume


def pipelines(source, size, device, args):
    """name -> (loader, consume) for one image size."""
    processor = make_image_processor(size)
    normalization = Normalization.from_image_processor(processor)
    augmentation = Augmentation()
    example_data = load_image_classification(source, validation_fraction=0.01, cache_dir=args.cache_dir)
    cpu_data = load_image_classification(source, validation_fraction=0.01, cache_dir=args.cache_dir)
    attach_transforms(cpu_data, size, normalization, augmentation)
    device_data = load_image_classification(source, validation_fraction=0.01, cache_dir=args.cache_dir)
    attach_transforms(device_data, size, normalization, augmentation, device_transforms=True)
    transform = DeviceTransform(size, normalization, augmentation, train=True)
    return {
        "example (per-image PIL + torchvision)": (lambda: example_loader(example_data, processor, args), None),
        "vit_hf cpu path": (lambda: make_loader(cpu_data.train, collate, args), None),
        "vit_hf device path, loader (CPU side)": (lambda: make_loader(device_data.train, collate, args), None),
        f"vit_hf device path + DeviceTransform on {device.type}": (
            lambda: make_loader(device_data.train, collate, args),
            on_device(transform, device),
        ),
    }


def run(args) -> list[dict]:
    """Each pipeline is measured args.rounds times, interleaved with the others so that a change in machine load
    hits all of them alike; the median counts."""
    source = args.dataset
    if source is None:
        from tests.data_utils import write_cifar_like

        count = max(2000, int((args.warmup + args.batches + 1) * args.batch_size / 0.99) + 1)  # one pass each
        source = str(write_cifar_like(tempfile.mkdtemp(prefix="cifar_like_"), n_train=count, n_test=10))
    device = torch.device(args.device)
    results = []
    for size in args.image_sizes:
        measured = pipelines(source, size, device, args)
        samples = {name: [] for name in measured}
        for _ in range(args.rounds):
            for name, (loader, consume) in measured.items():
                samples[name].append(images_per_second(loader(), args, consume))
        example = statistics.median(next(iter(samples.values())))
        for name, values in samples.items():
            value = statistics.median(values)
            results.append(dict(image_size=size, pipeline=name, images_per_second=value, ratio=value / example))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="Hub id or local path (default: synthetic CIFAR-format data)")
    parser.add_argument("--image-sizes", type=int, nargs="+", default=[224, 384])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2, help="batches before timing starts")
    parser.add_argument("--batches", type=int, default=10, help="batches timed per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per pipeline (the median is reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--output", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    results = run(args)
    print(
        f"| size | pipeline | images/s | vs example |  ({os.cpu_count()} CPUs, {args.num_workers} workers, "
        f"batch {args.batch_size})"
    )
    print("|---|---|---|---|")
    for row in results:
        print(f"| {row['image_size']} | {row['pipeline']} | {row['images_per_second']:.0f} | {row['ratio']:.2f}x |")
    if args.output:
        write_text_atomic(args.output, json.dumps({"settings": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
