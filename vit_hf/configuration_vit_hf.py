"""ViTHFConfig: every architectural choice of a (hybrid) Vision Transformer, with validation and named presets."""

import contextvars
import difflib
import re

from transformers.configuration_utils import PreTrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)
# True while a saved config is being read (`from_dict`), where unknown attributes are kept without complaint.
_LOADING_SAVED_CONFIG = contextvars.ContextVar("loading_saved_vit_hf_config", default=False)

# Width, depth, heads and MLP size of the ViT paper's model sizes (plus DeiT's tiny and small).
MODEL_SIZES = {
    "tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "huge": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120),
}
PRESET_PATCH_SIZES = (8, 14, 16, 32)
PRESET_IMAGE_SIZES = (224, 384)
# 384 is not a multiple of 14: patch-14 models use 392 (a 28 x 28 grid) as their high resolution.
HIGH_RES_FOR_PATCH = {8: 384, 14: 392, 16: 384, 32: 384}
# Hybrid presets: the BiT ResNetV2 stage depths of timm's R26 / R50 hybrids.
HYBRID_PRESETS = {
    "base_r50_s16": dict(MODEL_SIZES["base"], backbone_depths=[3, 4, 9], patch_size=1),
    "large_r50_s32": dict(MODEL_SIZES["large"], backbone_depths=[3, 4, 6, 3], patch_size=1),
    "small_r26_s32": dict(MODEL_SIZES["small"], backbone_depths=[2, 2, 2, 2], patch_size=1),
    "tiny_r_s16_p8": dict(MODEL_SIZES["tiny"], backbone_depths=[], patch_size=8),
}
POOLING_TYPES = ("cls", "mean", "max", "avgmax", "map")
NORM_PLACEMENTS = ("pre", "post", "res_post", "parallel")
NORM_TYPES = ("layernorm", "rmsnorm")
MLP_TYPES = ("mlp", "swiglu", "swiglu_packed")
ROPE_TYPES = (None, "axial", "dinov3", "mixed")
# Fields checked alike by `ViTHFConfig._validate`.
POSITIVE_INTS = (
    "patch_size",
    "patch_stride",
    "num_channels",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "backbone_stem_channels",
    "backbone_width_factor",
)
RATES = (
    "hidden_dropout_prob",
    "embed_dropout_prob",
    "attention_probs_dropout_prob",
    "drop_path_rate",
    "classifier_dropout_prob",
)
CHOICES = {
    "pooling": POOLING_TYPES,
    "norm_placement": NORM_PLACEMENTS,
    "norm_type": NORM_TYPES,
    "mlp_type": MLP_TYPES,
    "rope_type": ROPE_TYPES,
    "backbone_type": ("resnetv2", "resnet_d"),
}
# The seed article's ViT at a CPU-sized input: strided-conv patches, no class token, no position embeddings, a
# stack of torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward) with PyTorch's defaults (post-norm,
# ReLU, dropout 0.1 in attention and MLP, LayerNorm eps 1e-5), mean of the tokens, LayerNorm, linear head. The
# article's 16 px patches at 224 (14 tokens a side) become 4 px patches at 32 (8 a side); width and depth are
# small enough to train on a CPU. Override any of them through `from_preset("seed_vit", ...)`.
SEED_VIT = dict(
    image_size=32,
    patch_size=4,
    hidden_size=128,
    num_hidden_layers=6,
    num_attention_heads=4,
    intermediate_size=512,
    hidden_act="relu",
    layer_norm_eps=1e-5,
    norm_placement="post",
    class_token=False,
    use_pos_embed=False,
    pooling="mean",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    embed_dropout_prob=0.0,
)


