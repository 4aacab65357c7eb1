import copy

import pytest
import torch

from tests.conftest import tiny_config
from vit_hf import ViTHFConfig, ViTHFForImageClassification, ViTHFModel

VARIANTS = {
    "plain": dict(),
    "hybrid": dict(backbone_depths=[1, 1], patch_size=1, image_size=64),  # 1/8 feature map -> 8x8 tokens
    "hybrid_stem_only": dict(backbone_depths=[], patch_size=2, image_size=64),
    "mean_pooled": dict(pooling="mean", class_token=False),
    "attention_pooled": dict(pooling="map", class_token=False, num_register_tokens=1),
    "overlapping_patches": dict(patch_size=8, patch_stride=4),
    "registers": dict(num_register_tokens=3),
    "layer_scale_qk_norm": dict(layer_scale_init_value=1e-5, qk_norm=True, pre_norm=True, no_embed_class=True),
    "post_norm": dict(norm_placement="post", hidden_act="relu", use_pos_embed=False, pooling="mean", class_token=False),
    "res_post_norm": dict(norm_placement="res_post"),
}


def pixels(config, batch=2, size=None):
    height, width = (config.image_size,) * 2 if size is None else size
    return torch.randn(batch, config.num_channels, height, width, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes(variant):
    config = tiny_config(**VARIANTS[variant])
    model = ViTHFForImageClassification(config).eval()
    grid = config.grid_size()
    tokens = grid[0] * grid[1] + config.num_prefix_tokens
    out = model(pixels(config), output_hidden_states=True)
    assert out.logits.shape == (2, config.num_labels)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert all(h.shape == (2, tokens, config.hidden_size) for h in out.hidden_states)
    base = model.vit(pixels(config))
    assert base.last_hidden_state.shape == (2, tokens, config.hidden_size)
    assert base.pooler_output.shape == (2, config.hidden_size)


def test_overlapping_patches_give_more_tokens_than_disjoint_ones():
    disjoint = tiny_config(patch_size=8)
    overlapping = tiny_config(patch_size=8, patch_stride=4)
    assert disjoint.grid_size() == (4, 4) and overlapping.grid_size() == (8, 8)
    assert ViTHFModel(overlapping)(pixels(overlapping)).last_hidden_state.shape[1] == 65


def test_mean_pooling_averages_the_patch_tokens_only():
    config = tiny_config(pooling="mean", num_register_tokens=2, fc_norm=False)
    model = ViTHFModel(config).eval()
    out = model(pixels(config))
    expected = out.last_hidden_state[:, config.num_prefix_tokens :].mean(dim=1)
    torch.testing.assert_close(out.pooler_output, expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_receives_a_gradient(variant):
    config = tiny_config(**VARIANTS[variant])
    model = ViTHFForImageClassification(config).train()
    torch.nn.init.normal_(model.head.weight)  # the zero-initialised head would block gradients to the encoder
    model(pixels(config), labels=torch.tensor([0, 1])).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_sdpa_equals_eager():
    config = tiny_config(num_register_tokens=1)
    eager = ViTHFForImageClassification(config).eval()
    eager.set_attn_implementation("eager")
    sdpa = copy.deepcopy(eager)
    sdpa.set_attn_implementation("sdpa")
    torch.nn.init.normal_(eager.head.weight)
    sdpa.load_state_dict(eager.state_dict())
    x = pixels(config)
    torch.testing.assert_close(sdpa(x).logits, eager(x).logits, atol=1e-5, rtol=1e-5)
    assert sdpa.config._attn_implementation == "sdpa"


def test_default_attention_is_sdpa_and_bidirectional():
    config = tiny_config()
    model = ViTHFModel(config).eval()
    assert model.config._attn_implementation == "sdpa"
    x = pixels(config)
    # Changing the last patch must change the first token's output: no causal mask anywhere.
    y = x.clone()
    y[..., -4:, -4:] += 1.0
    assert not torch.allclose(model(x).last_hidden_state[:, 0], model(y).last_hidden_state[:, 0])


def test_attention_maps_and_hidden_states_counts():
    config = tiny_config(num_register_tokens=2, attn_implementation="eager")
    model = ViTHFForImageClassification(config).eval()
    out = model(pixels(config), output_attentions=True, output_hidden_states=True)
    tokens = 64 + 3
    assert len(out.attentions) == config.num_hidden_layers
    assert all(a.shape == (2, config.num_attention_heads, tokens, tokens) for a in out.attentions)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, config.num_attention_heads, tokens))
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert model(pixels(config)).attentions is None


