"""Read a ViTHFConfig off a built timm VisionTransformer (plain or hybrid ResNetV2 + ViT), and back.

Everything comes from the model's modules and attributes, never from its name, so custom timm models (other
depths, widths, pooling...) convert as well as registered ones. Anything that changes the computation and has no
ViTHFConfig equivalent (an RMSNorm, a SwiGLU MLP, a ResNet-D backbone...) is collected and
reported in one `UnsupportedTimmModelError`, so the conversion is exact or does not happen. The way back,
`timm_kwargs_from_config`, gives every `timm.create_model` keyword argument of a config, or names what timm lacks.
"""

from functools import partial

import timm
import torch
from timm.layers import (
    GELU,
    AttentionPoolLatent,
    GELUTanh,
    GroupNormAct,
    HybridEmbed,
    LayerNorm,
    LayerScale,
    Mlp,
    PatchEmbed,
    QuickGELU,
    RmsNorm,
    SwiGLU,
    SwiGLUPacked,
)
from timm.layers import StdConv2dSame as TimmStdConv2dSame
from timm.layers.pool2d_same import MaxPool2dSame
from timm.models.deit import VisionTransformerDistilled
from timm.models.eva import Eva
from timm.models.resnetv2 import Bottleneck, DownsampleConv, ResNetV2, create_resnetv2_stem
from timm.models.vision_transformer import Block, ParallelScalingBlock, ResPostBlock, VisionTransformer
from torch import nn

from ..configuration_vit_hf import ViTHFConfig, to_2tuple
from .resnet_d import resnet_d_embed_layer, resnet_d_fields

# timm activation modules and the transformers ACT2FN names computing the same function.
ACTIVATIONS = {
    (nn.GELU, "none"): "gelu",
    (nn.GELU, "tanh"): "gelu_pytorch_tanh",
    (GELU, None): "gelu",
    (GELUTanh, None): "gelu_pytorch_tanh",
    (QuickGELU, None): "quick_gelu",
    (nn.SiLU, None): "silu",
    (nn.ReLU, None): "relu",
}
# ViTHFConfig.hidden_act -> timm's act_layer names for the same modules.
TIMM_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "quick_gelu": "quick_gelu",
    "silu": "silu",
    "relu": "relu",
}
# timm's pooling names -> ViTHFConfig.pooling.
POOLING = {"token": "cls", "avg": "mean", "max": "max", "avgmax": "avgmax", "map": "map"}
TIMM_POOLING = {pooling: name for name, pooling in POOLING.items()}
# timm's pre-norm and residual post-norm blocks -> ViTHFConfig.norm_placement.
BLOCK_PLACEMENTS = {Block: "pre", ResPostBlock: "res_post"}
# Blocks, attention and MLP layers timm's ViTs use that vit_hf does not implement, by the feature they stand for.
UNSUPPORTED_LAYERS = {
    "ParallelScalingBlock": "parallel attention + MLP blocks (ParallelScalingBlock)",
    "DiffParallelScalingBlock": "parallel blocks with differential attention (DiffParallelScalingBlock)",
    "ParallelThingsBlock": "parallel attention + MLP branches (ParallelThingsBlock)",
    "DiffAttention": "differential attention (DiffAttention)",
    "GluMlp": "a gated MLP gating its second half (GluMlp gate_last=True)",
    "FeatureListNet": "a ResNet backbone other than BiT's ResNetV2 (e.g. the ResNet-D of vit_*_resnet*d_*)",
    "ResNet": "a ResNet backbone other than BiT's ResNetV2 (e.g. ResNet-D)",
    "ConvStem": "a convolutional-stem backbone (ConvStem, MobileCLIP)",
}


class UnsupportedTimmModelError(ValueError):
    """The timm model uses architecture features vit_hf does not implement; `features` lists them."""

    def __init__(self, model_name: str, features: list[str]):
        self.features = features
        listing = "".join(f"\n  - {feature}" for feature in features)
        super().__init__(f"timm model {model_name!r} cannot be converted exactly; vit_hf does not support:{listing}")


