"""Method registry: name -> (config class, apply function), as PEFT's ``register_peft_method``.

``apply(backbone, config) -> method model``: an ``nn.Module`` with ``.backbone``, ``.method``
and ``forward(input_ids, attention_mask, steps, select=None, instruction_mask=None,
return_hidden=False)`` whose trainable parameters (``requires_grad``) are exactly what the
method trains (plus an optional classification head ``cls_head``, see ``methods/head.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..backbone import DiffusionLM
from ..config import ConfigError, from_dict


@dataclass(frozen=True)
class MethodSpec:
    name: str
    config_cls: type
    apply: Callable[[DiffusionLM, Any], nn.Module]
    description: str = ""


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(name: str, config_cls: type, apply: Callable[[DiffusionLM, Any], nn.Module],
                    description: str = "") -> None:
    if name in _REGISTRY:
        raise ValueError(f"method {name!r} is already registered")
    _REGISTRY[name] = MethodSpec(name, config_cls, apply, description)


def registered_methods() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"method: unknown method {name!r}; registered: {registered_methods()}") from None


def method_config(name: str, options: dict[str, Any] | None = None) -> Any:
    """The typed, validated config of method ``name`` from a dict of overrides."""
    return from_dict(get_method(name).config_cls, dict(options or {}), prefix="method_options.")


def apply_method(name: str, backbone: DiffusionLM, config: Any = None) -> nn.Module:
    spec = get_method(name)
    base_parameters = sum(p.numel() for p in backbone.parameters())  # before anything is injected
    model = spec.apply(backbone, config if config is not None else spec.config_cls())
    model.base_parameters = base_parameters
    return model
