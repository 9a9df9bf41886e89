"""Prompt caching for the reverse sampler: reuse the clean prompt's keys and values across
model calls instead of recomputing them at every reverse step.

Layout. A row i of x_t (B, L) is right-padded: real positions 0 .. n_i - 1. Its prompt is every
position before its first generate position (start token, instruction, separator: p_i
positions, clean, never masked); its suffix is positions p_i .. n_i - 1 (the response region
and the closing separator, s_i = n_i - p_i of them). P = max_i p_i.

Prompt attention (``prompt_attention``), an additive mask M (B, 1, L, L), 0 or dtype-min:

- ``full`` (how every model here is trained): M[i, q, k] = 0 iff key k is real (not padding);
- ``prefix``: M[i, q, k] = 0 iff k is real and (q >= p_i or k < p_i): prompt queries see only
  prompt keys, every other query sees everything. Then at every layer l the prompt's hidden
  states h^l[i, :p_i], hence its keys K^l and values V^l, are functions of the prompt alone:
  constant over reverse steps. A model trained with full attention computes a different
  function under ``prefix``: train with it (``finetune --set prompt_attention=prefix``), and the
  training forward applies the same mask (``prompt_layout`` announces each row's p_i to
  ``DiffusionLM._trunk_forward``, which builds ``attention_bias``); the adapter records it
  (``prompt_attention`` in ``adapter_config.json``, absent: ``full``) and generation uses it
  unless told otherwise.

Modes (``prompt_cache``):

- ``none``: every call runs the trunk on all L positions (``prefix`` attention: with its mask).
- ``exact`` (needs ``prefix`` attention, and a trunk without time conditioning, whose input
  embedding adds Emb(t) to the prompt too): the first call is a full pass over every row of the
  batch (all L positions, from the batch's current x_t; its output serves that call's rows) that
  keeps, per layer l, K^l[:, :, :P] and V^l[:, :, :P] (B, H_kv, P, d_head) and the final hidden
  states (B, L, D). Every later call is a
  cached pass: only the suffix positions, gathered into (b, S), S = max s_i, with their own
  position ids; keys and values [cache (P slots, row i sees those < p_i) ; suffix (S slots, row i
  sees those < s_i)]; the fresh states are scattered back into (b, L, D) beside the cached
  prompt states. Equal to the ``none`` call with ``prefix`` attention at every real position
  (kernels of other shapes may round differently; tested token-identical, states to 1e-5).
- ``approximate`` (any prompt attention): the same, but every row's cache is dropped at the
  start of each semi-autoregressive block (the sampler calls ``new_block``), so the block's first
  call refreshes the whole batch: in between, the prompt's K, V and final hidden states are
  those computed from the block's first x_t, so under ``full`` attention they are stale
  (Fast-dLLM's DualCache, prefix half). With one block (``block_length`` 0) the prompt is read
  once, against the all-[MASK] response.

The method's perturbation still runs at every call: it acts on the returned h (b, L, D)
(trajectory adapters pool Enc(c) over the prompt positions of h), and weight-space methods
(LoRA, adapters, BitFit, full) live inside the trunk that runs the suffix.

Which attention a generation uses (``GenerationOptions.prompt_attention``): the one the user gives,
else the model's own (its adapter's record; ``DiffusionLM.prompt_attention``); a bare base records
none, and there ``exact`` implies ``prefix``. ``exact`` on a model trained with full attention is
refused unless ``prefix`` is given explicitly (it would evaluate another function than the trained one).

Supported: the a2d family (causal LMs run bidirectionally through a 4D mask: llama, qwen2,
qwen3, mistral, gpt2) and BERT-style masked LMs (bert, roberta, xlm-roberta, electra), whose
self-attention consumes a key/value cache (the ``cache`` argument from transformers 5.24, ``past_key_values``
before it; ``cache_argument`` finds which) and whose embeddings take explicit position ids.
Refused with one line: remote-code diffusion LMs, other masked LMs (their attention ignores or
rejects a cache), the ``prefix`` method (its attention wrapper ignores the cache), deep
trajectory sites (``deep_layers``: t-dependent perturbations inside the trunk, which also pool
the prompt there), and ``exact`` with time conditioning. A method that reads every layer
(trajectory ``read="mix"``) gets full passes only: correct, but nothing is saved.

Counting: ``stats`` holds full passes (L positions per row: the first call, each refresh, and
calls that read every layer, each serving its call's logits) and cached passes (S positions per
row), with their rows (a refresh runs all B) and query positions. A forward hook on the trunk
(``bench.harness.count_trunk_rows``) sees both kinds as trunk calls, so calls per sample are
unchanged; positions per call are what drop.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch

from .config import ConfigError
from .diffusion.sampler import PROMPT_ATTENTION as ATTENTION
from .diffusion.sampler import PROMPT_CACHE as MODES

Tensor = torch.Tensor
MASKED_TYPES = ("bert", "roberta", "xlm-roberta", "electra")
A2D_TYPES = ("llama", "qwen2", "qwen3", "mistral", "gpt2")


def prompt_lengths(generate_mask: Tensor, attention_mask: Tensor) -> Tensor:
    """p_i: positions before row i's first generate position (B,) long; a row with none: its
    real length."""
    first = generate_mask.long().argmax(1)
    return torch.where(generate_mask.any(1), first, attention_mask.long().sum(1))


def attention_bias(attention_mask: Tensor, prompt_len: Tensor | None, dtype: torch.dtype) -> Tensor:
    """Additive mask M (B, 1, L, L) from the padding mask (B, L): 0 where query q may see key k,
    dtype-min elsewhere. ``prompt_len`` (B,) None: full attention (every real key); else prefix
    attention, keep[i, q, k] = real[i, k] and (q >= p_i or k < p_i)."""
    L = attention_mask.shape[1]
    keep = attention_mask.bool()[:, None, None, :].expand(-1, 1, L, -1)
    if prompt_len is not None:
        pos = torch.arange(L, device=attention_mask.device)
        p = prompt_len.to(attention_mask.device)[:, None, None, None]
        keep = keep & ((pos[None, None, :, None] >= p) | (pos[None, None, None, :] < p))
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    return torch.where(keep, zero, torch.finfo(dtype).min)


def check_attention(backbone, attention: str, name: str = "prompt_attention") -> None:
    """Refuse, with one line naming ``name``, a prompt attention the backbone's trunk cannot take:
    ``prefix`` needs a family whose trunk consumes a 4D additive mask (``A2D_TYPES``,
    ``MASKED_TYPES``). Used for training (``finetune``) and when an adapter is loaded."""
    if attention not in ATTENTION:
        raise ConfigError(f"{name}: must be one of {list(ATTENTION)}, got {attention!r}", field=name)
    if attention == "full":
        return
    kind = getattr(backbone.mlm.config, "model_type", "?")
    supported = () if backbone.family == "diffusion" else MASKED_TYPES if backbone.family == "masked" else A2D_TYPES
    if kind not in supported:
        raise ConfigError(f"{name}: prefix prompt attention needs a trunk that takes a 4D attention mask; {kind!r} "
                          f"({backbone.family} family) does not; supported: {', '.join(MASKED_TYPES + A2D_TYPES)}",
                          field=name)


@contextmanager
def prompt_layout(backbone, generate_mask: Tensor, attention_mask: Tensor):
    """For the model calls inside, tell ``backbone`` (under ``prefix`` prompt attention) each
    row's prompt length p_i (``prompt_lengths``), which ``DiffusionLM._trunk_forward`` needs to
    build the prefix mask; under ``full`` attention nothing changes."""
    if getattr(backbone, "prompt_attention", "") != "prefix":
        yield
        return
    saved = backbone.prompt_len
    backbone.prompt_len = prompt_lengths(generate_mask.bool(), attention_mask)
    try:
        yield
    finally:
        backbone.prompt_len = saved


def cache_argument(trunk: torch.nn.Module) -> str | None:
    """The name under which ``trunk.forward`` takes a key/value cache: ``cache`` (transformers >= 5.24),
    ``past_key_values`` (before), or None where it takes none."""
    params = inspect.signature(type(trunk).forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def check_support(model: torch.nn.Module, backbone, mode: str, attention: str) -> None:
    """Refuse, with one line naming the option, a backbone / method that cannot run ``mode``
    with ``attention`` (see the module docstring)."""
    if mode not in MODES:
        raise ConfigError(f"prompt_cache: must be one of {list(MODES)}, got {mode!r}", field="prompt_cache")
    if attention not in ATTENTION:
        raise ConfigError(f"prompt_attention: must be one of {list(ATTENTION)}, got {attention!r}",
                          field="prompt_attention")
    if mode == "none" and attention == "full":
        return
    name = "prompt_cache" if mode != "none" else "prompt_attention"
    kind = getattr(backbone.mlm.config, "model_type", "?")
    if backbone.family == "diffusion":
        raise ConfigError(f"{name}: remote-code diffusion LMs ({kind!r}) take neither a 4D attention mask nor "
                          "past_key_values; use prompt_cache=none, prompt_attention=full", field=name)
    supported = MASKED_TYPES if backbone.family == "masked" else A2D_TYPES
    if kind not in supported or cache_argument(backbone.trunk) is None:
        raise ConfigError(f"{name}: {kind!r} ({backbone.family} family) does not consume a key/value cache and a 4D "
                          f"mask the way prompt caching needs; supported: {', '.join(MASKED_TYPES + A2D_TYPES)}",
                          field=name)
    if mode != "none" and any(hasattr(m, "prefix_key") for m in backbone.mlm.modules()):
        raise ConfigError(f"{name}: the prefix method replaces every attention forward and ignores "
                          "past_key_values; use prompt_cache=none with prefix tuning", field=name)
    from .methods.trajectory_deep import DeepSites

    if mode != "none" and any(isinstance(m, DeepSites) for m in model.modules()):
        raise ConfigError(f"{name}: deep trajectory sites perturb trunk layers with t-dependent terms (the prompt's "
                          "keys change with t) and pool the prompt inside the trunk; use prompt_cache=none", field=name)
    from .methods.trajectory_side import SideNetwork

    if mode != "none" and any(isinstance(m, SideNetwork) for m in model.modules()):
        raise ConfigError(f"{name}: a trajectory side network attends over every position's hidden state at "
                          "every call; use prompt_cache=none", field=name)
    if mode == "exact" and attention != "prefix":
        raise ConfigError("prompt_cache: 'exact' needs prompt_attention='prefix' (under full attention the "
                          "prompt attends to the response, so a cache can only be approximate)", field=name)
    if mode == "exact" and backbone.time_embedding is not None:
        raise ConfigError("prompt_cache: 'exact' needs a backbone without time conditioning (Emb(t) is added to "
                          "the prompt's embeddings, so its keys change with t); use 'approximate'", field=name)


class PromptCache:
    """Per-batch cache state, installed in place of ``DiffusionLM._trunk_forward`` by
    ``installed``. Before each model call, ``announce`` names its rows (b,) and gives the whole
    batch's x_t (B, L) and t (B,) (without it: every row, the trunk call's own input)."""

    def __init__(self, backbone, generate_mask: Tensor, attention_mask: Tensor, mode: str, attention: str):
        self.backbone, self.mode, self.attention = backbone, mode, attention
        self.prompt_len = prompt_lengths(generate_mask.bool(), attention_mask)  # p_i (B,)
        self.real_len = attention_mask.long().sum(1)  # n_i (B,): right padding, real positions 0..n_i - 1
        self.P = int(self.prompt_len.max()) if mode != "none" and self.prompt_len.numel() else 0
        self.attention_mask = attention_mask
        self.rows: Tensor | None = None  # the rows of the current call (None: all B)
        self.x_full: Tensor | None = None  # (B, L) the whole batch's x_t at the current call
        self.steps_full: Tensor | None = None  # (B,)
        self.keys: list[Tensor] = []  # per layer (B, H_kv, P, d_head); row i's slots >= p_i unused
        self.values: list[Tensor] = []
        self.hidden: Tensor | None = None  # (B, L, D) final hidden states of the last full pass
        self.valid = torch.zeros(generate_mask.shape[0], dtype=torch.bool, device=generate_mask.device)
        self.stats = {"full_passes": 0, "cached_passes": 0, "full_rows": 0, "cached_rows": 0,
                      "full_positions": 0, "cached_positions": 0}

    def announce(self, rows: Tensor | None, x_t: Tensor, steps: Tensor | None) -> None:
        """Before each model call: its rows (b,) (None: all) and the whole batch's x_t (B, L), t (B,)."""
        self.rows, self.x_full, self.steps_full = rows, x_t, steps

    def new_block(self, block: int = 0) -> None:
        """The sampler starts a semi-AR block: an approximate cache is read again at its next call."""
        if self.mode == "approximate":
            self.valid.zero_()

    def trunk_forward(self, input_ids: Tensor, attention_mask: Tensor, steps: Tensor | None = None,
                      all_layers: bool = False):
        """Final hidden states (b, L, D) of the rows ``self.rows``, as ``DiffusionLM._trunk_forward``
        (``all_layers``: (h, (h^0, ..., h^n)) from a full pass, which also refreshes the cache).

        Full pass, when a row of the call has no cache: every row of the batch (B, L) from the
        x_t announced for this call, mask ``attention_bias``; stores K, V [:, :, :P] and h for all
        B rows and returns the call's rows (so a batch is filled once per cache lifetime, not once
        per subset of rows the event-driven sampler asks for).
        Cached pass: row i's suffix positions p_i .. n_i - 1 (its response region and what follows,
        s_i = n_i - p_i of them) gathered into (b, S), S = max_i s_i, with their own position ids;
        keys [K_cache (b, H, P) ; K_suffix (b, H, S)], of which row i sees cache slots < p_i and
        suffix slots < s_i (a suffix query is never a prompt query, so it sees every real key
        under either prompt attention); the fresh states are scattered back into the stored
        (b, L, D), whose prompt positions are the cache's (padding: the last full pass's, never read)."""
        B = self.valid.shape[0]
        rows = self.rows if self.rows is not None else torch.arange(B, device=self.valid.device)
        if rows.numel() != input_ids.shape[0]:
            raise RuntimeError(f"prompt cache: a trunk call of {input_ids.shape[0]} rows, {rows.numel()} announced")
        b, L = input_ids.shape
        dtype = self.backbone.mlm.get_input_embeddings().weight.dtype
        if self.P == 0 or all_layers:  # no cache to use: this call's rows, all L positions
            prompt_len = self.prompt_len[rows] if self.attention == "prefix" else None
            past = _empty_cache() if self.P > 0 else None
            out = self._trunk(input_ids, attention_bias(attention_mask, prompt_len, dtype), steps, past, None,
                              all_layers)
            if past is not None:
                self._store(rows, past, out.last_hidden_state)
            self._count("full", b, b * L)
            return (out.last_hidden_state, tuple(out.hidden_states)) if all_layers else out.last_hidden_state
        if not bool(self.valid[rows].all()):  # (re)fill: every row of the batch, from its current x_t
            x_full = self.x_full if self.x_full is not None else input_ids
            prompt_len = self.prompt_len if self.attention == "prefix" else None
            past = _empty_cache()
            steps_full = self.steps_full if self.x_full is not None else steps
            out = self._trunk(x_full, attention_bias(self.attention_mask, prompt_len, dtype), steps_full, past, None)
            self._store(torch.arange(B, device=self.valid.device), past, out.last_hidden_state)
            self._count("full", B, B * L)
            return out.last_hidden_state[rows]
        p, n = self.prompt_len[rows], self.real_len[rows]
        S = max(int((n - p).max()), 1)
        j = torch.arange(S, device=input_ids.device)
        inside = j[None, :] < (n - p)[:, None]  # (b, S) real suffix slots
        idx = torch.where(inside, p[:, None] + j[None, :], (n - 1).clamp(min=0)[:, None])  # (b, S) positions
        keep = torch.cat([torch.arange(self.P, device=idx.device)[None, :] < p[:, None], inside], dim=1)
        keep = keep[:, None, None, :].expand(-1, 1, S, -1)  # (b, 1, S, P + S)
        bias = torch.where(keep, torch.zeros((), dtype=dtype, device=idx.device), torch.finfo(dtype).min)
        past = _cache_from([(k[rows], v[rows]) for k, v in zip(self.keys, self.values)])
        positions = self._positions(input_ids).gather(1, idx)
        fresh = self._trunk(input_ids.gather(1, idx), bias, steps, past, positions).last_hidden_state
        hidden = self.hidden[rows].to(fresh.dtype)  # a copy (advanced indexing)
        at = inside.nonzero()
        hidden[at[:, 0], idx[inside]] = fresh[inside]
        self._count("cached", b, b * S)
        return hidden

    # ------------------------------------------------------------------------------ internals
    def _positions(self, input_ids: Tensor) -> Tensor:
        """The position ids the model itself gives a full row (b, L): RoBERTa-style embeddings count
        non-padding tokens from ``padding_idx + 1``; every other supported model counts from 0."""
        kind = getattr(self.backbone.mlm.config, "model_type", "")
        if kind in ("roberta", "xlm-roberta"):
            pad = self.backbone.mlm.config.pad_token_id
            real = input_ids.ne(pad).long()
            return torch.cumsum(real, dim=1) * real + pad
        return torch.arange(input_ids.shape[1], device=input_ids.device).expand(input_ids.shape[0], -1)

    def _trunk(self, input_ids: Tensor, bias: Tensor, steps: Tensor | None, past, positions: Tensor | None,
               all_layers: bool = False):
        bb, kwargs = self.backbone, {"attention_mask": bias, "output_hidden_states": all_layers}
        if past is not None:
            kwargs[cache_argument(bb.trunk)] = past
        if positions is not None:
            kwargs["position_ids"] = positions
        if bb.family == "a2d":
            kwargs["use_cache"] = past is not None
        if bb.time_embedding is None:
            return bb.trunk(input_ids=input_ids, **kwargs)
        if steps is None:
            raise ValueError("time-conditioned backbone needs the step t of every row")
        embeds = bb.mlm.get_input_embeddings()(input_ids)
        embeds = embeds + bb.time_embedding(steps)[:, None, :].to(embeds.dtype)
        return bb.trunk(inputs_embeds=embeds, **kwargs)

    def _store(self, rows: Tensor, past, hidden: Tensor) -> None:
        P = self.P
        layers = [(layer.keys[:, :, :P], layer.values[:, :, :P]) for layer in past.layers]
        if not self.keys:
            B = self.valid.shape[0]
            self.keys = [k.new_zeros((B, *k.shape[1:])) for k, _ in layers]
            self.values = [v.new_zeros((B, *v.shape[1:])) for _, v in layers]
            self.hidden = hidden.new_zeros((B, *hidden.shape[1:]))
        for store_k, store_v, (k, v) in zip(self.keys, self.values, layers):
            store_k[rows], store_v[rows] = k.detach(), v.detach()
        self.hidden[rows] = hidden.detach()
        self.valid[rows] = True

    def _count(self, kind: str, rows: int, positions: int) -> None:
        self.stats[f"{kind}_passes"] += 1
        self.stats[f"{kind}_rows"] += rows
        self.stats[f"{kind}_positions"] += positions


def _empty_cache():
    from transformers import DynamicCache

    return DynamicCache()


def _cache_from(layers: list[tuple[Tensor, Tensor]]):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers)


@contextmanager
def installed(backbone, cache: PromptCache | None):
    """Route ``backbone``'s trunk forward through ``cache`` for the duration (an instance
    attribute shadows the method; removed on exit). ``None``: nothing changes."""
    if cache is None:
        yield None
        return
    backbone._trunk_forward = cache.trunk_forward
    try:
        yield cache
    finally:
        del backbone._trunk_forward
