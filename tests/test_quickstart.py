"""The README's first command: the quickstart recipe, run exactly as documented, reaches its promised accuracy."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from tests.test_readme import python_blocks_under
from vit_hf.visualize.__main__ import main as visualize_cli

ROOT = Path(__file__).resolve().parents[1]
README_COMMAND = (
    "accelerate launch --config_file recipes/accelerate/single_process.yaml recipes/finetune.py "
    "--config recipes/configs/quickstart.yaml"
)


def test_quickstart_reaches_95_percent_on_the_digits_test_split(tmp_path):
    assert f"```bash\n{README_COMMAND}\n```" in (ROOT / "README.md").read_text()
    output = tmp_path / "quickstart"
    command = README_COMMAND.split()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run(
        [*command, "--output_dir", str(output)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # What it prints: the output folder named, a short summary table, none of the libraries' chatter.
    assert f"writing to {output}" in result.stderr and "final results:" in result.stderr
    assert "            accuracy     top-5" in result.stderr and "estimated" in result.stderr
    for noise in ("--num_processes", "Writing model shards", "Saving current state", "transforms run on the device"):
        assert noise not in result.stderr + result.stdout, noise
    results = json.loads((output / "all_results.json").read_text())
    assert results["test_num_examples"] == 360
    assert results["test_accuracy"] >= 0.95, results

    # The README's next step: classify with the trained folder through transformers' pipeline.
    example = python_blocks_under("## Quickstart (offline, CPU)")[0].replace('"outputs/quickstart"', repr(str(output)))
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    digits = load_digits()
    image = Image.fromarray(np.round(digits.images[0] * 255 / 16).astype(np.uint8))  # as vit_hf.data makes them
    prediction = namespace["classify"](image, top_k=1)[0]
    assert prediction["label"] == str(digits.target[0]), prediction

    # What the model looks at: the recipe's pictures, in the card, and the CLI on the output folder.
    card = (output / "README.md").read_text()
    for picture in ("attention_maps.png", "position_embeddings.png", "attention_distance.png"):
        assert (output / picture).is_file() and f"]({picture})" in card
    image.save(tmp_path / "digit.png")
    assert visualize_cli([str(output), str(tmp_path / "digit.png"), "--out", str(tmp_path / "pictures")]) == 0
    assert (tmp_path / "pictures" / "attention_maps.png").is_file()
