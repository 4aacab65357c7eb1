"""The seed article's claims about ViT, measured on real CIFAR-10 images.

    python -m benchmarks.seed_claims ../shared/data/cifar10-subset [--seeds 0 1 2] [--rows seed seed_pos ...]

Every row trains from scratch for the same budget, the seed's recipe: Adam at a constant 1e-4, batch 128, 240 steps
(10 epochs of the 3,051-image subset), at 32 px, and reports test accuracy (1,017 images) as mean and spread over
seeds. The model is the seed's (`seed_vit`: post-norm `nn.TransformerEncoderLayer` blocks with ReLU and dropout 0.1,
strided-conv patches, mean of the tokens, no class token, no position embedding) at a CPU size: width 64, 4 blocks,
4 heads, MLP 128, 4 px patches. Each row changes one thing:

  seed        the seed's model and recipe as they are
  seed_pos    + learned position embeddings (the reference for the rows below, which all keep them)
  recipe      vit_hf's from-scratch CPU recipe (recipes/configs/cifar10_cpu.yaml) cut to 10 epochs of the subset
  cls         class-token pooling instead of the mean of the tokens
  patch2/8    2 or 8 px patches (the seed's 16 / 64 px patches at 224 px: 16 and 4 tokens a side; 4 px = 32 px
              patches at 224)
  overlap     8 px patches every 4 px (overlapping; as many tokens as 4 px patches)
  hybrid      a ResNet stem (7x7 stride-2 convolution + max pool) instead of patches: as many tokens again
  plain_third, hybrid_third   the same, trained on a stratified third of the training images (same steps)
  res48       the 240 steps at 32 px, then 72 more at 48 px with the position embeddings resampled (tested at 48)
  res32       the same 312 steps all at 32 px

Results go to --output (JSON lines, one per run, appended: an interrupted run keeps what it measured) and the table
is printed from everything in that file. CPU-bound: run it under `nice`; rows are independent processes (--jobs).
"""

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import load_dataset

from vit_hf import ViTHFConfig, ViTHFForImageClassification
from vit_hf.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
STEPS, BATCH, LEARNING_RATE = 240, 128, 1e-4  # the seed's recipe: 10 epochs of 3,051 images at batch 128
SEED_SIZE = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128)
POS = dict(use_pos_embed=True)
ROWS = {
    "seed": dict(),
    "seed_pos": POS,
    "recipe": None,  # runs recipes/finetune.py
    "cls": dict(POS, class_token=True, pooling="cls"),
    "patch2": dict(POS, patch_size=2),
    "patch8": dict(POS, patch_size=8),
    "overlap": dict(POS, patch_size=8, patch_stride=4),
    "hybrid": dict(POS, backbone_depths=[], patch_size=1),
    "plain_third": dict(POS, train_fraction=1 / 3),
    "hybrid_third": dict(POS, backbone_depths=[], patch_size=1, train_fraction=1 / 3),
    "res48": dict(POS, extra_steps=72, extra_size=48),
    "res32": dict(POS, extra_steps=72, extra_size=32),
}


