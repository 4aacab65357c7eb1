"""`load_model_for_finetuning`: a vit_hf folder keeps its head only for the very same labels, other model types and
missing processors are handled clearly, and --model_overrides only reshapes a preset through ViTHFConfig fields."""

import json
import logging
from unittest import mock

import pytest
import torch
from huggingface_hub import _CACHED_NO_EXIST
from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError
from transformers import ViTConfig, ViTForImageClassification

from tests.conftest import tiny_config
from vit_hf import ViTHFForImageClassification
from vit_hf.image_processing_vit_hf import IMAGENET_DEFAULT_MEAN, make_image_processor
from vit_hf.training.arguments import ArgumentError, ModelArguments, parse_arguments
from vit_hf.training.model_loading import has_image_processor, load_model_for_finetuning, model_source

SAVED_LABELS = {0: "cat", 1: "dog", 2: "bird"}


@pytest.fixture
def saved_model(tmp_path):
    """A vit_hf folder with a trained (non-zero) head for SAVED_LABELS and an ImageNet-normalising processor."""
    config = tiny_config(num_labels=3, id2label=SAVED_LABELS, label2id={label: i for i, label in SAVED_LABELS.items()})
    model = ViTHFForImageClassification(config)
    torch.nn.init.normal_(model.head.weight)
    torch.nn.init.normal_(model.head.bias)
    model.save_pretrained(tmp_path / "model")
    make_image_processor(32, mean=IMAGENET_DEFAULT_MEAN).save_pretrained(tmp_path / "model")
    return model, str(tmp_path / "model")


def test_folder_with_the_same_labels_keeps_its_trained_head(saved_model):
    saved, folder = saved_model
    model, processor, base_model = load_model_for_finetuning(ModelArguments(model=folder), dict(SAVED_LABELS))
    assert torch.equal(model.head.weight, saved.head.weight) and torch.equal(model.head.bias, saved.head.bias)
    assert list(processor.image_mean) == list(IMAGENET_DEFAULT_MEAN) and base_model == folder


@pytest.mark.parametrize(
    "id2label",
    [{0: "car", 1: "ship", 2: "truck"}, {0: "dog", 1: "cat", 2: "bird"}, {0: "cat", 1: "dog"}],
    ids=["other-names", "same-names-reordered", "fewer-labels"],
)
def test_folder_with_other_labels_gets_a_fresh_zero_head(saved_model, id2label):
    saved, folder = saved_model
    model, _, _ = load_model_for_finetuning(ModelArguments(model=folder), id2label)
    assert model.head.weight.shape == (len(id2label), saved.config.hidden_size)
    assert not model.head.weight.any() and not model.head.bias.any()
    assert model.config.id2label == id2label and model.config.num_labels == len(id2label)
    assert model.config.label2id == {label: i for i, label in id2label.items()}
    # The rest of the network is the saved one.
    assert torch.equal(model.vit.patch_embed.proj.weight, saved.vit.patch_embed.proj.weight)
    assert torch.equal(model.vit.blocks[-1].mlp.fc2.weight, saved.vit.blocks[-1].mlp.fc2.weight)
    assert model(torch.zeros(1, 3, 32, 32)).logits.shape == (1, len(id2label))


def test_folder_of_another_model_type_is_a_clear_error(tmp_path):
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match=r"'vit' model, not a vit_hf one(.|\n)*timm model name(.|\n)*list_presets"):
        load_model_for_finetuning(ModelArguments(model=str(tmp_path / "vit")), {0: "a", 1: "b"})


def test_folder_without_a_processor_gets_the_default_one_with_a_warning(tmp_path, caplog):
    ViTHFForImageClassification(tiny_config()).save_pretrained(tmp_path / "model")
    with caplog.at_level(logging.WARNING, logger="vit_hf.training.model_loading"):
        model, processor, _ = load_model_for_finetuning(ModelArguments(model=str(tmp_path / "model")), {0: "a"})
    assert list(processor.image_mean) == [0.5, 0.5, 0.5] and processor.crop_size["height"] == 32
    assert "has no preprocessor_config.json" in caplog.text