def timm_model_name(model: nn.Module) -> str | None:
    """`architecture.tag` from the model's pretrained config (e.g. `vit_base_patch16_224.augreg2_in21k_ft_in1k`)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    architecture, tag = cfg.get("architecture"), cfg.get("tag")
    if architecture is None:
        return None
    return f"{architecture}.{tag}" if tag else architecture


def timm_grid_size(model: VisionTransformer) -> tuple[int, int]:
    """The token grid of the timm model's position embeddings."""
    return tuple(model.patch_embed.grid_size)


def config_from_timm(model: nn.Module, image_size: int | tuple[int, int] | None = None, **kwargs) -> ViTHFConfig:
    """The ViTHFConfig of a built timm VisionTransformer. `image_size` overrides the timm model's input size (the
    position embeddings are then resampled at conversion); other keyword arguments are passed to ViTHFConfig
    (e.g. `num_labels`). Raises UnsupportedTimmModelError naming every feature that has no equivalent."""
    name = timm_model_name(model) or type(model).__name__
    problems: list[str] = []
    if type(model) in (VisionTransformer, VisionTransformerDistilled):
        fields = embedding_fields(model, image_size, problems)
        fields.update(_block_fields(model, problems))
        fields.update(head_fields(model, problems))
    elif type(model) is Eva:
        from .eva import eva_fields  # eva builds on this module's helpers

        fields = eva_fields(model, image_size, problems)
    else:
        raise UnsupportedTimmModelError(
            name, [f"model class {type(model).__name__} (vit_hf converts timm's VisionTransformer and Eva)"]
        )
    fields.update(norm_fields(model_norms(model), problems))
    if problems:
        raise UnsupportedTimmModelError(name, list(dict.fromkeys(problems)))  # each feature once, in order
    return ViTHFConfig(**fields, **kwargs)


def is_identity(module: nn.Module | None) -> bool:
    return module is None or isinstance(module, nn.Identity)


def embedding_fields(model: VisionTransformer, image_size, problems: list[str]) -> dict:
    patch_embed = model.patch_embed
    fields = {}
    if type(patch_embed) is HybridEmbed:
        if not isinstance(patch_embed.proj, nn.Conv2d):
            problems.append("a hybrid embedding without projection (HybridEmbed proj=False)")
        fields.update(_backbone_fields(patch_embed.backbone, problems))
        token_stride = patch_embed.feat_ratio(as_scalar=False)
        if fields.get("backbone_depths") is not None:
            expected = 4 * 2 ** max(len(fields["backbone_depths"]) - 1, 0) * patch_embed.patch_size[0]
            if token_stride != (expected, expected):
                problems.append(f"a dilated ResNetV2 backbone (token stride {token_stride}, output_stride < 32)")
    elif type(patch_embed) is PatchEmbed:
        fields["num_channels"] = patch_embed.proj.in_channels
        token_stride = patch_embed.patch_size
    else:
        problems.append(f"an unknown patch embedding ({type(patch_embed).__name__})")
        return fields
    if patch_embed.patch_size[0] != patch_embed.patch_size[1]:
        problems.append(f"non-square patches ({patch_embed.patch_size})")
    if patch_embed.dynamic_img_pad:
        problems.append("padding of images that are not a multiple of the patch size (dynamic_img_pad=True)")
    if not is_identity(model.patch_drop):
        problems.append("patch dropout (patch_drop_rate > 0)")

    height, width = to_2tuple(patch_embed.img_size if image_size is None else image_size)
    hybrid = type(patch_embed) is HybridEmbed  # plain patches drop the remainder as timm's convolution does
    if hybrid and (height % token_stride[0] or width % token_stride[1]):
        stride = token_stride[0]
        lower, upper = height // stride * stride, (height // stride + 1) * stride
        problems.append(
            f"an input size that is not a multiple of the patch stride ({height}x{width} px, {stride} px stride; timm "
            f"drops the last pixel rows and columns, vit_hf needs whole patches): convert with image_size={lower} or "
            f"{upper}"
        )
    proj = patch_embed.proj
    fields.update(
        image_size=height if height == width else [height, width],
        patch_size=patch_embed.patch_size[0],
        patch_embed_bias=isinstance(proj, nn.Conv2d) and proj.bias is not None,
        hidden_size=model.embed_dim,
        class_token=model.cls_token is not None,
        num_register_tokens=0 if getattr(model, "reg_token", None) is None else model.reg_token.shape[1],
        use_pos_embed=model.pos_embed is not None,
        no_embed_class=model.pos_embed is not None and model.no_embed_class,
        pre_norm=not is_identity(model.norm_pre),
        patch_embed_norm=not is_identity(getattr(patch_embed, "norm", None)),
        distillation_token=getattr(model, "dist_token", None) is not None,
    )
    return fields


