"""Pictures of a training run: loss and accuracy curves, and the confusion matrix, saved as PNG."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..files import atomic_write  # noqa: E402


def _save(figure, path: Path) -> None:
    with atomic_write(path) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(figure)


def plot_training_curves(log_history: list[dict], path: str | Path) -> None:
    """Training loss per logged step, validation loss and top-1 / top-5 accuracy per evaluation."""
    train = [entry for entry in log_history if "loss" in entry]
    evals = [entry for entry in log_history if "eval_accuracy" in entry]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        loss_axis.plot([e["step"] for e in train], [e["loss"] for e in train], label="train loss")
    if evals:
        loss_axis.plot([e["step"] for e in evals], [e["eval_loss"] for e in evals], "o-", label="validation loss")
        steps = [e["step"] for e in evals]
        # Top-5 light and dashed under top-1: near 1.0 the two meet, and top-1 must stay visible on top.
        top5 = [e["eval_top5_accuracy"] for e in evals]
        accuracy_axis.plot(steps, top5, "--", color="tab:gray", marker=".", label="top-5", zorder=2)
        accuracy_axis.plot(steps, [e["eval_accuracy"] for e in evals], "o-", color="tab:blue", label="top-1", zorder=3)
    loss_axis.set(xlabel="optimizer step", ylabel="loss", title="Loss")
    accuracy_axis.set(xlabel="optimizer step", ylabel="accuracy", title="Validation accuracy", ylim=(0, 1.01))
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    _save(figure, Path(path))


def plot_confusion_matrix(confusion: torch.Tensor, labels: list[str], path: str | Path, title: str) -> None:
    """Row-normalised confusion matrix (rows: true class, columns: predicted)."""
    counts = confusion.float()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = max(5.0, 0.45 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of the true class")
    if len(labels) <= 30:  # beyond that, names are unreadable
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axis.set_yticks(range(len(labels)), labels)
        for i in range(len(labels)):
            for j in range(len(labels)):
                color = "white" if rates[i, j] > 0.5 else "black"
                axis.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    axis.set(xlabel="predicted", ylabel="true", title=f"{title}\nrow-normalised: each true class sums to 1")
    _save(figure, Path(path))
