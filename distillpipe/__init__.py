"""distillpipe: distil an SFT-ready dataset from a teacher LLM."""

__version__ = "0.1.0"
