"""`recipes/finetune.py` end to end on CPU, on generated data in the Hub CIFAR-10 format: outputs that load without
vit_hf, two-process DDP evaluation, exact resume, SIGTERM, and errors before training."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file

from tests.data_utils import write_cifar_like
from vit_hf.hub.upload import files_to_push
from vit_hf.training import checkpointing, output_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "recipes" / "finetune.py")
TINY_VIT = json.dumps(
    {"patch_size": 4, "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
)


def recipe_args(dataset, output_dir, **overrides):
    args = {
        "dataset": dataset,
        "output_dir": output_dir,
        "model": "tiny_patch16_224",
        "image_size": 32,
        "model_overrides": TINY_VIT,
        "max_steps": 8,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 8,
        "optimizer": "adamw",
        "learning_rate": 1e-3,
        "warmup_steps": 2,
        "logging_steps": 2,
        "eval_strategy": "steps",
        "eval_steps": 4,
        "save_strategy": "steps",
        "save_steps": 4,
        "dataloader_num_workers": 0,
    }
    args.update(overrides)
    return [item for key, value in args.items() for item in (f"--{key}", str(value))]


def environment(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **extra)
    env.pop("ACCELERATE_USE_CPU", None)
    env.update(extra)
    return env


def run_recipe(args, launcher=(sys.executable,), timeout=300, **env):
    return subprocess.run(
        [*launcher, SCRIPT, *args], env=environment(**env), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    # 203 train images (183 after the 10% hold-out) and an odd-sized test split of 57.
    return write_cifar_like(tmp_path_factory.mktemp("data") / "cifar10", n_train=203, n_test=57)


@pytest.fixture(scope="module")
def finished_run(cifar, tmp_path_factory):
    output = tmp_path_factory.mktemp("run") / "out"
    result = run_recipe(recipe_args(cifar, output, report_to="tensorboard"))
    assert result.returncode == 0, result.stderr[-4000:]
    return output


def test_output_folder_is_complete(finished_run):
    files = set(os.listdir(finished_run))
    expected = {
        "config.json",
        "model.safetensors",
        "configuration_vit_hf.py",
        "modeling_vit_hf.py",
        "preprocessor_config.json",
        "README.md",
        "all_results.json",
        "log_history.json",
        "training_curves.png",
        "confusion_matrix.png",
        "attention_maps.png",
        "position_embeddings.png",
        "attention_distance.png",
        "checkpoint-4",
        "checkpoint-8",
    }
    assert expected <= files
    assert {name for name in files if name.startswith(".")} == {".lock", ".run.json"}  # no temporaries left behind
    results = json.loads((finished_run / "all_results.json").read_text())
    for key in ("eval_accuracy", "eval_top5_accuracy", "test_accuracy", "test_top5_accuracy", "train_runtime"):
        assert key in results
    assert results["test_num_examples"] == 57 and results["step"] == 8
    card = (finished_run / "README.md").read_text()
    assert "model-index" in card and f"{results['test_accuracy']:.4f}" in card
    for picture in ("attention_maps.png", "position_embeddings.png", "attention_distance.png"):
        assert f"]({picture})" in card
    config = json.loads((finished_run / "config.json").read_text())
    assert config["id2label"]["0"] == "airplane" and config["image_size"] == 32


def test_hub_upload_would_send_the_model_not_the_training_state(finished_run):
    sent = files_to_push(finished_run)
    assert {
        "model.safetensors",
        "config.json",
        "modeling_vit_hf.py",
        "README.md",
        "preprocessor_config.json",
        "attention_maps.png",
        "position_embeddings.png",
        "attention_distance.png",
    } <= set(sent)
    assert not [name for name in sent if name.startswith(("checkpoint-", "best/", "."))]
    assert list(finished_run.rglob("events.out.tfevents.*")), "the run wrote no TensorBoard log"
    assert not [name for name in sent if "tfevents" in name]  # TensorBoard logs are training state too


def test_output_loads_without_vit_hf_and_through_pipeline(finished_run, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["vit_hf"] = None  # importing vit_hf now fails
        import numpy as np
        from PIL import Image
        from transformers import pipeline
        classify = pipeline("image-classification", model={str(finished_run)!r}, trust_remote_code=True)
        image = Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8))
        predictions = classify(image, top_k=3)
        assert len(predictions) == 3, predictions
        assert predictions[0]["label"] in {{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                            "ship", "truck"}}, predictions
        print("ok")
        """
    )
    env = dict(os.environ, PYTHONPATH="", HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def resume_from(cifar, finished_run, checkpoint: str, output: Path) -> str:
    """Run the recipe in a fresh folder holding only `checkpoint` of the finished run; returns its log."""
    output.mkdir()
    subprocess.run(["cp", "-r", str(finished_run / checkpoint), str(output)], check=True)
    result = run_recipe(recipe_args(cifar, output, resume_from_checkpoint="latest"))
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


def assert_same_weights(first: Path, second: Path) -> None:
    expected, actual = load_file(first), load_file(second)
    assert all(torch.equal(expected[name], actual[name]) for name in expected), (first, second)


def test_resumed_run_equals_uninterrupted_run(cifar, finished_run, tmp_path):
    """A run restarted from its step-4 checkpoint (what an interruption leaves) ends with the same weights."""
    resumed = tmp_path / "resumed"
    assert "resumed from" in resume_from(cifar, finished_run, "checkpoint-4", resumed)
    for checkpoint in ("checkpoint-8/model.safetensors", "model.safetensors"):
        assert_same_weights(finished_run / checkpoint, resumed / checkpoint)
    original = json.loads((finished_run / "all_results.json").read_text())
    again = json.loads((resumed / "all_results.json").read_text())
    assert again["test_accuracy"] == original["test_accuracy"] and again["eval_loss"] == original["eval_loss"]
    # Training time: this run's part and, in total, with the interrupted run's before it.
    assert again["train_runtime_total"] > again["train_runtime"] > 0


def test_resuming_a_finished_run_trains_no_further(cifar, finished_run, tmp_path):
    """A job restarted after its last checkpoint (say, killed while writing the outputs) only writes the outputs."""
    resumed = tmp_path / "resumed"
    assert "nothing left to train" in resume_from(cifar, finished_run, "checkpoint-8", resumed)
    assert json.loads((resumed / "all_results.json").read_text())["step"] == 8
    assert_same_weights(finished_run / "model.safetensors", resumed / "model.safetensors")


def test_sigterm_saves_a_checkpoint_that_resumes(cifar, tmp_path):
    output = tmp_path / "out"
    args = recipe_args(cifar, output, max_steps=400, logging_steps=1, save_strategy="no", eval_strategy="epoch")
    log = open(tmp_path / "log.txt", "w")
    process = subprocess.Popen([sys.executable, SCRIPT, *args], env=environment(), stdout=log, stderr=log, text=True)
    deadline = time.time() + 120
    while "training:" not in (tmp_path / "log.txt").read_text() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # a few steps in
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    text = (tmp_path / "log.txt").read_text()
    assert "SIGTERM received" in text and "Traceback" not in text
    checkpoints = [p.name for p in output.iterdir() if p.name.startswith("checkpoint-")]
    assert len(checkpoints) == 1
    step = int(checkpoints[0].split("-")[1])
    assert 0 < step < 400
    resumed = run_recipe(
        recipe_args(cifar, output, max_steps=step + 2, resume_from_checkpoint="latest", eval_strategy="epoch")
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert json.loads((output / "all_results.json").read_text())["step"] == step + 2


def test_two_process_ddp_counts_every_example_once(cifar, tmp_path):
    output = tmp_path / "ddp"
    launcher = ("accelerate", "launch", "--config_file", str(ROOT / "recipes/accelerate/cpu_ddp.yaml"))
    # Eval batches of 4 over 2 processes: 21 validation and 57 test examples leave uneven last batches.
    args = recipe_args(cifar, output, per_device_train_batch_size=8, per_device_eval_batch_size=4)
    result = run_recipe(args, launcher=launcher, ACCELERATE_USE_CPU="1")
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((output / "all_results.json").read_text())
    assert results["test_num_examples"] == 57
    assert results["eval_num_examples"] == 21
    card = (output / "README.md").read_text()
    assert "| num_processes | 2 |" in card


def test_push_to_hub_fails_fast_offline_before_training(cifar, tmp_path):
    output = tmp_path / "out"
    result = run_recipe(recipe_args(cifar, output, push_to_hub="true", hub_model_id="someone/vit-test"))
    assert result.returncode != 0
    assert "Cannot reach the Hugging Face Hub" in result.stderr
    assert "training:" not in result.stderr


def test_non_empty_output_dir_is_refused(cifar, finished_run):
    result = run_recipe(recipe_args(cifar, finished_run))
    assert result.returncode != 0 and "is not empty" in result.stderr


def test_output_dir_not_shared_by_every_process_is_refused(tmp_path, monkeypatch):
    """Across machines --output_dir must be one shared folder; a process that cannot see it is named."""
    accelerator = mock.Mock(num_processes=2, is_main_process=True)
    monkeypatch.setattr(output_dir, "broadcast_object_list", lambda objects: objects)
    monkeypatch.setattr(output_dir, "gather_object", lambda objects: [*objects, (False, "node-2")])
    with pytest.raises(ValueError, match=r"process 1 on node-2 cannot see .* filesystem they all mount"):
        output_dir.check_output_dir_shared(accelerator, tmp_path)
    assert not list(tmp_path.iterdir())  # the probe file is removed

    monkeypatch.setattr(output_dir, "gather_object", lambda objects: objects * 2)
    output_dir.check_output_dir_shared(accelerator, tmp_path)


class PlantedCode:
    """Unpickling this creates a file: what a replaced checkpoint file could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def forge_file_list(checkpoint: Path) -> None:
    """What an attacker who can write the checkpoint can also do: make training_state.json match the files."""
    state = json.loads((checkpoint / "training_state.json").read_text())
    state["files"] = checkpointing.file_digests(checkpoint)
    state["state_sha256"] = checkpointing.state_digest(state)
    (checkpoint / "training_state.json").write_text(json.dumps(state))


def test_checkpoints_hold_no_pickle_that_runs_code_on_resume(cifar, finished_run, tmp_path):
    """The schedule and EMA were pickles that accelerate loads with weights_only=False. A planted
    custom_checkpoint_0.pkl, even with the file list in training_state.json forged to include it, is never
    unpickled: the resume stops with an error naming the checkpoint."""
    checkpoint_files = {p.name for p in (finished_run / "checkpoint-8").iterdir()}
    assert {"scheduler.json", "rng_state_0.json", "model.safetensors"} <= checkpoint_files
    assert not [name for name in checkpoint_files if name.endswith(".pkl")]
    output = tmp_path / "out"
    output.mkdir()
    checkpoint = output / "checkpoint-8"
    subprocess.run(["cp", "-r", str(finished_run / "checkpoint-8"), str(checkpoint)], check=True)
    marker = tmp_path / "code-ran"
    torch.save(PlantedCode(marker), checkpoint / "custom_checkpoint_0.pkl")
    forge_file_list(checkpoint)
    result = run_recipe(recipe_args(cifar, output, resume_from_checkpoint="latest"))
    assert not marker.exists()
    assert result.returncode != 0 and "checkpoint-8 cannot be loaded" in result.stderr


def test_an_undecodable_test_image_keeps_the_trained_model(cifar, tmp_path):
    """The test split is read only after the model folder is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    subprocess.run(["cp", "-r", str(cifar), str(data)], check=True)
    test_file = next((data / "plain_text").glob("test-*.parquet"))
    table = pq.read_table(test_file)
    images = table.column("img").to_pylist()
    images[5] = {"bytes": b"not an image", "path": None}
    column = pa.array(images, type=table.schema.field("img").type)
    pq.write_table(table.set_column(table.schema.get_field_index("img"), "img", column), test_file)
    output = tmp_path / "out"
    result = run_recipe(recipe_args(data, output, max_steps=2, save_strategy="no", eval_strategy="epoch"))
    assert result.returncode != 0 and "Evaluating the test split failed" in result.stderr
    assert (output / "model.safetensors").is_file() and (output / "config.json").is_file()
    assert "test_accuracy" not in json.loads((output / "all_results.json").read_text())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--learnin_rate", "0.1"], "unknown flag --learnin_rate (did you mean --learning_rate?)"),
        (["--model", "tiny_patch16_225", "--dataset", "digits"], "Did you mean 'tiny_patch16_224'"),
    ],
)
def test_a_wrong_flag_or_model_is_one_line_and_exit_2(tmp_path, args, message):
    result = run_recipe([*args, "--output_dir", str(tmp_path / "out")])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("finetune.py: error: ")
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_sigterm_to_the_single_process_launcher_stops_the_trainer_cleanly(cifar, tmp_path):
    """`accelerate launch` exits on SIGTERM without passing it on; the trainer learns of it from the kernel, saves
    a checkpoint and stops instead of training on."""
    output, log = tmp_path / "out", tmp_path / "log.txt"
    args = recipe_args(cifar, output, max_steps=100000, save_strategy="no", eval_strategy="epoch", logging_steps=1)
    launcher = ("accelerate", "launch", "--cpu", "--num_processes", "1")
    process = subprocess.Popen(
        [*launcher, SCRIPT, *args], env=environment(), stdout=open(log, "w"), stderr=log.open("a")
    )
    deadline = time.time() + 180
    while "training:" not in log.read_text() and time.time() < deadline:
        time.sleep(0.5)
    trainer = json.loads((output / ".lock").read_text())["pid"]
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    while time.time() < deadline and os.path.exists(f"/proc/{trainer}"):
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{trainer}"), "the trainer trains on after its launcher exited"
    assert "the launcher exited" in log.read_text() and list(output.glob("checkpoint-*"))
