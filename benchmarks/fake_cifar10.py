"""A small generated dataset in the Hub CIFAR-10 layout and schema, for fine-tuning runs without network access.

`<dir>/plain_text/{train,test}-00000-of-00001.parquet` with an `img` Image column (32x32 RGB PNG) and a `label`
ClassLabel column with CIFAR-10's ten names: `load_dataset("<dir>")` reads it like the Hub's `cifar10`. Each class
has its own mean colour under heavy noise, so a model can learn it in a few hundred steps.

    python -m benchmarks.fake_cifar10 /tmp/cifar10 --train-size 2048 --test-size 512
"""

import argparse
import os
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_split(size: int, rng: np.random.Generator, class_colours: np.ndarray) -> Dataset:
    labels = np.arange(size) % len(CIFAR10_NAMES)  # balanced classes
    rng.shuffle(labels)
    noise = rng.normal(0.0, 60.0, size=(size, 32, 32, 3))
    pixels = np.clip(class_colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)  # (N, 32, 32, 3)
    features = Features({"img": Image(), "label": ClassLabel(names=CIFAR10_NAMES)})
    images = [PILImage.fromarray(array) for array in pixels]
    return Dataset.from_dict({"img": images, "label": labels.tolist()}, features=features)


def write_fake_cifar10(directory: Path, train_size: int = 2048, test_size: int = 512, seed: int = 0) -> Path:
    if train_size < len(CIFAR10_NAMES) or test_size < len(CIFAR10_NAMES):
        raise ValueError(f"train and test sizes must be at least {len(CIFAR10_NAMES)} (one image per class).")
    rng = np.random.default_rng(seed)
    class_colours = rng.uniform(40, 215, size=(len(CIFAR10_NAMES), 3))
    folder = Path(directory) / "plain_text"
    folder.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", train_size), ("test", test_size)):
        path = folder / f"{split}-00000-of-00001.parquet"
        partial = path.with_name(f".{path.name}.partial")
        make_split(size, rng, class_colours).to_parquet(str(partial))
        os.replace(partial, path)  # a reader never sees half a file
    return Path(directory)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--train-size", type=int, default=2048)
    parser.add_argument("--test-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        write_fake_cifar10(args.directory, args.train_size, args.test_size, args.seed)
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote {args.train_size} train and {args.test_size} test images to {args.directory / 'plain_text'}")


if __name__ == "__main__":
    main()
