"""Helpers for comparing timm models with their vit_hf conversions on random weights."""

import timm
import torch
from torch import nn


@torch.no_grad()
def randomize_weights_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter informative random values. timm's initialisation leaves layer scales at 1e-5, norms at
    one and biases at zero, which would hide a conversion mistake in any of them."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if param.ndim == 1 and name.endswith(("weight", "gamma")):  # norm scales, layer scales
            param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
        elif param.ndim == 1 or "token" in name or "pos_embed" in name:  # biases, prefix tokens, positions
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
        else:
            param.copy_(torch.randn(param.shape, generator=generator) * param.std().clamp(min=0.02))
    return model


def random_timm_model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """`timm.create_model(name, pretrained=False, **kwargs)` in eval mode with `randomize_weights_` applied."""
    return randomize_weights_(timm.create_model(name, pretrained=False, **kwargs).eval(), seed)


def pixels(image_size, batch: int = 2, seed: int = 1) -> torch.Tensor:
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()
