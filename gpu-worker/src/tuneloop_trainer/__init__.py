"""tuneloop's trainer: LoRA/QLoRA fine-tuning driven by tuneloop's GPU worker through a JSON-lines protocol."""

__version__ = "0.1.0"
