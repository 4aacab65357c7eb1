"""The pieces the fine-tuning recipe is built from: arguments, optimizer groups and schedules, metrics,
checkpoint folders, the model card and the Hub upload boundary."""

import json
import logging
import os
from unittest import mock

import pytest
import timm
import torch
import yaml

from tests.conftest import tiny_config
from vit_hf import ViTHFForImageClassification, list_presets
from vit_hf.hub.model_card import build_model_card
from vit_hf.hub.upload import HubPushError, check_hub_access, files_to_push, push_folder, upload_or_explain
from vit_hf.training import console, plots
from vit_hf.training.arguments import ArgumentError, ModelArguments, RecipeParser, known_flags, parse_arguments
from vit_hf.training.console import step_flops
from vit_hf.training.launch import check_process_count
from vit_hf.training.metrics import ClassificationMetrics
from vit_hf.training.model_loading import describe_architecture, load_model_for_finetuning
from vit_hf.training.optimization import create_optimizer, create_scheduler, layer_id, parameter_groups

# --- arguments -------------------------------------------------------------------------------------------------


def test_defaults_fine_tune_vit_b16_in21k_on_cifar10_at_224():
    model_args, data_args, args = parse_arguments([])
    assert model_args.model == "vit_base_patch16_224.augreg_in21k"
    assert data_args.dataset == "uoft-cs/cifar10"
    assert model_args.image_size is None  # the checkpoint's own 224
    assert args.optimizer == "sgd" and args.max_grad_norm == 1.0


def test_recipe_file_then_flags_override(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump({"learning_rate": 0.03, "image_size": 384, "model_overrides": {"num_hidden_layers": 2}})
    )
    model_args, _, args = parse_arguments(["--config", str(recipe), "--learning_rate", "0.1"])
    assert args.learning_rate == 0.1
    assert model_args.image_size == 384
    assert json.loads(model_args.model_overrides) == {"num_hidden_layers": 2}


def test_every_shipped_recipe_parses():
    folder = os.path.join(os.path.dirname(__file__), "..", "recipes", "configs")
    configs = sorted(f for f in os.listdir(folder) if f.endswith(".yaml"))
    assert {"quickstart.yaml", "cifar10_vit_b16_224.yaml", "cifar10_vit_b16_384.yaml"} <= set(configs)
    pretrained = set(timm.list_pretrained())
    for name in configs:
        model_args, data_args, _ = parse_arguments(["--config", os.path.join(folder, name)])
        # What a user with a network downloads must exist: a timm weight tag, or a preset trained from scratch.
        assert model_args.model in pretrained or model_args.model in list_presets(), (name, model_args.model)
        # The CPU recipe trains on the CIFAR-10 subset that sits beside the repository in CI (read-only).
        local = ("../shared/data/cifar10-subset",)
        assert data_args.dataset in ("uoft-cs/cifar10", "digits", *local), (name, data_args.dataset)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--learnin_rate", "0.1"], "unknown flag --learnin_rate \\(did you mean --learning_rate\\?\\)"),
        (["--learning_rat", "0.1"], "unknown flag --learning_rat"),  # no prefix abbreviations
        (["--optimizer", "adam"], "Did you mean 'adamw'"),
        (["--image_size", "0"], "--image_size must be positive, got 0"),
        (["--max_grad_norm", "-1"], "--max_grad_norm must be >= 0, got -1"),
        (["--weight_decay", "-5"], "--weight_decay must be >= 0, got -5"),
        (["--momentum", "5"], r"--momentum must be in \[0, 1\), got 5"),
        (["--num_epochs", "nan"], "--num_epochs must be a finite number, got nan"),
        (["--max_train_samples", "0"], "--max_train_samples must be at least 1, got 0"),
        (["--max_eval_samples", "0"], "--max_eval_samples must be at least 1, got 0"),
        (["--max_steps", "3.7"], "invalid int value: '3.7'"),
        (["--output_dir", __file__], "is a file; name a folder"),
        (["--optimizer", "adam"], "--optimizer must be one of"),
        (["--lr_scheduler_type", "step"], "--lr_scheduler_type"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be positive"),
        (["--learning_rate", "-1"], "--learning_rate must be positive"),
        (["--num_epochs", "0"], "training length"),
        (["--validation_fraction", "1.5"], "--validation_fraction"),
        (["--label_smoothing", "1.0"], "--label_smoothing"),
        (["--push_to_hub", "true"], "--hub_model_id"),
        (["--model_overrides", "[1, 2]"], "JSON object"),
        (["--eval_strategy", "always"], "--eval_strategy"),
        (["--final_weights", "ema"], "--final_weights"),
        (["--save_total_limit", "0"], "--save_total_limit"),
        (["--mixed_precision", "fp8"], "--mixed_precision"),
        (["--config", "missing.yaml"], "does not exist"),
        (["--report_to", "mlflow"], "not supported"),
        (["--hflip", "1.5"], r"--hflip must be in \[0, 1\], got 1.5"),
        (["--random_erasing", "-0.1"], r"--random_erasing must be in \[0, 1\], got -0.1"),
        (["--mixup_alpha", "-1"], "--mixup_alpha must be >= 0, got -1"),
        (["--cutmix_alpha", "-1"], "--cutmix_alpha must be >= 0, got -1"),
        (["--warmup_steps", "-5"], "--warmup_steps must be >= 0, got -5"),
        (["--drop_path_rate", "1.0"], r"--drop_path_rate must be in \[0, 1\), got 1.0"),
        (["--layer_decay", "0"], r"--layer_decay must be in \(0, 1\], got 0"),
        (["--layer_decay", "1.5"], r"--layer_decay must be in \(0, 1\], got 1.5"),
    ],
)
def test_bad_arguments_are_clear_errors(argv, message):
    with pytest.raises(ArgumentError, match=message):
        parse_arguments(argv)


