"""Write a small generated dataset in the Hub CIFAR-10 layout and schema, for fine-tuning runs without network access.

`<dir>/README.md` and `<dir>/plain_text/{train,test}-00000-of-00001.parquet` with an `img` Image column (32x32 RGB
PNG) and a `label` ClassLabel column with CIFAR-10's ten names: `load_dataset("<dir>")` reads it like the Hub's
`cifar10`. Each class has its own colour and grating angle under noise, so a model can learn it in a few hundred
steps. The generator is `tests.data_utils.write_cifar_like`, the one the tests use.

    python -m benchmarks.fake_cifar10 /tmp/cifar10 --train-size 2048 --test-size 512
"""

import argparse
from pathlib import Path

from tests.data_utils import write_cifar_like


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--train-size", type=int, default=2048)
    parser.add_argument("--test-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        write_cifar_like(args.directory, args.train_size, args.test_size, seed=args.seed)
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote {args.train_size} train and {args.test_size} test images to {args.directory / 'plain_text'}")


if __name__ == "__main__":
    main()
