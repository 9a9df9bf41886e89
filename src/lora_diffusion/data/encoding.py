"""Examples -> token rows with a fixed response budget, and generated rows -> response text.

Row layout (every task, classification included)::

    [CLS] prompt [SEP] r_1 .. r_n [END] [FILL] .. [FILL] [SEP] [PAD] ..
          \\_ instruction_mask _/ \\________ generate_mask (R tokens) ______/

- the prompt is the clean instruction c: never masked, never scored;
- the response region has exactly R = ``response_budget`` positions for every row of a task,
  so its length never tells the answer; the response is followed by one end token and the
  rest of the region is filled with the fill token (by default the end token itself, as
  LLaDA fills with |EOS|). The model learns to predict both, so it learns where to stop, and
  ``decode_responses`` cuts a generated region at its first end token;
- classification (``end_token=False`` region of R = 1): the label word, a single token, with
  no end token (as every label has the same length, no length leak);
- over-long prompts lose their middle (the first P - K and the last K tokens are kept, K =
  ``prompt_tail_tokens``, so the closing words of a template such as ``summary:`` survive);
  over-long responses are cut to R - 1 tokens before the end token. Both are counted.

``pad_collate`` right-pads rows of different prompt lengths; padding has attention 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import require
from .examples import Example


@dataclass
class ResponseFormat:
    """How responses are laid out; 0 means "the task's own value" where a task supplies one."""

    response_budget: int = 0  # R: response positions per row, the end token included
    max_prompt_len: int = 0  # prompt tokens kept
    prompt_tail_tokens: int = 8  # K: tokens kept from the end of an over-long prompt
    end_token: str = "auto"  # a token string, or auto: the tokenizer's EOS, else its SEP
    fill_token: str = "auto"  # a token string, or auto: the end token itself

    def __post_init__(self) -> None:
        require(self.response_budget >= 0, "response_budget", f"must be >= 0, got {self.response_budget}")
        require(self.max_prompt_len >= 0, "max_prompt_len", f"must be >= 0, got {self.max_prompt_len}")
        require(self.prompt_tail_tokens >= 0, "prompt_tail_tokens", f"must be >= 0, got {self.prompt_tail_tokens}")

    def resolved(self, response_budget: int, max_prompt_len: int) -> ResponseFormat:
        """This format with the task's budgets filled in where this one says 0."""
        return ResponseFormat(self.response_budget or response_budget, self.max_prompt_len or max_prompt_len,
                              self.prompt_tail_tokens, self.end_token, self.fill_token)