def _backbone_fields(backbone: nn.Module, problems: list[str]) -> dict:
    """ViTHFConfig backbone fields of a BiT ResNetV2 (or its stem alone), checking every layer matches vit_hf's."""
    stem_names = ["conv", "norm", "pool"]
    if type(backbone) is ResNetV2:
        stem, stages = backbone.stem, list(backbone.stages)
        if not is_identity(backbone.norm):
            problems.append("a pre-activation ResNetV2 backbone (preact=True)")
    elif type(backbone) is nn.Sequential and [name for name, _ in backbone.named_children()] == stem_names:
        stem, stages = backbone, []  # timm's stem-only hybrid (vit_tiny_r_s16_p8_*)
    elif (fields := resnet_d_fields(backbone, problems)) is not None:
        return fields
    else:
        kind = type(backbone).__name__
        problems.append(UNSUPPORTED_LAYERS.get(kind, f"a {kind} backbone (vit_hf implements BiT's ResNetV2)"))
        return {}
    if [name for name, _ in stem.named_children()] != stem_names:
        problems.append("a ResNetV2 stem other than 7x7 conv + norm + max pool (e.g. a deep stem)")
        return {}
    _check_backbone_layers(backbone, problems)
    if type(stem.pool) is not MaxPool2dSame or stem.pool.kernel_size != (3, 3) or stem.pool.stride != (2, 2):
        problems.append("a ResNetV2 stem pool other than a 3x3 stride-2 'SAME' max pool")
    if stem.conv.kernel_size != (7, 7) or stem.conv.stride != (2, 2):
        problems.append("a ResNetV2 stem convolution other than 7x7 stride 2")
    width_factor = stages[0].blocks[0].conv3.out_channels // 256 if stages else 1
    activations = [(stem.norm, True)]
    for index, stage in enumerate(stages):
        if stage.blocks[0].conv3.out_channels != 256 * 2**index * width_factor:
            problems.append("ResNetV2 stage widths other than (256, 512, 1024, 2048) x width factor")
        for number, block in enumerate(stage.blocks):
            activations += _bottleneck_norms(block, first=number == 0, problems=problems)
    if any(isinstance(norm.act, nn.ReLU) != relu for norm, relu in activations if type(norm) is GroupNormAct):
        problems.append("ResNetV2 norm activations other than ReLU after the first two convolutions of a block")
    return dict(
        num_channels=stem.conv.in_channels,
        backbone_depths=[len(stage.blocks) for stage in stages],
        backbone_stem_channels=stem.conv.out_channels // width_factor,
        backbone_width_factor=width_factor,
    )


def _bottleneck_norms(block: nn.Module, first: bool, problems: list[str]) -> list[tuple[nn.Module, bool]]:
    """Checks one ResNetV2 block against vit_hf's post-activation Bottleneck; returns its norms, each with whether
    a ReLU must follow it."""
    if type(block) is not Bottleneck:
        problems.append(f"ResNetV2 blocks of type {type(block).__name__} (vit_hf has post-activation Bottleneck)")
        return []
    if block.conv1.out_channels * 4 != block.conv3.out_channels:
        problems.append("a ResNetV2 bottleneck ratio other than 1/4")
    if (type(block.downsample) is DownsampleConv) != first or not is_identity(block.drop_path):
        problems.append("ResNetV2 blocks with other shortcuts (avg_down) or stochastic depth")
    if not isinstance(block.act3, nn.ReLU):
        problems.append(f"backbone activation {type(block.act3).__name__} (vit_hf: ReLU)")
    norms = [(block.norm1, True), (block.norm2, True), (block.norm3, False)]
    if block.downsample is not None:
        norms.append((block.downsample.norm, False))
    return norms