@pytest.mark.parametrize(
    "flag, value",
    [("hflip", 1.0), ("random_erasing", 1.0), ("layer_decay", 1.0), ("warmup_steps", 0), ("drop_path_rate", 0.0)],
)
def test_range_limits_that_are_valid_values_parse(flag, value):
    parsed = {name: v for group in parse_arguments([f"--{flag}", str(value)]) for name, v in vars(group).items()}
    assert parsed[flag] == value


def test_missing_tracker_package_is_named(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install tensorboard"):
        parse_arguments(["--report_to", "tensorboard"])


def test_unknown_recipe_key_is_an_error(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="Did you mean 'learning_rate'"):
        parse_arguments(["--config", str(recipe)])


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_steps: 3.7\n", "max_steps in .* must be an integer, got 3.7"),
        ("learning_rate: fast\n", "learning_rate in .* must be a number, got 'fast'"),
        ("push_to_hub: 1\n", "push_to_hub in .* must be true or false, got 1"),
        ("optimizer: adam\n", "--optimizer must be one of \\['sgd', 'adamw'\\], got 'adam'"),
        ("seed: [1, 2\n", r"recipe.yaml, line 2, column 1 is not valid YAML: expected ',' or '\]'"),
    ],
)
def test_bad_recipe_values_are_clear_errors(tmp_path, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(ArgumentError, match=message):
        parse_arguments(["--config", str(recipe)])


def test_help_lists_every_flag_with_help_default_and_choices_grouped(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for title in ("model:", "data:", "training:"):
        assert f"\n{title}\n" in text
    parser = RecipeParser()
    flags = [action for action in parser._actions if action.dest != "help"]
    assert len(flags) == len(known_flags())
    for action in flags:
        assert action.help and action.help.strip(), action.dest
    assert "--optimizer {sgd,adamw}" in text and "--lr_scheduler_type {cosine,linear,constant}" in text
    assert "(default: 0.01)" in text  # the learning rate's


# --- optimizer and schedule ------------------------------------------------------------------------------------


def test_no_weight_decay_on_biases_norms_and_embeddings():
    model = ViTHFForImageClassification(tiny_config(layer_scale_init_value=1e-5, num_register_tokens=1))
    groups = parameter_groups(model, weight_decay=0.05)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = {names[i] for i in decayed}
    assert "vit.blocks.0.attn.qkv.weight" in decayed_names and "head.weight" in decayed_names
    for excluded in (
        "vit.pos_embed",
        "vit.cls_token",
        "vit.reg_token",
        "vit.blocks.0.norm1.weight",
        "vit.blocks.0.attn.qkv.bias",
        "vit.blocks.0.ls1.gamma",
    ):
        assert excluded not in decayed_names
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_layer_decay_scales_learning_rates_by_depth():
    model = ViTHFForImageClassification(tiny_config(num_hidden_layers=2))
    assert layer_id("vit.patch_embed.proj.weight", 2) == 0
    assert layer_id("vit.blocks.1.mlp.fc1.weight", 2) == 2
    assert layer_id("head.weight", 2) == 3
    optimizer = create_optimizer(model, "adamw", 1e-3, weight_decay=0.05, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["head.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(params["vit.blocks.1.attn.qkv.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(params["vit.blocks.0.attn.qkv.weight"])] == pytest.approx(2.5e-4)
    assert lr_of[id(params["vit.patch_embed.proj.weight"])] == pytest.approx(1.25e-4)


def test_sgd_with_momentum_and_warmup_cosine_schedule():
    model = ViTHFForImageClassification(tiny_config())
    optimizer = create_optimizer(model, "sgd", 0.1, momentum=0.9)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    scheduler = create_scheduler(optimizer, "cosine", warmup_steps=10, total_steps=110)
    lrs = []
    for _ in range(110):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.05) and lrs[10] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.05, abs=1e-3) and lrs[-1] < 1e-3
    with pytest.raises(ValueError, match="warmup_steps"):
        create_scheduler(optimizer, "linear", warmup_steps=200, total_steps=100)


# --- metrics ---------------------------------------------------------------------------------------------------


def test_classification_metrics():
    metrics = ClassificationMetrics(num_labels=6)
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 5, 4, 3, 2, 1], [0, 1, 2, 3, 4, 5]])
    labels = torch.tensor([0, 2, 0])  # right, second choice, last choice
    metrics.update(logits[:2], labels[:2], torch.tensor([1.0, 2.0]))
    metrics.update(logits[2:], labels[2:], torch.tensor([3.0]))
    result = metrics.compute()
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["top5_accuracy"] == pytest.approx(2 / 3)
    assert result["loss"] == pytest.approx(2.0) and result["num_examples"] == 3
    assert metrics.confusion[2, 1] == 1 and metrics.confusion.sum() == 3
    with pytest.raises(ValueError, match="labels must be in"):
        metrics.update(logits[:1], torch.tensor([6]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="empty"):
        ClassificationMetrics(3).compute()


# --- model card and Hub ----------------------------------------------------------------------------------------


def test_model_card_has_model_index_results(tmp_path):
    results = {
        "eval_accuracy": 0.91,
        "eval_top5_accuracy": 0.99,
        "eval_loss": 0.3,
        "test_accuracy": 0.9012,
        "test_top5_accuracy": 0.995,
        "test_loss": 0.31,
    }
    card = build_model_card(
        model_name="vit-cifar10",
        base_model="timm/vit_base_patch16_224.augreg_in21k",
        dataset_id="uoft-cs/cifar10",
        dataset_name="cifar10",
        results=results,
        hyperparameters={"learning_rate": 0.03},
        image_size=224,
        pictures=["training_curves.png"],
        repo_id="me/vit-cifar10",
    )
    card.save(tmp_path / "README.md")
    text = (tmp_path / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    metrics = header["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in metrics} == {"accuracy": 0.9012, "top5_accuracy": 0.995}
    assert header["base_model"] == "timm/vit_base_patch16_224.augreg_in21k"
    assert "| test | 0.9012 |" in text and "learning_rate | 0.03" in text and "me/vit-cifar10" in text


def test_model_card_of_a_model_trained_from_scratch_says_so_and_names_its_shape(tmp_path):
    overrides = '{"backbone_depths": [1], "patch_size": 1, "hidden_size": 48, "num_hidden_layers": 1}'
    model_args = ModelArguments(model="tiny_patch16_224", image_size=16, model_overrides=overrides)
    model, _, _ = load_model_for_finetuning(model_args, {0: "a", 1: "b"})
    architecture = describe_architecture(model, model_args)
    assert architecture.startswith(f"the `tiny_patch16_224` preset with `{overrides}`")
    assert "hybrid ResNetV2 + ViT" in architecture and "M parameters" in architecture
    card = build_model_card(
        model_name="quickstart",
        base_model=None,
        dataset_id=None,
        dataset_name="digits",
        results={"eval_accuracy": 0.9},
        hyperparameters={},
        image_size=16,
        pictures=[],
        architecture=architecture,
    )
    text = str(card)
    assert f"A Vision Transformer trained from scratch ({architecture})" in text and "fine-tuned" not in text


def test_pictures_say_what_they_show(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure))
    history = [{"step": 1, "loss": 1.0}, {"step": 2, "eval_loss": 0.5, "eval_accuracy": 0.99, "eval_top5_accuracy": 1}]
    plots.plot_training_curves(history, tmp_path / "curves.png")
    plots.plot_confusion_matrix(torch.eye(2, dtype=torch.long), ["a", "b"], tmp_path / "cm.png", "Test")
    lines = {line.get_label(): line for line in figures[0].axes[1].lines}
    assert lines["top-1"].get_zorder() > lines["top-5"].get_zorder()  # top-1 drawn over top-5 where they meet near 1.0
    assert "row-normalised" in figures[1].axes[0].get_title()


def test_files_to_push_leave_training_state_behind(tmp_path):
    for name in [
        "model.safetensors",
        "config.json",
        "README.md",
        "modeling_vit_hf.py",
        "all_results.json",
        "checkpoint-10/model.safetensors",
        ".tmp-checkpoint-20/x",
        "best/model.safetensors",
        "runs/events.out",
        ".final-tmp/config.json",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert files_to_push(tmp_path) == [
        "README.md",
        "all_results.json",
        "config.json",
        "model.safetensors",
        "modeling_vit_hf.py",
    ]


def test_push_sends_exactly_those_files(tmp_path):
    (tmp_path / "model.safetensors").write_text("x")
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "optimizer.bin").write_text("x")
    with mock.patch("vit_hf.hub.upload.HfApi") as api_class:
        push_folder(tmp_path, "me/model")
    api = api_class.return_value
    api.create_repo.assert_called_once_with("me/model", private=None, exist_ok=True, repo_type="model")
    kwargs = api.upload_folder.call_args.kwargs
    from huggingface_hub.utils import filter_repo_objects

    sent = list(
        filter_repo_objects(
            ["model.safetensors", "checkpoint-1/optimizer.bin"], ignore_patterns=kwargs["ignore_patterns"]
        )
    )
    assert sent == ["model.safetensors"] == files_to_push(tmp_path)


def test_pushes_leave_the_ignore_patterns_as_they_were(tmp_path, monkeypatch):
    """`upload_folder` extends the ignore list it is given in place: pushing must not grow the module's own."""
    import huggingface_hub.constants
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    from vit_hf.hub import upload

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # each upload stops at its first request
    (tmp_path / "model.safetensors").write_text("x")
    before = list(upload.IGNORE_PATTERNS)
    with mock.patch.object(HfApi, "create_repo"):
        for _ in range(2):
            with pytest.raises(OfflineModeIsEnabled):
                push_folder(tmp_path, "me/model", token="hf_unused")
    assert list(upload.IGNORE_PATTERNS) == before
    assert files_to_push(tmp_path) == ["model.safetensors"]


def test_hub_check_fails_fast_offline():
    with pytest.raises(HubPushError, match="Cannot reach the Hugging Face Hub"):
        check_hub_access("me/model")
    with pytest.raises(HubPushError, match="--hub_model_id"):
        check_hub_access(None)


def test_failed_final_upload_keeps_the_folder_and_says_how_to_upload(tmp_path, caplog):
    (tmp_path / "model.safetensors").write_text("x")
    with mock.patch("vit_hf.hub.upload.HfApi") as api_class:
        api_class.return_value.upload_folder.side_effect = ConnectionError("network is unreachable")
        with caplog.at_level("ERROR"):
            assert upload_or_explain(tmp_path, "me/model", commit_message="End of training") is False
    assert (tmp_path / "model.safetensors").exists()
    assert f"hf upload me/model {tmp_path}" in caplog.text and "network is unreachable" in caplog.text


# --- launch and console ----------------------------------------------------------------------------------------


def test_a_launch_whose_processes_did_not_join_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    with pytest.raises(ValueError, match="started 2 processes .* accelerate runs 1.*ACCELERATE_USE_CPU=1"):
        check_process_count(1)
    check_process_count(2)
    monkeypatch.delenv("WORLD_SIZE")
    check_process_count(1)


def test_step_flops_count_the_forward_pass_three_times_per_example_at_least():
    model = ViTHFForImageClassification(tiny_config())
    pixels = torch.zeros(1, 3, 32, 32)
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        model(pixel_values=pixels)
    # The meta-device count includes the attention products, which the CPU's fused sdpa kernel hides from the counter.
    assert step_flops(model, 8, 32) == 8 * step_flops(model, 1, 32) > 3 * 8 * counter.get_total_flops() > 0


def test_a_step_far_too_big_for_the_device_is_warned_about_with_an_eta(monkeypatch, caplog):
    model = ViTHFForImageClassification(tiny_config())
    monkeypatch.setattr(console, "device_flops_per_second", lambda device: 1e6)  # a very slow device
    with caplog.at_level(logging.INFO, logger="vit_hf.finetune"):
        seconds = console.estimate_run_time(model, 64, 32, 100, "cpu")
    assert seconds > console.SLOW_STEP_SECONDS
    assert "very slow: lower --image_size" in caplog.text and "for 100 steps" in caplog.text


def test_summary_table_names_the_splits_time_and_folder():
    results = {"step": 30, "train_runtime": 65.0, "train_runtime_total": 125.0}
    for prefix in ("eval_", "test_"):
        results.update({f"{prefix}accuracy": 0.96389, f"{prefix}top5_accuracy": 1.0, f"{prefix}loss": 0.12})
        results[f"{prefix}num_examples"] = 360
    table = console.summary_table(results, "outputs/quickstart")
    assert "test            0.9639    1.0000    0.1200       360" in table
    assert "30 steps in 2m 05s (1m 05s this run)" in table and "outputs/quickstart" in table


def test_the_step_time_estimate_leaves_the_random_streams_alone():
    """It runs after a resume has restored the generators: drawing from them would break the exact continuation."""
    model = ViTHFForImageClassification(tiny_config())
    state = torch.random.get_rng_state()
    console.estimate_run_time(model, 8, 32, 10, "cpu")
    assert torch.equal(torch.random.get_rng_state(), state)
