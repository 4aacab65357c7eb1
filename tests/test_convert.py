"""`python -m vit_hf.convert`: a timm checkpoint becomes a model folder that loads with and without vit_hf."""

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

from tests.timm_helpers import max_abs_diff, pixels, random_timm_model
from vit_hf import ViTHFForImageClassification, ViTHFImageProcessor
from vit_hf.timm.convert import main

NAME = "vit_tiny_r_s16_p8_224"  # a hybrid: the folder must carry the ResNetV2 code too


@pytest.fixture
def checkpoint(tmp_path):
    timm_model = random_timm_model(NAME, num_classes=10)
    path = tmp_path / "model.safetensors"
    save_file(timm_model.state_dict(), path)
    return path


def timm_reference(checkpoint, **kwargs):
    overlay = dict(file=str(checkpoint), num_classes=10)
    return timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10, **kwargs).eval()


def test_converts_a_local_checkpoint_into_a_loadable_folder(checkpoint, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vit_hf.convert")
    out = tmp_path / "converted"
    assert main([NAME, str(out), "--checkpoint", str(checkpoint), "--image-size", "256"]) == 0
    assert {
        "config.json",
        "model.safetensors",
        "configuration_vit_hf.py",
        "modeling_vit_hf.py",
        "resnetv2_vit_hf.py",
        "preprocessor_config.json",
        "image_processing_vit_hf.py",
        "README.md",
    } <= set(os.listdir(out))
    assert sorted(os.listdir(tmp_path)) == ["converted", "model.safetensors"]  # no staging folder left
    assert "Max absolute difference to timm's outputs on a random image: 0.00e+00" in caplog.text

    model = AutoModelForImageClassification.from_pretrained(out).eval()
    assert type(model) is ViTHFForImageClassification
    assert model.config.image_size == 256 and model.config.num_labels == 10
    assert model.config.timm_model == NAME
    reference = timm_reference(checkpoint, img_size=256)
    x = pixels(256, batch=1)
    with torch.no_grad():
        assert max_abs_diff(model(x).logits, reference(x)) <= 1e-4

    processor = AutoImageProcessor.from_pretrained(out)
    assert type(processor) is ViTHFImageProcessor and processor.crop_size == {"height": 256, "width": 256}
    transform = timm.data.create_transform(
        **timm.data.resolve_data_config({"input_size": (3, 256, 256)}, model=reference)
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (427, 640, 3), dtype=np.uint8))
    assert max_abs_diff(processor(image, return_tensors="pt")["pixel_values"][0], transform(image)) <= 1e-6


