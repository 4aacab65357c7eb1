import json
import logging
import re

import pytest
from transformers import AutoConfig

from tests.conftest import tiny_config
from vit_hf import ViTHFConfig, list_presets


def test_round_trip_through_save_pretrained(tmp_path):
    config = tiny_config(
        pooling="mean",
        num_register_tokens=2,
        backbone_depths=[1],
        patch_size=1,
        image_size=64,
        layer_scale_init_value=1e-5,
        qk_norm=True,
        drop_path_rate=0.1,
    )
    config.save_pretrained(tmp_path)
    loaded = ViTHFConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.backbone_depths == [1]
    assert loaded.patch_stride == 1  # defaults to the patch size


def test_defaults_are_vit_b16_with_timm_conventions():
    config = ViTHFConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.patch_size, config.image_size) == (768, 12, 16, 224)
    assert config.layer_norm_eps == 1e-6 and config.hidden_act == "gelu" and config.pooling == "cls"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("base_patch16_384", dict(hidden_size=768, num_hidden_layers=12, patch_size=16, image_size=384)),
        ("tiny_patch8_224", dict(hidden_size=192, num_attention_heads=3, patch_size=8, image_size=224)),
        ("huge_patch14_224", dict(hidden_size=1280, num_hidden_layers=32, patch_size=14, image_size=224)),
        ("large_patch32_384", dict(hidden_size=1024, num_hidden_layers=24, intermediate_size=4096)),
        ("base_r50_s16_384", dict(backbone_depths=[3, 4, 9], patch_size=1, image_size=384)),
    ],
)
def test_presets(name, expected):
    config = ViTHFConfig.from_preset(name)
    for key, value in expected.items():
        assert getattr(config, key) == value


def test_every_listed_preset_builds_and_overrides_apply():
    presets = list_presets()
    assert len(presets) == 5 * 4 * 2 + 4 * 2 + 1 + 3 * 2 * 2  # plain, hybrid, seed_vit, EVA-02 and DINOv3 S/B/L
    for name in presets:
        ViTHFConfig.from_preset(name)
    assert ViTHFConfig.from_preset("small_patch16_224", num_labels=10, drop_path_rate=0.1).drop_path_rate == 0.1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=30, patch_size=1, backbone_depths=[]), "image_size"),
        (dict(image_size=32, patch_size=8, patch_stride=6), "image_size"),
        (dict(patch_size=4, patch_stride=8), "patch_stride"),
        (dict(patch_size=4, patch_stride=3), "patch_size - patch_stride"),
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (dict(pooling="gap"), "pooling"),
        (dict(norm_placement="after"), "norm_placement"),
        (dict(embed_dropout_prob=1.0), "embed_dropout_prob"),
        (dict(pooling="cls", class_token=False), "pooling='cls'"),
        (dict(drop_path_rate=-0.1), "drop_path_rate"),
        (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
        (dict(attention_probs_dropout_prob=-1), "attention_probs_dropout_prob"),
        (dict(num_register_tokens=-1), "num_register_tokens"),
        (dict(layer_norm_eps=0), "layer_norm_eps"),
        (dict(layer_scale_init_value=-1e-5), "layer_scale_init_value"),
        (dict(backbone_depths=[3, 0]), "backbone_depths"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(image_size=[32]), "image_size"),
        (dict(hiden_size=64), "did you mean 'hidden_size'"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


def test_error_names_the_value_and_what_is_allowed():
    with pytest.raises(ValueError) as error:
        tiny_config(pooling="gap")
    assert "'gap'" in str(error.value) and "'mean'" in str(error.value)


def test_unknown_preset_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean base_patch16_224"):
        ViTHFConfig.from_preset("base_patch16_244")
    with pytest.raises(ValueError, match="Unknown preset"):
        ViTHFConfig.from_preset("gigantic_patch16_224")


def test_hybrid_geometry():
    config = ViTHFConfig.from_preset("base_r50_s16_384")
    assert config.backbone_stride == 16 and config.backbone_channels == 1024 and config.grid_size() == (24, 24)
    stem_only = ViTHFConfig.from_preset("tiny_r_s16_p8_224")
    assert stem_only.backbone_channels == 64 and stem_only.token_stride == 32


def test_embedding_dropout_follows_hidden_dropout_unless_set():
    assert tiny_config(hidden_dropout_prob=0.1).embed_dropout_prob == 0.1  # as configs saved before the field load
    assert tiny_config(hidden_dropout_prob=0.1, embed_dropout_prob=0.0).embed_dropout_prob == 0.0


def test_every_field_is_documented_in_the_class_docstring():
    """`help(ViTHFConfig)` shows the class docstring, so each field's meaning lives in its Args section."""
    args = ViTHFConfig.__doc__.split("Args:")[1].split("Example:")[0]
    documented = set(re.findall(r"^        (\w+) \(", args, re.M))
    assert documented == set(ViTHFConfig.__annotations__) - {"model_type"}


def test_saved_config_with_a_near_miss_attribute_loads_and_keeps_it(tmp_path, caplog):
    """Configs written by other tools or later versions may carry such names (`layer_norm_epsilon`): loading keeps
    them, as transformers does for any extra key, with a warning; constructing one by hand still raises."""
    ViTHFConfig(hidden_size=64, num_attention_heads=2).save_pretrained(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**values, "layer_norm_epsilon": 1e-5}))
    with caplog.at_level(logging.WARNING):
        loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, ViTHFConfig)
    assert loaded.layer_norm_epsilon == 1e-5 and loaded.layer_norm_eps == 1e-6 and loaded.hidden_size == 64
    assert "'layer_norm_epsilon'" in caplog.text and "'layer_norm_eps'" in caplog.text
    with pytest.raises(ValueError, match="did you mean 'layer_norm_eps'"):
        ViTHFConfig(layer_norm_epsilon=1e-5)