def _check_backbone_layers(backbone: nn.Module, problems: list[str]) -> None:
    """vit_hf's backbone holds weights only in weight-standardised 'SAME' convolutions (eps 1e-8, no bias) and in
    GroupNorm(32 groups, eps 1e-5) layers followed by ReLU or nothing."""
    for module in backbone.modules():
        if next(module.parameters(recurse=False), None) is None:
            continue
        kind = type(module).__name__
        if type(module) is TimmStdConv2dSame:
            if module.eps != 1e-8 or module.bias is not None or module.dilation != (1, 1) or module.groups != 1:
                problems.append(
                    "backbone convolutions with bias, dilation, groups or a weight-standardisation eps != 1e-8"
                )
        elif type(module) is GroupNormAct:
            if (module.num_groups, module.eps) != (32, 1e-5) or not is_identity(module.drop):
                problems.append("backbone GroupNorms other than 32 groups with eps 1e-5")
            if not isinstance(module.act, (nn.ReLU, nn.Identity)):
                problems.append(f"backbone activation {type(module.act).__name__} (vit_hf: ReLU)")
        else:
            problems.append(f"backbone layers of type {kind} (vit_hf: StdConv2dSame and GroupNorm)")


def _block_fields(model: VisionTransformer, problems: list[str]) -> dict:
    """Transformer-block fields, equal in every block (vit_hf blocks share one configuration)."""
    per_block = [_one_block_fields(block, model.embed_dim, problems) for block in model.blocks]
    if any(fields is None for fields in per_block):
        return {}
    if any(fields != per_block[0] for fields in per_block):
        problems.append("blocks that differ from each other (heads, widths, activations, biases or layer scale)")
        return {}
    fields = dict(per_block[0]) if per_block else {}
    last = model.blocks[-1] if len(model.blocks) else None
    drop_path = getattr(last, "drop_path1", getattr(last, "drop_path", None))  # parallel blocks have one
    fields.update(
        num_hidden_layers=len(model.blocks),
        drop_path_rate=0.0 if is_identity(drop_path) else drop_path.drop_prob,
    )
    fields["embed_dropout_prob"] = model.pos_drop.p
    return fields


def _one_block_fields(block: nn.Module, dim: int, problems: list[str]) -> dict | None:
    kind = type(block).__name__
    if type(block) is ParallelScalingBlock:
        return _parallel_block_fields(block, dim, problems)
    if type(block) not in BLOCK_PLACEMENTS:
        problems.append(UNSUPPORTED_LAYERS.get(kind, f"unknown transformer blocks ({kind})"))
        return None
    attention, mlp = attention_fields(block.attn, dim, problems), mlp_fields(block.mlp, problems)
    if attention is None or mlp is None:
        return None
    if not (is_identity(block.drop_path1) or block.drop_path1.drop_prob == block.drop_path2.drop_prob):
        problems.append("different stochastic depth rates for the attention and MLP branches")
    scales = [getattr(block, "ls1", None), getattr(block, "ls2", None)]  # ResPostBlock has none
    if any(not is_identity(scale) and type(scale) is not LayerScale for scale in scales):
        problems.append(f"an unknown layer scale ({type(scales[0]).__name__})")
    elif is_identity(scales[0]) != is_identity(scales[1]):
        problems.append("layer scale on one residual branch only")
    if len({attention.pop("proj_drop"), mlp.pop("mlp_drop")}) > 1:
        problems.append("different dropout rates after the attention and in the MLP")
    if mlp.pop("mlp_bias") != attention["proj_bias"]:
        problems.append("an attention projection bias without MLP biases, or the reverse")
    return dict(
        **attention,
        **mlp,
        norm_placement=BLOCK_PLACEMENTS[type(block)],
        layer_scale_init_value=None if is_identity(scales[0]) else float(scales[0].init_values),
    )


def _parallel_block_fields(block: ParallelScalingBlock, dim: int, problems: list[str]) -> dict | None:
    """A ParallelScalingBlock is vit_hf's parallel block once its fused input projection is split into the MLP's
    fc1 and the attention's qkv (`parallel_to_vit_hf_state_dict`)."""
    if block.out_proj is not None:
        problems.append("parallel blocks with one fused output projection (fuse_out_proj=True)")
        return None
    if block.attn_out_proj.bias is None or block.mlp_out_proj.bias is None:
        problems.append("parallel blocks without output projection biases")
    if block.mlp_drop.p or block.attn_drop.p:
        problems.append("dropout in parallel blocks")
    if not (is_identity(block.drop_path) or is_identity(block.ls) or type(block.ls) is LayerScale):
        problems.append(f"an unknown layer scale ({type(block.ls).__name__})")
    act = block.mlp_act
    hidden_act = ACTIVATIONS.get((type(act), getattr(act, "approximate", None)))
    if hidden_act is None:
        problems.append(f"an MLP activation without a transformers equivalent ({act!r})")
    return dict(
        norm_placement="parallel",
        num_attention_heads=block.num_heads,
        intermediate_size=block.in_split[0],
        hidden_act=hidden_act,
        qkv_bias=block.in_proj.bias is not None,
        qk_norm=not is_identity(block.q_norm),
        layer_scale_init_value=None if is_identity(block.ls) else float(block.ls.init_values),
    )


