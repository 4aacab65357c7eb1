"""timm -> vit_hf conversion: exact outputs for every supported timm ViT family, new resolutions, heads, the image
processor, the way back to timm, local checkpoints and the offline error."""

import os

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from timm.layers import SwiGLU
from transformers import AutoImageProcessor

from tests.timm_helpers import max_abs_diff, pixels, random_timm_model, randomize_weights_
from vit_hf import (
    UnsupportedTimmModelError,
    ViTHFConfig,
    ViTHFForImageClassification,
    ViTHFImageProcessor,
    from_timm,
    image_processor_from_timm,
)
from vit_hf.timm.weights import to_timm_checkpoint

TOLERANCE = 1e-4  # float32; the conversions measured here are exact (0.0)

# timm model -> keyword arguments keeping the default run fast: two blocks (one for the widest models) instead of up
# to 32, since every block is built and converted the same way; full-depth models run in the slow tests.
PLAIN_SIZES = {
    "vit_tiny_patch16_224": dict(depth=2),
    "vit_tiny_patch16_384": dict(depth=2),
    "vit_small_patch8_224": dict(depth=1),
    "vit_small_patch16_384": dict(depth=2),
    "vit_small_patch32_224": dict(depth=2),
    "vit_small_patch32_384": dict(depth=2),
    "vit_base_patch8_224": dict(depth=1),
    "vit_base_patch16_224": dict(depth=2),
    "vit_base_patch16_384": dict(depth=1),
    "vit_base_patch32_224": dict(depth=2),
    "vit_base_patch32_384": dict(depth=2),
    "vit_large_patch14_224": dict(depth=1),
    "vit_large_patch16_224": dict(depth=1),
    "vit_large_patch16_384": dict(depth=1),
    "vit_large_patch32_384": dict(depth=1),
    "vit_huge_patch14_224": dict(depth=1),
}
FEATURES = {
    "avg_pool_no_class_token": ("vit_base_patch16_gap_224", dict(depth=2)),
    "avg_pool_fc_norm_registers": ("vit_medium_patch16_reg4_gap_256", dict(depth=2)),
    "max_pool": ("vit_small_patch16_224", dict(depth=2, global_pool="max", class_token=False)),
    "avgmax_pool_with_class_token": ("vit_small_patch16_224", dict(depth=2, global_pool="avgmax")),
    "no_qkv_bias": ("vit_base_patch16_224_miil", dict(depth=2)),
    "qk_norm": ("vit_small_patch16_224", dict(depth=2, qk_norm=True)),
    "layer_scale_dinov2_registers": ("vit_small_patch14_reg4_dinov2", dict(depth=2, img_size=224)),
    "layer_scale_deit3": ("deit3_small_patch16_224", dict(depth=2)),
    "layer_scale_no_qkv_bias_avg_pool": ("vit_betwixt_patch16_gap_256", dict(depth=2)),
    "clip_pre_norm_no_patch_bias": ("vit_base_patch16_clip_224", dict(depth=2)),
    "clip_quick_gelu": ("vit_base_patch16_clip_quickgelu_224", dict(depth=2)),
    "siglip_tanh_gelu_avg_pool": ("vit_base_patch32_siglip_gap_256", dict(depth=2)),
    "siglip_attention_pool": ("vit_base_patch16_siglip_224", dict(depth=2)),
    "attention_pool_registers": ("vit_so150m_patch16_reg4_map_256", dict(depth=1)),
    "no_embed_class_flexivit": ("flexivit_small", dict(depth=2)),
    "no_final_norm_radio": ("vit_base_patch16_radio_v3", dict(depth=2, img_size=224)),
    "no_pos_embed": ("vit_small_patch16_224", dict(depth=2, pos_embed="none")),
    "residual_post_norm": ("vit_base_patch16_rpn_224", dict(depth=2)),
    "embedding_dropout_only": ("vit_small_patch16_224", dict(depth=2, pos_drop_rate=0.1)),
    "non_square_input": ("vit_small_patch16_224", dict(depth=2, img_size=(160, 224))),
    "headless": ("vit_small_patch14_dinov2", dict(depth=2, img_size=224)),
}
# Hybrids: one model of each timm ResNetV2 hybrid family, with one block. The R26/R50 backbones are complete but run
# on 64 px images; every hybrid runs at its own size (224 or 384) and depth in the slow tests.
HYBRIDS = {
    "vit_tiny_r_s16_p8_224": dict(depth=2),
    "vit_small_r26_s32_224": dict(depth=1, img_size=64),
    "vit_base_r26_s32_224": dict(depth=1, img_size=64),
    "vit_base_r50_s16_384": dict(depth=1, img_size=64),
    "vit_large_r50_s32_224": dict(depth=1, img_size=64),
}
ALL_HYBRIDS = [
    "vit_tiny_r_s16_p8_224",
    "vit_tiny_r_s16_p8_384",
    "vit_small_r26_s32_224",
    "vit_small_r26_s32_384",
    "vit_base_r26_s32_224",
    "vit_base_r50_s16_224",
    "vit_base_r50_s16_384",
    "vit_large_r50_s32_224",
    "vit_large_r50_s32_384",
]
FULL_SIZE = ["vit_tiny_patch16_384", "vit_base_patch16_224", "vit_large_patch16_384", "vit_huge_patch14_224"]


