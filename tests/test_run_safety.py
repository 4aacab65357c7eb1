"""What keeps a run's folder safe: checkpoints that are whole, verified and of one run; state without pickles; a
lock per output folder; stop requests (a second one exits at once, a dead launcher stops the trainer)."""

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vit_hf.training.checkpoint_state import (
    CheckpointError,
    load_state,
    rng_state,
    save_process_state,
    save_shared_state,
    set_rng_state,
)
from vit_hf.training.checkpointing import (
    checkpoint_steps,
    choose_checkpoint,
    finalize_checkpoint,
    read_state,
    remove_stale_temporaries,
    temporary_checkpoint_dir,
)
from vit_hf.training.output_dir import check_output_dir
from vit_hf.training.run_ownership import OutputDirInUse, OutputDirLock, claim_output_dir

ROOT = Path(__file__).resolve().parents[1]


def save(output_dir: Path, step: int, run_id: str = "run-a", keep_last: int | None = None, content: bytes = b"w"):
    tmp = temporary_checkpoint_dir(output_dir, step)
    tmp.mkdir(parents=True)
    (tmp / "model.safetensors").write_bytes(content)
    return finalize_checkpoint(output_dir, step, {"step": step, "run_id": run_id}, keep_last)


# --- checkpoint folders ----------------------------------------------------------------------------------------


def test_checkpoints_appear_only_when_complete_and_rotate_within_their_run(tmp_path):
    for step in (10, 20, 30):
        save(tmp_path, step, "old", keep_last=2)
    for step in (1, 2, 3):  # a new run with lower steps: the old run's higher steps are neither rotated nor picked
        save(tmp_path, step, "new", keep_last=2)
    assert checkpoint_steps(tmp_path, "new") == [2, 3] and checkpoint_steps(tmp_path, "old") == [20, 30]
    assert choose_checkpoint("latest", tmp_path, "new") == tmp_path / "checkpoint-3"
    temporary_checkpoint_dir(tmp_path, 40).mkdir()  # an interrupted save: never a candidate, cleaned up
    (tmp_path / "checkpoint-50").mkdir()  # no state file: incomplete
    assert choose_checkpoint("latest", tmp_path, "old") == tmp_path / "checkpoint-30"
    assert read_state(tmp_path / "checkpoint-30")["step"] == 30
    remove_stale_temporaries(tmp_path)
    assert not temporary_checkpoint_dir(tmp_path, 40).exists()
    with pytest.raises(CheckpointError, match="checkpoint-50 is not a complete checkpoint"):
        choose_checkpoint(str(tmp_path / "checkpoint-50"), tmp_path, None)
    assert choose_checkpoint("latest", tmp_path / "empty", "old") is None


def edit_state(checkpoint: Path, **changes) -> None:
    state = json.loads((checkpoint / "training_state.json").read_text())
    (checkpoint / "training_state.json").write_text(json.dumps({**state, **changes}))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: (c / "model.safetensors").write_bytes(b"v"), "model.safetensors is damaged"),
        (lambda c: (c / "model.safetensors").unlink(), "model.safetensors is missing"),
        (lambda c: (c / "custom_checkpoint_0.pkl").write_bytes(b"x"), "custom_checkpoint_0.pkl was not written"),
        (lambda c: (c / "training_state.json").write_text("{"), "training_state.json cannot be read"),
        (lambda c: edit_state(c, step=7), "training_state.json is damaged"),
    ],
)
def test_damaged_newest_checkpoint_falls_back_naming_the_file(tmp_path, caplog, damage, message):
    save(tmp_path, 4)
    newest = save(tmp_path, 8)
    damage(newest)
    if "training_state" in message:  # no readable run id: it is not a candidate of this run at all
        assert choose_checkpoint("latest", tmp_path, "run-a") == tmp_path / "checkpoint-4"
    else:
        with caplog.at_level(logging.WARNING):
            assert choose_checkpoint("latest", tmp_path, "run-a") == tmp_path / "checkpoint-4"
        assert message in caplog.text and "Falling back" in caplog.text
    with pytest.raises(CheckpointError, match=message):  # named explicitly: refused, never replaced by another
        choose_checkpoint(str(newest), tmp_path, None)


