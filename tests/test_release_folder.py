"""A folder saved by an earlier release (vit_hf at commit 76230b9, before the subpackages and the renamed layer
classes) loads with the current package and, through its own copied code, without it, giving the pixels and logits
that release computed. Built by tests/fixtures/make_release_folder.py."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

from tests.fixtures.make_release_folder import fixed_image
from vit_hf import ViTHFForImageClassification, ViTHFImageProcessor

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FOLDER = FIXTURES / "release_76230b9"
EXPECTED = load_file(FIXTURES / "release_76230b9_expected.safetensors")
# Logits are float32 sums over a few thousand products: another CPU's kernels may round them differently.
LOGIT_TOLERANCE = dict(rtol=0, atol=1e-5)


def test_loads_with_the_current_package():
    model, info = AutoModelForImageClassification.from_pretrained(FOLDER, output_loading_info=True)
    assert type(model) is ViTHFForImageClassification  # the package's classes, not the folder's copies
    assert not any(info.values()), info  # every parameter name still matches
    processor = AutoImageProcessor.from_pretrained(FOLDER)
    assert type(processor) is ViTHFImageProcessor
    pixel_values = processor(fixed_image(), return_tensors="pt")["pixel_values"]
    assert torch.equal(pixel_values, EXPECTED["pixel_values"])
    with torch.no_grad():
        logits = model.eval()(pixel_values).logits
    torch.testing.assert_close(logits, EXPECTED["logits"], **LOGIT_TOLERANCE)
    assert model.config.id2label == {0: "cat", 1: "dog", 2: "ship"}


def test_loads_without_vit_hf_through_its_own_code(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["vit_hf"] = None  # any `import vit_hf` now raises ImportError
        import numpy as np
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(FOLDER)!r}, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained({str(FOLDER)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        image = ((np.arange(40 * 48 * 3).reshape(40, 48, 3) * 37) % 256).astype(np.uint8)
        pixel_values = processor(image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            torch.save({{"pixel_values": pixel_values, "logits": model(pixel_values).logits}}, "out.pt")
        """
    )
    env = dict(os.environ, PYTHONPATH="")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    assert torch.equal(out["pixel_values"], EXPECTED["pixel_values"])
    torch.testing.assert_close(out["logits"], EXPECTED["logits"], **LOGIT_TOLERANCE)
