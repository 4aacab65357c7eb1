"""Fault injection for `recipes/finetune.py` on the CPU: kills at random points and during checkpoint saves, damaged
checkpoint files, planted pickles, signals to the trainer and to `accelerate launch`, and bad input. Prints one table
row per fault: what was done, how often, and what happened.

    nice -n 10 python -m benchmarks.fault_injection [--kills 4] [--save_kills 3] [--seed 0]

A small ViT on generated CIFAR-like data trains 12 steps with a checkpoint every 3; the uninterrupted run's final
weights are the reference every interrupted-and-resumed run must match bit for bit.
"""

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.data_utils import write_cifar_like
from vit_hf.training.checkpoint_state import CheckpointError
from vit_hf.training.checkpointing import file_digests, state_digest
from vit_hf.training.run_ownership import claim_output_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "recipes" / "finetune.py")
TINY_VIT = {
    "patch_size": 4,
    "num_hidden_layers": 2,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
STEPS, SAVE_EVERY = 12, 3


def recipe_args(data: Path, output: Path, **overrides) -> list[str]:
    args = {
        "dataset": data,
        "output_dir": output,
        "model": "tiny_patch16_224",
        "image_size": 32,
        "model_overrides": json.dumps(TINY_VIT),
        "max_steps": STEPS,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32,
        "optimizer": "adamw",
        "learning_rate": 1e-3,
        "warmup_steps": 2,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": SAVE_EVERY,
        "save_strategy": "steps",
        "save_steps": SAVE_EVERY,
        "dataloader_num_workers": 0,
        "drop_path_rate": 0.1,  # random state on the device side must be restored for a bit-exact resume
        "ema_decay": 0.9,
    }
    args.update(overrides)
    return [item for key, value in args.items() for item in (f"--{key}", str(value))]


def environment(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("ACCELERATE_USE_CPU", None)
    env.update({key: value for key, value in extra.items() if value is not None})
    return env


def start(args: list[str], log: Path, launcher=(sys.executable,), **env) -> subprocess.Popen:
    return subprocess.Popen(
        [*launcher, SCRIPT, *args], env=environment(**env), stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True
    )


def run(args: list[str], log: Path, launcher=(sys.executable,)) -> int:
    return start(args, log, launcher).wait()


def same_weights(first: Path, second: Path) -> bool:
    expected, actual = load_file(str(first)), load_file(str(second))
    return expected.keys() == actual.keys() and all(torch.equal(expected[k], actual[k]) for k in expected)


def wait_for(condition, timeout: float = 300.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def kill_and_resume(data: Path, work: Path, reference: Path, during_save: bool, rng: random.Random) -> tuple:
    """SIGKILL one run (at a random moment, or as soon as a checkpoint save has begun), resume it with
    `latest` until it finishes, and compare its final weights with the reference."""
    output = work / f"out-{rng.randrange(10**9)}"
    process = start(recipe_args(data, output), work / "killed.log")
    if during_save:
        target = rng.randrange(1, STEPS // SAVE_EVERY)  # one of the saves before the last
        wait_for(lambda: (output / f".tmp-checkpoint-{target * SAVE_EVERY}").exists())
    else:
        wait_for(lambda: "training:" in (work / "killed.log").read_text())
        time.sleep(rng.uniform(0.0, 8.0))
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = sorted(p.name for p in output.glob("*checkpoint-*")) if output.exists() else []
    code = run(recipe_args(data, output, resume_from_checkpoint="latest"), work / "resumed.log")
    exact = code == 0 and same_weights(reference / "model.safetensors", output / "model.safetensors")
    shutil.rmtree(output, ignore_errors=True)
    return exact, killed_at


DAMAGE = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)]),
    "one byte changed": lambda path: path.write_bytes(_flip(path.read_bytes())),
    "deleted": lambda path: path.unlink(),
}


def _flip(content: bytes) -> bytes:
    middle = len(content) // 2
    return content[:middle] + bytes([content[middle] ^ 0x01]) + content[middle + 1 :]


