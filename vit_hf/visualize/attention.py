"""Attention weights on demand, attention rollout, per-head maps and mean attention distance.

The weights come from a scoped switch to eager attention: the model keeps running with its own implementation
(sdpa, flash, ...) everywhere else, and gets it back, with its training mode, when the block ends.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..modeling_vit_hf import ViTHFForImageClassification, ViTHFModel


@dataclass
class AttentionOutput:
    """What one forward pass with attention weights gives: `attentions` holds one (B, heads, N, N) map per block,
    `grid` the (rows, columns) of the patch tokens, `logits` the classifier's output (None for a headless model)."""

    attentions: tuple[torch.Tensor, ...]
    grid: tuple[int, int]
    num_prefix_tokens: int
    query: str
    logits: torch.Tensor | None


def base_model(model: nn.Module) -> ViTHFModel:
    """The encoder of a vit_hf model (classification or base)."""
    encoder = getattr(model, "vit", model)
    if not hasattr(encoder, "blocks") or not hasattr(encoder, "patch_embed"):
        raise TypeError(f"Expected a vit_hf model (ViTHFModel or ViTHFForImageClassification), got {type(model)}.")
    return encoder


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Run the block with eager attention and in eval mode (no attention dropout), then restore the model's attention
    implementation and training mode exactly as they were."""
    previous, training = model.config._attn_implementation, model.training
    model.eval()
    try:
        if previous != "eager":
            model.set_attn_implementation("eager")
        yield
    finally:
        if model.config._attn_implementation != previous:
            model.set_attn_implementation(previous)
        model.train(training)


def query_kind(config) -> str:
    """Which tokens the prediction reads: the class token for `pooling="cls"`, otherwise all patch tokens (mean,
    max and attention pooling)."""
    return "cls" if config.pooling == "cls" and config.class_token else "patches"


@torch.no_grad()
def attention_weights(model: ViTHFForImageClassification | ViTHFModel, pixel_values: torch.Tensor) -> AttentionOutput:
    """One forward pass of `pixel_values` (B, 3, H, W), any size (position embeddings are resampled when it
    differs from the model's), returning every block's attention weights in float32 on the CPU."""
    encoder = base_model(model)
    grids = []
    hook = encoder.patch_embed.register_forward_hook(lambda module, args, output: grids.append(output.shape[-2:]))
    try:
        with eager_attention(model):
            pixel_values = pixel_values.to(encoder.patch_embed.proj.weight.device)
            outputs = model(pixel_values=pixel_values, output_attentions=True, interpolate_pos_encoding=True)
    finally:
        hook.remove()
    logits = getattr(outputs, "logits", None)
    return AttentionOutput(
        attentions=tuple(weights.float().cpu() for weights in outputs.attentions),
        grid=tuple(grids[0]),
        num_prefix_tokens=model.config.num_prefix_tokens,
        query=query_kind(model.config),
        logits=None if logits is None else logits.float().cpu(),
    )


def _patch_map(weights: torch.Tensor, output: AttentionOutput) -> torch.Tensor:
    """(..., N, N) token-to-token weights -> (..., rows, cols): the row of the token(s) the prediction reads (class
    token, or the mean over patch tokens), keeping only the patch columns (class token and registers dropped) and
    renormalised to sum to one over the patches."""
    prefix = output.num_prefix_tokens
    rows = weights[..., 0, :] if output.query == "cls" else weights[..., prefix:, :].mean(dim=-2)  # (..., N)
    patches = rows[..., prefix:]
    patches = patches / patches.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(patches.dtype).tiny)
    return patches.unflatten(-1, output.grid)  # (..., rows, cols)


def attention_rollout(output: AttentionOutput) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): per block, the head-averaged attention plus the identity for the
    residual connection, 0.5 * A + 0.5 * I (rows still sum to one), multiplied from the first block to the last.
    Returns (B, rows, cols): how much each patch contributes to the token(s) the prediction reads."""
    rollout = None
    for weights in output.attentions:
        mixed = weights.mean(dim=1)  # (B, N, N), heads averaged
        identity = torch.eye(mixed.shape[-1], dtype=mixed.dtype)
        mixed = 0.5 * mixed + 0.5 * identity
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout  # later blocks mix what earlier blocks mixed
    return _patch_map(rollout, output)


def last_layer_attention(output: AttentionOutput) -> torch.Tensor:
    """The last block's attention per head, (B, heads, rows, cols), over the patches (prefix tokens dropped)."""
    return _patch_map(output.attentions[-1], output)


def token_distances(grid: tuple[int, int], stride: float) -> torch.Tensor:
    """(N, N) Euclidean distances in input pixels between the centres of a grid's tokens, `stride` pixels apart."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=-1).double() * stride  # (N, 2)
    return torch.cdist(centres, centres)


def attention_distance(output: AttentionOutput, stride: float) -> torch.Tensor:
    """Mean attention distance in pixels, (layers, heads) (ViT paper, Figure 7): for each patch query, the distance
    to every patch key weighted by the attention between them (renormalised over the patches, since prefix tokens
    have no position), averaged over the queries and the images."""
    distances = token_distances(output.grid, stride).float()  # (N, N)
    prefix = output.num_prefix_tokens
    per_layer = []
    for weights in output.attentions:
        patches = weights[:, :, prefix:, prefix:]  # (B, heads, N, N)
        patches = patches / patches.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(patches.dtype).tiny)
        per_layer.append((patches * distances).sum(dim=-1).mean(dim=(0, 2)))  # (heads,)
    return torch.stack(per_layer)


def mean_attention_distance(
    model: ViTHFForImageClassification | ViTHFModel, pixel_values: torch.Tensor, batch_size: int = 32
) -> torch.Tensor:
    """Mean attention distance in input pixels per layer and head, (layers, heads), over the images of
    `pixel_values` (B, 3, H, W), run `batch_size` at a time."""
    if len(pixel_values) == 0:
        raise ValueError("mean_attention_distance needs at least one image.")
    total = 0.0
    for chunk in pixel_values.split(batch_size):
        output = attention_weights(model, chunk)
        total = total + attention_distance(output, model.config.token_stride) * len(chunk)
    return total / len(pixel_values)


def uniform_attention_distance(grid: Sequence[int], stride: float) -> float:
    """The mean attention distance of attention spread evenly over all patches: the mean distance between two
    tokens of the grid (a reference line: heads above it attend farther than uniform)."""
    return token_distances(tuple(grid), stride).mean().item()
