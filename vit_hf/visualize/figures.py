"""Matplotlib pictures of what a ViT learned, each written atomically as a PNG."""

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ..files import atomic_write  # noqa: E402
from .mistakes import Mistake  # noqa: E402

TILE_INCHES = 1.7


def save_figure(figure: plt.Figure, path: str | Path) -> None:
    """Write the figure to a temporary file beside `path`, then move it into place whole."""
    with atomic_write(path) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(figure)


def to_display(pixel_values: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Model inputs (B, C, H, W), normalised with `mean` / `std`, back to displayable (B, H, W, C) in [0, 1]."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    images = (pixel_values.float().cpu() * std_t + mean_t).clamp(0, 1)
    return images.permute(0, 2, 3, 1).numpy()


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(..., rows, cols) token maps -> (..., H, W) over the image, each scaled to a maximum of one."""
    shape = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()  # (M, 1, rows, cols)
    flat = flat / flat.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    resized = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)  # (M, 1, H, W)
    return resized.reshape(*shape, *size).numpy()


def _show(axis: plt.Axes, image: np.ndarray, overlay: np.ndarray | None = None, title: str = "") -> None:
    axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", interpolation="nearest")
    if overlay is not None:
        axis.imshow(overlay, cmap="inferno", alpha=0.55, vmin=0, vmax=1, interpolation="nearest")
    axis.set_title(title, fontsize=8)
    axis.set_axis_off()


def plot_attention_maps(
    images: np.ndarray, rollout: torch.Tensor, heads: torch.Tensor, titles: Sequence[str], path: str | Path
) -> None:
    """One row per image: the image (titled, e.g. with label and prediction), its attention rollout overlaid, and
    the last layer's attention of each head overlaid. `images` (B, H, W, C) in [0, 1], `rollout` (B, rows, cols),
    `heads` (B, heads, rows, cols)."""
    batch, height, width = images.shape[:3]
    num_heads = heads.shape[1]
    rollout_maps, head_maps = _upsample(rollout, (height, width)), _upsample(heads, (height, width))
    figure, axes = plt.subplots(
        batch,
        2 + num_heads,
        figsize=(TILE_INCHES * (2 + num_heads), (TILE_INCHES + 0.3) * batch + 0.3),
        squeeze=False,
        layout="constrained",
    )
    for row in range(batch):
        _show(axes[row, 0], images[row], title=titles[row])
        _show(axes[row, 1], images[row], rollout_maps[row], "rollout" if row == 0 else "")
        for head in range(num_heads):
            _show(
                axes[row, 2 + head], images[row], head_maps[row, head], f"last layer, head {head}" if row == 0 else ""
            )
    figure.suptitle("Attention: rollout over all layers, and the last layer per head", fontsize=10)
    save_figure(figure, path)


def mosaic(tiles: torch.Tensor, cols: int, fill: float) -> np.ndarray:
    """(n, h, w[, c]) tiles -> one (rows * (h + 1) - 1, cols * (w + 1) - 1[, c]) image, row by row, with a line of
    `fill` between tiles (one imshow draws it: far faster than an axis per tile)."""
    count, height, width = tiles.shape[:3]
    rows = math.ceil(count / cols)
    grid = torch.full((rows * cols, height + 1, width + 1, *tiles.shape[3:]), fill, dtype=torch.float32)
    grid[:count, :height, :width] = tiles.float()
    grid = grid.unflatten(0, (rows, cols)).transpose(1, 2)  # (rows, h + 1, cols, w + 1[, c])
    return grid.reshape(rows * (height + 1), cols * (width + 1), *tiles.shape[3:])[:-1, :-1].numpy()


def plot_position_embeddings(similarity: torch.Tensor, path: str | Path) -> None:
    """The cosine-similarity maps of `position_embedding_similarity`, laid out on the token grid: the tile at row i,
    column j shows how similar patch (i, j)'s position embedding is to every position's."""
    rows, cols = similarity.shape[:2]
    side = min(10.0, max(4.0, 0.35 * max(rows, cols)))
    figure, axis = plt.subplots(figsize=(side * cols / max(rows, cols) + 1.2, side * rows / max(rows, cols)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    tiles = similarity.flatten(0, 1)  # (rows * cols, rows, cols): tile i * cols + j is patch (i, j)'s map
    image = axis.imshow(mosaic(tiles, cols, float("nan")), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="cosine similarity")
    axis.set_title(f"Position embedding similarity ({rows}x{cols} grid)", fontsize=10)
    axis.set_axis_off()
    save_figure(figure, path)


def plot_attention_distance(distances: torch.Tensor, uniform: float, path: str | Path) -> None:
    """Mean attention distance (pixels) of every head against the layer, `distances` (layers, heads), with the
    distance uniform attention would give."""
    layers, heads = distances.shape
    figure, axis = plt.subplots(figsize=(max(4.5, 0.45 * layers + 2), 4))
    for head in range(heads):
        axis.scatter(np.arange(1, layers + 1), distances[:, head].numpy(), s=18, label=f"head {head}")
    axis.axhline(uniform, color="gray", linestyle="--", linewidth=1, label="uniform attention")
    axis.set(xlabel="layer", ylabel="mean attention distance (pixels)", title="Mean attention distance")
    axis.set_xticks(range(1, layers + 1))
    axis.set_ylim(0, 1.15 * max(distances.max().item(), uniform))
    axis.grid(alpha=0.3)
    if heads <= 16:
        axis.legend(fontsize=7, ncol=2, loc="lower right")
    save_figure(figure, path)


def plot_patch_filters(components: torch.Tensor, path: str | Path) -> None:
    """Principal components of the patch-embedding filters (count, 3, p, p) as RGB tiles, each scaled to [0, 1]."""
    count = components.shape[0]
    low = components.flatten(1).amin(dim=1).view(-1, 1, 1, 1)
    high = components.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    tiles = ((components - low) / (high - low).clamp_min(1e-12)).permute(0, 2, 3, 1)  # (count, p, p, 3)
    cols = min(7, count)
    rows = math.ceil(count / cols)
    figure, axis = plt.subplots(figsize=(1.1 * cols, 1.1 * rows + 0.4))
    axis.imshow(mosaic(tiles, cols, fill=1.0), interpolation="nearest")
    axis.set_title("Patch-embedding filters: principal components", fontsize=10)
    axis.set_axis_off()
    save_figure(figure, path)


def plot_mistakes(
    mistakes: Sequence[Mistake], id2label: dict[int, str], mean: Sequence[float], std: Sequence[float], path: str | Path
) -> None:
    """A grid of `most_confident_mistakes` (most confident first) with true and predicted labels; `mean` / `std` are
    the normalisation of their pixel values (the image processor's)."""
    if not mistakes:
        raise ValueError("There are no mistakes to draw: the model classified every example correctly.")
    images = to_display(torch.stack([mistake.pixel_values for mistake in mistakes]), mean, std)
    cols = min(8, len(mistakes))
    rows = math.ceil(len(mistakes) / cols)
    figure, axes = plt.subplots(
        rows, cols, figsize=(TILE_INCHES * cols, (TILE_INCHES + 0.3) * rows + 0.3), squeeze=False, layout="constrained"
    )
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index < len(mistakes):
            mistake = mistakes[index]
            title = f"true: {id2label[mistake.label]}\npred: {id2label[mistake.prediction]} ({mistake.confidence:.0%})"
            _show(axis, images[index], title=title)
    figure.suptitle("Most confident mistakes", fontsize=10)
    save_figure(figure, path)
