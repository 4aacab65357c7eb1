"""timm's ViT families beyond the plain ViT (eva, deit, and the newer blocks of vision_transformer) convert exactly,
run at new (non-square) sizes as timm does, and go back to timm. Random weights, tiny widths and depths."""

import os
import re
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import load_file

from tests.timm_helpers import max_abs_diff, pixels, random_timm_model
from vit_hf import ViTHFConfig, ViTHFForImageClassification, from_timm
from vit_hf.timm.architecture import config_from_timm
from vit_hf.timm.convert import max_output_difference
from vit_hf.timm.weights import to_timm_checkpoint

TINY = dict(depth=2, embed_dim=64, num_heads=2)
# One small model per block feature and per timm module: name, timm kwargs, the config fields that feature sets.
FAMILIES = {
    "eva02_tiny_patch14_224": (dict(TINY, img_size=56), dict(rope_type="axial", mlp_type="swiglu_packed")),
    "eva02_base_patch14_224": (
        dict(TINY, img_size=56),
        dict(mlp_type="swiglu", scale_mlp_norm=True, key_bias=False, rope_ref_grid=[16, 16]),
    ),
    "eva02_base_patch16_clip_224": (dict(TINY, img_size=64), dict(scale_attn_norm=True, pooling="cls")),
    "vit_small_patch16_dinov3": (dict(TINY, img_size=64), dict(rope_type="dinov3", use_pos_embed=False)),
    "vit_small_patch16_rope_mixed_ape_224": (dict(TINY, img_size=64), dict(rope_type="mixed", use_pos_embed=True)),
    "vit_pe_core_tiny_patch16_384": (
        dict(TINY, img_size=64),
        dict(rope_grid_indexing="xy", rope_grid_offset=1.0, pre_norm=True, pool_include_prefix=True),
    ),
    "deit_tiny_distilled_patch16_224": (dict(TINY, img_size=64), dict(distillation_token=True)),
    "deit3_small_patch16_224": (dict(TINY, img_size=64), dict(no_embed_class=True)),
    "aimv2_large_patch14_224": (
        dict(TINY, img_size=56),
        dict(norm_type="rmsnorm", patch_embed_norm=True, mlp_type="swiglu", proj_bias=False),
    ),
    "beit3_base_patch16_224": (dict(TINY, img_size=64), dict(scale_attn_norm=True, scale_mlp_norm=True)),
    "vit_base_patch16_rpn_224": (dict(TINY, img_size=64), dict(norm_placement="res_post")),
    "test_vit3": ({}, dict(pool_include_prefix=True)),
    "vit_base_patch16_xp_224": (dict(TINY, img_size=64), dict(norm_placement="parallel", qk_norm=True)),
    "vit_pwee_patch16_reg1_gap_256": (dict(TINY, img_size=64), dict(norm_placement="parallel", qkv_bias=True)),
}


def _logits_difference(timm_model, model, image_size) -> float:
    x = pixels(image_size, batch=2)
    with torch.no_grad():
        return max_abs_diff(model(x).logits, timm_model(x))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_converts_exactly(name):
    kwargs, fields = FAMILIES[name]
    timm_model = random_timm_model(name, **kwargs)
    model = from_timm(timm_model)
    for field, value in fields.items():
        assert getattr(model.config, field) == value, field
    assert _logits_difference(timm_model, model, timm_model.patch_embed.img_size) <= 1e-5


@pytest.mark.parametrize(
    "name", ["eva02_tiny_patch14_224", "vit_small_patch16_dinov3", "vit_small_patch16_rope_mixed_ape_224"]
)
def test_rotary_models_at_a_new_non_square_size_match_timm(name):
    """Converted at 42 x 70 px (a 3 x 5 grid) from a square model, as timm resamples it with set_input_size: absolute
    position embeddings resampled, rotary embeddings computed for the new grid (EVA-02's rescaled to its
    pretraining grid)."""
    kwargs, _ = FAMILIES[name]
    timm_model = random_timm_model(name, **kwargs)
    patch = timm_model.patch_embed.patch_size[0]
    size = (3 * patch, 5 * patch)
    model = from_timm(timm_model, image_size=size)
    timm_model.set_input_size(img_size=size)
    assert _logits_difference(timm_model, model, size) <= 1e-5


