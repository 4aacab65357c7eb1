"""`load_model_for_finetuning`: --model_overrides only reshapes a preset through ViTHFConfig fields that no other flag
or the dataset sets."""

import json

import pytest

from vit_hf.arguments import ModelArguments, parse_arguments
from vit_hf.model_loading import load_model_for_finetuning

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


def test_image_size_in_overrides_and_flag_is_a_clear_error_when_loading():
    model_args = ModelArguments(model="tiny_patch16_224", image_size=32, model_overrides='{"image_size": 64}')
    with pytest.raises(ValueError, match="use one of them"):
        load_model_for_finetuning(model_args, {0: "a"})