def load_split(path: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and int64 labels of one split of a Hub-layout CIFAR-10 copy."""
    data = load_dataset(path, split=split)
    images = np.stack([np.asarray(image.convert("RGB")) for image in data["img"]])  # (N, 32, 32, 3)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(data["label"])


def stratified_fraction(labels: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of `fraction` of each class, drawn with `generator`."""
    keep = []
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        keep.append(members[: round(len(members) * fraction)])
    return torch.cat(keep)


def normalise(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, 32, 32) -> float in [-1, 1] at `size` px (ViT's 0.5 mean and std), bilinear when resized."""
    pixels = images.float().div(255).sub(0.5).div(0.5)
    return pixels if size == pixels.shape[-1] else F.interpolate(pixels, size=size, mode="bilinear", antialias=True)


def train_steps(model, optimizer, images, labels, steps: int, size: int, generator: torch.Generator) -> None:
    """`steps` Adam steps on shuffled batches of BATCH (reshuffled each pass, last partial batch dropped)."""
    model.train()
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < BATCH:
            order = torch.randperm(len(images), generator=generator)
        batch, order = order[:BATCH], order[BATCH:]
        loss = model(normalise(images[batch], size), labels=labels[batch]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor, size: int) -> float:
    model.eval()
    correct = sum(
        (model(normalise(images[i : i + 256], size)).logits.argmax(-1) == labels[i : i + 256]).sum().item()
        for i in range(0, len(images), 256)
    )
    return correct / len(images)


def run_model_row(path: str, row: str, seed: int) -> dict:
    """Train one row's model with the seed's recipe; returns its test accuracy and timings."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    options = dict(ROWS[row])
    fraction = options.pop("train_fraction", 1.0)
    extra_steps, extra_size = options.pop("extra_steps", 0), options.pop("extra_size", 32)
    train_images, train_labels = load_split(path, "train")
    test_images, test_labels = load_split(path, "test")
    if fraction < 1.0:
        keep = stratified_fraction(train_labels, fraction, generator)
        train_images, train_labels = train_images[keep], train_labels[keep]
    config = ViTHFConfig.from_preset("seed_vit", num_labels=10, **{**SEED_SIZE, **options})
    model = ViTHFForImageClassification(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    wall, cpu = time.perf_counter(), time.process_time()
    train_steps(model, optimizer, train_images, train_labels, STEPS, 32, generator)
    size = 32
    if extra_steps:
        if extra_size != 32:
            model.set_image_size(extra_size)  # bicubic resampling of the position embeddings
            optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)  # pos_embed is a new parameter
        size = extra_size
        train_steps(model, optimizer, train_images, train_labels, extra_steps, size, generator)
    timings = dict(train_wall_s=time.perf_counter() - wall, train_cpu_s=time.process_time() - cpu)
    return dict(
        test_accuracy=accuracy(model, test_images, test_labels, size),
        train_images=len(train_images),
        parameters=sum(p.numel() for p in model.parameters()),
        **timings,
    )


def run_recipe_row(path: str, seed: int) -> dict:
    """vit_hf's CPU recipe, as shipped but for 10 epochs (the seed's budget in epochs), through recipes/finetune.py."""
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, str(ROOT / "recipes" / "finetune.py"), "--config"]
        command += [str(ROOT / "recipes" / "configs" / "cifar10_cpu.yaml"), "--dataset", path, "--seed", str(seed)]
        command += ["--num_epochs", "10", "--output_dir", output, "--final_weights", "last"]
        command += ["--eval_strategy", "steps", "--eval_steps", "100000"]  # test accuracy only, at the end
        threads = str(torch.get_num_threads())
        env = dict(
            os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS=threads
        )
        wall, start = time.perf_counter(), os.times()
        result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
        end = os.times()
        if result.returncode:
            raise RuntimeError(f"recipe run failed:\n{result.stderr[-3000:]}")
        results = json.loads((Path(output) / "all_results.json").read_text())
    return dict(
        test_accuracy=results["test_accuracy"],
        train_wall_s=results["train_runtime"],
        train_cpu_s=end.children_user + end.children_system - start.children_user - start.children_system,
        process_wall_s=time.perf_counter() - wall,
    )


def run_one(path: str, row: str, seed: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    measured = run_recipe_row(path, seed) if row == "recipe" else run_model_row(path, row, seed)
    return dict(row=row, seed=seed, threads=threads, **measured)


def summary_table(records: list[dict]) -> str:
    """Markdown table: per row, mean and spread (min-max) of test accuracy over seeds, and mean CPU seconds."""
    lines = ["| row | test accuracy, mean (min-max) | seeds | train CPU-s per run |", "|---|---|---|---|"]
    for row in ROWS:
        runs = [r for r in records if r["row"] == row]
        if not runs:
            continue
        accuracies = [100 * r["test_accuracy"] for r in runs]
        spread = f"{min(accuracies):.1f}-{max(accuracies):.1f}"
        cpu = statistics.mean(r["train_cpu_s"] for r in runs)
        lines.append(f"| {row} | {statistics.mean(accuracies):.1f} ({spread}) | {len(runs)} | {cpu:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a local copy of CIFAR-10 in the Hub layout (img, label; train and test)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one process (and torch thread) each")
    parser.add_argument("--output", default="benchmarks/results/seed_claims.jsonl")
    args = parser.parse_args()
    if not Path(args.dataset, "plain_text").is_dir():
        parser.error(f"{args.dataset!r} is not a Hub-layout CIFAR-10 copy (no plain_text/ folder inside).")
    output = Path(args.output)
    records = [json.loads(line) for line in output.read_text().splitlines()] if output.exists() else []
    done = {(record["row"], record["seed"]) for record in records}
    todo = [(row, seed) for row in args.rows for seed in args.seeds if (row, seed) not in done]  # rows in order
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, args.dataset, row, seed, 1) for row, seed in todo]
        for future in futures:
            records.append(future.result())
            write_text_atomic(output, "".join(json.dumps(record) + "\n" for record in records))  # kept if interrupted
            print(json.dumps(records[-1]), flush=True)
    print(summary_table(records))


if __name__ == "__main__":
    main()