@pytest.mark.parametrize("implementation", ["sdpa", "sdpa_cpu_bf16"])
def test_attention_maps_from_a_non_eager_model_equal_eager_ones(implementation):
    """Generic code asks any transformers model for `output_attentions=True`: that call computes the maps with eager
    attention, and the model keeps its own implementation."""
    config = tiny_config(num_register_tokens=1)
    model = ViTHFForImageClassification(config).eval()
    model.set_attn_implementation(implementation)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    x = pixels(config)
    with torch.no_grad():
        out, expected = model(x, output_attentions=True), eager(x, output_attentions=True)
    assert len(out.attentions) == config.num_hidden_layers
    for maps, eager_maps in zip(out.attentions, expected.attentions, strict=True):
        torch.testing.assert_close(maps, eager_maps)
    torch.testing.assert_close(out.logits, expected.logits)
    assert model.config._attn_implementation == implementation
    assert model(x).attentions is None


def test_output_hidden_states_selects_layers_by_index():
    """transformers' convention: the selected hidden states, None in the places of the others."""
    config = tiny_config(num_hidden_layers=3)
    model = ViTHFModel(config).eval()
    x = pixels(config)
    every = model(x, output_hidden_states=True).hidden_states
    selected = model(x, output_hidden_states=[0, 2, -1]).hidden_states
    assert len(selected) == len(every) == 4
    assert selected[1] is None
    for index in (0, 2, 3):
        torch.testing.assert_close(selected[index], every[index])


def test_input_embeddings_let_reentrant_checkpointing_train_adapters_of_a_frozen_model():
    """`get_input_embeddings()` is the patch embedding, so `enable_input_require_grads()` (which PEFT and the Trainer
    call) makes reentrant activation checkpointing pass gradients to trainable weights inside frozen blocks."""
    config = tiny_config()
    model = ViTHFForImageClassification(config).train()
    torch.nn.init.normal_(model.head.weight)
    assert model.get_input_embeddings() is model.vit.patch_embed
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.endswith("attn.qkv.weight"))
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    model(pixels(config), labels=torch.tensor([0, 1])).loss.backward()
    assert all(block.attn.qkv.weight.grad.abs().sum() > 0 for block in model.vit.blocks)


@pytest.mark.parametrize("size", [(48, 48), (32, 48), (40, 24)])
def test_interpolate_pos_encoding_accepts_other_sizes(size):
    config = tiny_config(num_register_tokens=1)
    model = ViTHFForImageClassification(config).eval()
    out = model(pixels(config, size=size), interpolate_pos_encoding=True, output_hidden_states=True)
    assert out.hidden_states[-1].shape[1] == (size[0] // 4) * (size[1] // 4) + 2
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        model(pixels(config, size=size))


def test_interpolation_from_224_to_384():
    config = ViTHFConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    model = ViTHFForImageClassification(config).eval()
    out = model(torch.randn(1, 3, 384, 384), interpolate_pos_encoding=True, output_hidden_states=True)
    assert out.hidden_states[0].shape == (1, 24 * 24 + 1, 32)


@pytest.mark.parametrize("variant", ["plain", "hybrid", "registers", "layer_scale_qk_norm"])
def test_set_image_size_equals_forward_time_interpolation(variant):
    config = tiny_config(**VARIANTS[variant])
    model = ViTHFForImageClassification(config).eval()
    torch.nn.init.normal_(model.head.weight)
    new_size = config.image_size * 3 // 2
    x = pixels(config, size=(new_size, new_size))
    with torch.no_grad():
        expected = model(x, interpolate_pos_encoding=True).logits
        model.set_image_size(new_size)
        resized = model(x).logits
    assert model.config.image_size == new_size
    grid = model.config.grid_size()
    assert model.vit.pos_embed.shape[1] == grid[0] * grid[1] + (
        0 if config.no_embed_class else config.num_prefix_tokens
    )
    torch.testing.assert_close(resized, expected, atol=0, rtol=0)


def test_set_image_size_rejects_sizes_off_the_token_grid():
    model = ViTHFModel(tiny_config())
    with pytest.raises(ValueError, match="token stride 4"):
        model.set_image_size(34)


def test_activation_checkpointing_gives_the_same_gradients():
    config = tiny_config(drop_path_rate=0.0)
    model = ViTHFForImageClassification(config).train()
    torch.nn.init.normal_(model.head.weight)
    checkpointed = copy.deepcopy(model)
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.is_activation_checkpointing
    x, labels = pixels(config), torch.tensor([1, 3])
    model(x, labels=labels).loss.backward()
    checkpointed(x, labels=labels).loss.backward()
    for (name, p), q in zip(model.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_set_drop_path_rate_changes_the_per_block_rates():
    model = ViTHFForImageClassification(tiny_config(num_hidden_layers=3))
    model.set_drop_path_rate(0.2)
    assert [block.drop_path.drop_prob for block in model.vit.blocks] == pytest.approx([0.0, 0.1, 0.2])
    assert model.config.drop_path_rate == 0.2
    with pytest.raises(ValueError, match="drop_path_rate"):
        model.set_drop_path_rate(1.0)


def test_stochastic_depth_is_random_in_training_and_off_in_eval():
    config = tiny_config(drop_path_rate=0.5)
    model = ViTHFForImageClassification(config)
    torch.nn.init.normal_(model.head.weight)
    x = pixels(config, batch=8)
    model.train()
    assert not torch.equal(model(x).logits, model(x).logits)
    model.eval()
    assert torch.equal(model(x).logits, model(x).logits)


@pytest.mark.parametrize(
    "problem_type, labels",
    [
        ("single_label_classification", torch.tensor([0, 4])),
        ("multi_label_classification", torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])),
        ("regression", torch.randn(2, 5)),
    ],
)
def test_losses_follow_the_problem_type(problem_type, labels):
    config = tiny_config(problem_type=problem_type)
    model = ViTHFForImageClassification(config)
    out = model(pixels(config), labels=labels)
    logits = out.logits
    expected = {
        "single_label_classification": lambda: torch.nn.functional.cross_entropy(logits, labels),
        "multi_label_classification": lambda: torch.nn.functional.binary_cross_entropy_with_logits(logits, labels),
        "regression": lambda: torch.nn.functional.mse_loss(logits, labels),
    }[problem_type]()
    torch.testing.assert_close(out.loss, expected)