def assert_same_outputs(timm_model, model, image_size=None, interpolate_pos_encoding=False):
    """Logits, features (timm's forward_features) and pooled features (forward_head(pre_logits=True)) agree."""
    x = pixels(image_size or timm_model.patch_embed.img_size, batch=1, channels=model.config.num_channels)
    encoder_outputs = []  # one forward pass of ours gives the encoder's outputs and the logits
    hook = model.vit.register_forward_hook(lambda module, args, output: encoder_outputs.append(output))
    with torch.no_grad():
        features = timm_model.forward_features(x)
        logits = model(x, interpolate_pos_encoding=interpolate_pos_encoding).logits
        hook.remove()
        out = encoder_outputs[0]
        assert max_abs_diff(out.last_hidden_state, features) <= TOLERANCE
        assert max_abs_diff(out.pooler_output, timm_model.forward_head(features, pre_logits=True)) <= TOLERANCE
        assert max_abs_diff(logits, timm_model.forward_head(features)) <= TOLERANCE


@pytest.mark.parametrize("name", PLAIN_SIZES)
def test_plain_vits_of_every_size_and_patch_convert_exactly(name):
    timm_model = random_timm_model(name, **PLAIN_SIZES[name])
    model = from_timm(timm_model)
    assert model.config.patch_size == timm_model.patch_embed.patch_size[0]
    assert model.config.image_size == timm_model.patch_embed.img_size[0]
    assert_same_outputs(timm_model, model)


@pytest.mark.parametrize("feature", FEATURES)
def test_vit_variants_convert_exactly(feature):
    name, kwargs = FEATURES[feature]
    timm_model = random_timm_model(name, **kwargs)
    assert_same_outputs(timm_model, from_timm(timm_model))


@pytest.mark.parametrize("name", HYBRIDS)
def test_hybrid_resnet_vits_convert_exactly(name):
    timm_model = random_timm_model(name, **HYBRIDS[name])
    model = from_timm(timm_model)
    assert model.config.backbone_depths == [
        len(s.blocks) for s in getattr(timm_model.patch_embed.backbone, "stages", [])
    ]
    assert_same_outputs(timm_model, model)


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_SIZE + ALL_HYBRIDS)
def test_full_size_models_convert_exactly(name):
    timm_model = random_timm_model(name)
    assert_same_outputs(timm_model, from_timm(timm_model))


