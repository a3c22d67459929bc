"""What the export stage writes: one function per format, the logprobs sidecar,
Hugging Face datasets and the dataset card."""
