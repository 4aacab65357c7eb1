"""The same Vision Transformer three ways, with the same weights: vit_hf, timm and transformers.

timm's randomly initialised model is the source of the weights; they are converted to vit_hf by `vit_hf.from_timm`
(parameter names are timm's under the `vit.` prefix) and mapped into transformers' `ViTForImageClassification`
(separate q/k/v projections, role names). Transformers 5 has no hybrid ResNet+ViT class, so hybrid models have no
transformers peer.
"""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import timm
import torch
from torch import nn
from transformers import ViTConfig, ViTForImageClassification

from vit_hf import ViTHFConfig, ViTHFForImageClassification, from_timm


@dataclass(frozen=True)
class ModelSpec:
    """One architecture, named as timm and as a vit_hf preset."""

    timm_name: str
    preset: str

    @property
    def config(self) -> ViTHFConfig:
        return ViTHFConfig.from_preset(self.preset)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def is_hybrid(self) -> bool:
        return self.config.backbone_depths is not None


SPECS = {
    spec.timm_name: spec
    for spec in (
        ModelSpec("vit_tiny_patch16_224", "tiny_patch16_224"),
        ModelSpec("vit_small_patch16_224", "small_patch16_224"),
        ModelSpec("vit_base_patch16_224", "base_patch16_224"),
        ModelSpec("vit_base_patch16_384", "base_patch16_384"),
        ModelSpec("vit_large_patch16_224", "large_patch16_224"),
        ModelSpec("vit_small_r26_s32_224", "small_r26_s32_224"),
        ModelSpec("vit_base_r50_s16_384", "base_r50_s16_384"),
    )
}


def get_spec(timm_name: str) -> ModelSpec:
    if timm_name not in SPECS:
        raise ValueError(f"Unknown benchmark model {timm_name!r}; choose from {', '.join(SPECS)}.")
    return SPECS[timm_name]


def make_timm(spec: ModelSpec, num_classes: int, seed: int = 0) -> nn.Module:
    """timm's model with random weights (nothing is downloaded) and a head initialised like the rest, so that
    logits depend on every weight and comparisons are meaningful."""
    torch.manual_seed(seed)
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes)
    nn.init.trunc_normal_(model.head.weight, std=0.02)
    return model


def vit_hf_from_timm(timm_model: nn.Module, spec: ModelSpec) -> ViTHFForImageClassification:
    """`vit_hf.from_timm` (weights copied, timm's head kept), in timm's train/eval mode, with the attention the recipe
    selects on its own: torch's sdpa, but two matmuls for bf16 on the CPU."""
    model = from_timm(timm_model).train(timm_model.training)
    model.set_attn_implementation("sdpa_cpu_bf16")
    return model


def transformers_from_timm(timm_model: nn.Module, spec: ModelSpec) -> ViTForImageClassification:
    """transformers' ViT with timm's weights: the fused qkv projection is split into q, k and v."""
    if spec.is_hybrid:
        raise ValueError(f"{spec.timm_name} is a hybrid model; transformers 5 has no hybrid ViT class to compare.")
    source = spec.config
    config = ViTConfig(
        hidden_size=source.hidden_size,
        num_hidden_layers=source.num_hidden_layers,
        num_attention_heads=source.num_attention_heads,
        intermediate_size=source.intermediate_size,
        hidden_act="gelu",
        layer_norm_eps=1e-6,  # timm's; transformers' default 1e-12 moves logits by ~1e-3
        image_size=spec.image_size,
        patch_size=source.patch_size,
        qkv_bias=True,
        num_labels=timm_model.num_classes,
    )
    model = ViTForImageClassification(config)
    timm_state = timm_model.state_dict()
    state = {
        "vit.embeddings.cls_token": timm_state["cls_token"],
        "vit.embeddings.position_embeddings": timm_state["pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight": timm_state["patch_embed.proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": timm_state["patch_embed.proj.bias"],
        "vit.layernorm.weight": timm_state["norm.weight"],
        "vit.layernorm.bias": timm_state["norm.bias"],
        "classifier.weight": timm_state["head.weight"],
        "classifier.bias": timm_state["head.bias"],
    }
    for index in range(config.num_hidden_layers):
        src, dst = f"blocks.{index}.", f"vit.layers.{index}."
        for kind in ("weight", "bias"):
            query, key, value = timm_state[f"{src}attn.qkv.{kind}"].chunk(3, dim=0)
            state[f"{dst}attention.q_proj.{kind}"] = query
            state[f"{dst}attention.k_proj.{kind}"] = key
            state[f"{dst}attention.v_proj.{kind}"] = value
            state[f"{dst}attention.o_proj.{kind}"] = timm_state[f"{src}attn.proj.{kind}"]
            state[f"{dst}layernorm_before.{kind}"] = timm_state[f"{src}norm1.{kind}"]
            state[f"{dst}layernorm_after.{kind}"] = timm_state[f"{src}norm2.{kind}"]
            state[f"{dst}mlp.fc1.{kind}"] = timm_state[f"{src}mlp.fc1.{kind}"]
            state[f"{dst}mlp.fc2.{kind}"] = timm_state[f"{src}mlp.fc2.{kind}"]
    model.load_state_dict(state, strict=True)
    return model


def build_peers(spec: ModelSpec, num_classes: int = 1000, seed: int = 0) -> dict[str, nn.Module]:
    """{"vit_hf": ..., "timm": ..., "transformers": ...} (no transformers for hybrids) in float32, built on the
    default device (`with torch.device(...)` to build elsewhere)."""
    timm_model = make_timm(spec, num_classes, seed)
    models = {"vit_hf": vit_hf_from_timm(timm_model, spec), "timm": timm_model}
    if not spec.is_hybrid:
        models["transformers"] = transformers_from_timm(timm_model, spec)
    return models


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Full float32 matmuls and convolutions on CUDA (no TF32, no per-call algorithm search), so that the
    implementations agree within float32 rounding. Nothing changes on CPU."""
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


def logits_of(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Logits from any of the three (timm returns a tensor, the transformers-style models an output object)."""
    output = model(pixel_values)
    return output if isinstance(output, torch.Tensor) else output.logits
