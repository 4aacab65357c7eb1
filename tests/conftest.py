import os

import pytest

# Nothing in the test run may reach the network: the Hub client fails fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_config(**overrides):
    """A ViT small enough for CPU tests: 32 px images, 4 px patches, 2 blocks of width 32."""
    from vit_hf import ViTHFConfig

    values = dict(
        image_size=32,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=5,
    )
    values.update(overrides)
    return ViTHFConfig(**values)


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    """Remote-code modules and caches go to a per-session temporary HF_HOME, never the user's."""
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Benchmarks called in-process set torch's thread count; later tests compare logits bit for bit with a fresh
    process, whose kernels must then run with the same number of threads."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
