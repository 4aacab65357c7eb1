"""The BiT-style ResNetV2 feature extractor of hybrid ViTs (ViT paper, section 3.1 "Hybrid Architecture").

Weight-standardised convolutions with TensorFlow "SAME" padding and GroupNorm, as in timm's
`vision_transformer_hybrid` models; module and parameter names match timm's `ResNetV2` so weights map one to one.
Each piece is adapted from timm and re-implemented here, not imported: this file is copied into saved folders, which
must load with `trust_remote_code=True` where timm is not installed.
"""

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) so that the output has ceil(size / stride) cells. Written with a
    remainder instead of ceil(): the same numbers, and much simpler symbolic shapes under dynamic-shape export."""
    total = kernel_size - stride + (-size) % stride  # = (ceil(size / stride) - 1) * stride + kernel_size - size
    if kernel_size < stride:
        total = max(total, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel_size: int, stride: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel_size, stride)
    left, right = same_padding(x.shape[-1], kernel_size, stride)
    return F.pad(x, (left, right, top, bottom), value=value)


class ViTHFStdConv2dSame(nn.Conv2d):
    """Conv2d whose filters are standardised (zero mean, unit variance) on every call: "Weight Standardization".
    Adapted from timm's `StdConv2dSame` (re-implemented: saved folders load without timm)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, eps: float = 1e-8):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=False)
        self.eps = eps
        # "SAME" padding is (k - 1) / 2 on each side whatever the input size for an odd kernel at stride 1, and none
        # for a 1x1 kernel: padded statically (as timm does), the shapes then carry no ceil() arithmetic, which
        # dynamic-shape export would otherwise have to reason about in every convolution.
        self.static_padding = (
            0 if kernel_size == 1 else (kernel_size - 1) // 2 if stride == 1 and kernel_size % 2 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.static_padding
        if padding is None:
            x, padding = pad_same(x, self.kernel_size[0], self.stride[0]), 0
        # batch_norm over (1, out, in*k*k) standardises each filter; the same op timm uses, so results match bitwise.
        weight = F.batch_norm(
            self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0, eps=self.eps
        ).reshape_as(self.weight)
        return F.conv2d(x, weight, None, self.stride, padding)


class ViTHFGroupNormAct(nn.GroupNorm):
    """GroupNorm (32 groups) optionally followed by ReLU. Adapted from timm's `GroupNormAct` (re-implemented: saved
    folders load without timm)."""

    def __init__(self, num_channels: int, apply_act: bool = True):
        super().__init__(32, num_channels, eps=1e-5)
        self.apply_act = apply_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x) if self.apply_act else x


class ViTHFMaxPool2dSame(nn.Module):
    """3x3 stride-2 max pool with "SAME" padding. Adapted from timm's `MaxPool2dSame` (re-implemented: saved folders
    load without timm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(pad_same(x, 3, 2, value=-float("inf")), 3, 2)


class ViTHFResNetStem(nn.Module):
    """7x7 stride-2 conv, GroupNorm + ReLU, 3x3 stride-2 max pool: a quarter of the input resolution. Adapted from
    timm's `create_resnetv2_stem(stem_type="same")` (re-implemented: saved folders load without timm)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ViTHFStdConv2dSame(in_channels, out_channels, 7, stride=2)
        self.norm = ViTHFGroupNormAct(out_channels)
        self.pool = ViTHFMaxPool2dSame()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.norm(self.conv(x)))


class ViTHFResNetDownsample(nn.Module):
    """Projected shortcut: 1x1 conv and GroupNorm. Adapted from timm's `DownsampleConv` (re-implemented: saved folders
    load without timm)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = ViTHFStdConv2dSame(in_channels, out_channels, 1, stride=stride)
        self.norm = ViTHFGroupNormAct(out_channels, apply_act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class ViTHFBottleneck(nn.Module):
    """Post-activation bottleneck (1x1 -> 3x3 -> 1x1, a quarter of the output width inside). Adapted from timm's
    `resnetv2.Bottleneck` (re-implemented: saved folders load without timm)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, project_shortcut: bool):
        super().__init__()
        mid_channels = out_channels // 4
        self.downsample = ViTHFResNetDownsample(in_channels, out_channels, stride) if project_shortcut else None
        self.conv1 = ViTHFStdConv2dSame(in_channels, mid_channels, 1)
        self.norm1 = ViTHFGroupNormAct(mid_channels)
        self.conv2 = ViTHFStdConv2dSame(mid_channels, mid_channels, 3, stride=stride)
        self.norm2 = ViTHFGroupNormAct(mid_channels)
        self.conv3 = ViTHFStdConv2dSame(mid_channels, out_channels, 1)
        self.norm3 = ViTHFGroupNormAct(out_channels, apply_act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return F.relu(x + shortcut)


class ViTHFResNetStage(nn.Module):
    """Bottlenecks of one width. Adapted from timm's `ResNetStage` (re-implemented: saved folders load without timm)."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, stride: int):
        super().__init__()
        self.blocks = nn.Sequential(
            *[
                # The first block changes width (and resolution), so its shortcut is projected.
                ViTHFBottleneck(in_channels, out_channels, stride, project_shortcut=True)
                if i == 0
                else ViTHFBottleneck(out_channels, out_channels, 1, project_shortcut=False)
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ViTHFResNetV2Backbone(nn.Module):
    """Stem plus bottleneck stages of widths 256, 512, 1024, 2048 (times `width_factor`); the first stage keeps the
    stem's resolution and each later one halves it, so (3, 4, 9) gives a 1024-channel map at 1/16 of the input.
    Adapted from timm's `ResNetV2` without its head (re-implemented: saved folders load without timm)."""

    def __init__(self, depths: list[int], in_channels: int = 3, stem_channels: int = 64, width_factor: int = 1):
        super().__init__()
        self.stem = ViTHFResNetStem(in_channels, stem_channels * width_factor)
        channels = stem_channels * width_factor
        stages = []
        for index, depth in enumerate(depths):
            out_channels = 256 * 2**index * width_factor
            stages.append(ViTHFResNetStage(channels, out_channels, depth, stride=1 if index == 0 else 2))
            channels = out_channels
        self.stages = nn.Sequential(*stages)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(pixel_values))  # (B, C_feat, H / stride, W / stride)
