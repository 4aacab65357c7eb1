"""Image-classification datasets for fine-tuning: load from the Hub, a local copy, parquet, an image folder, a
`save_to_disk` folder or scikit-learn's digits; find the image and label columns; encode labels; split.

Everything that can be checked without decoding images is checked here, at load time, so bad data fails before
training starts rather than inside a DataLoader worker mid-epoch.
"""

import difflib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)

SHORT_NAMES = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100"}
IMAGE_COLUMNS = ("img", "image")
LABEL_COLUMNS = ("label", "labels", "fine_label", "coarse_label")  # CIFAR-100: the 100 fine classes by default
VALIDATION_SPLITS = ("validation", "valid", "val", "dev")
# Every split keeps the row number each example had in the split it was loaded from, so that a broken image or a
# prediction can be traced back to the source data even after the validation hold-out reshuffles the rows.
SOURCE_INDEX = "source_index"
DIGITS_TEST_FRACTION = 0.2
OFFLINE_HINT = (
    "Without a network: download it once where there is one (`hf download {source} --repo-type dataset "
    "--local-dir my-data`) and pass the folder instead, or set HF_HUB_OFFLINE=1 to use the copy in the Hugging Face "
    "cache."
)
DIGITS_SEED = 0  # fixed: the digits test split is the same whatever seed the caller picks
RARE_CLASS_FRACTION = 0.1  # a class with fewer examples than this share of the median class is worth a warning


