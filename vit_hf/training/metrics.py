"""Classification metrics that ship with the package (`evaluate.load("accuracy")` needs the network): top-1 / top-5
accuracy, mean loss and the confusion matrix, accumulated batch by batch from gathered predictions. The label-only
ones are also an `evaluate` module (`vit_hf/training/evaluate_metric.py`) for `evaluate.evaluator`."""

import torch


def confusion_counts(predictions: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """(num_labels, num_labels) counts, rows the true label, columns the predicted one, from (N,) label ids."""
    labels, predictions = labels.long(), predictions.long()
    for name, ids in (("labels", labels), ("predictions", predictions)):
        if ids.numel() and (ids.min() < 0 or ids.max() >= num_labels):
            raise ValueError(f"{name} must be in [0, {num_labels}), got values {ids.unique().tolist()}.")
    flat = torch.bincount(labels * num_labels + predictions, minlength=num_labels**2)
    return flat.reshape(num_labels, num_labels)


class ClassificationMetrics:
    """Accumulates per-example results; `update` takes tensors already gathered across processes (e.g. with
    `accelerator.gather_for_metrics`) so every example counts exactly once."""

    def __init__(self, num_labels: int):
        self.num_labels = num_labels
        self.confusion = torch.zeros(num_labels, num_labels, dtype=torch.long)  # rows: true label, cols: predicted
        self.top5_correct = 0
        self.loss_sum = 0.0
        self.count = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor, losses: torch.Tensor) -> None:
        """logits (B, num_labels), labels (B,), per-example losses (B,)."""
        logits, labels = logits.detach().float().cpu(), labels.detach().cpu().long()
        self.confusion += confusion_counts(logits.argmax(dim=-1), labels, self.num_labels)
        k = min(5, self.num_labels)
        self.top5_correct += (logits.topk(k, dim=-1).indices == labels[:, None]).any(dim=-1).sum().item()
        self.loss_sum += losses.detach().float().sum().item()
        self.count += labels.numel()

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("No examples were evaluated: the evaluation split is empty.")
        return {
            "accuracy": self.confusion.diagonal().sum().item() / self.count,
            "top5_accuracy": self.top5_correct / self.count,
            "loss": self.loss_sum / self.count,
            "num_examples": self.count,
        }