def test_distilled_model_averages_both_heads_and_fine_tunes_both():
    timm_model = random_timm_model("deit_tiny_distilled_patch16_224", **FAMILIES["deit_tiny_distilled_patch16_224"][0])
    model = from_timm(timm_model)
    x = pixels(64, batch=2)
    with torch.no_grad():
        tokens = model.vit(x).last_hidden_state
        separate = (model.head(tokens[:, 0]), model.head_dist(tokens[:, 1]))
        assert max_abs_diff(model(x).logits, (separate[0] + separate[1]) / 2) == 0.0
        assert max_abs_diff(model.vit(x).pooler_output, timm_model.forward_head(tokens, pre_logits=True)) <= 1e-6
    assert not torch.equal(separate[0], separate[1])  # two heads, not one counted twice
    fine_tune = from_timm(timm_model, num_labels=3)
    for head in (fine_tune.head, fine_tune.head_dist):
        assert head.out_features == 3 and not head.weight.any() and not head.bias.any()
    fine_tune.train()
    fine_tune(x, labels=torch.tensor([0, 2])).loss.backward()
    assert fine_tune.head.weight.grad.abs().sum() > 0 and fine_tune.head_dist.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "name",
    [
        "eva02_tiny_patch14_224",
        "eva02_base_patch14_224",
        "vit_small_patch16_dinov3",
        "vit_small_patch16_rope_mixed_ape_224",
        "deit_tiny_distilled_patch16_224",
        "aimv2_large_patch14_224",
        "vit_base_patch16_rpn_224",
        "vit_base_patch16_xp_224",
        "vit_pwee_patch16_reg1_gap_256",
    ],
)
def test_round_trip_to_timm(tmp_path, name):
    kwargs, _ = FAMILIES[name]
    timm_model = random_timm_model(name, **kwargs)
    model = from_timm(timm_model)
    timm_kwargs = to_timm_checkpoint(model, tmp_path / "model.safetensors")
    timm_kwargs.pop("pretrained"), timm_kwargs.pop("pretrained_cfg_overlay")
    rebuilt = timm.create_model(name, **timm_kwargs).eval()
    rebuilt.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    assert _logits_difference(rebuilt, model, timm_model.patch_embed.img_size) <= 1e-5


def test_key_bias_stays_zero_through_training():
    """EVA's key bias is a fixed zero: vit_hf keeps it out of the parameters, so fine-tuning cannot move it."""
    config = ViTHFConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, key_bias=False
    )
    model = ViTHFForImageClassification(config)
    names = {name for name, _ in model.named_parameters()}
    assert "vit.blocks.0.attn.qkv.q_bias" in names and not any("k_bias" in name for name in names)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(rope_type="spiral"), "`rope_type` must be one of"),
        (dict(mlp_type="geglu"), "`mlp_type` must be one of"),
        (dict(norm_type="batchnorm"), "`norm_type` must be one of"),
        (dict(key_bias=False, qkv_bias=False), "needs qkv_bias=True"),
        (dict(distillation_token=True, pooling="mean"), "needs `class_token=True` and `pooling='cls'`"),
        (dict(rope_type="axial", hidden_size=36, num_attention_heads=2), "divisible by 4"),
        (dict(rope_type="mixed", rope_rotate_half=True), "rope_rotate_half=False"),
        (dict(rope_type="dinov3", rope_ref_grid=[16, 16]), "`rope_ref_grid`"),
    ],
)
def test_bad_variant_options_are_named(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ViTHFConfig(**fields)


def test_saved_rotary_gated_rmsnorm_model_loads_without_vit_hf(tmp_path):
    """The code copied into a saved folder (layers included) rebuilds every new option, weights and all, in a process
    where vit_hf cannot be imported."""
    config = ViTHFConfig(
        image_size=[32, 48],
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        num_labels=3,
        norm_type="rmsnorm",
        mlp_type="swiglu",
        hidden_act="silu",
        scale_mlp_norm=True,
        scale_attn_norm=True,
        key_bias=False,
        rope_type="mixed",
        distillation_token=True,
        patch_embed_norm=True,
    )
    model = ViTHFForImageClassification(config).eval()
    for head in (model.head, model.head_dist):
        torch.nn.init.normal_(head.weight)
    model.save_pretrained(tmp_path / "model")
    x = pixels((32, 48), batch=2)
    torch.save(x, tmp_path / "x.pt")
    script = f"""
import sys
sys.modules["vit_hf"] = None
import torch
from transformers import AutoModelForImageClassification
model = AutoModelForImageClassification.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
with torch.no_grad():
    torch.save(model(torch.load({str(tmp_path / "x.pt")!r})).logits, {str(tmp_path / "out.pt")!r})
"""
    env = dict(os.environ, PYTHONPATH="")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "out.pt"), model(x).logits)