def test_random_weights_make_a_conversion_mistake_visible():
    """The check above can fail: with randomised weights even a 1% error in one layer scale shows."""
    timm_model = random_timm_model("vit_small_patch16_224", depth=2, init_values=1e-5)
    model = from_timm(timm_model)
    model.vit.blocks[1].ls2.gamma.data.mul_(1.01)
    x = pixels(224)
    with torch.no_grad():
        assert max_abs_diff(model(x).logits, timm_model(x)) > 10 * TOLERANCE


def test_dynamic_img_size_matches_interpolate_pos_encoding():
    timm_model = random_timm_model("vit_small_patch16_224", depth=2, dynamic_img_size=True, reg_tokens=2)
    assert_same_outputs(timm_model, from_timm(timm_model), image_size=(160, 288), interpolate_pos_encoding=True)


def test_config_records_the_source_and_reads_architecture_from_modules():
    timm_model = random_timm_model("vit_medium_patch16_reg4_gap_256", depth=3)
    config = from_timm(timm_model).config
    assert config.timm_model == "vit_medium_patch16_reg4_gap_256.sbb_in12k_ft_in1k"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (3, 512, 8)
    assert (config.num_register_tokens, config.class_token, config.pooling, config.fc_norm) == (4, False, "mean", True)
    assert config.no_embed_class and config.layer_scale_init_value == 1e-5 and config.image_size == 256


# --- new resolution --------------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path):
    """Save a randomised timm model as a local checkpoint; returns (path, model)."""

    def save(name, suffix=".safetensors", **kwargs):
        timm_model = random_timm_model(name, **kwargs)
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".safetensors":
            save_file(timm_model.state_dict(), path)
        else:
            torch.save(timm_model.state_dict(), path)
        return path, timm_model

    return save


def timm_from_file(name, path, num_classes=1000, **kwargs):
    overlay = dict(file=str(path), num_classes=num_classes)
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=num_classes, **kwargs)


@pytest.mark.parametrize(
    "name, size",
    [
        ("vit_tiny_patch16_224", 384),
        ("vit_tiny_r_s16_p8_224", 384),
        # FlexiViT checkpoints are resampled bilinearly by timm: a model name goes through timm's own loading.
        pytest.param("flexivit_small", 320, marks=pytest.mark.slow),
    ],
)
def test_new_resolution_from_a_checkpoint_equals_timm_loading_it_at_that_size(name, size, checkpoint):
    path, _ = checkpoint(name)
    model = from_timm(name, checkpoint_path=path, image_size=size)
    reference = timm_from_file(name, path, img_size=size).eval()
    assert model.config.image_size == size
    assert model.vit.pos_embed.shape == reference.pos_embed.shape
    assert_same_outputs(reference, model)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("vit_small_patch14_reg4_dinov2", dict(depth=2, img_size=224)),  # registers, no_embed_class
        ("vit_tiny_r_s16_p8_224", dict(depth=1)),
        ("vit_base_patch16_clip_224", dict(depth=1)),
    ],
)
def test_new_resolution_of_a_module_equals_timm_at_that_size(name, kwargs, checkpoint):
    path, timm_model = checkpoint(name, **kwargs)
    size = 2 * timm_model.patch_embed.img_size[0]
    model = from_timm(timm_model, image_size=size)
    reference = timm_from_file(name, path, num_classes=timm_model.num_classes, **{**kwargs, "img_size": size}).eval()
    assert_same_outputs(reference, model)
    timm_model.set_input_size((size, size))  # timm's own in-place resize resamples the same way
    assert_same_outputs(timm_model, model)


def test_patch14_at_384_drops_the_last_pixels_as_timm_does():
    """384 px is not a multiple of 14: timm's patch convolution ignores the last 6 pixel rows and columns (SigLIP
    so400m/14 at 384), and so does vit_hf's, on a 27 x 27 grid."""
    timm_model = random_timm_model("vit_large_patch14_224", depth=1, embed_dim=64, num_heads=2, img_size=384)
    model = from_timm(timm_model)
    assert model.config.image_size == 384 and model.config.grid_size() == (27, 27)
    x = pixels(384)
    with torch.no_grad():
        assert max_abs_diff(model(x).logits, timm_model(x)) <= 1e-5
    model = from_timm(timm_model, image_size=392)
    assert model.config.grid_size() == (28, 28)


