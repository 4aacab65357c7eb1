"""Checkpoint pushes during training: in the background from hard-linked snapshots, one at a time, the newest
replacing one still waiting, failures logged without stopping training."""

import logging
import threading
from pathlib import Path
from unittest import mock

from huggingface_hub import HfApi

from vit_hf.hub.upload import CheckpointUploads
from vit_hf.training.checkpointing import finalize_checkpoint, temporary_checkpoint_dir


def save_checkpoint(output_dir: Path, step: int, keep_last: int = 1) -> Path:
    tmp = temporary_checkpoint_dir(output_dir, step)
    tmp.mkdir(parents=True)
    (tmp / "model.safetensors").write_text(f"weights of step {step}")
    return finalize_checkpoint(output_dir, step, {"step": step, "run_id": "run-a"}, keep_last)


class SlowHub:
    """Stands in for push_folder: each push blocks until released and records the files it read."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.sent = {}

    def push(self, folder, repo_id, *, path_in_repo, **kwargs):
        self.started.set()
        self.release.wait(10)
        self.sent[path_in_repo] = (Path(folder) / "model.safetensors").read_text()


def test_training_goes_on_and_rotation_is_safe_while_a_push_runs(tmp_path):
    hub, uploads = SlowHub(), CheckpointUploads("someone/vit")
    with mock.patch("vit_hf.hub.upload.push_folder", side_effect=hub.push):
        uploads.start(save_checkpoint(tmp_path, 4))  # returns at once
        assert hub.started.wait(5)
        uploads.start(save_checkpoint(tmp_path, 8))  # rotates checkpoint-4 out while it is being pushed
        uploads.start(save_checkpoint(tmp_path, 12))  # replaces checkpoint-8, still waiting its turn
        assert not (tmp_path / "checkpoint-4").exists()
        hub.release.set()
        assert uploads.wait()
    assert hub.sent == {"checkpoint-4": "weights of step 4", "checkpoint-12": "weights of step 12"}
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["checkpoint-12"]  # no snapshots left


def test_a_failed_checkpoint_push_is_logged_not_raised(tmp_path, caplog):
    """Even when the repository cannot be created: nothing the Hub does reaches the training loop."""
    uploads = CheckpointUploads("someone/vit")
    with (
        mock.patch.object(HfApi, "create_repo", side_effect=ConnectionError("network is down")),
        caplog.at_level(logging.WARNING, logger="vit_hf.hub"),
    ):
        uploads.start(save_checkpoint(tmp_path, 4))
        assert not uploads.wait()
    assert "checkpoint-4" in caplog.text and "network is down" in caplog.text and "stays on disk" in caplog.text
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["checkpoint-4"]
    assert uploads.wait()  # nothing pending any more


def test_checkpoints_are_pushed_into_their_own_folder_of_the_repo(tmp_path):
    uploads = CheckpointUploads("someone/vit", private=True)
    with mock.patch("vit_hf.hub.upload.push_folder") as push:
        uploads.start(save_checkpoint(tmp_path, 12))
        assert uploads.wait()
    push.assert_called_once_with(
        tmp_path / ".upload-checkpoint-12",
        "someone/vit",
        private=True,
        path_in_repo="checkpoint-12",
        commit_message="Add checkpoint-12",
    )


def test_a_checkpoint_that_cannot_be_snapshot_is_skipped_not_raised(tmp_path, caplog):
    uploads = CheckpointUploads("someone/vit")
    full_disk = OSError(28, "No space left on device")
    with (
        mock.patch("vit_hf.hub.upload.link_or_copy", side_effect=full_disk),
        mock.patch("vit_hf.hub.upload.push_folder") as push,
        caplog.at_level(logging.WARNING, logger="vit_hf.hub"),
    ):
        uploads.start(save_checkpoint(tmp_path, 4))
        assert uploads.wait()
    push.assert_not_called()
    assert "Could not snapshot checkpoint-4" in caplog.text and "No space left" in caplog.text
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["checkpoint-4"]
