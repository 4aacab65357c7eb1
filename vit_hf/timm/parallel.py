"""Weights of timm's ParallelScalingBlock under vit_hf's parallel-block names, and back.

timm fuses the MLP's first layer and the attention's q / k / v into one input projection, `in_proj`, whose output
rows are [mlp hidden, q, k, v]; with `qkv_bias=False` the MLP bias is kept apart as `mlp_bias`. vit_hf keeps the
two layers apart (`mlp.fc1`, `attn.qkv`), as its pre-norm block does, so the rows are split here (and joined again
for timm).
"""

import re

import torch

from ..configuration_vit_hf import ViTHFConfig

# timm module -> vit_hf module inside a block.
RENAMES = {
    "in_norm": "norm1",
    "q_norm": "attn.q_norm",
    "k_norm": "attn.k_norm",
    "attn_out_proj": "attn.proj",
    "mlp_out_proj": "mlp.fc2",
    "ls": "ls1",
}
BLOCK_KEY = re.compile(r"^(blocks\.\d+\.)([a-z_]+)\.(.+)$")
BLOCK_REST = re.compile(r"^(blocks\.\d+\.)(.+)$")


def parallel_to_vit_hf_state_dict(state_dict: dict[str, torch.Tensor], config: ViTHFConfig) -> dict:
    """timm ParallelScalingBlock weights -> vit_hf parallel-block weights (other keys unchanged)."""
    converted = {}
    for key, value in state_dict.items():
        match = BLOCK_KEY.match(key)
        if match and match[2] in RENAMES:
            key = f"{match[1]}{RENAMES[match[2]]}.{match[3]}"
        converted[key] = value
    hidden = config.intermediate_size
    for index in range(config.num_hidden_layers):
        prefix = f"blocks.{index}."
        weight = converted.pop(f"{prefix}in_proj.weight")  # (hidden + 3C, C)
        converted[f"{prefix}mlp.fc1.weight"], converted[f"{prefix}attn.qkv.weight"] = weight[:hidden], weight[hidden:]
        bias = converted.pop(f"{prefix}in_proj.bias", None)
        if bias is None:
            converted[f"{prefix}mlp.fc1.bias"] = converted.pop(f"{prefix}mlp_bias")
        else:
            converted[f"{prefix}mlp.fc1.bias"], converted[f"{prefix}attn.qkv.bias"] = bias[:hidden], bias[hidden:]
    return {key: value.clone() for key, value in converted.items()}


def vit_hf_to_parallel_state_dict(state_dict: dict[str, torch.Tensor], config: ViTHFConfig) -> dict:
    """vit_hf parallel-block weights (without the `vit.` prefix) -> timm ParallelScalingBlock weights."""
    back = {new: old for old, new in RENAMES.items()}
    converted = {}
    for index in range(config.num_hidden_layers):
        prefix = f"blocks.{index}."
        fc1_weight, qkv_weight = state_dict[f"{prefix}mlp.fc1.weight"], state_dict[f"{prefix}attn.qkv.weight"]
        converted[f"{prefix}in_proj.weight"] = torch.cat([fc1_weight, qkv_weight])
        fc1_bias = state_dict[f"{prefix}mlp.fc1.bias"]
        if config.qkv_bias:
            converted[f"{prefix}in_proj.bias"] = torch.cat([fc1_bias, state_dict[f"{prefix}attn.qkv.bias"]])
        else:
            converted[f"{prefix}mlp_bias"] = fc1_bias
    for key, value in state_dict.items():
        match = BLOCK_REST.match(key)
        if match and match[2].startswith(("mlp.fc1.", "attn.qkv.")):
            continue  # joined into in_proj above
        if match:
            for new, old in back.items():
                if match[2].startswith(f"{new}."):
                    key = f"{match[1]}{old}{match[2][len(new) :]}"
                    break
        converted[key] = value
    return converted
