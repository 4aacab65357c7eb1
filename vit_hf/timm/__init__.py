"""timm interop: read a timm model's architecture into a ViTHFConfig, convert weights both ways, the convert CLI."""
