"""LoRA fine-tuning through PEFT (`pip install "vit_hf[peft]"`): low-rank adapters on the attention projections
of every block (optionally the MLP too), the classification head trained in full.

The module names below are also what a user of plain PEFT needs:

    from peft import LoraConfig, get_peft_model
    from vit_hf.training.lora import LORA_TARGET_MODULES, LORA_MODULES_TO_SAVE

    model = get_peft_model(model, LoraConfig(r=8, target_modules=LORA_TARGET_MODULES,
                                             modules_to_save=LORA_MODULES_TO_SAVE))
"""

import copy

from torch import nn

# Regular expressions over full module names (PEFT matches a string `target_modules` with re.fullmatch). They name
# the blocks' fused `attn.qkv` and `attn.proj` only: `patch_embed.proj` (the patch convolution) and the attention
# pool's `proj` share the last name but are no block's attention.
LORA_TARGET_MODULES = r".*blocks\.\d+\.attn\.(qkv|proj)"
LORA_TARGET_MODULES_WITH_MLP = r".*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"
LORA_MODULES_TO_SAVE = ["head"]  # a new head for the new labels: trained in full and saved with the adapter


def apply_lora(model: nn.Module, rank: int, alpha: float, dropout: float, include_mlp: bool) -> nn.Module:
    """`model` wrapped as a PEFT model whose only trainable parameters are the adapters and the head."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError('--peft lora needs PEFT: pip install "vit_hf[peft]" (or pip install peft).') from error
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=LORA_TARGET_MODULES_WITH_MLP if include_mlp else LORA_TARGET_MODULES,
        modules_to_save=LORA_MODULES_TO_SAVE,
    )
    return get_peft_model(model, config)


def merged_copy(peft_model: nn.Module) -> nn.Module:
    """A plain vit_hf model with the adapters merged into its weights (the PEFT model itself is left as it is)."""
    return copy.deepcopy(peft_model).merge_and_unload()


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
