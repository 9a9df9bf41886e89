"""Fine-tuning methods, registered by name (``lora_diffusion.methods.registry``)."""

from .full import FullConfig, FullModel
from .registry import apply_method, get_method, method_config, register_method, registered_methods
from .trajectory import TrajectoryConfig, TrajectoryModel

register_method("full", FullConfig, FullModel, "full fine-tuning of every backbone weight")
register_method("trajectory", TrajectoryConfig, TrajectoryModel,
                "LoRA-Diffusion: low-rank phase-bank perturbations of h_t (frozen trunk)")

__all__ = [
    "FullConfig", "FullModel", "TrajectoryConfig", "TrajectoryModel", "apply_method", "get_method",
    "method_config", "register_method", "registered_methods",
]
