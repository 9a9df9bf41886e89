"""lora-diffusion: PEFT for masked diffusion LMs."""
__version__ = "0.1.0"
