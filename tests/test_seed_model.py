"""The seed article's ViT, written with torch.nn.TransformerEncoder, is vit_hf's `seed_vit` preset: its weights copy
over one to one and give the same logits."""

import torch
from torch import nn

from vit_hf import ViTHFConfig, ViTHFForImageClassification


class TorchSeedViT(nn.Module):
    """The seed's model as PyTorch code: strided-conv patches, no class token, no position embedding, a stack of
    nn.TransformerEncoderLayer with PyTorch's defaults (post-norm, ReLU, dropout 0.1), mean, LayerNorm, linear."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, num_layers: int, patch: int, classes: int):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, d_model, kernel_size=patch, stride=patch)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(images).flatten(2).permute(2, 0, 1)  # (N, B, C): batch_first=False default
        return self.head(self.norm(self.encoder(tokens).mean(dim=0)))


def vit_hf_state_dict(seed: TorchSeedViT) -> dict[str, torch.Tensor]:
    """The torch module's parameters under vit_hf's (timm's) names."""
    layer_names = {
        "self_attn.in_proj_weight": "attn.qkv.weight",
        "self_attn.in_proj_bias": "attn.qkv.bias",
        "self_attn.out_proj.weight": "attn.proj.weight",
        "self_attn.out_proj.bias": "attn.proj.bias",
        "linear1.weight": "mlp.fc1.weight",
        "linear1.bias": "mlp.fc1.bias",
        "linear2.weight": "mlp.fc2.weight",
        "linear2.bias": "mlp.fc2.bias",
    }
    state = {}
    for name, value in seed.state_dict().items():
        if name.startswith("encoder.layers."):
            index, rest = name.removeprefix("encoder.layers.").split(".", 1)
            state[f"vit.blocks.{index}.{layer_names.get(rest, rest)}"] = value  # norm1 / norm2 keep their names
        elif name.startswith("patch_embed."):
            state[name.replace("patch_embed.", "vit.patch_embed.proj.")] = value
        elif name.startswith("norm."):
            state[name.replace("norm.", "vit.fc_norm.")] = value
        else:
            state[name] = value
    return state


def test_seed_vit_preset_reproduces_torch_transformer_encoder_logits():
    torch.manual_seed(0)
    config = ViTHFConfig.from_preset("seed_vit", num_labels=10)
    seed = TorchSeedViT(
        config.hidden_size,
        config.num_attention_heads,
        config.intermediate_size,
        config.num_hidden_layers,
        config.patch_size,
        classes=10,
    ).eval()
    with torch.no_grad():  # a non-zero head and non-trivial norms, so every parameter shows in the logits
        for parameter in seed.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model = ViTHFForImageClassification(config).eval()
    missing, unexpected = model.load_state_dict(vit_hf_state_dict(seed), strict=True)
    assert not missing and not unexpected
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected, logits = seed(images), model(images).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert expected.std() > 0.1  # the comparison is not between near-zero outputs


def test_seed_vit_preset_has_the_seed_dropouts():
    model = ViTHFForImageClassification(ViTHFConfig.from_preset("seed_vit", num_labels=10))
    block = model.vit.blocks[0]
    assert (block.attn.attention_dropout, block.attn.proj_drop.p, block.mlp.drop.p) == (0.1, 0.1, 0.1)
    assert model.vit.pos_drop.p == 0.0 and model.vit.pos_embed is None and model.vit.cls_token is None