def test_problem_type_is_inferred_from_labels():
    config = tiny_config()
    model = ViTHFForImageClassification(config)
    model(pixels(config), labels=torch.tensor([1, 2]))
    assert model.config.problem_type == "single_label_classification"


def test_fresh_head_is_zero_initialised():
    model = ViTHFForImageClassification(tiny_config())
    assert model.head.weight.abs().sum() == 0 and model.head.bias.abs().sum() == 0
    assert 0.01 < model.vit.pos_embed.std() < 0.03


def test_return_dict_false_gives_a_tuple():
    config = tiny_config()
    model = ViTHFForImageClassification(config).eval()
    out = model(pixels(config), labels=torch.tensor([0, 1]), return_dict=False)
    assert isinstance(out, tuple) and out[1].shape == (2, 5)


def test_wrong_channel_count_is_a_clear_error():
    config = tiny_config()
    with pytest.raises(ValueError, match="expects 3"):
        ViTHFModel(config)(torch.randn(1, 1, 32, 32))


def test_bfloat16_forward():
    config = tiny_config(backbone_depths=[1], patch_size=1, image_size=32)
    model = ViTHFForImageClassification(config).eval()
    torch.nn.init.normal_(model.head.weight)
    x = pixels(config)
    reference = model(x).logits
    model = model.to(torch.bfloat16)
    out = model(x.to(torch.bfloat16)).logits
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ViTHFForImageClassification(config).eval()(x).logits.dtype == torch.bfloat16


def test_builds_on_the_meta_device():
    """For inspecting shapes and parameter counts of large models without allocating them."""
    with torch.device("meta"):
        model = ViTHFForImageClassification(ViTHFConfig.from_preset("huge_patch14_224", drop_path_rate=0.1))
    assert model.vit.pos_embed.is_meta
    assert sum(p.numel() for p in model.parameters()) > 600_000_000


def test_hybrid_exports_with_dynamic_batch_and_image_size():
    """torch.export with a symbolic batch, height and width: the ResNetV2's "SAME" padding stays simple enough for
    the shape analysis (computed with ceil() in every convolution, a stem alone took minutes)."""
    from torch.export import Dim

    config = tiny_config(backbone_depths=[1], patch_size=1, image_size=64)
    model = ViTHFForImageClassification(config).eval()
    torch.nn.init.normal_(model.head.weight)
    auto = {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}
    with torch.no_grad():
        exported = torch.export.export(
            model,
            (pixels(config, size=(96, 80)),),
            {"interpolate_pos_encoding": True},
            dynamic_shapes={"pixel_values": auto, "interpolate_pos_encoding": None},
        ).module()
        for batch, size in ((3, (128, 64)), (1, (48, 112))):
            x = pixels(config, batch=batch, size=size)
            expected = model(x, interpolate_pos_encoding=True).logits
            torch.testing.assert_close(exported(x, interpolate_pos_encoding=True).logits, expected)