@dataclass
class ImageClassificationData:
    """Train / validation / test splits of an image-classification dataset with its class names.

    `validation` is the dataset's own validation split when it has one, otherwise a seeded stratified hold-out
    carved from train. `test` is never used for model selection; it is None when the dataset has no test split.
    """

    train: Dataset
    validation: Dataset
    test: Dataset | None
    image_column: str
    label_column: str
    id2label: dict[int, str]
    source: str = ""  # the Hub id or local path the data came from

    @property
    def label2id(self) -> dict[str, int]:
        return {name: index for index, name in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def splits(self) -> dict[str, Dataset]:
        """The splits that exist, by name."""
        named = {"train": self.train, "validation": self.validation, "test": self.test}
        return {name: split for name, split in named.items() if split is not None}


def load_image_classification(
    dataset: str | os.PathLike = "uoft-cs/cifar10",
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | None = None,
) -> ImageClassificationData:
    """Load an image-classification dataset and split it into train / validation / test.

    `dataset` is a Hub id (`"uoft-cs/cifar10"`), a short name (`"cifar10"`, `"cifar100"`, `"digits"`), or a local
    path: a folder holding a copy of a Hub dataset repo or parquet files, an image-folder tree (`train/cat/1.png`),
    a `save_to_disk` folder, or a single parquet file (used as train). Columns are detected unless named.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}.")
    dataset = os.fspath(dataset)
    source = dataset if os.path.exists(dataset) else SHORT_NAMES.get(dataset, dataset)  # local paths win
    raw = _read(source, cache_dir)
    train_name = _train_split_name(raw, source)
    validation_name = next((name for name in VALIDATION_SPLITS if name in raw), None)
    test_name = "test" if "test" in raw else None
    used = [name for name in (train_name, validation_name, test_name) if name is not None]  # others are ignored
    features = raw[train_name].features
    image_column = _find_column(features, image_column, IMAGE_COLUMNS, Image, "image")
    if label_column is None and os.path.isdir(source):
        _check_image_folder_labels(source, features)
    label_column = _find_column(features, label_column, LABEL_COLUMNS, ClassLabel, "label")

    splits = {name: _checked_split(raw[name], name, source, image_column, label_column) for name in used}
    splits, names = _encode_labels(splits, label_column)
    for name, split in splits.items():
        _check_label_range(split, label_column, len(names), name)
    _check_class_counts(splits[train_name], label_column, names, train_name)

    if validation_name is not None:
        train, validation = splits[train_name], splits[validation_name]
    else:
        train, validation = _hold_out(splits[train_name], label_column, validation_fraction, seed)
    return ImageClassificationData(
        train=train,
        validation=validation,
        test=splits[test_name] if test_name else None,
        image_column=image_column,
        label_column=label_column,
        id2label=dict(enumerate(names)),
        source=source,
    )


def _checked_split(split: Dataset, name: str, source: str, image_column: str, label_column: str) -> Dataset:
    """A non-empty split with both columns, its rows numbered in `SOURCE_INDEX`, images decoded as PIL."""
    if len(split) == 0:
        raise ValueError(f"Split {name!r} of {source} is empty: remove it or add examples to it.")
    missing = [column for column in (image_column, label_column) if column not in split.column_names]
    if missing:
        raise ValueError(f"Split {name!r} has no column {missing[0]!r}; its columns are {split.column_names}.")
    if SOURCE_INDEX in split.column_names:  # e.g. a saved copy of our own output: number its rows afresh
        split = split.remove_columns(SOURCE_INDEX)
    split = split.add_column(SOURCE_INDEX, np.arange(len(split)))
    return _as_images(split, image_column, name)


def _read(source: str, cache_dir: str | None) -> DatasetDict:
    """All splits of `source`. Hub ids and local dataset folders go through the same `load_dataset` call."""
    if os.path.isdir(source) and os.path.exists(os.path.join(source, "dataset_dict.json")):
        _check_saved_splits_have_rows(source)
        return datasets.load_from_disk(source)
    if os.path.isdir(source) and os.path.exists(os.path.join(source, "state.json")):
        _check_saved_splits_have_rows(source)
        return DatasetDict(train=datasets.load_from_disk(source))
    if os.path.isfile(source):
        if not source.endswith(".parquet"):
            raise ValueError(f"{source} is a file but not a .parquet file; pass a parquet file or a dataset folder.")
        if pq.read_metadata(source).num_rows == 0:
            raise ValueError(f"Split 'train' of {source} is empty: the parquet file has no rows.")
        return datasets.load_dataset("parquet", data_files={"train": source}, cache_dir=cache_dir)
    if source == "digits":
        return _digits()
    _check_hub_id(source)
    try:
        return datasets.load_dataset(source, cache_dir=cache_dir)
    except ConnectionError as error:
        raise ConnectionError(f"{error}\n{OFFLINE_HINT.format(source=source)}") from None
    except ValueError as error:
        # datasets refuses to build a split with no rows; say which split and what to do.
        empty = re.search(r'Instruction "(\w+)" corresponds to no data', str(error))
        if empty:
            raise ValueError(
                f"Split {empty.group(1)!r} of {source} is empty: remove it or add examples to it."
            ) from error
        raise


def _check_hub_id(source: str) -> None:
    """A path that does not exist, or a name close to a short name, is not looked up on the Hub (a typo would
    otherwise retry the network for a minute and end in an unrelated error)."""
    looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source
    if looks_like_path and not os.path.exists(os.path.expanduser(source)):
        raise FileNotFoundError(f"Dataset folder {source} does not exist.")
    close = difflib.get_close_matches(source, [*SHORT_NAMES, "digits"], n=1, cutoff=0.75)
    if "/" not in source and close:
        raise ValueError(f"Unknown dataset {source!r}. Did you mean {close[0]!r}?")


def _check_saved_splits_have_rows(folder: str) -> None:
    """datasets cannot reload a saved split without rows (it fails deep inside with an IndexError)."""
    for state in sorted(Path(folder).glob("**/state.json")):
        if not json.loads(state.read_text())["_data_files"]:
            split = state.parent.name if state.parent != Path(folder) else "train"
            raise ValueError(f"Split {split!r} of {folder} is empty: remove it or add examples to it.")


def _digits() -> DatasetDict:
    """scikit-learn's 1,797 real 8x8 handwritten digits as 8-bit grayscale images, split 80/20 (stratified, fixed)."""
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8), values 0..16 -> 0..255
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    rows = train_test_split(
        np.arange(len(pixels)), test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SEED, stratify=digits.target
    )

    def build(indices, split):
        table = {"image": [PILImage.fromarray(pixels[i]) for i in indices], "label": digits.target[indices].tolist()}
        return Dataset.from_dict(table, features=features, split=split)

    return DatasetDict(train=build(rows[0], datasets.Split.TRAIN), test=build(rows[1], datasets.Split.TEST))


