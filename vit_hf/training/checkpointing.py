"""Training checkpoints that are either complete or absent, and that resume only the run that wrote them.

Each checkpoint is written to a hidden temporary folder and renamed to `checkpoint-<step>` once every file is on
disk, so a crash mid-save never leaves a folder that resume would pick. Its `training_state.json`, written last,
records the run id and every file's size and SHA-256: a damaged, missing or added file is found before anything is
loaded, and `latest` then falls back to the previous checkpoint with a warning naming the file. The last K of the
run's checkpoints are kept; another run's are never picked or rotated away.
"""

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from ..files import write_json_atomic
from .checkpoint_state import CheckpointError

logger = logging.getLogger(__name__)
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"
FORMAT = 2  # 1: accelerate's pickles for schedule, EMA and random state, no file list (no longer loaded)
REPLACED = ".replaced-checkpoint-{}"  # a checkpoint being replaced by a new save of the same step


def checkpoint_steps(output_dir: str | Path, run_id: str | None = None) -> list[int]:
    """Steps of the complete checkpoints in `output_dir` (of run `run_id` only, when given), oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    steps = []
    for entry in output_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(entry.name)
        if match and (entry / STATE_FILE).is_file() and (run_id is None or checkpoint_run(entry) == run_id):
            steps.append(int(match[1]))
    return sorted(steps)


def checkpoint_run(checkpoint: Path) -> str | None:
    """The run id a checkpoint records; None when its state file cannot be read or predates run ids."""
    try:
        return json.loads((checkpoint / STATE_FILE).read_text()).get("run_id")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None


def temporary_checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f".tmp-checkpoint-{step}"


def finalize_checkpoint(output_dir: str | Path, step: int, state: dict, keep_last: int | None) -> Path:
    """Record the run's state and the list of files, rename the temporary folder into place, then drop the run's
    old checkpoints. Main process only, after every process has finished writing its part. `state` must hold
    `run_id`."""
    output_dir = Path(output_dir)
    tmp = temporary_checkpoint_dir(output_dir, step)
    state = {**state, "format": FORMAT, "files": file_digests(tmp)}
    write_json_atomic(tmp / STATE_FILE, {**state, "state_sha256": state_digest(state)})
    final = output_dir / f"checkpoint-{step}"
    if final.exists():  # a resumed run reaching a step it saved before: the old one goes only once the new is in
        replaced = output_dir / REPLACED.format(step)
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
        os.replace(tmp, final)
        shutil.rmtree(replaced, ignore_errors=True)
    else:
        os.replace(tmp, final)
    if keep_last is not None:
        for old in checkpoint_steps(output_dir, state["run_id"])[:-keep_last]:
            shutil.rmtree(output_dir / f"checkpoint-{old}", ignore_errors=True)
    return final


def file_digests(folder: Path) -> dict[str, dict]:
    """Size and SHA-256 of every file under `folder` (the state file excepted), by relative path."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative != STATE_FILE:
            digests[relative] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return digests


def state_digest(state: dict) -> str:
    """The state file's own checksum, over everything else it holds."""
    content = json.dumps({k: v for k, v in state.items() if k != "state_sha256"}, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checkpoint(checkpoint: Path) -> dict:
    """The checkpoint's training state, once every file it lists is present and unchanged and it holds no other
    file. Raises `CheckpointError` naming the first file that is not."""
    state_file = checkpoint / STATE_FILE
    try:
        state = json.loads(state_file.read_text())
        files = state["files"] if state.get("format") == FORMAT else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError) as error:
        raise CheckpointError(f"{state_file} cannot be read ({type(error).__name__}: {error}).") from error
    if files is not None and state.get("state_sha256") != state_digest(state):
        raise CheckpointError(f"{state_file} is damaged: its content differs from what was saved.")
    if files is None:
        raise CheckpointError(
            f"{checkpoint} was written by an earlier version of vit_hf, whose checkpoints keep state in pickles that "
            "are no longer loaded (they can run code). Start a new run, or resume it with the version that wrote it."
        )
    for relative, expected in files.items():
        path = checkpoint / relative
        if not path.is_file():
            raise CheckpointError(f"{path} is missing from the checkpoint.")
        if path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{path} is damaged: its content differs from what was saved.")
    extra = sorted(set(file_digests(checkpoint)) - set(files))
    if extra:
        raise CheckpointError(f"{checkpoint / extra[0]} was not written by this recipe; the checkpoint is not loaded.")
    return state


def choose_checkpoint(resume_from_checkpoint: str, output_dir: Path, run_id: str | None) -> Path | None:
    """`latest`: the newest checkpoint of run `run_id` that verifies, falling back past damaged ones with a warning
    naming the file (None when the run has none). A path: that checkpoint, which must verify. Main process only."""
    if resume_from_checkpoint != "latest":
        path = Path(resume_from_checkpoint)
        if not (path / STATE_FILE).is_file():
            raise CheckpointError(
                f"{path / STATE_FILE} is missing: {path} is not a complete checkpoint. Pass a `checkpoint-<step>` "
                "folder written by this recipe, or `latest` to pick the newest one in --output_dir."
            )
        verify_checkpoint(path)
        return path
    problems = []
    for step in reversed(checkpoint_steps(output_dir, run_id)):
        path = output_dir / f"checkpoint-{step}"
        try:
            verify_checkpoint(path)
        except CheckpointError as error:
            logger.warning("Skipping %s: %s Falling back to the previous checkpoint.", path.name, error)
            problems.append(str(error))
            continue
        return path
    if problems:
        raise CheckpointError(f"No checkpoint of this run in {output_dir} can be resumed: {' '.join(problems)}")
    return None


def read_state(checkpoint: str | Path) -> dict:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text())


def remove_stale_temporaries(output_dir: str | Path) -> None:
    """Leftovers of a run killed mid-save, mid-push or mid-start. A checkpoint killed while being replaced by a
    new save of its step is put back."""
    output_dir = Path(output_dir)
    for replaced in output_dir.glob(REPLACED.format("*")):
        final = output_dir / replaced.name.removeprefix(".replaced-")
        if not final.exists():
            os.replace(replaced, final)
    for pattern in (".tmp-checkpoint-*", ".upload-checkpoint-*", ".shared-*", ".final-tmp", REPLACED.format("*")):
        for entry in output_dir.glob(pattern):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
