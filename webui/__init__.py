"""LlamaBoard's web board (gradio). Never imports the training stack."""
