"""What the fine-tuning loop costs beyond the model: the whole loop of `recipes/finetune.py` (data loading, device
transforms, loss bookkeeping, schedule, logging) against the model-only step (forward, backward, clipping, optimizer
step on one batch kept on the device), on the same model, batch and precision, in one process.

    python -m benchmarks.recipe_overhead                                   # CPU: tiny ViT at 64 px
    python -m benchmarks.recipe_overhead --device cuda --model base_patch16_224 --image-size 224 \\
        --batch-size 128 --mixed-precision bf16 --steps 100 --output overhead.md
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tests.data_utils import write_cifar_like
from vit_hf.data.transforms import collate
from vit_hf.files import write_text_atomic
from vit_hf.training.arguments import parse_arguments
from vit_hf.training.loop import FineTuning


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def model_only_seconds(run, steps: int, warmup: int, device: str) -> float:
    """Seconds per optimizer step on one batch that stays on the device, already transformed."""
    # Built in this process: iterating the loader would start its workers, which would then compete for the CPU.
    dataset = run.train_loader.dataset
    batch = collate([dataset[(index, 0)] for index in range(run.args.per_device_train_batch_size)])
    pixel_values, labels = (batch[key].to(run.accelerator.device) for key in ("pixel_values", "labels"))
    if run.train_transform is not None:
        pixel_values = run.train_transform(pixel_values)
    model, optimizer, accelerator = run.model, run.optimizer, run.accelerator
    model.train()

    def step():
        loss = F.cross_entropy(model(pixel_values=pixel_values).logits.float(), labels)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="tiny_patch16_224", help="a vit_hf preset (random weights)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (steadier figures on a shared CPU)")
    parser.add_argument("--output", type=Path, help="write the table (.md) or the figures (.json) here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        # Enough training images that the loop never starts a second epoch while timed.
        # (and at least 200, so that the 10% validation hold-out has every class).
        train_size = max(200, int((args.steps + args.warmup + 2) * args.batch_size / 0.9) + 20)
        dataset = write_cifar_like(Path(folder) / "cifar10", n_train=train_size, n_test=20)
        recipe_argv = [
            "--dataset", str(dataset), "--model", args.model, "--image_size", str(args.image_size),
            "--per_device_train_batch_size", str(args.batch_size), "--max_steps", str(args.steps),
            "--warmup_steps", "0", "--eval_strategy", "steps", "--eval_steps", str(10**9), "--save_strategy", "no",
            "--logging_steps", "20", "--mixed_precision", args.mixed_precision, "--report_to", "none",
            "--dataloader_num_workers", str(args.workers), "--output_dir", str(Path(folder) / "run"),
            "--use_cpu", str(args.device == "cpu").lower(),
        ]  # fmt: skip
        run = FineTuning(*parse_arguments(recipe_argv))
        model_step = model_only_seconds(run, args.steps, args.warmup, args.device)
        if args.workers:
            # Start the loader's persistent workers before the clock: a one-off cost, not a per-step one.
            next(iter(run.train_loader.base_dataloader))
        run.train()  # evaluations and checkpoints are timed separately and left out below
        loop_step = (run.train_runtime - run.pause_seconds) / run.steps_this_run
        run.finish()

    overhead = loop_step / model_step - 1
    figures = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "model": args.model,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "mixed_precision": args.mixed_precision,
        "transforms": "device" if run.train_transform is not None else "cpu",
        "model_only_ms_per_step": 1000 * model_step,
        "whole_loop_ms_per_step": 1000 * loop_step,
        "overhead": overhead,
    }
    table = "\n".join(
        [
            "| device | model | size | batch | precision | transforms | model-only ms/step | loop ms/step | overhead |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {figures['device']} | {args.model} | {args.image_size} | {args.batch_size} | {args.mixed_precision} "
            f"| {figures['transforms']} | {figures['model_only_ms_per_step']:.1f} "
            f"| {figures['whole_loop_ms_per_step']:.1f} | {100 * overhead:+.1f}% |",
        ]
    )
    print(table)
    if args.output:
        text = json.dumps(figures, indent=2) + "\n" if args.output.suffix == ".json" else table + "\n"
        write_text_atomic(args.output, text)


if __name__ == "__main__":
    main()