def test_folder_loads_in_a_fresh_process_without_vit_hf(checkpoint, tmp_path):
    """Model and image processor load through the copied code (trust_remote_code) and give timm's outputs."""
    out = tmp_path / "converted"
    assert main([NAME, str(out), "--checkpoint", str(checkpoint)]) == 0
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (375, 500, 3), dtype=np.uint8))
    image.save(tmp_path / "image.png")
    reference = timm_reference(checkpoint)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=reference))
    with torch.no_grad():
        expected = reference(transform(image).unsqueeze(0))
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["vit_hf"] = None  # any `import vit_hf` now fails
        import torch
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline
        folder = {str(out)!r}
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        image = Image.open({str(tmp_path / "image.png")!r})
        with torch.no_grad():
            logits = model(**processor(image, return_tensors="pt")).logits
        top = pipeline("image-classification", model=folder, trust_remote_code=True)(image, top_k=1)[0]
        torch.save({{"logits": logits, "top": top["label"]}}, {str(tmp_path / "out.pt")!r})
        """
    )
    env = dict(os.environ, PYTHONPATH="")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    out_data = torch.load(tmp_path / "out.pt")
    assert max_abs_diff(out_data["logits"], expected) <= 1e-4
    assert out_data["top"] == f"LABEL_{expected.argmax().item()}"


def test_push_to_hub_offline_keeps_the_folder_and_says_how_to_upload(checkpoint, tmp_path, caplog):
    out = tmp_path / "converted"
    code = main([NAME, str(out), "--checkpoint", str(checkpoint), "--push-to-hub", "someone/vit-tiny"])
    assert code == 1
    assert (out / "model.safetensors").is_file()
    assert "Could not push to the Hub" in caplog.text and f"hf upload someone/vit-tiny {out}" in caplog.text


def test_existing_folder_needs_overwrite(checkpoint, tmp_path, capsys):
    out = tmp_path / "converted"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    with pytest.raises(SystemExit):
        main([NAME, str(out), "--checkpoint", str(checkpoint)])
    assert "--overwrite" in capsys.readouterr().err
    assert main([NAME, str(out), "--checkpoint", str(checkpoint), "--num-labels", "4", "--overwrite"]) == 0
    assert not (out / "old.txt").exists()
    model = AutoModelForImageClassification.from_pretrained(out)
    assert model.config.num_labels == 4 and not model.head.weight.any()
    assert "new zero-initialised 4-class head" in (out / "README.md").read_text()
    assert sorted(os.listdir(tmp_path)) == ["converted", "model.safetensors"]


def test_new_head_with_timm_number_of_classes_is_written(checkpoint, tmp_path, caplog):
    """A new head is zero-initialised, so it is not compared with timm's, even when it has as many classes."""
    out = tmp_path / "converted"
    assert main([NAME, str(out), "--checkpoint", str(checkpoint), "--num-labels", "10"]) == 0
    assert "not exact" not in caplog.text
    model = AutoModelForImageClassification.from_pretrained(out)
    assert model.config.num_labels == 10 and not model.head.weight.any()
    assert "new zero-initialised 10-class head" in (out / "README.md").read_text()


def test_offline_without_checkpoint_is_one_clear_message(tmp_path, caplog, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert main([NAME, str(tmp_path / "out")]) == 2
    assert "--checkpoint model.safetensors" in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "out").exists()


def test_an_inexact_conversion_writes_nothing(checkpoint, tmp_path, caplog, monkeypatch):
    import vit_hf.timm.convert

    convert_exactly = vit_hf.timm.convert.from_timm

    def off_by_a_little(timm_model, **kwargs):
        model = convert_exactly(timm_model, **kwargs)
        model.vit.norm.weight.data.add_(0.01)
        return model

    monkeypatch.setattr(vit_hf.timm.convert, "from_timm", off_by_a_little)
    out = tmp_path / "converted"
    assert main([NAME, str(out), "--checkpoint", str(checkpoint)]) == 3
    assert "not exact" in caplog.text and not out.exists()


def test_flags_take_the_recipes_spelling_too(tmp_path):
    """`--image_size` as in recipes/finetune.py, beside `--image-size`."""
    from vit_hf.timm.convert import parse_args

    for flag in ("--image-size", "--image_size"):
        args = parse_args(["vit_tiny_patch16_224", str(tmp_path / "out"), flag, "384", "--num_labels", "10"])
        assert args.image_size == 384 and args.num_labels == 10


def test_model_card_metadata_names_the_timm_weights_it_came_from(tmp_path):
    import argparse

    from huggingface_hub import ModelCard

    from vit_hf.timm.convert import converted_model_card

    timm_model = random_timm_model(NAME, num_classes=10)
    args = argparse.Namespace(
        model_name=NAME, checkpoint=None, num_labels=None, push_to_hub="user/converted", out_dir=tmp_path / "out"
    )
    converted_model_card(args, timm_model, difference=0.0).save(tmp_path / "README.md")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == timm_model.pretrained_cfg["hf_hub_id"]
    assert (card.data.library_name, card.data.pipeline_tag) == ("transformers", "image-classification")
    assert 'from_pretrained("user/converted", trust_remote_code=True)' in card.text
    args.checkpoint = tmp_path / "model.safetensors"  # local weights: nothing on the Hub to link to
    assert converted_model_card(args, timm_model, difference=0.0).data.base_model is None
