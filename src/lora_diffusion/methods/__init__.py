"""Fine-tuning methods, registered by name (``lora_diffusion.methods.registry``)."""

from .bitfit import BitFitConfig, BitFitModel
from .bottleneck import BottleneckConfig, BottleneckModel
from .compose import ComposedConfig, ComposedTrajectoryModel
from .full import FullConfig, FullModel
from .lora import LoraMethodConfig, LoraModel
from .prefix import PrefixConfig, PrefixModel
from .registry import apply_method, get_method, method_config, register_method, registered_methods
from .trajectory import TrajectoryConfig, TrajectoryModel

register_method("full", FullConfig, FullModel, "full fine-tuning of every backbone weight")
register_method("lora", LoraMethodConfig, LoraModel, "weight LoRA (peft) on q, k, v, attention-output and MLP linears")
register_method("adapter", BottleneckConfig, BottleneckModel, "Houlsby bottleneck adapters after attention and FFN")
register_method("bitfit", BitFitConfig, BitFitModel, "BitFit: only bias terms are trained")
register_method("prefix", PrefixConfig, PrefixModel, "prefix tuning: trainable keys/values in every attention layer")
register_method("trajectory", TrajectoryConfig, TrajectoryModel,
                "LoRA-Diffusion: low-rank phase-bank perturbations of h_t (frozen trunk)")
register_method("trajectory-composed", ComposedConfig, ComposedTrajectoryModel,
                "M trajectory adapters superposed on one trunk pass (router / uniform / weights / oracle)")

__all__ = [
    "BitFitConfig", "BitFitModel", "BottleneckConfig", "BottleneckModel", "ComposedConfig", "ComposedTrajectoryModel",
    "LoraMethodConfig", "LoraModel",
    "PrefixConfig", "PrefixModel", "FullConfig", "FullModel", "TrajectoryConfig", "TrajectoryModel", "apply_method", "get_method",
    "method_config", "register_method", "registered_methods",
]
