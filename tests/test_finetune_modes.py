"""Partial fine-tuning: LoRA through PEFT in the recipe (merged model, adapter, exact resume), the linear probe and
the last-N-blocks modes (frozen weights unchanged, no optimizer state for them, frozen modules in eval mode)."""

import json
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_config
from tests.data_utils import write_cifar_like
from tests.test_finetune_recipe import assert_same_weights, recipe_args, run_recipe
from vit_hf import ViTHFForImageClassification
from vit_hf.hub.upload import files_to_push
from vit_hf.training.freezing import freeze, train_mode
from vit_hf.training.model_loading import resolve_attn_implementation
from vit_hf.training.optimization import create_optimizer

LORA = {"peft": "lora", "lora_r": 4, "lora_alpha": 8, "mixed_precision": "bf16", "gradient_checkpointing": "true"}


def train_steps(model, frozen, optimizer, steps=3):
    config = model.config
    for step in range(steps):
        train_mode(model, frozen)
        pixels = torch.randn(4, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(step))
        model(pixels, labels=torch.tensor([0, 1, 2, 3])).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("mode", ["backbone", "last_block"])
def test_frozen_parameters_stay_bit_identical_and_have_no_optimizer_state(mode):
    torch.manual_seed(0)
    model = ViTHFForImageClassification(tiny_config(num_hidden_layers=3, drop_path_rate=0.2, hidden_dropout_prob=0.1))
    frozen = freeze(model, backbone=mode == "backbone", trainable_blocks=1 if mode == "last_block" else None)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    optimizer = create_optimizer(model, "adamw", 1e-2, weight_decay=0.05, layer_decay=0.75)
    train_steps(model, frozen, optimizer)
    expected = {"head.weight", "head.bias"}
    if mode == "last_block":
        expected |= {name for name in before if name.startswith(("vit.blocks.2.", "vit.norm."))}
    assert trained == expected
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) != (name in trained), name
    state_ids = {id(p) for p in optimizer.state}
    assert state_ids == {id(p) for name, p in model.named_parameters() if name in trained}
    # Layer-wise decay still scales the trained block below the head.
    scales = {group["lr_scale"] for group in optimizer.param_groups}
    assert scales == ({1.0} if mode == "backbone" else {1.0, 0.75})
    assert all(not module.training for module in frozen) and model.head.training


def test_trainable_blocks_beyond_the_depth_is_refused():
    with pytest.raises(ValueError, match="between 0 and the model's 2 blocks"):
        freeze(ViTHFForImageClassification(tiny_config()), backbone=False, trainable_blocks=3)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return write_cifar_like(tmp_path_factory.mktemp("data") / "cifar10", n_train=203, n_test=57)


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    """A tiny vit_hf model to start from, so the adapter's base model can be rebuilt exactly."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("base") / "model"
    ViTHFForImageClassification(tiny_config(num_labels=10)).save_pretrained(folder)
    return folder


def lora_args(cifar, output, base_folder, **extra) -> list[str]:
    args = recipe_args(cifar, output, model=str(base_folder), ema_decay=0.9, **LORA, **extra)
    index = args.index("--model_overrides")  # for presets only
    return args[:index] + args[index + 2 :]


@pytest.fixture(scope="module")
def lora_run(cifar, base_folder, tmp_path_factory):
    """LoRA with bf16 autocast, activation checkpointing and EMA, 8 steps with checkpoints at 4 and 8."""
    output = tmp_path_factory.mktemp("lora") / "out"
    result = run_recipe(lora_args(cifar, output, base_folder))
    assert result.returncode == 0, result.stderr[-4000:]
    # bf16 on the CPU selects the matmul attention kernel; activation checkpointing goes through the current API.
    assert "sdpa_cpu_bf16 attention" in result.stderr
    assert "`gradient_checkpointing_enable` is deprecated" not in result.stderr
    return output


def test_lora_run_writes_a_merged_model_and_a_peft_adapter(lora_run, base_folder):
    from peft import PeftModel
    from transformers import AutoModelForImageClassification

    merged = AutoModelForImageClassification.from_pretrained(lora_run).eval()
    base = AutoModelForImageClassification.from_pretrained(base_folder)
    adapted = PeftModel.from_pretrained(base, lora_run / "adapter").eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(adapted(pixels).logits, merged(pixels).logits, atol=1e-5, rtol=1e-5)
    # Only the attention projections and the head changed; the patch embedding, MLPs and norms are the base's.
    trained, original = load_file(lora_run / "model.safetensors"), load_file(base_folder / "model.safetensors")
    changed = {name for name in original if not torch.equal(trained[name], original[name])}
    assert changed and all(
        ".attn.qkv." in name or ".attn.proj." in name or name.startswith("head.") for name in changed
    )
    assert any(".attn.qkv." in name for name in changed)
    card = (lora_run / "README.md").read_text()
    trainable = json.loads((lora_run / "adapter" / "adapter_config.json").read_text())
    assert trainable["r"] == 4 and "LoRA (r=4" in card and "trainable_parameters" in card
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= set(files_to_push(lora_run))


def test_lora_run_resumes_exactly(cifar, lora_run, base_folder, tmp_path):
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    subprocess.run(["cp", "-r", str(lora_run / "checkpoint-4"), str(resumed)], check=True)
    result = run_recipe(lora_args(cifar, resumed, base_folder, resume_from_checkpoint="latest"))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resumed from" in result.stderr
    for name in ("checkpoint-8/model.safetensors", "model.safetensors", "adapter/adapter_model.safetensors"):
        assert_same_weights(lora_run / name, resumed / name)


def test_auto_attention_is_the_matmul_kernel_for_bf16_on_the_cpu_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_attn_implementation("auto", cpu, "bf16") == "sdpa_cpu_bf16"
    assert resolve_attn_implementation("auto", cpu, "no") == "sdpa"
    assert resolve_attn_implementation("auto", cuda, "bf16") == "sdpa"
    assert resolve_attn_implementation("eager", cpu, "bf16") == "eager"


def test_fine_tuning_modes_are_checked_and_exclusive():
    from vit_hf.training.arguments import parse_arguments

    with pytest.raises(ValueError, match="Choose one of --peft, --freeze and --trainable_blocks"):
        parse_arguments(["--peft", "lora", "--freeze", "backbone"])
    with pytest.raises(ValueError, match="--freeze must be one of"):
        parse_arguments(["--freeze", "head"])
    with pytest.raises(ValueError, match="--lora_dropout"):
        parse_arguments(["--peft", "lora", "--lora_dropout", "1.5"])
