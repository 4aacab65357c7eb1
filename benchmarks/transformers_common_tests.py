"""Run transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) on vit_hf, the way transformers
tests its ViT: a small tester (32 px images, 4 px patches, 2 blocks of width 32) and every check the mixin makes of
a model (save/load, outputs, attention maps, hidden states, gradient checkpointing, initialisation, torch.export,
...). The tests come from transformers' source distribution, which ships `tests/test_modeling_common.py` and
`tests/test_configuration_common.py` but not the helper modules they import; those are stubbed here (export and
generation mixins empty, so their tests do not run). Nothing here is needed to use vit_hf.

    pip download --no-deps --no-binary :all: transformers==5.24.0   # transformers-5.24.0.tar.gz
    pip install parameterized                                       # the tests' one extra dependency
    python -m benchmarks.transformers_common_tests transformers-5.24.0.tar.gz [--output results.md] [-k expr]
"""

import argparse
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from vit_hf.files import write_text_atomic

COMMON_TESTS = ("test_modeling_common.py", "test_configuration_common.py")
STUBS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "utils/test_configuration_utils.py": (
        'config_common_kwargs = {"return_dict": False, "output_hidden_states": True}\n'
    ),
}
VIT_HF_TESTS = '''
import unittest

from torch import nn
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_MAPPING_NAMES,
)

from vit_hf import ViTHFConfig, ViTHFForImageClassification, ViTHFModel

from .test_configuration_common import ConfigTester
from .test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor

# The mixin finds a model's task (base models train without a loss, heads get labels) in transformers' name tables,
# where a built-in model is listed; vit_hf is registered with the Auto classes, which those tables do not read.
MODEL_MAPPING_NAMES["vit_hf"] = "ViTHFModel"
MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES["vit_hf"] = "ViTHFForImageClassification"


class ViTHFModelTester:
    """As transformers' ViTModelTester: 13 images of 32 px, 4 px patches, 2 blocks of width 32, dropout on."""

    def __init__(self, parent, batch_size=13, image_size=32, patch_size=4, num_labels=10):
        self.parent, self.batch_size, self.image_size, self.patch_size = parent, batch_size, image_size, patch_size
        self.num_channels, self.hidden_size, self.num_hidden_layers, self.num_attention_heads = 3, 32, 2, 4
        self.num_labels, self.is_training = num_labels, True
        self.seq_length = (image_size // patch_size) ** 2 + 1  # patches and the class token

    def get_config(self):
        return ViTHFConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=37,
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            num_labels=self.num_labels,
        )

    def prepare_config_and_inputs_for_common(self):
        shape = [self.batch_size, self.num_channels, self.image_size, self.image_size]
        return self.get_config(), {"pixel_values": floats_tensor(shape)}

    def prepare_config_and_inputs(self):
        config, inputs = self.prepare_config_and_inputs_for_common()
        return config, inputs["pixel_values"], ids_tensor([self.batch_size], self.num_labels)


class ViTHFModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (ViTHFModel, ViTHFForImageClassification)
    test_resize_embeddings = False  # no token embeddings to resize, as transformers' ViT

    def setUp(self):
        self.model_tester = ViTHFModelTester(self)
        # transformers' ViT tests use hidden_size=37; ViTHFConfig checks that its 12 default heads divide it.
        self.config_tester = ConfigTester(self, config_class=ViTHFConfig, has_text_modality=False, hidden_size=48)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model_get_set_embeddings(self):
        """As transformers' ViT tests: the input embeddings are a patch embedding, not an nn.Embedding."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            output_embeddings = model.get_output_embeddings()
            self.assertTrue(output_embeddings is None or isinstance(output_embeddings, nn.Linear))
'''


def extract_common_tests(source: Path, package: Path) -> None:
    """The two common test files from the sdist (a .tar.gz or its unpacked folder) into `package`, with stubs."""
    package.mkdir(parents=True)
    if source.is_dir():
        for name in COMMON_TESTS:
            (package / name).write_text((source / "tests" / name).read_text())
    else:
        with tarfile.open(source) as archive:
            for member in archive.getmembers():
                if re.fullmatch(r"[^/]+/tests/(" + "|".join(map(re.escape, COMMON_TESTS)) + ")", member.name):
                    (package / Path(member.name).name).write_bytes(archive.extractfile(member).read())
    missing = [name for name in COMMON_TESTS if not (package / name).is_file()]
    if missing:
        raise SystemExit(f"{source} holds no tests/{', tests/'.join(missing)}: pass transformers' source distribution.")
    for relative, text in {"__init__.py": "", **STUBS, "test_vit_hf_common.py": VIT_HF_TESTS}.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)


def summarise(junit: Path) -> str:
    """A markdown summary: counts, then every failure and error with the first line of its message."""
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    rows, counts = [], {"passed": 0, "failed": 0, "skipped": 0}
    for case in cases:
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is not None:
            counts["failed"] += 1
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            rows.append(f"| {case.get('name')} | {message[0][:160] if message else ''} |")
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    lines = [f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped", ""]
    if rows:
        lines += ["| failing test | message |", "|---|---|", *rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="transformers-X.tar.gz (sdist) or the folder it unpacks to")
    parser.add_argument("-k", default=None, help="pytest -k expression to run part of the tests")
    parser.add_argument("--output", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        package = Path(folder) / "transformers_common_tests"
        extract_common_tests(args.source, package)
        junit = Path(folder) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        command += [str(package / "test_vit_hf_common.py"), *(["-k", args.k] if args.k else [])]
        subprocess.run(command, cwd=folder, check=False)
        summary = summarise(junit)
    print(summary)
    if args.output:
        write_text_atomic(args.output, summary + "\n")
    return summary


if __name__ == "__main__":
    sys.exit(main() and 0)
