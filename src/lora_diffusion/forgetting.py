"""Catastrophic forgetting: the NELBO perplexity bound and masked-token accuracy at 15/50/90%
on plain text, for a base and for a saved adapter of any method with the adapter active.

Every corpus is read (``data.corpus.read_corpus``; a ``.csv`` file through one column), cut
into chunks ``[CLS] w_1 .. w_{L-2} [SEP]`` (``chunk_corpus``) and scored exactly as
``eval-base`` scores a base (``evaluation.evaluate_base``: same chunks, same seed, hence
the same masks and steps for every model). Only the chunk's own text positions are scored.

The instruction on plain text (``instruction``; the trajectory method's perturbation is
conditioned on it, and every other method sees it as clean context):

- ``empty`` (default): no instruction tokens; ``instruction_mask`` is all False. Enc(c) is
  then the encoder applied to a zero pooled vector (``conditioning.masked_mean`` of an empty
  mask is 0: the trunk encoder gives MLP(0), the separate encoder its output bias), the
  same as training-free rows with no instruction. The rows are exactly ``eval-base``'s.
- ``template``: the adapter's recorded task template (``task_format.template`` in
  ``adapter_config.json``, or ``template`` given explicitly) with every ``{field}`` filled
  with nothing and whitespace collapsed (``"review: {sentence} sentiment:"`` ->
  ``"review: sentiment:"``), tokenized and put as a clean, never-masked prefix after
  [CLS]: ``[CLS] instruction w_1 .. w_{L-2} [SEP]``. The chunk is not put inside the
  template: what is scored must be masked, and the instruction never is. The scored
  positions and the masks drawn over them are the same as in ``empty``; the base's row
  (``with_base``) is computed on the same prefixed rows, so the change isolates the adapter.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, require, to_dict
from .data.corpus import ChunkedCorpus, chunk_corpus, read_corpus
from .evaluation import evaluate_base

RESULT_FILE, TABLE_FILE = "forgetting.json", "forgetting.md"
INSTRUCTION_MODES = ("empty", "template")
METRICS = ("nelbo_per_token", "ppl_bound", "acc@15", "acc@50", "acc@90")
# what must agree between a run and the base result it is compared with
LAYOUT_KEYS = ("split", "seq_len", "max_chunks", "batch_size", "seed", "csv_column")


@dataclass
class ForgettingConfig:
    adapter: str = ""  # a saved adapter directory; "" = measure the base alone
    base: str = ""  # the base (default for an adapter: the one it records)
    corpora: list[str] = field(default_factory=list)
    split: str = "test"  # "all" = the whole of a single-file corpus
    csv_column: str = "abstract"
    seq_len: int = 128
    max_chunks: int = 0  # 0 = every chunk of the split
    batch_size: int = 64
    seed: int = 0
    instruction: str = "empty"
    template: str = ""  # "" = the adapter's recorded task template (instruction=template)
    with_base: bool = False
    base_result: str = ""  # a base's forgetting.json to compare with
    output_dir: str = "runs/forgetting"
    overwrite: bool = False

    def __post_init__(self) -> None:
        require(bool(self.adapter or self.base), "adapter", "give --adapter DIR or --base DIR")
        require(bool(self.corpora), "corpora", "give at least one --corpus")
        require(self.instruction in INSTRUCTION_MODES, "instruction", f"one of {INSTRUCTION_MODES}")
        require(self.seq_len >= 8, "seq_len", f"must be >= 8, got {self.seq_len}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.max_chunks >= 0, "max_chunks", f"must be >= 0, got {self.max_chunks}")
        require(not (self.with_base and self.base_result), "with_base", "give --with-base or --base-result, not both")
        require(not (self.with_base and not self.adapter), "with_base", "--with-base needs --adapter")


def instruction_text(template: str) -> str:
    """The template's literal words with every ``{field}`` emptied, whitespace collapsed."""
    try:
        literal = "".join(part for part, _, _, _ in string.Formatter().parse(template))
    except ValueError as err:
        raise ConfigError(f"template {template!r}: not a format string ({err})", field="template") from None
    return " ".join(literal.split())