def attention_fields(attn: nn.Module, dim: int, problems: list[str]) -> dict | None:
    """ViTHFConfig fields of a timm self-attention layer: Attention (vision_transformer), EvaAttention (queries and
    values biased, keys not) or AttentionRope (eva), with a fused or separate q / k / v projection; None (and the
    reason in `problems`) for other layers. `proj_drop` is returned for the caller to compare."""
    kind = type(attn).__name__
    if kind not in ("Attention", "EvaAttention", "AttentionRope"):
        problems.append(UNSUPPORTED_LAYERS.get(kind, f"unknown attention layers ({kind})"))
        return None
    heads, head_dim = attn.num_heads, attn.head_dim
    if heads * head_dim != dim or attn.proj.out_features != dim:
        problems.append("an attention width different from the model width (attn_head_dim / dim_out)")
    if getattr(attn, "num_kv_heads", heads) != heads:
        problems.append("grouped-query attention (num_kv_heads < num_heads)")
    if getattr(attn, "gate", None) is not None:
        problems.append("gated attention (gated=True)")
    separate = getattr(attn, "qkv", None) is None
    if kind == "EvaAttention":
        qkv_bias = (attn.q_proj.bias if separate else attn.q_bias) is not None
        key_bias = not qkv_bias  # EVA's key bias is a fixed zero
    else:
        qkv_bias = (attn.q_proj.bias if separate else attn.qkv.bias) is not None
        key_bias = True
    return dict(
        num_attention_heads=heads,
        qkv_bias=qkv_bias,
        key_bias=key_bias,
        qk_norm=not is_identity(attn.q_norm),
        proj_bias=attn.proj.bias is not None,
        scale_attn_norm=not is_identity(attn.norm),
        attention_probs_dropout_prob=attn.attn_drop.p,
        hidden_dropout_prob=attn.proj_drop.p,
        proj_drop=attn.proj_drop.p,
    )


def mlp_fields(mlp: nn.Module, problems: list[str]) -> dict | None:
    """ViTHFConfig fields of a timm MLP: Mlp, SwiGLU (separate gate and value projections) or GluMlp with the gate
    first (SwiGLUPacked); None (and the reason in `problems`) for other layers. `mlp_drop` is for the caller."""
    kind = type(mlp).__name__
    if kind == "Mlp":
        fc1, mlp_type, width = mlp.fc1, "mlp", mlp.fc1.out_features
    elif kind == "SwiGLU":
        fc1, mlp_type, width = mlp.fc1_g, "swiglu", mlp.fc1_g.out_features
    elif kind == "GluMlp" and not mlp.gate_last and mlp.chunk_dim == -1:
        fc1, mlp_type, width = mlp.fc1, "swiglu_packed", mlp.fc1.out_features // 2
    else:
        problems.append(UNSUPPORTED_LAYERS.get(kind, f"unknown MLP layers ({kind})"))
        return None
    if not isinstance(fc1, nn.Linear) or (fc1.bias is None) != (mlp.fc2.bias is None):
        problems.append("MLP layers with a bias on one projection only")
    act = mlp.act
    hidden_act = ACTIVATIONS.get((type(act), getattr(act, "approximate", None)))
    if hidden_act is None:
        problems.append(f"an MLP activation without a transformers equivalent ({act!r})")
    if mlp.drop1.p != mlp.drop2.p:
        problems.append("different dropout rates after the attention and in the MLP")
    return dict(
        intermediate_size=width,
        mlp_type=mlp_type,
        hidden_act=hidden_act,
        scale_mlp_norm=not is_identity(mlp.norm),
        mlp_bias=fc1.bias is not None,
        mlp_drop=mlp.drop1.p,
    )


