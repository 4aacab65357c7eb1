"""Arguments of `recipes/finetune.py`: three dataclasses, filled from an optional YAML recipe (`--config`) and then
from command-line flags, which win. Each dataclass checks its own values when it is built; an unknown key or flag,
a value of the wrong type or out of range is an `ArgumentError` naming it (and the close matches) before anything
heavy is loaded. Choices are `Literal` types: the one list that `--help`, the checks and the code share."""

import argparse
import difflib
import importlib.util
import inspect
import json
import math
import sys
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Literal, get_args, get_origin

import yaml

from ..data.resize import INTERPOLATIONS
from .optimization import OptimizerName, SchedulerName


class ArgumentError(ValueError):
    """A bad flag, recipe key or value; `recipes/finetune.py` prints it as one line and exits 2."""


def _flag(name: str) -> str:
    return f"--{name}"


def _check_range(name: str, value: float | None, interval: str) -> None:
    """ValueError unless `value` (None: not set) lies in `interval`, written "[0, 1)", "(0, inf)" and so on."""
    if value is None:
        return
    low, high = (float(bound) for bound in interval[1:-1].split(","))
    above = value > low if interval[0] == "(" else value >= low
    below = value < high if interval[-1] == ")" else value <= high
    if not (above and below):
        if interval == "(0, inf)":
            raise ArgumentError(f"{_flag(name)} must be positive, got {value}.")
        if interval == "[0, inf)":
            raise ArgumentError(f"{_flag(name)} must be >= 0, got {value}.")
        if interval == "[1, inf)":
            raise ArgumentError(f"{_flag(name)} must be at least 1, got {value}.")
        raise ArgumentError(f"{_flag(name)} must be in {interval}, got {value}.")


def _check_ranges(arguments, ranges: dict[str, str]) -> None:
    for name, interval in ranges.items():
        _check_range(name, getattr(arguments, name), interval)


