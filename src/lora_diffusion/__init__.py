"""lora-diffusion: PEFT for masked diffusion LMs."""

__version__ = "0.1.0"
__all__ = ["GenerationOptions", "Pipeline", "load_pipeline"]


def __getattr__(name: str):  # lazy: ``import lora_diffusion`` stays cheap (no torch import)
    if name in ("Pipeline", "load_pipeline"):
        from . import api

        return getattr(api, name)
    if name == "GenerationOptions":
        from .generation import GenerationOptions

        return GenerationOptions
    raise AttributeError(f"module 'lora_diffusion' has no attribute {name!r}")
