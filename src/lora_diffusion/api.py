"""The Python API: load a saved adapter with its base in one call, then generate or evaluate.

    from lora_diffusion import load_pipeline
    pipe = load_pipeline("runs/demo/adapter")          # an adapter (its recorded base) or a base directory
    pipe.generate(["review: a gripping, funny film sentiment:"])   # -> ["positive"]

The adapter directory records how its training rows were laid out (``task_format`` in
``adapter_config.json``: response budget, prompt budget, end token, label words, template),
so prompts are encoded exactly as in training; every option of the sampler
(``GenerationOptions``) applies, and the method's perturbation runs at every reverse step.
The prompt attention the adapter was trained with (``prompt_attention``, recorded with it) is
the default; ``GenerationOptions(prompt_attention=...)`` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .backbone import unwrap_backbone
from .config import from_dict
from .data.encoding import EncodedExamples, ResponseFormat, decode_responses, tokenize_examples
from .data.examples import Example
from .generation import GenerationOptions, reverse_run

DEFAULT_FORMAT = {"response_budget": 64, "max_prompt_len": 256}  # a bare base: free text


@dataclass
class Pipeline:
    """A model (a method on its frozen base, or a base alone) and the row layout it expects."""

    model: torch.nn.Module
    task_format: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def tokenizer(self):
        return unwrap_backbone(self.model).tokenizer

    @property
    def label_words(self) -> dict[int, str]:
        return {int(k): v for k, v in self.task_format.get("label_words", {}).items()}

    def response_format(self, response_length: int = 0) -> ResponseFormat:
        saved = self.task_format.get("response") or {}
        fmt = from_dict(ResponseFormat, saved) if saved else ResponseFormat()
        fmt = fmt.resolved(DEFAULT_FORMAT["response_budget"], DEFAULT_FORMAT["max_prompt_len"])
        if response_length and not self.label_words:
            fmt = ResponseFormat(response_length, fmt.max_prompt_len, fmt.prompt_tail_tokens, fmt.end_token,
                                 fmt.fill_token)
        return fmt

    def encode(self, examples: list[Example], response_length: int = 0) -> EncodedExamples:
        """Rows laid out as in training. Classification adapters generate one label word; a
        prompt-only example (no gold label) gets a placeholder label that is never read."""
        words = self.label_words
        if words:
            examples = [ex if ex.label is not None else Example(ex.prompt, "", label=next(iter(words)), id=ex.id)
                        for ex in examples]
        return tokenize_examples(examples, self.tokenizer, self.response_format(response_length), words or None)

    def generate(self, prompts: list[str], options: GenerationOptions | None = None,
                 template: str = "") -> list[str]:
        """Responses to ``prompts`` (each the full instruction text, or ``template`` with
        ``{prompt}`` filled in), cut at the first end token."""
        options = options or GenerationOptions()
        examples = [Example(template.format(prompt=p) if template else p, "") for p in prompts]
        data = self.encode(examples, options.response_length)
        return self.decode(data, reverse_run(self.model, data, self.sampler(options), options.batch_size,
                                             options.seed).regions)

    def sampler(self, options: GenerationOptions):
        """The sampler for ``options`` on this model: its T and, unless given, its own prompt attention."""
        backbone = unwrap_backbone(self.model)
        return options.sampler(backbone.diffusion.num_steps, backbone.prompt_attention)

    def decode(self, data: EncodedExamples, regions: list[list[int]]) -> list[str]:
        ids = torch.tensor(regions) if regions else torch.zeros(0, 0, dtype=torch.long)
        return decode_responses(self.tokenizer, ids, torch.ones_like(ids, dtype=torch.bool), data.end_id)


def is_adapter(path: str | Path) -> bool:
    from .methods.persistence import CONFIG_FILE

    return (Path(path) / CONFIG_FILE).is_file()


def load_pipeline(path: str | Path, base: str | None = None) -> Pipeline:
    """An adapter directory (``adapter_config.json``; its base is the one it records unless
    ``base`` is given, and must be the one it was trained on) or a base model directory /
    hub id / ``minilm`` alias (the untuned base)."""
    from .hub import load_base
    from .methods.persistence import load_method, read_adapter_config

    if is_adapter(path):
        meta = read_adapter_config(path)
        return Pipeline(load_method(path, base), dict(meta.get("task_format") or {}), str(path))
    return Pipeline(load_base(str(path)).eval(), {}, str(path))


def pipeline_for(adapter: str, base: str) -> Pipeline:
    """``--adapter`` (which must be an adapter directory) with ``--base`` as its base, or the
    base alone."""
    if adapter:
        from .methods.persistence import read_adapter_config

        read_adapter_config(adapter)  # not an adapter directory, or a bad config: one line naming it
        return load_pipeline(adapter, base or None)
    return load_pipeline(base)
