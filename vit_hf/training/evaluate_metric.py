"""The shipped classification metrics as an `evaluate` module, so that `evaluate.evaluator("image-classification")`
scores a model offline (the Hub's `accuracy` metric is a download):

    from vit_hf.training.evaluate_metric import load_metric
    results = evaluate.evaluator("image-classification").compute(
        model_or_pipeline=classify, data=dataset, metric=load_metric(), label_mapping=model.config.label2id
    )

The evaluator passes predicted label ids, so this gives top-1 accuracy and the confusion matrix (top-5 accuracy and
the loss need the logits: the training loop computes them with `ClassificationMetrics`). `evaluate.load` copies this
file into its module cache and imports it from there, hence the absolute import.
"""

import datasets
import evaluate
import torch

from vit_hf.training.metrics import confusion_counts


class ViTHFClassificationMetrics(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Top-1 accuracy and the confusion matrix (rows: true label, columns: predicted) of vit_hf.",
            citation="",
            inputs_description="predictions and references: label ids; num_labels (optional): the number of classes.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions: list[int], references: list[int], num_labels: int | None = None) -> dict:
        if not len(references):
            raise ValueError("No examples to score: the evaluation data is empty.")
        predictions, references = torch.tensor(predictions), torch.tensor(references)
        if num_labels is None:
            num_labels = int(max(predictions.max(), references.max())) + 1
        confusion = confusion_counts(predictions, references, num_labels)
        return {
            "accuracy": confusion.diagonal().sum().item() / len(references),
            "num_examples": len(references),
            "confusion_matrix": confusion.tolist(),
        }


def load_metric(**kwargs) -> evaluate.EvaluationModule:
    """This module through `evaluate.load` (offline: nothing is downloaded); `kwargs` go to `evaluate.load`."""
    return evaluate.load(__file__, **kwargs)
