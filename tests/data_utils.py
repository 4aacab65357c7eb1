"""Write small datasets in exactly the Hub's CIFAR-10 format, for tests and benchmarks that must not touch the
network (`python -m benchmarks.fake_cifar10` writes one from the command line)."""

import io
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from vit_hf.files import atomic_write, write_text_atomic

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_FEATURES = Features({"img": Image(), "label": ClassLabel(names=CIFAR10_NAMES)})

# The dataset card of uoft-cs/cifar10, reduced to what `datasets` reads: features, split sizes and data files.
_CARD = """---
dataset_info:
  config_name: plain_text
  features:
  - name: img
    dtype: image
  - name: label
    dtype:
      class_label:
        names:
{names}
  splits:
  - name: train
    num_bytes: {train_bytes}
    num_examples: {n_train}
  - name: test
    num_bytes: {test_bytes}
    num_examples: {n_test}
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
  default: true
---
# CIFAR-10 (synthetic stand-in with the Hub layout)
"""


def cifar_like_images(labels: np.ndarray, image_size: int = 32, seed: int = 0) -> np.ndarray:
    """(N, size, size, 3) uint8 images a small model can learn from: a class colour, an oriented grating whose
    angle depends on the class, random phase and brightness, and pixel noise."""
    rng = np.random.default_rng(seed)
    count = len(labels)
    hues = np.array(
        [[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60], [200, 60, 200],
         [60, 200, 200], [230, 140, 40], [120, 120, 120], [40, 120, 230], [160, 100, 60]],
        dtype=np.float32,
    )  # fmt: skip
    coords = np.arange(image_size, dtype=np.float32) / image_size
    y, x = np.meshgrid(coords, coords, indexing="ij")  # (S, S)
    angle = labels * (np.pi / 10)  # (N,)
    phase = rng.uniform(0, 2 * np.pi, count)
    wave = np.sin(
        2 * np.pi * 3 * (np.cos(angle)[:, None, None] * x + np.sin(angle)[:, None, None] * y) + phase[:, None, None]
    )
    brightness = rng.uniform(0.7, 1.1, count)[:, None, None, None]
    base = hues[labels % len(hues)][:, None, None, :]  # (N, 1, 1, 3)
    images = base * brightness * (0.75 + 0.25 * wave[..., None]) + rng.normal(0, 12, (count, image_size, image_size, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def cifar_like_split(count: int, image_size: int = 32, seed: int = 0) -> Dataset:
    """`count` examples with balanced, shuffled labels, features exactly as the Hub's CIFAR-10."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(CIFAR10_NAMES))
    images = cifar_like_images(labels, image_size, seed)
    table = {"img": [{"bytes": png_bytes(image), "path": None} for image in images], "label": labels.tolist()}
    return Dataset.from_dict(table, features=CIFAR10_FEATURES)


def write_cifar_like(path, n_train: int, n_test: int, image_size: int = 32, seed: int = 0) -> Path:
    """A folder laid out like the Hub repo uoft-cs/cifar10 (README.md card, plain_text/{train,test}-00000-of-00001
    .parquet with an `img` Image and a `label` ClassLabel of the ten CIFAR names). Returns the folder."""
    if min(n_train, n_test) < len(CIFAR10_NAMES):
        raise ValueError(f"train and test sizes must be at least {len(CIFAR10_NAMES)} (one image per class).")
    path = Path(path)
    (path / "plain_text").mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, count, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        data = cifar_like_split(count, image_size, split_seed)
        with atomic_write(path / "plain_text" / f"{split}-00000-of-00001.parquet") as tmp:
            data.to_parquet(str(tmp))
        sizes[f"{split}_bytes"] = data.data.nbytes
    names = "\n".join(f"          '{index}': {name}" for index, name in enumerate(CIFAR10_NAMES))
    card = _CARD.format(names=names, n_train=n_train, n_test=n_test, **sizes)
    write_text_atomic(path / "README.md", card)
    return path