def head_fields(model: VisionTransformer, problems: list[str]) -> dict:
    if model.attn_pool is not None:
        problems.extend(_attention_pool_problems(model))
    elif model.global_pool not in POOLING:
        problems.append(f"no pooling (global_pool={model.global_pool!r}: a head on every token)")
    has_norm, has_fc_norm = not is_identity(model.norm), not is_identity(model.fc_norm)
    head = model.head
    if not isinstance(head, (nn.Linear, nn.Identity)):
        problems.append(f"an unknown classifier head ({type(head).__name__})")
    elif isinstance(head, nn.Linear) and head.bias is None:
        problems.append("a classifier head without bias")
    pool = model.attn_pool
    pool_heads = pool.num_heads if pool is not None and pool.num_heads != model.blocks[0].attn.num_heads else None
    # timm's Eva attention-pools every token; VisionTransformer says so in `pool_include_prefix`.
    include_prefix = getattr(model, "pool_include_prefix", type(model).__name__ == "Eva" and pool is not None)
    return dict(
        pool_include_prefix=include_prefix,
        attention_pool_heads=pool_heads,
        pooling=POOLING.get(model.global_pool, "cls"),
        final_norm=has_norm or has_fc_norm,
        fc_norm=has_fc_norm,
        classifier_dropout_prob=model.head_drop.p,
    )


def _attention_pool_problems(model: VisionTransformer) -> list[str]:
    """What keeps an attention-pool head from being vit_hf's `pooling="map"`: one learned query of the model's
    width with biased projections, the blocks' MLP width and activation, a LayerNorm before the MLP, no dropout."""
    pool = model.attn_pool
    if type(pool) is not AttentionPoolLatent or model.global_pool != "map":
        return [f"an attention-pool head other than 'map' (global_pool={model.global_pool!r}, {type(pool).__name__})"]
    problems = []
    block = model.blocks[0] if len(model.blocks) else None
    standard_mlps = type(getattr(block, "mlp", None)) is Mlp and type(pool.mlp) is Mlp
    same_as_blocks = (
        standard_mlps
        and pool.mlp.fc1.out_features == block.mlp.fc1.out_features
        and type(pool.mlp.act) is type(block.mlp.act)
        and getattr(pool.mlp.act, "approximate", None) == getattr(block.mlp.act, "approximate", None)
    )
    if not same_as_blocks:
        problems.append("an attention-pool head whose MLP width or activation differ from the blocks'")
    if pool.latent_len != 1 or pool.pos_embed is not None or pool.pool not in ("token", "avg"):
        problems.append("an attention-pool head with several queries or its own position embeddings")
    if not (pool.latent_dim == pool.out_features == pool.kv.in_features == model.embed_dim):
        problems.append("an attention-pool head of another width than the model")
    if not isinstance(pool.q, nn.Linear) or pool.q.bias is None or pool.kv.bias is None:
        problems.append("an attention-pool head without a biased query projection (q_proj / qkv_bias)")
    if not (is_identity(pool.q_norm) and is_identity(pool.k_norm)):
        problems.append("an attention-pool head with query / key norms")
    if is_identity(pool.norm) or (type(pool.mlp) is Mlp and not is_identity(pool.mlp.norm)):
        problems.append("an attention-pool head without a norm before its MLP, or with one inside it")
    dropouts = [pool.proj_drop.p] + ([pool.mlp.drop1.p, pool.mlp.drop2.p] if type(pool.mlp) is Mlp else [])
    if any(dropouts):
        problems.append("an attention-pool head with dropout")
    return problems


def model_norms(model: nn.Module) -> list[nn.Module]:
    """Every norm of a timm ViT or Eva: around the blocks, inside them (query / key, attention output, MLP) and in
    the head."""
    norms = [getattr(model.patch_embed, "norm", None), model.norm_pre, model.norm, model.fc_norm]
    pool = getattr(model, "attn_pool", None)
    norms += [getattr(pool, "norm", None)]
    for block in model.blocks:
        norms += [getattr(block, name, None) for name in ("norm1", "norm2", "in_norm", "q_norm", "k_norm")]
        attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
        norms += [getattr(attn, name, None) for name in ("q_norm", "k_norm", "norm")]
        norms += [getattr(mlp, "norm", None)]
    return norms


