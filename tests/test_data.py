"""Loading image-classification data: sources, column detection, label encoding, splits, and load-time errors."""

import collections
from unittest import mock

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from tests.data_utils import CIFAR10_NAMES, cifar_like_images, png_bytes, write_cifar_like
from vit_hf.data import SOURCE_INDEX, load_image_classification


@pytest.fixture(scope="module")
def cifar_copy(tmp_path_factory):
    """A local copy of the Hub repo uoft-cs/cifar10 in its exact layout: 200 train and 50 test images."""
    return write_cifar_like(tmp_path_factory.mktemp("cifar10"), n_train=200, n_test=50)


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def source_rows(split) -> list[int]:
    return split[SOURCE_INDEX][:]


def images_split(labels, features: Features, sizes=((12, 12),), modes=("RGB",), seed=0) -> Dataset:
    """A split with one small encoded image per label, cycling through sizes and colour modes."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(len(labels)):
        height, width = sizes[index % len(sizes)]
        rgb = PILImage.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        images.append(rgb.convert(modes[index % len(modes)]))
    return Dataset.from_dict({"image": images, "label": list(labels)}, features=features)


def write_parquet_splits(folder, splits: dict[str, Dataset]):
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        split.to_parquet(str(folder / "data" / f"{name}-00000-of-00001.parquet"))
    return folder


# --- sources -------------------------------------------------------------------------------------------------------


def test_hub_layout_copy_loads_with_cifar_columns_and_names(cifar_copy, cache_dir):
    assert sorted(path.relative_to(cifar_copy).as_posix() for path in cifar_copy.rglob("*.parquet")) == [
        "plain_text/test-00000-of-00001.parquet",
        "plain_text/train-00000-of-00001.parquet",
    ]
    data = load_image_classification(cifar_copy, cache_dir=cache_dir)  # a Path works as well as a str
    assert (data.image_column, data.label_column) == ("img", "label")
    assert data.id2label == dict(enumerate(CIFAR10_NAMES))
    assert data.label2id["ship"] == 8 and data.num_labels == 10
    assert (len(data.train), len(data.validation), len(data.test)) == (180, 20, 50)
    assert isinstance(data.train.features["label"], ClassLabel)
    example = data.test[0]
    assert example["img"].size == (32, 32) and example["img"].mode == "RGB"
    assert source_rows(data.test) == list(range(50))  # test is untouched, in its original order
    assert data.source == str(cifar_copy)


def test_short_names_and_hub_ids_take_the_same_loader_call_as_a_local_copy(cifar_copy, cache_dir, monkeypatch):
    """Up to the network boundary: 'cifar10' becomes load_dataset('uoft-cs/cifar10', cache_dir=...), the call a
    local copy gets; served from the copy, the rest of the pipeline gives the same data."""
    real_load_dataset = datasets.load_dataset
    calls = []

    def recording_load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        return real_load_dataset(str(cifar_copy) if path == "uoft-cs/cifar10" else path, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", recording_load_dataset)
    from_hub = load_image_classification("cifar10", cache_dir=cache_dir)
    from_copy = load_image_classification(str(cifar_copy), cache_dir=cache_dir)
    assert calls == [("uoft-cs/cifar10", {"cache_dir": cache_dir}), (str(cifar_copy), {"cache_dir": cache_dir})]
    assert from_hub.source == "uoft-cs/cifar10" and from_hub.id2label == from_copy.id2label
    for name in ("train", "validation", "test"):
        assert source_rows(getattr(from_hub, name)) == source_rows(getattr(from_copy, name))


def test_offline_hub_id_fails_with_a_connection_error_naming_the_repo(cache_dir):
    with pytest.raises(ConnectionError, match="uoft-cs/cifar100"):
        load_image_classification("cifar100", cache_dir=cache_dir)


def test_cifar100_uses_fine_labels_unless_told_otherwise(tmp_path, cache_dir):
    fine = [f"fine{i}" for i in range(6)]
    features = Features(
        {"img": Image(), "fine_label": ClassLabel(names=fine), "coarse_label": ClassLabel(names=["x", "y"])}
    )
    labels = np.arange(60) % 6
    table = {
        "img": [{"bytes": png_bytes(image), "path": None} for image in cifar_like_images(labels, 8)],
        "fine_label": labels.tolist(),
        "coarse_label": (labels % 2).tolist(),
    }
    split = Dataset.from_dict(table, features=features)
    folder = write_parquet_splits(tmp_path / "cifar100", {"train": split, "test": split})
    data = load_image_classification(str(folder), cache_dir=cache_dir)
    assert (data.image_column, data.label_column, data.num_labels) == ("img", "fine_label", 6)
    coarse = load_image_classification(str(folder), label_column="coarse_label", cache_dir=cache_dir)
    assert coarse.id2label == {0: "x", 1: "y"}


def test_image_folder_tree_with_mixed_sizes_and_modes(tmp_path, cache_dir):
    sizes, modes = [(20, 30), (33, 17), (24, 24)], ["L", "RGBA", "P", "RGB"]
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for name in ("cat", "dog"):
            (tmp_path / "pets" / split / name).mkdir(parents=True)
            for index in range(count):
                height, width = sizes[index % 3]
                image = PILImage.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
                image.convert(modes[index % 4]).save(tmp_path / "pets" / split / name / f"{index}.png")
    data = load_image_classification(str(tmp_path / "pets"), validation_fraction=0.25, cache_dir=cache_dir)
    assert (data.image_column, data.label_column) == ("image", "label")
    assert data.id2label == {0: "cat", 1: "dog"}
    assert (len(data.train), len(data.validation), len(data.test)) == (18, 6, 8)
    assert {example["image"].mode for example in data.test} == set(modes)


def test_save_to_disk_folder_with_its_own_validation_split(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b", "c"])})
    saved = DatasetDict(
        train=images_split([0, 1, 2] * 4, features),
        validation=images_split([2, 1, 0], features, seed=1),
        test=images_split([0, 1, 2, 2], features, seed=2),
    )
    saved.save_to_disk(str(tmp_path / "saved"))
    data = load_image_classification(str(tmp_path / "saved"), cache_dir=cache_dir)
    assert (len(data.train), len(data.validation), len(data.test)) == (12, 3, 4)  # no hold-out carved
    assert data.validation["label"][:] == [2, 1, 0]


def test_hold_out_writes_nothing_next_to_the_source_data(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    DatasetDict(train=images_split([0, 1] * 10, features)).save_to_disk(str(tmp_path / "saved"))
    before = sorted(path.name for path in (tmp_path / "saved").rglob("*"))
    data = load_image_classification(str(tmp_path / "saved"), validation_fraction=0.2, cache_dir=cache_dir)
    assert (len(data.train), len(data.validation)) == (16, 4)
    assert sorted(path.name for path in (tmp_path / "saved").rglob("*")) == before


def test_single_parquet_file_is_the_train_split(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    images_split([0, 1] * 10, features).to_parquet(str(tmp_path / "pets.parquet"))
    data = load_image_classification(str(tmp_path / "pets.parquet"), validation_fraction=0.2, cache_dir=cache_dir)
    assert (len(data.train), len(data.validation), data.test) == (16, 4, None)


def test_a_column_of_image_paths_becomes_an_image_column(tmp_path, cache_dir):
    paths = []
    for index, pixels in enumerate(cifar_like_images(np.arange(8) % 2, 16)):
        paths.append(str(tmp_path / f"{index}.png"))
        PILImage.fromarray(pixels).save(paths[-1])
    split = Dataset.from_dict({"file": paths, "label": ["a", "b"] * 4})
    folder = write_parquet_splits(tmp_path / "paths", {"train": split})
    data = load_image_classification(str(folder), image_column="file", validation_fraction=0.25, cache_dir=cache_dir)
    assert isinstance(data.train.features["file"], Image) and data.train[0]["file"].size == (16, 16)


def test_string_labels_become_a_class_label_shared_by_all_splits(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": Value("string")})
    train = images_split(["dog", "cat", "emu", "cat"] * 3, features)
    test = images_split(["zebra", "cat"], features)  # a class only the test split has still gets an id
    folder = write_parquet_splits(tmp_path / "strings", {"train": train, "test": test})
    data = load_image_classification(str(folder), validation_fraction=0.25, cache_dir=cache_dir)
    assert data.id2label == {0: "cat", 1: "dog", 2: "emu", 3: "zebra"}
    assert data.test["label"][:] == [3, 0]
    assert (
        data.train.features["label"] == data.test.features["label"] == ClassLabel(names=["cat", "dog", "emu", "zebra"])
    )


def test_integer_labels_without_names_are_numbered(tmp_path, cache_dir):
    features = Features({"photo": Image(), "target": Value("int64")})
    split = images_split([0, 3, 1, 2] * 3, Features({"image": Image(), "label": Value("int64")}))
    split = split.rename_columns({"image": "photo", "label": "target"}).cast(features)
    folder = write_parquet_splits(tmp_path / "ints", {"train": split})
    data = load_image_classification(str(folder), label_column="target", validation_fraction=0.34, cache_dir=cache_dir)
    assert data.image_column == "photo"  # found as the only Image column
    assert data.id2label == {0: "0", 1: "1", 2: "2", 3: "3"}


def test_digits_are_real_data_with_a_fixed_test_split():
    data = load_image_classification("digits", validation_fraction=0.1, seed=0)
    other_seed = load_image_classification("digits", validation_fraction=0.1, seed=1)
    assert len(data.train) + len(data.validation) + len(data.test) == 1797
    assert (len(data.test), len(data.validation)) == (360, 144)
    assert data.id2label == {d: str(d) for d in range(10)}
    assert source_rows(data.test) == source_rows(other_seed.test)  # the test set never moves
    assert source_rows(data.validation) != source_rows(other_seed.validation)
    image = data.train[0]["image"]
    assert image.size == (8, 8) and image.mode == "L"
    pixels = np.stack([np.asarray(example["image"]) for example in data.test.select(range(50))])
    assert pixels.min() == 0 and pixels.max() == 255  # 0..16 ink levels spread over 0..255
    counts = collections.Counter(data.test["label"][:])
    assert min(counts.values()) >= 35 and max(counts.values()) <= 37  # stratified: ~36 per digit


# --- splits --------------------------------------------------------------------------------------------------------


def test_validation_hold_out_is_stratified_disjoint_and_seeded(cifar_copy, cache_dir):
    data = load_image_classification(str(cifar_copy), validation_fraction=0.2, seed=3, cache_dir=cache_dir)
    again = load_image_classification(str(cifar_copy), validation_fraction=0.2, seed=3, cache_dir=cache_dir)
    other = load_image_classification(str(cifar_copy), validation_fraction=0.2, seed=4, cache_dir=cache_dir)
    train_rows, validation_rows = source_rows(data.train), source_rows(data.validation)
    assert len(validation_rows) == 40 and sorted(train_rows + validation_rows) == list(range(200))
    assert collections.Counter(data.validation["label"][:]) == {label: 4 for label in range(10)}  # 20 per class
    assert source_rows(again.validation) == validation_rows
    assert source_rows(other.validation) != validation_rows


# --- errors raised at load time ------------------------------------------------------------------------------------


def test_named_column_that_does_not_exist_lists_the_columns(cifar_copy, cache_dir):
    with pytest.raises(ValueError, match=r"image_column='picture'.*\['img', 'label'\]"):
        load_image_classification(str(cifar_copy), image_column="picture", cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r"label_column='fine_label'.*\['img', 'label'\]"):
        load_image_classification(str(cifar_copy), label_column="fine_label", cache_dir=cache_dir)


def test_undetectable_label_column_lists_the_columns(tmp_path, cache_dir):
    split = images_split([0, 1] * 4, Features({"image": Image(), "label": Value("int64")}))
    folder = write_parquet_splits(tmp_path / "renamed", {"train": split.rename_column("label", "y")})
    with pytest.raises(ValueError, match=r"which column holds the labels.*\['image', 'y'\].*label_column="):
        load_image_classification(str(folder), cache_dir=cache_dir)


def test_unlabelled_test_split_is_an_error(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    train, test = images_split([0, 1] * 4, features), images_split([0, 1], features).remove_columns("label")
    DatasetDict(train=train, test=test).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"Split 'test' has no column 'label'; its columns are \['image'\]"):
        load_image_classification(str(tmp_path / "saved"), cache_dir=cache_dir)
    folder = write_parquet_splits(tmp_path / "parquet", {"train": train, "test": test})  # columns unified: nulls
    with pytest.raises(ValueError, match=r"Split 'test' has 2 examples without a label \(first at row 0\)"):
        load_image_classification(str(folder), cache_dir=cache_dir)


def test_column_that_holds_no_images_is_rejected(tmp_path, cache_dir):
    split = images_split([0, 1] * 4, Features({"image": Image(), "label": Value("int64")}))
    split = split.add_column("score", [0.5] * 8)
    folder = write_parquet_splits(tmp_path / "scores", {"train": split})
    with pytest.raises(ValueError, match="Column 'score' of split 'train' holds"):
        load_image_classification(str(folder), image_column="score", cache_dir=cache_dir)


def write_with_raw_labels(folder, labels: list, names=("a", "b", "c")):
    """A CIFAR-style parquet train split whose label column declares `names` but holds `labels` as stored."""
    features = Features({"image": Image(), "label": ClassLabel(names=list(names))})
    write_parquet_splits(folder, {"train": images_split([0] * len(labels), features)})
    path = folder / "data" / "train-00000-of-00001.parquet"
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, pa.int64()))
    pq.write_table(table.replace_schema_metadata(pq.read_schema(path).metadata), path)
    return folder


@pytest.mark.parametrize("bad", [3, -1])
def test_labels_outside_the_class_range_name_split_and_row(tmp_path, cache_dir, bad):
    folder = write_with_raw_labels(tmp_path / "bad", [0, 1, 2, 0, bad, 1, 2, 0])
    with pytest.raises(
        ValueError, match=rf"Split 'train' has 1 labels outside the class range 0..2 \(first at row 4: {bad}\)"
    ):
        load_image_classification(str(folder), cache_dir=cache_dir)


def test_negative_integer_labels_name_the_split(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": Value("int64")})
    splits = {"train": images_split([0, 1, 0, 1], features), "test": images_split([1, -1], features)}
    folder = write_parquet_splits(tmp_path / "unlabelled", splits)
    with pytest.raises(ValueError, match=r"Split 'test': label column 'label' has a negative class id \(-1\)"):
        load_image_classification(str(folder), cache_dir=cache_dir)


def test_missing_labels_name_the_row(tmp_path, cache_dir):
    folder = write_with_raw_labels(tmp_path / "nulls", [0, 1, None, 1])
    with pytest.raises(ValueError, match=r"1 examples without a label \(first at row 2\)"):
        load_image_classification(str(folder), cache_dir=cache_dir)


def test_empty_split_is_an_error(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    parquet = write_parquet_splits(
        tmp_path / "parquet", {"train": images_split([0, 1] * 4, features), "test": images_split([], features)}
    )
    with pytest.raises(ValueError, match="Split 'test' of .* is empty"):
        load_image_classification(str(parquet), cache_dir=cache_dir)
    DatasetDict(train=images_split([0, 1] * 4, features), validation=images_split([], features)).save_to_disk(
        str(tmp_path / "saved")
    )
    with pytest.raises(ValueError, match="Split 'validation' of .* is empty"):
        load_image_classification(str(tmp_path / "saved"), cache_dir=cache_dir)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_validation_fraction_outside_zero_one(cifar_copy, cache_dir, fraction):
    with pytest.raises(ValueError, match=r"validation_fraction must be in \(0, 1\)"):
        load_image_classification(str(cifar_copy), validation_fraction=fraction, cache_dir=cache_dir)


def test_hold_out_too_small_to_stratify(cifar_copy, cache_dir):
    with pytest.raises(ValueError, match="Cannot carve a stratified validation split of 2%"):
        load_image_classification(str(cifar_copy), validation_fraction=0.02, cache_dir=cache_dir)


def test_no_train_split_and_wrong_files(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    DatasetDict(validation=images_split([0, 1], features), test=images_split([0, 1], features)).save_to_disk(
        str(tmp_path / "saved")
    )
    with pytest.raises(ValueError, match=r"has no 'train' split; its splits are \['test', 'validation'\]"):
        load_image_classification(str(tmp_path / "saved"), cache_dir=cache_dir)
    (tmp_path / "labels.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="not a .parquet file"):
        load_image_classification(str(tmp_path / "labels.csv"), cache_dir=cache_dir)


# --- edge cases that would train the wrong thing ---------------------------------------------------------------


def save_images(folder, relative_paths):
    image = PILImage.fromarray(np.zeros((8, 8, 3), dtype=np.uint8))
    for relative in relative_paths:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)


def test_one_class_data_is_refused(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": Value("string")})
    data = Dataset.from_dict({"image": [png_bytes(np.zeros((8, 8, 3), np.uint8))] * 6, "label": ["cat"] * 6})
    data.cast(features).to_parquet(str(tmp_path / "one.parquet"))
    with pytest.raises(ValueError, match=r"one class only \('cat'.*at least two classes"):
        load_image_classification(str(tmp_path / "one.parquet"), cache_dir=cache_dir)


def test_image_folder_with_one_class_or_nested_files_says_what_is_wrong(tmp_path, cache_dir):
    save_images(tmp_path / "one", [f"train/cat/{i}.png" for i in range(6)])
    with pytest.raises(ValueError, match=r"one class folder only \('cat'\)"):
        load_image_classification(str(tmp_path / "one"), cache_dir=cache_dir)
    nested = [f"train/{name}/{i}.png" for name in ("cat", "dog") for i in range(6)] + ["train/dog/more/x.png"]
    save_images(tmp_path / "nested", nested)
    with pytest.raises(ValueError, match=r"different folder depths \(train/dog/more/x.png"):
        load_image_classification(str(tmp_path / "nested"), cache_dir=cache_dir)


def test_a_mistyped_label_is_named_and_rare_classes_are_warned_about(tmp_path, cache_dir, caplog):
    labels = ["cat", "dog"] * 30 + ["dgo"]
    pixels = png_bytes(np.zeros((8, 8, 3), np.uint8))
    Dataset.from_dict({"image": [pixels] * len(labels), "label": labels}).to_parquet(str(tmp_path / "typo.parquet"))
    with pytest.raises(ValueError, match=r"Class 'dgo' has a single training example.*mistyped label"):
        load_image_classification(str(tmp_path / "typo.parquet"), cache_dir=cache_dir)
    caplog.clear()
    labels = ["cat", "dog"] * 30 + ["dgo"] * 2
    Dataset.from_dict({"image": [pixels] * len(labels), "label": labels}).to_parquet(str(tmp_path / "rare.parquet"))
    with caplog.at_level("WARNING"):
        load_image_classification(str(tmp_path / "rare.parquet"), validation_fraction=0.5, cache_dir=cache_dir)
    assert "few examples of 'dgo' (2), against a median of 30 per class" in caplog.text


def test_zero_row_parquet_file_is_an_empty_split(tmp_path, cache_dir):
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    images_split([], features).to_parquet(str(tmp_path / "empty.parquet"))
    with pytest.raises(ValueError, match="Split 'train' of .*empty.parquet is empty"):
        load_image_classification(str(tmp_path / "empty.parquet"), cache_dir=cache_dir)


def test_a_missing_folder_or_a_mistyped_name_is_not_looked_up_on_the_hub(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", mock.Mock(side_effect=AssertionError("no Hub lookup")))
    with pytest.raises(FileNotFoundError, match="Dataset folder ./my_images does not exist"):
        load_image_classification("./my_images")
    with pytest.raises(ValueError, match="Did you mean 'cifar10'"):
        load_image_classification("cifar-10")


def test_offline_hub_error_names_the_fix(monkeypatch):
    offline = ConnectionError("Couldn't reach 'uoft-cs/cifar10' on the Hub (LocalEntryNotFoundError)")
    monkeypatch.setattr(datasets, "load_dataset", mock.Mock(side_effect=offline))
    with pytest.raises(ConnectionError, match="(?s)Couldn't reach.*--local-dir.*HF_HUB_OFFLINE=1"):
        load_image_classification("cifar10")
