"""What a run prints: one log format for the run and the libraries (each line once, written through the progress
bar), without the libraries' per-save chatter; an up-front estimate of the step time; the final summary table."""

import logging
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that attach their own console handler while the root logger has one too: each line would print twice.
OWN_HANDLER_LIBRARIES = ("huggingface_hub", "datasets")
SLOW_STEP_SECONDS = 10.0  # above this, warn before training: the run is far too big for the device


def configure_logging() -> None:
    """INFO from the run; warnings only from accelerate (its INFO lines are per-save notices) and no "Writing model
    shards" bar from transformers at every save."""
    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO)
    for name in OWN_HANDLER_LIBRARIES:
        logging.getLogger(name).handlers.clear()  # the root handler prints their lines, once
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def step_flops(model: torch.nn.Module, batch_size: int, image_size: int | tuple[int, int]) -> float:
    """Training FLOPs of one step: the forward pass counted on a copy of the model on the meta device (no memory,
    no compute), times 3 for the backward, times the batch."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # LoRA: the network underneath
    with torch.device("meta"):
        copy = type(model)(model.config)
        pixels = torch.empty(1, 3, height, width)
    with FlopCounterMode(display=False) as counter:
        copy(pixel_values=pixels)
    return 3 * batch_size * counter.get_total_flops()


def device_flops_per_second(device: torch.device) -> float:
    """Measured: a float32 matrix product on `device` (a few milliseconds)."""
    a = torch.full((1024, 1024), 1e-3, device=device)  # not random: the run's random streams stay untouched
    (a @ a).sum().item()  # warm-up
    start, repeats = time.perf_counter(), 4
    for _ in range(repeats):
        a = (a @ a) * 1e-3
    a.sum().item()
    return repeats * 2 * 1024**3 / (time.perf_counter() - start)


def estimate_run_time(model: torch.nn.Module, batch_size: int, image_size: int, steps: int, device) -> float:
    """Log the estimated seconds per step and the ETA; warn when one step would take more than SLOW_STEP_SECONDS.
    Returns the estimate per step. Training reaches well under the matmul rate, hence the factor 2 (a lower bound
    in practice: the actual time per step is on the progress bar)."""
    with torch.random.fork_rng(devices=[]):  # building the meta copy must not move the CPU generator (exact resume)
        flops = step_flops(model, batch_size, image_size)
    seconds = 2 * flops / device_flops_per_second(torch.device(device))
    message = "estimated %.2g s per step on %s: about %s for %d steps"
    if seconds > SLOW_STEP_SECONDS:
        logging.getLogger("vit_hf.finetune").warning(
            message + " (very slow: lower --image_size or --per_device_train_batch_size, or use a GPU)",
            seconds,
            device,
            format_seconds(seconds * steps),
            steps,
        )
    else:
        logging.getLogger("vit_hf.finetune").info(message, seconds, device, format_seconds(seconds * steps), steps)
    return seconds


def format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def summary_table(results: dict, output_dir: os.PathLike) -> str:
    """The final results as a short table: accuracy, top-5, loss per split, time, and where the model is."""
    lines = [f"{'':12}{'accuracy':>10}{'top-5':>10}{'loss':>10}{'examples':>10}"]
    for split, prefix in (("validation", "eval_"), ("test", "test_")):
        if f"{prefix}accuracy" in results:
            values = [results[f"{prefix}{key}"] for key in ("accuracy", "top5_accuracy", "loss")]
            lines.append(
                f"{split:12}" + "".join(f"{v:>10.4f}" for v in values) + f"{results[f'{prefix}num_examples']:>10}"
            )
    if "train_runtime" in results:
        total = results.get("train_runtime_total", results["train_runtime"])
        this_run = (
            "" if total == results["train_runtime"] else f" ({format_seconds(results['train_runtime'])} this run)"
        )
        lines.append(f"training    {results['step']} steps in {format_seconds(total)}{this_run}")
    lines.append(f"model       {output_dir} (all_results.json has every figure)")
    return "\n".join(lines)
