"""Read a ViTHFConfig off a built timm `Eva` (the `eva` module: EVA-02, DINOv3, Perception Encoder, RoPE-ViT, ...),
and back: the `timm.create_model` keyword arguments of an Eva for a ViTHFConfig.

Eva models are pre-norm ViTs whose blocks name their layer scales `gamma_1` / `gamma_2`, whose attention may keep
q / k / v projections apart (or bias queries and values only) and whose position information may come from 2-D
rotary embeddings (`model.rope`). Weight names differ from vit_hf's only there; `eva_to_vit_hf_key` and
`vit_hf_to_eva_state_dict` translate.
"""

import re
from functools import partial

import torch
from timm.layers import LayerNorm, RmsNorm
from torch import nn

from ..configuration_vit_hf import ViTHFConfig, to_2tuple
from .architecture import (
    UnsupportedTimmModelError,
    attention_fields,
    common_timm_kwargs,
    embedding_fields,
    head_fields,
    is_identity,
    mlp_fields,
)

BLOCK_PLACEMENTS = {"EvaBlock": "pre", "EvaBlockPostNorm": "res_post"}
LAYER_SCALE_KEY = re.compile(r"^(blocks\.\d+\.)gamma_([12])$")
VIT_HF_LAYER_SCALE_KEY = re.compile(r"^(blocks\.\d+\.)ls([12])\.gamma$")
QV_BIAS_KEY = re.compile(r"^(blocks\.\d+\.attn\.)([qv])_bias$")
VIT_HF_QV_BIAS_KEY = re.compile(r"^(blocks\.\d+\.attn\.)qkv\.([qv])_bias$")


def eva_fields(model: nn.Module, image_size, problems: list[str]) -> dict:
    """ViTHFConfig fields of a timm Eva (norm fields aside); what has no equivalent goes to `problems`."""
    fields = embedding_fields(model, image_size, problems)
    fields.update(_eva_block_fields(model, problems))
    fields.update(_rope_fields(model, problems))
    fields.update(head_fields(model, problems))
    return fields


def _eva_block_fields(model: nn.Module, problems: list[str]) -> dict:
    per_block = [_one_eva_block(block, model.embed_dim, problems) for block in model.blocks]
    if any(fields is None for fields in per_block):
        return {}
    if any(fields != per_block[0] for fields in per_block):
        problems.append("blocks that differ from each other (heads, widths, activations, biases or layer scale)")
        return {}
    drop_path = model.blocks[-1].drop_path1
    fields = dict(per_block[0])
    fields.update(
        num_hidden_layers=len(model.blocks),
        drop_path_rate=0.0 if is_identity(drop_path) else drop_path.drop_prob,
        embed_dropout_prob=model.pos_drop.p,
    )
    return fields


def _one_eva_block(block: nn.Module, dim: int, problems: list[str]) -> dict | None:
    kind = type(block).__name__
    if kind not in BLOCK_PLACEMENTS:
        problems.append(f"unknown transformer blocks ({kind})")
        return None
    attention, mlp = attention_fields(block.attn, dim, problems), mlp_fields(block.mlp, problems)
    if attention is None or mlp is None:
        return None
    gammas = [getattr(block, "gamma_1", None), getattr(block, "gamma_2", None)]
    if (gammas[0] is None) != (gammas[1] is None):
        problems.append("layer scale on the attention branch only (attn_only_layer_scale=True)")
    if len({attention.pop("proj_drop"), mlp.pop("mlp_drop")}) > 1:
        problems.append("different dropout rates after the attention and in the MLP")
    if mlp.pop("mlp_bias") != attention["proj_bias"]:
        problems.append("an attention projection bias without MLP biases, or the reverse")
    if not (is_identity(block.drop_path1) or block.drop_path1.drop_prob == block.drop_path2.drop_prob):
        problems.append("different stochastic depth rates for the attention and MLP branches")
    init_value = getattr(block, "init_values", None) if gammas[0] is not None else None
    return dict(
        **attention,
        **mlp,
        norm_placement=BLOCK_PLACEMENTS[kind],
        layer_scale_init_value=None if init_value is None else float(init_value),
    )