def test_no_usable_checkpoint_is_an_error_naming_each_file(tmp_path):
    for step in (4, 8):
        (save(tmp_path, step) / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(CheckpointError, match=r"checkpoint-8/model.safetensors is damaged.*checkpoint-4/model"):
        choose_checkpoint("latest", tmp_path, "run-a")


def test_checkpoint_of_an_earlier_format_is_refused(tmp_path):
    old = tmp_path / "checkpoint-5"
    old.mkdir()
    (old / "training_state.json").write_text(json.dumps({"step": 5, "log_history": [], "best": {}}))
    with pytest.raises(CheckpointError, match="earlier version of vit_hf"):
        choose_checkpoint(str(old), tmp_path, None)


def test_saving_a_step_again_keeps_the_old_checkpoint_until_the_new_one_is_in(tmp_path, monkeypatch):
    save(tmp_path, 4, content=b"first")
    real_replace, calls = os.replace, []

    def crash_on_second_rename(source, target):  # killed between moving the old folder aside and the new one in
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, 4, content=b"second")
    monkeypatch.setattr(os, "replace", real_replace)
    remove_stale_temporaries(tmp_path)  # the next start
    assert (tmp_path / "checkpoint-4" / "model.safetensors").read_bytes() == b"first"
    assert choose_checkpoint("latest", tmp_path, "run-a") == tmp_path / "checkpoint-4"
    save(tmp_path, 4, content=b"second")
    assert (tmp_path / "checkpoint-4" / "model.safetensors").read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]


# --- state without pickles -------------------------------------------------------------------------------------


def test_schedule_ema_and_random_state_round_trip_exactly_without_pickles(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    ema = torch.nn.Linear(3, 2)
    save_process_state(tmp_path, 0)
    save_shared_state(tmp_path, scheduler, ema)
    expected = (random.random(), np.random.rand(), torch.rand(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ema.safetensors", "rng_state_0.json", "scheduler.json"]

    fresh_optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fresh_scheduler = torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, lambda step: 1.0 / (step + 1))
    fresh_ema = torch.nn.Linear(3, 2)
    load_state(tmp_path, 0, fresh_scheduler, fresh_ema)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(2), expected[2])
    assert fresh_scheduler.last_epoch == 3 and fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert torch.equal(fresh_ema.weight, ema.weight)


@pytest.mark.parametrize("name", ["rng_state_0.json", "scheduler.json", "ema.safetensors"])
@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_missing_or_damaged_state_file_refuses_the_resume_naming_it(tmp_path, name, damage):
    model = torch.nn.Linear(3, 2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(model.parameters(), lr=0.1), lambda step: 1.0)
    save_process_state(tmp_path, 0)
    save_shared_state(tmp_path, scheduler, model)
    path = tmp_path / name
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match=name):
        load_state(tmp_path, 0, scheduler, model)


def test_random_state_survives_a_json_round_trip():
    state = json.loads(json.dumps(rng_state()))
    expected = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(3), expected[2])


# --- one run per output folder ---------------------------------------------------------------------------------


def test_second_writer_fails_fast_naming_the_first(tmp_path):
    first = OutputDirLock(tmp_path)
    first.acquire()
    with pytest.raises(OutputDirInUse, match=rf"in use by another run \(process {os.getpid()} on "):
        OutputDirLock(tmp_path).acquire()
    first.release()
    second = OutputDirLock(tmp_path)
    second.acquire()  # free again once the first has ended
    second.release()


def finished_run(folder: Path, run_id: str = "old") -> None:
    folder.mkdir(exist_ok=True)
    for name in ("all_results.json", "config.json", "model.safetensors"):
        (folder / name).write_text("{}")
    (folder / ".run.json").write_text(json.dumps({"run_id": run_id}))


