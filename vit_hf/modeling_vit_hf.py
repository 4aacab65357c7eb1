"""Vision Transformer (plain and hybrid) for transformers, with timm's parameter names.

Module names mirror timm's `VisionTransformer` (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.N.attn.qkv`,
`blocks.N.mlp.fc1`, `norm`, `fc_norm`, `head`), so a timm state dict maps one to one, under the `vit.` prefix of the
classification model.

Pieces adapted from timm are re-implemented here rather than imported (each says where it comes from): this file is
copied into saved folders, which must load with `trust_remote_code=True` where timm is not installed.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface, PreTrainedModel
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_vit_hf import ViTHFConfig, to_2tuple
from .layers_vit_hf import (
    ViTHFPackedSwiGLUMLP,
    ViTHFQVBiasLinear,
    ViTHFRMSNorm,
    ViTHFRotaryEmbedding,
    ViTHFSwiGLUMLP,
    apply_rotary,
    make_norm,
    mixed_rope_freqs,
)
from .resnet_d_vit_hf import ViTHFResNetDBackbone
from .resnetv2_vit_hf import ViTHFGroupNormAct, ViTHFResNetV2Backbone, ViTHFStdConv2dSame


def resample_pos_embed(
    pos_embed: torch.Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int], num_prefix_tokens: int
) -> torch.Tensor:
    """Bicubic (antialiased) resampling of the patch part of `pos_embed` (1, prefix + h*w, C) to a new grid, exactly
    as timm does when it loads a checkpoint at another resolution. Prefix-token embeddings are kept as they are.
    Adapted from timm's `resample_abs_pos_embed` (re-implemented: saved folders load without timm)."""
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = grid.shape[-1]
    grid = grid.float().reshape(1, *old_grid, dim).permute(0, 3, 1, 2)  # (1, C, h, w)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)  # (1, H*W, C)
    return torch.cat([prefix, grid], dim=1)


def drop_path_rates(last_rate: float, depth: int) -> list[float]:
    """Stochastic depth rising linearly from 0 at the first block to `last_rate` at the last (plain Python, so the
    model can be built on the meta device)."""
    return [last_rate * index / max(depth - 1, 1) for index in range(depth)]


class ViTHFPatchEmbeddings(nn.Module):
    """Pixels -> grid of token embeddings: a strided convolution over the image (plain ViT, overlapping when the
    stride is smaller than the patch) or over the feature map of a ResNetV2 (hybrid ViT). Adapted from timm's
    `PatchEmbed` and `HybridEmbed` (re-implemented: saved folders load without timm)."""

    def __init__(self, config: ViTHFConfig):
        super().__init__()
        self.num_channels = config.num_channels
        if config.backbone_depths is None:
            self.backbone = None
            in_channels = config.num_channels
        elif config.backbone_type == "resnet_d":
            self.backbone = ViTHFResNetDBackbone(config.backbone_depths, config.num_channels)
            in_channels = config.backbone_channels
        else:
            self.backbone = ViTHFResNetV2Backbone(
                config.backbone_depths, config.num_channels, config.backbone_stem_channels, config.backbone_width_factor
            )
            in_channels = config.backbone_channels
        self.proj = nn.Conv2d(
            in_channels,
            config.hidden_size,
            kernel_size=config.patch_size,
            stride=config.patch_stride,
            padding=(config.patch_size - config.patch_stride) // 2,
            bias=config.patch_embed_bias,
        )
        self.norm = make_norm(config) if config.patch_embed_norm else nn.Identity()  # on the flattened tokens

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[1]} channels but the model expects {self.num_channels} "
                "(config.num_channels)."
            )
        features = pixel_values if self.backbone is None else self.backbone(pixel_values)
        return self.proj(features)  # (B, C, grid_h, grid_w)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' ViT eager attention, copied as transformers' own model files copy it, so that this file does not
    depend on another model's internals."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, heads, N, N)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (B, N, heads, head_dim)
    return attn_output, attn_weights