def _rope_fields(model: nn.Module, problems: list[str]) -> dict:
    """The rotary embedding's kind and parameters; its head size and rotation layout must match the blocks'."""
    rope = getattr(model, "rope", None)
    if rope is None:
        return {}
    kind = type(rope).__name__
    head_dim = model.blocks[0].attn.head_dim
    if kind == "RotaryEmbeddingCat" and not rope.in_pixels and rope.grid_type == "index":
        ref = rope.ref_feat_shape
        fields = dict(
            rope_type="axial",
            rope_grid_offset=float(rope.grid_offset),
            rope_ref_grid=None if ref is None else [int(side) for side in to_2tuple(ref)],
            rope_rotate_half=rope.rotate_half,
        )
    elif kind == "RotaryEmbeddingDinoV3" and rope.min_period is None and rope.normalize_coords == "separate":
        fields = dict(rope_type="dinov3", rope_grid_offset=float(rope.grid_offset), rope_rotate_half=rope.rotate_half)
    elif kind == "RotaryEmbeddingMixed" and rope.depth == len(model.blocks):
        fields = dict(rope_type="mixed", rope_rotate_half=False)
        head_dim = head_dim * rope.num_heads  # RotaryEmbeddingMixed's `dim` is the model width
    else:
        problems.append(f"rotary embeddings of another kind ({kind} with pixel frequencies, periods or other grids)")
        return {}
    if rope.dim != head_dim:
        problems.append("rotary embeddings over part of each head")
    layouts = {bool(getattr(block.attn, "rotate_half", False)) for block in model.blocks}
    if layouts != {fields["rope_rotate_half"]}:
        problems.append("rotary embeddings whose layout differs from the attention's (rotate_half)")
    return dict(fields, rope_temperature=float(rope.temperature), rope_grid_indexing=rope.grid_indexing)


def eva_to_vit_hf_state_dict(state_dict: dict[str, torch.Tensor], config: ViTHFConfig) -> dict[str, torch.Tensor]:
    """timm Eva names -> vit_hf names: layer scales `gamma_N` -> `lsN.gamma`, `attn.{q,v}_bias` ->
    `attn.qkv.{q,v}_bias`, and separate q / k / v projections fused into `attn.qkv` (a zero key bias dropped)."""
    converted = {}
    for key, value in state_dict.items():
        key = LAYER_SCALE_KEY.sub(r"\1ls\2.gamma", key)
        key = QV_BIAS_KEY.sub(r"\1qkv.\2_bias", key)
        converted[key] = value
    for index in range(config.num_hidden_layers):
        prefix = f"blocks.{index}.attn."
        if f"{prefix}q_proj.weight" not in converted:
            continue
        parts = [converted.pop(f"{prefix}{name}_proj.weight") for name in "qkv"]
        converted[f"{prefix}qkv.weight"] = torch.cat(parts)  # (3C, C)
        biases = [converted.pop(f"{prefix}{name}_proj.bias", None) for name in "qkv"]
        if config.qkv_bias and config.key_bias:
            converted[f"{prefix}qkv.bias"] = torch.cat(biases)
        elif config.qkv_bias:
            converted[f"{prefix}qkv.q_bias"], converted[f"{prefix}qkv.v_bias"] = biases[0], biases[2]
    return converted


def vit_hf_to_eva_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vit_hf names -> the names of a timm Eva with a fused qkv projection (`qkv_fused=True`)."""
    converted = {}
    for key, value in state_dict.items():
        key = VIT_HF_LAYER_SCALE_KEY.sub(r"\1gamma_\2", key)
        converted[VIT_HF_QV_BIAS_KEY.sub(r"\1\2_bias", key)] = value
    return converted


def needs_eva(config: ViTHFConfig) -> bool:
    """Whether only timm's Eva (not its VisionTransformer) expresses the config: rotary embeddings or no key bias."""
    return config.rope_type is not None or not config.key_bias


