"""Time to accuracy on real CIFAR-10: vit_hf's recipe against what a user would pick instead, side by side.

    python -m benchmarks.time_to_accuracy ../shared/data/cifar10-subset [--epochs 10] [--seed 0] [--threads 2]

Both sides train the same plain ViT from scratch (32 px, 4 px patches, width 128, 4 blocks, 4 heads, MLP 256, class
token; 0.55M parameters) on the same data with the same hyperparameters (AdamW 2e-3, weight decay 0.05, cosine
schedule with 50 warmup steps, batch 64, label smoothing 0.1, gradient clipping at 1, bilinear random resized crops
of scale 0.08-1 and horizontal flips, a stratified 10% of train held out for validation, evaluated every epoch):

  vit_hf        `recipes/finetune.py` (vit_hf's model, uint8 batches augmented on the device)
  transformers  `transformers.Trainer` with transformers' `ViTForImageClassification` and the preprocessing of
                transformers' `run_image_classification` example (torchvision RandomResizedCrop + flip +
                Normalize per image in `set_transform`, Resize + CenterCrop for evaluation)

Each side runs in its own process with the same thread count. Reported: wall and CPU seconds per epoch of
training (evaluation excluded where the framework separates it), final test accuracy, and the ratio; each run's
rows are appended to --output.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = dict(patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256)
HPARAMS = dict(learning_rate=2e-3, weight_decay=0.05, warmup_steps=50, batch_size=64, label_smoothing=0.1)


def run_vit_hf(dataset: str, epochs: int, seed: int, output: str) -> dict:
    overrides = dict(MODEL, pooling="cls", class_token=True)
    flags = dict(
        model="tiny_patch16_224",
        image_size=32,
        model_overrides=json.dumps(overrides),
        drop_path_rate=0.0,
        dataset=dataset,
        validation_fraction=0.1,
        output_dir=output,
        optimizer="adamw",
        learning_rate=HPARAMS["learning_rate"],
        weight_decay=HPARAMS["weight_decay"],
        lr_scheduler_type="cosine",
        warmup_steps=HPARAMS["warmup_steps"],
        num_epochs=epochs,
        per_device_train_batch_size=HPARAMS["batch_size"],
        per_device_eval_batch_size=256,
        label_smoothing=HPARAMS["label_smoothing"],
        max_grad_norm=1.0,
        crop_scale_min=0.08,
        interpolation="bilinear",  # torchvision's RandomResizedCrop default, as the transformers side crops
        hflip=0.5,
        eval_strategy="epoch",
        save_strategy="no",
        final_weights="last",
        dataloader_num_workers=0,
        mixed_precision="no",
        seed=seed,
    )
    command = [sys.executable, str(ROOT / "recipes" / "finetune.py")]
    command += [item for key, value in flags.items() for item in (f"--{key}", str(value))]
    subprocess.run(command, env=child_env(), check=True, capture_output=True, cwd=ROOT)
    results = json.loads((Path(output) / "all_results.json").read_text())
    return dict(
        train_runtime_s=results["train_runtime"],
        eval_seconds=results["train_evaluation_and_checkpoint_seconds"],
        test_accuracy=results["test_accuracy"],
    )


def run_transformers(dataset: str, epochs: int, seed: int, output: str) -> dict:
    """transformers' run_image_classification example, reduced to its parts that matter here."""
    import numpy as np
    import torch
    from datasets import load_dataset
    from torchvision.transforms import (
        CenterCrop,
        Compose,
        Normalize,
        RandomHorizontalFlip,
        RandomResizedCrop,
        Resize,
        ToTensor,
    )
    from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification, ViTImageProcessor

    data = load_dataset(dataset)
    split = data["train"].train_test_split(test_size=0.1, stratify_by_column="label", seed=seed)
    names = data["train"].features["label"].names
    config = ViTConfig(
        image_size=32,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        layer_norm_eps=1e-6,
        **MODEL,
    )
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    normalize = Normalize(mean=processor.image_mean, std=processor.image_std)
    size = (processor.size["height"], processor.size["width"])
    train_transforms = Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(), normalize])
    eval_transforms = Compose([Resize(size), CenterCrop(size), ToTensor(), normalize])

    def transform(transforms):
        def apply(batch):
            batch["pixel_values"] = [transforms(image.convert("RGB")) for image in batch["img"]]
            return batch

        return apply

    split["train"].set_transform(transform(train_transforms))
    split["test"].set_transform(transform(eval_transforms))
    test = data["test"].with_transform(transform(eval_transforms))

    def collate_fn(examples):
        pixel_values = torch.stack([example["pixel_values"] for example in examples])
        return {"pixel_values": pixel_values, "labels": torch.tensor([example["label"] for example in examples])}

    def compute_metrics(prediction):
        return {"accuracy": float(np.mean(np.argmax(prediction.predictions, axis=1) == prediction.label_ids))}

    arguments = TrainingArguments(
        output_dir=output,
        num_train_epochs=epochs,
        per_device_train_batch_size=HPARAMS["batch_size"],
        per_device_eval_batch_size=256,
        learning_rate=HPARAMS["learning_rate"],
        weight_decay=HPARAMS["weight_decay"],
        lr_scheduler_type="cosine",
        warmup_steps=HPARAMS["warmup_steps"],
        label_smoothing_factor=HPARAMS["label_smoothing"],
        max_grad_norm=1.0,
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=50,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=True,
        seed=seed,
        report_to="none",
        disable_tqdm=True,
    )
    model = ViTForImageClassification(config)
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=split["train"],
        eval_dataset=split["test"],
        data_collator=collate_fn,
        compute_metrics=compute_metrics,
    )
    train = trainer.train().metrics
    eval_seconds = sum(log.get("eval_runtime", 0.0) for log in trainer.state.log_history)
    test = trainer.evaluate(test, metric_key_prefix="test")
    return dict(train_runtime_s=train["train_runtime"], eval_seconds=eval_seconds, test_accuracy=test["test_accuracy"])


