"""Pushing a training output folder to the Hub: a check before training that fails fast without a network or
token, the exact list of files that would be sent, and the upload itself."""

import fnmatch
import logging
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from huggingface_hub import HfApi

from ..files import link_or_copy

logger = logging.getLogger(__name__)
# Training-only state stays local: checkpoints (pushed separately on request), hidden temporaries, tracker logs
# (under runs/). A tuple: `upload_folder` extends the list it is given in place, so each upload gets a copy.
IGNORE_PATTERNS = ("checkpoint-*", "checkpoint-*/**", ".*", ".*/**", "runs/**", "best/**", "*.tmp")


class HubPushError(RuntimeError):
    pass


def check_hub_access(repo_id: str | None, token: str | None = None) -> str:
    """Called before training when --push_to_hub is set: the run must not spend hours and then fail to upload.
    Returns the repo id to push to."""
    if not repo_id:
        raise HubPushError("--push_to_hub needs --hub_model_id (e.g. `your-name/vit-cifar10`).")
    try:
        user = HfApi(token=token).whoami()
    except Exception as error:  # offline, DNS failure, bad token: all mean "cannot push"
        raise HubPushError(
            f"Cannot reach the Hugging Face Hub to push to {repo_id!r} ({type(error).__name__}: {error}). Check the "
            "network and log in with `hf auth login` (or set HF_TOKEN), or drop --push_to_hub and upload the output "
            "folder later with `hf upload <repo_id> <output_dir>`."
        ) from error
    return repo_id if "/" in repo_id else f"{user['name']}/{repo_id}"


def files_to_push(folder: str | Path) -> list[str]:
    """Relative paths of the files an upload of `folder` sends (the same filter the upload uses)."""
    folder = Path(folder)
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not any(fnmatch.fnmatch(relative, pattern) for pattern in IGNORE_PATTERNS):
            files.append(relative)
    return files


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload fine-tuned model",
    path_in_repo: str | None = None,
):
    """Create the model repo if needed and upload the folder's files (see `files_to_push`)."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        path_in_repo=path_in_repo,
        commit_message=commit_message,
        ignore_patterns=None if path_in_repo else list(IGNORE_PATTERNS),
    )


class CheckpointUploads:
    """Checkpoint pushes on a background thread, so training never waits for the network. Each push sends a
    hard-linked snapshot of the checkpoint (no bytes copied), so rotating old checkpoints out cannot pull files from
    under it. One push runs at a time; when the next checkpoint arrives while one still waits its turn, the newer one
    replaces it. A failed push is logged, not raised: the checkpoint is still on disk and training goes on."""

    def __init__(self, repo_id: str, private: bool | None = None):
        self.repo_id, self.private = repo_id, private
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-push")
        self.futures: list[tuple[Future, str, Path]] = []  # (push, checkpoint name, snapshot)

    def start(self, checkpoint: Path) -> None:
        if self.futures:
            future, name, snapshot = self.futures[-1]
            if future.cancel():  # still waiting its turn: the newer checkpoint goes instead
                shutil.rmtree(snapshot, ignore_errors=True)
                self.futures.pop()
                logger.info("skipping the push of %s: %s replaces it", name, checkpoint.name)
        snapshot = checkpoint.with_name(f".upload-{checkpoint.name}")
        shutil.rmtree(snapshot, ignore_errors=True)
        try:
            shutil.copytree(checkpoint, snapshot, copy_function=link_or_copy)
        except (OSError, shutil.Error) as error:  # e.g. a full disk where hard links are not available
            shutil.rmtree(snapshot, ignore_errors=True)
            logger.warning("Could not snapshot %s for the Hub (%s); it is not pushed.", checkpoint.name, error)
            return
        if not self.futures and not _same_file(checkpoint, snapshot):
            logger.warning(
                "%s has no hard links: each checkpoint is copied before its push, and training waits for the copy.",
                checkpoint.parent,
            )
        future = self.executor.submit(self._push, snapshot, checkpoint.name)
        self.futures.append((future, checkpoint.name, snapshot))

    def _push(self, snapshot: Path, name: str) -> bool:
        try:
            push_folder(snapshot, self.repo_id, private=self.private, path_in_repo=name, commit_message=f"Add {name}")
        except Exception as error:  # offline, no permission, rate limit: the checkpoint stays on disk
            logger.warning("Could not push %s to %s (%s); it stays on disk.", name, self.repo_id, error)
            return False
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
        logger.info("pushed %s to https://huggingface.co/%s", name, self.repo_id)
        return True

    def wait(self) -> bool:
        """Finish the pushes started since the last wait; True when all of them succeeded. Call it outside any
        barrier: it may take minutes."""
        if any(not future.done() for future, _, _ in self.futures):
            logger.info("waiting for the checkpoint push to %s to finish", self.repo_id)
        results = [future.result() for future, _, _ in self.futures if not future.cancelled()]
        self.futures = []
        return all(results)


def _same_file(checkpoint: Path, snapshot: Path) -> bool:
    """Whether the snapshot's files are hard links to the checkpoint's (checked on one file)."""
    first = next((path for path in checkpoint.rglob("*") if path.is_file()), None)
    return first is None or os.path.samefile(first, snapshot / first.relative_to(checkpoint))


def upload_or_explain(
    folder: str | Path, repo_id: str, *, commit_message: str, private: bool | None = None, token: str | None = None
) -> bool:
    """The final upload of a finished folder. On failure (offline, no token, no permission) the folder is complete
    on disk, so log why and the command that uploads it later, and return False instead of raising."""
    logger.info("pushing %s to https://huggingface.co/%s", folder, repo_id)
    try:
        push_folder(folder, repo_id, private=private, token=token, commit_message=commit_message)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        logger.error(
            "Could not push to the Hub (%s). The model is complete in %s; upload it later with `hf upload %s %s`.",
            reason,
            folder,
            repo_id,
            folder,
        )
        return False
    logger.info("pushed to https://huggingface.co/%s", repo_id)
    return True