def test_overwrite_removes_the_previous_runs_checkpoints(tmp_path):
    for step in (20, 26):
        save(tmp_path, step, "old")
    (tmp_path / "best").mkdir()
    claim = claim_output_dir(tmp_path, None, overwrite=True)
    assert claim.run_id != "old" and checkpoint_steps(tmp_path) == [] and not (tmp_path / "best").exists()
    save(tmp_path, 2, claim.run_id, keep_last=1)
    assert claim_output_dir(tmp_path, "latest", False).checkpoint == tmp_path / "checkpoint-2"


def test_latest_without_a_checkpoint_never_trains_over_a_finished_run(tmp_path, caplog):
    finished_run(tmp_path)
    with caplog.at_level(logging.WARNING):
        claim = claim_output_dir(tmp_path, "latest", False)
    assert claim.complete and "already complete" in caplog.text
    (tmp_path / "all_results.json").unlink()  # files of unknown origin: refused, not overwritten
    (tmp_path / ".run.json").unlink()
    with pytest.raises(CheckpointError, match="holds no checkpoint of a run to resume"):
        claim_output_dir(tmp_path, "latest", False)
    (tmp_path / ".run.json").write_text(json.dumps({"run_id": "old"}))  # a run that died before its first save
    (tmp_path / "best").mkdir()
    assert claim_output_dir(tmp_path, "latest", False).run_id == "old" and not (tmp_path / "best").exists()
    (tmp_path / "new").mkdir()
    fresh = claim_output_dir(tmp_path / "new", "latest", False)
    assert fresh.checkpoint is None and not fresh.complete  # an empty folder: a job restarted before its first save


def test_latest_ignores_checkpoints_of_another_run(tmp_path):
    save(tmp_path, 30, "old")
    save(tmp_path, 4, "mine")
    (tmp_path / ".run.json").write_text(json.dumps({"run_id": "mine"}))
    assert claim_output_dir(tmp_path, "latest", False).checkpoint == tmp_path / "checkpoint-4"


def test_not_empty_error_recommends_only_what_helps(tmp_path):
    finished_run(tmp_path)
    with pytest.raises(ValueError) as error:
        check_output_dir(tmp_path, None, False)
    assert "finished run" in str(error.value) and "resume_from_checkpoint" not in str(error.value)
    save(tmp_path, 4)
    with pytest.raises(ValueError, match="continue that run with --resume_from_checkpoint latest"):
        check_output_dir(tmp_path, None, False)
    with pytest.raises(ValueError, match="pass only one"):
        check_output_dir(tmp_path, "latest", True)


# --- stop requests ---------------------------------------------------------------------------------------------

LOOP = textwrap.dedent(
    """
    import sys, time
    from vit_hf.training.stopping import StopRequest, stop_with_launcher
    watched = stop_with_launcher()
    with StopRequest() as stop:
        print("ready", watched, flush=True)
        while stop.signal_number is None:
            time.sleep(0.05)
        print("stopping cleanly", flush=True)
        time.sleep(float(sys.argv[1]))  # the step that ends before the checkpoint
    print("saved", flush=True)
    sys.exit(128 + stop.signal_number)
    """
)


def start(args, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_second_signal_exits_at_once():
    process = start([sys.executable, "-c", LOOP, "60"])
    assert process.stdout.readline().startswith("ready")
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline() == "stopping cleanly\n"
    began = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130 and time.monotonic() - began < 10
    assert "SIGINT received again: exiting now" in process.stderr.read()


def test_trainer_stops_cleanly_when_its_launcher_is_terminated(tmp_path):
    """`accelerate launch` exits on SIGTERM without passing it on; the trainer must still save and stop."""
    launcher = textwrap.dedent(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {LOOP!r}, "1"], stdout=open({str(tmp_path / "out")!r}, "w"))
        time.sleep(600)
        """
    )
    process = start([sys.executable, "-c", launcher, "accelerate", "launch"])  # named as the launcher is
    out = tmp_path / "out"
    deadline = time.monotonic() + 60
    while "ready" not in (out.read_text() if out.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "ready True" in out.read_text()
    process.send_signal(signal.SIGTERM)  # the launcher dies at once, as accelerate's does
    process.wait(timeout=30)
    while "saved" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.read_text().splitlines()[-2:] == ["stopping cleanly", "saved"]
