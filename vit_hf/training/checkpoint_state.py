"""The training state beyond model and optimizer, kept in files that cannot run code when loaded: the learning-rate
schedule as JSON, the EMA weights as safetensors, and each process's random-number state as JSON.

Accelerate would pickle the first two (`register_for_checkpointing` loads them with `weights_only=False`, so a
replaced file runs arbitrary code), and it reloads its own random-state pickle only on a best-effort basis (a
missing or damaged file is logged at INFO and the run goes on, no longer exact). Here every file is required and a
problem is a `CheckpointError` that names the file.
"""

import contextlib
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..files import atomic_write, write_json_atomic

SCHEDULER_FILE = "scheduler.json"
EMA_FILE = "ema.safetensors"
RNG_FILE = "rng_state_{}.json"  # one per process: each draws its own augmentation, MixUp and stochastic depth
ACCELERATE_RNG_FILE = "random_states_{}.pkl"  # accelerate's pickle, replaced by RNG_FILE


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed exactly; the message names the file."""


@contextlib.contextmanager
def accelerate_quietly():
    """Around `save_state` / `load_state`: accelerate's INFO lines would report its random-state pickle saved (it is
    replaced at once) and "Could not load random states" (they are restored from JSON right after)."""
    accelerate_logger = logging.getLogger("accelerate.checkpointing")
    level = accelerate_logger.level
    accelerate_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        accelerate_logger.setLevel(level)


def save_process_state(folder: Path, process_index: int) -> None:
    """Every process, after `accelerator.save_state`: its random-number state, in place of accelerate's pickle."""
    write_json_atomic(folder / RNG_FILE.format(process_index), rng_state())
    (folder / ACCELERATE_RNG_FILE.format(process_index)).unlink(missing_ok=True)


def save_shared_state(folder: Path, scheduler, ema: torch.nn.Module | None) -> None:
    """Main process: the schedule (the same on every process) and the EMA weights."""
    write_json_atomic(folder / SCHEDULER_FILE, scheduler.state_dict())
    if ema is not None:
        with atomic_write(folder / EMA_FILE) as tmp:
            save_file({name: tensor.contiguous() for name, tensor in ema.state_dict().items()}, str(tmp))


def load_state(folder: Path, process_index: int, scheduler, ema: torch.nn.Module | None) -> None:
    """Every process, after `accelerator.load_state`: restore schedule, EMA and this process's random state, or
    raise `CheckpointError`."""
    scheduler_state = _read_json(folder / SCHEDULER_FILE)
    _apply(folder / SCHEDULER_FILE, scheduler.load_state_dict, scheduler_state)
    if ema is not None:
        path = folder / EMA_FILE
        _require(path)
        try:
            weights = load_file(str(path))
        except Exception as error:
            raise CheckpointError(f"{path} cannot be read ({type(error).__name__}: {error}).") from error
        _apply(path, ema.load_state_dict, weights)
    path = folder / RNG_FILE.format(process_index)
    _apply(path, set_rng_state, _read_json(path))


def rng_state() -> dict:
    """Python's, numpy's and torch's (CPU and every CUDA device's) generator states as plain JSON values."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [device_state.tolist() for device_state in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if torch.cuda.is_available():
        if "cuda" not in state:
            raise ValueError("it was saved without CUDA, so the device's random state cannot be restored")
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _require(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing, so the run cannot continue exactly.")


def _read_json(path: Path):
    _require(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}: {error}).") from error


def _apply(path: Path, load, state) -> None:
    try:
        load(state)
    except Exception as error:  # wrong keys, shapes or types: the file does not belong to this run's set-up
        raise CheckpointError(f"{path} does not fit this run ({type(error).__name__}: {error}).") from error
