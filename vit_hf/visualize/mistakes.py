"""The most confident mistakes of a classifier on an evaluation split."""

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Mistake:
    index: int  # position of the example in the order the batches gave it
    label: int
    prediction: int
    confidence: float  # softmax probability of the (wrong) prediction
    pixel_values: torch.Tensor  # (3, H, W), as given to the model


@torch.no_grad()
def most_confident_mistakes(model: nn.Module, batches: Iterable[dict], count: int = 16) -> list[Mistake]:
    """Run the model in eval mode over `batches` of {"pixel_values": (B, 3, H, W), "labels": (B,)} (a DataLoader over
    an evaluation split) and return the `count` wrong predictions made with the highest probability, most confident
    first. Only these examples' pixels are kept. The model's training mode is restored afterwards."""
    training = model.training
    model.eval()
    device = next(model.parameters()).device
    kept: list[tuple[float, int, Mistake]] = []  # min-heap on confidence, then on -index (earlier wins ties)
    seen = 0
    try:
        for batch in batches:
            pixel_values, labels = batch["pixel_values"], batch["labels"]
            probabilities = model(pixel_values=pixel_values.to(device)).logits.float().softmax(dim=-1).cpu()
            confidence, predictions = probabilities.max(dim=-1)
            for row in torch.nonzero(predictions != labels.cpu()).flatten().tolist():
                mistake = Mistake(
                    seen + row, int(labels[row]), int(predictions[row]), confidence[row].item(), pixel_values[row].cpu()
                )
                entry = (mistake.confidence, -mistake.index, mistake)
                if len(kept) < count:
                    heapq.heappush(kept, entry)
                elif entry[:2] > kept[0][:2]:
                    heapq.heapreplace(kept, entry)
            seen += len(labels)
    finally:
        model.train(training)
    return [mistake for _, _, mistake in sorted(kept, key=lambda entry: entry[:2], reverse=True)]
