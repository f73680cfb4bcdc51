"""datagen: plan, generate, audit and export synthetic fine-tuning datasets with LLMs."""

__version__ = "0.1.0"
