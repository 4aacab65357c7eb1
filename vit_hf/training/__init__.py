"""The fine-tuning run behind `recipes/finetune.py`: arguments, model loading, optimisation, the loop, checkpoints,
metrics and plots."""
