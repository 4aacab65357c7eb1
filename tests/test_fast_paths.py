from collections import Counter

import pytest
import torch
import torch._dynamo

from tests.conftest import tiny_config
from vit_hf import ViTHFForImageClassification

VARIANTS = {
    "plain": dict(),
    "hybrid": dict(backbone_depths=[1, 1], patch_size=1, image_size=64),
    "registers_drop_path": dict(num_register_tokens=2, pooling="mean", class_token=False, drop_path_rate=0.1),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_forward_compiles_as_one_graph(variant):
    """No graph breaks: torch.compile sees the whole forward and loss (a break would also mean a host sync)."""
    config = tiny_config(**VARIANTS[variant])
    model = ViTHFForImageClassification(config).train()
    pixels = torch.randn(2, 3, config.image_size, config.image_size)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(pixels, labels=torch.tensor([0, 1]))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_inference_with_resampled_positions_compiles_as_one_graph():
    config = tiny_config()
    model = ViTHFForImageClassification(config).eval()
    torch._dynamo.reset()
    with torch.inference_mode():
        explanation = torch._dynamo.explain(model)(torch.randn(1, 3, 48, 40), interpolate_pos_encoding=True)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_qkv_gradient_is_assembled_with_a_single_copy():
    """The three attention inputs are views of the fused projection's output, so backward joins their gradients
    with one concatenation (reshape/permute/unbind would cost a stack plus a copy of the whole gradient)."""
    config = tiny_config()
    attention = ViTHFForImageClassification(config).vit.blocks[0].attn
    hidden_states = torch.randn(2, 65, config.hidden_size, requires_grad=True)
    output, _ = attention(hidden_states)
    with torch.profiler.profile() as profiler:
        output.backward(torch.randn_like(output))
    ops = Counter(event.name for event in profiler.events())
    assert (ops["aten::cat"], ops["aten::stack"], ops["aten::clone"], ops["aten::copy_"]) == (1, 0, 0, 0)
