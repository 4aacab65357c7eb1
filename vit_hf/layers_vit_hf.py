"""Building blocks of the ViT variants beyond the plain ViT: RMSNorm, gated (SwiGLU) MLPs, a query/value-only bias
for the fused qkv projection, and 2-D rotary position embeddings. Each is adapted from timm's layer of the same role
and re-implemented (saved folders load without timm) with the same operations in the same order, so converted weights
give the same outputs. A model file: imports only torch, transformers and the other model files.
"""

import math

import torch
from torch import nn

from .configuration_vit_hf import ViTHFConfig


class ViTHFRMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale and no bias (timm's RmsNorm, non-fused path)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


def make_norm(config: ViTHFConfig, dim: int | None = None) -> nn.Module:
    """The configured norm (`config.norm_type`) over `dim` channels (default: the model width)."""
    dim = config.hidden_size if dim is None else dim
    if config.norm_type == "rmsnorm":
        return ViTHFRMSNorm(dim, config.layer_norm_eps)
    return nn.LayerNorm(dim, eps=config.layer_norm_eps)


class ViTHFSwiGLUMLP(nn.Module):
    """Gated MLP with separate gate and value projections (timm's SwiGLU):
    fc2(norm(act(fc1_g(x)) * fc1_x(x))), the norm present with `scale_mlp_norm`."""

    def __init__(self, config: ViTHFConfig, act: nn.Module, norm: nn.Module):
        super().__init__()
        bias = config.proj_bias
        self.fc1_g = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.fc1_x = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.act = act
        self.norm = norm
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.fc1_g(x)) * self.fc1_x(x)  # (B, N, intermediate)
        return self.drop(self.fc2(self.norm(self.drop(hidden))))


class ViTHFPackedSwiGLUMLP(nn.Module):
    """Gated MLP with one packed input projection (timm's GluMlp with `gate_last=False`, SwiGLUPacked): fc1 gives
    [gate, value] and fc2 reads norm(act(gate) * value)."""

    def __init__(self, config: ViTHFConfig, act: nn.Module, norm: nn.Module):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.proj_bias)
        self.act = act
        self.norm = norm
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.proj_bias)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)  # 2 x (B, N, intermediate)
        return self.drop(self.fc2(self.norm(self.drop(self.act(gate) * value))))


class ViTHFQVBiasLinear(nn.Module):
    """The fused qkv projection with biases on queries and values only; the key bias is a fixed zero, as in BEiT and
    EVA (a key bias would shift every score of a query equally without rotary embeddings, but not with them)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, dim))
        self.q_bias = nn.Parameter(torch.zeros(out_dim // 3))
        self.v_bias = nn.Parameter(torch.zeros(out_dim // 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The zero key bias is made here: a non-persistent buffer would be left uninitialised by from_pretrained.
        bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        return nn.functional.linear(x, self.weight, bias)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """Interleaved layout: [x0, x1, x2, x3, ...] -> [-x1, x0, -x3, x2, ...]."""
    return torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)


def rotate_halves(x: torch.Tensor) -> torch.Tensor:
    """Half layout: [a, b] -> [-b, a]."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, embedding: torch.Tensor, rotate_half: bool) -> torch.Tensor:
    """Rotate (B, heads, N, head_dim) queries or keys by a (..., N, 2 * head_dim) [sin, cos] embedding."""
    sin, cos = embedding.chunk(2, dim=-1)
    rotated = rotate_halves(x) if rotate_half else rotate_pairs(x)
    return (x * cos + rotated * sin).to(x.dtype)


def _layout(values: torch.Tensor, rotate_half: bool) -> torch.Tensor:
    """Per-frequency values (..., D/2) -> (..., D): [f0, f1, .., f0, f1, ..] (half) or [f0, f0, f1, f1, ..]."""
    return torch.cat([values, values], dim=-1) if rotate_half else values.repeat_interleave(2, -1)


def _grid(coords: list[torch.Tensor], indexing: str) -> torch.Tensor:
    """(H, W, 2) coordinates from per-axis coordinates given in meshgrid order."""
    return torch.stack(torch.meshgrid(coords, indexing=indexing), dim=-1)


