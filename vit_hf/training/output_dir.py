"""Checks on `--output_dir` before a run writes into it."""

import socket
import time
import uuid
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

SHARED_DIR_PATIENCE = 60.0  # seconds: NFS clients cache "no such file" answers for up to about a minute


FINISHED_RUN_FILES = ("all_results.json", "config.json", "model.safetensors")  # written last, moved in together


def folder_content(output_dir: Path) -> list[str]:
    """The visible entries of `output_dir`; hidden ones are the lock, the run id and temporaries."""
    if not output_dir.is_dir():
        return []
    return sorted(entry.name for entry in output_dir.iterdir() if not entry.name.startswith("."))


def finished_outputs(output_dir: Path) -> bool:
    return all((output_dir / name).is_file() for name in FINISHED_RUN_FILES)


def check_output_dir(output_dir: str | Path, resume_from_checkpoint: str | None, overwrite: bool) -> None:
    """The folder against the flags: a new run needs an empty folder or --overwrite_output_dir."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {output_dir} is a file; name a folder (it is created if missing).")
    if overwrite and resume_from_checkpoint is not None:
        raise ValueError(
            "--overwrite_output_dir starts a new run and --resume_from_checkpoint continues one: pass only one."
        )
    content = folder_content(output_dir)
    if not content or resume_from_checkpoint is not None or overwrite:
        return
    checkpoints = [name for name in content if name.startswith("checkpoint-")]
    if checkpoints:
        advice = (
            f"It holds a run's checkpoints ({', '.join(checkpoints[-3:])}): continue that run with "
            "--resume_from_checkpoint latest, start over with --overwrite_output_dir true (its checkpoints are "
            "deleted), or choose another folder."
        )
    elif finished_outputs(output_dir):
        advice = (
            "It holds a finished run (all_results.json, model.safetensors) with no checkpoint to resume: choose "
            "another folder, or pass --overwrite_output_dir true to replace that run."
        )
    else:
        advice = (
            f"It holds {', '.join(content[:5])}: choose another folder, or pass --overwrite_output_dir true to "
            "train into it (files of the same names are replaced)."
        )
    raise ValueError(f"--output_dir {output_dir} is not empty. {advice}")


def check_output_dir_shared(accelerator: Accelerator, output_dir: Path) -> None:
    """Checkpoints are assembled from every process's files in one folder, so each process must see the main one's
    --output_dir (across machines: a shared filesystem)."""
    if accelerator.num_processes == 1:
        return
    marker = output_dir / f".shared-{broadcast_object_list([uuid.uuid4().hex])[0]}"
    if accelerator.is_main_process:
        marker.touch()
    accelerator.wait_for_everyone()
    deadline = time.monotonic() + SHARED_DIR_PATIENCE  # a network filesystem may show a new file with some delay
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(1.0)
    visible = gather_object([(marker.exists(), socket.gethostname())])
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker.unlink()
    blind = [f"process {rank} on {host}" for rank, (seen, host) in enumerate(visible) if not seen]
    if blind:
        raise ValueError(
            f"--output_dir {output_dir} is not shared: {', '.join(blind)} cannot see the files the main process "
            "writes there. With several machines, put --output_dir on a filesystem they all mount."
        )
