import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, pipeline

from tests.conftest import tiny_config
from vit_hf import ViTHFConfig, ViTHFForImageClassification, ViTHFModel
from vit_hf.image_processing_vit_hf import make_image_processor

LABELS = {0: "cat", 1: "dog", 2: "ship", 3: "truck", 4: "frog"}


@pytest.fixture
def saved_model(tmp_path):
    """A hybrid model with a trained-looking head, saved with its image processor."""
    config = tiny_config(
        backbone_depths=[1], patch_size=1, image_size=32, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    )
    model = ViTHFForImageClassification(config).eval()
    torch.nn.init.normal_(model.head.weight)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    make_image_processor(32).save_pretrained(folder)
    return model, folder


def test_auto_classes_know_the_model_type():
    config = AutoConfig.for_model(
        "vit_hf",
        image_size=32,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    assert isinstance(config, ViTHFConfig)
    assert type(AutoModel.from_config(config)) is ViTHFModel
    assert type(AutoModelForImageClassification.from_config(config)) is ViTHFForImageClassification


def test_save_writes_code_and_full_auto_map(saved_model):
    _, folder = saved_model
    files = set(os.listdir(folder))
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= files
    assert {"configuration_vit_hf.py", "modeling_vit_hf.py", "resnetv2_vit_hf.py"} <= files
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForImageClassification"}


def test_round_trip_gives_identical_logits(saved_model):
    model, folder = saved_model
    x = torch.randn(2, 3, 32, 32)
    loaded = AutoModelForImageClassification.from_pretrained(folder).eval()
    assert type(loaded) is ViTHFForImageClassification
    assert loaded.config.id2label == LABELS
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)


def test_trust_remote_code_load_without_vit_hf(saved_model, tmp_path):
    """A fresh Python process in which `import vit_hf` fails loads the folder through the copied code."""
    model, folder = saved_model
    x = torch.randn(2, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(x).logits
        expected_hidden = model.vit(x).last_hidden_state
        model.set_attn_implementation("sdpa_cpu_bf16")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected_bf16 = model(x).logits.float()
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["vit_hf"] = None  # any `import vit_hf` now raises ImportError
        try:
            import vit_hf
            raise SystemExit("vit_hf is importable")
        except ImportError:
            pass
        import torch
        from transformers import AutoModel, AutoModelForImageClassification
        x = torch.load({str(tmp_path / "x.pt")!r})
        clf = AutoModelForImageClassification.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert type(clf).__module__.startswith("transformers_modules"), type(clf).__module__
        # The model file registers its attention implementation itself.
        kernel = AutoModelForImageClassification.from_pretrained(
            {str(folder)!r}, trust_remote_code=True, attn_implementation="sdpa_cpu_bf16"
        ).eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_logits = kernel(x).logits.float()
        with torch.no_grad():
            torch.save({{"logits": clf(x).logits, "hidden": base(x).last_hidden_state, "bf16": bf16_logits}},
                       {str(tmp_path / "out.pt")!r})
        """
    )
    env = dict(os.environ, PYTHONPATH="")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    assert torch.equal(out["logits"], expected)
    assert torch.equal(out["hidden"], expected_hidden)
    assert torch.equal(out["bf16"], expected_bf16)


def test_pipeline_on_a_saved_folder(saved_model):
    _, folder = saved_model
    classify = pipeline("image-classification", model=str(folder))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    predictions = classify(image, top_k=3)
    assert len(predictions) == 3
    assert {p["label"] for p in predictions} <= set(LABELS.values())
    assert abs(sum(p["score"] for p in classify(image, top_k=5)) - 1.0) < 1e-4


def test_pipeline_as_the_readme_writes_it_never_asks_to_run_the_folders_code(saved_model, monkeypatch):
    """transformers guesses a remote video processor from the image processor's auto_map; with vit_hf imported the
    answer is local (there is none), so it must not prompt "[y/N]" (and wait 15 s) for the folder's code."""
    _, folder = saved_model
    prompts = []
    monkeypatch.setattr("builtins.input", lambda *args: prompts.append(args) or "n")
    monkeypatch.setattr("transformers.dynamic_module_utils.TIME_OUT_REMOTE_CODE", 15)
    classify = pipeline("image-classification", model=str(folder))
    assert prompts == [] and classify.model.__class__ is ViTHFForImageClassification


def test_image_processor_matches_model_size_and_normalisation(saved_model):
    _, folder = saved_model
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(folder)
    batch = processor(Image.new("RGB", (50, 70), color=(255, 0, 128)), return_tensors="pt")
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    torch.testing.assert_close(batch["pixel_values"][0, :, 0, 0], torch.tensor([1.0, -1.0, 0.0039]), atol=1e-3, rtol=0)


def test_saved_image_processor_converts_grayscale_images_to_rgb(saved_model):
    """A grayscale photo through the saved processor (transformers' default processor fails on it: `mean must have 1
    elements`)."""
    _, folder = saved_model
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(folder)
    gray = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8), mode="L")
    pixels = processor(gray, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)
    torch.testing.assert_close(pixels, processor(gray.convert("RGB"), return_tensors="pt")["pixel_values"])
