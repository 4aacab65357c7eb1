"""Helpers for comparing timm models with their vit_hf conversions on random weights."""

import timm
import torch
from torch import nn


@torch.no_grad()
def randomize_weights_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter informative random values, whatever it held before. timm's initialisation leaves layer
    scales at 1e-5, norms at one and biases at zero, which would hide a conversion mistake in any of them."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if param.ndim == 1 and name.endswith(("weight", "gamma")):  # norm scales, layer scales
            values = torch.rand(param.shape, generator=generator) + 0.5
        elif param.ndim == 1 or "token" in name or "pos_embed" in name:  # biases, prefix tokens, positions
            values = torch.randn(param.shape, generator=generator) * 0.1
        else:  # linear and convolution weights
            values = torch.randn(param.shape, generator=generator) * 0.02
        param.copy_(values)
    return model


def random_timm_model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """`timm.create_model(name, pretrained=False, **kwargs)` in eval mode with `randomize_weights_` values. It is
    built on the meta device and given memory afterwards, which skips timm's (slow) initialisation; models with
    buffers (BatchNorm statistics), which that would leave uninitialised, are built normally."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **kwargs)
    if next(model.buffers(), None) is None:
        model = model.to_empty(device="cpu")
    else:
        model = timm.create_model(name, pretrained=False, **kwargs)
    return randomize_weights_(model.eval(), seed)


def pixels(image_size, batch: int = 2, seed: int = 1, channels: int = 3) -> torch.Tensor:
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()
