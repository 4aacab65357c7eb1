from collections import Counter

import pytest
import torch
import torch._dynamo

from tests.conftest import tiny_config
from vit_hf import ViTHFForImageClassification, modeling_vit_hf

VARIANTS = {
    "plain": dict(),
    "hybrid": dict(backbone_depths=[1, 1], patch_size=1, image_size=64),
    "registers_drop_path": dict(num_register_tokens=2, pooling="mean", class_token=False, drop_path_rate=0.1),
}


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_training_forward_compiles_as_one_graph(variant, bf16):
    """No graph breaks: torch.compile sees the whole forward and loss (a break would also mean a host sync)."""
    config = tiny_config(**VARIANTS[variant])
    model = ViTHFForImageClassification(config).train()
    pixels = torch.randn(2, 3, config.image_size, config.image_size)

    def loss(pixels, labels):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(pixels, labels=labels).loss

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(loss)(pixels, torch.tensor([0, 1]))
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


FUSED_CPU_KERNEL = "aten::_scaled_dot_product_flash_attention_for_cpu"


def bf16_logits_and_ops(model, pixels):
    with torch.profiler.profile() as profiler, torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(pixels).logits.float()
    return logits, {event.name for event in profiler.events()}


def test_sdpa_cpu_bf16_runs_bf16_attention_on_cpu_as_matmuls_as_accurately_as_the_fused_kernel(monkeypatch):
    torch.manual_seed(0)  # the same weights whatever ran before
    config = tiny_config(num_hidden_layers=4, attn_implementation="sdpa_cpu_bf16")
    model = ViTHFForImageClassification(config).eval()
    torch.nn.init.normal_(model.head.weight)
    pixels = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(pixels).logits
        logits, ops = bf16_logits_and_ops(model, pixels)
        monkeypatch.setattr(modeling_vit_hf, "MATMUL_ATTENTION_MAX_TOKENS", 16)  # 65 tokens: the fused kernel
        fused_logits, fused_ops = bf16_logits_and_ops(model, pixels)
    assert FUSED_CPU_KERNEL not in ops and FUSED_CPU_KERNEL in fused_ops
    # Mean error over 16 images: over 30 random models its ratio to the fused kernel's was 0.77 to 1.17 (a single
    # maximum is too noisy to compare).
    error, fused_error = ((out - reference).abs().mean().item() for out in (logits, fused_logits))
    assert 0 < error <= 1.25 * fused_error


def test_sdpa_means_torch_sdpa_in_bf16_on_cpu_too():
    config = tiny_config()
    model = ViTHFForImageClassification(config).eval()
    with torch.no_grad():
        _, ops = bf16_logits_and_ops(model, torch.randn(2, 3, 32, 32))
    assert FUSED_CPU_KERNEL in ops


def test_sdpa_cpu_bf16_trains_in_bf16_on_cpu():
    config = tiny_config(attention_probs_dropout_prob=0.1, attn_implementation="sdpa_cpu_bf16")
    model = ViTHFForImageClassification(config).train()
    torch.nn.init.normal_(model.head.weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 1])).loss
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
