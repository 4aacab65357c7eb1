"""The README's Python examples run as written. Where an example fetches from the Hub, the dataset id is replaced by
a local copy in the same format (the only change), and "cuda" by the CPU."""

import re
from pathlib import Path

import pytest

from tests.data_utils import write_cifar_like

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks_under(heading: str) -> list[str]:
    """The ```python blocks of the README section that starts with `heading`, in order."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    following = re.search(r"\n## ", text[start + 1 :])
    section = text[start : start + 1 + following.start()] if following else text[start:]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_use_it_from_python(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks_under("## Use it from Python")
    assert len(blocks) >= 2
    namespace = {}
    for block in blocks[:2]:  # the model, then its image processor beside it
        exec(compile(block, str(README), "exec"), namespace)
    from transformers import AutoModelForImageClassification, pipeline

    model = AutoModelForImageClassification.from_pretrained("my-vit")
    assert model.config.image_size == 384
    classify = pipeline("image-classification", model="my-vit")
    assert len(classify(str(write_png(tmp_path / "image.png")), top_k=3)) == 3


def write_png(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def local_cifar10(tmp_path_factory):
    return write_cifar_like(tmp_path_factory.mktemp("data") / "cifar10", n_train=300, n_test=20)


def test_data_examples(local_cifar10):
    blocks = python_blocks_under("## Data")
    assert len(blocks) >= 2
    namespace = {}
    hub_id = 'load_image_classification("cifar10")'
    first = blocks[0].replace(hub_id, f"load_image_classification({str(local_cifar10)!r})")
    assert first != blocks[0]
    exec(compile(first.replace("num_workers=8", "num_workers=2"), str(README), "exec"), namespace)
    assert tuple(namespace["batch"]["pixel_values"].shape) == (128, 3, 224, 224)
    device_path = next(block for block in blocks if "DeviceTransform" in block)
    device_path = device_path.replace('"cuda"', '"cpu"').replace("num_workers=8", "num_workers=2")
    device_path += "    break\n"  # one batch is enough
    exec(compile(device_path, str(README), "exec"), namespace)
    assert tuple(namespace["pixel_values"].shape) == (128, 3, 384, 384)


def test_trainer_example(local_cifar10, tmp_path, monkeypatch):
    """The Trainer example with a small randomly initialised timm ViT at 32 px for two steps, and without
    `remove_unused_columns=False` the error that names it."""
    import timm
    from transformers import AutoModelForImageClassification

    monkeypatch.chdir(tmp_path)
    (block,) = python_blocks_under("## Using transformers.Trainer")
    replacements = {
        'load_image_classification("cifar10")': f"load_image_classification({str(local_cifar10)!r})",
        '"vit_small_patch16_224.augreg_in21k", num_labels': "TIMM_MODEL, num_labels",
        'image_processor_from_timm("vit_small_patch16_224.augreg_in21k")': "image_processor_from_timm(TIMM_MODEL)",
        "attach_transforms(data, 224,": "attach_transforms(data, 32,",
        "num_train_epochs=1,": "max_steps=2,",
        "per_device_train_batch_size=64,": "per_device_train_batch_size=16, use_cpu=True,",
    }
    for old, new in replacements.items():
        assert old in block, old
        block = block.replace(old, new)
    timm_model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=1, num_classes=10
    )
    exec(compile(block, str(README), "exec"), {"TIMM_MODEL": timm_model})
    assert (tmp_path / "vit-s16-cifar10" / "preprocessor_config.json").is_file()
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "vit-s16-cifar10", trust_remote_code=True)
    assert model.config.id2label[3] == "cat"
    without_the_flag = block.replace("remove_unused_columns=False,", "")
    with pytest.raises(KeyError, match="remove_unused_columns=False"):
        exec(compile(without_the_flag, str(README), "exec"), {"TIMM_MODEL": timm_model})