@pytest.mark.parametrize("name", ["vit_small_resnet26d_224", "vit_small_resnet50d_s16_224"])
def test_resnet_d_hybrid_converts_exactly_and_back(tmp_path, name):
    """BatchNorm's running statistics are part of the conversion: they are randomised too."""
    timm_model = random_timm_model(name, **dict(TINY, depth=1), img_size=64)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for key, buffer in timm_model.named_buffers():
            if key.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
            elif key.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
    model = from_timm(timm_model)
    assert model.config.backbone_type == "resnet_d"
    assert _logits_difference(timm_model, model, 64) <= 1e-5
    timm_kwargs = to_timm_checkpoint(model, tmp_path / "model.safetensors")
    timm_kwargs.pop("pretrained"), timm_kwargs.pop("pretrained_cfg_overlay")
    rebuilt = timm.create_model(name, **timm_kwargs).eval()
    rebuilt.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    assert _logits_difference(rebuilt, model, 64) <= 1e-5


@pytest.mark.parametrize(
    "preset, timm_name",
    [
        ("eva02_small_patch14_336", "eva02_small_patch14_336"),
        ("eva02_base_patch14_448", "eva02_base_patch14_448"),
        ("eva02_large_patch14_448", "eva02_large_patch14_448"),
        ("dinov3_small_patch16_256", "vit_small_patch16_dinov3"),
        ("dinov3_base_patch16_256", "vit_base_patch16_dinov3"),
        ("dinov3_large_patch16_256", "vit_large_patch16_dinov3"),
    ],
)
def test_family_presets_are_timm_architectures(preset, timm_name):
    """Each EVA-02 / DINOv3 preset is the architecture from_timm reads off timm's model of that name."""
    with torch.device("meta"):
        timm_model = timm.create_model(timm_name, pretrained=False, num_classes=0)
    expected = config_from_timm(timm_model, num_labels=0).to_dict()
    found = ViTHFConfig.from_preset(preset, num_labels=0).to_dict()
    ignored = ("id2label", "label2id")
    assert {k: v for k, v in found.items() if k not in ignored} == {
        k: v for k, v in expected.items() if k not in ignored
    }


def test_convert_cli_check_compares_the_distilled_models_averaged_logits():
    """The CLI refuses to write a conversion whose outputs differ from timm's; a distilled DeiT's logits average two
    heads, so comparing one head would have refused every distilled DeiT."""
    timm_model = random_timm_model("deit_tiny_distilled_patch16_224", **FAMILIES["deit_tiny_distilled_patch16_224"][0])
    with torch.no_grad():
        assert max_output_difference(timm_model, from_timm(timm_model), kept_head=True) <= 1e-5
