"""Checkpoint pushes during training: one at a time, finished before old checkpoints are rotated out, failures logged
without stopping training."""

import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from unittest import mock

from vit_hf.hub import CheckpointUploads


def finished(error: Exception | None = None) -> Future:
    future = Future()
    future.set_exception(error) if error else future.set_result("commit")
    return future


def test_a_new_push_waits_for_the_previous_one(tmp_path):
    release, order = threading.Event(), []

    def slow_push(folder, *args, **kwargs):
        future = Future()

        def complete():
            release.wait(5)
            order.append(f"done {folder.name}")
            future.set_result("commit")

        order.append(f"start {folder.name}")
        threading.Thread(target=complete).start()
        return future

    uploads = CheckpointUploads("someone/vit")
    with mock.patch("vit_hf.hub.push_folder", side_effect=slow_push):
        uploads.start(Path(tmp_path / "checkpoint-4"))
        threading.Timer(0.2, release.set).start()
        uploads.start(Path(tmp_path / "checkpoint-8"))
        assert order[:3] == ["start checkpoint-4", "done checkpoint-4", "start checkpoint-8"]
        assert uploads.wait()
    assert order[-1] == "done checkpoint-8" and uploads.pending is None


def test_a_failed_checkpoint_push_is_logged_not_raised(tmp_path, caplog):
    uploads = CheckpointUploads("someone/vit")
    with mock.patch("vit_hf.hub.push_folder", return_value=finished(ConnectionError("network is down"))):
        uploads.start(tmp_path / "checkpoint-4")
    with caplog.at_level(logging.WARNING, logger="vit_hf.hub"):
        assert not uploads.wait()
    assert "checkpoint-4" in caplog.text and "network is down" in caplog.text and "stays on disk" in caplog.text
    assert uploads.wait()  # nothing pending any more


def test_checkpoints_are_pushed_into_their_own_folder_of_the_repo(tmp_path):
    uploads = CheckpointUploads("someone/vit", private=True)
    with mock.patch("vit_hf.hub.push_folder", return_value=finished()) as push:
        uploads.start(tmp_path / "checkpoint-12")
    push.assert_called_once_with(
        tmp_path / "checkpoint-12", "someone/vit", private=True, path_in_repo="checkpoint-12", run_as_future=True
    )
