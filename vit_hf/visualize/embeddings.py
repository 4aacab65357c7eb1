"""What the embedding layers learned: position-embedding similarity and the patch-embedding filters."""

import torch
import torch.nn.functional as F
from torch import nn

from .attention import base_model


@torch.no_grad()
def position_embedding_similarity(model: nn.Module) -> torch.Tensor:
    """Cosine similarity between the position embedding of every patch position and every other one,
    (rows, cols, rows, cols) on the model's token grid (for a hybrid, the backbone's feature grid): entry
    [i, j] is the map of patch (i, j)'s similarity to all positions (ViT paper, Figure 7 centre)."""
    encoder = base_model(model)
    config = model.config
    if encoder.pos_embed is None:
        raise ValueError("This model has no position embeddings (use_pos_embed=False): there is nothing to compare.")
    grid = config.grid_size()
    patches = encoder.pos_embed[0, -grid[0] * grid[1] :].float().cpu()  # (N, C), prefix-token embeddings dropped
    patches = F.normalize(patches, dim=-1)
    return (patches @ patches.T).reshape(*grid, *grid)


@torch.no_grad()
def patch_filter_components(model: nn.Module, count: int = 28) -> torch.Tensor:
    """The first `count` principal components of the patch-embedding filters, (count, channels, patch, patch), in
    order of explained variance (ViT paper, Figure 7 left): the basis the model projects each pixel patch onto. Plain
    ViTs only: a hybrid's filters act on the backbone's feature map, not on pixels."""
    config = model.config
    if config.backbone_depths is not None:
        raise ValueError(
            "Patch-embedding filters are pictures of pixel patches only in a plain ViT; this hybrid's patch embedding "
            "runs on its ResNet backbone's feature map."
        )
    weight = base_model(model).patch_embed.proj.weight.float().cpu()  # (C, 3, p, p)
    filters = weight.flatten(1)  # (C, 3 * p * p)
    filters = filters - filters.mean(dim=0)
    count = min(count, *filters.shape)
    _, _, components = torch.linalg.svd(filters, full_matrices=False)  # rows: principal directions
    return components[:count].reshape(count, *weight.shape[1:])
