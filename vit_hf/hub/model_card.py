"""Model cards (README.md): Hub metadata from `ModelCardData` above a Markdown body. `build_model_card` writes the
fine-tuned model's (a `model-index` of the results, the base model, dataset, hyperparameters, results table,
pictures and how to load the model); `model_card` is the one builder both it and the timm converter use."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ body }}
"""

METRIC_NAMES = {"accuracy": "Top-1 accuracy", "top5_accuracy": "Top-5 accuracy", "loss": "Loss"}


def model_card(model_name: str, body: str, *, tags: list[str], base_model: str | None = None, **card_data) -> ModelCard:
    """A card for a vit_hf image classifier: `ModelCardData` (transformers library, image-classification pipeline,
    `tags`, `base_model` and any other `ModelCardData` field) rendered as YAML above `# model_name` and `body`."""
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=tags,
        base_model=base_model,
        model_name=model_name,
        **card_data,
    )
    return ModelCard.from_template(data, template_str=TEMPLATE, model_name=model_name, body=body)


def _results_table(results: dict[str, float]) -> str:
    rows = ["| split | " + " | ".join(METRIC_NAMES.values()) + " |", "|---" * (len(METRIC_NAMES) + 1) + "|"]
    for split in ("eval", "test"):
        if f"{split}_accuracy" in results:
            values = [f"{results.get(f'{split}_{key}', float('nan')):.4f}" for key in METRIC_NAMES]
            name = "validation" if split == "eval" else "test"
            rows.append(f"| {name} | " + " | ".join(values) + " |")
    return "\n".join(rows)


FINE_TUNED_BODY = """{origin}{described} for image classification on **{dataset_name}** at {image_size}x{image_size}
with `vit_hf`.

## Results

{results_table}

{pictures}

## How to use

The model code travels with the weights, so `vit_hf` need not be installed:

```python
from transformers import pipeline

classify = pipeline("image-classification", model="{load_id}", trust_remote_code=True)
classify("image.png")
```

or, with vit_hf installed from its source repository, `AutoModelForImageClassification.from_pretrained("{load_id}")`
after `import vit_hf`.

## Training hyperparameters

| name | value |
|---|---|
{hyperparameter_rows}
"""


def _eval_results(results: dict[str, float], dataset_id: str | None, dataset_name: str) -> list[EvalResult]:
    """The model-index entries: the test split's top-1 and top-5 when present, the validation split's otherwise."""
    split = "test" if "test_accuracy" in results else "eval"
    return [
        EvalResult(
            task_type="image-classification",
            dataset_type=dataset_id or dataset_name,
            dataset_name=dataset_name,
            dataset_split="test" if split == "test" else "validation",
            metric_type=metric,
            metric_value=round(results[f"{split}_{metric}"], 6),
        )
        for metric in ("accuracy", "top5_accuracy")
        if f"{split}_{metric}" in results
    ]


def build_model_card(
    *,
    model_name: str,
    base_model: str | None,
    dataset_id: str | None,
    dataset_name: str,
    results: dict[str, float],
    hyperparameters: dict,
    image_size: int,
    pictures: list[str],
    repo_id: str | None = None,
    architecture: str | None = None,
) -> ModelCard:
    """`results` uses the recipe's keys (`eval_accuracy`, `test_top5_accuracy`, ...); the test split's metrics go
    into the model-index when present, the validation split's otherwise. `dataset_id` is the dataset's Hub id
    (None for local data, which the Hub cannot link to). `architecture` describes the network in a few words (the
    preset and its overrides, the parameter count)."""
    body = FINE_TUNED_BODY.format(
        origin=f"A Vision Transformer fine-tuned from `{base_model}`"
        if base_model
        else "A Vision Transformer trained from scratch",
        described=f" ({architecture})" if architecture else "",
        dataset_name=dataset_name,
        image_size=image_size,
        results_table=_results_table(results),
        pictures="\n".join(f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in pictures),
        load_id=repo_id or "path/to/this/folder",
        hyperparameter_rows="\n".join(f"| {key} | {value} |" for key, value in sorted(hyperparameters.items())),
    )
    return model_card(
        model_name,
        body,
        tags=["vit_hf", "vision-transformer", "image-classification", "timm"],
        base_model=base_model,
        license="apache-2.0",
        datasets=[dataset_id] if dataset_id else None,
        metrics=["accuracy"],
        eval_results=_eval_results(results, dataset_id, dataset_name) or None,
    )
