"""Training checkpoints that are either complete or absent: each is written to a hidden temporary folder and renamed
to `checkpoint-<step>` only once every file is on disk, so a crash mid-save never leaves a folder that resume would
pick. The last K are kept."""

import json
import os
import re
import shutil
from pathlib import Path

from ..files import write_json_atomic

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"


def checkpoint_steps(output_dir: str | Path) -> list[int]:
    """Steps of the complete checkpoints in `output_dir`, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    steps = []
    for entry in output_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(entry.name)
        if match and (entry / STATE_FILE).is_file():
            steps.append(int(match[1]))
    return sorted(steps)


def resolve_resume_path(resume_from_checkpoint: str | None, output_dir: str | Path) -> Path | None:
    """`latest` -> newest complete checkpoint in output_dir (None if there is none yet, so a restarted job that never
    saved starts fresh); a path -> that checkpoint, which must be complete."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        steps = checkpoint_steps(output_dir)
        return Path(output_dir) / f"checkpoint-{steps[-1]}" if steps else None
    path = Path(resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"{path} is not a complete checkpoint (no {STATE_FILE}). Pass a `checkpoint-<step>` folder written by "
            "this recipe, or `latest` to pick the newest one in --output_dir."
        )
    return path


def temporary_checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f".tmp-checkpoint-{step}"


def finalize_checkpoint(output_dir: str | Path, step: int, state: dict, keep_last: int | None) -> Path:
    """Write the training state into the temporary folder, rename it into place, then drop old checkpoints.
    Main process only, after every process has finished writing its part."""
    tmp = temporary_checkpoint_dir(output_dir, step)
    write_json_atomic(tmp / STATE_FILE, state)
    final = Path(output_dir) / f"checkpoint-{step}"
    if final.exists():  # a resumed run reaching a step it saved before
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep_last is not None:
        for old in checkpoint_steps(output_dir)[:-keep_last]:
            shutil.rmtree(Path(output_dir) / f"checkpoint-{old}", ignore_errors=True)
    return final


def read_state(checkpoint: str | Path) -> dict:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text())


def remove_stale_temporaries(output_dir: str | Path) -> None:
    """Leftovers of a run killed mid-save, mid-push or mid-start."""
    for pattern in (".tmp-checkpoint-*", ".upload-checkpoint-*", ".shared-*", ".final-tmp"):
        for entry in Path(output_dir).glob(pattern):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
