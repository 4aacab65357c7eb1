"""timm's ResNet-D hybrid backbones (`vit_*_resnet*d_*`): recognise one as vit_hf's `backbone_type="resnet_d"`, and
build one for a config. The check compares every layer with vit_hf's own backbone for the same stage depths, so a
ResNet with another stem, block, norm or shortcut is reported instead of converted inexactly."""

from functools import partial

import torch
from timm.layers import HybridEmbed
from timm.models import FeatureListNet
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from ..resnet_d_vit_hf import ViTHFResNetDBackbone

STEM_NAMES = ["conv1", "bn1", "act1", "maxpool"]


def resnet_d_fields(backbone: nn.Module, problems: list[str]) -> dict | None:
    """ViTHFConfig backbone fields of a timm ResNet-D feature extractor; None when it is not laid out as one."""
    names = [name for name, _ in backbone.named_children()]
    stages = names[len(STEM_NAMES) :]
    if type(backbone) is not FeatureListNet or names[: len(STEM_NAMES)] != STEM_NAMES or not stages:
        return None
    if stages != [f"layer{index + 1}" for index in range(len(stages))]:
        return None
    depths = [len(getattr(backbone, stage)) for stage in stages]
    in_channels = backbone.conv1[0].in_channels
    with torch.device("meta"):
        reference = ViTHFResNetDBackbone(depths, in_channels)
    if _leaf_signatures(backbone) != _leaf_signatures(reference):
        problems.append(
            "a ResNet backbone other than ResNet-D (deep stem, bottlenecks, average-pooled shortcuts, BatchNorm)"
        )
    return dict(backbone_type="resnet_d", backbone_depths=depths, num_channels=in_channels)


def _leaf_signatures(module: nn.Module) -> dict[str, tuple[str, str]]:
    """Name -> (layer type, its settings) for every layer that computes something."""
    signatures = {}
    for name, layer in module.named_modules():
        if next(layer.children(), None) is not None or isinstance(layer, nn.Identity):
            continue
        settings = "" if isinstance(layer, nn.ReLU) else layer.extra_repr()
        if isinstance(layer, nn.AvgPool2d):
            settings += f", ceil_mode={layer.ceil_mode}, count_include_pad={layer.count_include_pad}"
        signatures[name] = (type(layer).__name__, settings)
    return signatures


def timm_resnet_d_embed(*, backbone_depths: tuple[int, ...], in_chans: int = 3, **kwargs) -> HybridEmbed:
    """timm's HybridEmbed on a ResNet-D feature extractor as timm's `vit_*_resnet*d_*` build it (the last of the
    given stages' output); other arguments go to HybridEmbed."""
    placement = {key: kwargs[key] for key in ("device", "dtype") if key in kwargs}
    resnet = ResNet(
        block=Bottleneck,
        layers=list(backbone_depths),
        stem_width=32,
        stem_type="deep",
        avg_down=True,
        in_chans=in_chans,
        num_classes=0,
        global_pool="",
        **placement,
    )
    backbone = FeatureListNet(resnet, out_indices=(len(backbone_depths),))
    return HybridEmbed(backbone, in_chans=in_chans, **kwargs)


def resnet_d_embed_layer(backbone_depths: list[int]) -> partial:
    return partial(timm_resnet_d_embed, backbone_depths=tuple(backbone_depths))
