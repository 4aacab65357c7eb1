"""The set of pictures written for a model and a handful of images (by the CLI and after fine-tuning)."""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .attention import (
    attention_distance,
    attention_rollout,
    attention_weights,
    base_model,
    last_layer_attention,
    uniform_attention_distance,
)
from .embeddings import patch_filter_components, position_embedding_similarity
from .figures import (
    plot_attention_distance,
    plot_attention_maps,
    plot_patch_filters,
    plot_position_embeddings,
    to_display,
)


def image_titles(
    count: int,
    logits: torch.Tensor | None,
    id2label: dict[int, str],
    labels: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
) -> list[str]:
    """'name', 'true: cat', 'pred: dog (87%)' lines for each of `count` images, as far as they are known."""
    titles = []
    for row in range(count):
        lines = [str(names[row])] if names is not None else []
        if labels is not None:
            lines.append(f"true: {id2label[int(labels[row])]}")
        if logits is not None:
            probability, prediction = logits[row].softmax(dim=-1).max(dim=-1)
            lines.append(f"pred: {id2label.get(int(prediction), prediction.item())} ({probability.item():.0%})")
        titles.append("\n".join(lines))
    return titles


def write_pictures(
    model: nn.Module,
    pixel_values: torch.Tensor,
    out_dir: str | Path,
    mean: Sequence[float],
    std: Sequence[float],
    labels: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    patch_filters: bool = False,
) -> list[str]:
    """Write attention_maps.png, attention_distance.png and position_embeddings.png (when the model has position
    embeddings), plus patch_filters.png with `patch_filters` for a plain ViT, into `out_dir` from one forward pass
    over `pixel_values` (B, 3, H, W), the model's inputs normalised with `mean` / `std`. Returns the file names."""
    out_dir = Path(out_dir)
    config = model.config
    output = attention_weights(model, pixel_values)
    logits = output.logits if config.num_labels > 0 else None  # a headless model's "logits" are its features
    titles = image_titles(len(pixel_values), logits, {int(k): v for k, v in config.id2label.items()}, labels, names)
    images = to_display(pixel_values, mean, std)
    written = ["attention_maps.png"]
    plot_attention_maps(images, attention_rollout(output), last_layer_attention(output), titles, out_dir / written[0])
    plot_attention_distance(
        attention_distance(output, config.token_stride),
        uniform_attention_distance(output.grid, config.token_stride),
        out_dir / "attention_distance.png",
    )
    written.append("attention_distance.png")
    if base_model(model).pos_embed is not None:
        plot_position_embeddings(position_embedding_similarity(model), out_dir / "position_embeddings.png")
        written.append("position_embeddings.png")
    if patch_filters and config.backbone_depths is None:
        plot_patch_filters(patch_filter_components(model), out_dir / "patch_filters.png")
        written.append("patch_filters.png")
    return written