def norm_fields(norms: list[nn.Module | None], problems: list[str]) -> dict:
    """`norm_type` and `layer_norm_eps`: vit_hf uses one kind of norm with one eps throughout."""
    kinds, eps = set(), set()
    for norm in norms:
        if is_identity(norm):
            continue
        kind = type(norm).__name__
        if type(norm) is RmsNorm and norm.weight is not None:
            kinds.add("rmsnorm")
        elif isinstance(norm, nn.LayerNorm) and norm.elementwise_affine and norm.bias is not None:
            kinds.add("layernorm")
        elif isinstance(norm, nn.LayerNorm):
            problems.append("LayerNorms without a learned scale and bias")
            continue
        else:
            problems.append(UNSUPPORTED_LAYERS.get(kind, f"{kind} normalisation layers (vit_hf: LayerNorm, RMSNorm)"))
            continue
        eps.add(norm.eps)
    if len(kinds) > 1:
        problems.append("LayerNorm and RMSNorm layers in one model")
    if len(eps) > 1:
        problems.append(f"norms with different eps values ({sorted(eps)})")
    return dict(norm_type=kinds.pop() if len(kinds) == 1 else "layernorm", layer_norm_eps=eps.pop() if eps else 1e-6)


def timm_kwargs_from_config(config: ViTHFConfig, num_classes: int) -> dict:
    """The `timm.create_model` keyword arguments of the timm VisionTransformer a ViTHFConfig describes (the inverse
    of `config_from_timm`), with a `num_classes` head. Every architecture option is set, overriding the defaults of
    the model name they are passed with, which must name a timm VisionTransformer with standard blocks (e.g. the
    model it was converted from, `config.timm_model`, or `vit_base_patch16_224`). A hybrid's backbone is built by
    `embed_layer` (`timm_hybrid_embed`) from the config's stage depths and widths.

    Raises ValueError naming every config choice timm's VisionTransformer cannot express: overlapping patches
    (`patch_stride < patch_size`), a patch-embedding bias that is not `not pre_norm` (timm ties the two), an
    activation timm does not name, or an MLP width that is not `int(hidden_size * mlp_ratio)` for a float ratio.
    """
    mlp_ratio = _timm_mlp_ratio(config)
    problems = _vision_transformer_export_problems(config)
    if problems:
        listing = "".join(f"\n  - {problem}" for problem in problems)
        raise ValueError(f"This model cannot be expressed as a timm VisionTransformer; timm lacks:{listing}")
    norm_layer = partial(RmsNorm if config.norm_type == "rmsnorm" else LayerNorm, eps=config.layer_norm_eps)
    kwargs = dict(
        **common_timm_kwargs(config, num_classes),
        mlp_ratio=mlp_ratio,
        qkv_bias=config.qkv_bias,
        qk_norm=config.qk_norm,
        init_values=config.layer_scale_init_value,
        class_token=config.class_token,
        reg_tokens=config.num_register_tokens,
        pos_embed="learn" if config.use_pos_embed else "none",
        no_embed_class=config.no_embed_class,
        pre_norm=config.pre_norm,
        final_norm=config.final_norm,
        fc_norm=config.use_fc_norm,
        norm_layer=norm_layer,
        act_layer=TIMM_ACTIVATIONS[config.hidden_act],
        mlp_layer={"mlp": Mlp, "swiglu": SwiGLU, "swiglu_packed": SwiGLUPacked}[config.mlp_type],
        scale_attn_norm=config.scale_attn_norm,
        scale_mlp_norm=config.scale_mlp_norm,
        proj_bias=config.proj_bias,
        embed_norm_layer=norm_layer if config.patch_embed_norm else None,
        block_fn={"res_post": ResPostBlock, "parallel": ParallelScalingBlock}.get(config.norm_placement, Block),
        pool_include_prefix=config.pool_include_prefix,
    )
    if config.backbone_type == "resnet_d":
        kwargs["embed_layer"] = resnet_d_embed_layer(config.backbone_depths)
    elif config.backbone_depths is not None:
        kwargs["embed_layer"] = partial(
            timm_hybrid_embed,
            backbone_depths=tuple(config.backbone_depths),
            stem_channels=config.backbone_stem_channels,
            width_factor=config.backbone_width_factor,
        )
    return kwargs