# EVA-02 (timm's eva02_*_patch14_*: MIM-pretrained on IN-22k) and DINOv3 (vit_*_patch16_dinov3: self-supervised
# on LVD-1689M) as timm builds them, each with the input sizes its checkpoints use. `from_timm` reads the same
# values off timm's models; a test checks the two agree.
EVA02 = dict(
    patch_size=14,
    hidden_act="silu",
    key_bias=False,
    rope_type="axial",
    rope_ref_grid=[16, 16],
    pooling="mean",
    fc_norm=True,
)
DINOV3 = dict(
    patch_size=16,
    qkv_bias=False,
    layer_norm_eps=1e-5,
    layer_scale_init_value=1e-5,
    num_register_tokens=4,
    use_pos_embed=False,
    rope_type="dinov3",
    rope_temperature=100.0,
    rope_rotate_half=True,
    pooling="mean",
    fc_norm=False,
)
FAMILY_PRESETS = {
    "eva02_small_patch14": (
        {**EVA02, **MODEL_SIZES["small"], "intermediate_size": 1024, "mlp_type": "swiglu_packed"},
        (224, 336),
    ),
    "eva02_base_patch14": (
        {**EVA02, **MODEL_SIZES["base"], "intermediate_size": 2048, "mlp_type": "swiglu", "scale_mlp_norm": True},
        (224, 448),
    ),
    "eva02_large_patch14": (
        {**EVA02, **MODEL_SIZES["large"], "intermediate_size": 2730, "mlp_type": "swiglu", "scale_mlp_norm": True},
        (224, 448),
    ),
    "dinov3_small_patch16": ({**DINOV3, **MODEL_SIZES["small"]}, (224, 256)),
    "dinov3_base_patch16": ({**DINOV3, **MODEL_SIZES["base"]}, (224, 256)),
    "dinov3_large_patch16": ({**DINOV3, **MODEL_SIZES["large"]}, (224, 256)),
}


def list_presets() -> list[str]:
    """Names accepted by `ViTHFConfig.from_preset`, e.g. `base_patch16_384` or `base_r50_s16_384`."""
    plain = [
        f"{size}_patch{patch}_{image}"
        for size in MODEL_SIZES
        for patch in PRESET_PATCH_SIZES
        for image in (224, HIGH_RES_FOR_PATCH[patch])
    ]
    hybrid = [f"{name}_{image}" for name in HYBRID_PRESETS for image in PRESET_IMAGE_SIZES]
    family = [f"{name}_{image}" for name, (_, images) in FAMILY_PRESETS.items() for image in images]
    return plain + hybrid + family + ["seed_vit"]