# Longest sequence for which `sdpa_cpu_bf16` runs two matmuls instead of torch's fused CPU kernel: its
# (B, heads, N, N) weights then stay below the size of the block's other activations (577 tokens at 384 px with
# 16 px patches).
MATMUL_ATTENTION_MAX_TOKENS = 1024


def matmul_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scaling: float,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Attention as two batched matmuls around a softmax (timm's non-fused path)."""
    attn_weights = torch.matmul(query * scaling, key.transpose(2, 3)).softmax(dim=-1)  # (B, heads, N, N)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    return torch.matmul(attn_weights, value).transpose(1, 2)  # (B, N, heads, head_dim)


def sdpa_cpu_bf16_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The `sdpa_cpu_bf16` attention implementation: torch's sdpa, except for bf16 on the CPU (up to
    `MATMUL_ATTENTION_MAX_TOKENS` tokens, no mask), where `matmul_attention` runs instead: there torch's fused
    kernel measured 2-4x slower, forward plus backward, at 50 to 1024 tokens, while matmuls run oneDNN's bf16
    kernels."""
    if (
        query.device.type == "cpu"
        and query.dtype == torch.bfloat16
        and query.shape[2] <= MATMUL_ATTENTION_MAX_TOKENS
        and attention_mask is None
    ):
        return matmul_attention(module, query, key, value, scaling, dropout), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)


# Registered at import, so that the name also works where this file is loaded as remote code without vit_hf.
AttentionInterface.register("sdpa_cpu_bf16", sdpa_cpu_bf16_attention)


class ViTHFAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection, dispatched to the attention implementation the
    model was loaded with (`sdpa` by default; `sdpa_cpu_bf16`, `eager`, `flash_attention_*`, `flex_attention`).
    A call with `output_attentions=True` runs eager attention, which alone returns the attention maps."""

    def __init__(self, config: ViTHFConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False  # transformers' sdpa path reads this; a missing flag would mean causal attention
        self.attention_dropout = config.attention_probs_dropout_prob
        if config.key_bias:
            self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        else:
            self.qkv = ViTHFQVBiasLinear(config.hidden_size, 3 * config.hidden_size)
        self.q_norm = make_norm(config, self.head_dim) if config.qk_norm else nn.Identity()
        self.k_norm = make_norm(config, self.head_dim) if config.qk_norm else nn.Identity()
        self.norm = make_norm(config) if config.scale_attn_norm else nn.Identity()
        self.proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.proj_bias)
        self.proj_drop = nn.Dropout(config.hidden_dropout_prob)

    def attention_interface(self, kwargs: dict) -> Callable:
        """The model's attention implementation; eager for a call that asks for the attention maps."""
        if kwargs.get("output_attentions"):
            return eager_attention_forward
        return ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        query, key, value = self.heads(hidden_states)
        return self.attend(query, key, value, **kwargs)

    def heads(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (after q_norm), keys (after k_norm) and values, each (B, heads, N, head_dim)."""
        batch, tokens, channels = hidden_states.shape
        # Split the fused projection along its last dimension and view the heads in place: the gradients of the
        # three parts then join with a single concatenation in backward, where reshape/permute/unbind costs a stack
        # plus a copy of the whole (B, N, 3C) gradient.
        query, key, value = (
            part.view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, N, head_dim)
            for part in self.qkv(hidden_states).split(channels, dim=-1)
        )
        return self.q_norm(query), self.k_norm(key), value

    def attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention over the heads, then the output projection: (B, N, C) and the maps (eager only)."""
        batch, _, tokens, _ = query.shape
        attn_output, attn_weights = self.attention_interface(kwargs)(
            self,
            query,
            key,
            value,
            None,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(batch, tokens, self.num_heads * self.head_dim)  # (B, N, C)
        return self.proj_drop(self.proj(self.norm(attn_output))), attn_weights


class ViTHFRopeAttention(ViTHFAttention):
    """ViTHFAttention with 2-D rotary position embeddings: queries and keys of the patch tokens (not the class and
    register tokens) are rotated by `rope` (see ViTHFRotaryEmbedding) after the query / key norms, as in timm's
    EvaAttention and AttentionRope."""

    def forward(
        self, hidden_states: torch.Tensor, rope: torch.Tensor, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        query, key, value = self.heads(hidden_states)
        prefix = self.config.num_prefix_tokens
        half = self.config.rope_rotate_half
        query = torch.cat([query[:, :, :prefix], apply_rotary(query[:, :, prefix:], rope, half)], dim=2)
        key = torch.cat([key[:, :, :prefix], apply_rotary(key[:, :, prefix:], rope, half)], dim=2)
        return self.attend(query.type_as(value), key.type_as(value), value, **kwargs)


class ViTHFMLP(nn.Module):
    """fc1, activation, (norm,) fc2. Adapted from timm's `Mlp` (re-implemented: saved folders load without timm). The
    norm is there with `scale_mlp_norm` in the blocks, never in the attention pool."""

    def __init__(self, config: ViTHFConfig, dropout: float | None = None, inner_norm: bool = False, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.act = ACT2FN[config.hidden_act]
        self.norm = make_norm(config, config.intermediate_size) if inner_norm else nn.Identity()
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)
        self.drop = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.norm(self.drop(self.act(self.fc1(hidden_states))))))


def make_mlp(config: ViTHFConfig) -> nn.Module:
    """The blocks' MLP for `config.mlp_type`."""
    if config.mlp_type == "mlp":
        return ViTHFMLP(config, inner_norm=config.scale_mlp_norm, bias=config.proj_bias)
    norm = make_norm(config, config.intermediate_size) if config.scale_mlp_norm else nn.Identity()
    gated_class = ViTHFSwiGLUMLP if config.mlp_type == "swiglu" else ViTHFPackedSwiGLUMLP
    return gated_class(config, ACT2FN[config.hidden_act], norm)


class ViTHFAttentionPool(nn.Module):
    """Multihead attention pooling (`pooling="map"`, SigLIP's head; timm's AttentionPoolLatent): one learned query
    attends over the tokens, then a pre-norm MLP adds its residual. The attention runs through torch's sdpa kernel
    whatever the encoder's attention implementation; it has no dropout, as in timm. Adapted from timm's
    `AttentionPoolLatent` (re-implemented: saved folders load without timm)."""

    def __init__(self, config: ViTHFConfig):
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.attention_pool_heads or config.num_attention_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = make_norm(config)
        self.mlp = ViTHFMLP(config, dropout=0.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, dim = tokens.shape
        head_dim = dim // self.num_heads
        query = self.q(self.latent.expand(batch, -1, -1))  # (B, 1, C)
        query = query.view(batch, 1, self.num_heads, head_dim).transpose(1, 2)  # (B, heads, 1, head_dim)
        key, value = (
            part.view(batch, length, self.num_heads, head_dim).transpose(1, 2)  # (B, heads, N, head_dim)
            for part in self.kv(tokens).split(dim, dim=-1)
        )
        pooled = F.scaled_dot_product_attention(query, key, value)  # (B, heads, 1, head_dim)
        pooled = self.proj(pooled.transpose(1, 2).reshape(batch, dim))  # (B, C)
        return pooled + self.mlp(self.norm(pooled))


class ViTHFLayerScale(nn.Module):
    """Per-channel residual scale (CaiT). Adapted from timm's `LayerScale` (re-implemented: saved folders load
    without timm)."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class ViTHFDropPath(nn.Module):
    """Stochastic depth: drops a residual branch for whole samples, rescaling the kept ones. Adapted from timm's
    `DropPath` (re-implemented: saved folders load without timm)."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)  # (B, 1, 1)
        return x * mask / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class ViTHFLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each branch optionally scaled
    (layer scale) and dropped per sample (stochastic depth). Adapted from timm's `Block` (re-implemented: saved
    folders load without timm)."""

    def __init__(self, config: ViTHFConfig, drop_path_rate: float):
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = ViTHFAttention(config) if config.rope_type is None else ViTHFRopeAttention(config)
        self.norm2 = make_norm(config)
        self.mlp = make_mlp(config)
        scale = config.layer_scale_init_value
        self.ls1 = ViTHFLayerScale(config.hidden_size, scale) if scale else nn.Identity()
        self.ls2 = ViTHFLayerScale(config.hidden_size, scale) if scale else nn.Identity()
        self.drop_path = ViTHFDropPath(drop_path_rate)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_output, attn_weights = self.attn(self.norm1(hidden_states), **kwargs)
        hidden_states = hidden_states + self.drop_path(self.ls1(attn_output))
        hidden_states = hidden_states + self.drop_path(self.ls2(self.mlp(self.norm2(hidden_states))))
        return hidden_states, attn_weights


class ViTHFPostNormLayer(ViTHFLayer):
    """Post-norm block (the original Transformer; torch.nn.TransformerEncoderLayer's default): norm1(x + attn(x)),
    then norm2(x + mlp(x)). Same parameters as the pre-norm block."""

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_output, attn_weights = self.attn(hidden_states, **kwargs)
        hidden_states = self.norm1(hidden_states + self.drop_path(self.ls1(attn_output)))
        hidden_states = self.norm2(hidden_states + self.drop_path(self.ls2(self.mlp(hidden_states))))
        return hidden_states, attn_weights


class ViTHFResPostNormLayer(ViTHFLayer):
    """Residual post-norm block (timm's ResPostBlock, Swin V2): x + norm1(attn(x)), then x + norm2(mlp(x)); the
    residual stream itself is never normalised."""

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_output, attn_weights = self.attn(hidden_states, **kwargs)
        hidden_states = hidden_states + self.drop_path(self.ls1(self.norm1(attn_output)))
        hidden_states = hidden_states + self.drop_path(self.ls2(self.norm2(self.mlp(hidden_states))))
        return hidden_states, attn_weights


class ViTHFParallelLayer(ViTHFLayer):
    """Parallel block (ViT-22B; adapted from timm's ParallelScalingBlock with separate output projections): the
    attention and the MLP read the same normalised input and their sum is added to the residual,
    x + ls1(attn(norm1(x)) + mlp(norm1(x))). It has no norm2 or ls2."""

    def __init__(self, config: ViTHFConfig, drop_path_rate: float):
        super().__init__(config, drop_path_rate)
        del self.norm2, self.ls2

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        normed = self.norm1(hidden_states)
        attn_output, attn_weights = self.attn(normed, **kwargs)
        hidden_states = hidden_states + self.drop_path(self.ls1(attn_output + self.mlp(normed)))
        return hidden_states, attn_weights


# config.norm_placement -> block class, chosen once when the model is built.
BLOCK_CLASSES = {
    "pre": ViTHFLayer,
    "post": ViTHFPostNormLayer,
    "res_post": ViTHFResPostNormLayer,
    "parallel": ViTHFParallelLayer,
}


class ViTHFPreTrainedModel(PreTrainedModel):
    config: ViTHFConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = [
        "ViTHFPatchEmbeddings",
        "ViTHFLayer",
        "ViTHFPostNormLayer",
        "ViTHFResPostNormLayer",
        "ViTHFParallelLayer",
    ]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    # What `capture_outputs` records: each block's input and output, and each attention's maps.
    _can_record_outputs = {"hidden_states": ViTHFLayer, "attentions": ViTHFAttention}
    _input_embed_layer = "patch_embed"  # `get_input_embeddings()`, hooked by `enable_input_require_grads()`

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As in transformers, and the saved `auto_map` names all three Auto classes (transformers writes only the
        saved class's), so the folder loads with AutoModel as well as AutoModelForImageClassification."""
        self.config.auto_map = {
            "AutoConfig": "configuration_vit_hf.ViTHFConfig",
            "AutoModel": "modeling_vit_hf.ViTHFModel",
            "AutoModelForImageClassification": "modeling_vit_hf.ViTHFForImageClassification",
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        """timm's ViT initialisation: truncated normal (std `initializer_range`) for linear and patch weights,
        position embeddings likewise, near-zero class/register tokens, zero classifier head (as the ViT paper
        does for fine-tuning heads), and He initialisation for the ResNet backbone."""
        std = self.config.initializer_range
        heads = (getattr(self, "head", None), getattr(self, "head_dist", None))
        if any(module is head for head in heads) and isinstance(module, nn.Linear):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ViTHFStdConv2dSame):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, ViTHFGroupNormAct)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ViTHFRMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, ViTHFQVBiasLinear):
            init.trunc_normal_(module.weight, std=std)
            init.zeros_(module.q_bias)
            init.zeros_(module.v_bias)
        elif isinstance(module, ViTHFRotaryEmbedding) and module.freqs is not None:
            _, depth, heads, half = module.freqs.shape
            init.copy_(module.freqs, mixed_rope_freqs(depth, heads, 2 * half, self.config.rope_temperature))
        elif isinstance(module, ViTHFLayerScale):
            init.constant_(module.gamma, module.init_value)
        elif isinstance(module, ViTHFAttentionPool):
            init.trunc_normal_(module.latent, std=module.latent.shape[-1] ** -0.5)
        elif isinstance(module, ViTHFModel):
            if module.pos_embed is not None:
                init.trunc_normal_(module.pos_embed, std=std)
            if module.cls_token is not None:
                init.normal_(module.cls_token, std=1e-6)
            if module.reg_token is not None:
                init.normal_(module.reg_token, std=1e-6)
            if module.dist_token is not None:
                init.normal_(module.dist_token, std=1e-6)


class ViTHFModel(ViTHFPreTrainedModel):
    """The encoder: patch (or hybrid) embedding, prefix tokens, position embeddings, blocks, final norm and pooling.

    `last_hidden_state` equals timm's `forward_features`, `pooler_output` timm's `forward_head(pre_logits=True)`.
    `hidden_states` (with `output_hidden_states=True`) holds `num_hidden_layers + 1` tensors: the blocks' input,
    then each block's output (before the final norm); `output_hidden_states=[0, -1]` keeps only those (the others
    are None), as in transformers. `attentions` (`output_attentions=True`) holds one (B, heads, N, N) map per
    block, computed for that call with eager attention whatever the model's attention implementation.
    """

    def __init__(self, config: ViTHFConfig):
        super().__init__(config)
        self.patch_embed = ViTHFPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.distillation_token else None
        self.reg_token = (
            nn.Parameter(torch.zeros(1, config.num_register_tokens, config.hidden_size))
            if config.num_register_tokens
            else None
        )
        num_patches = config.grid_size()[0] * config.grid_size()[1]
        embed_len = num_patches if config.no_embed_class else num_patches + config.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, config.hidden_size)) if config.use_pos_embed else None
        self.pos_drop = nn.Dropout(config.embed_dropout_prob)
        self.norm_pre = make_norm(config) if config.pre_norm else nn.Identity()
        self.rope = ViTHFRotaryEmbedding(config) if config.rope_type is not None else None
        rates = drop_path_rates(config.drop_path_rate, config.num_hidden_layers)
        block_class = BLOCK_CLASSES[config.norm_placement]
        self.blocks = nn.ModuleList([block_class(config, rate) for rate in rates])
        use_norm = config.final_norm and not config.use_fc_norm
        use_fc_norm = config.final_norm and config.use_fc_norm
        self.norm = make_norm(config) if use_norm else nn.Identity()
        self.attn_pool = ViTHFAttentionPool(config) if config.pooling == "map" else None
        self.fc_norm = make_norm(config) if use_fc_norm else nn.Identity()
        self.post_init()

    def _position_embeddings(self, grid: tuple[int, int], interpolate_pos_encoding: bool) -> torch.Tensor:
        """The position embeddings for a token grid, resampled from the configured grid when they differ."""
        config_grid = self.config.grid_size()
        if grid != config_grid and not interpolate_pos_encoding:
            raise ValueError(
                f"Input gives a {grid[0]}x{grid[1]} token grid but the model was built for {config_grid[0]}x"
                f"{config_grid[1]} (image_size={self.config.image_size}). Pass `interpolate_pos_encoding=True` to "
                "resample the position embeddings on the fly, or call `model.set_image_size(...)` to move the model "
                "to the new size for good."
            )
        prefix = 0 if self.config.no_embed_class else self.config.num_prefix_tokens
        return resample_pos_embed(self.pos_embed, grid, config_grid, prefix)

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        patches = self.patch_embed(pixel_values.to(self.patch_embed.proj.weight.dtype))
        grid = (patches.shape[2], patches.shape[3])
        tokens = self.patch_embed.norm(patches.flatten(2).transpose(1, 2))  # (B, grid_h * grid_w, C)
        batch = tokens.shape[0]
        prefix_tokens = (self.cls_token, self.dist_token, self.reg_token)
        prefix = [t.expand(batch, -1, -1) for t in prefix_tokens if t is not None]
        if self.pos_embed is None:
            tokens = torch.cat(prefix + [tokens], dim=1)
        elif self.config.no_embed_class:
            # Position embeddings cover the patches only; prefix tokens are added after (DeiT-III, big_vision).
            tokens = torch.cat(prefix + [tokens + self._position_embeddings(grid, interpolate_pos_encoding)], dim=1)
        else:
            tokens = torch.cat(prefix + [tokens], dim=1) + self._position_embeddings(grid, interpolate_pos_encoding)
        return self.norm_pre(self.pos_drop(tokens))  # (B, prefix + N, C)

    def rotary_embeddings(self, image_size: tuple[int, int]) -> list[torch.Tensor]:
        """Each block's rotary embedding for images of `image_size` pixels, in the model's dtype and on its device
        (computed in float32 on the CPU, as timm computes them)."""
        grid = self.config.grid_size(tuple(image_size))
        embedding = self.rope(grid).to(device=self.patch_embed.proj.weight.device)
        if self.config.rope_type == "mixed":
            return list(embedding.unbind(0))  # (depth, heads, N, 2 * head_dim): one per block
        return [embedding] * len(self.blocks)

    def pool(self, hidden_states: torch.Tensor) -> torch.Tensor:
        pooling = self.config.pooling
        if pooling == "cls" and self.dist_token is not None:
            return (hidden_states[:, 0] + hidden_states[:, 1]) / 2  # DeiT: mean of class and distillation tokens
        if pooling == "cls":
            return hidden_states[:, 0]
        start = 0 if self.config.pool_include_prefix else self.config.num_prefix_tokens
        patch_tokens = hidden_states[:, start:]  # registers and class token excluded unless pool_include_prefix
        if pooling == "map":
            return self.attn_pool(patch_tokens)
        if pooling == "mean":
            return patch_tokens.mean(dim=1)
        if pooling == "max":
            return patch_tokens.amax(dim=1)
        return 0.5 * (patch_tokens.amax(dim=1) + patch_tokens.mean(dim=1))  # avgmax

    @torch.no_grad()
    def set_image_size(self, image_size: int | tuple[int, int]) -> None:
        """Move the model to a new input resolution for good (e.g. 224 -> 384 for fine-tuning at higher resolution):
        resample the position embeddings bicubically and update `config.image_size`."""
        old_grid = self.config.grid_size()
        new_grid = self.config.grid_size(image_size)
        if any(side % self.config.token_stride for side in to_2tuple(image_size)):
            raise ValueError(
                f"image_size {image_size} is not divisible by the model's token stride {self.config.token_stride}."
            )
        if self.pos_embed is not None:
            prefix = 0 if self.config.no_embed_class else self.config.num_prefix_tokens
            self.pos_embed = nn.Parameter(resample_pos_embed(self.pos_embed.data, new_grid, old_grid, prefix))
        self.config.image_size = image_size if isinstance(image_size, int) else list(image_size)

    def set_drop_path_rate(self, drop_path_rate: float) -> None:
        """Change the stochastic depth rate (e.g. for fine-tuning a loaded model); it rises linearly from 0 at the
        first block to `drop_path_rate` at the last."""
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}.")
        rates = drop_path_rates(drop_path_rate, self.config.num_hidden_layers)
        for block, rate in zip(self.blocks, rates, strict=True):
            block.drop_path.drop_prob = rate
        self.config.drop_path_rate = drop_path_rate

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False, **kwargs
    ) -> BaseModelOutputWithPooling:
        hidden_states = self.embed(pixel_values, interpolate_pos_encoding)
        ropes = None if self.rope is None else self.rotary_embeddings(pixel_values.shape[-2:])
        for index, block in enumerate(self.blocks):
            block_kwargs = kwargs if ropes is None else {**kwargs, "rope": ropes[index]}
            hidden_states, _ = block(hidden_states, **block_kwargs)
        sequence_output = self.norm(hidden_states)
        pooled_output = self.fc_norm(self.pool(sequence_output))
        # `capture_outputs` adds `hidden_states` and `attentions` when asked, recorded by hooks on the blocks.
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class ViTHFForImageClassification(ViTHFPreTrainedModel):
    """ViTHFModel with a linear head on the pooled output. `labels` give the loss transformers picks from
    `config.problem_type`: cross-entropy (single label), BCE with logits (multi-label) or MSE (regression)."""

    def __init__(self, config: ViTHFConfig):
        super().__init__(config)
        self.vit = ViTHFModel(config)
        self.head_drop = nn.Dropout(config.classifier_dropout_prob)
        self.head = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        # DeiT's head on the distillation token; logits are the mean of both heads (see `config.distillation_token`).
        self.head_dist = None
        if config.distillation_token and config.num_labels > 0:
            self.head_dist = nn.Linear(config.hidden_size, config.num_labels)
        elif config.distillation_token:
            self.head_dist = nn.Identity()
        self.post_init()

    def set_image_size(self, image_size: int | tuple[int, int]) -> None:
        """See `ViTHFModel.set_image_size`."""
        self.vit.set_image_size(image_size)

    def reset_head(self, id2label: dict[int, str]) -> None:
        """A new zero-initialised head (as the ViT paper fine-tunes) for these labels, in the model's dtype and on
        its device; the config's label maps follow."""
        self.config.id2label = id2label
        self.config.label2id = {label: index for index, label in id2label.items()}
        self.head = nn.Linear(self.config.hidden_size, len(id2label), device=self.device, dtype=self.dtype)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if self.head_dist is not None:  # DeiT: both heads are trained on the labels, their logits averaged
            self.head_dist = nn.Linear(self.config.hidden_size, len(id2label), device=self.device, dtype=self.dtype)
            nn.init.zeros_(self.head_dist.weight)
            nn.init.zeros_(self.head_dist.bias)

    def set_drop_path_rate(self, drop_path_rate: float) -> None:
        """See `ViTHFModel.set_drop_path_rate`."""
        self.vit.set_drop_path_rate(drop_path_rate)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> ImageClassifierOutput:
        outputs = self.vit(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        if self.head_dist is None:
            logits = self.head(self.head_drop(outputs.pooler_output))
        else:  # DeiT's inference output: the mean of the class-token and distillation-token heads' logits
            tokens = outputs.last_hidden_state
            logits = (self.head(self.head_drop(tokens[:, 0])) + self.head_dist(self.head_drop(tokens[:, 1]))) / 2
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = ["ViTHFForImageClassification", "ViTHFModel", "ViTHFPreTrainedModel", "resample_pos_embed"]