SIDES = {"vit_hf": run_vit_hf, "transformers": run_transformers}


def commit() -> str:
    """The measured code's git commit (with "+changes" when the tree differs from it), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    except OSError:  # no git
        return "unknown"
    if head.returncode:  # not a checkout
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def child_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def measure(side: str, dataset: str, epochs: int, seed: int, threads: int) -> dict:
    """One side in a fresh process; its CPU seconds (children included) and wall time around it."""
    command = [sys.executable, "-m", "benchmarks.time_to_accuracy", dataset, "--side", side]
    command += ["--epochs", str(epochs), "--seed", str(seed), "--threads", str(threads)]
    env = dict(child_env(), OMP_NUM_THREADS=str(threads))
    start, wall = os.times(), time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    end = os.times()
    if result.returncode:
        raise RuntimeError(f"{side} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    cpu = end.children_user + end.children_system - start.children_user - start.children_system
    train_share = measured["train_runtime_s"] - measured["eval_seconds"]
    return dict(
        side=side,
        epochs=epochs,
        seed=seed,
        threads=threads,
        train_wall_s_per_epoch=train_share / epochs,
        process_wall_s=time.perf_counter() - wall,
        process_cpu_s=cpu,
        test_accuracy=measured["test_accuracy"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a local copy of CIFAR-10 in the Hub layout (img, label; train and test)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/time_to_accuracy.jsonl", help="JSON lines, appended")
    parser.add_argument("--side", choices=list(SIDES), help=argparse.SUPPRESS)  # one side, in a child process
    args = parser.parse_args()
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as output:
            print(json.dumps(SIDES[args.side](args.dataset, args.epochs, args.seed, output)))
        return
    if not Path(args.dataset, "plain_text").is_dir():
        parser.error(f"{args.dataset!r} is not a Hub-layout CIFAR-10 copy (no plain_text/ folder inside).")
    from vit_hf.files import write_text_atomic  # here, not at the top: each side's process imports only its own stack

    rows = [measure(side, args.dataset, args.epochs, args.seed, args.threads) for side in SIDES]
    measured = commit()
    for row in rows:
        print(json.dumps(row))
    output = Path(args.output)
    earlier = output.read_text() if output.exists() else ""
    write_text_atomic(
        output, earlier + "".join(json.dumps(dict(row, dataset=args.dataset, commit=measured)) + "\n" for row in rows)
    )
    vit_hf, peer = rows
    print("| | vit_hf recipe | transformers Trainer | Trainer / vit_hf |\n|---|---|---|---|")
    for key in ("train_wall_s_per_epoch", "process_wall_s", "process_cpu_s"):
        print(f"| {key} | {vit_hf[key]:.1f} | {peer[key]:.1f} | {peer[key] / vit_hf[key]:.2f} |")
    print(f"| test accuracy | {100 * vit_hf['test_accuracy']:.1f}% | {100 * peer['test_accuracy']:.1f}% | |")


if __name__ == "__main__":
    main()
