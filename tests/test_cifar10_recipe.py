"""The CPU recipe on real CIFAR-10 images: a short run on the committed sample learns well above chance; the full
recipe on the 3,051-image subset (slow) reaches its stated accuracy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ["recipes/finetune.py", "--config", "recipes/configs/cifar10_cpu.yaml"]
SAMPLE = "tests/data/cifar10-sample"  # 500 train / 200 test real CIFAR-10 images, Hub layout
SUBSET = ROOT.parent / "shared" / "data" / "cifar10-subset"


def run_recipe(output: Path, *flags: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    command = [sys.executable, *RECIPE, "--output_dir", str(output), *flags]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((output / "all_results.json").read_text())


def test_short_cpu_recipe_learns_real_cifar10_sample(tmp_path):
    # The local-copy path and the Hub's `img` column, named as a user of the Hub dataset would. On 450 training
    # images and 140 steps, lighter augmentation and no label smoothing or stochastic depth learn faster.
    flags = ["--dataset", SAMPLE, "--image_column", "img", "--num_epochs", "20", "--warmup_steps", "10"]
    flags += ["--crop_scale_min", "0.8", "--label_smoothing", "0.0", "--drop_path_rate", "0.0"]
    results = run_recipe(tmp_path / "out", *flags)
    assert results["test_num_examples"] == 200
    assert results["test_accuracy"] >= 0.2, results  # chance is 0.10; measured 0.295 (seed 42)


@pytest.mark.slow
@pytest.mark.skipif(not SUBSET.is_dir(), reason="the CIFAR-10 subset is not at ../shared/data/cifar10-subset")
def test_full_cpu_recipe_reaches_its_stated_accuracy(tmp_path):
    results = run_recipe(tmp_path / "out", "--dataset", str(SUBSET), "--seed", "0")
    assert results["test_num_examples"] == 1017
    # Measured 50.8% with seed 0 (50.8-54.9% over seeds 0-2, the recipe's header); the floor leaves room for another
    # machine's numerics.
    assert results["test_accuracy"] >= 0.45, results