def _train_split_name(raw: DatasetDict, source: str) -> str:
    if "train" in raw:
        return "train"
    only = next(iter(raw)) if len(raw) == 1 else None
    if only is not None and only not in ("test", *VALIDATION_SPLITS):  # e.g. a single unnamed split
        return only
    raise ValueError(f"{source} has no 'train' split; its splits are {sorted(raw)}.")


def _find_column(features: Features, requested: str | None, candidates, feature_type, kind: str) -> str:
    argument = f"{kind}_column"
    if requested is not None:
        if requested not in features:
            raise ValueError(
                f"{argument}={requested!r} is not a column of this dataset; its columns are {list(features)}."
            )
        return requested
    for name in candidates:
        if name in features:
            return name
    typed = [name for name, feature in features.items() if isinstance(feature, feature_type)]
    if len(typed) == 1:
        return typed[0]
    raise ValueError(
        f"Cannot tell which column holds the {kind}s: none is named {' / '.join(candidates)} and "
        f"{len(typed)} columns are of type {feature_type.__name__}. The columns are {list(features)}; "
        f"pass {argument}=..."
    )


def _check_image_folder_labels(folder: str, features: Features) -> None:
    """An image folder gets labels from its class folders only when there are two or more and every image sits at
    the same depth; otherwise `datasets` silently drops the label column. Say which of the two went wrong."""
    if any(name in features for name in LABEL_COLUMNS):
        return
    extensions = {extension.lower() for extension in PILImage.registered_extensions()}
    images = [path for path in Path(folder).rglob("*") if path.suffix.lower() in extensions and path.is_file()]
    depths = Counter(len(path.relative_to(folder).parts) for path in images)
    if len(depths) > 1:
        usual = depths.most_common(1)[0][0]
        odd = next(path for path in images if len(path.relative_to(folder).parts) != usual)
        raise ValueError(
            f"The images in {folder} sit at different folder depths ({odd.relative_to(folder)} among others at "
            f"depth {usual}), so no class can be read from the folder names. Put every image directly in its class "
            "folder: <split>/<class>/<image>, or <class>/<image>."
        )
    classes = sorted({path.parent.name for path in images})
    if len(classes) == 1:
        raise ValueError(
            f"{folder} has one class folder only ({classes[0]!r}); a classifier needs at least two: "
            "<split>/<class>/<image> with one folder per class."
        )


def _check_class_counts(train: Dataset, column: str, names: list[str], split: str) -> None:
    """At least two classes in training, and a warning for a class far rarer than the others (often a mistyped
    label or folder name)."""
    counts = np.bincount(train.data.column(column).to_numpy(), minlength=len(names))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        only = names[present[0]] if len(present) else "none"
        raise ValueError(
            f"Split {split!r} has examples of one class only ({only!r}, {len(names)} class names in all): a "
            "classifier needs examples of at least two classes."
        )
    median = float(np.median(counts[present]))
    rare = [(names[i], int(counts[i])) for i in present if counts[i] < RARE_CLASS_FRACTION * median]
    if rare:
        listed = ", ".join(f"{name!r} ({count})" for name, count in rare[:5])
        logger.warning(
            "Split %r: few examples of %s, against a median of %d per class. A mistyped label or folder name makes "
            "an extra class; fix or remove those rows if so.",
            split,
            listed,
            median,
        )


def _as_images(split: Dataset, column: str, name: str) -> Dataset:
    """Columns of file paths or encoded bytes become an Image column (decoded lazily, when an example is read)."""
    feature = split.features[column]
    if isinstance(feature, Image):
        return split
    paths_or_bytes = isinstance(feature, Value) and feature.dtype in (
        "string",
        "large_string",
        "binary",
        "large_binary",
    )
    encoded = isinstance(feature, dict) and set(feature) == {"bytes", "path"}  # Image storage without its metadata
    if not (paths_or_bytes or encoded):
        raise ValueError(
            f"Column {column!r} of split {name!r} holds {feature}, not images (or image paths / encoded bytes); "
            f"pass image_column=... to name the image column."
        )
    return split.cast_column(column, Image())