# --- heads and labels ------------------------------------------------------------------------------------------


def test_pretrained_head_is_kept_with_imagenet_class_names():
    timm_model = random_timm_model("vit_tiny_patch16_224", depth=1)
    model = from_timm(timm_model)
    assert model.config.num_labels == 1000
    assert (
        model.config.id2label[0] == "tench, Tinca tinca" and model.config.label2id["goldfish, Carassius auratus"] == 1
    )
    assert torch.equal(model.head.weight, timm_model.head.weight)


def test_head_of_an_unknown_dataset_gets_generic_names():
    model = from_timm(random_timm_model("vit_tiny_patch16_224", depth=1, num_classes=7))
    assert model.config.num_labels == 7 and model.config.id2label[6] == "LABEL_6"


def test_headless_model_converts_to_features_only():
    timm_model = random_timm_model("vit_small_patch14_dinov2", depth=1, img_size=112)
    model = from_timm(timm_model)
    assert model.config.num_labels == 0
    x = pixels(112)
    with torch.no_grad():
        assert model(x).logits.shape == (2, 384)
        assert max_abs_diff(model(x).logits, timm_model(x)) <= TOLERANCE


@pytest.mark.parametrize("labels", [dict(num_labels=10), dict(id2label={i: f"class {i}" for i in range(10)})])
def test_new_head_is_zero_initialised_and_sized(labels):
    timm_model = random_timm_model("vit_tiny_patch16_224", depth=1)
    model = from_timm(timm_model, **labels)
    assert model.head.weight.shape == (10, 192) and not model.head.weight.any() and not model.head.bias.any()
    assert model.config.num_labels == 10
    assert model.config.id2label[9] == labels.get("id2label", {9: "LABEL_9"})[9]
    with torch.no_grad():
        x = pixels(224)
        assert (
            max_abs_diff(model.vit(x).pooler_output, timm_model.forward_head(timm_model.forward_features(x), True)) == 0
        )


def test_inconsistent_label_arguments_are_rejected():
    timm_model = random_timm_model("vit_tiny_patch16_224", depth=1)
    with pytest.raises(ValueError, match="num_labels=3 but id2label has 2"):
        from_timm(timm_model, num_labels=3, id2label={0: "a", 1: "b"})
    with pytest.raises(ValueError, match="num_labels must be an integer"):
        from_timm(timm_model, num_labels=-1)


# --- the way back ----------------------------------------------------------------------------------------------


def assert_round_trip_to_timm(model, name, tmp_path):
    """to_timm_checkpoint's kwargs alone rebuild the model under `name`: loading the checkpoint through timm, and
    building it with pretrained=False for load_state_dict(strict=True), both give the model's outputs."""
    path = tmp_path / "exported.safetensors"
    timm_kwargs = to_timm_checkpoint(model, path)
    assert sorted(os.listdir(tmp_path)) == ["exported.safetensors"]  # no temporary file left behind
    assert_same_outputs(timm.create_model(name, **timm_kwargs).eval(), model)
    architecture = {key: value for key, value in timm_kwargs.items() if not key.startswith("pretrained")}
    rebuilt = timm.create_model(name, pretrained=False, **architecture).eval()
    rebuilt.load_state_dict(load_file(path), strict=True)
    assert_same_outputs(rebuilt, model)


TINY = dict(depth=2, embed_dim=64, num_heads=2)


