"""What partial fine-tuning saves: trainable parameters, optimizer state, training step time and peak memory of
LoRA (through PEFT), the last blocks only and the linear probe, against full fine-tuning of the same model.

Each mode gets the same model (vit_hf, timm's architecture, random weights), the same batch and the recipe's
optimizer set-up (`create_optimizer`: AdamW, fused, weight-decay groups); its step is forward, cross-entropy,
backward and the optimizer step, timed interleaved with the other modes (a slow moment of a shared machine hits
all of them alike) and reported as the median over repeats.

    python -m benchmarks.finetune_modes                        # ViT-S/16 at 224, batch 8, CPU, float32
    python -m benchmarks.finetune_modes --precision bf16 --output results.md
"""

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.model_throughput import state_bytes, step_peak_bytes, time_interleaved
from vit_hf import ViTHFConfig, ViTHFForImageClassification
from vit_hf.files import write_text_atomic
from vit_hf.training.freezing import freeze, train_mode
from vit_hf.training.lora import apply_lora, trainable_parameters
from vit_hf.training.optimization import create_optimizer

MODES = ("full", "lora", "lora_mlp", "last_2_blocks", "linear_probe")


def build(mode: str, preset: str, lora_r: int) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """The model for `mode` (same weights for every mode) and the modules kept in eval mode."""
    torch.manual_seed(0)
    config = ViTHFConfig.from_preset(preset, num_labels=10, attn_implementation="sdpa_cpu_bf16")
    model = ViTHFForImageClassification(config)
    torch.nn.init.trunc_normal_(model.head.weight, std=0.02)  # a zero head would stop every gradient below it
    frozen = freeze(model, backbone=mode == "linear_probe", trainable_blocks=2 if mode == "last_2_blocks" else None)
    if mode.startswith("lora"):
        model = apply_lora(model, rank=lora_r, alpha=2 * lora_r, dropout=0.0, include_mlp=mode == "lora_mlp")
    return model, frozen


def make_step(model, frozen, optimizer, pixels, labels, precision: str) -> Callable[[], None]:
    def step() -> None:
        train_mode(model, frozen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(pixel_values=pixels).logits
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def run(args: argparse.Namespace) -> str:
    config = ViTHFConfig.from_preset(args.preset)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.batch_size, 3, config.image_size, config.image_size, generator=generator)
    labels = torch.randint(0, 10, (args.batch_size,), generator=generator)
    rows, steps = {}, {}
    for mode in args.modes:
        model, frozen = build(mode, args.preset, args.lora_r)
        optimizer = create_optimizer(model, "adamw", 1e-4, weight_decay=0.05)
        steps[mode] = make_step(model, frozen, optimizer, pixels, labels, args.precision)
        for _ in range(args.warmup):
            steps[mode]()
        trainable, total = trainable_parameters(model)
        optimizer_state = state_bytes(torch.nn.Module(), optimizer)  # the optimizer's tensors alone
        rows[mode] = {"trainable": trainable, "total": total, "optimizer_mib": optimizer_state / 2**20}
        rows[mode]["peak_mib"] = step_peak_bytes(steps[mode], torch.device("cpu")) / 2**20
    seconds = time_interleaved(steps, args.steps_per_repeat, args.repeats, torch.device("cpu"))
    for mode in args.modes:
        rows[mode]["step_ms"] = 1000 * statistics.median(seconds[mode])
    return markdown(rows, args)


def markdown(rows: dict[str, dict], args: argparse.Namespace) -> str:
    full = rows.get("full")
    lines = [
        f"{args.preset}, batch {args.batch_size}, {args.precision}, CPU ({torch.get_num_threads()} threads), "
        f"LoRA r={args.lora_r}; median of {args.repeats} repeats of {args.steps_per_repeat} steps",
        "",
        "| mode | trained parameters | share | optimizer state MiB | step ms | step vs full | peak MiB above "
        "the weights | peak vs full |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in rows.items():
        step_ratio = f"{row['step_ms'] / full['step_ms']:.2f}" if full else "-"
        peak_ratio = f"{row['peak_mib'] / full['peak_mib']:.2f}" if full else "-"
        lines.append(
            f"| {mode} | {row['trainable']:,} | {100 * row['trainable'] / row['total']:.2f}% | "
            f"{row['optimizer_mib']:.1f} | {row['step_ms']:.0f} | {step_ratio} | {row['peak_mib']:.0f} | {peak_ratio} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small_patch16_224", help="a vit_hf preset (vit_hf.list_presets())")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps-per-repeat", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, help="also write the table here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    table = run(args)
    print(table)
    if args.output:
        write_text_atomic(args.output, table + "\n")
    return table


if __name__ == "__main__":
    sys.exit(main() and 0)