def damaged_checkpoints(finished: Path, work: Path) -> list[tuple[str, str]]:
    """Every file of the newest checkpoint damaged three ways: what `latest` and an explicit path then do."""
    rows = []
    newest = max(finished.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for name in sorted(p.name for p in newest.iterdir()):
        for how, damage in DAMAGE.items():
            copy = work / "damaged"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(finished, copy)
            damage(copy / newest.name / name)
            rows.append((f"{name} {how}", _outcomes(copy, copy / newest.name)))
    return rows


def _outcomes(output: Path, checkpoint: Path) -> str:
    """What `latest` picks (and which file its warning names), and what naming the damaged checkpoint does."""
    warnings = _Captured()
    logging.getLogger("vit_hf").addHandler(warnings)
    try:
        chosen = claim_output_dir(output, "latest", False).checkpoint
        latest = f"latest: {chosen.name if chosen else 'none'}"
    except CheckpointError as error:
        latest = f"latest refused: {_named(str(error))}"
    finally:
        logging.getLogger("vit_hf").removeHandler(warnings)
    if warnings.messages:
        latest += f", warning names {_named(warnings.messages[0])}"
    try:
        claim_output_dir(output, str(checkpoint), False)
        named = "loaded"
    except CheckpointError as error:
        named = f"refused naming {_named(str(error))}"
    return f"{latest}; the path itself: {named}"


def _named(message: str) -> str:
    """The checkpoint file a message names (`checkpoint-N/file`), or its first words."""
    for word in message.replace(":", " ").split():
        if "checkpoint-" in word and "/" in word:
            return "/".join(word.rstrip(".,").split("/")[-2:])
    return message[:60]


class _Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def planted_pickles(data: Path, finished: Path, work: Path) -> str:
    """A pickle that creates a file when loaded, planted under each name accelerate or torch would unpickle, with
    the checkpoint's file list forged to match; resumed end to end."""
    marker = work / "code-ran"
    results = []
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin"):
        output = work / "planted"
        shutil.rmtree(output, ignore_errors=True)
        output.mkdir()
        newest = max(finished.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        checkpoint = output / newest.name
        shutil.copytree(newest, checkpoint)
        torch.save(_Planted(marker), checkpoint / name)
        state = json.loads((checkpoint / "training_state.json").read_text())
        state["files"] = file_digests(checkpoint)
        state["state_sha256"] = state_digest(state)
        (checkpoint / "training_state.json").write_text(json.dumps(state))
        code = run(recipe_args(data, output, resume_from_checkpoint="latest"), work / "planted.log")
        results.append((name, code, marker.exists()))
        marker.unlink(missing_ok=True)
    ran = [name for name, _, created in results if created]
    return f"{len(results) - len(ran)}/{len(results)} never unpickled" + (f" (RAN: {ran})" if ran else "")


class _Planted:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def signal_cases(data: Path, work: Path) -> list[tuple[str, str]]:
    """SIGTERM to the trainer and to each launcher: exit status, whether the trainer saved and stopped, and
    whether the output folder stayed locked until it had. Then SIGINT twice."""
    ddp = ("accelerate", "launch", "--config_file", str(ROOT / "recipes/accelerate/cpu_ddp.yaml"))
    launchers = {
        "python recipes/finetune.py": (sys.executable,),
        "accelerate launch --cpu (1 process)": ("accelerate", "launch", "--cpu", "--num_processes", "1"),
        "accelerate launch, 2-process CPU DDP": ddp,
    }
    rows = []
    for index, (name, launcher) in enumerate(launchers.items()):
        output, log = work / f"signal-{index}", work / f"signal-{index}.log"
        args = recipe_args(data, output, max_steps=100000, save_strategy="no", eval_strategy="epoch")
        process = start(args, log, launcher, ACCELERATE_USE_CPU="1" if launcher == ddp else None)
        wait_for(lambda log=log: "training:" in log.read_text())
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        code = process.wait()
        locked = not _lock_free(output)  # the launcher is gone; is the trainer still finishing?
        trainer = json.loads((output / ".lock").read_text())["pid"]
        stopped = wait_for(lambda pid=trainer: not _alive(pid), timeout=120)
        saved = ", ".join(sorted(p.name for p in output.glob("checkpoint-*"))) or "nothing"
        status = 128 - code if code < 0 else code  # as a shell reports it
        outcome = f"exit {status}; trainer stopped: {stopped}, saved {saved}; folder locked after that exit: {locked}"
        rows.append((f"SIGTERM to {name}", outcome))
    output, log = work / "twice", work / "twice.log"
    process = start(recipe_args(data, output, max_steps=100000, save_strategy="no"), log)
    wait_for(lambda: "training:" in log.read_text())
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    began = time.monotonic()
    process.send_signal(signal.SIGINT)
    code = process.wait()
    rows.append(("SIGINT twice", f"exit {code}, {time.monotonic() - began:.1f} s after the second"))
    return rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _lock_free(output: Path) -> bool:
    import fcntl

    with open(output / ".lock") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
    return True


def bad_inputs(data: Path, finished: Path, work: Path) -> list[tuple[str, str]]:
    """Each must fail (or stop) before training with an error naming the problem."""
    folder = work / "bad"
    folder.mkdir(exist_ok=True)
    (folder / "file").write_text("x")
    cases = {
        "--max_eval_samples 0": recipe_args(data, folder / "a", max_eval_samples=0),
        "--output_dir names a file": recipe_args(data, folder / "file"),
        "latest on a finished run without checkpoints": recipe_args(
            data, _outputs_only(finished, folder / "done"), resume_from_checkpoint="latest"
        ),
        "new run into a finished run's folder": recipe_args(data, folder / "done"),
        "--overwrite_output_dir with --resume_from_checkpoint": recipe_args(
            data, finished, overwrite_output_dir="true", resume_from_checkpoint="latest"
        ),
    }
    rows = []
    for name, args in cases.items():
        began = time.monotonic()
        code = run(args, work / "bad.log")
        log = (work / "bad.log").read_text()
        trained = "training:" in log
        lines = [line for line in log.splitlines() if line.strip()]
        message = next(
            (line for line in reversed(lines) if "rror" in line or "complete" in line), lines[-1] if lines else ""
        )
        summary = f"exit {code} in {time.monotonic() - began:.0f} s, {'TRAINED' if trained else 'no training'}"
        rows.append((name, f"{summary}: {message.strip()[:90]}"))
    return rows


def _outputs_only(finished: Path, target: Path) -> Path:
    shutil.copytree(finished, target, ignore=shutil.ignore_patterns("checkpoint-*", "best"))
    return target


def print_table(rows: list[tuple[str, str]]) -> None:
    print("| fault | outcome |\n|---|---|")
    for fault, outcome in rows:
        print(f"| {fault} | {outcome} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--save_kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_cifar_like(work / "data", n_train=160, n_test=40)
        reference = work / "reference"
        assert run(recipe_args(data, reference), work / "reference.log") == 0, (work / "reference.log").read_text()
        rows = []
        for during_save, count in ((False, options.kills), (True, options.save_kills)):
            outcomes = [kill_and_resume(data, work, reference, during_save, rng) for _ in range(count)]
            where = "during a checkpoint save" if during_save else "at a random point"
            left = "; ".join(",".join(found) or "nothing" for _, found in outcomes)
            exact = sum(exact for exact, _ in outcomes)
            rows.append((f"SIGKILL {where}, resume latest", f"{exact}/{count} bit-exact (left: {left})"))
        rows += damaged_checkpoints(reference, work)
        rows.append(
            ("pickle planted in the last checkpoint (file list forged)", planted_pickles(data, reference, work))
        )
        rows += signal_cases(data, work)
        rows += bad_inputs(data, reference, work)
        print_table(rows)


if __name__ == "__main__":
    main()
