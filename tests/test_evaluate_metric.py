"""The shipped metrics as an `evaluate` module: `evaluate.evaluator("image-classification")` scores a vit_hf model
offline and agrees with the model's own predictions."""

import pytest
import torch
from datasets import load_dataset

from tests.conftest import tiny_config
from tests.data_utils import CIFAR10_NAMES, write_cifar_like
from vit_hf import ViTHFForImageClassification
from vit_hf.image_processing_vit_hf import make_image_processor
from vit_hf.training.metrics import confusion_counts


def test_evaluator_scores_a_vit_hf_model_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    import evaluate

    from vit_hf.training.evaluate_metric import load_metric

    dataset = load_dataset(str(write_cifar_like(tmp_path / "cifar10", n_train=10, n_test=30)), split="test")
    id2label = dict(enumerate(CIFAR10_NAMES))
    torch.manual_seed(0)
    label2id = {label: index for index, label in id2label.items()}
    model = ViTHFForImageClassification(tiny_config(num_labels=10, id2label=id2label, label2id=label2id))
    torch.nn.init.normal_(model.head.weight)  # a zero head would predict class 0 for every image
    processor = make_image_processor(32)

    results = evaluate.evaluator("image-classification").compute(
        model_or_pipeline=model.eval(),
        feature_extractor=processor,
        data=dataset,
        metric=load_metric(),
        input_column="img",
        label_column="label",
        label_mapping=model.config.label2id,
        device=-1,
    )
    with torch.no_grad():
        logits = model(**processor(list(dataset["img"]), return_tensors="pt")).logits
    labels = torch.tensor(list(dataset["label"]))
    expected = confusion_counts(logits.argmax(-1), labels, num_labels=10)
    assert results["num_examples"] == 30
    assert results["accuracy"] == pytest.approx(expected.diagonal().sum().item() / 30)
    assert torch.equal(torch.tensor(results["confusion_matrix"]), expected)
    assert len(set(logits.argmax(-1).tolist())) > 1  # the comparison sees more than one predicted class


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [([], [], "evaluation data is empty"), ([0, 7], [0, 1], r"predictions must be in \[0, 3\)")],
)
def test_metric_bad_input_is_a_clear_error(monkeypatch, predictions, references, message):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    from vit_hf.training.evaluate_metric import load_metric

    with pytest.raises(ValueError, match=message):
        load_metric().compute(predictions=predictions, references=references, num_labels=3)