class ViTHFRotaryEmbedding(nn.Module):
    """2-D rotary position embeddings of the patch tokens, as timm's `eva` models compute them:

    - "axial" (EVA-02, RoPE-ViT, Perception Encoder; timm's RotaryEmbeddingCat): half of each head's channels rotate
      with the row index, half with the column index, at fixed frequencies `temperature ** (-k / bands)`; with
      `rope_ref_grid` the indices are rescaled so any grid spans the pretraining grid (EVA-02's resizing rule);
    - "dinov3" (DINOv3): the same split over 0.5-centred coordinates normalised to [-1, 1], so any grid spans the
      same range;
    - "mixed" (RoPE-Mixed): learned frequencies per block and head that mix rows and columns (`freqs`).

    `forward(grid)` gives the (N, 2 * head_dim) [sin, cos] embedding, or (depth, heads, N, 2 * head_dim) for "mixed";
    it is computed for the input's grid each time, so other sizes need no resampling.
    """

    def __init__(self, config: ViTHFConfig):
        super().__init__()
        self.kind = config.rope_type
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.temperature = float(config.rope_temperature)
        self.grid_offset = float(config.rope_grid_offset)
        self.indexing = config.rope_grid_indexing
        self.ref_grid = None if config.rope_ref_grid is None else tuple(config.rope_ref_grid)
        self.rotate_half = config.rope_rotate_half
        depth, heads = config.num_hidden_layers, config.num_attention_heads
        # (2, depth, heads, head_dim // 2): learned x and y frequencies of "mixed"; filled by _init_weights.
        self.freqs = nn.Parameter(torch.zeros(2, depth, heads, self.head_dim // 2)) if self.kind == "mixed" else None

    def _axes(self, grid: tuple[int, int], ref: tuple[int, int] | None) -> tuple[list[int], tuple | None]:
        """timm lists 'xy' grids width first."""
        shape = [grid[1], grid[0]] if self.indexing == "xy" else list(grid)
        if ref is not None and self.indexing == "xy":
            ref = (ref[1], ref[0])
        return shape, ref

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        if self.kind == "mixed":
            return self._mixed(grid)
        if self.kind == "dinov3":
            angles = self._dinov3_angles(grid)
        else:
            angles = self._axial_angles(grid)
        sin, cos = _layout(angles.sin(), self.rotate_half), _layout(angles.cos(), self.rotate_half)
        return torch.cat([sin, cos], dim=-1)  # (N, 2 * head_dim)

    def _axial_angles(self, grid: tuple[int, int]) -> torch.Tensor:
        bands = self.head_dim // 4
        exponent = torch.arange(0, bands, 1, dtype=torch.int64).to(torch.float32) / bands
        frequencies = 1.0 / (self.temperature**exponent)  # (bands,)
        shape, ref = self._axes(grid, self.ref_grid)
        coords = [torch.arange(side, dtype=torch.int64).to(torch.float32) + self.grid_offset for side in shape]
        if ref is not None:
            coords = [c / side * r for c, side, r in zip(coords, shape, ref, strict=True)]
        positions = _grid(coords, self.indexing).unsqueeze(-1) * frequencies  # (H, W, 2, bands)
        return positions.flatten(-2).flatten(0, -2)  # (N, head_dim // 2)

    def _dinov3_angles(self, grid: tuple[int, int]) -> torch.Tensor:
        bands = self.head_dim // 4
        periods = self.temperature ** (2.0 * torch.arange(bands, dtype=torch.float32) / (self.head_dim // 2))
        shape, _ = self._axes(grid, None)
        coords = [(torch.arange(0.5, side, dtype=torch.float32) + self.grid_offset) / float(side) for side in shape]
        coords = (2.0 * _grid(coords, self.indexing) - 1.0).flatten(0, -2)  # (N, 2) in [-1, 1]
        angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # (N, 2, bands)
        return angles.flatten(1)  # (N, head_dim // 2)

    def _mixed(self, grid: tuple[int, int]) -> torch.Tensor:
        shape, _ = self._axes(grid, None)
        coords = [torch.arange(side, dtype=torch.int64).to(torch.float32) for side in shape]
        positions = _grid(coords, self.indexing).reshape(-1, 2)  # (N, 2)
        freqs = self.freqs.float()
        angles = positions[:, 0].unsqueeze(-1) * freqs[0].unsqueeze(-2)  # (depth, heads, N, head_dim // 2)
        angles = angles + positions[:, 1].unsqueeze(-1) * freqs[1].unsqueeze(-2)
        embedding = torch.cat([_layout(angles.sin(), False), _layout(angles.cos(), False)], dim=-1)
        return embedding.to(self.freqs.dtype)  # (depth, heads, N, 2 * head_dim)


def mixed_rope_freqs(depth: int, heads: int, head_dim: int, temperature: float) -> torch.Tensor:
    """RoPE-Mixed's initial (2, depth, heads, head_dim // 2) frequencies: axial magnitudes, rotated by a random
    angle per block and head."""
    magnitude = 1.0 / (temperature ** (torch.arange(0, head_dim, 4, dtype=torch.float32) / head_dim))
    angles = torch.rand(depth, heads, 1) * 2 * torch.pi
    fx = torch.cat([magnitude * torch.cos(angles), magnitude * torch.cos(angles + torch.pi / 2)], dim=-1)
    fy = torch.cat([magnitude * torch.sin(angles), magnitude * torch.sin(angles + torch.pi / 2)], dim=-1)
    return torch.stack([fx, fy])


__all__ = [
    "ViTHFPackedSwiGLUMLP",
    "ViTHFQVBiasLinear",
    "ViTHFRMSNorm",
    "ViTHFSwiGLUMLP",
    "ViTHFRotaryEmbedding",
    "apply_rotary",
    "mixed_rope_freqs",
    "make_norm",
]
