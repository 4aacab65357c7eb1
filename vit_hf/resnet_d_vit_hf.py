"""The ResNet-D backbone of timm's `vit_*_resnet*d_*` hybrids ("Bag of Tricks", He et al. 2019): a deep stem of
three 3x3 convolutions, bottleneck blocks with BatchNorm and ReLU, the stride on the 3x3 convolution and average
pooling before the shortcut's 1x1 convolution. Adapted from timm's `ResNet` (stem_type="deep", avg_down=True) and
re-implemented (saved folders load without timm); module names follow timm's, so its weights map one to one.
BatchNorm uses its running statistics in eval mode, as timm's does. A model file: imports only torch.
"""

import torch
from torch import nn

STEM_WIDTHS = (32, 32, 64)
EXPANSION = 4


class ViTHFResNetDBottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 convolutions with BatchNorm, ReLU after the first two and after the sum with the
    shortcut; a first block's shortcut average-pools (when strided), then projects with a 1x1 convolution."""

    def __init__(self, in_channels: int, width: int, stride: int, project_shortcut: bool):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.act3 = nn.ReLU()
        self.downsample = None
        if project_shortcut:
            pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
            conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.downsample = nn.Sequential(pool, conv, nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        return self.act3(self.bn3(self.conv3(x)) + shortcut)


class ViTHFResNetDBackbone(nn.Module):
    """Deep stem (stride 4 with its max pool), then `len(depths)` stages of bottlenecks of widths 64, 128, 256, 512
    (x4 out); stages after the first halve the map. Returns the last stage's (B, 256 * 2^(stages-1), H/s, W/s) map."""

    def __init__(self, depths: list[int], in_channels: int):
        super().__init__()
        stem, channels = [], in_channels
        for index, width in enumerate(STEM_WIDTHS):
            stem.append(nn.Conv2d(channels, width, 3, stride=2 if index == 0 else 1, padding=1, bias=False))
            if index < len(STEM_WIDTHS) - 1:
                stem += [nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.conv1 = nn.Sequential(*stem)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.stage_names = []
        for stage, depth in enumerate(depths):
            width, stride = 64 * 2**stage, 1 if stage == 0 else 2
            blocks = []
            for number in range(depth):
                first = number == 0
                blocks.append(ViTHFResNetDBottleneck(channels, width, stride if first else 1, project_shortcut=first))
                channels = width * EXPANSION
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))  # timm's stage names
            self.stage_names.append(f"layer{stage + 1}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x


__all__ = ["ViTHFResNetDBackbone", "ViTHFResNetDBottleneck"]
