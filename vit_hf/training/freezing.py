"""Partial fine-tuning: `--freeze backbone` trains the classification head alone (a linear probe of the encoder's
pooled features), `--trainable_blocks N` the last N blocks, the final norms and pooling, and the head. Frozen
parameters get no gradients (so the optimizer holds no state for them) and frozen modules stay in eval mode:
no dropout or stochastic depth where nothing learns."""

from torch import nn

from ..modeling_vit_hf import ViTHFForImageClassification


def freeze(model: ViTHFForImageClassification, backbone: bool, trainable_blocks: int | None) -> list[nn.Module]:
    """Turn off gradients of the frozen part and return its modules, which `train_mode` keeps in eval mode."""
    encoder = model.vit
    if backbone:
        frozen = [encoder]
        parameters = list(encoder.parameters())
    elif trainable_blocks is not None:
        depth = len(encoder.blocks)
        if not 0 <= trainable_blocks <= depth:
            raise ValueError(
                f"--trainable_blocks must be between 0 and the model's {depth} blocks, got {trainable_blocks}."
            )
        frozen = [encoder.patch_embed, encoder.pos_drop, encoder.norm_pre, *encoder.blocks[: depth - trainable_blocks]]
        # Token and position embeddings sit on the encoder itself, before the first block.
        tokens = [p for p in (encoder.cls_token, encoder.reg_token, encoder.pos_embed) if p is not None]
        parameters = [p for module in frozen for p in module.parameters()] + tokens
    else:
        return []
    for parameter in parameters:
        parameter.requires_grad_(False)
    return frozen


def train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """`model.train()`, with the frozen modules left in eval mode."""
    model.train()
    for module in frozen:
        module.eval()


def fine_tuning_method(model_args) -> str:
    """What the run trains, in words, for the model card and the trackers."""
    if model_args.peft == "lora":
        where = "attention (qkv, proj) and MLP (fc1, fc2)" if model_args.lora_mlp else "attention (qkv, proj)"
        return (
            f"LoRA (r={model_args.lora_r}, alpha={model_args.lora_alpha:g}, dropout={model_args.lora_dropout:g}) "
            f"on every block's {where}; the head trained in full"
        )
    if model_args.freeze == "backbone":
        return "linear probe: the head alone, the encoder frozen"
    if model_args.trainable_blocks is not None:
        return f"the last {model_args.trainable_blocks} blocks, the final norm and the head; the rest frozen"
    return "full fine-tuning"