@dataclass
class PrefixedCorpus(torch.utils.data.Dataset):
    """Chunks with a clean instruction prefix after [CLS] (possibly empty) and its mask."""

    input_ids: torch.Tensor
    generate_mask: torch.Tensor
    instruction_mask: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[i], "attention_mask": torch.ones_like(self.input_ids[i]),
                "generate_mask": self.generate_mask[i], "instruction_mask": self.instruction_mask[i]}

    @property
    def num_tokens(self) -> int:
        return int(self.generate_mask.sum())


def with_instruction(chunks: ChunkedCorpus, prefix_ids: list[int]) -> PrefixedCorpus:
    """``[CLS] prefix w_1 .. [SEP]``: the prefix is clean context (instruction_mask True there)."""
    n, p = chunks.input_ids.shape[0], len(prefix_ids)
    prefix = torch.tensor(prefix_ids, dtype=torch.long).expand(n, p)
    ids = torch.cat([chunks.input_ids[:, :1], prefix, chunks.input_ids[:, 1:]], dim=1)
    gen = torch.cat([chunks.generate_mask[:, :1], torch.zeros(n, p, dtype=torch.bool), chunks.generate_mask[:, 1:]], 1)
    instr = torch.zeros_like(ids, dtype=torch.bool)
    instr[:, 1 : 1 + p] = True
    return PrefixedCorpus(ids, gen, instr)


def corpus_names(paths: list[str]) -> list[str]:
    """A short, unique name per corpus path (its file or directory name)."""
    names: list[str] = []
    for p in paths:
        name = Path(p.rstrip("/")).name or p
        names.append(name if name not in names else f"{name}-{len(names)}")
    return names


def measure(model, data, diffusion, cfg: ForgettingConfig) -> dict[str, Any]:
    out = evaluate_base(model, data, diffusion, batch_size=cfg.batch_size, seed=cfg.seed)
    return {**out, "chunks": len(data)}


def _load(cfg: ForgettingConfig):
    """(model, base loader or None, description)."""
    from .api import load_pipeline
    from .backbone import unwrap_backbone
    from .hub import load_base
    from .methods.persistence import read_adapter_config

    if not cfg.adapter:
        model = load_base(cfg.base).eval()
        return model, None, {"kind": "base", "base": cfg.base, "method": "base"}
    meta = read_adapter_config(cfg.adapter)
    pipe = load_pipeline(cfg.adapter, cfg.base or None)
    base_source = cfg.base or meta.get("base_source") or ""

    def base_loader():
        if not base_source:
            raise ConfigError(f"adapter {cfg.adapter} does not record its base: pass --base", field="base")
        return load_base(base_source).eval()

    desc = {"kind": "adapter", "adapter": cfg.adapter, "method": meta["method"], "base": base_source,
            "task": (pipe.task_format or {}).get("task") or (pipe.task_format or {}).get("name") or ""}
    unwrap_backbone(pipe.model)  # every method model wraps a backbone
    return pipe.model.eval(), base_loader, desc


def _instruction(cfg: ForgettingConfig) -> str:
    """The instruction prefix text (checked before any model is loaded)."""
    if cfg.instruction == "empty":
        return ""
    template = cfg.template
    if not template and cfg.adapter:
        from .methods.persistence import read_adapter_config

        template = (read_adapter_config(cfg.adapter).get("task_format") or {}).get("template") or ""
    if not template:
        what = f"adapter {cfg.adapter} records no task_format.template" if cfg.adapter else "a base has no template"
        raise ConfigError(f"--instruction template: {what}; pass --template TEXT", field="template")
    text = instruction_text(template)
    if not text:
        raise ConfigError(f"--instruction template: template {template!r} has no words outside its fields",
                          field="template")
    return text


