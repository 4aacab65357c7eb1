"""Look inside a ViT: attention rollout and per-head attention over the image, position-embedding similarity, mean
attention distance, patch-embedding filters and the most confident mistakes (the pictures of the ViT paper's
Figures 6 and 7), for any vit_hf model: plain or hybrid, class token or mean pooling, registers, any input size.

    python -m vit_hf.visualize MODEL IMAGE [IMAGE ...] --out DIR
"""

from .attention import (
    AttentionOutput,
    attention_distance,
    attention_rollout,
    attention_weights,
    eager_attention,
    last_layer_attention,
    mean_attention_distance,
    uniform_attention_distance,
)
from .embeddings import patch_filter_components, position_embedding_similarity
from .figures import (
    plot_attention_distance,
    plot_attention_maps,
    plot_mistakes,
    plot_patch_filters,
    plot_position_embeddings,
    to_display,
)
from .mistakes import Mistake, most_confident_mistakes
from .pictures import write_pictures

__all__ = [
    "AttentionOutput",
    "Mistake",
    "attention_distance",
    "attention_rollout",
    "attention_weights",
    "eager_attention",
    "last_layer_attention",
    "mean_attention_distance",
    "most_confident_mistakes",
    "patch_filter_components",
    "plot_attention_distance",
    "plot_attention_maps",
    "plot_mistakes",
    "plot_patch_filters",
    "plot_position_embeddings",
    "position_embedding_similarity",
    "to_display",
    "uniform_attention_distance",
    "write_pictures",
]