def _check_values(arguments) -> None:
    """The checks every field gets from its type: a Literal's value is one of its choices, a float is finite."""
    for item in fields(arguments):
        value, hint = getattr(arguments, item.name), _field_type(item)
        if get_origin(hint) is Literal and value not in get_args(hint) and not (value is None and _is_optional(item)):
            allowed = list(get_args(hint))
            close = difflib.get_close_matches(str(value), map(str, allowed), n=1)
            did_you_mean = f" Did you mean {close[0]!r}?" if close else ""
            raise ArgumentError(f"{_flag(item.name)} must be one of {allowed}, got {value!r}.{did_you_mean}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ArgumentError(f"{_flag(item.name)} must be a finite number, got {value}.")


def _field_type(item) -> object:
    """A field's type without `| None` (`item.type` is the annotation object: no postponed evaluation here)."""
    hint = item.type
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    return hint


def _is_optional(item) -> bool:
    return get_origin(item.type) in (typing.Union, types.UnionType) and type(None) in get_args(item.type)


@dataclass
class ModelArguments:
    """model: what to fine-tune and at which size"""

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
        default=None,
        metadata={"help": "Training resolution (None: the model's own); e.g. 384 fine-tunes a 224 checkpoint at 384."},
    )
    model_overrides: str | None = field(
        default=None,
        metadata={"help": 'ViTHFConfig fields for a preset, as JSON (YAML: a mapping), e.g. {"num_hidden_layers": 6}.'},
    )
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth rate of the last block."})
    attn_implementation: str = field(
        default="auto",
        metadata={
            "help": "auto (sdpa_cpu_bf16 for bf16 on the CPU, else sdpa), sdpa, sdpa_cpu_bf16, eager, "
            "flash_attention_2, ..."
        },
    )
    freeze: Literal["backbone"] | None = field(
        default=None, metadata={"help": "backbone: train the classification head alone (a linear probe)."}
    )
    trainable_blocks: int | None = field(
        default=None, metadata={"help": "Train only the last N blocks, the final norm and the head."}
    )
    peft: Literal["lora"] | None = field(
        default=None, metadata={"help": 'lora: LoRA adapters through PEFT (pip install "vit_hf[peft]").'}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling numerator (the update is alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_mlp: bool = field(default=False, metadata={"help": "LoRA on the MLPs' fc1 / fc2 too."})

    def __post_init__(self) -> None:
        _check_values(self)
        _check_ranges(
            self,
            {
                "image_size": "(0, inf)",
                "drop_path_rate": "[0, 1)",
                "trainable_blocks": "[0, inf)",
                "lora_r": "[1, inf)",
                "lora_alpha": "(0, inf)",
                "lora_dropout": "[0, 1)",
            },
        )
        # Three ways to train part of the model: one at a time.
        chosen = [_flag(name) for name in ("peft", "freeze", "trainable_blocks") if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise ArgumentError(f"Choose one of --peft, --freeze and --trainable_blocks, got {' and '.join(chosen)}.")
        if self.model_overrides is not None:
            check_model_overrides(self.overrides(), self.image_size)

    def overrides(self) -> dict:
        """`--model_overrides` as a dict ({} when not given)."""
        if self.model_overrides is None:
            return {}
        try:
            overrides = json.loads(self.model_overrides)
        except json.JSONDecodeError as error:
            raise ArgumentError(f"--model_overrides must be a JSON object: {error}") from error
        if not isinstance(overrides, dict):
            raise ArgumentError(f"--model_overrides must be a JSON object, got {self.model_overrides!r}.")
        return overrides


# ViTHFConfig fields that --model_overrides may not set, and what sets them instead.
SET_ELSEWHERE = {
    "id2label": "the dataset's labels",
    "label2id": "the dataset's labels",
    "num_labels": "the dataset's labels",
    "drop_path_rate": "--drop_path_rate",
}


def check_model_overrides(overrides: dict, image_size: int | None) -> None:
    """ArgumentError unless every key of `--model_overrides` is an architecture field of ViTHFConfig that no other
    flag or the dataset sets."""
    from ..configuration_vit_hf import ViTHFConfig  # (imported here: parsing alone stays light)

    known = list(inspect.get_annotations(ViTHFConfig))
    for key in overrides:
        if key in SET_ELSEWHERE:
            raise ArgumentError(f"--model_overrides cannot set {key!r}: it comes from {SET_ELSEWHERE[key]}.")
        if key == "image_size" and image_size:
            raise ArgumentError("Both --model_overrides and --image_size set image_size; use one of them.")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ArgumentError(f"Unknown key {key!r} in --model_overrides: not a ViTHFConfig field.{hint}")


@dataclass
class DataArguments:
    """data: the dataset, its splits and the augmentation"""

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
    device_transforms: Literal["auto", "on", "off"] = field(
        default="auto",
        metadata={
            "help": "Resize/augment/normalise on the accelerator from uint8 batches; auto: on when the images share "
            "one size, as CIFAR's do."
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
    interpolation: Literal[INTERPOLATIONS] | None = field(
        default=None,
        metadata={
            "help": "Resize kernel of the training crops and the evaluation resize (default: the model's image "
            "processor's; bicubic for timm's ViTs). Saved in the image processor."
        },
    )
    hflip: float = field(default=0.5, metadata={"help": "Horizontal flip probability."})
    auto_augment: Literal["randaugment", "trivialaugment", "none"] | None = field(
        default=None, metadata={"help": "Automatic augmentation policy (none: off)."}
    )
    random_erasing: float = field(default=0.0, metadata={"help": "Random erasing probability."})
    mixup_alpha: float = field(default=0.0, metadata={"help": "MixUp alpha (0: off)."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix alpha (0: off)."})
    dataloader_num_workers: int = field(default=4, metadata={"help": "DataLoader worker processes per process."})

    def __post_init__(self) -> None:
        if self.auto_augment == "none":
            self.auto_augment = None
        _check_values(self)
        ranges = {
            "validation_fraction": "(0, 1)",
            "max_train_samples": "[1, inf)",
            "max_eval_samples": "[1, inf)",
            "crop_scale_min": "(0, 1]",
            "eval_crop_pct": "(0, 1]",
            "hflip": "[0, 1]",
            "random_erasing": "[0, 1]",
            "mixup_alpha": "[0, inf)",
            "cutmix_alpha": "[0, inf)",
            "dataloader_num_workers": "[0, inf)",
        }
        _check_ranges(self, ranges)


@dataclass
class TrainingArguments:
    """training: length, optimizer, schedule, evaluation, checkpoints, outputs and the Hub"""

    output_dir: str = field(default="outputs/vit-cifar10", metadata={"help": "Model, results, checkpoints."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty output_dir without resuming."}
    )
    seed: int = field(default=42, metadata={"help": "Random seed (data order, new weights, augmentation)."})
    num_epochs: float = field(default=3.0, metadata={"help": "Training length in epochs (ignored if max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Training length in optimizer steps (overrides epochs)."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Evaluation batch size per process."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Batches per optimizer step (the effective batch is this times the batch size)."}
    )
    optimizer: OptimizerName = field(default="sgd", metadata={"help": "SGD with momentum (the ViT paper's) or AdamW."})
    learning_rate: float = field(default=0.01, metadata={"help": "Peak learning rate, reached after the warmup."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay (not on biases, norms, embeddings)."})
    layer_decay: float | None = field(default=None, metadata={"help": "Layer-wise lr decay, e.g. 0.75 (off: None)."})
    lr_scheduler_type: SchedulerName = field(default="cosine", metadata={"help": "Decay after the warmup."})
    warmup_steps: int = field(default=100, metadata={"help": "Linear learning-rate warmup, in optimizer steps."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (0: off)."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing of the cross-entropy."})
    mixed_precision: Literal["no", "bf16", "fp16"] | None = field(
        default=None, metadata={"help": "Default: the accelerate launch config's."}
    )
    use_cpu: bool = field(default=False, metadata={"help": "Train on CPU even when a GPU is present."})
    ema_decay: float | None = field(default=None, metadata={"help": "EMA of the weights, e.g. 0.9998 (off: None)."})
    torch_compile: bool = field(default=False, metadata={"help": "Compile the model with torch.compile."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations: less memory."})
    eval_strategy: Literal["epoch", "steps"] = field(default="epoch", metadata={"help": "When to evaluate."})
    eval_steps: int = field(default=500, metadata={"help": "Evaluate every N steps (eval_strategy steps)."})
    save_strategy: Literal["epoch", "steps", "no"] = field(default="epoch", metadata={"help": "When to checkpoint."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps (save_strategy steps)."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep the last K checkpoints."})
    final_weights: Literal["best", "last"] = field(
        default="best", metadata={"help": "The weights written at the end: best validation accuracy, or last."}
    )
    logging_steps: int = field(default=50, metadata={"help": "Log the training loss every N steps."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "latest or a checkpoint folder."})
    report_to: str = field(
        default="none",
        metadata={"help": "none, all (every installed tracker), or a comma list of tensorboard, trackio, wandb."},
    )
    look_inside: bool = field(
        default=True,
        metadata={
            "help": "After the test evaluation, draw attention_maps.png, position_embeddings.png and "
            "attention_distance.png (vit_hf.visualize) for the model card; false skips them."
        },
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the output folder at the end."})
    hub_model_id: str | None = field(default=None, metadata={"help": "The Hub repo, e.g. your-name/vit-cifar10."})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the repo private."})
    hub_push_checkpoints: bool = field(default=False, metadata={"help": "Also upload each checkpoint."})

    def __post_init__(self) -> None:
        _check_values(self)
        ranges = {
            "per_device_train_batch_size": "(0, inf)",
            "per_device_eval_batch_size": "(0, inf)",
            "gradient_accumulation_steps": "(0, inf)",
            "learning_rate": "(0, inf)",
            "logging_steps": "(0, inf)",
            "eval_steps": "(0, inf)",
            "save_steps": "(0, inf)",
            "momentum": "[0, 1)",
            "weight_decay": "[0, inf)",
            "max_grad_norm": "[0, inf)",
            "warmup_steps": "[0, inf)",
            "label_smoothing": "[0, 1)",
            "layer_decay": "(0, 1]",
            "ema_decay": "(0, 1)",
        }
        _check_ranges(self, ranges)
        if self.max_steps <= 0 and self.num_epochs <= 0:
            raise ArgumentError("Set a training length: --num_epochs > 0 or --max_steps > 0.")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ArgumentError(
                f"--save_total_limit must be at least 1 (or None to keep all), got {self.save_total_limit}."
            )
        if Path(self.output_dir).exists() and not Path(self.output_dir).is_dir():
            raise ArgumentError(f"--output_dir {self.output_dir} is a file; name a folder (new or empty).")
        trackers(self.report_to)
        if self.push_to_hub and not self.hub_model_id:
            raise ArgumentError("--push_to_hub needs --hub_model_id (e.g. your-name/vit-cifar10).")


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
            raise ArgumentError(f"--report_to {name!r} is not supported; use none, all, or {sorted(TRACKER_PACKAGES)}.")
        if not any(importlib.util.find_spec(package) for package in TRACKER_PACKAGES[name]):
            raise ArgumentError(f"--report_to {name} needs the {name} package: pip install {TRACKER_PACKAGES[name][0]}")
    return names


# --- the parser ------------------------------------------------------------------------------------------------


def _to_bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _from_text(item) -> typing.Callable[[str], object]:
    """How a flag's text becomes the field's value: "None" for an optional field, else the field's type."""
    hint = _field_type(item)
    convert = {bool: _to_bool, int: int, float: float}.get(hint, str)

    def parse(text: str) -> object:
        return None if _is_optional(item) and text == "None" else convert(text)

    parse.__name__ = getattr(hint, "__name__", "str")  # argparse names it in "invalid int value"
    return parse


class RecipeParser(argparse.ArgumentParser):
    """argparse without prefix abbreviations, whose errors are one `ArgumentError` line (no usage block)."""

    def __init__(self) -> None:
        super().__init__(
            prog="recipes/finetune.py",
            usage="%(prog)s [--config recipe.yaml] [--flag value ...]",
            description="Fine-tune a Vision Transformer. Flags override the values of a --config recipe.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
            allow_abbrev=False,
        )
        self.add_argument("--config", default=None, help="YAML recipe (see recipes/configs/).")
        for cls in ARGUMENT_CLASSES:
            title, _, description = cls.__doc__.partition(": ")
            group = self.add_argument_group(title, description)
            for item in fields(cls):
                group.add_argument(_flag(item.name), **_argument_options(item))

    def error(self, message: str) -> typing.NoReturn:
        raise ArgumentError(message)


def _argument_options(item) -> dict:
    hint = _field_type(item)
    options = {"default": item.default, "help": item.metadata.get("help", " "), "type": _from_text(item)}
    if item.default is MISSING:
        options.update(default=None, required=True)
    if hint is bool:
        options.update(nargs="?", const=True, metavar="{true,false}")
    elif get_origin(hint) is Literal:
        options["metavar"] = "{" + ",".join(map(str, get_args(hint))) + "}"
    return options


def known_flags() -> list[str]:
    return ["config", *(item.name for cls in ARGUMENT_CLASSES for item in fields(cls))]


def _unknown_flags_error(extra: list[str]) -> ArgumentError:
    names = [token[2:].split("=", 1)[0] for token in extra if token.startswith("--")]
    if not names:
        return ArgumentError(f"unexpected value(s) {' '.join(extra)} (every value follows a --flag)")
    hints = []
    for name in names:
        close = difflib.get_close_matches(name, known_flags(), n=3)
        hints.append(f"--{name}" + (f" (did you mean {', '.join('--' + c for c in close)}?)" if close else ""))
    return ArgumentError(f"unknown flag {'; '.join(hints)}. `--help` lists every flag.")


# --- the recipe file -------------------------------------------------------------------------------------------


def _yaml_type_error(item, value) -> str | None:
    """Why a recipe value cannot be the field's value (None when it can)."""
    hint = _field_type(item)
    if value is None:
        return None if _is_optional(item) else "null"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    if item.name == "model_overrides":
        return None if isinstance(value, dict | str) else "a mapping"
    return None if isinstance(value, str) else "a string"


def read_recipe(path: str) -> dict:
    """A recipe's values, checked: a mapping of known argument names to values of the right type."""
    if not Path(path).is_file():
        raise ArgumentError(f"Recipe file {path!r} does not exist (see recipes/configs/ for the shipped ones).")
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as error:  # (read from the text: yaml would name a "<unicode string>")
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
        raise ArgumentError(f"{where} is not valid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(values, dict):
        raise ArgumentError(f"Recipe {path} must be a mapping of argument names to values.")
    items = {item.name: item for cls in ARGUMENT_CLASSES for item in fields(cls)}
    for key, value in values.items():
        if key not in items:
            close = difflib.get_close_matches(str(key), list(items), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ArgumentError(f"Unknown key {key!r} in {path}.{hint}")
        expected = _yaml_type_error(items[key], value)
        if expected is not None:
            raise ArgumentError(f"{key} in {path} must be {expected}, got {value!r}.")
    if isinstance(values.get("model_overrides"), dict):
        values["model_overrides"] = json.dumps(values["model_overrides"])
    return values


def _pop_config(argv: list[str]) -> str | None:
    """Remove `--config PATH` / `--config=PATH` from argv and return PATH."""
    for index, token in enumerate(argv):
        if token == "--config":
            if index + 1 >= len(argv):
                raise ArgumentError("--config needs a path to a YAML recipe.")
            path = argv[index + 1]
            del argv[index : index + 2]
            return path
        if token.startswith("--config="):
            del argv[index]
            return token.split("=", 1)[1]
    return None


def parse_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """`[--config recipe.yaml] [--key value ...]`: recipe values become defaults, flags override them. Raises
    ArgumentError for anything wrong; `--help` prints every flag, grouped, with its default, and exits."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = RecipeParser()
    config_path = _pop_config(argv)
    if config_path:
        parser.set_defaults(**read_recipe(config_path))
    namespace, extra = parser.parse_known_args(argv)
    if extra:
        raise _unknown_flags_error(extra)
    values = vars(namespace)
    return tuple(cls(**{item.name: values[item.name] for item in fields(cls)}) for cls in ARGUMENT_CLASSES)
