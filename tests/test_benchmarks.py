import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import check_model, fake_cifar10, model_throughput
from benchmarks.model_throughput import Result, forward_flops_per_image, markdown_table, step_peak_bytes
from benchmarks.peers import build_peers, get_spec, logits_of
from tests.data_utils import CIFAR10_NAMES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_peers():
    return build_peers(get_spec("vit_tiny_patch16_224"))


def test_peers_compute_the_same_function(tiny_peers):
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = logits_of(tiny_peers["timm"].eval(), pixels)
        assert reference.abs().max() > 0.1  # a random head, so every weight matters
        for name in ("vit_hf", "transformers"):
            torch.testing.assert_close(logits_of(tiny_peers[name].eval(), pixels), reference, atol=1e-5, rtol=0)


def test_flop_count_matches_the_vit_formula(tiny_peers):
    tokens, width, layers, patches = 197, 192, 12, 196
    per_layer = 2 * tokens * width * (3 * width + width + 2 * 4 * width)  # qkv, proj, fc1 + fc2
    per_layer += 2 * 2 * tokens * tokens * width  # q @ k^T and attention @ v
    expected = layers * per_layer + 2 * patches * width * (3 * 16 * 16) + 2 * width * 1000  # + patches + head
    for name, model in tiny_peers.items():
        assert forward_flops_per_image(model, get_spec("vit_tiny_patch16_224"), torch.device("cpu")) == expected, name


def test_cpu_step_peak_sees_a_temporary_allocation():
    def step():
        torch.ones(2**21).sum()  # 8 MiB, freed at once

    peak = step_peak_bytes(step, torch.device("cpu"))
    assert 8 * 2**20 <= peak < 9 * 2**20


def result(implementation, images_per_s, model="vit_b", task="train"):
    return Result(
        model=model,
        implementation=implementation,
        task=task,
        precision="bf16",
        mode="eager",
        batch_size=8,
        images_per_s=images_per_s,
        repeats_images_per_s=[images_per_s * 0.9, images_per_s, images_per_s * 1.1],
        peak_memory_mib=100.0,
        first_step_s=1.0,
        forward_gflops_per_image=1.0,
        achieved_tflops=3e-3 * images_per_s,
        mfu=None,
    )


def test_table_gives_ratios_and_marks_a_missing_peer():
    results = [result("vit_hf", 30.0), result("timm", 15.0), result("transformers", 20.0)]
    results += [result("vit_hf", 10.0, model="hybrid"), result("timm", 8.0, model="hybrid")]
    lines = markdown_table(results).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)) for line in lines[2:]]
    assert rows[0]["vit_hf/timm"] == "2.00" and rows[0]["vit_hf/transformers"] == "1.50"
    assert rows[1]["vit_hf/timm"] == "1.25" and rows[1]["transformers img/s"] == "–"
    assert rows[0]["spread"] == "20%"


def test_benchmark_run_writes_both_outputs(tmp_path):
    table, figures = tmp_path / "t.md", tmp_path / "t.json"
    argv = ["--models", "vit_tiny_patch16_224", "--batch-size", "1", "--precisions", "fp32", "--warmup", "0"]
    argv += ["--steps", "1", "--repeats", "2", "--implementations", "vit_hf", "timm", "--peak-tflops", "0.5"]
    model_throughput.main(argv + ["--output", str(table), "--output", str(figures)])
    saved = json.loads(figures.read_text())
    rows = {(r["implementation"], r["task"]): r for r in saved["results"]}
    assert set(rows) == {(name, task) for name in ("vit_hf", "timm") for task in ("train", "infer")}
    for row in rows.values():
        assert row["images_per_s"] > 0 and len(row["repeats_images_per_s"]) == 2
        assert row["mfu"] == pytest.approx(row["achieved_tflops"] / 0.5)
    train, infer = rows["vit_hf", "train"], rows["vit_hf", "infer"]
    flops_per_step = 3 * train["forward_gflops_per_image"] * 1e9  # backward counted as twice the forward
    assert train["achieved_tflops"] == pytest.approx(train["images_per_s"] * flops_per_step / 1e12)
    # Training holds weights, gradients and two AdamW moments (16 bytes per parameter) on top of the activations.
    assert train["peak_memory_mib"] > 4 * infer["peak_memory_mib"]
    assert "| vit_tiny_patch16_224 | 1 | train | fp32 | eager |" in table.read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "vit_giant"], "Unknown benchmark model 'vit_giant'"),
        (["--output", "table.txt"], "use a .md (table) or .json"),
        (["--implementations", "timm"], "must include vit_hf"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--repeats", "0"], ""),
    ],
)
def test_bad_arguments_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        model_throughput.main(argv)
    assert message in str(raised.value) + capsys.readouterr().err


def test_check_model_passes_and_catches_a_wrong_weight(monkeypatch, tmp_path):
    argv = ["--device", "cpu", "--models", "vit_tiny_patch16_224", "--batch-size", "1", "--output", str(tmp_path / "c")]
    assert check_model.main(argv) == 0
    assert all(check["passed"] for check in json.loads((tmp_path / "c").read_text()))

    build = check_model.vit_hf_from_timm

    def off_by_a_little(timm_model, spec):
        model = build(timm_model, spec)
        with torch.no_grad():
            model.vit.blocks[5].mlp.fc2.bias[0] += 0.05  # one channel: a shift of all would vanish in LayerNorm
        return model

    monkeypatch.setattr(check_model, "vit_hf_from_timm", off_by_a_little)
    assert check_model.main(argv) == 1


