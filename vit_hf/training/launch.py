"""Checks on how the run was launched, made before any work."""

import os


def check_process_count(num_processes: int) -> None:
    """ValueError when the launcher started WORLD_SIZE processes but accelerate joined them into another number:
    they would train unconnected copies of the run into one output folder."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched == num_processes:
        return
    hint = (
        " On the CPU, a multi-process launch config (e.g. recipes/accelerate/cpu_ddp.yaml) needs ACCELERATE_USE_CPU=1:"
        " ACCELERATE_USE_CPU=1 accelerate launch --config_file recipes/accelerate/cpu_ddp.yaml recipes/finetune.py ..."
        if os.environ.get("ACCELERATE_USE_CPU") is None
        else ""
    )
    raise ValueError(
        f"The launcher started {launched} processes (WORLD_SIZE) but accelerate runs {num_processes}: each would "
        f"train alone into the same output folder.{hint}"
    )