def _check_base_result(path: str, cfg: ForgettingConfig, names: list[str], instruction: str,
                       base_sha: str | None) -> dict[str, Any]:
    """The base figures of ``--base-result``, refused unless measured the same way (layout,
    instruction, corpora) on the same base weights (where both record their digest)."""
    from .utils.io import read_json

    other = read_json(path, ConfigError, "--base-result")
    if not isinstance(other, dict) or not isinstance(other.get("corpora"), dict) or "config" not in other:
        raise ConfigError(f"{path}: not a forgetting.json (no 'corpora' / 'config')", field="base_result")
    if (other.get("model") or {}).get("kind") != "base":
        raise ConfigError(f"{path}: holds the figures of {other.get('model')}, not of a base", field="base_result")
    for key in LAYOUT_KEYS:
        if other["config"].get(key) != getattr(cfg, key):
            raise ConfigError(f"{path}: field 'config.{key}' is {other['config'].get(key)!r} there, "
                              f"{getattr(cfg, key)!r} here: the figures are not comparable", field="base_result")
    if other.get("instruction_text", "") != instruction:
        raise ConfigError(f"{path}: instruction prefix {other.get('instruction_text', '')!r} there, {instruction!r} "
                          "here: the figures are not comparable", field="base_result")
    theirs = (other.get("base_weights") or {}).get("sha256")
    if theirs and base_sha and theirs != base_sha:
        raise ConfigError(f"{path}: measured on base weights {theirs[:12]}, the adapter's base here is "
                          f"{base_sha[:12]}: the figures are not comparable", field="base_result")
    missing = [n for n in names if n not in other["corpora"]]
    if missing:
        raise ConfigError(f"{path}: no figures for corpora {missing}", field="base_result")
    return other["corpora"]


def change(value: float, base: float) -> dict[str, float]:
    """Absolute and relative change of one figure against the base's."""
    rel = (value - base) / base if base else math.nan
    return {"absolute": value - base, "relative": rel}


def run_forgetting(cfg: ForgettingConfig) -> dict[str, Any]:
    """Measure every corpus; write ``forgetting.json`` and ``forgetting.md`` to ``output_dir``."""
    from .backbone import unwrap_backbone
    from .finetune import max_positions
    from .utils.io import atomic_write_json, atomic_write_text, check_writable_dir
    from .utils.repro import provenance

    out = Path(cfg.output_dir)
    check_writable_dir(out, "--output-dir")
    if (out / RESULT_FILE).exists() and not cfg.overwrite:
        raise FileExistsError(f"--output-dir {out} holds {RESULT_FILE}: pass --overwrite to replace it "
                              "(nothing was written)")
    names = corpus_names(cfg.corpora)
    texts = {n: read_corpus(c, cfg.split, cfg.csv_column) for n, c in zip(names, cfg.corpora)}
    instruction = _instruction(cfg)
    model, base_loader, desc = _load(cfg)
    record = provenance(cfg.seed, base=desc["base"])
    base_sha = (record.get("base_weights") or {}).get("sha256")
    base_figs = _check_base_result(cfg.base_result, cfg, names, instruction, base_sha) if cfg.base_result else None
    backbone = unwrap_backbone(model)
    prefix_ids = backbone.tokenizer(instruction, add_special_tokens=False)["input_ids"] if instruction else []
    if cfg.seq_len + len(prefix_ids) > max_positions(backbone):
        raise ConfigError(f"--seq-len {cfg.seq_len} + {len(prefix_ids)} instruction tokens exceeds the base's "
                          f"{max_positions(backbone)} positions", field="seq_len")
    data = {n: with_instruction(chunk_corpus(t, backbone.tokenizer, cfg.seq_len, cfg.max_chunks), prefix_ids)
            for n, t in texts.items()}
    corpora = {n: measure(model, d, backbone.diffusion, cfg) for n, d in data.items()}
    if cfg.with_base:
        base = base_loader()
        base_figs = {n: measure(base, d, base.diffusion, cfg) for n, d in data.items()}
    result: dict[str, Any] = {"model": desc, "instruction": cfg.instruction, "instruction_text": instruction,
                              "instruction_tokens": len(prefix_ids), "corpora": corpora,
                              "corpus_paths": dict(zip(names, cfg.corpora)), "config": to_dict(cfg),
                              **record}
    if base_figs is not None:
        result["base"] = {n: base_figs[n] for n in names}
        result["change"] = {n: {k: change(corpora[n][k], base_figs[n][k]) for k in METRICS} for n in names}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RESULT_FILE, result)
    atomic_write_text(out / TABLE_FILE, "\n".join(table(result)) + "\n")
    return result