def special_ids(tokenizer, fmt: ResponseFormat) -> dict[str, int]:
    """Token ids of the row frame: start ([CLS] or BOS), separator ([SEP] or EOS), end, fill."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or sep is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has neither [CLS]/[SEP] nor BOS/EOS tokens")

    def lookup(name: str, default: int) -> int:
        if name == "auto":
            return default
        ids = tokenizer.convert_tokens_to_ids([name])
        if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
            raise ValueError(f"end/fill token {name!r} is not in the tokenizer's vocabulary")
        return int(ids[0])

    end = lookup(fmt.end_token, tokenizer.eos_token_id if tokenizer.eos_token_id is not None else sep)
    return {"start": start, "sep": sep, "end": end, "fill": lookup(fmt.fill_token, end)}


@dataclass
class EncodedExamples(torch.utils.data.Dataset):
    """Token rows of a list of examples (same order); ``pad_collate`` batches them."""

    rows: list[dict[str, torch.Tensor]]
    examples: list[Example] = field(default_factory=list)
    format: ResponseFormat = field(default_factory=ResponseFormat)
    end_id: int | None = None  # None: classification (no end token)
    fill_id: int | None = None
    truncated: int = 0  # prompts cut
    truncated_responses: int = 0  # responses cut to the budget
    label_token_ids: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.rows[i]

    def counts(self) -> dict[str, int]:
        return {"rows": len(self.rows), "truncated_prompts": self.truncated,
                "truncated_responses": self.truncated_responses,
                "response_budget": self.format.response_budget, "max_prompt_len": self.format.max_prompt_len}


def cut_middle(ids: list[int], budget: int, tail: int) -> list[int]:
    """Keep the first ``budget - tail`` and the last ``tail`` tokens (tail capped at budget)."""
    if len(ids) <= budget:
        return ids
    tail = min(tail, budget)
    return ids[: budget - tail] + (ids[len(ids) - tail:] if tail else [])


def tokenize_examples(examples: list[Example], tokenizer, fmt: ResponseFormat,
                      label_words: dict[int, str] | None = None) -> EncodedExamples:
    """Encode ``examples`` as rows (layout in the module docstring). With ``label_words``
    (classification) the response is the example's label word, one token, no end token, and
    each row carries ``label``; a multi-token label word is refused."""
    require(fmt.max_prompt_len >= 1, "max_prompt_len", "must be set (>= 1) before encoding")
    ids = special_ids(tokenizer, fmt)
    label_ids = label_token_ids(label_words, tokenizer) if label_words else {}
    budget = 1 if label_words else fmt.response_budget
    require(budget >= (1 if label_words else 2), "response_budget",
            f"free-text responses need room for a token and the end token, got {budget}")
    rows, cut_prompts, cut_responses = [], 0, 0
    for ex in examples:
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        if len(prompt) > fmt.max_prompt_len:
            cut_prompts += 1
            prompt = cut_middle(prompt, fmt.max_prompt_len, fmt.prompt_tail_tokens)
        if label_words:
            if ex.label is None:
                raise ValueError(f"example {ex.id or ex.prompt[:40]!r} has no label (classification task)")
            response = [label_ids[ex.label]]
        else:
            response = tokenizer(ex.response, add_special_tokens=False)["input_ids"]
            if len(response) > budget - 1:
                cut_responses += 1
                response = response[: budget - 1]
            response = response + [ids["end"]] + [ids["fill"]] * (budget - 1 - len(response))
        row_ids = [ids["start"], *prompt, ids["sep"], *response, ids["sep"]]
        n, p = len(row_ids), len(prompt)
        row = {
            "input_ids": torch.tensor(row_ids),
            "attention_mask": torch.ones(n, dtype=torch.long),
            "generate_mask": torch.tensor([False] * (p + 2) + [True] * budget + [False]),
            "instruction_mask": torch.tensor([False] + [True] * p + [False] * (budget + 2)),
        }
        if label_words:
            row["label"] = torch.tensor(ex.label)
        rows.append(row)
    fmt = ResponseFormat(budget, fmt.max_prompt_len, fmt.prompt_tail_tokens, fmt.end_token, fmt.fill_token)
    return EncodedExamples(rows, list(examples), fmt, None if label_words else ids["end"],
                           None if label_words else ids["fill"], cut_prompts, cut_responses, label_ids)


def label_token_ids(label_words: dict[int, str], tokenizer) -> dict[int, int]:
    """Label id -> its single token id; a multi-token label word is refused."""
    out = {}
    for label, word in label_words.items():
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"label word {word!r} is {len(ids)} tokens {ids}; "
                "label words must be single tokens so the response length does not leak the label"
            )
        out[label] = ids[0]
    return out


def response_tokens(ids: torch.Tensor, generate_mask: torch.Tensor, end_id: int | None) -> list[list[int]]:
    """The response of each row (B, L): its generate positions up to (not including) the first
    end token; everything after it (the fill) is dropped. ``end_id`` None keeps the region."""
    out = []
    for row, mask in zip(ids.tolist(), generate_mask.bool().tolist()):
        region = [tok for tok, m in zip(row, mask) if m]
        if end_id is not None and end_id in region:
            region = region[: region.index(end_id)]
        out.append(region)
    return out


def decode_responses(tokenizer, ids: torch.Tensor, generate_mask: torch.Tensor, end_id: int | None) -> list[str]:
    """Generated rows (B, L) -> response strings, cut at the first end token, special tokens
    (and so any stray fill, [SEP] or [PAD]) dropped."""
    return [tokenizer.decode(toks, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()
            for toks in response_tokens(ids, generate_mask, end_id)]


def pad_collate(rows: list[dict[str, torch.Tensor]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad a list of rows to the longest; padding has attention 0 and is never generated."""
    length = max(r["input_ids"].shape[0] for r in rows)
    batch: dict[str, torch.Tensor] = {}
    keys = [("input_ids", pad_id), ("attention_mask", 0), ("generate_mask", False), ("instruction_mask", False)]
    for key, fill in (kv for kv in keys if kv[0] in rows[0]):
        out = torch.full((len(rows), length), fill, dtype=rows[0][key].dtype)
        for i, r in enumerate(rows):
            out[i, : r[key].shape[0]] = r[key]
        batch[key] = out
    for key in ("label", "task_ids"):  # per-row scalars
        if key in rows[0]:
            batch[key] = torch.stack([r[key] for r in rows])
    return batch