# --- --model_overrides ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, flags, message",
    [
        ({"num_hiden_layers": 2}, [], "Unknown key 'num_hiden_layers' .* Did you mean 'num_hidden_layers'"),
        ({"depth": 2}, [], "Unknown key 'depth' in --model_overrides"),
        ({"drop_path_rate": 0.2}, [], "cannot set 'drop_path_rate'.*--drop_path_rate"),
        ({"num_labels": 10}, [], "cannot set 'num_labels'.*dataset"),
        ({"id2label": {"0": "a"}}, [], "cannot set 'id2label'.*dataset"),
        ({"image_size": 64}, ["--image_size", "32"], "Both --model_overrides and --image_size set image_size"),
    ],
)
def test_bad_model_overrides_are_clear_errors_when_parsing(overrides, flags, message):
    argv = ["--model", "tiny_patch16_224", "--model_overrides", json.dumps(overrides), *flags]
    with pytest.raises(ValueError, match=message):
        parse_arguments(argv)


def test_model_overrides_shape_a_preset():
    model_args, _, _ = parse_arguments(
        ["--model", "tiny_patch16_224", "--model_overrides", '{"image_size": 32, "num_hidden_layers": 1}']
    )
    model, processor, base_model = load_model_for_finetuning(model_args, {0: "a", 1: "b"})
    assert model.config.image_size == 32 and len(model.vit.blocks) == 1 and model.config.num_labels == 2
    assert base_model is None


def test_image_size_in_overrides_and_flag_is_a_clear_error_when_built():
    with pytest.raises(ArgumentError, match="use one of them"):
        ModelArguments(model="tiny_patch16_224", image_size=32, model_overrides='{"image_size": 64}')


def test_a_bf16_folder_trains_from_float32_weights(tmp_path):
    """Mixed precision comes from autocast; the weights the optimizer updates stay float32."""
    ViTHFForImageClassification(tiny_config(num_labels=3)).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    make_image_processor(32).save_pretrained(tmp_path / "bf16")
    model, _, _ = load_model_for_finetuning(ModelArguments(model=str(tmp_path / "bf16")), {0: "a", 1: "b"})
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}


def test_only_a_definite_answer_from_the_hub_means_no_image_processor():
    with mock.patch("vit_hf.training.model_loading.hf_hub_download", return_value="/cache/preprocessor_config.json"):
        assert has_image_processor("someone/vit")
    missing = RemoteEntryNotFoundError("404 preprocessor_config.json", response=mock.Mock())
    with mock.patch("vit_hf.training.model_loading.hf_hub_download", side_effect=missing):
        assert not has_image_processor("someone/vit")
    offline = LocalEntryNotFoundError("offline and not in the cache")  # unknown: never guess a normalisation
    with mock.patch("vit_hf.training.model_loading.hf_hub_download", side_effect=offline), pytest.raises(OSError):
        has_image_processor("someone/vit")
    # Offline, but an earlier online run cached the Hub's answer that the repo has no such file.
    with (
        mock.patch("vit_hf.training.model_loading.hf_hub_download", side_effect=offline),
        mock.patch("vit_hf.training.model_loading.try_to_load_from_cache", return_value=_CACHED_NO_EXIST),
    ):
        assert not has_image_processor("someone/vit")


# --- where --model comes from, decided locally ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, message",
    [
        ("vit_base_patch16_225", "Did you mean 'vit_base_patch16_224'"),
        ("tiny_patch16_225", "Did you mean 'tiny_patch16_224'"),
        ("./my_images", "./my_images: no such folder"),
        ("models/vit/final", "no such folder"),
        ("resnet50", "--model resnet50: .*not supported: model class ResNet"),
    ],
)
def test_a_mistyped_or_unusable_model_fails_before_any_download(name, message):
    with mock.patch("huggingface_hub.hf_hub_download", side_effect=AssertionError("no download")):
        with pytest.raises(ArgumentError, match=message):
            model_source(ModelArguments(model=name))


def test_a_folder_without_config_json_is_named(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(ArgumentError, match="folder without config.json"):
        model_source(ModelArguments(model=str(tmp_path / "weights")))


@pytest.mark.parametrize(
    "name, source",
    [
        ("tiny_patch16_224", "preset"),
        ("vit_base_patch16_224.augreg_in21k", "timm"),
        ("timm/vit_small_patch16_224", "timm"),
        ("someone/my-vit", "hub"),
    ],
)
def test_model_sources(name, source):
    assert model_source(ModelArguments(model=name)) == source
