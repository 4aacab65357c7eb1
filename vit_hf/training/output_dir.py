"""Checks on `--output_dir` before a run writes into it."""

import socket
import time
import uuid
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

SHARED_DIR_PATIENCE = 60.0  # seconds: NFS clients cache "no such file" answers for up to about a minute


def check_output_dir(output_dir: str | Path, resume_from_checkpoint: str | None, overwrite: bool) -> None:
    """Runs on every process, so that all of them stop on bad input instead of waiting for each other."""
    output_dir = Path(output_dir)
    # Hidden entries are temporaries of an interrupted run, removed at start.
    has_content = output_dir.is_dir() and any(not entry.name.startswith(".") for entry in output_dir.iterdir())
    if has_content and resume_from_checkpoint is None and not overwrite:
        raise ValueError(
            f"--output_dir {output_dir} is not empty. Resume with --resume_from_checkpoint latest, pass "
            "--overwrite_output_dir true to train into it anyway, or choose another folder."
        )


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
