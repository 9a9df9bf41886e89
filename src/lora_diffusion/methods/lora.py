"""Weight LoRA through ``peft``: W = W_0 + (alpha / r) B A on the query, key, value,
attention-output and both MLP linears of every layer (B = 0 at start: identity).
Saved in peft's own format as well (``PeftModel.from_pretrained`` loads it) and mergeable."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..backbone import DiffusionLM
from ..config import require
from .base import InBackboneMethod
from .targets import LORA_TARGETS, targets_for


@dataclass
class LoraMethodConfig:
    rank: int = 64
    alpha: float = 128.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        require(self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        require(0 <= self.dropout < 1, "dropout", f"must lie in [0, 1), got {self.dropout}")


@contextmanager
def quiet_peft():
    """peft (0.21) reads ``model.is_gradient_checkpointing``, which transformers 5 deprecates with
    a FutureWarning on every LoRA model built: nothing the user can act on, so it is silenced here
    (only that message; every other warning passes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


class LoraModel(InBackboneMethod):
    method = "lora"

    def __init__(self, backbone: DiffusionLM, cfg: LoraMethodConfig):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        require(cfg.rank <= backbone.hidden_size, "rank",
                f"rank {cfg.rank} exceeds the base's hidden size {backbone.hidden_size}")
        self.backbone, self.cfg = backbone, cfg
        peft_cfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                              target_modules=targets_for(LORA_TARGETS, backbone.mlm, "LoRA"))
        # injects LoRA layers into backbone.mlm in place and freezes everything else
        with quiet_peft():
            object.__setattr__(self, "peft_model", get_peft_model(backbone.mlm, peft_cfg))
        for name, p in backbone.named_parameters():
            p.requires_grad_("lora_" in name)
        self.merged = False


    def merge(self) -> None:
        """Fold B A into W_0 for inference (no extra cost per step); no longer trainable."""
        self.peft_model.merge_adapter()
        self.merged = True

    def unmerge(self) -> None:
        self.peft_model.unmerge_adapter()
        self.merged = False

    def save_peft(self, directory: str | Path) -> None:
        """peft's own format (adapter_config.json + adapter_model.safetensors)."""
        self.peft_model.save_pretrained(str(directory))