def eva_kwargs_from_config(config: ViTHFConfig, num_classes: int) -> dict:
    """The `timm.create_model` keyword arguments of the timm Eva a ViTHFConfig describes (the inverse of
    `config_from_timm` for Eva models), with a `num_classes` head and a fused qkv projection. Raises ValueError
    naming what Eva cannot express."""
    problems = _eva_export_problems(config)
    if problems:
        listing = "".join(f"\n  - {problem}" for problem in problems)
        raise ValueError(f"This model cannot be expressed as a timm Eva; timm lacks:{listing}")
    gated = config.mlp_type != "mlp"
    norm_class = RmsNorm if config.norm_type == "rmsnorm" else LayerNorm
    kwargs = dict(
        **common_timm_kwargs(config, num_classes),
        qkv_bias=config.qkv_bias,
        qkv_fused=True,
        qk_norm=config.qk_norm,
        mlp_ratio=config.intermediate_size / config.hidden_size,  # Eva doubles a packed fc1 itself
        swiglu_mlp=gated,
        scale_mlp=config.scale_mlp_norm,
        scale_attn_inner=config.scale_attn_norm,
        attn_type="eva" if not config.key_bias or not config.qkv_bias else "rope",
        norm_layer=partial(norm_class, eps=config.layer_norm_eps),
        init_values=config.layer_scale_init_value,
        class_token=config.class_token,
        num_reg_tokens=config.num_register_tokens,
        no_embed_class=config.no_embed_class,
        use_abs_pos_emb=config.use_pos_embed,
        use_post_norm=config.norm_placement == "res_post",
        use_pre_transformer_norm=config.pre_norm,
        use_post_transformer_norm=config.final_norm and not config.use_fc_norm,
        use_fc_norm=config.final_norm and config.use_fc_norm,
    )
    kwargs.update(_rope_kwargs(config))
    return kwargs


def _rope_kwargs(config: ViTHFConfig) -> dict:
    if config.rope_type is None:
        return dict(use_rot_pos_emb=False)
    rope_type = {"axial": "cat", "dinov3": "dinov3", "mixed": "mixed"}[config.rope_type]
    return dict(
        use_rot_pos_emb=True,
        rope_type=rope_type,
        rope_temperature=config.rope_temperature,
        rope_grid_offset=config.rope_grid_offset,
        rope_grid_indexing=config.rope_grid_indexing,
        rope_rotate_half=config.rope_rotate_half,
        ref_feat_shape=None if config.rope_ref_grid is None else tuple(config.rope_ref_grid),
    )


def _eva_export_problems(config: ViTHFConfig) -> list[str]:
    problems = []
    if config.patch_stride != config.patch_size:
        problems.append("overlapping patches (patch_stride < patch_size)")
    if config.backbone_depths is not None:
        problems.append("a hybrid backbone")
    if config.patch_embed_bias == config.pre_norm:
        problems.append("a patch-embedding bias that is not `not pre_norm` (timm ties the two)")
    if config.patch_embed_norm or config.distillation_token:
        problems.append("a norm after the patch embedding or a distillation token")
    if config.norm_placement == "post" or (config.norm_placement == "res_post" and config.layer_scale_init_value):
        problems.append(f"norm_placement={config.norm_placement!r} (with layer scale)")
    if config.mlp_type == "mlp" and config.hidden_act != "gelu":
        problems.append(f"an MLP activation other than GELU ({config.hidden_act!r})")
    if config.mlp_type != "mlp" and config.hidden_act != "silu":
        problems.append(f"a gated MLP activation other than SiLU ({config.hidden_act!r})")
    if config.mlp_type == "swiglu" and not config.scale_mlp_norm:
        problems.append("separate gate and value projections without an MLP norm (Eva packs them then)")
    if config.mlp_type == "swiglu_packed" and config.scale_mlp_norm:
        problems.append("a packed gated MLP with an MLP norm (Eva separates the projections then)")
    if config.pooling == "map":
        problems.append("attention pooling (its head and MLP sizes are not recorded for Eva)")
    if config.rope_type == "mixed" and config.rope_ref_grid is not None:
        problems.append("a reference grid for mixed rotary embeddings")
    return problems


__all__ = [
    "UnsupportedTimmModelError",
    "eva_fields",
    "eva_kwargs_from_config",
    "eva_to_vit_hf_state_dict",
    "needs_eva",
    "vit_hf_to_eva_state_dict",
]
