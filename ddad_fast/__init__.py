"""ddad_fast: data-free knowledge distillation by Dual Discriminator Adversarial Distillation."""

__version__ = "0.1.0"