def test_fake_cifar10_loads_with_the_hub_schema(tmp_path):
    from datasets import ClassLabel, Image, load_dataset

    fake_cifar10.main([str(tmp_path / "cifar10"), "--train-size", "30", "--test-size", "10"])
    files = sorted(p.name for p in (tmp_path / "cifar10" / "plain_text").iterdir())
    assert files == ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]
    dataset = load_dataset(str(tmp_path / "cifar10"))
    assert {split: len(dataset[split]) for split in dataset} == {"train": 30, "test": 10}
    features = dataset["train"].features
    assert isinstance(features["img"], Image) and features["label"] == ClassLabel(names=CIFAR10_NAMES)
    assert dataset["train"][0]["img"].size == (32, 32) and sorted(set(dataset["train"]["label"])) == list(range(10))


@pytest.mark.slow
def test_gpu_check_cpu_smoke(tmp_path):
    run = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-smoke", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    summary = (tmp_path / "summary.txt").read_text()
    steps = ["environment", "equality", "throughput", "compile"]
    steps += ["finetune", "overhead"] if (REPO / "recipes" / "finetune.py").is_file() else []
    for step in steps:
        assert f"{step:<12} PASS" in summary
    assert (tmp_path / "throughput.json").is_file() and (tmp_path / "equality.json").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_gpu_check_without_a_gpu_stops_after_the_environment_step(tmp_path):
    run = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1, run.stdout + run.stderr
    summary = (tmp_path / "summary.txt").read_text()
    assert "environment  FAIL" in summary and "needs a GPU" in run.stdout
    assert "equality" not in summary and "nothing else was run" in summary


def test_recipe_overhead_compares_the_loop_with_the_model_only_step(tmp_path):
    output = tmp_path / "overhead.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.recipe_overhead", "--device", "cpu", "--image-size", "32",
         "--batch-size", "8", "--steps", "3", "--warmup", "1", "--workers", "0", "--output", str(output)],
        cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(output.read_text())
    assert figures["model_only_ms_per_step"] > 0 and figures["whole_loop_ms_per_step"] > 0
    assert figures["transforms"] == "device"  # CIFAR-format images share one size


def test_data_throughput_measures_every_pipeline_against_the_example(tmp_path):
    output = tmp_path / "data.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.data_throughput", "--image-sizes", "64", "--batch-size", "8",
         "--num-workers", "0", "--warmup", "1", "--batches", "1", "--rounds", "1", "--device", "cpu",
         "--output", str(output)],
        cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(output.read_text())["results"]
    assert {row["pipeline"].split(" (")[0] for row in rows} >= {"example", "vit_hf cpu path"}
    assert all(row["images_per_second"] > 0 and row["ratio"] > 0 for row in rows)


def test_seed_claims_rows_train_and_summarise_on_real_images(monkeypatch):
    from benchmarks import seed_claims

    # Two steps per row: the point is that each kind of row runs (a third of the data, a hybrid stem, a resolution
    # change with resampled position embeddings), not what it reaches.
    monkeypatch.setattr(seed_claims, "STEPS", 2)
    monkeypatch.setitem(seed_claims.ROWS, "res48", dict(seed_claims.ROWS["res48"], extra_steps=1))
    sample = str(REPO / "tests" / "data" / "cifar10-sample")
    records = [seed_claims.run_one(sample, row, seed=0, threads=1) for row in ("hybrid_third", "res48")]
    assert records[0]["train_images"] == 170  # a third of each class of 50, rounded: 17 per class
    assert all(0.0 <= record["test_accuracy"] <= 1.0 and record["train_cpu_s"] > 0 for record in records)
    records.append(dict(records[1], seed=1, test_accuracy=0.5))
    table = seed_claims.summary_table(records)
    assert "| hybrid_third |" in table and "| 2 |" in table  # res48: two seeds, mean of both
    assert f"| res48 | {50 * (records[1]['test_accuracy'] + 0.5):.1f} (" in table


def test_time_to_accuracy_runs_the_recipe_with_the_stated_hyperparameters(monkeypatch, tmp_path):
    # The comparison is only fair while the vit_hf side's command parses to the settings the transformers side uses.
    from benchmarks import time_to_accuracy
    from vit_hf.training.arguments import parse_arguments

    commands = []
    monkeypatch.setattr(time_to_accuracy.subprocess, "run", lambda command, **_: commands.append(command))
    with pytest.raises(FileNotFoundError):  # no all_results.json: nothing ran
        time_to_accuracy.run_vit_hf("tests/data/cifar10-sample", 10, 0, str(tmp_path))
    model_args, data_args, args = parse_arguments(commands[0][2:])
    assert data_args.interpolation == "bilinear" and data_args.crop_scale_min == 0.08 and data_args.hflip == 0.5
    assert (args.learning_rate, args.weight_decay, args.warmup_steps) == (2e-3, 0.05, 50)
    assert (args.per_device_train_batch_size, args.label_smoothing, args.num_epochs) == (64, 0.1, 10)
    assert model_args.image_size == 32 and model_args.drop_path_rate == 0.0


@pytest.mark.parametrize("path", sorted(REPO.glob("benchmarks/*.py")), ids=lambda path: path.stem)
def test_every_benchmark_module_imports(path):
    # The benchmarks run by hand, rarely: an import broken by a change elsewhere would otherwise go unnoticed.
    importlib.import_module(f"benchmarks.{path.stem}")
