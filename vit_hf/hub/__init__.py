"""Publishing to the Hugging Face Hub: the upload helpers and the model card, shared by the convert CLI and the
training loop."""