def to_2tuple(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class ViTHFConfig(PreTrainedConfig):
    r"""
    Configuration of a Vision Transformer (ViT, "An Image is Worth 16x16 Words") and of its hybrid variant, where a
    BiT-style ResNetV2 turns the image into a feature map whose cells become the tokens.

    Parameter names of the models built from it follow timm's `VisionTransformer`, so a timm checkpoint maps one to
    one (see `vit_hf.from_timm`). Defaults are ViT-B/16 at 224 with timm's conventions (LayerNorm eps 1e-6, exact
    GELU, class-token pooling).

    Args:
        image_size (`int` or `[height, width]`, *optional*, defaults to 224):
            Input resolution; a multiple of the token stride (`patch_stride` x the backbone's stride), except with
            plain non-overlapping patches, whose convolution ignores the last pixel rows and columns that do not fill
            a patch, as timm's does (SigLIP so400m/14 at 384 px uses 378).
        patch_size (`int`, *optional*, defaults to 16):
            Side of the square patches (of pixels, or of backbone cells for a hybrid).
        patch_stride (`int`, *optional*):
            Distance between patches; `None` means `patch_size`. Smaller gives overlapping patches, padded so the grid
            keeps `image_size / patch_stride` cells a side.
        num_channels (`int`, *optional*, defaults to 3):
            Channels of the input images.
        patch_embed_bias (`bool`, *optional*, defaults to `True`):
            Bias in the patch projection; CLIP-style models drop it because a pre-norm follows.
        hidden_size (`int`, *optional*, defaults to 768):
            Width of the tokens.
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of transformer blocks.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Attention heads per block; they split `hidden_size` evenly.
        intermediate_size (`int`, *optional*, defaults to 3072):
            Hidden width of the MLPs.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            MLP activation (a name from transformers' `ACT2FN`); `"gelu"` is exact GELU, as timm's `nn.GELU`.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Bias in the fused query/key/value projection.
        key_bias (`bool`, *optional*, defaults to `True`):
            `False`: only queries and values have a bias, the key bias is a fixed zero (BEiT, EVA); needs `qkv_bias`.
        proj_bias (`bool`, *optional*, defaults to `True`):
            Biases of the attention output projection and of the MLP's linear layers (AIMv2 has none).
        qk_norm (`bool`, *optional*, defaults to `False`):
            LayerNorm on queries and keys per head (timm's `qk_norm`).
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            timm's value; transformers' ViT default (1e-12) changes timm logits by ~1e-3.
        layer_scale_init_value (`float`, *optional*):
            Initial per-channel residual scales (CaiT / DeiT-III / DINOv2); `None`: no layer scale.
        norm_type (`str`, *optional*, defaults to `"layernorm"`):
            Every norm of the model: `"layernorm"` or `"rmsnorm"` (no mean subtraction, no bias; AIMv2, timm's RmsNorm).
        mlp_type (`str`, *optional*, defaults to `"mlp"`):
            `"mlp"`: fc2(act(fc1(x))). Gated, fc2(act(gate(x)) * value(x)) with `intermediate_size` gated channels:
            `"swiglu"` (separate `fc1_g` / `fc1_x` projections; EVA-02 B/L, AIMv2) or `"swiglu_packed"` (one `fc1`
            giving [gate, value]; EVA-02 Ti/S). SwiGLU uses `hidden_act="silu"`.
        scale_attn_norm (`bool`, *optional*, defaults to `False`):
            A norm on the attention output before its projection (sub-LN; EVA-02 CLIP, BEiT-3).
        scale_mlp_norm (`bool`, *optional*, defaults to `False`):
            A norm on the MLP's hidden state before `fc2` (NormFormer; EVA-02 B/L, BEiT-3).
        norm_placement (`str`, *optional*, defaults to `"pre"`):
            Where each block normalises: `"pre"`: x + f(norm(x)) (ViT, timm's Block); `"post"`: norm(x + f(x)) (the
            original Transformer, `torch.nn.TransformerEncoderLayer`'s default); `"res_post"`: x + norm(f(x)) (timm's
            ResPostBlock); `"parallel"`: x + attn(norm(x)) + mlp(norm(x)), one norm and one layer scale for both
            branches (ViT-22B; timm's ParallelScalingBlock).
        class_token (`bool`, *optional*, defaults to `True`):
            A learned class token in front of the patches.
        num_register_tokens (`int`, *optional*, defaults to 0):
            Extra learned tokens ("Vision Transformers Need Registers"), dropped at pooling.
        distillation_token (`bool`, *optional*, defaults to `False`):
            DeiT's distillation token (after the class token) with its own head `head_dist`. The logits are the mean
            of both heads' logits (timm's inference output, and timm's output when fine-tuning without a teacher);
            fine-tuning trains both heads on the labels. Needs `class_token` and `pooling="cls"`.
        patch_embed_norm (`bool`, *optional*, defaults to `False`):
            A norm on the patch embeddings, before the prefix tokens and position embeddings (AIMv2).
        use_pos_embed (`bool`, *optional*, defaults to `True`):
            Learned absolute position embeddings.
        no_embed_class (`bool`, *optional*, defaults to `False`):
            Position embeddings cover the patches only, not the prefix tokens (DeiT-III, big_vision).
        pre_norm (`bool`, *optional*, defaults to `False`):
            LayerNorm before the blocks (CLIP).
        rope_type (`str`, *optional*):
            2-D rotary position embeddings of the patch tokens in every attention, with or without `use_pos_embed`:
            `None` (off), `"axial"` (EVA-02, RoPE-ViT, Perception Encoder; timm's RotaryEmbeddingCat), `"dinov3"`
            (0.5-centred coordinates normalised to [-1, 1]) or `"mixed"` (learned per-block frequencies, RoPE-Mixed).
        rope_temperature (`float`, *optional*, defaults to 10000.0):
            Frequency base (`"dinov3"`: period base; `"mixed"`: base of the initial frequencies).
        rope_grid_offset (`float`, *optional*, defaults to 0.0):
            Added to the token coordinates (Perception Encoder: 1).
        rope_grid_indexing (`str`, *optional*, defaults to `"ij"`):
            `"ij"`: the first half of the rotated channels follow rows; `"xy"`: columns (RoPE-ViT, Perception Encoder).
        rope_ref_grid (`[height, width]`, *optional*):
            `"axial"` only: token coordinates are rescaled so any grid spans this one (EVA-02's pretraining grid).
        rope_rotate_half (`bool`, *optional*, defaults to `False`):
            Rotate channel pairs (i, i + head_dim / 2) instead of (2i, 2i + 1) (DINOv3).
        pooling (`str`, *optional*, defaults to `"cls"`):
            `"cls"`: the class token (ViT paper); `"mean"`, `"max"`, `"avgmax"` of the patch tokens; `"map"`:
            multihead attention pooling of the patch tokens by a learned query, then an MLP (SigLIP).
        pool_include_prefix (`bool`, *optional*, defaults to `False`):
            Mean / max / `"map"` pooling over the class and register tokens as well (timm's Eva attention pools).
        attention_pool_heads (`int`, *optional*):
            Heads of the `"map"` pooling attention; `None`: `num_attention_heads` (Perception Encoder has its own).
        final_norm (`bool`, *optional*, defaults to `True`):
            LayerNorm after the blocks (or after pooling, see `fc_norm`).
        fc_norm (`bool`, *optional*):
            Normalise after pooling instead of before; `None`: only for mean/max pooling (timm's rule).
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the attention projection and in the MLP.
        embed_dropout_prob (`float`, *optional*):
            Dropout on the embedded tokens (timm's `pos_drop`); `None`: `hidden_dropout_prob`.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention weights.
        drop_path_rate (`float`, *optional*, defaults to 0.0):
            Stochastic depth, rising linearly from 0 at the first block to this at the last.
        classifier_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout before the classification head.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initialisation.
        backbone_depths (`list[int]`, *optional*):
            `None` for plain patches; ResNetV2 stage depths for a hybrid, e.g. `[3, 4, 9]` for R50+ViT-B/16, or `[]`
            for the stem alone. The patch embedding then runs on the backbone's feature map (`patch_size` 1 usually).
        backbone_stem_channels (`int`, *optional*, defaults to 64):
            Output channels of the backbone's stem (before `backbone_width_factor`).
        backbone_width_factor (`int`, *optional*, defaults to 1):
            Multiplies every backbone width.
        backbone_type (`str`, *optional*, defaults to `"resnetv2"`):
            The hybrid backbone: `"resnetv2"` (BiT: weight-standardised convolutions, GroupNorm) or `"resnet_d"`
            (deep 3-conv stem, BatchNorm, average-pooled shortcuts; timm's `vit_*_resnet*d_*`), with
            `backbone_depths` stages (at least one) and the default stem channels and width factor.

    Example:
    ```python
    >>> from vit_hf import ViTHFConfig, ViTHFForImageClassification
    >>> config = ViTHFConfig.from_preset("base_patch16_384", num_labels=10)
    >>> model = ViTHFForImageClassification(config)
    ```
    """

    model_type = "vit_hf"

    image_size: int | list[int] = 224
    patch_size: int = 16
    patch_stride: int | None = None
    num_channels: int = 3
    patch_embed_bias: bool = True
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    qkv_bias: bool = True
    key_bias: bool = True
    proj_bias: bool = True
    qk_norm: bool = False
    layer_norm_eps: float = 1e-6
    layer_scale_init_value: float | None = None
    norm_type: str = "layernorm"
    mlp_type: str = "mlp"
    scale_attn_norm: bool = False
    scale_mlp_norm: bool = False
    norm_placement: str = "pre"
    class_token: bool = True
    num_register_tokens: int = 0
    distillation_token: bool = False
    patch_embed_norm: bool = False
    use_pos_embed: bool = True
    no_embed_class: bool = False
    pre_norm: bool = False
    rope_type: str | None = None
    rope_temperature: float = 10000.0
    rope_grid_offset: float = 0.0
    rope_grid_indexing: str = "ij"
    rope_ref_grid: list[int] | None = None
    rope_rotate_half: bool = False
    pooling: str = "cls"
    pool_include_prefix: bool = False
    attention_pool_heads: int | None = None
    final_norm: bool = True
    fc_norm: bool | None = None
    hidden_dropout_prob: float = 0.0
    embed_dropout_prob: float | None = None
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.0
    classifier_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    backbone_depths: list[int] | None = None
    backbone_stem_channels: int = 64
    backbone_width_factor: int = 1
    backbone_type: str = "resnetv2"

    def __post_init__(self, **kwargs):
        _check_unknown_fields(kwargs, type(self), saved=_LOADING_SAVED_CONFIG.get())
        if self.patch_stride is None:
            self.patch_stride = self.patch_size
        if self.embed_dropout_prob is None:
            self.embed_dropout_prob = self.hidden_dropout_prob
        if isinstance(self.image_size, tuple):
            self.image_size = list(self.image_size)
        if self.backbone_depths is not None:
            self.backbone_depths = list(self.backbone_depths)
        if self.rope_ref_grid is not None:
            self.rope_ref_grid = list(self.rope_ref_grid)
        super().__post_init__(**kwargs)
        self._validate()

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """As in transformers. A saved config may carry attributes written by other tools or later versions: they
        are kept as they are, and one whose name is close to a field's only warns (see `_check_unknown_fields`)."""
        token = _LOADING_SAVED_CONFIG.set(True)
        try:
            return super().from_dict(config_dict, **kwargs)
        finally:
            _LOADING_SAVED_CONFIG.reset(token)

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.distillation_token) + self.num_register_tokens

    @property
    def use_fc_norm(self) -> bool:
        return self.pooling not in ("cls", "map") if self.fc_norm is None else self.fc_norm

    @property
    def backbone_stride(self) -> int:
        """Pixels per cell of the hybrid backbone's feature map (1 without a backbone)."""
        if self.backbone_depths is None:
            return 1
        # stem: stride-2 conv + stride-2 max pool; stages after the first halve the map again.
        return 4 * 2 ** max(len(self.backbone_depths) - 1, 0)

    @property
    def backbone_channels(self) -> int:
        if not self.backbone_depths:
            return self.backbone_stem_channels * self.backbone_width_factor
        return 256 * 2 ** (len(self.backbone_depths) - 1) * self.backbone_width_factor

    @property
    def token_stride(self) -> int:
        """Pixels between neighbouring tokens."""
        return self.backbone_stride * self.patch_stride

    def grid_size(self, image_size=None) -> tuple[int, int]:
        """Tokens per column and per row for `image_size` (default: the configured one)."""
        height, width = to_2tuple(self.image_size if image_size is None else image_size)
        return height // self.token_stride, width // self.token_stride

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "ViTHFConfig":
        """A named architecture: `{tiny,small,base,large,huge}_patch{8,16,32}_{224,384}`, `..._patch14_{224,392}`,
        a hybrid such as `base_r50_s16_384`, EVA-02 (`eva02_{small,base,large}_patch14_224`, ..._336 / _448) and
        DINOv3 (`dinov3_{small,base,large}_patch16_{224,256}`) as timm builds them, or `seed_vit` (the seed
        article's post-norm, mean-pooled ViT at 32 px) (see `list_presets()`). Keyword arguments override preset
        values."""
        match = re.fullmatch(r"(tiny|small|base|large|huge)_patch(\d+)_(\d+)", name)
        if name == "seed_vit":
            values = dict(SEED_VIT)
        elif (
            match and int(match[2]) in PRESET_PATCH_SIZES and int(match[3]) in (224, HIGH_RES_FOR_PATCH[int(match[2])])
        ):
            values = dict(MODEL_SIZES[match[1]], patch_size=int(match[2]), image_size=int(match[3]))
        elif (
            (match := re.fullmatch(r"(.+)_(\d+)", name))
            and match[1] in HYBRID_PRESETS
            and int(match[2]) in PRESET_IMAGE_SIZES
        ):
            values = dict(HYBRID_PRESETS[match[1]], image_size=int(match[2]))
        elif match and match[1] in FAMILY_PRESETS and int(match[2]) in FAMILY_PRESETS[match[1]][1]:
            values = dict(FAMILY_PRESETS[match[1]][0], image_size=int(match[2]))
        else:
            close = difflib.get_close_matches(name, list_presets(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"Unknown preset {name!r}.{hint} Available presets: {', '.join(list_presets())}.")
        return cls(**{**values, **kwargs})

    def _validate(self) -> None:
        """Each field on its own (types and ranges), then the fields that constrain each other."""
        for name in POSITIVE_INTS:
            if not _is_int(getattr(self, name), minimum=1):
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}.")
        if not _is_int(self.num_register_tokens, minimum=0):
            raise ValueError(f"`num_register_tokens` must be an integer >= 0, got {self.num_register_tokens!r}.")
        is_pair = isinstance(self.image_size, list) and len(self.image_size) == 2
        if not all(_is_int(side, minimum=1) for side in (self.image_size if is_pair else [self.image_size])):
            raise ValueError(f"`image_size` must be a positive integer or [height, width], got {self.image_size!r}.")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"`{name}` must be one of {choices}, got {getattr(self, name)!r}.")
        for name in RATES:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be a rate in [0, 1), got {value!r}.")
        if not isinstance(self.layer_norm_eps, (int, float)) or self.layer_norm_eps <= 0:
            raise ValueError(f"`layer_norm_eps` must be positive, got {self.layer_norm_eps!r}.")
        if self.layer_scale_init_value is not None and self.layer_scale_init_value <= 0:
            raise ValueError(
                "`layer_scale_init_value` must be positive or None (no layer scale), "
                f"got {self.layer_scale_init_value!r}."
            )
        depths = self.backbone_depths
        if depths is not None and (len(depths) > 4 or not all(_is_int(depth, minimum=1) for depth in depths)):
            raise ValueError(
                "`backbone_depths` must be None (plain patches) or a list of at most 4 positive ResNetV2 stage depths "
                f"such as [3, 4, 9], got {depths!r}."
            )
        self._validate_combinations()

    def _validate_combinations(self) -> None:
        if self.patch_stride > self.patch_size:
            raise ValueError(
                f"`patch_stride` ({self.patch_stride}) must not exceed `patch_size` ({self.patch_size}): "
                "patches would skip pixels. Use a stride equal to the patch size for non-overlapping patches."
            )
        if (self.patch_size - self.patch_stride) % 2:
            raise ValueError(
                f"`patch_size - patch_stride` must be even so overlapping patches pad symmetrically, got "
                f"patch_size={self.patch_size}, patch_stride={self.patch_stride}."
            )
        whole_patches_needed = self.backbone_depths is not None or self.patch_stride != self.patch_size
        if whole_patches_needed and any(side % self.token_stride for side in to_2tuple(self.image_size)):
            raise ValueError(
                f"`image_size` {self.image_size} is not divisible by the token stride {self.token_stride} "
                f"(patch_stride {self.patch_stride} x backbone stride {self.backbone_stride}). "
                f"Use a multiple of {self.token_stride}."
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads}); heads split the hidden size evenly."
            )
        if self.pooling == "cls" and not self.class_token:
            raise ValueError("`pooling='cls'` needs `class_token=True`; use `pooling='mean'` for a model without one.")
        if self.no_embed_class and not self.use_pos_embed:
            raise ValueError("`no_embed_class=True` needs `use_pos_embed=True`.")
        self._validate_variants()

    def _validate_variants(self) -> None:
        """Attention-bias, distillation and rotary options."""
        if self.backbone_type == "resnet_d" and (
            not self.backbone_depths or (self.backbone_stem_channels, self.backbone_width_factor) != (64, 1)
        ):
            raise ValueError(
                "backbone_type='resnet_d' needs backbone_depths with at least one stage and the default "
                "backbone_stem_channels (64) and backbone_width_factor (1)."
            )
        if not self.key_bias and not self.qkv_bias:
            raise ValueError("`key_bias=False` drops the key bias of a biased qkv projection; it needs qkv_bias=True.")
        if self.distillation_token and (not self.class_token or self.pooling != "cls"):
            raise ValueError("`distillation_token=True` needs `class_token=True` and `pooling='cls'` (DeiT).")
        if self.rope_type is None:
            return
        head_dim = self.hidden_size // self.num_attention_heads
        if head_dim % 4:
            raise ValueError(f"Rotary embeddings need a head size divisible by 4, got {head_dim}.")
        if self.rope_grid_indexing not in ("ij", "xy"):
            raise ValueError(f"`rope_grid_indexing` must be 'ij' or 'xy', got {self.rope_grid_indexing!r}.")
        if self.rope_type == "mixed" and self.rope_rotate_half:
            raise ValueError("rope_type='mixed' rotates channel pairs (2i, 2i + 1); set rope_rotate_half=False.")
        if self.rope_ref_grid is not None and (self.rope_type != "axial" or len(self.rope_ref_grid) != 2):
            raise ValueError("`rope_ref_grid` is [height, width] of an 'axial' rotary embedding's pretraining grid.")


def _is_int(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_unknown_fields(kwargs: dict, config_class: type, saved: bool) -> None:
    """Extra keyword arguments are kept on the config (transformers' rule, so Hub configs with more keys load), but
    one that is a near miss of a field name is likely a typo that would silently fall back to the default: an error
    where a user constructs the config, a warning where a saved one is read (it may come from another tool)."""
    fields = [name for name in config_class.__dataclass_fields__ if not name.startswith("_")]
    for key in kwargs:
        if key in fields:
            continue
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.85)
        if close and saved:
            logger.warning(
                "The saved config's attribute %r is kept, but the model does not read it: it reads %r.", key, close[0]
            )
        elif close:
            raise ValueError(f"Unknown config field {key!r}; did you mean {close[0]!r}?")


__all__ = ["ViTHFConfig", "list_presets"]
