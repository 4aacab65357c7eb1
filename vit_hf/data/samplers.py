"""Reproducible training order and augmentation: the shuffle is a function of (seed, epoch) and each example's
random transform a function of (seed, epoch, index). A run resumed mid-epoch therefore sees exactly the images an
uninterrupted run would, whatever the number of DataLoader workers, prefetching or processes."""

import random

import torch
from torch.utils.data import Dataset, Sampler


class EpochShuffleSampler(Sampler):
    """Yields `(index, epoch)` pairs in an order fixed by (seed, epoch); call `set_epoch` before each epoch
    (Accelerate's prepared DataLoader forwards its `set_epoch` here)."""

    def __init__(self, num_examples: int, seed: int):
        self.num_examples = num_examples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_examples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for index in torch.randperm(self.num_examples, generator=generator).tolist():
            yield index, self.epoch


class PerExampleSeeded(Dataset):
    """Wraps a dataset whose items are drawn with random transforms: item `(index, epoch)` is computed under a seed
    fixed by (seed, epoch, index), leaving the caller's random state untouched. With `random_items=False` (the items
    are decoded but not augmented, as when the augmentation runs batched on the device) there is nothing to seed, and
    a batch is fetched in one call of the dataset's `__getitems__`: one Arrow read instead of one per row."""

    def __init__(self, dataset, seed: int, random_items: bool = True):
        self.dataset = dataset
        self.seed = seed
        self.random_items = random_items

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, keys: list[tuple[int, int]]) -> list:
        if self.random_items or not hasattr(self.dataset, "__getitems__"):
            return [self[key] for key in keys]
        return self.dataset.__getitems__([index for index, _ in keys])

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        example_seed = hash((self.seed, epoch, index)) % 2**63  # tuples of ints hash the same in every process
        python_state = random.getstate()  # timm's random erasing draws from Python's generator
        try:
            with torch.random.fork_rng(devices=[]):
                # The CPU generator only: torch.manual_seed would also queue seeds for CUDA, XPU and MTIA, each
                # recording a stack trace when they are not initialised (15x the cost, per image).
                torch.default_generator.manual_seed(example_seed)
                random.seed(example_seed)
                return self.dataset[index]
        finally:
            random.setstate(python_state)
