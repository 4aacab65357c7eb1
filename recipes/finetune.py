"""Fine-tune a Vision Transformer on an image-classification dataset with Accelerate.

    accelerate launch [--config_file accelerate_config.yaml] recipes/finetune.py [--config recipes/configs/X.yaml]
        [--key value ...]

With no arguments: ViT-B/16 (timm's ImageNet-21k weights) on CIFAR-10 at 224. `python recipes/finetune.py --help`
lists every flag. The run itself lives in `vit_hf.training.loop`:

    FineTuning(...)      set-up: data, model, optimizer, accelerator.prepare
    .resume()            from --resume_from_checkpoint, exactly
    .train()             the loop: step, log, evaluate, checkpoint, stop on SIGTERM/SIGINT
    .final_results()     the final weights evaluated on validation and test
    .write_outputs()     model + code, image processor, model card, results, pictures
"""

import sys

from vit_hf.training.arguments import ArgumentError, parse_arguments


def main(argv: list[str] | None = None) -> int:
    try:
        model_args, data_args, training_args = parse_arguments(argv)
    except ArgumentError as error:
        print(f"finetune.py: error: {error}", file=sys.stderr)
        return 2
    # The run's modules (accelerate, datasets, timm) load only once the arguments are known to be good.
    from vit_hf.training.console import configure_logging
    from vit_hf.training.loop import training_function

    configure_logging()
    try:
        return training_function(model_args, data_args, training_args)
    except ArgumentError as error:  # e.g. a --model that names no preset, timm model or folder
        print(f"finetune.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