@pytest.mark.parametrize(
    "name, kwargs, convert",
    [
        ("vit_tiny_patch16_224", {}, dict(num_labels=10)),
        ("vit_small_patch16_224", TINY, {}),
        ("vit_small_patch16_224", dict(TINY, global_pool="avg", class_token=False), {}),
        ("vit_base_patch16_reg4_gap_256", TINY, {}),
        ("vit_medium_patch16_reg4_gap_256", dict(depth=2), {}),
        ("vit_base_patch16_clip_quickgelu_224", TINY, {}),
        ("vit_base_patch16_siglip_224", TINY, dict(num_labels=7)),
        ("deit3_small_patch16_224", dict(TINY, qk_norm=True), {}),
        ("vit_base_patch16_rpn_224", TINY, {}),
        ("vit_tiny_r_s16_p8_224", dict(depth=2), dict(image_size=256)),
        ("vit_small_r26_s32_224", dict(depth=1, img_size=64), dict(num_labels=3, image_size=96)),
        ("vit_base_r50_s16_224", dict(TINY, depth=1, img_size=64, num_classes=10), {}),
    ],
)
def test_round_trip_to_a_timm_checkpoint(name, kwargs, convert, tmp_path):
    model = from_timm(random_timm_model(name, **kwargs), **convert)
    torch.nn.init.normal_(model.head.weight)  # a trained head, so the logits test it
    assert_round_trip_to_timm(model, name, tmp_path)


@pytest.mark.parametrize(
    "config",
    [
        dict(
            image_size=[64, 96],
            num_channels=1,
            layer_norm_eps=1e-5,
            hidden_act="quick_gelu",
            qkv_bias=False,
            qk_norm=True,
            layer_scale_init_value=1e-5,
            num_register_tokens=2,
            no_embed_class=True,
            pre_norm=True,
            patch_embed_bias=False,
            pooling="max",
            fc_norm=False,
            num_labels=5,
        ),
        dict(class_token=False, use_pos_embed=False, pooling="avgmax", final_norm=False, num_labels=0),
        dict(image_size=64, patch_size=1, backbone_depths=[1, 1], backbone_stem_channels=32, backbone_width_factor=2),
    ],
    ids=["plain", "no_position_embeddings", "hybrid_width_factor_2"],
)
def test_any_config_exports_under_any_timm_vit_name(config, tmp_path):
    """A model trained with vit_hf (not converted from timm) loads under a name whose defaults all differ."""
    config = ViTHFConfig(
        **{**dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=160), **config}
    )
    model = randomize_weights_(ViTHFForImageClassification(config).eval())
    assert_round_trip_to_timm(model, "vit_base_patch16_224", tmp_path)


def test_encoder_only_model_exports_as_a_headless_timm_checkpoint(tmp_path):
    kwargs = dict(depth=2, img_size=112)
    encoder = from_timm(random_timm_model("vit_small_patch14_reg4_dinov2", **kwargs)).vit
    timm_kwargs = to_timm_checkpoint(encoder, tmp_path / "encoder.safetensors")
    assert timm_kwargs["num_classes"] == 0
    reference = timm.create_model("vit_small_patch14_reg4_dinov2", **timm_kwargs).eval()
    x = pixels(112, batch=1)
    with torch.no_grad():
        assert max_abs_diff(encoder(x).last_hidden_state, reference.forward_features(x)) <= TOLERANCE


def test_configs_timm_cannot_express_are_named_and_nothing_is_written(tmp_path):
    config = ViTHFConfig(
        image_size=32,
        patch_size=16,
        patch_stride=8,
        hidden_size=11,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=15,
        hidden_act="gelu_new",
        pre_norm=True,
        norm_placement="post",
    )
    with pytest.raises(ValueError) as error:
        to_timm_checkpoint(ViTHFForImageClassification(config), tmp_path / "model.safetensors")
    features = ("overlapping patches", "patch_embed_bias=True with pre_norm=True", "'gelu_new'", "=15", "post-norm")
    for feature in features:
        assert feature in str(error.value)
    assert os.listdir(tmp_path) == []


