"""One `--output_dir` belongs to one run. A lock held while the run writes there makes a second writer fail at once,
naming the first; a run id recorded in the folder and in every checkpoint keeps `latest` and rotation to this
run's checkpoints. Both live in hidden files (`.lock`, `.run.json`) that uploads leave out."""

import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..files import write_json_atomic
from .checkpoint_state import CheckpointError
from .checkpointing import (
    STATE_FILE,
    checkpoint_run,
    checkpoint_steps,
    choose_checkpoint,
    remove_stale_temporaries,
)
from .output_dir import check_output_dir, finished_outputs, folder_content

logger = logging.getLogger(__name__)
LOCK_FILE = ".lock"
RUN_FILE = ".run.json"


class OutputDirInUse(RuntimeError):
    pass


class OutputDirLock:
    """An exclusive `flock` on `<output_dir>/.lock`, released when the process ends however it ends. The file holds
    the owner's process id, host, start time and command, for the error a second writer gets."""

    def __init__(self, output_dir: Path):
        self.path = output_dir / LOCK_FILE
        self.fd = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputDirInUse(
                f"--output_dir {self.path.parent} is in use by another run ({self._holder()}). Wait for it to end, "
                "stop it (SIGTERM saves a checkpoint), or choose another --output_dir."
            ) from None
        except OSError as error:  # a filesystem without locks (some network filesystems)
            logger.warning("Cannot lock %s (%s): nothing stops a second run from writing there.", self.path, error)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({**owner, "command": " ".join(sys.argv)}).encode())
        self.fd = fd

    def _holder(self) -> str:
        try:
            owner = json.loads(self.path.read_text())
            return f"process {owner['pid']} on {owner['host']}, started {owner['started']}: {owner['command']}"
        except (OSError, ValueError, KeyError):  # the owner is still writing its details
            return "its details are not written yet"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


@dataclass
class RunClaim:
    """What `claim_output_dir` decided: the run id, the checkpoint to resume from (None: start at step 0), and
    whether the run asked to resume is already complete (its outputs are there and no checkpoint is left)."""

    run_id: str
    checkpoint: Path | None = None
    complete: bool = False


def claim_output_dir(output_dir: Path, resume_from_checkpoint: str | None, overwrite: bool) -> RunClaim:
    """Main process, with the lock held: check the folder against the flags, clean up after a killed run, and
    decide which run this is and where it starts."""
    check_output_dir(output_dir, resume_from_checkpoint, overwrite)
    remove_stale_temporaries(output_dir)
    if overwrite:
        clear_training_state(output_dir)
        claim = RunClaim(uuid.uuid4().hex)
    elif resume_from_checkpoint is not None:
        claim = _resume_claim(output_dir, resume_from_checkpoint)
    else:
        claim = RunClaim(uuid.uuid4().hex)
    if not claim.complete:
        write_json_atomic(output_dir / RUN_FILE, {"run_id": claim.run_id})
    return claim


def recorded_run(output_dir: Path) -> str | None:
    try:
        return json.loads((output_dir / RUN_FILE).read_text())["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_training_state(output_dir: Path) -> None:
    """`--overwrite_output_dir`: the previous run's checkpoints and best weights go, so none is taken for this
    run's. Its other files stay until this run's outputs replace them."""
    removed = [entry for entry in output_dir.glob("checkpoint-*") if entry.is_dir()]
    if removed:
        logger.warning("--overwrite_output_dir: removing the previous run's %s", ", ".join(p.name for p in removed))
    for entry in [*removed, output_dir / "best"]:
        shutil.rmtree(entry, ignore_errors=True)


def _resume_claim(output_dir: Path, resume_from_checkpoint: str) -> RunClaim:
    recorded = recorded_run(output_dir)
    if resume_from_checkpoint != "latest":
        checkpoint = choose_checkpoint(resume_from_checkpoint, output_dir, None)
        run_id = checkpoint_run(checkpoint)
        if recorded not in (None, run_id) and checkpoint_steps(output_dir, recorded):
            raise CheckpointError(
                f"{checkpoint} is of another run than the checkpoints in --output_dir {output_dir}. Resume it into "
                "an empty folder (or its own), or pass --resume_from_checkpoint latest to continue the folder's run."
            )
        return RunClaim(run_id, checkpoint)
    if recorded is None:  # a folder of copied checkpoints, or killed before its run id was written: the newest's run
        steps = checkpoint_steps(output_dir)
        recorded = checkpoint_run(output_dir / f"checkpoint-{steps[-1]}") if steps else None
    _warn_about_other_runs(output_dir, recorded)
    checkpoint = choose_checkpoint("latest", output_dir, recorded) if recorded else None
    if checkpoint is not None:
        return RunClaim(recorded, checkpoint)
    return _nothing_to_resume(output_dir, recorded)


def _nothing_to_resume(output_dir: Path, recorded: str | None) -> RunClaim:
    """`latest` without a checkpoint: a finished run stays as it is; an empty folder, or one of a run that died
    before its first checkpoint (a job restarted by its scheduler), starts fresh; a folder of unknown content is an
    error rather than a silent overwrite."""
    if finished_outputs(output_dir):
        logger.warning("%s holds a finished run and no checkpoint: it is already complete, nothing to do", output_dir)
        return RunClaim(recorded or "", complete=True)
    content = folder_content(output_dir)
    if content and recorded is None:
        raise CheckpointError(
            f"--resume_from_checkpoint latest: --output_dir {output_dir} holds no checkpoint of a run to resume (it "
            f"holds {', '.join(content[:5])}). Start a new run in another folder, or pass --overwrite_output_dir true "
            "instead to train into this one."
        )
    logger.warning("--resume_from_checkpoint latest: %s holds no checkpoint yet, starting at step 0", output_dir)
    shutil.rmtree(output_dir / "best", ignore_errors=True)  # the best weights of the attempt that died
    return RunClaim(recorded or uuid.uuid4().hex)


def _warn_about_other_runs(output_dir: Path, run_id: str | None) -> None:
    """Name each checkpoint folder `latest` passes over without trying it, and why."""
    for entry in sorted(output_dir.glob("checkpoint-*")):
        state = entry / STATE_FILE
        if not entry.is_dir() or (run_id is not None and checkpoint_run(entry) == run_id):
            continue
        if not state.is_file():
            logger.warning("Skipping %s: it has no %s (an incomplete checkpoint).", entry.name, STATE_FILE)
        elif checkpoint_run(entry) is None:
            logger.warning("Skipping %s: %s cannot be read, or predates run ids.", entry.name, state)
        else:
            logger.warning("Ignoring %s: written by another run.", entry.name)
