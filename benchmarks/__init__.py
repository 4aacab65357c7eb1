"""Benchmarks and device checks of vit_hf against timm and transformers (run as `python -m benchmarks.<name>`)."""