def _encode_labels(splits: dict[str, Dataset], column: str) -> tuple[dict[str, Dataset], list[str]]:
    """Give every split the same ClassLabel: kept when the data has one, sorted names for string labels, and
    "0".."max" for integer labels."""
    feature = next(iter(splits.values())).features[column]
    if isinstance(feature, ClassLabel):
        for name, split in splits.items():
            if split.features[column] != feature:
                raise ValueError(
                    f"Split {name!r} has labels {split.features[column]}, unlike the train split's {feature}."
                )
        return splits, list(feature.names)
    for name, split in splits.items():
        _check_no_missing_labels(split, column, name)
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        names = sorted(set().union(*(split.unique(column) for split in splits.values())))
    elif isinstance(feature, Value) and (feature.dtype.startswith("int") or feature.dtype.startswith("uint")):
        for name, split in splits.items():
            lowest = pc.min(split.data.column(column)).as_py()
            if lowest < 0:
                raise ValueError(
                    f"Split {name!r}: label column {column!r} has a negative class id ({lowest}); class ids start "
                    "at 0. Unlabelled examples (often -1) must be filtered out before training."
                )
        highest = max(pc.max(split.data.column(column)).as_py() for split in splits.values())
        names = [str(class_id) for class_id in range(highest + 1)]
    else:
        raise ValueError(
            f"Label column {column!r} holds {feature}; expected a ClassLabel, integer class ids or class names. "
            f"Pass label_column=... to name another column."
        )
    label = ClassLabel(names=names)
    return {name: split.cast_column(column, label) for name, split in splits.items()}, names


def _check_no_missing_labels(split: Dataset, column: str, name: str) -> None:
    values = split.data.column(column)
    if values.null_count:
        row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"Split {name!r} has {values.null_count} examples without a label (first at row {row}).")


def _check_label_range(split: Dataset, column: str, num_labels: int, name: str) -> None:
    """A full scan of the label column (cheap: one integer per example)."""
    _check_no_missing_labels(split, column, name)
    labels = split.data.column(column).to_numpy()
    outside = np.flatnonzero((labels < 0) | (labels >= num_labels))
    if outside.size:
        row = int(outside[0])
        raise ValueError(
            f"Split {name!r} has {outside.size} labels outside the class range 0..{num_labels - 1} (first at row "
            f"{row}: {int(labels[row])}). Unlabelled examples (often -1) must be filtered out before training."
        )


def _hold_out(train: Dataset, column: str, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded, stratified validation split carved from train: the same rows for the same seed."""
    labels = np.asarray(train.with_format("numpy")[column])
    counts = np.bincount(labels)
    single = np.flatnonzero(counts == 1)
    if single.size:
        name = train.features[column].names[single[0]]
        raise ValueError(
            f"Class {name!r} has a single training example, which cannot be both trained on and held out for "
            f"validation ({single.size} such classes). If it is a mistyped label, fix or remove that row; otherwise "
            "use a dataset with a validation split."
        )
    try:
        kept, held_out = train_test_split(np.arange(len(train)), test_size=fraction, random_state=seed, stratify=labels)
    except ValueError as error:
        raise ValueError(
            f"Cannot carve a stratified validation split of {fraction:.0%} from {len(train)} training examples: "
            f"{str(error).rstrip('.')}. Use a larger validation_fraction, or a dataset with a validation split."
        ) from error
    # Rows stay in source order (loaders shuffle; sequential reads are faster), and the indices stay in memory
    # rather than in a cache file next to the source data, which may be read-only or shared.
    return train.select(np.sort(kept), keep_in_memory=True), train.select(np.sort(held_out), keep_in_memory=True)