# --- local checkpoints, names and errors -----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])  # .pth: see the training checkpoint below
def test_local_checkpoint_formats(suffix, checkpoint):
    path, timm_model = checkpoint("vit_tiny_patch16_224", suffix=suffix, num_classes=10)
    model = from_timm("vit_tiny_patch16_224", checkpoint_path=path)
    assert model.config.num_labels == 10 and model.config.timm_model == "vit_tiny_patch16_224"
    assert_same_outputs(timm_model, model)


def test_checkpoint_named_with_a_tag_records_it(checkpoint):
    path, timm_model = checkpoint("vit_tiny_patch16_224", num_classes=10)
    model = from_timm("vit_tiny_patch16_224.augreg_in21k", checkpoint_path=path)
    assert model.config.timm_model == "vit_tiny_patch16_224.augreg_in21k"
    assert_same_outputs(timm_model, model)


def test_training_checkpoint_with_a_state_dict_entry(tmp_path):
    timm_model = random_timm_model("vit_tiny_r_s16_p8_224")
    torch.save({"state_dict": timm_model.state_dict(), "epoch": 3}, tmp_path / "last.pth")
    model = from_timm("vit_tiny_r_s16_p8_224", checkpoint_path=tmp_path / "last.pth")
    assert_same_outputs(timm_model, model)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if unpickling ran code


def test_checkpoints_load_without_running_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"head.weight": torch.zeros(2, 2), "payload": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(RuntimeError, match="weights_only=True blocked loading this checkpoint"):
        from_timm("vit_tiny_patch16_224", checkpoint_path=tmp_path / "evil.pth")
    assert not marker.exists()


def test_offline_without_checkpoint_says_how_to_pass_one(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    with pytest.raises(ConnectionError) as error:
        from_timm("vit_tiny_patch16_224", pretrained=True)
    message = str(error.value)
    assert "checkpoint_path=" in message and "--checkpoint" in message
    assert "huggingface.co/timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k" in message
    assert error.value.__suppress_context__ and error.value.__cause__ is None  # one error, not a chain


def test_bad_arguments_give_clear_errors(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="Did you mean vit_tiny_patch16_224"):
        from_timm("vit_tiny_patch16_22", pretrained=False)
    with pytest.raises(ValueError, match="no weights tagged 'in1k'.*vit_tiny_patch16_224.augreg_in21k_ft_in1k"):
        from_timm("vit_tiny_patch16_224.in1k", pretrained=False)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        from_timm("vit_tiny_patch16_224", checkpoint_path=tmp_path / "missing.safetensors")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="JAX .npz"):
        from_timm("vit_tiny_patch16_224", checkpoint_path=tmp_path / "weights.npz")
    path, timm_model = checkpoint("vit_tiny_patch16_224", depth=1)
    with pytest.raises(ValueError, match="checkpoint_path is for timm model names"):
        from_timm(timm_model, checkpoint_path=path)
    with pytest.raises(ValueError, match="pretrained=False means random weights"):
        from_timm("vit_tiny_patch16_224", pretrained=False, checkpoint_path=path)


@pytest.mark.parametrize(
    "name, kwargs, features",
    [
        ("vit_small_patch16_224", dict(global_pool="prr"), ["attention-pool head other than 'map'"]),
        ("vit_base_patch16_siglip_224", dict(mlp_layer=SwiGLU), ["attention-pool head whose MLP width or activation"]),
        ("vit_small_patch16_18x2_224", {}, ["parallel attention + MLP branches"]),
        ("vit_dwee_patch16_reg1_gap_256", {}, ["differential attention"]),
        ("vit_base_mci_224", {}, ["without projection", "ConvStem"]),
        ("vit_small_patch16_224", dict(global_pool=""), ["no pooling (global_pool=''"]),
        ("vit_base_patch16_sapiens2", {}, ["layer scale on the attention branch only"]),
    ],
)
def test_unsupported_timm_features_are_named(name, kwargs, features):
    with torch.device("meta"):
        timm_model = timm.create_model(name, pretrained=False, **kwargs)
    with pytest.raises(UnsupportedTimmModelError) as error:
        from_timm(timm_model)
    for feature in features:
        assert any(feature in found for found in error.value.features), (feature, error.value.features)
        assert feature in str(error.value)


