"""The BiT-style ResNetV2 feature extractor of hybrid ViTs (ViT paper, section 3.1 "Hybrid Architecture").

Weight-standardised convolutions with TensorFlow "SAME" padding and GroupNorm, as in timm's
`vision_transformer_hybrid` models; module and parameter names match timm's `ResNetV2` so weights map one to one.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) so that the output has ceil(size / stride) cells."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel_size: int, stride: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel_size, stride)
    left, right = same_padding(x.shape[-1], kernel_size, stride)
    return F.pad(x, (left, right, top, bottom), value=value)


class StdConv2dSame(nn.Conv2d):
    """Conv2d whose filters are standardised (zero mean, unit variance) on every call: "Weight Standardization"."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, eps: float = 1e-8):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        # batch_norm over (1, out, in*k*k) standardises each filter; the same op timm uses, so results match bitwise.
        weight = F.batch_norm(
            self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0, eps=self.eps
        ).reshape_as(self.weight)
        return F.conv2d(x, weight, None, self.stride)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm (32 groups) optionally followed by ReLU."""

    def __init__(self, num_channels: int, apply_act: bool = True):
        super().__init__(32, num_channels, eps=1e-5)
        self.apply_act = apply_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x) if self.apply_act else x


class MaxPool2dSame(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(pad_same(x, 3, 2, value=-float("inf")), 3, 2)


class Stem(nn.Module):
    """7x7 stride-2 conv, GroupNorm + ReLU, 3x3 stride-2 max pool: a quarter of the input resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = StdConv2dSame(in_channels, out_channels, 7, stride=2)
        self.norm = GroupNormAct(out_channels)
        self.pool = MaxPool2dSame()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.norm(self.conv(x)))


class Downsample(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = StdConv2dSame(in_channels, out_channels, 1, stride=stride)
        self.norm = GroupNormAct(out_channels, apply_act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """Post-activation bottleneck (1x1 -> 3x3 -> 1x1, a quarter of the output width inside)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, project_shortcut: bool):
        super().__init__()
        mid_channels = out_channels // 4
        self.downsample = Downsample(in_channels, out_channels, stride) if project_shortcut else None
        self.conv1 = StdConv2dSame(in_channels, mid_channels, 1)
        self.norm1 = GroupNormAct(mid_channels)
        self.conv2 = StdConv2dSame(mid_channels, mid_channels, 3, stride=stride)
        self.norm2 = GroupNormAct(mid_channels)
        self.conv3 = StdConv2dSame(mid_channels, out_channels, 1)
        self.norm3 = GroupNormAct(out_channels, apply_act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return F.relu(x + shortcut)


class Stage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, depth: int, stride: int):
        super().__init__()
        self.blocks = nn.Sequential(
            *[
                # The first block changes width (and resolution), so its shortcut is projected.
                Bottleneck(in_channels, out_channels, stride, project_shortcut=True)
                if i == 0
                else Bottleneck(out_channels, out_channels, 1, project_shortcut=False)
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2Backbone(nn.Module):
    """Stem plus bottleneck stages of widths 256, 512, 1024, 2048 (times `width_factor`); the first stage keeps the
    stem's resolution and each later one halves it, so (3, 4, 9) gives a 1024-channel map at 1/16 of the input."""

    def __init__(self, depths: list[int], in_channels: int = 3, stem_channels: int = 64, width_factor: int = 1):
        super().__init__()
        self.stem = Stem(in_channels, stem_channels * width_factor)
        channels = stem_channels * width_factor
        stages = []
        for index, depth in enumerate(depths):
            out_channels = 256 * 2**index * width_factor
            stages.append(Stage(channels, out_channels, depth, stride=1 if index == 0 else 2))
            channels = out_channels
        self.stages = nn.Sequential(*stages)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(pixel_values))  # (B, C_feat, H / stride, W / stride)