def common_timm_kwargs(config: ViTHFConfig, num_classes: int) -> dict:
    """The `timm.create_model` arguments that timm's VisionTransformer and Eva share: sizes, pooling, dropouts."""
    return dict(
        img_size=to_2tuple(config.image_size),
        patch_size=config.patch_size,
        in_chans=config.num_channels,
        num_classes=num_classes,
        global_pool=TIMM_POOLING[config.pooling],
        embed_dim=config.hidden_size,
        depth=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        drop_rate=config.classifier_dropout_prob,
        pos_drop_rate=config.embed_dropout_prob,
        proj_drop_rate=config.hidden_dropout_prob,
        attn_drop_rate=config.attention_probs_dropout_prob,
        drop_path_rate=config.drop_path_rate,
    )


def _timm_mlp_ratio(config: ViTHFConfig) -> float:
    """timm's `mlp_ratio` for the config's MLP width (timm's packed gated MLP counts both halves of fc1)."""
    fc1_width = config.intermediate_size * (2 if config.mlp_type == "swiglu_packed" else 1)
    return fc1_width / config.hidden_size


def _vision_transformer_export_problems(config: ViTHFConfig) -> list[str]:
    """The config's choices that timm's VisionTransformer has no argument for."""
    problems = []
    if config.patch_stride != config.patch_size:
        problems.append(f"overlapping patches (patch_stride={config.patch_stride}, patch_size={config.patch_size})")
    if config.patch_embed_bias == config.pre_norm:
        problems.append(
            f"patch_embed_bias={config.patch_embed_bias} with pre_norm={config.pre_norm} (timm's patch embedding "
            "has a bias exactly when there is no pre-norm)"
        )
    if config.hidden_act not in TIMM_ACTIVATIONS:
        problems.append(f"hidden_act={config.hidden_act!r} (timm names {', '.join(TIMM_ACTIVATIONS)})")
    fc1_width = config.intermediate_size * (2 if config.mlp_type == "swiglu_packed" else 1)
    if int(config.hidden_size * _timm_mlp_ratio(config)) != fc1_width:
        problems.append(f"intermediate_size={config.intermediate_size} (timm's MLP width is int(dim * mlp_ratio))")
    if config.norm_placement == "post":
        problems.append("post-norm blocks (norm_placement='post'; timm has the residual post-norm ResPostBlock)")
    if config.norm_placement == "res_post" and config.layer_scale_init_value is not None:
        problems.append("layer scale in residual post-norm blocks")
    if config.attention_pool_heads is not None:
        problems.append("an attention pool with its own number of heads")
    return problems


def timm_hybrid_embed(
    *, backbone_depths: tuple[int, ...], stem_channels: int, width_factor: int, in_chans: int = 3, **kwargs
) -> HybridEmbed:
    """timm's HybridEmbed on a new BiT ResNetV2 built as timm's hybrid ViTs build it (post-activation, weight
    standardised 'SAME' convolutions); no stage depths give the stem alone. Other arguments go to HybridEmbed."""
    conv_layer = partial(TimmStdConv2dSame, eps=1e-8)
    placement = {key: kwargs[key] for key in ("device", "dtype") if key in kwargs}
    if backbone_depths:
        backbone = ResNetV2(
            layers=list(backbone_depths),
            num_classes=0,
            global_pool="",
            in_chans=in_chans,
            width_factor=width_factor,
            stem_chs=stem_channels,
            stem_type="same",
            preact=False,
            conv_layer=conv_layer,
            **placement,
        )
    else:
        stem_width = stem_channels * width_factor
        backbone = create_resnetv2_stem(
            in_chans, stem_width, stem_type="same", preact=False, conv_layer=conv_layer, **placement
        )
    return HybridEmbed(backbone, in_chans=in_chans, **kwargs)


__all__ = [
    "UnsupportedTimmModelError",
    "config_from_timm",
    "timm_grid_size",
    "timm_hybrid_embed",
    "timm_kwargs_from_config",
    "timm_model_name",
]


def check_timm_architecture(model_name: str) -> None:
    """UnsupportedTimmModelError, before any download, when timm's architecture `model_name` cannot be converted:
    the model is built on the meta device (no weights, no memory) and read as `from_timm` reads it."""
    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False)
    config_from_timm(model)