def test_attention_pool_heads_vit_hf_cannot_compute_are_named():
    timm_model = random_timm_model("vit_base_patch16_siglip_224", **TINY)
    pool = timm_model.attn_pool
    pool.q_norm = torch.nn.LayerNorm(pool.head_dim)
    pool.latent = torch.nn.Parameter(torch.zeros(1, 2, pool.latent_dim))
    pool.latent_len = 2
    pool.proj_drop.p = 0.1
    with pytest.raises(UnsupportedTimmModelError) as error:
        from_timm(timm_model)
    assert "an attention-pool head with query / key norms" in error.value.features
    assert "an attention-pool head with several queries or its own position embeddings" in error.value.features
    assert "an attention-pool head with dropout" in error.value.features


# --- image processor -------------------------------------------------------------------------------------------

# (width, height): 640 x 427 puts timm's centre crop at an odd, rounded-up offset (see ViTHFImageProcessor).
IMAGE_SIZES = [(640, 427), (500, 375), (375, 500), (333, 250), (260, 800), (301, 301)]


def photo(width, height, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "name, image_size",
    [
        ("vit_tiny_patch16_224", None),  # crop_pct 0.9, bicubic, mean/std 0.5
        ("vit_tiny_patch16_224", 384),  # a 224 checkpoint run at 384
        ("vit_base_r50_s16_384.orig_in21k_ft_in1k", None),  # crop_pct 1.0
        ("vit_base_patch16_224_miil.in21k", None),  # bilinear, crop_pct 0.875, mean 0 / std 1
        ("vit_base_patch16_clip_384.laion2b_ft_in12k_in1k", None),  # 'squash' crop mode, CLIP mean/std
    ],
)
def test_image_processor_reproduces_timm_eval_transform(name, image_size):
    with torch.device("meta"):
        timm_model = timm.create_model(name, pretrained=False)
    args = {} if image_size is None else {"input_size": (3, image_size, image_size)}
    transform = timm.data.create_transform(**timm.data.resolve_data_config(args, model=timm_model))
    for processor in (image_processor_from_timm(name, image_size), image_processor_from_timm(timm_model, image_size)):
        assert isinstance(processor, ViTHFImageProcessor)
        for width, height in IMAGE_SIZES:
            image = photo(width, height)
            ours = processor(image, return_tensors="pt")["pixel_values"][0]
            assert max_abs_diff(ours, transform(image)) <= 1e-6, (width, height)


def test_image_processor_round_trips_through_auto_image_processor(tmp_path):
    processor = image_processor_from_timm("vit_base_patch16_224_miil.in21k")
    processor.save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded) is ViTHFImageProcessor
    assert loaded.to_dict() == processor.to_dict()
    image = photo(640, 427)
    assert torch.equal(
        loaded(image, return_tensors="pt")["pixel_values"], processor(image, return_tensors="pt")["pixel_values"]
    )


def test_randomize_weights_changes_every_parameter():
    timm_model = timm.create_model("vit_small_patch16_224", pretrained=False, depth=1, init_values=1e-5)
    before = {name: p.clone() for name, p in timm_model.named_parameters()}
    randomize_weights_(timm_model)
    assert all(not torch.equal(before[name], p) for name, p in timm_model.named_parameters())
    assert timm_model.blocks[0].ls1.gamma.min() >= 0.5


def test_image_processor_rejects_timm_transforms_it_cannot_reproduce():
    with torch.device("meta"):
        timm_model = timm.create_model("vit_tiny_patch16_224", pretrained_cfg_overlay=dict(crop_mode="border"))
    with pytest.raises(ValueError, match="crop_mode='border'"):
        image_processor_from_timm(timm_model)