def _fmt(key: str, value: float) -> str:
    return f"{100 * value:.2f}" if key.startswith("acc@") else f"{value:.4g}"


def table(result: dict[str, Any]) -> list[str]:
    """Markdown: per corpus the base's row (when known), the model's row and the change
    (NELBO and perplexity bound relative, %; accuracies in points, and relative, %)."""
    m = result["model"]
    label = "base" if m["kind"] == "base" else f"{m['method']} ({m.get('task') or 'adapter'})"
    instr = f"instruction `{result['instruction_text']}`" if result["instruction_text"] else "empty instruction"
    lines = [f"Model: {label}; {instr}; split {result['config']['split']}, chunks of {result['config']['seq_len']} "
             f"tokens, seed {result['config']['seed']}. Accuracies in %, perplexity = exp(NELBO), an upper bound.", "",
             "| corpus | model | tokens | NELBO / token | PPL bound | acc@15 | acc@50 | acc@90 |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, figs in result["corpora"].items():
        if "base" in result:
            b = result["base"][name]
            lines.append(f"| {name} | base | {b['tokens']:,} | " + " | ".join(_fmt(k, b[k]) for k in METRICS) + " |")
        lines.append(f"| {name} | {label} | {figs['tokens']:,} | "
                     + " | ".join(_fmt(k, figs[k]) for k in METRICS) + " |")
        if "change" in result:
            c = result["change"][name]
            cells = [f"{100 * c[k]['relative']:+.1f}%" if not k.startswith("acc@") else
                     f"{100 * c[k]['absolute']:+.2f} pts ({100 * c[k]['relative']:+.1f}%)" for k in METRICS]
            lines.append(f"| {name} | change vs base | | " + " | ".join(cells) + " |")
    return lines


def combined_table(results: list[dict[str, Any]], paths: list[str]) -> list[str]:
    """One markdown table over many ``forgetting.json`` results (e.g. six methods after one
    task): per corpus the base's row, then each model's figures with the change against its
    base (PPL bound relative, %; accuracies in points). Every result must hold a base."""
    for r, p in zip(results, paths):
        if "base" not in r:
            raise ConfigError(f"{p}: holds no base figures (run forgetting with --with-base or --base-result)")
    corpora = list(results[0]["corpora"])
    lines = ["| corpus | model | instruction | NELBO / token | PPL bound | change | acc@15 | change | acc@50 | change "
             "| acc@90 | change |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in corpora:
        groups: dict[str, list[str]] = {}  # a base's row (as shown) -> the rows measured against it
        for r, p in zip(results, paths):
            if name not in r["corpora"]:
                raise ConfigError(f"{p}: no figures for corpus {name!r}")
            b, m = r["base"][name], r["model"]
            instr = f"`{r['instruction_text']}`" if r["instruction_text"] else "empty"
            base_line = (f"| {name} | base | {instr} | {b['nelbo_per_token']:.4g} | {b['ppl_bound']:.4g} | | "
                         + " | ".join(f"{100 * b[k]:.2f} | " for k in METRICS[2:]) + "|")
            c = r["change"][name]
            figs = r["corpora"][name]
            label = f"{m['method']} ({m.get('task') or 'adapter'})"
            accs = " | ".join(f"{100 * figs[k]:.2f} | {100 * c[k]['absolute']:+.2f} pts" for k in METRICS[2:])
            groups.setdefault(base_line, []).append(
                f"| {name} | {label} | {instr} | {figs['nelbo_per_token']:.4g} | {figs['ppl_bound']:.4g} | "
                f"{100 * c['ppl_bound']['relative']:+.1f}% | {accs} |")
        for base_line, rows in groups.items():  # each base's row once (equal as shown), its models after it
            lines += [base_line, *rows]
    return lines
