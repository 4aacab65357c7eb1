"""Arguments of `recipes/finetune.py`: three dataclasses, filled from an optional YAML recipe (`--config`) and then
from command-line flags, which win. An unknown key in either place is an error."""

import difflib
import importlib.util
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .model_loading import check_model_overrides


@dataclass
class ModelArguments:
    model: str = field(
        default="vit_base_patch16_224.augreg_in21k",
        metadata={
            "help": "A timm model name (pretrained weights through timm), a vit_hf folder or Hub id, or a preset "
            "(see vit_hf.list_presets()) trained from scratch."
        },
    )
    checkpoint_path: str | None = field(
        default=None, metadata={"help": "Local timm checkpoint (.safetensors/.pth/.bin) for a timm --model."}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Training resolution; e.g. 384 fine-tunes a 224 checkpoint at 384."}
    )
    model_overrides: str | None = field(
        default=None,
        metadata={"help": 'ViTHFConfig fields for a preset, as JSON (YAML: a mapping), e.g. {"num_hidden_layers": 6}.'},
    )
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth rate of the last block."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "sdpa, eager, flash_attention_2, ..."})


@dataclass
class DataArguments:
    dataset: str = field(
        default="uoft-cs/cifar10",
        metadata={"help": "Hub id, cifar10 / cifar100 / digits, or a local folder (Hub copy, parquet, imagefolder)."},
    )
    image_column: str | None = field(default=None, metadata={"help": "Detected when not given."})
    label_column: str | None = field(default=None, metadata={"help": "Detected when not given."})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Hold-out from train when the dataset has no validation split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate train (quick runs)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation and test."})
    device_transforms: str = field(
        default="auto",
        metadata={
            "help": "Resize/augment/normalise on the accelerator from uint8 batches: on, off, or auto (on when the "
            "images share one size, as CIFAR's do)."
        },
    )
    crop_scale_min: float = field(default=0.08, metadata={"help": "Random resized crop: smallest area fraction."})
    eval_crop_pct: float = field(
        default=1.0,
        metadata={
            "help": "Evaluation: resize the short side to size / eval_crop_pct, centre-crop size. 1.0 keeps the whole "
            "short side (the ViT paper's fine-tuning evaluation); timm's ImageNet checkpoints use 0.875-0.9."
        },
    )
    hflip: float = field(default=0.5, metadata={"help": "Horizontal flip probability."})
    auto_augment: str | None = field(default=None, metadata={"help": "randaugment, trivialaugment or none."})
    random_erasing: float = field(default=0.0, metadata={"help": "Random erasing probability."})
    mixup_alpha: float = field(default=0.0, metadata={"help": "MixUp alpha (0: off)."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix alpha (0: off)."})
    dataloader_num_workers: int = field(default=4, metadata={"help": "DataLoader worker processes per process."})


@dataclass
class TrainingArguments:
    output_dir: str = field(default="outputs/vit-cifar10", metadata={"help": "Model, results, checkpoints."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty output_dir without resuming."}
    )
    seed: int = 42
    num_epochs: float = field(default=3.0, metadata={"help": "Training length in epochs (ignored if max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Training length in optimizer steps (overrides epochs)."})
    per_device_train_batch_size: int = 64
    per_device_eval_batch_size: int = 128
    gradient_accumulation_steps: int = 1
    optimizer: str = field(default="sgd", metadata={"help": "sgd (momentum, as the ViT paper) or adamw."})
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    layer_decay: float | None = field(default=None, metadata={"help": "Layer-wise lr decay, e.g. 0.75 (off: None)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "cosine, linear or constant."})
    warmup_steps: int = 100
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0: off)."})
    label_smoothing: float = 0.0
    mixed_precision: str | None = field(
        default=None, metadata={"help": "no, bf16 or fp16; default: the accelerate launch config's."}
    )
    use_cpu: bool = field(default=False, metadata={"help": "Train on CPU even when a GPU is present."})
    ema_decay: float | None = field(default=None, metadata={"help": "EMA of the weights, e.g. 0.9998 (off: None)."})
    torch_compile: bool = False
    gradient_checkpointing: bool = False
    eval_strategy: str = field(default="epoch", metadata={"help": "epoch or steps."})
    eval_steps: int = 500
    save_strategy: str = field(default="epoch", metadata={"help": "epoch, steps or no."})
    save_steps: int = 500
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep the last K checkpoints."})
    final_weights: str = field(default="best", metadata={"help": "best (validation accuracy) or last."})
    logging_steps: int = 50
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "latest or a checkpoint folder."})
    report_to: str = field(
        default="none",
        metadata={"help": "none, all (every installed tracker), or a comma list of tensorboard, trackio, wandb."},
    )
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private_repo: bool | None = None
    hub_push_checkpoints: bool = field(default=False, metadata={"help": "Also upload each checkpoint."})


ARGUMENT_CLASSES = (ModelArguments, DataArguments, TrainingArguments)
# The package each tracker needs; Accelerate would otherwise drop a missing one with only a warning.
TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",), "wandb": ("wandb",)}


def trackers(report_to: str) -> list[str] | str | None:
    """`--report_to` as Accelerate's `log_with`: None, "all", or a list of tracker names (each checked)."""
    if report_to in ("none", "all"):
        return None if report_to == "none" else "all"
    names = [name.strip() for name in report_to.split(",") if name.strip()]
    for name in names:
        if name not in TRACKER_PACKAGES:
            raise ValueError(f"--report_to {name!r} is not supported; use none, all, or {sorted(TRACKER_PACKAGES)}.")
        if not any(importlib.util.find_spec(package) for package in TRACKER_PACKAGES[name]):
            raise ValueError(f"--report_to {name} needs the {name} package: pip install {TRACKER_PACKAGES[name][0]}")
    return names


def _validate(model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments) -> None:
    choices = {
        "optimizer": (args.optimizer, ("sgd", "adamw")),
        "lr_scheduler_type": (args.lr_scheduler_type, ("cosine", "linear", "constant")),
        "eval_strategy": (args.eval_strategy, ("epoch", "steps")),
        "save_strategy": (args.save_strategy, ("epoch", "steps", "no")),
        "final_weights": (args.final_weights, ("best", "last")),
        "mixed_precision": (args.mixed_precision, (None, "no", "bf16", "fp16")),
        "device_transforms": (data_args.device_transforms, ("auto", "on", "off")),
        "auto_augment": (data_args.auto_augment, (None, "none", "randaugment", "trivialaugment")),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"--{name} must be one of {[a for a in allowed if a is not None]}, got {value!r}.")
    positive = {
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "per_device_eval_batch_size": args.per_device_eval_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "learning_rate": args.learning_rate,
        "logging_steps": args.logging_steps,
        "eval_steps": args.eval_steps,
        "save_steps": args.save_steps,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ValueError(f"--{name} must be positive, got {value}.")
    if args.max_steps <= 0 and args.num_epochs <= 0:
        raise ValueError("Set a training length: --num_epochs > 0 or --max_steps > 0.")
    if args.save_total_limit is not None and args.save_total_limit < 1:
        raise ValueError(f"--save_total_limit must be at least 1 (or None to keep all), got {args.save_total_limit}.")
    non_negative = {
        "mixup_alpha": data_args.mixup_alpha,
        "cutmix_alpha": data_args.cutmix_alpha,
        "warmup_steps": args.warmup_steps,
    }
    for name, value in non_negative.items():
        if value < 0:
            raise ValueError(f"--{name} must be >= 0, got {value}.")
    for name, value in (("hflip", data_args.hflip), ("random_erasing", data_args.random_erasing)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"--{name} must be in [0, 1], got {value}.")
    for name, value in (("label_smoothing", args.label_smoothing), ("drop_path_rate", model_args.drop_path_rate)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--{name} must be in [0, 1), got {value}.")
    fractions = {"eval_crop_pct": data_args.eval_crop_pct, "crop_scale_min": data_args.crop_scale_min}
    if args.layer_decay is not None:
        fractions["layer_decay"] = args.layer_decay
    for name, value in fractions.items():
        if not 0.0 < value <= 1.0:
            raise ValueError(f"--{name} must be in (0, 1], got {value}.")
    if not 0.0 < data_args.validation_fraction < 1.0:
        raise ValueError(f"--validation_fraction must be in (0, 1), got {data_args.validation_fraction}.")
    trackers(args.report_to)
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-name/vit-cifar10).")
    if model_args.model_overrides is not None:
        try:
            overrides = json.loads(model_args.model_overrides)
        except json.JSONDecodeError as error:
            raise ValueError(f"--model_overrides must be a JSON object: {error}") from error
        if not isinstance(overrides, dict):
            raise ValueError(f"--model_overrides must be a JSON object, got {model_args.model_overrides!r}.")
        check_model_overrides(overrides, model_args.image_size)


def _read_recipe(path: str) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"Recipe file {path!r} does not exist (see recipes/configs/ for the shipped ones).")
    values = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"Recipe {path} must be a mapping of argument names to values.")
    known = [f.name for cls in ARGUMENT_CLASSES for f in fields(cls)]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown key {key!r} in {path}.{hint}")
    if isinstance(values.get("model_overrides"), dict):
        values["model_overrides"] = json.dumps(values["model_overrides"])
    return values


def parse_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """`[--config recipe.yaml] [--key value ...]`: recipe values become defaults, flags override them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.add_argument("--config", default=None, help="YAML recipe (see recipes/configs/).")
    config_path = None
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise ValueError("--config needs a path to a YAML recipe.")
        config_path = argv[index + 1]
        del argv[index : index + 2]
    else:
        config_path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
        argv = [a for a in argv if not a.startswith("--config=")]
    if config_path:
        parser.set_defaults(**_read_recipe(config_path))
    # Unknown flags make HfArgumentParser exit with an argparse usage error naming them.
    model_args, data_args, training_args, *_ = parser.parse_args_into_dataclasses(args=argv)
    if data_args.auto_augment == "none":
        data_args.auto_augment = None
    _validate(model_args, data_args, training_args)
    return model_args, data_args, training_args
